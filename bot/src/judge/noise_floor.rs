//! `karpa noise-floor`: train the king with n seeds through the same sandboxed
//! path the judge uses, and evaluate each on the hidden split. The spread of those
//! numbers is what a challenger's gain must clear. The judge's confirmation run
//! is one more such run, of the challenger, with a seed the validator picks.

use super::decision::NoiseFloor;
use super::evaluate::{build, run_harness, EvalSetup};
use crate::repo::{King, RecipeRepo};
use crate::sandbox::Sandbox;
use anyhow::{bail, Result};
use std::ffi::OsString;
use std::path::Path;

/// Trains and evaluates the king once per seed offset in `seeds` (0..n for a floor).
pub fn measure(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    repo: &RecipeRepo,
    king: &King,
    config: &str,
    seeds: std::ops::Range<u64>,
) -> Result<NoiseFloor> {
    if seeds.end < seeds.start + 2 {
        bail!("a noise floor needs at least 2 seeds");
    }
    let work = tempfile::Builder::new().prefix("karpa-noise-").tempdir()?;
    let bin = match build(sandbox, setup, repo, king.tree, work.path())? {
        Ok(bin) => bin,
        Err(why) => bail!("{} does not build in the sandbox: {why}", king.tag),
    };
    let mut values = Vec::new();
    for seed in seeds {
        match seeded_bpb(sandbox, setup, &bin, config, seed, work.path())? {
            Ok(bpb) => values.push(bpb),
            Err(why) => bail!("seed {seed}: {why}"),
        }
        eprintln!("karpa noise-floor: {} seed +{seed}: hidden bpb {:.5}", king.tag, values[values.len() - 1]);
    }
    Ok(NoiseFloor { king: king.tag.clone(), config: config.to_string(), values })
}

/// Trains the built harness `bin` with `seed_offset` and evaluates its last
/// checkpoint on the hidden split. Ok(Err(why)) when the recipe itself fails.
pub fn seeded_bpb(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    bin: &Path,
    config: &str,
    seed_offset: u64,
    work: &Path,
) -> Result<std::result::Result<f64, String>> {
    let runs = work.join("runs");
    let out = runs.join(format!("seed-{seed_offset}"));
    std::fs::create_dir_all(&runs)?;
    let common = |cmd: &str| -> Vec<OsString> {
        [cmd, "--config", config, "--device", "cpu", "--data"]
            .iter()
            .map(OsString::from)
            .chain([setup.data.clone().into_os_string()])
            .collect()
    };
    let mut args = common("train");
    args.extend([
        "--quiet".into(),
        "--seed-offset".into(),
        seed_offset.to_string().into(),
        "--out".into(),
        out.clone().into(),
    ]);
    let (done, state) = run_harness(sandbox, setup, bin, vec![], vec![runs.clone()], args)?;
    let Some(last) = state["checkpoints"].as_array().and_then(|c| c.last()).and_then(|c| c["path"].as_str()) else {
        return Ok(Err(format!("training failed: {}", super::evaluate::tail_of(&done.output.stderr))));
    };
    let mut args = common("eval");
    args.extend([
        "--split".into(),
        "hidden".into(),
        "--hidden".into(),
        setup.hidden.clone().into(),
        "--checkpoint".into(),
        out.join(last).into(),
    ]);
    let (done, result) = run_harness(sandbox, setup, bin, vec![runs.clone(), setup.hidden.clone()], vec![], args)?;
    Ok(match result["val_bpb"].as_f64().filter(|b| b.is_finite()) {
        Some(bpb) => Ok(bpb),
        None => Err(format!("evaluation failed: {}", super::evaluate::tail_of(&done.output.stderr))),
    })
}
