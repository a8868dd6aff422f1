//! `cargo xtask bench-trainer`: the same model, trained on the same number of
//! tokens, by karpa-train (release build) and by an equivalent PyTorch-eager script
//! (bench/train_eager.py) in the same venv, one after the other on this machine.

use crate::setup;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

const CONFIG: &str = "tiny";

pub fn run(root: &Path, steps: u32) -> Result<()> {
    let env = setup::ensure_all(root)?;
    crate::cargo(&["build", "--release", "--bin", "karpa-train"], &env)?;
    let bin = root.join("target/release/karpa-train");
    let data = root.join(".karpa/bench-data");
    if !data.join("public/manifest.json").exists() {
        let _ = std::fs::remove_dir_all(&data);
        crate::run(
            Command::new(&bin)
                .args(["prepare", "--config", CONFIG, "--input"])
                .arg(&env.corpus)
                .arg("--salt-file")
                .arg(&env.salt_file)
                .arg("--out")
                .arg(&data)
                .stdout(std::process::Stdio::null()),
        )?;
    }
    let public = data.join("public");

    let out = Command::new(&bin)
        .args(["bench", "--config", CONFIG, "--steps", &steps.to_string(), "--data"])
        .arg(&public)
        .output()?;
    if !out.status.success() {
        bail!("karpa-train bench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rust: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let out = Command::new(&env.python)
        .arg(root.join("bench/train_eager.py"))
        .args(["--config", CONFIG, "--steps", &steps.to_string(), "--data"])
        .arg(&public)
        .output()?;
    if !out.status.success() {
        bail!("bench/train_eager.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let py: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let (r, p) = (num(&rust, "tokens_per_s")?, num(&py, "tokens_per_s")?);
    println!("config {CONFIG}, {steps} timed steps after warm-up, {} threads", rust["threads"]);
    println!("{:<26} {:>12} {:>14} {:>12}", "trainer", "tokens/s", "ms/step", "final loss");
    for (name, v) in [("karpa-train (Rust, tch)", &rust), ("PyTorch eager (Python)", &py)] {
        println!(
            "{name:<26} {:>12.0} {:>14.2} {:>12.4}",
            num(v, "tokens_per_s")?,
            num(v, "ms_per_step")?,
            num(v, "final_loss")?
        );
    }
    println!("ratio: {:.2}", r / p);
    Ok(())
}

fn num(v: &serde_json::Value, key: &str) -> Result<f64> {
    v[key].as_f64().with_context(|| format!("benchmark output has no {key}: {v}"))
}
