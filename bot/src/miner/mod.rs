//! The miner's side: `karpa mine` searches for a better recipe, `karpa prove`
//! trains one with the official harness and seals its bundle, `seal` encrypts
//! a bundle to the validator, and `karpa submit` opens the pull request.

pub mod mine;
pub mod prove;
pub mod seal;
pub mod submit;
