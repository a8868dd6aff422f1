//! The verdict: a class, the findings, what each stage took, and the versions that
//! produced it. Serialised as JSON for the check run, the git note and the corpus.

use super::Finding;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictClass {
    Crowned,
    MeaningfulFailure,
    Failure,
    /// An integrity problem: the proof does not hold.
    Rejected,
    /// The PR's base is no longer the king: rebase and re-prove.
    Stale,
    /// Our side could not finish; never blamed on the miner, retried.
    Error,
    /// Not a verdict yet: the decision waits on state being measured (the king's
    /// noise floor). Never concluded or recorded; the judgment resumes by itself.
    Waiting,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageReport {
    pub stage: Cow<'static, str>,
    pub passed: bool,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub class: VerdictClass,
    /// One sentence for the check run's title.
    pub summary: String,
    pub bundle_digest: Option<String>,
    pub king: Option<String>,
    pub findings: Vec<Finding>,
    pub stages: Vec<StageReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<super::evaluate::EvalResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<super::decision::Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<Confirmation>,
    pub judge_version: Cow<'static, str>,
}

impl Verdict {
    /// The validator's signature of this verdict as it publishes it.
    pub fn sign(&self, key: &subxt_signer::sr25519::Keypair) -> ValidatorSignature {
        let json = serde_json::to_value(self).expect("a verdict always serialises");
        ValidatorSignature::sign(key, &proof::hotkey::verdict_message(&digest_of(&json)))
    }

    /// A verdict reached before the pipeline could start (no locator, no bundle).
    pub fn at_intake(class: VerdictClass, finding: Finding, summary: impl Into<String>) -> Self {
        Verdict {
            class,
            summary: summary.into(),
            bundle_digest: None,
            king: None,
            findings: vec![finding],
            stages: vec![StageReport { stage: "intake".into(), passed: false, seconds: 0.0 }],
            eval: None,
            decision: None,
            confirmation: None,
            judge_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The guard's runs: the challenger retrained by the validator with its own seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Confirmation {
    pub seed_offsets: Vec<u64>,
    /// One per run; NaN (null in JSON) for a run that failed.
    pub hidden_bpb: Vec<f64>,
    pub mean: f64,
    /// What the mean had to beat: max(min_delta, z·σ·√(1/runs + 1/n)).
    pub threshold: f64,
    pub passed: bool,
}

pub use proof::hotkey::ValidatorSignature;

/// Checks a published verdict, as JSON (the corpus API's `verdict`), against
/// the signature published with it.
pub fn verify_signature(
    verdict: &serde_json::Value,
    sig: &ValidatorSignature,
) -> Result<(), proof::hotkey::HotkeyError> {
    sig.verify(&proof::hotkey::verdict_message(&digest_of(verdict)))
}

/// sha256 of a verdict's RFC 8785 form.
fn digest_of(json: &serde_json::Value) -> proof::Sha256Hex {
    proof::sha256_bytes(&proof::canonical::to_canonical_bytes(json).expect("JSON always canonicalises"))
}
