//! `karpa prove`: the miner's flow. Check out the king, apply the patch (refusing
//! anything outside the allowlist before any work), build `karpa-train` from the
//! patched tree, calibrate, train, and seal the results into a signed bundle.
//! The bundle is assembled under `<out>.partial` and renamed when complete, so an
//! interrupted run leaves nothing that looks valid and simply starts over.

use crate::allowlist;
use crate::repo::RecipeRepo;
use anyhow::{bail, Context, Result};
use proof::bundle::{assemble, sign_as_miner, BundleManifest, RunClaims};
use proof::calibration::Calibration;
use proof::intoto::CalibrationSummary;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args)]
pub struct ProveArgs {
    /// The patch (a git diff against the king), touching only recipe/src/**.rs,
    /// recipe/recipe.toml or recipe/RATIONALE.md.
    #[arg(long)]
    pub patch: PathBuf,
    /// The release to patch (default: the highest recipe-vX.Y.Z tag).
    #[arg(long)]
    pub king: Option<String>,
    #[arg(long)]
    pub config: String,
    /// The config's prepared public data (`karpa-train prepare`'s public/ folder).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub allow_unpinned_data: bool,
    /// Secret URI or seed phrase of the hotkey, or a Bittensor hotkey file.
    #[arg(long)]
    pub hotkey: String,
    #[arg(long)]
    pub github_login: String,
    /// Why the patch should help (markdown).
    #[arg(long)]
    pub rationale: PathBuf,
    /// Bundle folder to create.
    #[arg(long)]
    pub out: PathBuf,
    /// The recipe repository.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Shared cargo target folder for recipe builds.
    #[arg(long, default_value = "target/recipes")]
    pub target_dir: PathBuf,
    /// libtorch folder (default: $LIBTORCH, then <repo>/.karpa/libtorch).
    #[arg(long)]
    pub libtorch: Option<PathBuf>,
}

fn step(msg: &str) {
    eprintln!("karpa prove: {msg}");
}

pub fn load_hotkey(spec: &str) -> Result<subxt_signer::sr25519::Keypair> {
    let path = Path::new(spec);
    if !spec.starts_with("//") && path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read hotkey file {spec}"))?;
        return Ok(proof::hotkey::keypair_from_bittensor_keyfile(&text)?);
    }
    Ok(proof::hotkey::keypair_from_uri(spec)?)
}

pub fn prove(args: &ProveArgs) -> Result<BundleManifest> {
    if args.out.exists() {
        bail!("{} already exists: choose a new bundle folder", args.out.display());
    }
    let hotkey = load_hotkey(&args.hotkey)?;
    let rationale = std::fs::read_to_string(&args.rationale)
        .with_context(|| format!("cannot read the rationale {}", args.rationale.display()))?;
    let patch =
        std::fs::read(&args.patch).with_context(|| format!("cannot read the patch {}", args.patch.display()))?;
    let diff =
        git2::Diff::from_buffer(&patch).with_context(|| format!("{} is not a git diff", args.patch.display()))?;
    if diff.deltas().len() == 0 {
        bail!("{} changes nothing", args.patch.display());
    }
    let violations = allowlist::check_patch(&diff);
    if !violations.is_empty() {
        let list: Vec<String> = violations.iter().map(|v| format!("  {}: {}", v.path, v.reason)).collect();
        bail!("the patch changes what miners may not change:\n{}", list.join("\n"));
    }
    let repo = RecipeRepo::open(&args.repo)?;
    let king = repo.king(args.king.as_deref())?;
    let patched_tree = repo.apply_patch(king.tree, &diff)?;
    let findings = crate::judge::scan::scan_tree(&repo.files(patched_tree)?);
    if !findings.is_empty() {
        let list: Vec<String> = findings
            .iter()
            .map(|f| {
                format!("  {}:{}: {} ({})", f.path.as_deref().unwrap_or("?"), f.line.unwrap_or(0), f.message, f.code)
            })
            .collect();
        bail!("the judge would reject this recipe:\n{}", list.join("\n"));
    }
    let harness_digest = repo.harness_digest(patched_tree)?;
    if harness_digest != repo.harness_digest(king.tree)? {
        bail!("the patched tree's harness differs from the king's");
    }
    step(&format!("king {} ({}), patched tree {patched_tree}", king.tag, king.commit));

    let staging = partial_dir(&args.out);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).with_context(|| format!("cannot clear {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging)?;
    let worktree = tempfile::Builder::new().prefix("karpa-prove-").tempdir()?;
    repo.checkout(patched_tree, worktree.path())?;
    let libtorch = resolve_libtorch(args.libtorch.as_deref(), &args.repo)?;
    let bin_dir = tempfile::Builder::new().prefix("karpa-prove-bin-").tempdir()?;
    let bin = build_trainer(
        worktree.path(),
        &std::path::absolute(&args.target_dir)?,
        &libtorch,
        &bin_dir.path().join("karpa-train"),
    )?;

    let started_at = now();
    step("calibrating this machine");
    run(Command::new(&bin).args(["calibrate", "--out"]).arg(staging.join("calibration.json")))?;
    step(&format!("training config {}", args.config));
    let run_dir = staging.join("run");
    let mut train = Command::new(&bin);
    train.args(["train", "--config", &args.config, "--data"]).arg(&args.data).arg("--out").arg(&run_dir);
    if args.allow_unpinned_data {
        train.arg("--allow-unpinned-data");
    }
    run(&mut train)?;
    let finished_at = now();
    // Once more after training, keeping the best of the two: a machine busy
    // during one calibration must not make an honest log look too fast.
    step("calibrating this machine again");
    run(Command::new(&bin).args(["calibrate", "--keep-best", "--out"]).arg(staging.join("calibration.json")))?;
    for name in ["log.jsonl", "final_state.json", "checkpoints"] {
        std::fs::rename(run_dir.join(name), staging.join(name))?;
    }
    std::fs::remove_dir_all(&run_dir)?;
    std::fs::write(staging.join("patch.diff"), &patch)?;
    std::fs::write(staging.join("rationale.md"), rationale)?;

    let calibration: Calibration = serde_json::from_slice(&std::fs::read(staging.join("calibration.json"))?)?;
    let log = std::fs::read_to_string(staging.join("log.jsonl"))?;
    let claims = RunClaims {
        king_tag: king.tag.clone(),
        king_commit: king.commit.to_string(),
        patched_tree: patched_tree.to_string(),
        config: args.config.clone(),
        seed: final_seed(&staging)?,
        harness_digest,
        miner_hotkey: proof::hotkey::ss58(&hotkey),
        github_login: args.github_login.clone(),
        calibration: CalibrationSummary {
            device: calibration.device.kind.clone(),
            matmul_2048_fp32_ms: calibration.matmul_2048_fp32_ms,
            h100_equivalence: calibration.h100_equivalence,
        },
        started_at,
        finished_at,
        log_chain: proof::intoto::log_chain(&log, LOG_CHUNK_LINES),
        tier: "software".into(),
    };
    // A fresh key per run: it exists only in this process and signs only this run.
    let key = proof::dsse::generate_key().map_err(|e| anyhow::anyhow!("no randomness for the run key: {e}"))?;
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness for the nonce: {e}"))?;
    let manifest = assemble(&staging, &claims, &key, nonce)?;
    sign_as_miner(&staging, &manifest, &hotkey)?;
    std::fs::rename(&staging, &args.out)
        .with_context(|| format!("cannot move the bundle to {}", args.out.display()))?;
    Ok(manifest)
}

/// Lines of log per link of the attestation's hash chain.
pub const LOG_CHUNK_LINES: usize = 64;

fn final_seed(dir: &Path) -> Result<u64> {
    let state: proof::state::FinalState = serde_json::from_slice(&std::fs::read(dir.join("final_state.json"))?)?;
    Ok(state.seed)
}

fn partial_dir(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!("{name}.partial"))
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// libtorch for building `karpa-train`: `--libtorch`, else $LIBTORCH, else the
/// repository's `.karpa/libtorch` (what `cargo xtask setup` makes), canonical.
pub fn resolve_libtorch(arg: Option<&Path>, repo: &Path) -> Result<PathBuf> {
    let candidate = arg
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("LIBTORCH").map(PathBuf::from))
        .unwrap_or_else(|| repo.join(".karpa/libtorch"));
    candidate.canonicalize().with_context(|| {
        format!(
            "libtorch not found at {}; pass --libtorch or run `cargo xtask setup` in the repository",
            candidate.display()
        )
    })
}

/// Builds the patched tree's `karpa-train` offline against its own lock file,
/// into `out` (see `recipe_build`: the target folder is shared).
fn build_trainer(worktree: &Path, target_dir: &Path, libtorch: &Path, out: &Path) -> Result<PathBuf> {
    step("building karpa-train from the patched tree");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let toolchain = crate::recipe_build::toolchain_id(Path::new(&cargo), libtorch);
    let built = crate::recipe_build::build_locked(target_dir, worktree, &toolchain, out, |tree| {
        run(Command::new(cargo)
            .current_dir(tree)
            .args(crate::recipe_build::CARGO_ARGS)
            .env("CARGO_TARGET_DIR", target_dir)
            .env("LIBTORCH", libtorch))
        .map(Ok::<(), std::convert::Infallible>)
    })?;
    Ok(built.unwrap_or_else(|never| match never {}))
}

/// Runs a step; its JSON report goes to stderr with its progress, so that what
/// `karpa prove` (and `karpa mine`, which proves) prints on stdout is its own.
fn run(cmd: &mut Command) -> Result<()> {
    let status =
        cmd.stdout(std::io::stderr()).status().with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} {:?} failed ({status})", cmd.get_program(), cmd.get_args().collect::<Vec<_>>());
    }
    Ok(())
}
