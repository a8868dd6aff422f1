//! The bundle contract shared by the trainer (which writes it) and the bot (which
//! judges it). No libtorch here: the validator links this crate, never a model.
//!
//! - [`log`], [`state`], [`calibration`]: what `karpa-train` writes;
//! - [`bundle`]: the bundle manifest, its digest and offline verification;
//! - [`dsse`], [`intoto`]: the attestation (an in-toto Statement in a DSSE envelope, ed25519);
//! - [`canonical`]: RFC 8785 JSON for everything that is hashed or signed;
//! - [`causality`]: the causality check of the hidden score (what is compared, how);
//! - [`judge_budget`]: what judging a submission may cost against its training;
//! - [`digest`], [`fsio`]: sha256 and crash-safe writes.

pub mod bundle;
pub mod calibration;
pub mod canonical;
pub mod causality;
pub mod config;
pub mod digest;
pub mod dsse;
pub mod fsio;
pub mod harness;
pub mod hotkey;
pub mod intoto;
pub mod judge_budget;
pub mod locator;
pub mod log;
pub mod state;
pub mod tee;

pub use digest::{sha256_bytes, sha256_file, Sha256Hex};
