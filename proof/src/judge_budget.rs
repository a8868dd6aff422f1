//! What judging one submission costs the validator, against what training it
//! cost the miner. The judge runs the causality probe, a forward pass over the
//! hidden split, the causality check (one forward row per secret pair) and a
//! short replay of the log. Counted in FLOPs, the model's size
//! cancels: a forward pass costs 2·N per token, a training step 6·N (forward and
//! backward), so every term is in "training tokens" (one forward token = 1/3).
//!
//! The per-king noise floor and the guard's confirmation runs are not in this
//! budget: the floor is paid once per king, and a confirmation run is a whole
//! training that only a challenger who already cleared the bar gets.

use crate::config::ProtocolConfig;
use serde::Serialize;

/// Optimizer steps replayed from the chosen checkpoint. The first step's loss
/// checks the checkpoint's weights against the log on the harness's batch; the
/// second's checks the update that came between (optimizer state, schedule,
/// clipping). More steps check the same things again.
pub const REPLAY_STEPS: u64 = 2;

/// Rows the causality probe runs forward: 2 rows × (the base, a repeat for
/// determinism, and 4 cut points).
pub const PROBE_FORWARD_ROWS: u64 = 12;

/// A confirmation or noise-floor run re-scores this many times the config's
/// `causality_rows`. Those runs are whole trainings outside the judge's budget
/// (the check adds a few percent to one), and they decide crowns: a crown is
/// checked on the bundle's score and on every confirmation run's.
pub const CONFIRMATION_CAUSALITY_FACTOR: u64 = 8;

/// The most one judgment may cost, as a fraction of the training's compute. It
/// was 1 % before the causality check; the check's power needs the rows that the
/// second percent buys (docs/PROTOCOL.md, "Causality check").
pub const MAX_JUDGE_FRACTION: f64 = 0.02;

/// The judge's compute for one submission, in training tokens (6·N FLOPs each).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct JudgeCompute {
    pub probe: f64,
    pub hidden_eval: f64,
    /// The causality check: `causality_rows` rows of `seq_len` forward.
    pub causality: f64,
    pub replay: f64,
    /// The training it is measured against: the config's token budget.
    pub training: f64,
}

impl JudgeCompute {
    /// Judge compute over training compute.
    pub fn fraction(&self) -> f64 {
        (self.probe + self.hidden_eval + self.causality + self.replay) / self.training
    }
}

impl ProtocolConfig {
    /// The judge's compute for a recipe that trains `batch_rows` rows a step (the
    /// replay re-runs whole steps, so a larger batch makes it dearer).
    pub fn judge_compute(&self, batch_rows: u64) -> JudgeCompute {
        let t = self.seq_len as f64;
        JudgeCompute {
            probe: PROBE_FORWARD_ROWS as f64 * t / 3.0,
            hidden_eval: self.eval_tokens as f64 / 3.0,
            causality: (self.causality_rows as f64) * t / 3.0,
            replay: (REPLAY_STEPS * batch_rows) as f64 * t,
            training: self.token_budget as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_tokens_cost_a_third_of_training_tokens() {
        let cfg = ProtocolConfig::from_toml(
            "x",
            r#"name = "x"
about = ""
seed = 1
seq_len = 100
token_budget = 300_000
val_tokens = 100
eval_tokens = 3_000
causality_rows = 6
checkpoint_fractions = [1.0]
max_params = 1
max_train_flops = 1.0
[data]
source = ""
vocab_size = 300
val_fraction = 0.1
hidden_fraction = 0.1
shard_tokens = 1
tokenizer_train_bytes = 1
manifest_sha256 = "unpinned"
tokenizer_sha256 = "unpinned"
"#,
        )
        .unwrap();
        let c = cfg.judge_compute(4);
        assert_eq!(
            (c.probe, c.hidden_eval, c.causality, c.replay, c.training),
            (400.0, 1000.0, 200.0, 800.0, 300_000.0)
        );
        assert!((c.fraction() - 2400.0 / 300_000.0).abs() < 1e-12);
    }
}
