//! The seed-hacking guard: a run that passes the gate earns confirmation runs,
//! the challenger trained again by the validator with seeds it chose after
//! submission ([`confirmation_seed`]), each hidden score causality-checked;
//! their mean decides the crown. Where they are trained is a [`Confirmations`]:
//! one after another in this process ([`InProcess`], `karpa judge`), or as jobs
//! any runner claims in parallel ([`crate::db::confirmations::PgConfirmations`]).

use super::decision::{confirm, DecisionRule, NoiseFloor, Outcome};
use super::evaluate::{confirmation_seed, EvalSetup};
use super::noise_floor::seeded_bpb;
use super::verdict::Confirmation;
use super::Finding;
use crate::sandbox::Sandbox;
use anyhow::Result;
use proof::config::ProtocolConfig;
use std::path::Path;

/// One run: its hidden bpb, or the recipe's failure.
pub type RunOutcome = std::result::Result<f64, Finding>;

pub enum RunsLookup {
    /// Runs 0.. in order; a run the recipe failed ends the list.
    Done(Vec<RunOutcome>),
    /// Being trained by runner jobs: `done` of `of` are in.
    Measuring { done: usize, of: usize },
}

/// What a confirmation run needs: the built challenger and where it is judged.
pub struct Challenger<'a> {
    pub sandbox: &'a Sandbox,
    pub setup: &'a EvalSetup,
    /// The challenger's built harness (None where this process did not build
    /// it: runs are then the queue's, each built by its runner).
    pub bin: Option<&'a Path>,
    pub protocol: &'a ProtocolConfig,
    pub digest: &'a str,
    /// The king whose floor decides, and its per-token nats (aims the causality pairs).
    pub king: &'a str,
    pub aim_at: Option<&'a [f32]>,
    pub work: &'a Path,
}

pub trait Confirmations: Send {
    fn runs(&self, c: &Challenger, n: u32) -> Result<RunsLookup>;
}

/// Trains the runs here, one after another, stopping at the first failure.
pub struct InProcess;

impl Confirmations for InProcess {
    fn runs(&self, c: &Challenger, n: u32) -> Result<RunsLookup> {
        let mut done = Vec::new();
        for i in 0..n {
            let outcome = run_one(c, i)?;
            let failed = outcome.is_err();
            done.push(outcome);
            if failed {
                break;
            }
        }
        Ok(RunsLookup::Done(done))
    }
}

/// Run `i`: the validator's seed and causality key for it, trained and scored.
pub fn run_one(c: &Challenger, i: u32) -> Result<RunOutcome> {
    let seed = confirmation_seed(&c.setup.secret, c.digest, i);
    let key = format!("{}/confirm-{i}", c.digest);
    let bin = anyhow::Context::context(c.bin, "the challenger's harness was not built in this process")?;
    Ok(seeded_bpb(c.sandbox, c.setup, bin, c.protocol, seed, (&key, c.aim_at), c.work)?.map(|s| s.bpb))
}

/// What the guard concluded.
pub enum Guard {
    /// Its runs are still being trained (the judgment waits): why.
    Waiting(String),
    /// A run's hidden score failed the causality check: the recipe is refused.
    Cheated(Finding, Confirmation),
    /// The runs decide: the outcome, with the finding of a run the recipe failed.
    Decided(Outcome, Confirmation, Option<Finding>),
}

/// The guard's runs from `runner`, decided by `rule` against `floor`.
pub fn guard(
    runner: &dyn Confirmations,
    c: &Challenger,
    (rule, floor, rationale): (&DecisionRule, &NoiseFloor, &str),
) -> Result<Guard> {
    let outcomes = match runner.runs(c, rule.confirmation_runs)? {
        RunsLookup::Done(outcomes) => outcomes,
        RunsLookup::Measuring { done, of } => {
            return Ok(Guard::Waiting(format!("waiting for the validator's confirmation runs: {done} of {of}")))
        }
    };
    let mut conf = Confirmation {
        seed_offsets: Vec::new(),
        hidden_bpb: Vec::new(),
        mean: f64::NAN,
        threshold: 0.0,
        passed: false,
    };
    let mut failed = None;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        conf.seed_offsets.push(confirmation_seed(&c.setup.secret, c.digest, i as u32));
        match outcome {
            Ok(bpb) => conf.hidden_bpb.push(bpb),
            Err(finding) if finding.code == "eval.causality" => return Ok(Guard::Cheated(finding, conf)),
            Err(finding) => {
                conf.hidden_bpb.push(f64::NAN);
                failed = Some(finding);
                break;
            }
        }
    }
    let outcome = confirm(rule, floor, &conf.hidden_bpb, rationale);
    conf.mean = conf.hidden_bpb.iter().sum::<f64>() / conf.hidden_bpb.len() as f64;
    conf.threshold = rule.threshold(floor, conf.hidden_bpb.len());
    conf.passed = outcome == Outcome::Crowned;
    Ok(Guard::Decided(outcome, conf, failed))
}
