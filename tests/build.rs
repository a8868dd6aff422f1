//! The causality catalog links the harness (and so libtorch) into a test binary:
//! give it the same rpath as the trainer's (see trainer/build.rs).

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Some(root) = std::env::var_os("LIBTORCH") {
        let lib = std::path::Path::new(&root).join("lib");
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{}", lib.canonicalize().unwrap_or(lib).display());
    }
}
