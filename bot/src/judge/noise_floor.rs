//! `karpa noise-floor`: train the king with n seeds through the same sandboxed
//! path the judge uses, and evaluate each on the hidden split. The spread of those
//! numbers is what a challenger's gain must clear.

use super::decision::NoiseFloor;
use super::evaluate::{build, run_harness, EvalSetup};
use crate::repo::{King, RecipeRepo};
use crate::sandbox::Sandbox;
use anyhow::{bail, Result};
use std::ffi::OsString;

/// Trains and evaluates the king `seeds` times (seed offsets 0..seeds).
pub fn measure(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    repo: &RecipeRepo,
    king: &King,
    config: &str,
    seeds: u64,
) -> Result<NoiseFloor> {
    if seeds < 2 {
        bail!("a noise floor needs at least 2 seeds");
    }
    let work = tempfile::Builder::new().prefix("karpa-noise-").tempdir()?;
    let bin = match build(sandbox, setup, repo, king.tree, work.path())? {
        Ok(bin) => bin,
        Err(why) => bail!("{} does not build in the sandbox: {why}", king.tag),
    };
    let runs = work.path().join("runs");
    std::fs::create_dir_all(&runs)?;
    let common = |cmd: &str| -> Vec<OsString> {
        [cmd, "--config", config, "--device", "cpu", "--data"]
            .iter()
            .map(OsString::from)
            .chain([setup.data.clone().into_os_string()])
            .collect()
    };
    let mut values = Vec::new();
    for seed in 0..seeds {
        let out = runs.join(format!("seed-{seed}"));
        let mut args = common("train");
        args.extend([
            "--quiet".into(),
            "--seed-offset".into(),
            seed.to_string().into(),
            "--out".into(),
            out.clone().into(),
        ]);
        let (done, state) = run_harness(sandbox, setup, &bin, vec![], vec![runs.clone()], args)?;
        let Some(last) = state["checkpoints"].as_array().and_then(|c| c.last()).and_then(|c| c["path"].as_str()) else {
            bail!("seed {seed}: training failed: {}", String::from_utf8_lossy(&done.output.stderr));
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
        let (done, result) = run_harness(sandbox, setup, &bin, vec![runs.clone(), setup.hidden.clone()], vec![], args)?;
        let Some(bpb) = result["val_bpb"].as_f64() else {
            bail!("seed {seed}: evaluation failed: {}", String::from_utf8_lossy(&done.output.stderr));
        };
        eprintln!("karpa noise-floor: {} seed +{seed}: hidden bpb {bpb:.5}", king.tag);
        values.push(bpb);
    }
    Ok(NoiseFloor { king: king.tag.clone(), config: config.to_string(), values })
}
