//! `karpa judge`: the stages of DESIGN §7 over a local recipe repository, a PR
//! head and a bundle. Each stage is pure or idempotent, so a restarted job simply
//! runs again. Integrity stages run first; the first one with findings ends the
//! judgment as `rejected` (or `stale`), so no miner code runs on a broken proof.

use super::confirmation::{guard, Challenger, Confirmations, Guard};
use super::decision::{decide, DecisionRule, NoiseFloor, Outcome};
use super::evaluate::{evaluate, EvalResult, EvalSetup};
use super::ledger::{Claim, Kind, Ledger};
use super::noise_floor::{FloorLookup, Floors};
use super::verdict::{Confirmation, StageReport, Verdict, VerdictClass};
use super::{plausibility, Finding};
use crate::repo::{King, RecipeRepo};
use anyhow::{Context, Result};
use proof::bundle::{verify_dir, BundleManifest};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct JudgeInput {
    pub repo: PathBuf,
    /// The PR's head: a branch, ref or commit of `repo`.
    pub pr_head: String,
    /// Bundle folder or packed file.
    pub bundle: PathBuf,
    /// Nonces and normalised diffs seen before.
    pub ledger: Box<dyn Ledger>,
    /// Hidden evaluation: without it the judgment stops after the integrity stages.
    pub eval: Option<EvalSetup>,
    /// Where the current king's floor on the bundle's config is found.
    pub floors: Box<dyn Floors>,
    /// Where the guard's confirmation runs are trained.
    pub confirmations: Box<dyn Confirmations>,
    pub rule: DecisionRule,
    /// This judgment's own hidden evaluation from an earlier look (a job that
    /// waited for its confirmation runs): taken as it was, not run again.
    pub prior: Option<PriorEval>,
}

/// A hidden evaluation kept for the same bundle against the same king.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PriorEval {
    pub bundle_digest: String,
    pub king: String,
    pub eval: EvalResult,
}

/// The stages that ran, the findings so far, and the facts later stages need.
struct Run {
    stages: Vec<StageReport>,
    findings: Vec<Finding>,
    manifest: Option<BundleManifest>,
    king: Option<String>,
    eval: Option<EvalResult>,
    decision: Option<super::decision::Decision>,
    confirmation: Option<Confirmation>,
}

impl Run {
    /// Times a stage; returns whether it passed (no findings).
    fn stage(&mut self, name: &'static str, f: impl FnOnce(&mut Run) -> Result<Vec<Finding>>) -> Result<bool> {
        let t = Instant::now();
        let found = f(self)?;
        let passed = found.is_empty();
        self.findings.extend(found);
        self.stages.push(StageReport { stage: name.into(), passed, seconds: t.elapsed().as_secs_f64() });
        Ok(passed)
    }

    fn verdict(self, class: VerdictClass, summary: impl Into<String>) -> Verdict {
        Verdict {
            class,
            summary: summary.into(),
            bundle_digest: self.manifest.as_ref().map(|m| m.digest().to_string()),
            king: self.king,
            findings: self.findings,
            stages: self.stages,
            eval: self.eval,
            decision: self.decision,
            confirmation: self.confirmation,
            judge_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

fn bundle_finding(f: proof::bundle::Finding) -> Finding {
    Finding::reject(f.code, f.file.as_deref().unwrap_or("bundle"), None, f.message)
}

/// Where a stage leaves the judgment: on to the next stage with what it
/// found, or ended with this class and summary.
type Step<T = ()> = Result<ControlFlow<(VerdictClass, String), T>>;

fn stop<T>(class: VerdictClass, summary: impl Into<String>) -> Step<T> {
    Ok(ControlFlow::Break((class, summary.into())))
}

/// A stage's outcome, or the end of the judgment.
macro_rules! step {
    ($stage:expr) => {
        match $stage? {
            ControlFlow::Continue(v) => v,
            ControlFlow::Break(end) => return Ok(end),
        }
    };
}

/// What every stage after intake reads.
struct Case<'a> {
    input: &'a JudgeInput,
    repo: &'a RecipeRepo,
    king: &'a King,
    /// The unpacked bundle.
    dir: &'a Path,
    manifest: &'a BundleManifest,
    /// The PR head's tree.
    head_tree: git2::Oid,
}

pub fn judge(input: &JudgeInput) -> Result<Verdict> {
    let repo = RecipeRepo::open(&input.repo)?;
    let king = repo.king(None)?;
    let mut run = Run {
        stages: Vec::new(),
        findings: Vec::new(),
        manifest: None,
        king: Some(king.tag.clone()),
        eval: None,
        decision: None,
        confirmation: None,
    };
    let unpacked = tempfile::tempdir()?;
    let (class, summary) = stages(input, &repo, &king, &mut run, unpacked.path())?;
    Ok(run.verdict(class, summary))
}

/// The stages of docs/PROTOCOL.md in order; the first that decides ends the judgment.
fn stages(
    input: &JudgeInput,
    repo: &RecipeRepo,
    king: &King,
    run: &mut Run,
    unpacked: &Path,
) -> Result<(VerdictClass, String)> {
    let (dir, manifest) = step!(intake(input, run, unpacked));
    let head_tree = step!(base(input, repo, king, &manifest, run));
    let case = Case { input, repo, king, dir: &dir, manifest: &manifest, head_tree };
    step!(diff_scan(&case, run));
    step!(attestation(&case, run));
    step!(log_plausibility(&case, run));
    let evaluated = step!(hidden_eval(&case, run));
    Ok(step!(decision(&case, run, &evaluated)))
}

/// 1. Intake: unpack safely, verify structure, digests, attestation, hotkey.
fn intake(input: &JudgeInput, run: &mut Run, unpacked: &Path) -> Step<(PathBuf, BundleManifest)> {
    let dir = if input.bundle.is_file() {
        let file = std::fs::File::open(&input.bundle)?;
        if let Err(e) = crate::archive::unpack(std::io::BufReader::new(file), unpacked, &[]) {
            run.findings.push(Finding::reject("intake.archive", "bundle", None, format!("{e:#}")));
            return stop(VerdictClass::Rejected, "the bundle file does not unpack");
        }
        unpacked.to_path_buf()
    } else {
        input.bundle.clone()
    };
    let intake = run.stage("intake", |r| {
        let (manifest, findings) = verify_dir(&dir);
        r.manifest = manifest;
        Ok(findings.into_iter().map(bundle_finding).collect())
    })?;
    match (intake, run.manifest.clone()) {
        (true, Some(manifest)) => Ok(ControlFlow::Continue((dir, manifest))),
        _ => stop(VerdictClass::Rejected, "the bundle's proof does not hold"),
    }
}

/// 2. Base: the bundle and the PR must build on the current king. The PR head's tree.
fn base(
    input: &JudgeInput,
    repo: &RecipeRepo,
    king: &King,
    manifest: &BundleManifest,
    run: &mut Run,
) -> Step<git2::Oid> {
    let (head, head_tree) = repo.commit(&input.pr_head)?;
    if manifest.king_tag != king.tag
        || manifest.king_commit != king.commit.to_string()
        || !repo.descends_from(head, king.commit)?
    {
        run.findings.push(Finding::reject(
            "base.stale",
            "bundle",
            None,
            format!(
                "trained on {} and based on a commit that is not {}; rebase and re-prove",
                manifest.king_tag, king.tag
            ),
        ));
        return stop(VerdictClass::Stale, format!("the king is now {}", king.tag));
    }
    Ok(ControlFlow::Continue(head_tree))
}

/// 3. Diff scan: PR tree = bundle patch applied to the king (compared as tree
///    ids); allowlisted paths; the recipe's code scanned.
fn diff_scan(c: &Case<'_>, run: &mut Run) -> Step {
    let diff_ok = run.stage("diff-scan", |_| {
        let mut out = Vec::new();
        let patch = std::fs::read(c.dir.join("patch.diff"))?;
        let bundle_tree = git2::Diff::from_buffer(&patch).ok().and_then(|d| c.repo.apply_patch(c.king.tree, &d).ok());
        if bundle_tree.map(|t| t.to_string()) != Some(c.manifest.patched_tree.clone()) {
            out.push(Finding::reject(
                "diff.patch",
                "patch.diff",
                None,
                "the bundle's patch does not produce its claimed tree",
            ));
        }
        if c.head_tree.to_string() != c.manifest.patched_tree {
            out.push(Finding::reject(
                "diff.mismatch",
                "patch.diff",
                None,
                "the PR's tree differs from the tree the bundle was trained on",
            ));
        }
        out.extend(super::rules::findings(c.repo, c.king.tree, c.head_tree)?);
        Ok(out)
    })?;
    if !diff_ok {
        return stop(VerdictClass::Rejected, "the patch breaks the rules");
    }
    Ok(ControlFlow::Continue(()))
}

/// 4. Attestation against what this validator expects for this king.
fn attestation(c: &Case<'_>, run: &mut Run) -> Step {
    let attest_ok = run.stage("attestation", |_| {
        let mut out = Vec::new();
        let ours = c.repo.harness_digest(c.king.tree)?;
        if c.manifest.harness_digest != ours {
            out.push(Finding::reject(
                "attestation.harness",
                "manifest.json",
                None,
                format!("harness digest {} is not {}'s ({ours})", c.manifest.harness_digest, c.king.tag),
            ));
        }
        let digest = c.manifest.digest();
        if let Claim::Taken(other) = c.input.ledger.claim(Kind::Nonce, &c.manifest.nonce, digest.as_str())? {
            out.push(Finding::reject(
                "attestation.nonce",
                "manifest.json",
                None,
                format!("nonce already used by bundle {other}"),
            ));
        }
        Ok(out)
    })?;
    if !attest_ok {
        return stop(VerdictClass::Rejected, "the attestation does not hold for this king");
    }
    Ok(ControlFlow::Continue(()))
}

/// 5. Log plausibility under the king's config.
fn log_plausibility(c: &Case<'_>, run: &mut Run) -> Step {
    let plausible = run.stage("log-plausibility", |_| {
        let cfg_path = format!("trainer/configs/{}.toml", c.manifest.config);
        let files = c.repo.files(c.king.tree)?;
        let Some((_, text)) = files.iter().find(|(p, _)| *p == cfg_path) else {
            return Ok(vec![Finding::reject(
                "log.config",
                "manifest.json",
                None,
                format!("{} has no config {}", c.king.tag, c.manifest.config),
            )]);
        };
        let cfg = proof::config::ProtocolConfig::from_toml(&c.manifest.config, &String::from_utf8_lossy(text))?;
        let calibration =
            serde_json::from_slice(&std::fs::read(c.dir.join("calibration.json"))?).context("calibration.json")?;
        Ok(plausibility::check_log(&std::fs::read_to_string(c.dir.join("log.jsonl"))?, &cfg, &calibration))
    })?;
    if !plausible {
        return stop(VerdictClass::Rejected, "the training log is not plausible");
    }
    Ok(ControlFlow::Continue(()))
}

/// What the hidden evaluation leaves for the decision and the guard.
struct Evaluated<'a> {
    setup: &'a EvalSetup,
    sandbox: crate::sandbox::Sandbox,
    work: tempfile::TempDir,
    protocol: proof::config::ProtocolConfig,
    floor: Option<NoiseFloor>,
    /// The challenger's harness, built here (None: the evaluation was an earlier look's).
    bin: Option<PathBuf>,
    bpb: f64,
}

/// 6. Hidden eval: the king's floor first (the decision needs it and the check
///    aims with it, so a judgment whose floor is still being measured waits
///    before it runs anything), then build, probe, eval, causality check and
///    replay, all sandboxed; no sandbox, no eval.
fn hidden_eval<'a>(c: &Case<'a>, run: &mut Run) -> Step<Evaluated<'a>> {
    let Some(setup) = &c.input.eval else {
        return stop(
            VerdictClass::Error,
            "integrity checks passed; this validator has no hidden evaluation configured",
        );
    };
    let floor = match c.input.floors.lookup(&c.king.tag, &c.manifest.config)? {
        FloorLookup::Ready(f) => Some(f),
        FloorLookup::Measuring { done, of } => {
            let why = format!("waiting for {}'s noise floor on {}: {done} of {of} runs", c.king.tag, c.manifest.config);
            return stop(VerdictClass::Waiting, why);
        }
        FloorLookup::Missing => None,
    };
    let sandbox = match crate::sandbox::Sandbox::new() {
        Ok(s) => s,
        Err(e) => {
            run.findings.push(Finding::reject("sandbox.unavailable", "validator", None, format!("{e:#}")));
            return stop(VerdictClass::Error, "the sandbox is unavailable; nothing was run");
        }
    };
    let work = tempfile::Builder::new().prefix("karpa-judge-").tempdir()?;
    let protocol = c.repo.protocol_config(c.king.tree, &c.manifest.config)?;
    let digest = c.manifest.digest().to_string();
    if let Some(prior) = c.input.prior.as_ref().filter(|p| p.bundle_digest == digest && p.king == c.king.tag) {
        let e = &prior.eval;
        let seconds = e.build_s + e.probe_s + e.eval_s + e.causality_s + e.replay_s;
        run.stages.push(StageReport { stage: "hidden-eval".into(), passed: true, seconds });
        run.stages.push(StageReport { stage: "causality-check".into(), passed: true, seconds: e.causality_s });
        run.eval = Some(e.clone());
        let bpb = e.hidden_bpb;
        return Ok(ControlFlow::Continue(Evaluated { setup, sandbox, work, protocol, floor, bin: None, bpb }));
    }
    let t = std::time::Instant::now();
    let aim_at = floor.as_ref().and_then(|f| f.reference.as_deref());
    let what = (c.manifest, &protocol, aim_at);
    let evaluated = evaluate(&sandbox, setup, c.repo, (c.head_tree, c.king.tree), c.dir, what, work.path());
    let passed = matches!(evaluated, Ok(Ok(_)));
    run.stages.push(StageReport { stage: "hidden-eval".into(), passed, seconds: t.elapsed().as_secs_f64() });
    // The causality check runs inside the hidden eval; it gets its own line.
    let check = match &evaluated {
        Ok(Ok((result, _))) => Some((true, result.causality_s)),
        Ok(Err(findings)) if findings.iter().any(|f| f.code == "eval.causality") => Some((false, 0.0)),
        _ => None,
    };
    if let Some((passed, seconds)) = check {
        run.stages.push(StageReport { stage: "causality-check".into(), passed, seconds });
    }
    let (result, bin) = match evaluated {
        Ok(Ok(done)) => done,
        Ok(Err(findings)) => {
            run.findings.extend(findings);
            return stop(VerdictClass::Rejected, "the recipe failed the hidden evaluation's checks");
        }
        Err(e) => {
            run.findings.push(Finding::reject("eval.infrastructure", "validator", None, format!("{e:#}")));
            return stop(VerdictClass::Error, "the evaluation could not run on this validator; it will be retried");
        }
    };
    let bpb = result.hidden_bpb;
    run.eval = Some(result);
    Ok(ControlFlow::Continue(Evaluated { setup, sandbox, work, protocol, floor, bin: Some(bin), bpb }))
}

/// 7. Decision against the king's noise floor, a change submitted before
///    earning nothing new, and the seed-hacking guard.
fn decision(c: &Case<'_>, run: &mut Run, e: &Evaluated<'_>) -> Step<(VerdictClass, String)> {
    let bpb = e.bpb;
    let Some(floor) = &e.floor else {
        let why = format!("hidden bpb {bpb:.4}; no noise floor for {} on {}", c.king.tag, c.manifest.config);
        return stop(VerdictClass::Error, why);
    };
    let rationale = std::fs::read_to_string(c.dir.join("rationale.md")).unwrap_or_default();
    let d = decide(&c.input.rule, floor, bpb, &rationale);
    let mut outcome = d.outcome;

    // The same change submitted again (reformatted or not) earns nothing new:
    // neither a second meaningful failure nor a crown bought by re-rolling seeds.
    let key = super::duplicate::normalized_diff_digest(c.repo, c.king.tree, c.head_tree)?;
    if let Claim::Taken(other) = c.input.ledger.claim(Kind::Diff, &key, c.manifest.digest().as_str())? {
        run.decision = Some(d);
        run.findings.push(Finding::info(
            "decision.duplicate",
            "patch.diff",
            format!("the same change (normalised) was submitted before in bundle {other}"),
        ));
        return stop(VerdictClass::Failure, format!("{bpb:.4} bpb, but this change was submitted before"));
    }

    // The seed-hacking guard: a run that passes the gate earns confirmation runs,
    // trained here with seeds we pick; their mean decides the crown.
    let guarded = c.input.rule.confirmation_runs > 0;
    if guarded && (c.input.rule.gate(floor, bpb) || outcome == Outcome::Crowned) {
        outcome = match confirmation(c, run, e, floor, &rationale)? {
            ControlFlow::Continue(decided) => decided,
            ControlFlow::Break(end) => return Ok(ControlFlow::Break(end)),
        };
    }
    let summary = summary(outcome, bpb, &d, run.confirmation.as_ref());
    run.decision = Some(d);
    Ok(ControlFlow::Continue(summary))
}

/// The guard's runs: their mean decides, or a run's cheat refuses.
fn confirmation(c: &Case<'_>, run: &mut Run, e: &Evaluated<'_>, floor: &NoiseFloor, rationale: &str) -> Step<Outcome> {
    let t = Instant::now();
    let digest = c.manifest.digest().to_string();
    let challenger = Challenger {
        sandbox: &e.sandbox,
        setup: e.setup,
        bin: e.bin.as_deref(),
        protocol: &e.protocol,
        digest: &digest,
        king: &c.king.tag,
        aim_at: floor.reference.as_deref(),
        work: e.work.path(),
    };
    let stage = |passed| StageReport { stage: "confirmation".into(), passed, seconds: t.elapsed().as_secs_f64() };
    match guard(c.input.confirmations.as_ref(), &challenger, (&c.input.rule, floor, rationale)) {
        Ok(Guard::Waiting(why)) => stop(VerdictClass::Waiting, why),
        Ok(Guard::Cheated(finding, conf)) => {
            run.findings.push(finding);
            run.stages.push(stage(false));
            run.confirmation = Some(conf);
            stop(VerdictClass::Rejected, "a confirmation run's hidden score failed the causality check")
        }
        Ok(Guard::Decided(decided, conf, failed)) => {
            run.findings.extend(failed);
            run.stages.push(stage(conf.passed));
            run.confirmation = Some(conf);
            Ok(ControlFlow::Continue(decided))
        }
        Err(err) => {
            run.findings.push(Finding::reject("eval.infrastructure", "validator", None, format!("{err:#}")));
            stop(VerdictClass::Error, "a confirmation run could not run; it will be retried")
        }
    }
}

/// The verdict's class and one-line summary for the decided `outcome`.
fn summary(
    outcome: Outcome,
    bpb: f64,
    d: &super::decision::Decision,
    confirmation: Option<&Confirmation>,
) -> (VerdictClass, String) {
    let (mean, threshold) = (d.king_mean, d.threshold);
    match outcome {
        Outcome::Crowned => (
            VerdictClass::Crowned,
            match confirmation {
                Some(c) => format!(
                    "crowned: {bpb:.4} bpb, confirmed at {:.4} over {} validator runs; beats {mean:.4} by {:.4} (threshold {:.4})",
                    c.mean,
                    c.hidden_bpb.len(),
                    mean - c.mean,
                    c.threshold
                ),
                None => format!("crowned: {bpb:.4} bpb beats {mean:.4} by {:.4} (threshold {threshold:.4})", mean - bpb),
            },
        ),
        _ if confirmation.is_some_and(|c| !c.passed) => (
            if outcome == Outcome::MeaningfulFailure { VerdictClass::MeaningfulFailure } else { VerdictClass::Failure },
            format!("{bpb:.4} bpb beat {mean:.4}, but the validator's confirmation runs did not"),
        ),
        Outcome::MeaningfulFailure => {
            (VerdictClass::MeaningfulFailure, format!("{bpb:.4} bpb against {mean:.4}: close, not decisive"))
        }
        Outcome::Failure => (VerdictClass::Failure, format!("{bpb:.4} bpb against the king's {mean:.4}")),
    }
}
