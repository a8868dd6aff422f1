//! `karpa noise-floor`: train the king with n seeds through the same sandboxed
//! path the judge uses, and evaluate each on the hidden split. The spread of those
//! numbers is what a challenger's gain must clear. The judge's confirmation run
//! is one more such run, of the challenger, with a seed the validator picks.
//! Every one of these hidden scores passes the causality check, so a king's
//! numbers are held to the same standard as a challenger's.

use super::causality::{score_hidden, Checks, HiddenScore};
use super::decision::NoiseFloor;
use super::evaluate::{build, train_seeded, EvalSetup};
use super::Finding;
use crate::repo::{King, RecipeRepo};
use crate::sandbox::Sandbox;
use anyhow::{bail, Result};
use proof::config::ProtocolConfig;
use std::path::Path;

/// What a judgment finds when it looks for its king's floor.
#[derive(Debug, Clone, PartialEq)]
pub enum FloorLookup {
    Ready(NoiseFloor),
    /// Being measured by runner jobs: `done` of `of` runs are in.
    Measuring {
        done: usize,
        of: usize,
    },
    /// Nobody measures it (file floors only): the judgment ends in `error`.
    Missing,
}

/// Where the judge finds noise floors: files an operator measured, or the
/// database the runners fill ([`crate::db::floors::PgFloors`]).
pub trait Floors: Send {
    fn lookup(&self, king: &str, config: &str) -> Result<FloorLookup>;
}

impl Floors for Vec<NoiseFloor> {
    fn lookup(&self, king: &str, config: &str) -> Result<FloorLookup> {
        Ok(match self.iter().find(|f| f.king == king && f.config == config && f.n() >= 2) {
            Some(f) => FloorLookup::Ready(f.clone()),
            None => FloorLookup::Missing,
        })
    }
}

/// Trains and evaluates the king once per seed offset in `seeds` (0..n for a floor).
pub fn measure(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    repo: &RecipeRepo,
    king: &King,
    config: &str,
    seeds: std::ops::Range<u64>,
) -> Result<NoiseFloor> {
    if seeds.end < seeds.start + 2 {
        bail!("a noise floor needs at least 2 seeds");
    }
    let work = tempfile::Builder::new().prefix("karpa-noise-").tempdir()?;
    let (cfg, bin) = built_king(sandbox, setup, repo, king, config, work.path())?;
    let (mut values, mut nats) = (Vec::new(), Vec::new());
    for seed in seeds {
        let score = floor_run(sandbox, setup, (&bin, &cfg), &king.tag, seed, work.path())?;
        eprintln!("karpa noise-floor: {} seed +{seed}: hidden bpb {:.5}", king.tag, score.bpb);
        values.push(score.bpb);
        nats.push(score.nats);
    }
    let reference = Some(mean_per_token(&nats).into());
    Ok(NoiseFloor { king: king.tag.clone(), config: config.to_string(), values, reference })
}

/// One run of the king's floor: built (cached in the shared target folder),
/// trained with `seed`, scored on the hidden split and checked for causality.
/// The king failing its own floor run is this validator's problem: an error.
pub fn measure_one(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    repo: &RecipeRepo,
    king: &King,
    config: &str,
    seed: u64,
    work: &Path,
) -> Result<HiddenScore> {
    let (cfg, bin) = built_king(sandbox, setup, repo, king, config, work)?;
    floor_run(sandbox, setup, (&bin, &cfg), &king.tag, seed, work)
}

/// The king's config and its harness built in the sandbox.
fn built_king(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    repo: &RecipeRepo,
    king: &King,
    config: &str,
    work: &Path,
) -> Result<(ProtocolConfig, std::path::PathBuf)> {
    let cfg = repo.protocol_config(king.tree, config)?;
    match build(sandbox, setup, repo, king.tree, work)? {
        Ok(bin) => Ok((cfg, bin)),
        Err(why) => bail!("{} does not build in the sandbox: {why}", king.tag),
    }
}

/// Seed `seed` of the floor of the king `tag`, with its built harness.
fn floor_run(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    (bin, cfg): (&Path, &ProtocolConfig),
    tag: &str,
    seed: u64,
    work: &Path,
) -> Result<HiddenScore> {
    let key = format!("{tag}/floor-seed-{seed}");
    match seeded_bpb(sandbox, setup, bin, cfg, seed, (&key, None), work)? {
        Ok(score) => Ok(score),
        Err(why) => bail!("{tag} seed {seed}: {}", why.message),
    }
}

/// The per-token mean of equally long runs.
pub fn mean_per_token(runs: &[Vec<f32>]) -> Vec<f32> {
    let len = runs.iter().map(Vec::len).min().unwrap_or(0);
    (0..len).map(|i| runs.iter().map(|r| r[i] as f64).sum::<f64>() as f32 / runs.len() as f32).collect()
}

/// Trains the built harness `bin` with `seed_offset` and scores its last
/// checkpoint on the hidden split, causality checked with pairs keyed by `key`
/// (half of them aimed by the king's per-token `reference`, when there is one).
/// Ok(Err(finding)) when the recipe itself fails.
pub fn seeded_bpb(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    bin: &Path,
    cfg: &ProtocolConfig,
    seed_offset: u64,
    (key, reference): (&str, Option<&[f32]>),
    work: &Path,
) -> Result<std::result::Result<HiddenScore, Finding>> {
    let runs = work.join("runs");
    let last = match train_seeded(sandbox, setup, bin, &cfg.name, seed_offset, &runs)? {
        Ok(last) => last,
        Err(why) => return Ok(Err(Finding::reject("decision.confirmation", "recipe", None, why))),
    };
    let rows = cfg.causality_rows * proof::judge_budget::CONFIRMATION_CAUSALITY_FACTOR;
    score_hidden(sandbox, setup, bin, cfg, &last, vec![runs], Checks { key, rows, aim_at: reference })
}
