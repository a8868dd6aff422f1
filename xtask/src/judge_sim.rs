//! `cargo xtask judge-sim`: how good is the decision rule on real runs? A scratch
//! recipe repository with the king at recipe-v0.1.0 and the change under test
//! (by default `batch_rows = 8`, a real improvement) at recipe-v0.1.1, then `karpa judge-sim`: the king's
//! noise floor, null patches (the king with other seeds) and the improvement,
//! every run built and trained in the judge's sandbox. Slow: not part of CI.

use crate::recipe_repo::{genesis, git, set_hparam};
use crate::setup;
use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;

pub struct Sim {
    pub config: String,
    /// The change under test: `key=value` pairs in the config's table of recipe.toml.
    pub changes: Vec<String>,
    pub seeds: u32,
    pub nulls: u32,
    pub improved_runs: u32,
}

pub fn run(root: &Path, sim: &Sim) -> Result<()> {
    let env = setup::ensure_all(root)?;
    crate::cargo(&["build", "--workspace", "--bins"], &env)?;
    let data = crate::demo::prepared_data(root, &env, &root.join("target/debug/karpa-train"), &sim.config)?;
    let work = root.join(".karpa/judge-sim").join(&sim.config);
    let repo = work.join("repo");
    let _ = std::fs::remove_dir_all(&repo);
    scratch_repo(root, &repo, &sim.config, &sim.changes)?;
    let secret = work.join("secret");
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))?;
    std::fs::write(&secret, hex::encode(bytes))?;
    let counts = [sim.seeds, sim.nulls, sim.improved_runs].map(|c| c.to_string());
    crate::run(
        Command::new(root.join("target/debug/karpa"))
            .args(["judge-sim", "--king", "recipe-v0.1.0", "--improved", "recipe-v0.1.1", "--config", &sim.config])
            .args(["--seeds", &counts[0], "--nulls", &counts[1], "--improved-runs", &counts[2], "--repo"])
            .arg(&repo)
            .arg("--data")
            .arg(data.join("public"))
            .arg("--hidden")
            .arg(data.join("hidden"))
            .arg("--secret-file")
            .arg(&secret)
            .arg("--target-dir")
            .arg(root.join("target/recipes"))
            .arg("--out")
            .arg(work.join("judge-sim.json")),
    )?;
    eprintln!("xtask: every run and the table: {}", work.join("judge-sim.json").display());
    Ok(())
}

/// The king tagged recipe-v0.1.0, the improvement tagged recipe-v0.1.1.
fn scratch_repo(root: &Path, repo: &Path, config: &str, changes: &[String]) -> Result<()> {
    genesis(root, repo)?;
    for change in changes {
        let Some((key, value)) = change.split_once('=') else { bail!("--change {change:?} is not key=value") };
        set_hparam(repo, config, key.trim(), value.trim())?;
    }
    git(repo, &["commit", "-q", "-am", &format!("{config}: {}", changes.join(", "))])?;
    git(repo, &["tag", "-a", "recipe-v0.1.1", "-m", "the improvement under test"])?;
    Ok(())
}
