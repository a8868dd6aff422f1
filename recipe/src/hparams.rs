//! Hyperparameters, one table per protocol config in `recipe.toml`.

use crate::RecipeError;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HParams {
    /// Residual stream width.
    pub d_model: i64,
    pub n_layer: i64,
    pub n_head: i64,
    /// MLP hidden width = mlp_ratio · d_model.
    pub mlp_ratio: i64,
    /// Sequences per optimizer step.
    pub batch_rows: i64,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_frac: f64,
    /// Fraction of the token budget spent warming up linearly.
    pub warmup_frac: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Clip the global gradient norm to this value (0 disables clipping).
    pub grad_clip: f64,
    /// Share the token embedding with the output head.
    pub tie_embeddings: bool,
    /// Standard deviation of the normal initialisation.
    pub init_std: f64,
}

impl HParams {
    pub fn from_toml(text: &str, config: &str) -> Result<Self, RecipeError> {
        let bad = |message: String| RecipeError::BadHParams { config: config.to_string(), message };
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(e.to_string()))?;
        let section = table.get(config).ok_or_else(|| RecipeError::MissingConfig(config.to_string()))?;
        let hp: HParams = section.clone().try_into().map_err(|e: toml::de::Error| bad(e.to_string()))?;
        hp.validate().map_err(bad)?;
        Ok(hp)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("d_model", self.d_model),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("mlp_ratio", self.mlp_ratio),
            ("batch_rows", self.batch_rows),
        ];
        for (name, v) in positive {
            if v <= 0 {
                return Err(format!("{name} must be positive, got {v}"));
            }
        }
        if self.d_model % self.n_head != 0 || (self.d_model / self.n_head) % 2 != 0 {
            return Err(format!(
                "d_model {} must split into {} heads of even width (RoPE rotates pairs)",
                self.d_model, self.n_head
            ));
        }
        let unit = [("min_lr_frac", self.min_lr_frac), ("warmup_frac", self.warmup_frac)];
        for (name, v) in unit {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must lie in [0, 1], got {v}"));
            }
        }
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(format!("{name} must lie in [0, 1), got {v}"));
            }
        }
        let finite_pos = [("lr", self.lr), ("eps", self.eps), ("init_std", self.init_std)];
        for (name, v) in finite_pos {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be a positive number, got {v}"));
            }
        }
        for (name, v) in [("weight_decay", self.weight_decay), ("grad_clip", self.grad_clip)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be a non-negative number, got {v}"));
            }
        }
        Ok(())
    }
}
