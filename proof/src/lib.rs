//! The bundle contract shared by the trainer (which writes it) and the bot (which
//! judges it). No libtorch here: the validator links this crate, never a model.
//!
//! This crate starts with the parts the trainer already emits: the JSONL training
//! log, `final_state.json`, `calibration.json`, sha256 digests and crash-safe file
//! writes. Manifest, attestation and hotkey binding build on these.

pub mod calibration;
pub mod digest;
pub mod fsio;
pub mod log;
pub mod state;

pub use digest::{sha256_bytes, sha256_file, Sha256Hex};
