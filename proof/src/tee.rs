//! Attestation tiers. `software`: the run key was generated inside the official
//! trainer, with nothing but the hotkey binding vouching for it (its cost gets a
//! credibility discount). `tee`: hardware evidence (a TDX quote, an NVIDIA EAT)
//! whose report data binds the run key and nonce, checked by a pluggable verifier.
//! A `tee` claim with no verifier for its evidence, or evidence that fails, is a
//! rejection — never a silent downgrade.

use crate::intoto::TrainingRun;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Software,
    Tee,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TeeError {
    #[error("unknown tier {0:?} (expected software or tee)")]
    UnknownTier(String),
    #[error("tier tee without evidence")]
    MissingEvidence,
    #[error("no verifier for evidence of kind {0:?}")]
    NoVerifier(String),
    #[error("evidence rejected: {0}")]
    Rejected(String),
}

/// What a hardware quote must commit to in its report data: the run's attestation
/// key and nonce, so a quote cannot be lifted onto another run.
pub fn expected_report_data(attestation_key: &[u8; 32], nonce: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"karpa-tee:v1\0")
        .chain_update(attestation_key)
        .chain_update(nonce.as_bytes())
        .finalize()
        .into()
}

/// Checks one kind of hardware evidence (e.g. "tdx-quote").
pub trait TeeVerifier {
    fn kind(&self) -> &str;
    /// Verifies `evidence` and that its report data equals `report_data`.
    fn verify(&self, evidence: &serde_json::Value, report_data: &[u8; 32]) -> Result<(), String>;
}

/// Decides the tier of an attested run with the verifiers this validator trusts.
pub fn check_tier(
    run: &TrainingRun,
    attestation_key: &[u8; 32],
    verifiers: &[&dyn TeeVerifier],
) -> Result<Tier, TeeError> {
    match run.tier.as_str() {
        "software" => Ok(Tier::Software),
        "tee" => {
            let evidence = run.tee_evidence.as_ref().ok_or(TeeError::MissingEvidence)?;
            let kind = evidence.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_string();
            let verifier = verifiers.iter().find(|v| v.kind() == kind).ok_or(TeeError::NoVerifier(kind))?;
            let report_data = expected_report_data(attestation_key, &run.nonce);
            verifier.verify(evidence, &report_data).map_err(TeeError::Rejected)?;
            Ok(Tier::Tee)
        }
        other => Err(TeeError::UnknownTier(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intoto::CalibrationSummary;

    /// A test verifier whose "quote" is just the report data in hex.
    struct EchoVerifier;
    impl TeeVerifier for EchoVerifier {
        fn kind(&self) -> &str {
            "echo"
        }
        fn verify(&self, evidence: &serde_json::Value, report_data: &[u8; 32]) -> Result<(), String> {
            (evidence["report_data"] == hex::encode(report_data))
                .then_some(())
                .ok_or("report data does not bind this run".into())
        }
    }

    fn run(tier: &str, evidence: Option<serde_json::Value>) -> TrainingRun {
        TrainingRun {
            king_tag: "recipe-v0.1.0".into(),
            king_commit: "a".repeat(40),
            patched_tree: "b".repeat(40),
            config: "micro".into(),
            seed: 1,
            harness_digest: crate::sha256_bytes(b"h"),
            calibration: CalibrationSummary { device: "cuda".into(), matmul_2048_fp32_ms: 0.5, h100_equivalence: 1.0 },
            started_at: String::new(),
            finished_at: String::new(),
            log_chain: vec![],
            tier: tier.into(),
            nonce: "n1".into(),
            miner_hotkey: "5Grw".into(),
            github_login: "octo".into(),
            tee_evidence: evidence,
        }
    }

    #[test]
    fn tiers_fail_closed() {
        let key = [5u8; 32];
        let v: [&dyn TeeVerifier; 1] = [&EchoVerifier];
        assert_eq!(check_tier(&run("software", None), &key, &v), Ok(Tier::Software));
        assert_eq!(check_tier(&run("tee", None), &key, &v), Err(TeeError::MissingEvidence));
        let good = serde_json::json!({"kind": "echo", "report_data": hex::encode(expected_report_data(&key, "n1"))});
        assert_eq!(check_tier(&run("tee", Some(good.clone())), &key, &v), Ok(Tier::Tee));
        // The same quote presented for another run key is refused.
        assert!(matches!(check_tier(&run("tee", Some(good.clone())), &[6u8; 32], &v), Err(TeeError::Rejected(_))));
        // No verifier for the kind: rejection, not a downgrade to software.
        assert_eq!(check_tier(&run("tee", Some(good)), &key, &[]), Err(TeeError::NoVerifier("echo".into())));
        assert!(matches!(check_tier(&run("gold", None), &key, &v), Err(TeeError::UnknownTier(_))));
    }
}
