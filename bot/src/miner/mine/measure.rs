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

/// One worker's bench: its own device, scratch folder and handle on the
/// repository, so that workers run side by side (`--workers`, `--gpus`).
pub struct Bench<'a> {
    pub sandbox: &'a Sandbox,
    pub setup: EvalSetup,
    pub repo: RecipeRepo,
    pub config: String,
    /// Which worker this is, for the trial logs: "worker 2 of 4 (cuda:1)".
    pub label: String,
    /// Builds and runs live here (a scratch folder, cleared between runs).
    pub work: PathBuf,
    /// Binaries built so far, by tree: the king and the best are scored many times.
    built: HashMap<git2::Oid, PathBuf>,
}

impl<'a> Bench<'a> {
    pub fn new(
        sandbox: &'a Sandbox,
        setup: EvalSetup,
        repo: &Path,
        config: &str,
        work: &Path,
        label: String,
    ) -> Result<Self> {
        std::fs::create_dir_all(work)?;
        let repo = RecipeRepo::open(repo)?;
        Ok(Bench { sandbox, setup, repo, config: config.into(), label, work: work.into(), built: HashMap::new() })
    }

    /// The harness built from `tree`, or Ok(Err(why)) when it does not build.
    pub fn build(&mut self, tree: git2::Oid) -> Result<std::result::Result<PathBuf, String>> {
        if let Some(bin) = self.built.get(&tree) {
            return Ok(Ok(bin.clone()));
        }
        let built = build(self.sandbox, &self.setup, &self.repo, tree, &self.work)?;
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
        let last = match train_seeded(self.sandbox, &self.setup, &bin, &self.config, seed_offset, &runs)? {
            Ok(last) => last,
            Err(why) => return Ok(Err(why)),
        };
        let args: Vec<OsString> =
            ["eval", "--config", &self.config, "--device", self.setup.device.harness_arg(), "--split", "val", "--data"]
                .iter()
                .map(OsString::from)
                .chain([self.setup.data.clone().into_os_string(), "--checkpoint".into(), last.into_os_string()])
                .collect();
        let (done, report) = run_harness(self.sandbox, &self.setup, &bin, vec![runs.clone()], vec![], args)?;
        let _ = std::fs::remove_dir_all(&runs);
        match report["val_bpb"].as_f64() {
            Some(bpb) if bpb.is_finite() => Ok(Ok(bpb)),
            _ => Ok(Err(format!("evaluation failed: {}", tail_of(&done.output.stderr)))),
        }
    }
}

/// Runs every job on a worker (a bench), as many at a time as there are
/// workers, and hands back the results in the jobs' order.
pub fn on_workers<W: Send, J: Send, R: Send>(
    benches: &mut [W],
    jobs: Vec<J>,
    work: impl Fn(&mut W, J) -> R + Sync,
) -> Vec<R> {
    let work = &work;
    let mut results = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        let wave: Vec<J> = jobs.by_ref().take(benches.len().max(1)).collect();
        std::thread::scope(|s| {
            let running: Vec<_> = benches.iter_mut().zip(wave).map(|(b, j)| s.spawn(move || work(b, j))).collect();
            // A worker's panic is a bug of the miner's: it stops the run, as it would with one worker.
            results.extend(running.into_iter().map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p))));
        });
    }
    results
}

#[cfg(test)]
mod tests {
    use super::on_workers;

    #[test]
    fn jobs_run_a_wave_per_worker_count_and_come_back_in_order() {
        let mut workers = vec![(0, Vec::new()), (1, Vec::new()), (2, Vec::new())];
        let done = on_workers(&mut workers, (0..8).collect(), |(id, seen): &mut (i32, Vec<i32>), job: i32| {
            seen.push(job);
            (*id, job * 10)
        });
        assert_eq!(done.iter().map(|d| d.1).collect::<Vec<_>>(), (0..8).map(|j| j * 10).collect::<Vec<_>>());
        // Job j ran on worker j mod 3, each worker one job per wave.
        assert_eq!(workers.iter().map(|w| w.1.clone()).collect::<Vec<_>>(), [vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
        assert!(on_workers(&mut workers, Vec::<i32>::new(), |_, j| j).is_empty());
    }
}
