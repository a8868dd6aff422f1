//! Protocol configs: what every run of a config must share (data, tokenizer,
//! budget, seed, evaluation size, checkpoint schedule, caps). The files live in
//! `trainer/configs/` (harness paths, so locked); the trainer compiles them in and
//! the validator reads them from the king's tree — both through this type.

use serde::Deserialize;

/// Marks a digest that has not been pinned yet (the data is prepared by the validator).
pub const UNPINNED: &str = "unpinned";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolConfig {
    pub name: String,
    pub about: String,
    pub seed: u64,
    pub seq_len: i64,
    pub token_budget: u64,
    /// Tokens of the public validation split evaluated at each checkpoint.
    pub val_tokens: u64,
    /// Tokens of the hidden split the validator evaluates.
    pub eval_tokens: u64,
    /// Secret (window, cut) pairs the causality check re-scores per hidden evaluation.
    pub causality_rows: u64,
    pub checkpoint_fractions: Vec<f64>,
    pub max_params: i64,
    /// Cap on 6·params·token_budget.
    pub max_train_flops: f64,
    pub data: DataSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub source: String,
    pub vocab_size: u32,
    pub val_fraction: f64,
    pub hidden_fraction: f64,
    pub shard_tokens: u64,
    /// The tokenizer learns from at most this many bytes of train text (in corpus order).
    pub tokenizer_train_bytes: u64,
    /// sha256 of the public `manifest.json`, or "unpinned".
    pub manifest_sha256: String,
    /// sha256 of `tokenizer.json`, or "unpinned".
    pub tokenizer_sha256: String,
}

#[derive(Debug, thiserror::Error)]
#[error("config {name}: {message}")]
pub struct ConfigError {
    pub name: String,
    pub message: String,
}

impl ProtocolConfig {
    /// Parses and checks the text of `trainer/configs/<name>.toml`.
    pub fn from_toml(name: &str, text: &str) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError { name: name.to_string(), message };
        let cfg: ProtocolConfig = toml::from_str(text).map_err(|e| err(format!("does not parse: {e}")))?;
        if cfg.name != name {
            return Err(err(format!("names itself {:?}", cfg.name)));
        }
        cfg.validate().map_err(|m| err(format!("is inconsistent: {m}")))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let t = self.seq_len as u64;
        if self.seq_len <= 0 {
            return Err(format!("seq_len must be positive"));
        }
        for (what, n) in
            [("token_budget", self.token_budget), ("val_tokens", self.val_tokens), ("eval_tokens", self.eval_tokens)]
        {
            if n == 0 || n % t != 0 {
                return Err(format!("{what} {n} must be a positive multiple of seq_len {t}"));
            }
        }
        if self.checkpoint_fractions.is_empty()
            || self.checkpoint_fractions.windows(2).any(|w| w[0] >= w[1])
            || self.checkpoint_fractions.iter().any(|f| !(*f > 0.0 && *f <= 1.0))
            || self.checkpoint_fractions.last() != Some(&1.0)
        {
            return Err(format!("checkpoint_fractions must rise strictly within (0, 1] and end at 1.0"));
        }
        if self.causality_rows == 0 {
            return Err("causality_rows must be positive: every hidden score is checked".into());
        }
        let d = &self.data;
        if d.vocab_size < 260 {
            return Err(format!("vocab_size {} is below the 256 byte tokens plus specials", d.vocab_size));
        }
        if !(d.val_fraction > 0.0 && d.hidden_fraction > 0.0 && d.val_fraction + d.hidden_fraction < 1.0) {
            return Err(format!("val_fraction and hidden_fraction must be positive and leave room for train"));
        }
        Ok(())
    }

    /// Tokens after which each checkpoint is written (the first step that reaches it).
    pub fn checkpoint_tokens(&self) -> Vec<u64> {
        let t = self.seq_len as u64;
        self.checkpoint_fractions
            .iter()
            .map(|f| (((self.token_budget as f64 * f) / t as f64).ceil() as u64 * t).min(self.token_budget))
            .collect()
    }

    pub fn data_pinned(&self) -> bool {
        self.data.manifest_sha256 != UNPINNED
    }
}
