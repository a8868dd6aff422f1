//! The verdict: a class, the findings, what each stage took, and the versions that
//! produced it. Serialised as JSON for the check run, the git note and the corpus.

use super::Finding;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
}

#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub stage: &'static str,
    pub passed: bool,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
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
    pub judge_version: &'static str,
}

/// The guard's run: the challenger retrained by the validator with its own seed.
#[derive(Debug, Clone, Serialize)]
pub struct Confirmation {
    pub seed_offset: u64,
    pub hidden_bpb: f64,
    pub gain: f64,
    pub passed: bool,
}
