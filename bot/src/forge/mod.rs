//! Where PRs come from and verdicts go: GitHub (checks, merges, tags) and, later,
//! the local forge over a bare repository.

pub mod bundle_fetch;
pub mod checks;
pub mod crown;
pub mod github;
pub mod local;
pub mod loss_curve;
pub mod mirror;
