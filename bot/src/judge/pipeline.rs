//! `karpa judge`: the stages of DESIGN §7 over a local recipe repository, a PR
//! head and a bundle. Each stage is pure or idempotent, so a restarted job simply
//! runs again. Integrity stages run first; the first one with findings ends the
//! judgment as `rejected` (or `stale`), so no miner code runs on a broken proof.

use super::confirmation::{guard, Challenger, Confirmations, Guard};
use super::decision::{decide, DecisionRule, Outcome};
use super::evaluate::{evaluate, EvalResult, EvalSetup};
use super::ledger::{Claim, Kind, Ledger};
use super::noise_floor::{FloorLookup, Floors};
use super::verdict::{Confirmation, StageReport, Verdict, VerdictClass};
use super::{plausibility, Finding};
use crate::repo::RecipeRepo;
use anyhow::{Context, Result};
use proof::bundle::{verify_dir, BundleManifest};
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

    // 1. Intake: unpack safely, verify structure, digests, attestation, hotkey.
    let unpacked = tempfile::tempdir()?;
    let dir: &Path = if input.bundle.is_file() {
        let file = std::fs::File::open(&input.bundle)?;
        if let Err(e) = crate::archive::unpack(std::io::BufReader::new(file), unpacked.path(), &[]) {
            run.findings.push(Finding::reject("intake.archive", "bundle", None, format!("{e:#}")));
            return Ok(run.verdict(VerdictClass::Rejected, "the bundle file does not unpack"));
        }
        unpacked.path()
    } else {
        &input.bundle
    };
    let intake = run.stage("intake", |r| {
        let (manifest, findings) = verify_dir(dir);
        r.manifest = manifest;
        Ok(findings.into_iter().map(bundle_finding).collect())
    })?;
    if !intake {
        return Ok(run.verdict(VerdictClass::Rejected, "the bundle's proof does not hold"));
    }
    let manifest = run.manifest.clone().expect("intake passed");

    // 2. Base: the bundle and the PR must build on the current king.
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
        return Ok(run.verdict(VerdictClass::Stale, format!("the king is now {}", king.tag)));
    }

    // 3. Diff scan: PR tree = bundle patch applied to the king (compared as tree
    //    ids); allowlisted paths; the recipe's code scanned.
    let diff_ok = run.stage("diff-scan", |_| {
        let mut out = Vec::new();
        let patch = std::fs::read(dir.join("patch.diff"))?;
        let bundle_tree = git2::Diff::from_buffer(&patch).ok().and_then(|d| repo.apply_patch(king.tree, &d).ok());
        if bundle_tree.map(|t| t.to_string()) != Some(manifest.patched_tree.clone()) {
            out.push(Finding::reject(
                "diff.patch",
                "patch.diff",
                None,
                "the bundle's patch does not produce its claimed tree",
            ));
        }
        if head_tree.to_string() != manifest.patched_tree {
            out.push(Finding::reject(
                "diff.mismatch",
                "patch.diff",
                None,
                "the PR's tree differs from the tree the bundle was trained on",
            ));
        }
        out.extend(super::rules::findings(&repo, king.tree, head_tree)?);
        Ok(out)
    })?;
    if !diff_ok {
        return Ok(run.verdict(VerdictClass::Rejected, "the patch breaks the rules"));
    }

    // 4. Attestation against what this validator expects for this king.
    let attest_ok = run.stage("attestation", |_| {
        let mut out = Vec::new();
        let ours = repo.harness_digest(king.tree)?;
        if manifest.harness_digest != ours {
            out.push(Finding::reject(
                "attestation.harness",
                "manifest.json",
                None,
                format!("harness digest {} is not {}'s ({ours})", manifest.harness_digest, king.tag),
            ));
        }
        if let Claim::Taken(other) = input.ledger.claim(Kind::Nonce, &manifest.nonce, manifest.digest().as_str())? {
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
        return Ok(run.verdict(VerdictClass::Rejected, "the attestation does not hold for this king"));
    }

    // 5. Log plausibility under the king's config.
    let plausible = run.stage("log-plausibility", |_| {
        let cfg_path = format!("trainer/configs/{}.toml", manifest.config);
        let files = repo.files(king.tree)?;
        let Some((_, text)) = files.iter().find(|(p, _)| *p == cfg_path) else {
            return Ok(vec![Finding::reject(
                "log.config",
                "manifest.json",
                None,
                format!("{} has no config {}", king.tag, manifest.config),
            )]);
        };
        let cfg = proof::config::ProtocolConfig::from_toml(&manifest.config, &String::from_utf8_lossy(text))?;
        let calibration =
            serde_json::from_slice(&std::fs::read(dir.join("calibration.json"))?).context("calibration.json")?;
        Ok(plausibility::check_log(&std::fs::read_to_string(dir.join("log.jsonl"))?, &cfg, &calibration))
    })?;
    if !plausible {
        return Ok(run.verdict(VerdictClass::Rejected, "the training log is not plausible"));
    }

    // 6. Hidden eval: build, probe, eval, replay — all sandboxed; no sandbox, no eval.
    let Some(setup) = &input.eval else {
        return Ok(run.verdict(
            VerdictClass::Error,
            "integrity checks passed; this validator has no hidden evaluation configured",
        ));
    };
    // The king's floor first: the decision needs it and the check aims with it,
    // so a judgment whose floor is still being measured waits before it runs anything.
    let floor = match input.floors.lookup(&king.tag, &manifest.config)? {
        FloorLookup::Ready(f) => Some(f),
        FloorLookup::Measuring { done, of } => {
            let why = format!("waiting for {}'s noise floor on {}: {done} of {of} runs", king.tag, manifest.config);
            return Ok(run.verdict(VerdictClass::Waiting, why));
        }
        FloorLookup::Missing => None,
    };
    let sandbox = match crate::sandbox::Sandbox::new() {
        Ok(s) => s,
        Err(e) => {
            run.findings.push(Finding::reject("sandbox.unavailable", "validator", None, format!("{e:#}")));
            return Ok(run.verdict(VerdictClass::Error, "the sandbox is unavailable; nothing was run"));
        }
    };
    let t = std::time::Instant::now();
    let work = tempfile::Builder::new().prefix("karpa-judge-").tempdir()?;
    let protocol = repo.protocol_config(king.tree, &manifest.config)?;
    let floor = floor.as_ref();
    let aim_at = floor.and_then(|f| f.reference.as_deref());
    let what = (&manifest, &protocol, aim_at);
    let evaluated = evaluate(&sandbox, setup, &repo, (head_tree, king.tree), dir, what, work.path());
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
            return Ok(run.verdict(VerdictClass::Rejected, "the recipe failed the hidden evaluation's checks"));
        }
        Err(e) => {
            run.findings.push(Finding::reject("eval.infrastructure", "validator", None, format!("{e:#}")));
            return Ok(
                run.verdict(VerdictClass::Error, "the evaluation could not run on this validator; it will be retried")
            );
        }
    };
    let bpb = result.hidden_bpb;
    run.eval = Some(result);

    // 7. Decision against the king's noise floor.
    let Some(floor) = floor else {
        return Ok(run.verdict(
            VerdictClass::Error,
            format!("hidden bpb {bpb:.4}; no noise floor for {} on {}", king.tag, manifest.config),
        ));
    };
    let rationale = std::fs::read_to_string(dir.join("rationale.md")).unwrap_or_default();
    let d = decide(&input.rule, floor, bpb, &rationale);
    let (mean, threshold) = (d.king_mean, d.threshold);
    let mut outcome = d.outcome;

    // The same change submitted again (reformatted or not) earns nothing new:
    // neither a second meaningful failure nor a crown bought by re-rolling seeds.
    let key = super::duplicate::normalized_diff_digest(&repo, king.tree, head_tree)?;
    if let Claim::Taken(other) = input.ledger.claim(Kind::Diff, &key, manifest.digest().as_str())? {
        run.decision = Some(d);
        run.findings.push(Finding::info(
            "decision.duplicate",
            "patch.diff",
            format!("the same change (normalised) was submitted before in bundle {other}"),
        ));
        return Ok(run.verdict(VerdictClass::Failure, format!("{bpb:.4} bpb, but this change was submitted before")));
    }

    // The seed-hacking guard: a run that passes the gate earns confirmation runs,
    // trained here with seeds we pick; their mean decides the crown.
    let guarded = input.rule.confirmation_runs > 0;
    if guarded && (input.rule.gate(floor, bpb) || outcome == Outcome::Crowned) {
        let t = Instant::now();
        let digest = manifest.digest().to_string();
        let challenger = Challenger {
            sandbox: &sandbox,
            setup,
            bin: &bin,
            protocol: &protocol,
            digest: &digest,
            king: &king.tag,
            aim_at,
            work: work.path(),
        };
        let stage = |passed| StageReport { stage: "confirmation".into(), passed, seconds: t.elapsed().as_secs_f64() };
        match guard(input.confirmations.as_ref(), &challenger, (&input.rule, floor, &rationale)) {
            Ok(Guard::Waiting(why)) => return Ok(run.verdict(VerdictClass::Waiting, why)),
            Ok(Guard::Cheated(finding, c)) => {
                run.findings.push(finding);
                run.stages.push(stage(false));
                run.confirmation = Some(c);
                return Ok(
                    run.verdict(VerdictClass::Rejected, "a confirmation run's hidden score failed the causality check")
                );
            }
            Ok(Guard::Decided(decided, c, failed)) => {
                run.findings.extend(failed);
                run.stages.push(stage(c.passed));
                run.confirmation = Some(c);
                outcome = decided;
            }
            Err(e) => {
                run.findings.push(Finding::reject("eval.infrastructure", "validator", None, format!("{e:#}")));
                return Ok(run.verdict(VerdictClass::Error, "a confirmation run could not run; it will be retried"));
            }
        }
    }
    run.decision = Some(d);
    let (class, summary) = match outcome {
        Outcome::Crowned => (
            VerdictClass::Crowned,
            match &run.confirmation {
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
        _ if run.confirmation.as_ref().is_some_and(|c| !c.passed) => (
            if outcome == Outcome::MeaningfulFailure { VerdictClass::MeaningfulFailure } else { VerdictClass::Failure },
            format!("{bpb:.4} bpb beat {mean:.4}, but the validator's confirmation runs did not"),
        ),
        Outcome::MeaningfulFailure => {
            (VerdictClass::MeaningfulFailure, format!("{bpb:.4} bpb against {mean:.4}: close, not decisive"))
        }
        Outcome::Failure => (VerdictClass::Failure, format!("{bpb:.4} bpb against the king's {mean:.4}")),
    };
    Ok(run.verdict(class, summary))
}
