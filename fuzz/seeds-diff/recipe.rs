use tch::{nn, Tensor};
macro_rules! m { ($x:expr) => { $x * 2 } }
#[derive(Debug)]
struct S { w: Vec<f32> }
impl S { fn f(&self, x: &Tensor) -> Tensor { x.relu().square() } }
fn g() { let v = vec![m!(1)]; let _ = std::f64::consts::PI; }
