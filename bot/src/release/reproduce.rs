//! `karpa reproduce`: a release tag's number, re-made from a plain clone.
//!
//! The tag's own `karpa-train` is built in the validator's sandbox and trained
//! with the config's seed (the one every bundle must use). Its end-of-training
//! public val bpb is set beside the bundle's (the same measurement), and when a
//! validator passes its hidden folder, its last checkpoint is scored there as
//! the judge scores a bundle. Each result is set beside the crown note's:
//! the bundle's own val bpb (from its `final_state.json`, checked against the
//! note's manifest), the validator's hidden score of the bundle and its
//! confirmation runs; the king's noise floor σ says what "the same" means.

use crate::judge::evaluate::{run_harness, tail_of, train_seeded, EvalSetup};
use crate::judge_cmd::PublicSandboxArgs;
use crate::lineage::note::{self, CrownNote};
use crate::repo::RecipeRepo;
use crate::sandbox::Sandbox;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct ReproduceArgs {
    /// A clone of the recipe repository (with refs/notes/karpa fetched).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The release to reproduce (default: the newest).
    #[arg(long)]
    pub tag: Option<String>,
    /// Protocol config (default: the one the release was crowned on).
    #[arg(long)]
    pub config: Option<String>,
    #[command(flatten)]
    pub sandbox: PublicSandboxArgs,
    /// A validator's hidden split folder: also score the hidden split.
    #[arg(long)]
    pub hidden: Option<PathBuf>,
    /// The release's bundle (folder or packed file), for its own val bpb when the
    /// crown note predates carrying the bundle's final state.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Where the build and the run live (default: a temporary folder).
    #[arg(long)]
    pub work: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// What the record says of the release.
#[derive(Debug, Default, Serialize)]
pub struct Recorded {
    /// The bundle's public val bpb (the note's final state, or the bundle's).
    pub bundle_val_bpb: Option<f64>,
    /// The validator's hidden bpb of the bundle's checkpoint.
    pub hidden_bpb: Option<f64>,
    /// The validator's own runs of the release (seeds of its choosing).
    pub confirmation_bpb: Vec<f64>,
    /// The king's noise floor when the release was crowned: σ and its n.
    pub sigma: Option<f64>,
    pub floor_n: Option<usize>,
    /// Who signed the crown note.
    pub signed_by: Vec<String>,
}

/// One comparison: a number made here beside the record's.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub split: &'static str,
    pub reproduced: f64,
    pub recorded: Option<f64>,
    /// |reproduced − recorded| in units of σ.
    pub sigmas: Option<f64>,
    pub within_sigma: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tag: String,
    pub commit: String,
    pub config: String,
    pub device: String,
    pub recorded: Recorded,
    pub comparisons: Vec<Comparison>,
}

impl Report {
    /// Every comparison that has a recorded number lies within σ of it.
    pub fn reproduces(&self) -> bool {
        self.comparisons.iter().all(|c| c.within_sigma != Some(false))
    }

    pub fn print(&self) {
        println!("{} ({}), config {}, trained on {}", self.tag, &self.commit[..12], self.config, self.device);
        let r = &self.recorded;
        match (r.sigma, r.floor_n) {
            (Some(s), Some(n)) => println!("noise floor when crowned: σ = {s:.4} bpb over {n} seeds"),
            _ => println!("no noise floor is on record for this release"),
        }
        if !r.confirmation_bpb.is_empty() {
            let runs: Vec<String> = r.confirmation_bpb.iter().map(|b| format!("{b:.4}")).collect();
            println!("validator's confirmation runs (hidden, its own seeds): {}", runs.join(", "));
        }
        println!("{:<8} {:>11} {:>10} {:>8}  verdict", "split", "reproduced", "recorded", "Δ/σ");
        for c in &self.comparisons {
            let recorded = c.recorded.map_or("—".into(), |b| format!("{b:.4}"));
            let sigmas = c.sigmas.map_or("—".into(), |s| format!("{s:.2}"));
            println!("{:<8} {:>11.4} {recorded:>10} {sigmas:>8}  {}", c.split, c.reproduced, words(c));
        }
        println!(
            "{}",
            if self.reproduces() {
                "The release reproduces."
            } else {
                "The release does NOT reproduce within its noise floor."
            }
        );
    }
}

fn words(c: &Comparison) -> String {
    match (c.recorded, c.within_sigma) {
        (None, _) => "nothing on record to compare".into(),
        (Some(_), None) => "no σ on record to judge the difference by".into(),
        (Some(_), Some(true)) => "within σ: the same number".into(),
        (Some(_), Some(false)) => "outside σ: not the same number".into(),
    }
}

pub fn reproduce(args: &ReproduceArgs) -> Result<Report> {
    let repo = RecipeRepo::open(&args.repo)?;
    let king = repo.king(args.tag.as_deref())?;
    let note = note::read(repo.git(), king.commit)?;
    let config = match (&args.config, &note) {
        (Some(c), _) => c.clone(),
        (None, Some(n)) => n.manifest.config.clone(),
        (None, None) => bail!("{} has no crown note (the genesis?): say which --config to train", king.tag),
    };
    let mut recorded = note.as_ref().map(recorded_in).transpose()?.unwrap_or_default();
    if note.as_ref().is_some_and(|n| n.manifest.config != config) {
        recorded = Recorded::default(); // the record's numbers are of another config
    }
    if let Some(n) = note.as_ref().filter(|n| n.manifest.config == config) {
        recorded.bundle_val_bpb = match (n.final_state()?, &args.bundle) {
            (Some(state), _) => Some(state.val_bpb),
            (None, Some(bundle)) => Some(bundle_val_bpb(bundle, n)?),
            (None, None) => None,
        };
    }
    let sandbox = Sandbox::new()?;
    let setup = sandbox_setup(&args.sandbox, &args.repo, args.hidden.as_deref())?;
    let scratch = tempfile::tempdir()?;
    let work = args.work.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let scores = train_and_score(&sandbox, &setup, &repo, king.tree, &config, &work)?;
    let sigma = recorded.sigma;
    let compare = |split: &'static str, reproduced: f64, recorded: Option<f64>| {
        let sigmas = recorded.zip(sigma).map(|(r, s)| (reproduced - r).abs() / s.max(f64::MIN_POSITIVE));
        Comparison { split, reproduced, recorded, sigmas, within_sigma: sigmas.map(|s| s <= 1.0) }
    };
    let mut comparisons = vec![compare("val", scores.val, recorded.bundle_val_bpb)];
    if let Some(hidden) = scores.hidden {
        comparisons.push(compare("hidden", hidden, recorded.hidden_bpb));
    }
    Ok(Report {
        tag: king.tag,
        commit: king.commit.to_string(),
        config,
        device: setup.device.class(),
        recorded,
        comparisons,
    })
}

/// The public sandbox's setup, with the hidden split when one is given.
pub(super) fn sandbox_setup(args: &PublicSandboxArgs, repo: &Path, hidden: Option<&Path>) -> Result<EvalSetup> {
    let mut setup = args.setup(repo)?;
    if let Some(h) = hidden {
        setup.hidden = std::path::absolute(h)?;
    }
    Ok(setup)
}

/// The crown note's numbers.
fn recorded_in(note: &CrownNote) -> Result<Recorded> {
    let v = &note.verdict;
    let runs = v["confirmation"]["hidden_bpb"].as_array().map(|a| a.iter().filter_map(|b| b.as_f64()).collect());
    Ok(Recorded {
        bundle_val_bpb: None,
        hidden_bpb: v["eval"]["hidden_bpb"].as_f64(),
        confirmation_bpb: runs.unwrap_or_default(),
        sigma: v["decision"]["sigma"].as_f64().filter(|s| s.is_finite() && *s > 0.0),
        floor_n: v["decision"]["n"].as_u64().map(|n| n as usize),
        signed_by: note.signatures.iter().map(|s| s.validator.clone()).collect(),
    })
}

/// The bundle's own val bpb, from a `final_state.json` whose digest the note's manifest holds.
fn bundle_val_bpb(bundle: &Path, note: &CrownNote) -> Result<f64> {
    const FINAL: &str = "final_state.json";
    let entry = note
        .manifest
        .files
        .iter()
        .find(|f| f.path == FINAL)
        .context("the note's manifest lists no final_state.json")?;
    let mut files = crate::archive::read_bundle_files(bundle, &[FINAL], 1 << 20)?;
    let bytes = files.remove(FINAL).with_context(|| format!("{} holds no {FINAL}", bundle.display()))?;
    if proof::sha256_bytes(&bytes) != entry.sha256 {
        bail!("{}: {FINAL} is not the one the crown note's manifest names: another bundle?", bundle.display());
    }
    let state: proof::state::FinalState = serde_json::from_slice(&bytes).with_context(|| format!("{FINAL}"))?;
    Ok(state.val_bpb)
}

/// A sandboxed run of a tag and its scores.
pub(super) struct Scores {
    /// End-of-training public val bpb.
    pub val: f64,
    /// The last checkpoint on the hidden split, when the setup has one.
    pub hidden: Option<f64>,
    /// The run's final state and its last checkpoint.
    pub state: proof::state::FinalState,
    pub checkpoint: PathBuf,
}

/// Builds `tree`, trains it with the config's seed and scores its last checkpoint.
pub(super) fn train_and_score(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    repo: &RecipeRepo,
    tree: git2::Oid,
    config: &str,
    work: &Path,
) -> Result<Scores> {
    let bin = match crate::judge::evaluate::build(sandbox, setup, repo, tree, work)? {
        Ok(bin) => bin,
        Err(why) => bail!("the release does not build here: {why}"),
    };
    let runs = work.join("runs");
    let last = match train_seeded(sandbox, setup, &bin, config, 0, &runs)? {
        Ok(last) => last,
        Err(why) => bail!("the release does not train here: {why}"),
    };
    // The run's own end-of-training val bpb: what the bundle's final state records.
    let state = runs.join("seed-0").join("final_state.json");
    let state: proof::state::FinalState =
        serde_json::from_slice(&std::fs::read(&state)?).context("the run's final state")?;
    let hidden = if setup.hidden.as_os_str().is_empty() {
        None
    } else {
        // The validator's scoring pass: eval_tokens of the hidden split.
        let args: Vec<OsString> =
            ["eval", "--config", config, "--device", setup.device.harness_arg(), "--split", "hidden"]
                .iter()
                .map(OsString::from)
                .chain(["--data".into(), setup.data.clone().into(), "--checkpoint".into(), last.clone().into()])
                .chain(["--hidden".into(), setup.hidden.clone().into()])
                .collect();
        let mounts = vec![runs.clone(), setup.hidden.clone()];
        let (done, report) = run_harness(sandbox, setup, &bin, mounts, vec![], args)?;
        match report["val_bpb"].as_f64() {
            Some(bpb) if bpb.is_finite() && done.output.status.success() => Some(bpb),
            _ => bail!("the hidden evaluation failed: {}", tail_of(&done.output.stderr)),
        }
    };
    Ok(Scores { val: state.val_bpb, hidden, state, checkpoint: last })
}

pub fn run(args: &ReproduceArgs) -> Result<bool> {
    let report = reproduce(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    Ok(report.reproduces())
}
