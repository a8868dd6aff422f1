//! The protocol configs compiled into the harness (see `proof::config`), and the
//! recipe's hyperparameter file, compiled in so a built binary is one recipe.

use anyhow::{bail, Result};
pub use proof::config::{DataSpec, ProtocolConfig, UNPINNED};

/// The recipe's hyperparameter file.
pub const RECIPE_TOML: &str = include_str!("../../recipe/recipe.toml");

const CONFIGS: &[(&str, &str)] = &[
    ("micro", include_str!("../configs/micro.toml")),
    ("tiny", include_str!("../configs/tiny.toml")),
    ("proxy", include_str!("../configs/proxy.toml")),
    ("karpa-1", include_str!("../configs/karpa-1.toml")),
];

pub fn names() -> impl Iterator<Item = &'static str> {
    CONFIGS.iter().map(|(n, _)| *n)
}

pub fn load(name: &str) -> Result<ProtocolConfig> {
    let Some((_, text)) = CONFIGS.iter().find(|(n, _)| *n == name) else {
        bail!("unknown config {name:?}; known: {}", names().collect::<Vec<_>>().join(", "));
    };
    Ok(ProtocolConfig::from_toml(name, text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_loads_and_its_recipe_table_exists() {
        for name in names() {
            let cfg = load(name).unwrap();
            assert_eq!(cfg.name, name);
            recipe::HParams::from_toml(RECIPE_TOML, name).unwrap();
            assert_eq!(*cfg.checkpoint_tokens().last().unwrap(), cfg.token_budget);
        }
    }

    #[test]
    fn karpa_1_has_the_seed_shape() {
        let cfg = load("karpa-1").unwrap();
        let hp = recipe::HParams::from_toml(RECIPE_TOML, "karpa-1").unwrap();
        assert_eq!((hp.d_model, hp.n_layer, cfg.seq_len, cfg.token_budget), (1024, 16, 1024, 262_144_000));
    }

    /// Judging a submission, causality check included, costs at most 2 % of its
    /// training (FLOPs, at the canonical batch). micro is exempt: it exists to run
    /// every stage in seconds.
    #[test]
    fn judging_costs_at_most_two_percent_of_training() {
        for name in names().filter(|n| *n != "micro") {
            let cfg = load(name).unwrap();
            let hp = recipe::HParams::from_toml(RECIPE_TOML, name).unwrap();
            let cost = cfg.judge_compute(hp.batch_rows as u64);
            assert!(
                cost.fraction() <= proof::judge_budget::MAX_JUDGE_FRACTION,
                "{name}: {cost:?} = {}",
                cost.fraction()
            );
        }
    }

    #[test]
    fn unknown_config_is_a_clear_error() {
        let err = load("huge").unwrap_err().to_string();
        assert!(err.contains("unknown config \"huge\"") && err.contains("micro"), "{err}");
    }
}
