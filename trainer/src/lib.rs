//! The Karpa training harness: everything around the recipe that makes a number
//! trustworthy — data, tokenizer, budget, seeding, the loop, checkpoints, log,
//! evaluation, probes, replay and calibration. Miners never change this crate.

pub mod bench;
pub mod calibrate;
pub mod causality;
pub mod checkpoint;
pub mod config;
pub mod confine;
pub mod data;
pub mod eval;
pub mod generate;
pub mod probe;
pub mod progress;
pub mod replay;
pub mod train;
