//! `--agent builtin`: compass search over the config's table of recipe.toml.
//!
//! From the best recipe, try each knob one step down and one step up (×÷2 for
//! scales, ±1 for counts), in the order of how much such knobs usually matter
//! for a small transformer. A kept move makes a new best and the compass starts
//! again from it; when every move of a step size has been tried from the best,
//! the step halves (in log space: ×÷√2, then ×÷2^¼). It is budget-aware in the
//! way that matters here: every move costs one run unless it earns a second
//! (see `keep`), and a move already tried — here or by the network — costs
//! nothing, so the search is stateless: its next proposal is a function of the
//! best tree and the record, and a resumed run picks up where it stopped.
//!
//! Another strategy is one more [`Agent`] beside this one.

use super::agent::{Agent, Context, Proposal, Proposed};
use anyhow::{Context as _, Result};

const TOML: &str = "recipe/recipe.toml";

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A positive real, moved multiplicatively.
    Scale,
    /// A positive integer, moved multiplicatively (rounded).
    Count,
    /// In [0, 1], moved multiplicatively and clamped.
    Fraction,
    /// In [0, 1): 1 − x moved multiplicatively (β₂ 0.95 → 0.975 → …).
    OneMinus,
    /// A positive integer, ±1 (first step size only).
    Step,
}

/// The knobs, most sensitive first.
const KNOBS: &[(&str, Kind)] = &[
    ("lr", Kind::Scale),
    ("batch_rows", Kind::Count),
    ("warmup_frac", Kind::Fraction),
    ("weight_decay", Kind::Scale),
    ("min_lr_frac", Kind::Fraction),
    ("init_std", Kind::Scale),
    ("beta2", Kind::OneMinus),
    ("grad_clip", Kind::Scale),
    ("n_layer", Kind::Step),
    ("mlp_ratio", Kind::Step),
];

/// Step sizes: factors 2, √2, 2^¼.
const LEVELS: u32 = 3;

pub struct Compass;

impl Agent for Compass {
    fn name(&self) -> String {
        "builtin:compass".into()
    }

    fn propose(&mut self, cx: &Context<'_>) -> Result<Proposed> {
        let bytes = cx.repo.file(cx.best_tree, TOML)?.context("the best recipe has no recipe/recipe.toml")?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        for level in 0..LEVELS {
            for (key, kind) in KNOBS {
                for up in [false, true] {
                    let Some((from, to, edited)) = moved(&text, cx.config, key, *kind, level, up)? else { continue };
                    let tree = cx.repo.edit_tree(cx.best_tree, &[(TOML.into(), Some(edited.into_bytes()))])?;
                    if cx.tried(tree)? {
                        continue;
                    }
                    return Ok(Proposed::Change(Proposal {
                        tree,
                        description: format!("{}.{key} {from} → {to}", cx.config),
                        rationale: rationale(cx.config, key, &from, &to, level),
                        dropped: vec![],
                    }));
                }
            }
        }
        Ok(Proposed::Exhausted)
    }
}

/// recipe.toml with `[config].key` moved one step, formatting kept; None when
/// the knob is absent or the move leaves its range or changes nothing.
fn moved(
    text: &str,
    config: &str,
    key: &str,
    kind: Kind,
    level: u32,
    up: bool,
) -> Result<Option<(String, String, String)>> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("recipe.toml does not parse")?;
    let Some(item) = doc.get_mut(config).and_then(|t| t.get_mut(key)) else { return Ok(None) };
    let factor = 2f64.powf(1.0 / 2f64.powi(level as i32));
    let factor = if up { factor } else { 1.0 / factor };
    let new: toml_edit::Value = match (kind, item.as_float(), item.as_integer()) {
        (Kind::Scale, Some(x), _) if x > 0.0 => round_sig(x * factor).into(),
        (Kind::Fraction, Some(x), _) if x > 0.0 && (x * factor) <= 1.0 => round_sig(x * factor).into(),
        (Kind::OneMinus, Some(x), _) if x < 1.0 => round_sig(1.0 - (1.0 - x) * factor).into(),
        (Kind::Count, _, Some(n)) => ((n as f64 * factor).round() as i64).into(),
        (Kind::Step, _, Some(n)) if level == 0 => (if up { n + 1 } else { n - 1 }).into(),
        _ => return Ok(None),
    };
    let fine = match (new.as_float(), new.as_integer()) {
        (Some(x), _) => x.is_finite() && x > 0.0 && (!matches!(kind, Kind::OneMinus) || x < 1.0),
        (_, Some(n)) => n >= 1,
        _ => false,
    };
    let from = item.as_value().map(bare).unwrap_or_default();
    let to = bare(&new);
    if !fine || from == to {
        return Ok(None);
    }
    let decor = item.as_value().map(|v| v.decor().clone());
    *item = toml_edit::value(new);
    if let (Some(decor), Some(v)) = (decor, item.as_value_mut()) {
        *v.decor_mut() = decor;
    }
    Ok(Some((from, to, doc.to_string())))
}

/// A value as written, without the spaces and comment around it.
fn bare(v: &toml_edit::Value) -> String {
    let mut v = v.clone();
    v.decor_mut().clear();
    v.to_string()
}

/// Four significant digits: 0.003 × √2 is 0.004243, not 0.0042426406871192854.
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

fn rationale(config: &str, key: &str, from: &str, to: &str, level: u32) -> String {
    format!(
        "# {config}: {key} {from} → {to}\n\n\
         Found by `karpa mine`'s compass search over recipe.toml: from the best recipe it tries every \
         knob one step down and one step up, step size {} at this stage, and keeps a move only when two \
         runs with different seeds beat the best by the margin the validator's rule needs.\n\n\
         Only the hyperparameter changes; the model and the optimiser's code are the king's. The numbers \
         that justified keeping it are in the miner's results.tsv and in the bundle's training log.\n",
        ["×÷2", "×÷√2", "×÷2^¼"][level.min(2) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "[micro]   # tests\nlr = 3e-3\nbatch_rows = 8 # rows\nbeta2 = 0.95\nn_layer = 2\n\n[tiny]\nlr = 2e-3\n";

    #[test]
    fn a_move_changes_one_value_of_one_table_and_keeps_the_rest() {
        let (from, to, out) = moved(TEXT, "micro", "batch_rows", Kind::Count, 0, false).unwrap().unwrap();
        assert_eq!((from.as_str(), to.as_str()), ("8", "4"));
        assert_eq!(out, TEXT.replace("batch_rows = 8 #", "batch_rows = 4 #"));
        let (_, to, out) = moved(TEXT, "micro", "lr", Kind::Scale, 1, true).unwrap().unwrap();
        assert_eq!(to, "0.004243");
        assert!(out.contains("[tiny]\nlr = 2e-3"), "{out}");
        let (_, to, _) = moved(TEXT, "micro", "beta2", Kind::OneMinus, 0, true).unwrap().unwrap();
        assert_eq!(to, "0.9");
        let (_, to, _) = moved(TEXT, "micro", "beta2", Kind::OneMinus, 0, false).unwrap().unwrap();
        assert_eq!(to, "0.975");
    }

    #[test]
    fn moves_that_leave_the_range_or_change_nothing_are_not_proposed() {
        let one = "[micro]\nbatch_rows = 1\nn_layer = 1\nwarmup_frac = 0.8\n";
        assert!(moved(one, "micro", "batch_rows", Kind::Count, 0, false).unwrap().is_none(), "0 rows");
        assert!(moved(one, "micro", "batch_rows", Kind::Count, 2, true).unwrap().is_none(), "1 × 1.19 rounds to 1");
        assert!(moved(one, "micro", "n_layer", Kind::Step, 0, false).unwrap().is_none());
        assert!(moved(one, "micro", "n_layer", Kind::Step, 1, true).unwrap().is_none(), "counts step once");
        assert!(moved(one, "micro", "warmup_frac", Kind::Fraction, 0, true).unwrap().is_none(), "1.6 > 1");
        assert!(moved(one, "micro", "lr", Kind::Scale, 0, true).unwrap().is_none(), "absent knob");
        assert!(moved(one, "tiny", "lr", Kind::Scale, 0, true).unwrap().is_none(), "absent table");
    }
}
