//! `cargo xtask demo`: the canonical recipe, end to end on a CPU, from nothing.
//! Prepare the Shakespeare corpus for `tiny` (checked against the config's pins),
//! calibrate, train, evaluate every checkpoint on the hidden split, probe, replay.

use crate::setup::{self, Env};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

const CONFIG: &str = "tiny";

pub fn run(root: &Path) -> Result<()> {
    let env = setup::ensure_all(root)?;
    // The same build as `cargo xtask test`, so the two share every artifact.
    crate::cargo(&["build", "--workspace", "--bins"], &env)?;
    let bin = root.join("target/debug/karpa-train");
    let data = prepared_data(root, &env, &bin, CONFIG)?;
    let public = data.join("public");
    let runs = root.join(".karpa/runs");
    std::fs::create_dir_all(&runs)?;
    let run = runs.join(format!("{CONFIG}-{}", unix_time()));
    karpa_train(&bin, &env, &["calibrate", "--device", "cpu", "--out"], &[&runs.join("calibration.json")])?;
    eprintln!("xtask: training the canonical recipe on {CONFIG} (about a minute on 2 cores)");
    let status = Command::new(&bin)
        .args(["train", "--config", CONFIG, "--data"])
        .arg(&public)
        .arg("--out")
        .arg(&run)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("training failed ({status})");
    }

    println!("\n  checkpoint   tokens     hidden val_bpb");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("final_state.json"))?)?;
    let mut first_last = Vec::new();
    for ck in state["checkpoints"].as_array().context("final_state has checkpoints")? {
        let ckpt = run.join(ck["path"].as_str().context("path")?);
        let out = karpa_train(
            &bin,
            &env,
            &["eval", "--config", CONFIG, "--split", "hidden", "--data"],
            &[&public, Path::new("--hidden"), &data.join("hidden"), Path::new("--checkpoint"), &ckpt],
        )?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let bpb = v["val_bpb"].as_f64().context("val_bpb")?;
        first_last.push(bpb);
        println!(
            "  step {:<7} {:<10} {bpb:.4}",
            ck["step"].as_u64().unwrap_or(0),
            ck["tokens_seen"].as_u64().unwrap_or(0)
        );
    }
    let probe = karpa_train(
        &bin,
        &env,
        &["probe", "--config", CONFIG, "--data"],
        &[
            &public,
            Path::new("--checkpoint"),
            &run.join(
                state["checkpoints"]
                    .as_array()
                    .and_then(|c| c.last())
                    .and_then(|c| c["path"].as_str())
                    .unwrap_or_default(),
            ),
        ],
    )?;
    let from = state["checkpoints"][1]["step"].to_string();
    let replay = karpa_train(
        &bin,
        &env,
        &["replay", "--config", CONFIG, "--from-step", &from, "--steps", "5", "--data"],
        &[&public, Path::new("--run"), &run],
    )?;
    let replay: serde_json::Value = serde_json::from_str(&replay)?;
    println!("\n  causality probe: {}", if probe.contains("\"passed\": true") { "passed" } else { "FAILED" });
    println!("  replay of 5 steps from step {from}: max |Δloss| = {}", replay["report"]["max_abs_diff"]);
    println!(
        "  training: {} steps, {} tokens in {:.1} s",
        state["steps"],
        state["tokens_seen"],
        state["elapsed_s"].as_f64().unwrap_or(0.0)
    );
    println!("\n  run folder:  {}", run.display());
    println!("  calibration: {}", runs.join("calibration.json").display());
    if first_last.first() <= first_last.last() {
        bail!("hidden val_bpb did not fall: {first_last:?}");
    }
    Ok(())
}

/// `.karpa/data/<config>`: the demo corpus prepared for `config` (once), checked
/// against the digests the config pins.
pub fn prepared_data(root: &Path, env: &Env, bin: &Path, config: &str) -> Result<std::path::PathBuf> {
    let data = root.join(".karpa/data").join(config);
    if !data.join("public/manifest.json").exists() {
        std::fs::create_dir_all(data.parent().expect("has parent"))?;
        let _ = std::fs::remove_dir_all(&data);
        eprintln!("xtask: preparing the demo corpus for {config}");
        let out = karpa_train(
            bin,
            env,
            &["prepare", "--config", config, "--input"],
            &[&env.corpus, Path::new("--salt-file"), &env.salt_file, Path::new("--out"), &data],
        )?;
        if !out.contains("\"matches_config_pin\": true") {
            bail!("the prepared data does not match the digests config {config} pins:\n{out}");
        }
    }
    Ok(data)
}

/// Runs karpa-train with fixed args then path args; returns stdout, fails with stderr.
fn karpa_train(bin: &Path, env: &Env, args: &[&str], paths: &[&Path]) -> Result<String> {
    let out = Command::new(bin).args(args).args(paths).envs(env.vars()).output()?;
    if !out.status.success() {
        bail!("karpa-train {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn unix_time() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
