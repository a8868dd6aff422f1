//! The judge: the stages that turn a pull request and its bundle into a verdict.
//! Each stage returns typed findings; this module grows stage by stage.

pub mod finding;
pub mod plausibility;
pub mod scan;

pub use finding::Finding;
