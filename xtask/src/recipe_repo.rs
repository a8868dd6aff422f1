//! Scratch recipe repositories for the demo and judge-sim: this workspace's
//! tracked files committed and tagged recipe-v0.1.0, and edits of recipe.toml
//! confined to one config's table.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// This workspace's tracked files as a new repository at `repo`, on `main`,
/// tagged recipe-v0.1.0, with the dev trusted set as its validators.toml.
pub fn genesis(root: &Path, repo: &Path) -> Result<()> {
    let files = git(root, &["ls-files", "-z"])?;
    for file in files.split('\0').filter(|f| !f.is_empty()) {
        let dst = repo.join(file);
        std::fs::create_dir_all(dst.parent().context("a file has a folder")?)?;
        std::fs::copy(root.join(file), &dst).with_context(|| format!("copying {file}"))?;
    }
    // The trusted set: the dev validator, who signs the demo's crowns.
    std::fs::copy(root.join("deploy/validators.dev.toml"), repo.join("validators.toml"))?;
    git(repo, &["init", "-q", "-b", "main"])?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "recipe v0.1.0"])?;
    git(repo, &["tag", "-a", "recipe-v0.1.0", "-m", "recipe v0.1.0"])?;
    Ok(())
}

/// Sets `key = value` inside the `[config]` table of `repo`'s recipe/recipe.toml.
pub fn set_hparam(repo: &Path, config: &str, key: &str, value: &str) -> Result<()> {
    let toml = repo.join("recipe/recipe.toml");
    let text = std::fs::read_to_string(&toml)?;
    let mut table = String::new();
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let t = line.trim_start();
            if t.starts_with('[') {
                table = t.trim_start_matches('[').split(']').next().unwrap_or("").trim_matches('"').to_string();
            } else if table == config && t.split('=').next().map(str::trim) == Some(key) && !done {
                done = true;
                return format!("{key} = {value}");
            }
            line.to_string()
        })
        .collect();
    if !done {
        bail!("recipe.toml has no {key} in [{config}]");
    }
    std::fs::write(&toml, lines.join("\n") + "\n")?;
    Ok(())
}

pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Karpa", "-c", "user.email=demo@karpa.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .context("git")?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}
