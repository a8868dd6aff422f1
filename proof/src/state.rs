//! `final_state.json`: what a finished run claims, in one small file.

use crate::Sha256Hex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalState {
    pub config: String,
    pub seed: u64,
    pub steps: u64,
    pub tokens_seen: u64,
    pub params: i64,
    pub final_loss: f64,
    /// Public-split bpb at the end of training (the hidden number is the validator's).
    pub val_bpb: f64,
    pub elapsed_s: f64,
    pub data_manifest: Sha256Hex,
    pub log_sha256: Sha256Hex,
    pub checkpoints: Vec<CheckpointRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRef {
    pub step: u64,
    pub tokens_seen: u64,
    pub path: String,
    pub sha256: Sha256Hex,
}
