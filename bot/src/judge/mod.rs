//! The judge: the stages that turn a pull request and its bundle into a verdict.

pub mod causality;
pub mod confirmation;
pub mod decision;
pub mod duplicate;
pub mod evaluate;
pub mod finding;
pub mod gpu_check;
pub mod ledger;
pub mod noise_floor;
pub mod pipeline;
pub mod plausibility;
pub mod recipe_toml;
pub mod rules;
pub mod scan;
pub mod sim;
pub mod verdict;

pub use finding::Finding;
