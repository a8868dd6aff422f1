//! Protocol configs: what every run of a config must share (data, tokenizer,
//! budget, seed, evaluation size, checkpoint schedule, caps). They are compiled
//! into the harness, so a miner cannot change them without changing the harness
//! digest.

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The recipe's hyperparameter file, compiled in so the binary is the whole recipe.
pub const RECIPE_TOML: &str = include_str!("../../recipe/recipe.toml");

const CONFIGS: &[(&str, &str)] = &[
    ("micro", include_str!("../configs/micro.toml")),
    ("tiny", include_str!("../configs/tiny.toml")),
    ("proxy", include_str!("../configs/proxy.toml")),
    ("karpa-1", include_str!("../configs/karpa-1.toml")),
];

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

impl ProtocolConfig {
    pub fn names() -> impl Iterator<Item = &'static str> {
        CONFIGS.iter().map(|(n, _)| *n)
    }

    pub fn load(name: &str) -> Result<Self> {
        let Some((_, text)) = CONFIGS.iter().find(|(n, _)| *n == name) else {
            bail!("unknown config {name:?}; known: {}", Self::names().collect::<Vec<_>>().join(", "));
        };
        let cfg: ProtocolConfig = toml::from_str(text).with_context(|| format!("config {name} does not parse"))?;
        cfg.validate().with_context(|| format!("config {name} is inconsistent"))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let t = self.seq_len as u64;
        if self.seq_len <= 0 {
            bail!("seq_len must be positive");
        }
        for (what, n) in
            [("token_budget", self.token_budget), ("val_tokens", self.val_tokens), ("eval_tokens", self.eval_tokens)]
        {
            if n == 0 || n % t != 0 {
                bail!("{what} {n} must be a positive multiple of seq_len {t}");
            }
        }
        if self.checkpoint_fractions.is_empty()
            || self.checkpoint_fractions.windows(2).any(|w| w[0] >= w[1])
            || self.checkpoint_fractions.iter().any(|f| !(*f > 0.0 && *f <= 1.0))
            || self.checkpoint_fractions.last() != Some(&1.0)
        {
            bail!("checkpoint_fractions must rise strictly within (0, 1] and end at 1.0");
        }
        let d = &self.data;
        if d.vocab_size < 260 {
            bail!("vocab_size {} is below the 256 byte tokens plus specials", d.vocab_size);
        }
        if !(d.val_fraction > 0.0 && d.hidden_fraction > 0.0 && d.val_fraction + d.hidden_fraction < 1.0) {
            bail!("val_fraction and hidden_fraction must be positive and leave room for train");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_loads_and_its_recipe_table_exists() {
        for name in ProtocolConfig::names() {
            let cfg = ProtocolConfig::load(name).unwrap();
            assert_eq!(cfg.name, name);
            recipe::HParams::from_toml(RECIPE_TOML, name).unwrap();
            assert_eq!(*cfg.checkpoint_tokens().last().unwrap(), cfg.token_budget);
        }
    }

    #[test]
    fn karpa_1_has_the_seed_shape() {
        let cfg = ProtocolConfig::load("karpa-1").unwrap();
        let hp = recipe::HParams::from_toml(RECIPE_TOML, "karpa-1").unwrap();
        assert_eq!((hp.d_model, hp.n_layer, cfg.seq_len, cfg.token_budget), (1024, 16, 1024, 262_144_000));
    }

    #[test]
    fn unknown_config_is_a_clear_error() {
        let err = ProtocolConfig::load("huge").unwrap_err().to_string();
        assert!(err.contains("unknown config \"huge\"") && err.contains("micro"), "{err}");
    }
}
