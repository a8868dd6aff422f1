//! `karpa-train bench`: raw training throughput of the recipe on a config's data,
//! without logging, evaluation or checkpoints (what bench/train_eager.py mirrors).

use crate::config::ProtocolConfig;
use crate::confine::{self, Strictness};
use crate::data::dataset::{Dataset, TrainOrder, Windows};
use crate::train::{build_recipe, rows_for_step};
use anyhow::Result;
use recipe::StepCtx;
use serde::Serialize;
use std::time::Instant;
use tch::Device;

const WARMUP_STEPS: u64 = 3;

#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub config: String,
    pub device: String,
    /// Trainable parameters: MFU = 6 · params · tokens_per_s / peak FLOP/s.
    pub params: i64,
    pub steps: u64,
    pub tokens: u64,
    pub tokens_per_s: f64,
    pub ms_per_step: f64,
    pub final_loss: f64,
    pub threads: i64,
}

/// Maps the training data, confines the process (see [`confine`]), then builds and times the recipe.
pub fn bench(
    cfg: &ProtocolConfig,
    data: &Dataset,
    steps: u64,
    device: Device,
    strictness: Strictness,
) -> Result<BenchResult> {
    let train = data.train()?;
    let windows = Windows::new(&train, cfg.seq_len)?;
    confine::restrict(device, &confine::Writable::nothing(), strictness)?.report();
    let mut recipe = build_recipe(cfg, device)?;
    let mut order = TrainOrder::new(cfg.seed, windows.len());
    let (mut tokens_seen, mut timed_tokens, mut loss) = (0u64, 0u64, f64::NAN);
    let mut start = Instant::now();
    for step in 1..=WARMUP_STEPS + steps {
        if step == WARMUP_STEPS + 1 {
            start = Instant::now();
        }
        let rows = rows_for_step(cfg, recipe.batch_rows(), tokens_seen % cfg.token_budget);
        let (x, y) = windows.batch(&order.rows(tokens_seen / cfg.seq_len as u64, rows), device);
        let ctx = StepCtx { step, tokens_seen: tokens_seen % cfg.token_budget, token_budget: cfg.token_budget };
        loss = recipe.train_step(&x, &y, &ctx).loss;
        let n = rows as u64 * cfg.seq_len as u64;
        tokens_seen += n;
        if step > WARMUP_STEPS {
            timed_tokens += n;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(BenchResult {
        config: cfg.name.clone(),
        device: format!("{device:?}"),
        params: recipe.num_params(),
        steps,
        tokens: timed_tokens,
        tokens_per_s: timed_tokens as f64 / secs,
        ms_per_step: secs * 1e3 / steps as f64,
        final_loss: loss,
        threads: tch::get_num_threads() as i64,
    })
}
