//! Every hidden score the decision uses is checked for causality: the scoring
//! pass records each token's nats, then a second sandboxed process re-scores
//! secret (window, cut) pairs with each window's future replaced, and the judge
//! compares the two here (docs/PROTOCOL.md, "Causality check"). The pairs are
//! chosen after submission by HMAC(validator secret, key), so the recipe cannot
//! know in the scoring pass which of its numbers will be checked.

use super::evaluate::{keyed_choice, run_harness, tail_of, EvalSetup};
use super::Finding;
use crate::sandbox::Sandbox;
use anyhow::{bail, Context, Result};
use proof::causality::aim::Aim;
use proof::causality::{compare, CausalityReport, Pair, Tolerance};
use proof::config::ProtocolConfig;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A checked hidden score.
#[derive(Debug, Clone)]
pub struct HiddenScore {
    pub bpb: f64,
    pub causality: CausalityReport,
    /// Wall time of the scoring and the checking process.
    pub eval_s: f64,
    pub check_s: f64,
    /// The harness's model time in both, as they report it.
    pub eval_compute_s: f64,
    pub check_compute_s: f64,
    /// The scoring pass's per-token nats (a floor's reference is their mean over seeds).
    pub nats: Vec<f32>,
}

/// `rows` pairs for the evaluation named by `key`, in the order the check must
/// run them. Without `aim` every pair is uniform: window over the evaluated
/// windows, cut over every position 0…T−1. With it one pair in [`AIMED_EVERY`]
/// is aimed: its position drawn in proportion to the recipe's gain over the king
/// there (`proof::causality::aim`). Each window's cuts go to successive rounds in
/// rising order; a round lists its windows in stream order.
pub fn choose_pairs(secret: &[u8], key: &str, cfg: &ProtocolConfig, rows: u64, aim: Option<&Aim>) -> Vec<Pair> {
    let (windows, seq_len) = (cfg.eval_tokens / cfg.seq_len as u64, cfg.seq_len as u64);
    let mut cuts: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for i in 0..rows {
        let (window, cut) = match aim {
            Some(aim) if i % AIMED_EVERY == AIMED_EVERY - 1 => {
                let at = aim.draw(keyed_choice(secret, &format!("causality-aim-{i}"), key)) as u64;
                (at / seq_len, at % seq_len)
            }
            _ => (
                keyed_choice(secret, &format!("causality-window-{i}"), key) % windows,
                keyed_choice(secret, &format!("causality-cut-{i}"), key) % seq_len,
            ),
        };
        cuts.entry(window as u32).or_default().push(cut as u32);
    }
    for c in cuts.values_mut() {
        c.sort_unstable();
        c.dedup();
    }
    let rounds = cuts.values().map(Vec::len).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|r| cuts.iter().filter_map(move |(&window, c)| c.get(r).map(|&cut| Pair { window, cut })))
        .collect()
}

/// One pair in this many is aimed when the king's per-token nats are known. A
/// quarter sees a cheat concentrated on its dearest positions in > 99.9 % of
/// tiny's judgments, and leaves three quarters uniform for the one cheat aiming
/// cannot see (docs/PROTOCOL.md, "Power").
pub const AIMED_EVERY: u64 = 4;

/// What a hidden score is checked with: the key its pairs are drawn under, how
/// many, and the king's per-token nats to aim some of them (None: all uniform).
#[derive(Debug, Clone, Copy)]
pub struct Checks<'a> {
    pub key: &'a str,
    pub rows: u64,
    pub aim_at: Option<&'a [f32]>,
}

/// Scores `checkpoint` on the hidden split with the built harness `bin`, then
/// checks that score's causality with `checks`. `read_only` is what the
/// checkpoint needs mounted. Ok(Err(finding)) when the recipe fails either; Err
/// when we do.
pub fn score_hidden(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    bin: &Path,
    cfg: &ProtocolConfig,
    checkpoint: &Path,
    read_only: Vec<PathBuf>,
    checks: Checks,
) -> Result<std::result::Result<HiddenScore, Finding>> {
    let reject = |msg: String| Ok(Err(Finding::reject("eval.causality", "recipe", None, msg)));
    let dir = tempfile::Builder::new().prefix("karpa-score-").tempdir()?;
    let (nats_file, check_file, pairs_file) =
        (dir.path().join("nats.f32"), dir.path().join("check.f32"), dir.path().join("pairs.json"));
    let common = |cmd: &str| -> Vec<OsString> {
        let mut args: Vec<OsString> =
            [cmd, "--config", cfg.name.as_str(), "--device", setup.device.harness_arg(), "--data"]
                .map(Into::into)
                .into();
        args.extend([setup.data.clone().into(), "--hidden".into(), setup.hidden.clone().into()]);
        args.extend(["--checkpoint".into(), checkpoint.into()]);
        args
    };
    let mounts = [read_only, vec![setup.hidden.clone()]].concat();
    let rw = vec![dir.path().to_path_buf()];

    let mut args = common("eval");
    args.extend(["--split".into(), "hidden".into(), "--nats-out".into(), nats_file.clone().into()]);
    let (eval, result) = run_harness(sandbox, setup, bin, mounts.clone(), rw.clone(), args)?;
    let bpb = result["val_bpb"].as_f64().filter(|b| b.is_finite() && eval.output.status.success());
    let Some(bpb) = bpb else {
        return Ok(Err(Finding::reject(
            "eval.hidden",
            "recipe",
            None,
            format!("hidden evaluation failed: {}", tail_of(&eval.output.stderr)),
        )));
    };
    let scored = proof::causality::read_f32s(&nats_file).context("the scoring pass's nats")?;

    let aim = checks.aim_at.and_then(|reference| match Aim::new(reference, &scored) {
        Ok(aim) => Some(aim),
        Err(why) => {
            // Uniform pairs alone still hold; say why the aimed half is missing.
            tracing::warn!(key = checks.key, "causality pairs not aimed: {why}");
            None
        }
    });
    let pairs = choose_pairs(&setup.secret, checks.key, cfg, checks.rows, aim.as_ref());
    proof::fsio::write_json_atomic(&pairs_file, &pairs)?;
    let mut args = common("causality");
    args.extend(["--pairs".into(), pairs_file.clone().into(), "--out".into(), check_file.clone().into()]);
    let (check, said) = run_harness(sandbox, setup, bin, [mounts, vec![pairs_file]].concat(), rw, args)?;
    if check.timed_out {
        return reject(format!("the recipe ran out of time in the causality check ({:.0} s)", check.seconds));
    }
    match check.output.status.code() {
        Some(0) => {}
        Some(1) => return reject(format!("the causality check could not score the recipe: {}", said["reason"])),
        // The harness's own error, before or after the recipe ran: ours to fix.
        Some(2) => bail!("the causality check could not run: {}", tail_of(&check.output.stderr)),
        _ => return reject(format!("the recipe crashed in the causality check: {}", tail_of(&check.output.stderr))),
    }
    let reference = proof::causality::read_f32s(&check_file).context("the causality check's nats")?;
    let tolerance = Tolerance::for_device(setup.device.is_cuda());
    let report = match compare(&scored, cfg.seq_len as usize, &pairs, &reference, tolerance) {
        Ok(r) => {
            let aimed = if aim.is_some() { (checks.rows / AIMED_EVERY) as usize } else { 0 };
            CausalityReport { aimed, ..r }
        }
        Err(e) => return reject(format!("the causality check's numbers do not line up: {e}")),
    };
    if !report.passed {
        return reject(report.explain());
    }
    let compute = |v: &serde_json::Value| v["compute_s"].as_f64().unwrap_or(0.0);
    Ok(Ok(HiddenScore {
        bpb,
        eval_s: eval.seconds,
        check_s: check.seconds,
        eval_compute_s: compute(&result),
        check_compute_s: compute(&said),
        causality: report,
        nats: scored,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(eval_windows: u64, seq_len: i64, rows: u64) -> ProtocolConfig {
        let mut c = ProtocolConfig::from_toml("tiny", include_str!("../../../trainer/configs/tiny.toml")).unwrap();
        (c.eval_tokens, c.seq_len, c.causality_rows) = (eval_windows * seq_len as u64, seq_len, rows);
        c
    }

    #[test]
    fn pairs_are_keyed_cover_every_position_and_run_in_a_safe_order() {
        let c = cfg(64, 128, 192);
        let pairs = choose_pairs(b"secret", "bundle-a", &c, 192, None);
        assert!(pairs.len() > 150 && pairs.len() <= 192, "{}", pairs.len());
        assert_eq!(pairs, choose_pairs(b"secret", "bundle-a", &c, 192, None));
        assert_ne!(pairs, choose_pairs(b"secret", "bundle-b", &c, 192, None));
        assert_ne!(pairs, choose_pairs(b"other", "bundle-a", &c, 192, None));
        // Each window's cuts rise along the list (state can never carry a later cut's future).
        let mut last: BTreeMap<u32, u32> = BTreeMap::new();
        for p in &pairs {
            assert!(last.insert(p.window, p.cut).is_none_or(|prev| prev < p.cut), "{p:?}");
        }
        // Over many keys, every window and every position — the last included — is drawn.
        let all: Vec<Pair> = (0..40).flat_map(|i| choose_pairs(b"s", &format!("k{i}"), &c, 192, None)).collect();
        let cuts: std::collections::BTreeSet<u32> = all.iter().map(|p| p.cut).collect();
        let windows: std::collections::BTreeSet<u32> = all.iter().map(|p| p.window).collect();
        assert_eq!((cuts.len(), windows.len()), (128, 64));
        let last_position = all.iter().filter(|p| p.cut == 127).count() as f64 / all.len() as f64;
        assert!((last_position - 1.0 / 128.0).abs() < 0.004, "{last_position}");
    }

    #[test]
    fn a_quarter_of_the_pairs_are_aimed_where_the_recipe_beats_the_king() {
        let c = cfg(64, 128, 192);
        let reference = vec![4.0f32; 64 * 128];
        // The recipe beats the king by 3 nats at five positions and loses a little elsewhere.
        let dear = [(3, 17), (9, 0), (30, 127), (41, 64), (63, 5)];
        let mut scored = vec![4.1f32; 64 * 128];
        for &(w, t) in &dear {
            scored[w * 128 + t] = 1.0;
        }
        let aim = Aim::new(&reference, &scored).unwrap();
        let aimed = choose_pairs(b"secret", "bundle-a", &c, 192, Some(&aim));
        let uniform = choose_pairs(b"secret", "bundle-a", &c, 192, None);
        let on_dear = |pairs: &[Pair]| {
            dear.iter().filter(|&&(w, t)| pairs.contains(&Pair { window: w as u32, cut: t as u32 })).count()
        };
        assert_eq!(on_dear(&aimed), 5, "48 aimed draws over five positions see them all");
        assert!(on_dear(&uniform) <= 1);
        // The uniform three quarters are the same draws as without aim.
        let rest: Vec<Pair> =
            aimed.iter().filter(|p| !dear.contains(&(p.window as usize, p.cut as usize))).copied().collect();
        assert!(rest.iter().all(|p| uniform.contains(p)), "the uniform draws changed");
        let mut last: BTreeMap<u32, u32> = BTreeMap::new();
        for p in &aimed {
            assert!(last.insert(p.window, p.cut).is_none_or(|prev| prev < p.cut), "{p:?}");
        }
    }
}
