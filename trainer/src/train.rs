//! `karpa-train train`: the harness's loop. It owns the data order, the token
//! budget (training stops at exactly the budget), seeding, the log, checkpoints
//! and public-split evaluation; the recipe only takes steps.

use crate::checkpoint::{self, CheckpointMeta};
use crate::config::{ProtocolConfig, RECIPE_TOML};
use crate::confine::{self, Strictness};
use crate::data::dataset::{Dataset, TrainOrder, Windows};
use crate::eval;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use proof::log::*;
use proof::state::{CheckpointRef, FinalState};
use proof::{fsio, sha256_file};
use recipe::{ModelSpec, Recipe, StepCtx};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

pub const HARNESS_VERSION: &str = env!("CARGO_PKG_VERSION");
pub const LOG_FILE: &str = "log.jsonl";
pub const FINAL_STATE_FILE: &str = "final_state.json";

pub struct TrainOptions {
    pub out: PathBuf,
    pub device: Device,
    pub quiet: bool,
    /// Landlock before the recipe is built: only the run folder stays writable.
    pub confine: Strictness,
}

/// Builds the recipe for `cfg`, seeded, with the config's caps enforced.
pub fn build_recipe(cfg: &ProtocolConfig, device: Device) -> Result<Box<dyn Recipe>> {
    tch::manual_seed(cfg.seed as i64);
    let spec = ModelSpec { vocab_size: cfg.data.vocab_size as i64, seq_len: cfg.seq_len, device };
    let recipe = recipe::build(RECIPE_TOML, &cfg.name, spec)?;
    let params = recipe.num_params();
    if params > cfg.max_params {
        bail!("the recipe has {params} parameters; config {} allows {}", cfg.name, cfg.max_params);
    }
    let flops = 6.0 * params as f64 * cfg.token_budget as f64;
    if flops > cfg.max_train_flops {
        bail!("training would take {flops:.3e} FLOPs (6·N·D); config {} allows {:.3e}", cfg.name, cfg.max_train_flops);
    }
    if recipe.batch_rows() <= 0 {
        bail!("the recipe asks for {} rows per step", recipe.batch_rows());
    }
    Ok(recipe)
}

/// Rows for the step that starts at `tokens_seen`: the recipe's batch, cut short
/// at the end so the run consumes exactly the budget.
pub fn rows_for_step(cfg: &ProtocolConfig, batch_rows: i64, tokens_seen: u64) -> usize {
    let left_rows = (cfg.token_budget - tokens_seen) / cfg.seq_len as u64;
    (batch_rows as u64).min(left_rows) as usize
}

/// Seeds torch's generator per step, so anything random inside a step (dropout,
/// sampling) is the same when the step is replayed from a checkpoint.
pub fn seed_step(cfg: &ProtocolConfig, step: u64) {
    tch::manual_seed(cfg.seed.wrapping_mul(1_000_003).wrapping_add(step) as i64);
}

pub fn train(cfg: &ProtocolConfig, data: &Dataset, opts: &TrainOptions) -> Result<FinalState> {
    if opts.out.exists() {
        bail!("{} already exists: choose a new run folder", opts.out.display());
    }
    let staging = partial_dir(&opts.out);
    if staging.exists() {
        // What an interrupted run left behind: start over cleanly.
        std::fs::remove_dir_all(&staging).with_context(|| format!("cannot clear {}", staging.display()))?;
    }
    std::fs::create_dir_all(staging.join("checkpoints"))
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let state = run(cfg, data, opts, &staging)?;
    std::fs::rename(&staging, &opts.out).with_context(|| format!("cannot move the run to {}", opts.out.display()))?;
    Ok(state)
}

/// Where a run is written until it completes.
pub fn partial_dir(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!("{name}.partial"))
}

fn run(cfg: &ProtocolConfig, data: &Dataset, opts: &TrainOptions, dir: &Path) -> Result<FinalState> {
    let device = opts.device;
    let train_tokens = data.train()?;
    let train_windows = Windows::new(&train_tokens, cfg.seq_len)?;
    let val_tokens = data.val()?;
    let val_windows = Windows::new(&val_tokens, cfg.seq_len)?;
    let token_bytes = data.token_bytes()?;
    let mut order = TrainOrder::new(cfg.seed, train_windows.len());
    let mut log = LogWriter::create(&dir.join(LOG_FILE))?;

    // Everything is open: from here on only the run folder can be written (and
    // renamed into place in its parent when the run completes).
    let parent = opts.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let writable = confine::Writable { dirs: vec![dir.to_path_buf()], rename_in: vec![parent.to_path_buf()] };
    confine::restrict(device, &writable, opts.confine)?.report();
    let mut recipe = build_recipe(cfg, device)?;
    log.write(&LogLine::Start(StartLine {
        format: LOG_FORMAT.into(),
        config: cfg.name.clone(),
        seed: cfg.seed,
        device: format!("{device:?}"),
        threads: tch::get_num_threads() as i64,
        params: recipe.num_params(),
        token_budget: cfg.token_budget,
        seq_len: cfg.seq_len,
        batch_rows: recipe.batch_rows(),
        data_manifest: data.manifest_sha256.clone(),
        harness_version: HARNESS_VERSION.into(),
    }))?;

    let mut progress = Progress::new(cfg.token_budget, opts.quiet);
    let mut due_checkpoints = cfg.checkpoint_tokens().into_iter().peekable();
    let mut checkpoints = Vec::new();
    let (mut step, mut tokens_seen, mut last_loss, mut val_bpb) = (0u64, 0u64, f64::NAN, f64::NAN);
    let start = Instant::now();
    while tokens_seen < cfg.token_budget {
        let rows = rows_for_step(cfg, recipe.batch_rows(), tokens_seen);
        let row0 = tokens_seen / cfg.seq_len as u64;
        let (x, y) = train_windows.batch(&order.rows(row0, rows), device);
        step += 1;
        seed_step(cfg, step);
        let ctx = StepCtx { step, tokens_seen, token_budget: cfg.token_budget };
        let stats = recipe.train_step(&x, &y, &ctx);
        tokens_seen += (rows as u64) * cfg.seq_len as u64;
        let elapsed_s = start.elapsed().as_secs_f64();
        let tokens_per_s = tokens_seen as f64 / elapsed_s.max(1e-9);
        last_loss = stats.loss;
        log.write(&LogLine::Step(StepLine {
            step,
            tokens_seen,
            loss: stats.loss,
            lr: stats.lr,
            grad_norm: stats.grad_norm,
            elapsed_s,
            tokens_per_s,
        }))?;
        progress.update(step, tokens_seen, stats.loss, tokens_per_s);
        if !stats.loss.is_finite() {
            bail!("training diverged at step {step}: loss {}", stats.loss);
        }

        if due_checkpoints.peek().is_some_and(|&t| tokens_seen >= t) {
            while due_checkpoints.next_if(|&t| tokens_seen >= t).is_some() {}
            let val = eval::evaluate(recipe.as_ref(), &val_windows, cfg.val_tokens, cfg.seq_len, &token_bytes, device)
                .context("public validation")?
                .result;
            val_bpb = val.bpb;
            log.write(&LogLine::Val(ValLine {
                step,
                tokens_seen,
                val_loss: val.loss,
                val_bpb: val.bpb,
                eval_tokens: val.tokens,
            }))?;
            let rel = format!("checkpoints/step-{step}.safetensors");
            let meta = CheckpointMeta {
                config: cfg.name.clone(),
                step,
                tokens_seen,
                data_manifest: data.manifest_sha256.to_string(),
            };
            let sha256 = checkpoint::save(&dir.join(&rel), &recipe.state(), &meta)?;
            log.write(&LogLine::Checkpoint(CheckpointLine {
                step,
                tokens_seen,
                path: rel.clone(),
                sha256: sha256.clone(),
            }))?;
            progress.note(&format!("step {step}: val_bpb {:.4}, checkpoint {rel}", val.bpb));
            checkpoints.push(CheckpointRef { step, tokens_seen, path: rel, sha256 });
        }
    }
    progress.finish();
    let elapsed_s = start.elapsed().as_secs_f64();
    log.write(&LogLine::End(EndLine { steps: step, tokens_seen, elapsed_s, final_loss: last_loss }))?;
    drop(log);

    let state = FinalState {
        config: cfg.name.clone(),
        seed: cfg.seed,
        steps: step,
        tokens_seen,
        params: recipe.num_params(),
        final_loss: last_loss,
        val_bpb,
        elapsed_s,
        data_manifest: data.manifest_sha256.clone(),
        log_sha256: sha256_file(&dir.join(LOG_FILE))?,
        checkpoints,
    };
    fsio::write_json_atomic(&dir.join(FINAL_STATE_FILE), &state)?;
    Ok(state)
}

/// Appends JSON lines and flushes each one, so a crash leaves a readable prefix.
struct LogWriter {
    file: std::fs::File,
}

impl LogWriter {
    fn create(path: &Path) -> Result<Self> {
        Ok(LogWriter {
            file: std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        })
    }

    fn write(&mut self, line: &LogLine) -> Result<()> {
        let mut bytes = serde_json::to_vec(line)?;
        bytes.push(b'\n');
        self.file.write_all(&bytes).context("cannot write the training log")?;
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = self.file.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_step_is_cut_to_the_exact_budget() {
        let mut cfg = crate::config::load("micro").unwrap();
        cfg.token_budget = 64 * 21; // 21 rows; a recipe taking 8 rows per step
        let mut seen = 0;
        let mut rows = Vec::new();
        while seen < cfg.token_budget {
            let r = rows_for_step(&cfg, 8, seen);
            rows.push(r);
            seen += r as u64 * 64;
        }
        assert_eq!(rows, vec![8, 8, 5]);
        assert_eq!(seen, cfg.token_budget);
    }
}
