//! `karpa reference`: a release re-trained on a reference config and exported
//! as a model folder (tiny on a CPU; karpa-1 on a GPU). The tag's own
//! `karpa-train` is built and trained in the validator's sandbox with the
//! config's seed, exactly as `karpa reproduce` does, and the run's last
//! checkpoint becomes the folder's weights. Its `config.json` carries the
//! record's numbers as `karpa model export` derives them, and says that the
//! weights are this re-training (`provenance: reference`), with the run's own
//! numbers beside them.

use super::model::{self, ModelConfig, Provenance, Trained, Training};
use super::reproduce::{sandbox_setup, train_and_score};
use crate::judge_cmd::PublicSandboxArgs;
use crate::repo::RecipeRepo;
use crate::sandbox::Sandbox;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReferenceArgs {
    /// A clone of the recipe repository with refs/notes/karpa fetched.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The release to re-train (default: the newest, the current king).
    #[arg(long)]
    pub tag: Option<String>,
    /// The reference config: tiny on a CPU, karpa-1 on a GPU (`--device cuda`).
    #[arg(long, default_value = "tiny")]
    pub config: String,
    #[command(flatten)]
    pub sandbox: PublicSandboxArgs,
    /// A validator's hidden split folder: also score the run's last checkpoint there.
    #[arg(long)]
    pub hidden: Option<PathBuf>,
    /// Where the build and the run live (default: a temporary folder).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// The model folder to create.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: &ReferenceArgs) -> Result<bool> {
    let cfg = reference(args)?;
    let Provenance::Reference { val_bpb, hidden_bpb } = cfg.provenance else { unreachable!("a reference") };
    let hidden = hidden_bpb.map_or(String::new(), |h| format!(", hidden bpb {h:.4}"));
    println!(
        "{}: {} ({} parameters), re-trained from {} on {}: val bpb {val_bpb:.4}{hidden} in {:.1} s",
        args.out.display(),
        cfg.name,
        cfg.params,
        cfg.tag,
        cfg.training.device,
        cfg.training.elapsed_s
    );
    Ok(true)
}

/// Trains the tag on the reference config and writes its model folder.
pub fn reference(args: &ReferenceArgs) -> Result<ModelConfig> {
    if args.out.exists() {
        bail!("{} already exists: karpa reference writes a new folder", args.out.display());
    }
    let repo = RecipeRepo::open(&args.repo)?;
    let king = repo.king(args.tag.as_deref())?;
    let note = model::crowned(&repo, &king)?;
    // A config the tag does not have is refused before anything is built.
    repo.protocol_config(king.tree, &args.config)
        .with_context(|| format!("{} has no protocol config {:?}", king.tag, args.config))?;
    let sandbox = Sandbox::new()?;
    let setup = sandbox_setup(&args.sandbox, &args.repo, args.hidden.as_deref())?;
    let scratch = tempfile::tempdir()?;
    let work = args.work.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let started_at = now();
    let run = train_and_score(&sandbox, &setup, &repo, king.tree, &args.config, &work)?;
    let finished_at = now();
    let bytes = std::fs::read(&run.checkpoint)
        .with_context(|| format!("cannot read the run's checkpoint {}", run.checkpoint.display()))?;
    let name = run.checkpoint.strip_prefix(work.join("runs").join("seed-0")).unwrap_or(&run.checkpoint);
    let weights = super::weights::weights_of(&name.to_string_lossy(), &bytes)?;
    let state = &run.state;
    let training = Training {
        seed: state.seed,
        steps: state.steps,
        tokens: state.tokens_seen,
        flops: 6.0 * weights.digest.params as f64 * state.tokens_seen as f64,
        elapsed_s: state.elapsed_s,
        device: setup.device.class(),
        h100_equivalence: None,
        started_at,
        finished_at,
    };
    let trained = Trained {
        config: args.config.clone(),
        weights: weights.digest.clone(),
        data_manifest: state.data_manifest.clone(),
        training,
        provenance: Provenance::Reference { val_bpb: run.val, hidden_bpb: run.hidden },
    };
    let cfg = model::derive(&repo, &king, &note, trained)?;
    model::write_folder(&args.out, &weights.bytes, &setup.data, &cfg)?;
    Ok(cfg)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
