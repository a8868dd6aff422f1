//! The hidden evaluation, run as a job: build the PR's recipe from its tree
//! (offline, against the locked dependencies), then probe, evaluate on the hidden
//! split, check that score's causality and replay one segment chosen by
//! HMAC(validator secret, bundle digest) — every step inside the sandbox, the
//! hidden split mounted only for the scoring pass and the causality check.

use super::causality::{score_hidden, Checks};
use super::Finding;
use crate::repo::RecipeRepo;
use crate::sandbox::gpu::Device;
use crate::sandbox::{Limits, Mounts, Sandbox};
use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use proof::bundle::BundleManifest;
use proof::config::ProtocolConfig;
use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use proof::judge_budget::REPLAY_STEPS;
/// Largest |Δloss| a replay may show, in nats. Across machines float order differs
/// a little; a log that was not produced by this recipe on this data is off by far more.
pub const REPLAY_TOLERANCE: f64 = 0.05;

/// What this validator brings to an evaluation.
#[derive(Clone)]
pub struct EvalSetup {
    /// Shared cargo target folder for PR builds (read-write during builds only).
    pub target_dir: PathBuf,
    pub libtorch: PathBuf,
    /// The toolchain folder holding bin/cargo and bin/rustc.
    pub toolchain: PathBuf,
    /// Cargo's home; its registry holds the crates for offline builds.
    pub cargo_home: PathBuf,
    /// The config's public data folder and the validator's hidden folder.
    pub data: PathBuf,
    pub hidden: PathBuf,
    /// Secret that picks the replay segment after submission.
    pub secret: Vec<u8>,
    pub limits: Limits,
    /// Where the models run (builds never see a GPU). A floor is kept per
    /// [`Device::class`], and a challenger is decided only against its own class.
    pub device: Device,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EvalResult {
    pub hidden_bpb: f64,
    pub replay_from_step: u64,
    pub replay_max_abs_diff: f64,
    pub build_s: f64,
    pub probe_s: f64,
    pub eval_s: f64,
    /// The causality check of the hidden score: what was compared and found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causality: Option<proof::causality::CausalityReport>,
    #[serde(default)]
    pub causality_s: f64,
    pub replay_s: f64,
    /// Seconds the harness spent on the model in probe, eval, check and replay, as it
    /// reports them: the stages' wall time less process start-up and loading.
    #[serde(default)]
    pub compute_s: f64,
}

/// The replay's starting step: one of 0 and the checkpoints before the last,
/// chosen by HMAC-SHA256(secret, bundle digest) so a miner cannot know it.
pub fn replay_start(secret: &[u8], bundle_digest: &str, checkpoint_steps: &[u64]) -> u64 {
    let mut candidates = vec![0];
    candidates.extend(checkpoint_steps.iter().copied().take(checkpoint_steps.len().saturating_sub(1)));
    let n = keyed_choice(secret, "replay", bundle_digest);
    candidates[(n % candidates.len() as u64) as usize]
}

/// Confirmation run `i`'s seed offset: chosen by the validator after submission,
/// far from the small offsets a miner would search.
pub fn confirmation_seed(secret: &[u8], bundle_digest: &str, i: u32) -> u64 {
    (1 << 40) | (keyed_choice(secret, &format!("confirm-{i}"), bundle_digest) >> 24)
}

/// HMAC-SHA256(secret, purpose ‖ 0 ‖ bundle digest), first 8 bytes: a choice the
/// miner cannot predict, different per purpose.
pub(crate) fn keyed_choice(secret: &[u8], purpose: &str, bundle_digest: &str) -> u64 {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(purpose.as_bytes());
    mac.update(&[0]);
    mac.update(bundle_digest.as_bytes());
    let tag = mac.finalize().into_bytes();
    u64::from_be_bytes(tag[..8].try_into().expect("8 bytes"))
}

/// Builds and runs the PR's harness in `work`; `aim_at` is the king's per-token
/// hidden nats, when its floor has them. Ok(Err(findings)) when the
/// miner's side fails; otherwise the result and the built harness (copied into
/// `work`, so later builds in the shared target folder cannot change it).
pub fn evaluate(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    repo: &RecipeRepo,
    (head_tree, king_tree): (git2::Oid, git2::Oid),
    bundle: &Path,
    (manifest, protocol, aim_at): (&BundleManifest, &ProtocolConfig, Option<&[f32]>),
    work: &Path,
) -> Result<std::result::Result<(EvalResult, PathBuf), Vec<Finding>>> {
    let reject = |code, msg: String| Ok(Err(vec![Finding::reject(code, "recipe", None, msg)]));
    let build_started = std::time::Instant::now();
    let bin = match build(sandbox, setup, repo, head_tree, work)? {
        Ok(bin) => bin,
        Err(why) => {
            // Whose fault? If the king does not build here either, ours.
            if let Err(king) = build(sandbox, setup, repo, king_tree, work)? {
                bail!("the king does not build in this validator's sandbox either: {king}");
            }
            return reject("eval.build", format!("the recipe does not build: {why}"));
        }
    };
    let build_s = build_started.elapsed().as_secs_f64();
    let cfg = [
        "--config".into(),
        manifest.config.clone().into(),
        "--device".into(),
        setup.device.harness_arg().into(),
        "--data".into(),
        setup.data.clone().into_os_string(),
    ];
    let (steps, last) = checkpoints(bundle)?;
    let harness = |args: Vec<OsString>| run_harness(sandbox, setup, &bin, vec![bundle.to_path_buf()], vec![], args);

    let (probe, report) =
        harness([vec!["probe".into()], cfg.to_vec(), vec!["--checkpoint".into(), last.clone().into()]].concat())?;
    // A result counts only from a harness that also exited cleanly.
    if report["passed"] != true || !probe.output.status.success() {
        return reject(
            "eval.probe",
            format!(
                "the causality probe (an early filter; the causality check decides) failed: {}",
                summarize(&report, &probe.output.stderr)
            ),
        );
    }
    let key = manifest.digest().to_string();
    let checks = Checks { key: &key, rows: protocol.causality_rows, aim_at };
    let score = match score_hidden(sandbox, setup, &bin, protocol, &last, vec![bundle.to_path_buf()], checks)? {
        Ok(score) => score,
        Err(finding) => return Ok(Err(vec![finding])),
    };
    let from = replay_start(&setup.secret, manifest.digest().as_str(), &steps);
    let (replay, rep) = harness(
        [
            vec![
                "replay".into(),
                "--run".into(),
                bundle.into(),
                "--from-step".into(),
                from.to_string().into(),
                "--steps".into(),
                REPLAY_STEPS.to_string().into(),
                "--tolerance".into(),
                REPLAY_TOLERANCE.to_string().into(),
            ],
            cfg.to_vec(),
        ]
        .concat(),
    )?;
    let diff = rep["report"]["max_abs_diff"].as_f64().unwrap_or(f64::INFINITY);
    if rep["passed"] != true || !replay.output.status.success() {
        return reject("eval.replay", format!("replaying {REPLAY_STEPS} steps from step {from} differs from the log by {diff:.3e} nats (tolerance {REPLAY_TOLERANCE}): {}", tail_of(&replay.output.stderr)));
    }
    let model_s: f64 = [&report, &rep].iter().filter_map(|r| r["compute_s"].as_f64()).sum();
    let result = EvalResult {
        hidden_bpb: score.bpb,
        replay_from_step: from,
        replay_max_abs_diff: diff,
        build_s,
        probe_s: probe.seconds,
        eval_s: score.eval_s,
        causality_s: score.check_s,
        replay_s: replay.seconds,
        compute_s: model_s + score.eval_compute_s + score.check_compute_s,
        causality: Some(score.causality),
    };
    Ok(Ok((result, bin)))
}

/// Runs a built `karpa-train` in the sandbox with the public data, libtorch and
/// `read_only` mounted (plus `read_write`), returning its JSON output.
pub fn run_harness(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    bin: &Path,
    read_only: Vec<PathBuf>,
    read_write: Vec<PathBuf>,
    args: Vec<OsString>,
) -> Result<(crate::sandbox::Finished, serde_json::Value)> {
    super::gpu_check::ensure_usable(sandbox, setup, bin)?;
    run_sandboxed(sandbox, setup, bin, (read_only, read_write), args)
}

/// [`run_harness`] without the GPU self-test (which runs through this): the
/// read-only and read-write mounts besides the harness, its libraries and data.
pub(super) fn run_sandboxed(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    bin: &Path,
    (read_only, read_write): (Vec<PathBuf>, Vec<PathBuf>),
    args: Vec<OsString>,
) -> Result<(crate::sandbox::Finished, serde_json::Value)> {
    let mounts = Mounts {
        read_only: [vec![bin.to_path_buf(), site_packages(setup)?, setup.data.clone()], read_only].concat(),
        read_write,
        devices: setup.device.nodes()?,
        ..Default::default()
    };
    let cmd: Vec<OsString> = std::iter::once(bin.as_os_str().to_owned()).chain(args).collect();
    let env = setup.device.env();
    let done = sandbox.run(&mounts, &setup.limits, Path::new("/tmp"), &env, &cmd)?;
    let json = serde_json::from_slice(&done.output.stdout).unwrap_or(serde_json::Value::Null);
    Ok((done, json))
}

/// Trains the built harness `bin` in the sandbox with `seed_offset`, confined,
/// into `runs/seed-<offset>`: the path of its last checkpoint, or Ok(Err(why))
/// when the recipe's training fails.
pub fn train_seeded(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    bin: &Path,
    config: &str,
    seed_offset: u64,
    runs: &Path,
) -> Result<std::result::Result<PathBuf, String>> {
    let out = runs.join(format!("seed-{seed_offset}"));
    std::fs::create_dir_all(runs)?;
    let mut args: Vec<OsString> =
        ["train", "--config", config, "--device", setup.device.harness_arg(), "--data"].map(OsString::from).into();
    args.extend([
        setup.data.clone().into_os_string(),
        // The validator's trainings are confined or do not run (train's default
        // is best-effort, for miners' machines).
        "--confine".into(),
        "required".into(),
        "--quiet".into(),
        "--seed-offset".into(),
        seed_offset.to_string().into(),
        "--out".into(),
        out.clone().into(),
    ]);
    let (done, state) = run_harness(sandbox, setup, bin, vec![], vec![runs.to_path_buf()], args)?;
    match state["checkpoints"].as_array().and_then(|c| c.last()).and_then(|c| c["path"].as_str()) {
        Some(last) => Ok(Ok(out.join(last))),
        None => Ok(Err(format!("training failed: {}", tail_of(&done.output.stderr)))),
    }
}

/// libtorch's own libraries load CUDA's from sibling packages: mount them all.
fn site_packages(setup: &EvalSetup) -> Result<PathBuf> {
    let libtorch =
        setup.libtorch.canonicalize().with_context(|| format!("libtorch not found at {}", setup.libtorch.display()))?;
    Ok(libtorch.parent().context("libtorch has a parent folder")?.to_path_buf())
}

/// Builds `karpa-train` from `tree` offline inside the sandbox: the tree
/// read-only, only the shared target folder writable, no data mounted. Returns
/// the binary copied into `work` (see `recipe_build`), or Ok(Err(why)) when the
/// code does not build.
pub fn build(
    sandbox: &Sandbox,
    setup: &EvalSetup,
    repo: &RecipeRepo,
    tree: git2::Oid,
    work: &Path,
) -> Result<std::result::Result<PathBuf, String>> {
    let dir = work.join(tree.to_string());
    if !dir.exists() {
        repo.checkout(tree, &dir)?;
    }
    std::fs::create_dir_all(&setup.target_dir)?;
    let libtorch = setup.libtorch.clone();
    let toolchain_bin = setup.toolchain.join("bin");
    // Cargo's home at its real path (so crates keep their ids and builds share the
    // target folder), writable for cargo's lock, with the registry read-only inside.
    let cargo_home = setup.cargo_home.clone();
    let env: Vec<(&str, OsString)> = vec![
        ("CARGO_HOME", cargo_home.clone().into()),
        ("CARGO_TARGET_DIR", setup.target_dir.clone().into()),
        ("LIBTORCH", libtorch.into()),
        ("RUSTC", toolchain_bin.join("rustc").into()),
        ("CARGO_NET_OFFLINE", "true".into()),
    ];
    let mounts = Mounts {
        read_only: vec![site_packages(setup)?, setup.toolchain.clone()],
        // The tree is built from its copy inside the target folder (see recipe_build).
        read_write: vec![setup.target_dir.clone()],
        tmpfs: vec![cargo_home.clone()],
        read_only_at: vec![(cargo_home.join("registry"), cargo_home.join("registry"))],
        devices: vec![],
    };
    let cmd: Vec<OsString> = [toolchain_bin.join("cargo").into_os_string()]
        .into_iter()
        .chain(crate::recipe_build::CARGO_ARGS.map(OsString::from))
        .collect();
    let out = work.join(format!("karpa-train-{tree}"));
    let toolchain = crate::recipe_build::toolchain_id(&setup.toolchain, &setup.libtorch);
    crate::recipe_build::build_locked(&setup.target_dir, &dir, &toolchain, &out, |tree| {
        let done = sandbox.run(&mounts, &setup.limits, tree, &env, &cmd)?;
        if done.timed_out {
            return Ok(Err("the build ran out of time".into()));
        }
        if !done.output.status.success() {
            return Ok(Err(tail_of(&done.output.stderr)));
        }
        Ok(Ok(()))
    })
}

/// The bundle's checkpoint steps and the path of its last checkpoint.
fn checkpoints(bundle: &Path) -> Result<(Vec<u64>, PathBuf)> {
    let state: proof::state::FinalState =
        serde_json::from_slice(&std::fs::read(bundle.join("final_state.json"))?).context("final_state.json")?;
    let Some(last) = state.checkpoints.last() else { bail!("the bundle has no checkpoint") };
    if !proof::bundle::safe_relative(&last.path) {
        bail!("checkpoint path {:?} leaves the bundle", last.path);
    }
    Ok((state.checkpoints.iter().map(|c| c.step).collect(), bundle.join(&last.path)))
}

pub(crate) fn tail_of(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = s.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

fn summarize(report: &serde_json::Value, stderr: &[u8]) -> String {
    match report["checks"].as_array() {
        Some(checks) => checks
            .iter()
            .filter(|c| c["passed"] != true)
            .map(|c| c["detail"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join("; "),
        None => tail_of(stderr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_start_is_keyed_and_never_the_last_checkpoint() {
        let steps = [10, 20, 30, 40];
        let picks: std::collections::BTreeSet<u64> =
            (0..200).map(|i| replay_start(b"secret", &format!("digest-{i}"), &steps)).collect();
        assert_eq!(picks.into_iter().collect::<Vec<_>>(), vec![0, 10, 20, 30]);
        assert_eq!(replay_start(b"k", "d", &steps), replay_start(b"k", "d", &steps));
        let differs = (0..50)
            .any(|i| replay_start(b"k1", &format!("d{i}"), &steps) != replay_start(b"k2", &format!("d{i}"), &steps));
        assert!(differs, "the secret must matter");
    }
}
