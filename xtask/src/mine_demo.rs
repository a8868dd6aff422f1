//! `cargo xtask mine-demo`: a short mining session on tiny with the built-in
//! search — the canonical recipe as king, every trial trained in the judge's
//! sandbox — ending in `karpa mine`'s results table. A dry run: nothing is
//! proved or opened. Run it again to resume; delete the folder to start over.

use crate::recipe_repo::genesis;
use crate::setup;
use anyhow::Result;
use std::path::Path;
use std::process::Command;

pub fn run(root: &Path, trials: u32) -> Result<()> {
    let env = setup::ensure_all(root)?;
    crate::cargo(&["build", "--workspace", "--bins"], &env)?;
    let data = crate::demo::prepared_data(root, &env, &root.join("target/debug/karpa-train"), "tiny")?;
    let work = root.join(".karpa/mine-demo");
    let repo = work.join("recipe");
    if !repo.exists() {
        genesis(root, &repo)?;
    }
    crate::run(
        Command::new(root.join("target/debug/karpa"))
            .args(["mine", "--config", "tiny", "--agent", "builtin", "--dry-run", "--trials", &trials.to_string()])
            .arg("--repo")
            .arg(&repo)
            .arg("--data")
            .arg(data.join("public"))
            .arg("--out")
            .arg(work.join("results"))
            .arg("--target-dir")
            .arg(root.join("target/recipes")),
    )?;
    eprintln!("xtask: the record: {}", work.join("results").display());
    Ok(())
}
