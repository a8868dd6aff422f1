//! The judge job: a PR head with its bundle, from intake to a completed check.
//! Every step is idempotent, so a retried or re-claimed job converges: the check
//! run is created once (its id is stored), bundles are cached by digest, the
//! mirror fetch and the pipeline are repeatable, and the ledger accepts the same
//! bundle twice.

use super::Services;
use crate::corpus::record::{BundleFacts, Forge, Judged};
use crate::corpus::SubmissionId;
use crate::db::confirmations::{ConfirmRunJob, PgConfirmations};
use crate::db::floors::{FloorKey, PgFloors};
use crate::db::jobs::{self, Lease, NewJob};
use crate::db::kings::{MergeLock, NewKing};
use crate::db::{judgments, ledger::PgLedger};
use crate::forge::bundle_fetch::Fetcher;
use crate::forge::checks::{conclusion, render, Conclusion, Links};
use crate::forge::crown::{crown, CrownOutcome, Crowning, ReleaseLinks};
use crate::forge::github::{CheckRunId, CommitSha, Installation, RepoName};
use crate::forge::loss_curve::Curve;
use crate::forge::mirror::publish_note;
use crate::judge::decision::{DecisionRule, NoiseFloor};
use crate::judge::evaluate::EvalSetup;
use crate::judge::pipeline::{judge, JudgeInput, PriorEval};
use crate::judge::verdict::{Verdict, VerdictClass};
use crate::judge::Finding;
use crate::lineage::note::{CrownFacts, CrownNote};
use crate::lineage::trust::TRUST_FILE;
use anyhow::{bail, Result};
use proof::locator::Locator;
use serde::Deserialize;
use std::path::PathBuf;

/// The job payload's key for a hidden evaluation kept across looks.
const PRIOR_EVAL: &str = "prior_eval";

pub struct Settings {
    /// mirrors/ and bundles/ live here.
    pub state_dir: PathBuf,
    /// The recipe repository's git URL, `{repo}` standing for owner/name.
    pub git_url: String,
    pub fetcher: Fetcher,
    /// Without it, judgments stop after the integrity stages (verdict `error`).
    pub eval: Option<EvalSetup>,
    pub noise_floors: Vec<NoiseFloor>,
    pub rule: DecisionRule,
    /// The attempt at which an `error` verdict is shown instead of retried.
    pub max_attempts: i32,
    /// Where `karpa serve` is reachable from the internet (check-run images).
    pub public_url: Option<String>,
    /// How often a judgment waiting for its king's floor looks again.
    pub floor_poll: std::time::Duration,
    /// A validators.toml the next crown puts in force (`--trusted-set`).
    pub trusted_set: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    repo: String,
    installation: u64,
    pr: u64,
    head_sha: String,
}

pub async fn run(s: &Services, lease: &Lease) -> Result<super::Next> {
    let p: Payload = serde_json::from_value(lease.payload.clone())?;
    let key = format!("job-{}", lease.id.0);
    let repo = RepoName::parse(&p.repo)?;
    let head = CommitSha::parse(&p.head_sha)?;
    let gh = Installation::new(&s.app, p.installation)?;
    let pr = gh.pull(&repo, p.pr).await?;
    // A release that began on an earlier try (the PR may be merged by now) is
    // finished with the verdict it began with.
    let resumed = judgments::crowning(&s.pool, &key).await?;
    if resumed.is_none() && (!pr.open || pr.head != head) {
        tracing::info!(%repo, pr = p.pr, "closed or pushed again since; nothing to judge");
        return Ok(super::Next::Done);
    }
    let check = match judgments::check_run(&s.pool, &key).await? {
        Some(id) => CheckRunId(id),
        None => {
            let id = gh.start_check(&repo, &head, &key).await?;
            judgments::set_check_run(&s.pool, &key, &p.repo, p.pr, head.as_str(), id.0).await?;
            id
        }
    };
    gh.check_progress(&repo, check, "intake").await?;
    let (mut verdict, bundle) = match resumed {
        Some(v) => (v, fetch_bundle(s, &pr.body).await?.ok()),
        None => {
            let prior = lease.payload.get(PRIOR_EVAL).and_then(|v| serde_json::from_value(v.clone()).ok());
            intake_and_judge(s, &gh, (&repo, p.installation), p.pr, &head, &pr.body, prior).await?
        }
    };
    if verdict.class == VerdictClass::Waiting {
        // Each look re-verifies the bundle, so the looks thin out: the poll
        // interval doubles per wait, up to 64 times (32 min at serve's 30 s).
        let waits = lease.payload["waits"].as_u64().unwrap_or(0);
        if waits == 0 || lease.payload["waiting"].as_str() != Some(verdict.summary.as_str()) {
            gh.check_waiting(&repo, check, &verdict.summary).await?;
        }
        let mut payload = lease.payload.clone();
        payload["waits"] = (waits + 1).into();
        // Waiting for its confirmation runs, the judgment has its hidden
        // evaluation: the next look takes it instead of running it again.
        if let (Some(eval), Some(digest), Some(king)) = (&verdict.eval, &verdict.bundle_digest, &verdict.king) {
            let prior = PriorEval { bundle_digest: digest.clone(), king: king.clone(), eval: eval.clone() };
            payload[PRIOR_EVAL] = serde_json::to_value(prior)?;
        }
        payload["waiting"] = verdict.summary.clone().into();
        return Ok(super::Next::Later(s.judge.floor_poll * (1 << waits.min(6)) as u32, Some(payload)));
    }
    let mut links = Links { bundle_url: bundle.as_ref().map(|b| b.1.clone()), ..Links::default() };
    let facts = match (&bundle, &verdict.bundle_digest) {
        (Some((file, url)), Some(_)) => bundle_facts(file, url).await,
        _ => None,
    };
    if let (Some(public), Some(f), Some(digest)) = (&s.judge.public_url, &facts, &verdict.bundle_digest) {
        match draw_loss_curve(s, f, digest).await {
            Ok(()) => links.loss_curve_url = Some(format!("{public}/curves/{digest}.svg")),
            Err(e) => tracing::warn!(%repo, pr = p.pr, "no loss curve: {e:#}"),
        }
    }
    let mut released = None;
    if let (VerdictClass::Crowned, Some(bundle)) = (verdict.class, &bundle) {
        gh.check_progress(&repo, check, "crowning").await?;
        let trusted_set = trust_at_crown(s, &repo, verdict.king.clone().unwrap_or_default()).await?;
        judgments::begin_crowning(&s.pool, &key, &verdict).await?;
        let id = SubmissionId::derive(&p.repo, p.pr, head.as_str(), verdict.bundle_digest.as_deref());
        let corpus_url = s.judge.public_url.as_ref().map(|u| format!("{u}/submissions/{id}"));
        let links = ReleaseLinks {
            rationale: facts.as_ref().map(|f| f.rationale.as_str()),
            bundle_url: Some(&bundle.1),
            corpus_url: corpus_url.as_deref(),
        };
        let c = Crowning {
            repo: &repo,
            pr: p.pr,
            head: &head,
            base: &pr.base,
            verdict: &verdict,
            links,
            tags: &s.validator.tags,
            trusted_set: trusted_set.as_deref(),
        };
        let outcome = take_the_crown(s, &gh, &p, &c).await?;
        if let (CrownOutcome::Crowned { tag, .. }, Some(f)) = (&outcome, &facts) {
            // The new king's floor, measured by the runners before the next PR needs it.
            let key = FloorKey {
                repo: p.repo.clone(),
                king: tag.clone(),
                config: f.manifest.config.clone(),
                device_class: device_class(s),
            };
            crate::db::floors::queue(&s.pool, &key, p.installation, 0..s.judge.rule.floor_seeds as u64).await?;
        }
        if let CrownOutcome::Crowned { tag, commit } = &outcome {
            publish_crown_note(s, &gh, &p, &c, bundle, tag, commit).await?;
            released = Some((tag.clone(), commit.as_str().to_string()));
        }
        outcome.settle(&mut verdict);
    }
    judgments::record_verdict(&s.pool, &key, &verdict).await?;
    let judged = Judged {
        repo: &p.repo,
        forge: Forge::GitHub,
        pr: p.pr,
        head_sha: head.as_str(),
        bundle: facts.as_ref(),
        author: Some(&pr.author),
        verdict: &verdict,
        released: released.as_ref().map(|(t, c)| (t.as_str(), c.as_str())),
        signer: Some(&s.validator.hotkey),
    };
    let id = crate::corpus::record::record(&s.pool, &judged).await?;
    if let Some(public) = &s.judge.public_url {
        links.corpus_url = Some(format!("{public}/submissions/{id}"));
    }
    links.signature = Some(verdict.sign(&s.validator.hotkey));
    match conclusion(verdict.class) {
        Some(c) => gh.complete_check(&repo, check, c, &render(&verdict, &links)).await?,
        None if lease.attempt < s.judge.max_attempts => bail!("not judged on this try: {}", verdict.summary),
        None => gh.complete_check(&repo, check, Conclusion::Neutral, &render(&verdict, &links)).await?,
    }
    Ok(super::Next::Done)
}

/// Merges, tags and releases under the merge lock, then asks every other open PR
/// to be judged again (they are now stale). A lost race makes the verdict stale.
async fn take_the_crown(s: &Services, gh: &Installation, p: &Payload, c: &Crowning<'_>) -> Result<CrownOutcome> {
    let (repo, verdict) = (c.repo, c.verdict);
    let mut lock = MergeLock::acquire(&s.pool).await?;
    if lock.king(&p.repo).await?.is_none() {
        // The first crown on this repository: the release it was judged against
        // (the mirror's newest tag) is the king to replace.
        let mirror = mirror_dir(s, repo);
        let tag = verdict.king.clone().unwrap_or_default();
        let commit = tokio::task::spawn_blocking(move || -> Result<String> {
            Ok(crate::repo::RecipeRepo::open(&mirror)?.king(Some(&tag))?.commit.to_string())
        })
        .await??;
        let first = NewKing {
            tag: verdict.king.as_deref().unwrap_or_default(),
            commit: &commit,
            pr: None,
            bundle_digest: None,
            hidden_bpb: None,
            verdict: None,
        };
        lock.crown(&p.repo, &first).await?;
    }
    let outcome = crown(gh, &mut lock, c).await?;
    lock.release().await?;
    if let CrownOutcome::Crowned { tag, .. } = &outcome {
        for (n, sha, _) in gh.open_pulls(repo).await?.into_iter().filter(|(n, _, _)| *n != p.pr) {
            let payload =
                serde_json::json!({"repo": p.repo, "installation": p.installation, "pr": n, "head_sha": sha.as_str()});
            let job = NewJob {
                kind: "rejudge".into(),
                dedupe_key: format!("rejudge:{}#{n}@{}/king-{tag}", p.repo, sha.as_str()),
                payload,
            };
            jobs::enqueue(&s.pool, &job).await?;
        }
    }
    Ok(outcome)
}

/// The bundle's loss curve (from the log its facts already hold), drawn once
/// and stored for /curves/{digest}.svg.
async fn draw_loss_curve(s: &Services, facts: &BundleFacts, digest: &str) -> Result<()> {
    if crate::db::curves::get(&s.pool, digest).await?.is_some() {
        return Ok(());
    }
    let title = format!("bundle {}…", &digest[..12.min(digest.len())]);
    let curve = Curve { label: String::new(), train: facts.train.clone(), val: facts.val.clone() };
    let svg = crate::forge::loss_curve::draw(&[curve], &title, (760, 420))?;
    crate::db::curves::put(&s.pool, digest, &svg).await
}

/// What the corpus and the release keep of a bundle; None (logged) when its
/// files cannot be read back, which only costs the corpus its bundle facts.
async fn bundle_facts(file: &std::path::Path, url: &str) -> Option<BundleFacts> {
    let (file, url) = (file.to_path_buf(), url.to_string());
    match tokio::task::spawn_blocking(move || BundleFacts::read(&file, Some(&url))).await {
        Ok(Ok(f)) => Some(f),
        Ok(Err(e)) => {
            tracing::warn!("the bundle's facts cannot be read back: {e:#}");
            None
        }
        Err(e) => {
            tracing::warn!("reading the bundle's facts stopped: {e}");
            None
        }
    }
}

/// The verdict and the bundle's proof files as a git note on the PR head and the
/// release commit, pushed to the recipe repository (refs/notes/karpa), so that
/// `karpa lineage verify` can re-check the release from any clone.
async fn publish_crown_note(
    s: &Services,
    gh: &Installation,
    p: &Payload,
    c: &Crowning<'_>,
    bundle: &(PathBuf, String),
    tag: &str,
    release: &CommitSha,
) -> Result<()> {
    let url = s.judge.git_url.replace("{repo}", &c.repo.to_string());
    let token = if url.starts_with("https://") { Some(gh.git_token().await?) } else { None };
    let king = c.verdict.king.clone().unwrap_or_default();
    let facts =
        CrownFacts { tag, king: &king, pr: &format!("#{}", p.pr), head: c.head.as_str(), bundle_url: Some(&bundle.1) };
    let mut note = CrownNote::from_bundle(&bundle.0, &facts, c.verdict)?;
    note.trusted_set = c.trusted_set.map(str::to_string);
    note.sign(&s.validator.hotkey);
    let commits = [git2::Oid::from_str(c.head.as_str())?, git2::Oid::from_str(release.as_str())?];
    let mirror = mirror_dir(s, c.repo);
    tokio::task::spawn_blocking(move || publish_note(&mirror, &url, token.as_deref(), &commits, &note)).await?
}

/// Before a crown over `king` (in the mirror, fetched for this judgment): the
/// set in force there must trust this validator's keys, or its release would not
/// verify; and the new trusted set, if the validator proposes one that differs.
async fn trust_at_crown(s: &Services, repo: &RepoName, king: String) -> Result<Option<String>> {
    let mirror = mirror_dir(s, repo);
    let tag = king.clone();
    let current = tokio::task::spawn_blocking(move || -> Result<_> {
        let repo = crate::repo::RecipeRepo::open(&mirror)?;
        repo.file(repo.king(Some(&tag))?.tree, TRUST_FILE)
    })
    .await??;
    s.validator.crown_over(&king, current.as_deref(), s.judge.trusted_set.as_deref())
}

/// The class of numbers this validator makes (no hidden eval: the CPU's, unused).
pub(super) fn device_class(s: &Services) -> String {
    s.judge.eval.as_ref().map(|e| e.device).unwrap_or_default().class()
}

/// The repository's mirror, its git URL and (for HTTPS) an installation token:
/// what a runner needs to fetch it.
pub(super) async fn git_access(
    s: &Services,
    repo: &RepoName,
    installation: u64,
) -> Result<(PathBuf, String, Option<String>)> {
    let url = s.judge.git_url.replace("{repo}", &repo.to_string());
    let token = if url.starts_with("https://") {
        Some(Installation::new(&s.app, installation)?.git_token().await?)
    } else {
        None
    };
    Ok((mirror_dir(s, repo), url, token))
}

pub(super) fn mirror_dir(s: &Services, repo: &RepoName) -> PathBuf {
    s.judge.state_dir.join("mirrors").join(&repo.owner).join(format!("{}.git", repo.name))
}

/// The verdict, and the fetched bundle file with its URL once intake got that far.
async fn intake_and_judge(
    s: &Services,
    gh: &Installation,
    (repo, installation): (&RepoName, u64),
    pr: u64,
    head: &CommitSha,
    body: &str,
    prior: Option<PriorEval>,
) -> Result<(Verdict, Option<(PathBuf, String)>)> {
    let (bundle, bundle_url) = match fetch_bundle(s, body).await? {
        Ok(b) => b,
        Err(f) => return Ok((Verdict::at_intake(VerdictClass::Rejected, f, "the bundle could not be taken in"), None)),
    };
    let url = s.judge.git_url.replace("{repo}", &repo.to_string());
    let token = if url.starts_with("https://") { Some(gh.git_token().await?) } else { None };
    let mirror = mirror_dir(s, repo);
    let input = JudgeInput {
        repo: mirror.clone(),
        pr_head: head.as_str().to_string(),
        bundle: bundle.clone(),
        ledger: Box::new(PgLedger::new(s.pool.clone(), tokio::runtime::Handle::current())),
        eval: s.judge.eval.clone(),
        floors: Box::new(PgFloors {
            pool: s.pool.clone(),
            rt: tokio::runtime::Handle::current(),
            repo: repo.to_string(),
            installation,
            device_class: device_class(s),
            seeds: s.judge.rule.floor_seeds,
            files: s.judge.noise_floors.clone(),
        }),
        confirmations: Box::new(PgConfirmations {
            pool: s.pool.clone(),
            rt: tokio::runtime::Handle::current(),
            pr: ConfirmRunJob {
                repo: repo.to_string(),
                installation,
                pr,
                head_sha: head.as_str().to_string(),
                bundle_digest: String::new(),
                config: String::new(),
                king: String::new(),
                device_class: device_class(s),
                run: 0,
            },
        }),
        rule: s.judge.rule.clone(),
        prior,
    };
    let verdict = tokio::task::spawn_blocking(move || {
        crate::forge::mirror::fetch(&mirror, &url, Some(pr), token.as_deref())?;
        judge(&input)
    })
    .await??;
    Ok((verdict, Some((bundle, bundle_url))))
}

/// The PR's bundle by the locator in its body, into the cache: (file, URL), or
/// the finding that refuses it.
async fn fetch_bundle(s: &Services, body: &str) -> Result<std::result::Result<(PathBuf, String), Finding>> {
    let loc = match Locator::parse_from_body(body) {
        Ok(l) => l,
        Err(e) => return Ok(Err(Finding::reject("intake.locator", "PR body", None, e.to_string()))),
    };
    Ok(s.judge.fetcher.fetch(&loc, &s.judge.state_dir.join("bundles")).await?.map(|file| (file, loc.url)))
}
