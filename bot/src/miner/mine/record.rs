//! The record a researcher reads in the morning, and what a killed run resumes
//! from. `state.json` is the truth (replaced atomically after every trial);
//! `results.tsv` is rewritten from it each time, so the two never disagree; and
//! each trial keeps its diff, log and rationale in `trials/NNNN/`. A trial's
//! folder without its line in the state is an unfinished trial: resuming
//! deletes it and runs that trial again, so nothing finished is lost or redone.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Beat the best by the validator's margin, twice: the new best.
    Keep,
    /// Trained and scored, not better by the margin.
    Discard,
    /// The agent, the build or the training failed.
    Crash,
    /// The rules refused it before any training (allowlist, scan, recipe.toml).
    Refused,
    /// Already tried here or already judged by the network: skipped.
    Duplicate,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Keep => "keep",
            Status::Discard => "discard",
            Status::Crash => "crash",
            Status::Refused => "refused",
            Status::Duplicate => "duplicate",
        }
    }
}

/// One finished trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub number: u32,
    /// The proposed recipe tree (a git tree id in the recipe repository).
    pub tree: Option<String>,
    /// The normalised-diff digest of the tree against the king.
    pub digest: Option<String>,
    /// Public-val bpb of each run (screen, then confirmation).
    pub runs: Vec<f64>,
    /// The best's mean at the time.
    pub best: f64,
    pub status: Status,
    pub seconds: f64,
    pub description: String,
    /// Why it was refused, crashed or discarded, for the agent's next prompt.
    pub note: String,
}

impl Trial {
    pub fn bpb(&self) -> Option<f64> {
        (!self.runs.is_empty()).then(|| mean(&self.runs))
    }
    /// bpb minus the best's mean (negative is better).
    pub fn delta(&self) -> Option<f64> {
        self.bpb().map(|b| b - self.best)
    }
}

/// The current best recipe and its public-val runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// The trial that made it (None: the king itself).
    pub trial: Option<u32>,
    pub tree: String,
    pub runs: Vec<f64>,
    pub description: String,
}

/// A pull request the miner opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub trial: u32,
    pub king: String,
    /// Public-val bpb of the fresh seeds it was measured with before submitting.
    pub fresh_runs: Vec<f64>,
    /// The pull request opened, if one was.
    pub pull: Option<String>,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub king: String,
    pub king_tree: String,
    pub config: String,
    pub agent: String,
    /// The king's own public-val runs: what a submission is measured against.
    pub king_runs: Vec<f64>,
    pub best: Best,
    pub trials: Vec<Trial>,
    #[serde(default)]
    pub submissions: Vec<Submission>,
}

impl State {
    pub fn next_number(&self) -> u32 {
        self.trials.last().map_or(1, |t| t.number + 1)
    }
    /// Sample σ of public-val runs of one recipe, pooled over the king's and the best's runs.
    pub fn sigma(&self) -> f64 {
        let mut groups = vec![self.king_runs.as_slice()];
        if self.best.trial.is_some() {
            groups.push(&self.best.runs);
        }
        pooled_sigma(&groups)
    }
}

pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// σ pooled over groups of runs, each about its own mean (groups of one add nothing).
pub fn pooled_sigma(groups: &[&[f64]]) -> f64 {
    let (mut ss, mut dof) = (0.0, 0usize);
    for g in groups.iter().filter(|g| g.len() >= 2) {
        let m = mean(g);
        ss += g.iter().map(|x| (x - m).powi(2)).sum::<f64>();
        dof += g.len() - 1;
    }
    if dof == 0 {
        f64::NAN
    } else {
        (ss / dof as f64).sqrt()
    }
}

/// The results folder.
pub struct Record {
    dir: PathBuf,
}

impl Record {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("trials")).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Record { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved state, if a run was here before; unfinished trial folders are cleared.
    pub fn resume(&self) -> Result<Option<State>> {
        let path = self.dir.join("state.json");
        let state: State = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let next = state.next_number();
        for entry in std::fs::read_dir(self.dir.join("trials"))? {
            let entry = entry?;
            let n: Option<u32> = entry.file_name().to_str().and_then(|s| s.parse().ok());
            if n.is_some_and(|n| n >= next) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(Some(state))
    }

    /// A fresh folder for trial `n` (an unfinished one is started over).
    pub fn trial_dir(&self, n: u32) -> Result<PathBuf> {
        let dir = self.trial_dir_path(n);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Where trial n's folder is.
    pub fn trial_dir_path(&self, n: u32) -> PathBuf {
        self.dir.join("trials").join(format!("{n:04}"))
    }

    /// Saves the state, then the table made from it; each file is replaced whole.
    pub fn save(&self, state: &State) -> Result<()> {
        if state.trials.windows(2).any(|w| w[1].number <= w[0].number) {
            bail!("trial numbers must increase");
        }
        replace(&self.dir.join("state.json"), &serde_json::to_vec_pretty(state)?)?;
        replace(&self.dir.join("results.tsv"), tsv(state).as_bytes())?;
        replace(&self.dir.join("progress.svg"), super::plot::svg(state)?.as_bytes())
    }
}

/// Writes beside the file, syncs, then renames over it.
fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// `results.tsv`: trial, commit (tree), public bpb, Δ against best, status, seconds, description.
pub fn tsv(state: &State) -> String {
    let mut out = String::from("trial\ttree\tbpb\tdelta\tstatus\tseconds\tdescription\n");
    let num = |x: Option<f64>, prec: usize| x.map_or(String::new(), |v| format!("{v:.prec$}"));
    for t in &state.trials {
        let tree = t.tree.as_deref().map_or(String::new(), |s| s[..s.len().min(12)].to_string());
        let description = t.description.replace(['\t', '\n', '\r'], " ");
        out.push_str(&format!(
            "{}\t{tree}\t{}\t{}\t{}\t{:.1}\t{description}\n",
            t.number,
            num(t.bpb(), 5),
            num(t.delta(), 5),
            t.status.as_str(),
            t.seconds
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(number: u32, status: Status, runs: Vec<f64>) -> Trial {
        Trial {
            number,
            tree: Some("0123456789abcdef0123".into()),
            digest: None,
            runs,
            best: 2.0,
            status,
            seconds: 1.25,
            description: "lr\t3e-3 → 6e-3".into(),
            note: String::new(),
        }
    }

    fn state() -> State {
        State {
            king: "recipe-v0.1.0".into(),
            king_tree: "t".into(),
            config: "micro".into(),
            agent: "builtin".into(),
            king_runs: vec![2.0, 2.02],
            best: Best { trial: None, tree: "t".into(), runs: vec![2.0, 2.02], description: "the king".into() },
            trials: vec![trial(1, Status::Discard, vec![2.1]), trial(2, Status::Refused, vec![])],
            submissions: vec![],
        }
    }

    #[test]
    fn the_table_has_one_line_per_trial_and_no_stray_tabs() {
        let text = tsv(&state());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.split('\t').count() == 7), "{text}");
        assert_eq!(lines[1], "1\t0123456789ab\t2.10000\t0.10000\tdiscard\t1.2\tlr 3e-3 → 6e-3");
        assert!(lines[2].contains("\t\t\trefused\t"), "{}", lines[2]);
    }

    #[test]
    fn resuming_clears_an_unfinished_trial_and_keeps_the_finished_ones() {
        let dir = tempfile::tempdir().unwrap();
        let record = Record::open(dir.path()).unwrap();
        assert!(record.resume().unwrap().is_none());
        let s = state();
        for n in [1, 2, 3] {
            std::fs::write(record.trial_dir(n).unwrap().join("change.diff"), "x").unwrap();
        }
        record.save(&s).unwrap();
        let back = record.resume().unwrap().unwrap();
        assert_eq!(back, s);
        assert!(dir.path().join("trials/0002/change.diff").exists());
        assert!(!dir.path().join("trials/0003").exists(), "trial 3 never finished");
        assert_eq!(back.next_number(), 3);
    }

    #[test]
    fn sigma_pools_groups_about_their_own_means() {
        let s = pooled_sigma(&[&[1.0, 3.0], &[10.0, 12.0]]);
        assert!((s - 2f64.sqrt()).abs() < 1e-12, "{s}");
        assert!(pooled_sigma(&[&[1.0]]).is_nan());
    }
}
