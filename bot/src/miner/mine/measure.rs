//! One scored run of a trial: the recipe tree built offline in the judge's
//! sandbox, trained there by the official harness on the public split with a
//! seed offset, and its last checkpoint scored on the public val split. This is
//! the validator's path with public data only, so a trial that crashes here
//! would crash there, and one that runs here runs there.

use crate::judge::evaluate::{build, run_harness, tail_of, train_seeded, EvalSetup};
use crate::repo::RecipeRepo;
use crate::sandbox::Sandbox;
use anyhow::Result;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub struct Bench<'a> {
    pub sandbox: &'a Sandbox,
    pub setup: &'a EvalSetup,
    pub repo: &'a RecipeRepo,
    pub config: String,
    /// Builds and runs live here (a scratch folder, cleared between runs).
    pub work: PathBuf,
    /// Binaries built so far, by tree: the king and the best are scored many times.
    built: HashMap<git2::Oid, PathBuf>,
}

impl<'a> Bench<'a> {
    pub fn new(sandbox: &'a Sandbox, setup: &'a EvalSetup, repo: &'a RecipeRepo, config: &str, work: &Path) -> Self {
        Bench { sandbox, setup, repo, config: config.into(), work: work.into(), built: HashMap::new() }
    }

    /// The harness built from `tree`, or Ok(Err(why)) when it does not build.
    pub fn build(&mut self, tree: git2::Oid) -> Result<std::result::Result<PathBuf, String>> {
        if let Some(bin) = self.built.get(&tree) {
            return Ok(Ok(bin.clone()));
        }
        let built = build(self.sandbox, self.setup, self.repo, tree, &self.work)?;
        // The checkout is only the build's input; the binary was copied out.
        let _ = std::fs::remove_dir_all(self.work.join(tree.to_string()));
        if let Ok(bin) = &built {
            self.built.insert(tree, bin.clone());
        }
        Ok(built)
    }

    /// Public-val bpb of `tree` trained with `seed_offset`, or Ok(Err(why)).
    pub fn score(&mut self, tree: git2::Oid, seed_offset: u64) -> Result<std::result::Result<f64, String>> {
        let bin = match self.build(tree)? {
            Ok(bin) => bin,
            Err(why) => return Ok(Err(format!("does not build: {why}"))),
        };
        let runs = self.work.join("runs");
        let _ = std::fs::remove_dir_all(&runs);
        let last = match train_seeded(self.sandbox, self.setup, &bin, &self.config, seed_offset, &runs)? {
            Ok(last) => last,
            Err(why) => return Ok(Err(why)),
        };
        let args: Vec<OsString> =
            ["eval", "--config", &self.config, "--device", self.setup.device.harness_arg(), "--split", "val", "--data"]
                .iter()
                .map(OsString::from)
                .chain([self.setup.data.clone().into_os_string(), "--checkpoint".into(), last.into_os_string()])
                .collect();
        let (done, report) = run_harness(self.sandbox, self.setup, &bin, vec![runs.clone()], vec![], args)?;
        let _ = std::fs::remove_dir_all(&runs);
        match report["val_bpb"].as_f64() {
            Some(bpb) if bpb.is_finite() => Ok(Ok(bpb)),
            _ => Ok(Err(format!("evaluation failed: {}", tail_of(&done.output.stderr)))),
        }
    }
}
