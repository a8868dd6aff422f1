//! The in-toto Statement v1 that a training run attests to: every bundle file as
//! a subject (by sha256) and a Karpa predicate describing the run.

use crate::Sha256Hex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Our predicate, versioned in its URI.
pub const PREDICATE_TYPE: &str = "https://karpa.dev/attestation/training-run/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: TrainingRun,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    pub fn sha256(name: &str, digest: &Sha256Hex) -> Self {
        Subject { name: name.to_string(), digest: BTreeMap::from([("sha256".to_string(), digest.to_string())]) }
    }
}

/// What the official trainer says about the run it performed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingRun {
    pub king_tag: String,
    pub king_commit: String,
    /// Git tree id of the king with the patch applied.
    pub patched_tree: String,
    pub config: String,
    pub seed: u64,
    /// sha256 over the trainer and proof sources and Cargo.lock.
    pub harness_digest: Sha256Hex,
    pub calibration: CalibrationSummary,
    pub started_at: String,
    pub finished_at: String,
    /// Rolling hash over log chunks: h_i = sha256(h_{i-1} ‖ chunk_i), h_0 = sha256("").
    pub log_chain: Vec<Sha256Hex>,
    /// `software` (a key generated inside the official trainer) or `tee`.
    pub tier: String,
    pub nonce: String,
    /// Who the run is for: a bundle cannot be re-attributed without a new attestation.
    pub miner_hotkey: String,
    pub github_login: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee_evidence: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSummary {
    pub device: String,
    pub matmul_2048_fp32_ms: f64,
    pub h100_equivalence: f64,
}

/// The rolling hash chain over a log cut into chunks of `lines_per_chunk` lines.
pub fn log_chain(log: &str, lines_per_chunk: usize) -> Vec<Sha256Hex> {
    let lines: Vec<&str> = log.split_inclusive('\n').collect();
    let mut prev = crate::sha256_bytes(b"");
    let mut chain = Vec::new();
    for chunk in lines.chunks(lines_per_chunk.max(1)) {
        let mut bytes = hex::decode(prev.as_str()).expect("hex");
        bytes.extend(chunk.concat().into_bytes());
        prev = crate::sha256_bytes(&bytes);
        chain.push(prev.clone());
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_commits_to_every_chunk_in_order() {
        let log = "a\nb\nc\nd\ne\n";
        let chain = log_chain(log, 2);
        assert_eq!(chain.len(), 3);
        let mut expect = hex::decode(crate::sha256_bytes(b"").as_str()).unwrap();
        expect.extend(b"a\nb\n");
        assert_eq!(chain[0], crate::sha256_bytes(&expect));
        assert_ne!(log_chain("a\nb\nc\nd\nE\n", 2)[2], chain[2]);
        assert_eq!(log_chain("a\nb\nc\nd\nE\n", 2)[..2], chain[..2]);
    }
}
