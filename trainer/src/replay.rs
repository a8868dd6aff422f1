//! `karpa-train replay`: from a checkpoint at step k, re-run m steps on the same
//! data and compare each loss with the log (a Proof-of-Learning spot check: a log
//! that was not produced by this recipe on this data cannot be replayed).

use crate::checkpoint;
use crate::config::ProtocolConfig;
use crate::confine::{self, Strictness};
use crate::data::dataset::{Dataset, TrainOrder, Windows};
use crate::train::{build_recipe, rows_for_step, seed_step, LOG_FILE};
use anyhow::{bail, Context, Result};
use proof::log::{parse_log, steps, LogLine};
use recipe::StepCtx;
use serde::Serialize;
use std::path::Path;
use tch::Device;

#[derive(Debug, Clone, Serialize)]
pub struct ReplayStep {
    pub step: u64,
    pub logged_loss: f64,
    pub replayed_loss: f64,
    pub abs_diff: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub from_step: u64,
    pub steps: Vec<ReplayStep>,
    pub max_abs_diff: f64,
    /// Seconds spent re-running the steps (after loading the checkpoint and data);
    /// `karpa-train replay` prints it beside the report, as probe and eval do.
    #[serde(skip)]
    pub compute_s: f64,
}

/// Replays `count` steps after `from_step` (0 = from the seeded initialisation) of
/// the run in `run_dir`, confined (see [`confine`]) once the checkpoint and data are loaded.
pub fn replay(
    cfg: &ProtocolConfig,
    data: &Dataset,
    run_dir: &Path,
    from_step: u64,
    count: u64,
    device: Device,
    strictness: Strictness,
) -> Result<ReplayReport> {
    let log_path = run_dir.join(LOG_FILE);
    let text = std::fs::read_to_string(&log_path).with_context(|| format!("cannot read {}", log_path.display()))?;
    let lines = parse_log(&text).with_context(|| format!("{}", log_path.display()))?;
    let logged: Vec<_> = steps(&lines).filter(|s| s.step > from_step).take(count as usize).cloned().collect();
    if (logged.len() as u64) < count {
        bail!("the log has {} steps after step {from_step}; {count} were asked for", logged.len());
    }

    // Load the checkpoint (if any) and map the data before confinement, then build the recipe.
    let mut tokens_seen = 0;
    let mut start_state = None;
    if from_step > 0 {
        let Some(LogLine::Checkpoint(ck)) =
            lines.iter().find(|l| matches!(l, LogLine::Checkpoint(c) if c.step == from_step))
        else {
            bail!("the log names no checkpoint at step {from_step}");
        };
        if ck.path.starts_with('/') || ck.path.contains("..") {
            bail!("checkpoint path {:?} leaves the run folder", ck.path);
        }
        let path = run_dir.join(&ck.path);
        let digest = proof::sha256_file(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if digest != ck.sha256 {
            bail!("{} does not match the sha256 the log recorded", path.display());
        }
        let (meta, state) = checkpoint::load(&path, &cfg.name, device)?;
        if meta.data_manifest != data.manifest_sha256.as_str() {
            bail!("{} was trained on data {}, not {}", path.display(), meta.data_manifest, data.manifest_sha256);
        }
        tokens_seen = meta.tokens_seen;
        start_state = Some((path, state));
    }

    let train_tokens = data.train()?;
    let windows = Windows::new(&train_tokens, cfg.seq_len)?;
    confine::restrict(device, &confine::Writable::nothing(), strictness)?.report();
    let mut recipe = build_recipe(cfg, device)?;
    if let Some((path, state)) = start_state {
        recipe.load_state(&state).with_context(|| format!("{}", path.display()))?;
    }
    let mut order = TrainOrder::new(cfg.seed, windows.len());
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    for want in &logged {
        let step = want.step;
        let rows = rows_for_step(cfg, recipe.batch_rows(), tokens_seen);
        let (x, y) = windows.batch(&order.rows(tokens_seen / cfg.seq_len as u64, rows), device);
        seed_step(cfg, step);
        let stats = recipe.train_step(&x, &y, &StepCtx { step, tokens_seen, token_budget: cfg.token_budget });
        tokens_seen += rows as u64 * cfg.seq_len as u64;
        if tokens_seen != want.tokens_seen {
            bail!("step {step}: replay reached {tokens_seen} tokens, the log says {}", want.tokens_seen);
        }
        let abs_diff = (stats.loss - want.loss).abs();
        out.push(ReplayStep {
            step,
            logged_loss: want.loss,
            replayed_loss: stats.loss,
            abs_diff: if abs_diff.is_nan() { f64::INFINITY } else { abs_diff },
        });
    }
    let max_abs_diff = out.iter().map(|s| s.abs_diff).fold(0.0, f64::max);
    Ok(ReplayReport { from_step, steps: out, max_abs_diff, compute_s: started.elapsed().as_secs_f64() })
}
