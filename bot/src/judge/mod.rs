//! The judge: the stages that turn a pull request and its bundle into a verdict.

pub mod decision;
pub mod evaluate;
pub mod finding;
pub mod noise_floor;
pub mod nonces;
pub mod pipeline;
pub mod plausibility;
pub mod scan;
pub mod verdict;

pub use finding::Finding;
