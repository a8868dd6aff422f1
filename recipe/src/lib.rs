//! # The Karpa recipe
//!
//! This crate is the only code a miner changes. The harness (`karpa-train`) owns the
//! data, the token budget, seeding, logging, checkpoints and evaluation; it drives a
//! [`Recipe`] through four calls: build it, take one optimizer step on a batch, give
//! logits for evaluation, and hand over its state for checkpoints.
//!
//! Read it in this order:
//! 1. `recipe.toml` — the hyperparameters, one table per protocol config;
//! 2. [`hparams`] — what each knob means and its bounds;
//! 3. [`model`] — the GPT (RMSNorm, RoPE, causal attention, MLP);
//! 4. [`optim`] — AdamW with warmup and cosine decay.
//!
//! Obvious places to improve it: the optimizer (Muon for matrices), QK-norm,
//! ReLU² in the MLP, value embeddings, initialisation, the schedule.

pub mod hparams;
pub mod model;
pub mod optim;

use tch::{Device, Tensor};

pub use hparams::HParams;

/// What the protocol config fixes about the model's interface.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    pub vocab_size: i64,
    pub seq_len: i64,
    pub device: Device,
}

/// Where training stands when a step begins. The recipe derives its schedule from it.
#[derive(Debug, Clone, Copy)]
pub struct StepCtx {
    /// 1-based index of the step about to run.
    pub step: u64,
    /// Tokens consumed before this step.
    pub tokens_seen: u64,
    /// The config's total token budget.
    pub token_budget: u64,
}

impl StepCtx {
    /// Fraction of the budget consumed before this step, in [0, 1).
    pub fn progress(&self) -> f64 {
        self.tokens_seen as f64 / self.token_budget as f64
    }
}

/// What one optimizer step reports to the log.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// Mean next-token cross-entropy over the batch, in nats (before the update).
    pub loss: f64,
    pub lr: f64,
    /// Global L2 norm of the gradient before clipping.
    pub grad_norm: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("recipe.toml has no table [{0}]")]
    MissingConfig(String),
    #[error("recipe.toml [{config}]: {message}")]
    BadHParams { config: String, message: String },
    #[error("state tensor {0:?} is missing")]
    MissingState(String),
    #[error("state tensor {name:?} has shape {found:?}, expected {expected:?}")]
    StateShape { name: String, found: Vec<i64>, expected: Vec<i64> },
    #[error("unexpected state tensor {0:?}")]
    UnexpectedState(String),
}

/// The interface the harness drives.
pub trait Recipe {
    /// Rows (sequences of `seq_len` tokens) per optimizer step.
    fn batch_rows(&self) -> i64;

    /// One optimizer step on `inputs`/`targets` (both `[rows, seq_len]`, int64).
    fn train_step(&mut self, inputs: &Tensor, targets: &Tensor, ctx: &StepCtx) -> StepStats;

    /// Next-token logits `[rows, seq_len, vocab]` in f32. Must be causal: the
    /// harness probes that changing later tokens never changes earlier logits.
    fn logits(&self, inputs: &Tensor) -> Tensor;

    /// Every tensor needed to resume training bit for bit (weights and optimizer
    /// state), by stable name.
    fn state(&self) -> Vec<(String, Tensor)>;

    /// Restores what [`Recipe::state`] returned.
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), RecipeError>;

    /// Trainable parameters (counted against the config's cap).
    fn num_params(&self) -> i64;
}

/// Builds the recipe for one protocol config from the text of `recipe.toml`.
pub fn build(recipe_toml: &str, config: &str, spec: ModelSpec) -> Result<Box<dyn Recipe>, RecipeError> {
    let hp = HParams::from_toml(recipe_toml, config)?;
    Ok(Box::new(model::Gpt::new(hp, spec)))
}
