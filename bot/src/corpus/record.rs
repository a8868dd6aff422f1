//! What a judgment writes to the corpus, in one transaction: the bundle, the
//! submission (with its latest verdict copied in for lists and search), the
//! verdict itself, the noise floor it was judged against and, for a crown, the
//! new king. Every statement is an upsert on a natural key, so recording the
//! same judgment again (a retried job) changes nothing.

use super::SubmissionId;
use crate::forge::loss_curve;
use crate::judge::verdict::{Verdict, VerdictClass};
use anyhow::{Context, Result};
use proof::bundle::{BundleManifest, ATTESTATION, MANIFEST};
use sqlx::PgPool;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    Local,
}

impl Forge {
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Local => "local",
        }
    }
}

/// The parts of a bundle the corpus keeps (its checkpoints stay with the bundle).
#[derive(Debug, Clone)]
pub struct BundleFacts {
    pub manifest: BundleManifest,
    pub locator: Option<String>,
    pub size: Option<u64>,
    pub patch: String,
    pub rationale: String,
    /// When the official trainer finished the run (RFC 3339, from the attestation).
    pub sealed_at: Option<String>,
    pub tier: Option<String>,
    /// (tokens seen in millions, loss), thinned.
    pub train: Vec<(f64, f64)>,
    pub val: Vec<(f64, f64)>,
}

impl BundleFacts {
    /// Reads a bundle folder or packed file. Files the judge already refused may be
    /// missing or malformed here: they are recorded as absent, never trusted.
    pub fn read(bundle: &Path, locator: Option<&str>) -> Result<Self> {
        const NAMES: [&str; 5] = [MANIFEST, ATTESTATION, "patch.diff", "rationale.md", "log.jsonl"];
        let mut files = crate::archive::read_bundle_files(bundle, &NAMES, 256 << 20)?;
        let size = bundle.is_file().then(|| std::fs::metadata(bundle).map(|m| m.len())).transpose()?;
        let mut text = |name: &str| files.remove(name).map(|b| String::from_utf8_lossy(&b).into_owned());
        let manifest: BundleManifest = serde_json::from_str(&text(MANIFEST).context("the bundle has no manifest")?)
            .context("the bundle's manifest")?;
        let run = text(ATTESTATION).and_then(|a| attested_run(&a));
        let curve =
            text("log.jsonl").and_then(|log| loss_curve::points(&log, loss_curve::MAX_POINTS).ok()).unwrap_or_default();
        Ok(BundleFacts {
            locator: locator.map(str::to_string),
            size,
            patch: text("patch.diff").unwrap_or_default(),
            rationale: text("rationale.md").unwrap_or_default(),
            sealed_at: run.as_ref().map(|r| r.finished_at.clone()).filter(|t| humantime::parse_rfc3339(t).is_ok()),
            tier: run.map(|r| r.tier),
            train: curve.train,
            val: curve.val,
            manifest,
        })
    }
}

/// The training run the attestation states (its signature was checked by the judge).
fn attested_run(envelope: &str) -> Option<proof::intoto::TrainingRun> {
    use base64::Engine;
    let env: proof::dsse::Envelope = serde_json::from_str(envelope).ok()?;
    let payload = base64::engine::general_purpose::STANDARD.decode(env.payload).ok()?;
    Some(serde_json::from_slice::<proof::intoto::Statement>(&payload).ok()?.predicate)
}

/// One judged submission.
pub struct Judged<'a> {
    pub repo: &'a str,
    pub forge: Forge,
    pub pr: u64,
    pub head_sha: &'a str,
    /// None when the bundle never got through intake.
    pub bundle: Option<&'a BundleFacts>,
    /// Who opened the PR, for a submission without a bundle.
    pub author: Option<&'a str>,
    pub verdict: &'a Verdict,
    /// The release a crown made: (tag, commit).
    pub released: Option<(&'a str, &'a str)>,
    /// The validator's hotkey, which signs the verdict as recorded (None: unsigned).
    pub signer: Option<&'a subxt_signer::sr25519::Keypair>,
}

pub async fn record(pool: &PgPool, j: &Judged<'_>) -> Result<SubmissionId> {
    let v = j.verdict;
    let digest = j.bundle.map(|b| b.manifest.digest().to_string());
    let id = SubmissionId::derive(j.repo, j.pr, j.head_sha, digest.as_deref());
    let class = class_name(v.class);
    let findings_text: String = v.findings.iter().map(|f| format!("{}: {}\n", f.code, f.message)).collect();
    let challenger = v.eval.as_ref().map(|e| e.hidden_bpb).filter(|x| x.is_finite());
    let d = v.decision.as_ref();
    let judged_king = v.king.clone().unwrap_or_default();
    let signed = j.signer.map(|key| v.sign(key));
    let mut tx = pool.begin().await?;
    if let (Some(b), Some(digest)) = (j.bundle, &digest) {
        sqlx::query(
            "INSERT INTO bundles (digest, locator, size_bytes, config, seed, harness_digest, tier, sealed_at,
                                  manifest, train_curve, val_curve)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::timestamptz, $9, $10, $11)
             ON CONFLICT (digest) DO UPDATE SET locator = COALESCE(EXCLUDED.locator, bundles.locator),
                                                size_bytes = COALESCE(EXCLUDED.size_bytes, bundles.size_bytes)",
        )
        .bind(digest)
        .bind(&b.locator)
        .bind(b.size.map(|s| s as i64))
        .bind(&b.manifest.config)
        .bind(b.manifest.seed as i64)
        .bind(b.manifest.harness_digest.to_string())
        .bind(&b.tier)
        .bind(&b.sealed_at)
        .bind(serde_json::to_value(&b.manifest)?)
        .bind(serde_json::to_value(&b.train)?)
        .bind(serde_json::to_value(&b.val)?)
        .execute(&mut *tx)
        .await?;
    }
    let m = j.bundle.map(|b| &b.manifest);
    let rationale = j.bundle.map(|b| b.rationale.as_str()).unwrap_or_default();
    sqlx::query(
        "INSERT INTO submissions (id, repo, forge, pr, head_sha, bundle_digest, hotkey, github_login, king_tag,
                                  king_commit, config, title, rationale, diff, class, challenger_bpb, gain,
                                  findings_text, submitted_at, judged_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                 COALESCE($19::timestamptz, now()), now())
         ON CONFLICT (id) DO UPDATE SET class = EXCLUDED.class, challenger_bpb = EXCLUDED.challenger_bpb,
             gain = EXCLUDED.gain, findings_text = EXCLUDED.findings_text, judged_at = now()",
    )
    .bind(id.as_str())
    .bind(j.repo)
    .bind(j.forge.as_str())
    .bind(j.pr as i64)
    .bind(j.head_sha)
    .bind(&digest)
    .bind(m.map(|m| m.miner_hotkey.as_str()))
    .bind(m.map(|m| m.github_login.as_str()).or(j.author))
    .bind(m.map(|m| m.king_tag.as_str()).or(v.king.as_deref()))
    .bind(m.map(|m| m.king_commit.as_str()))
    .bind(m.map(|m| m.config.as_str()))
    .bind(match j.bundle {
        Some(_) => title(rationale),
        None => format!("Pull request #{} (no bundle taken in)", j.pr),
    })
    .bind(rationale)
    .bind(j.bundle.map(|b| b.patch.as_str()).unwrap_or_default())
    .bind(class)
    .bind(challenger)
    .bind(d.map(|d| d.gain).filter(|x| x.is_finite()))
    .bind(&findings_text)
    .bind(j.bundle.and_then(|b| b.sealed_at.as_deref()))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO verdicts (submission_id, judged_king, class, summary, challenger_bpb, king_mean, sigma, n, gain,
                               threshold, confirmation_mean, findings, stages, judge_version, verdict,
                               validator, signature)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (submission_id, judged_king) DO UPDATE SET class = EXCLUDED.class, summary = EXCLUDED.summary,
             challenger_bpb = EXCLUDED.challenger_bpb, king_mean = EXCLUDED.king_mean, sigma = EXCLUDED.sigma,
             n = EXCLUDED.n, gain = EXCLUDED.gain, threshold = EXCLUDED.threshold,
             confirmation_mean = EXCLUDED.confirmation_mean, findings = EXCLUDED.findings,
             stages = EXCLUDED.stages, judge_version = EXCLUDED.judge_version, verdict = EXCLUDED.verdict,
             validator = EXCLUDED.validator, signature = EXCLUDED.signature, judged_at = now()",
    )
    .bind(id.as_str())
    .bind(&judged_king)
    .bind(class)
    .bind(&v.summary)
    .bind(challenger)
    .bind(d.map(|d| d.king_mean))
    .bind(d.map(|d| d.sigma))
    .bind(d.map(|d| d.n as i32))
    .bind(d.map(|d| d.gain).filter(|x| x.is_finite()))
    .bind(d.map(|d| d.threshold))
    .bind(v.confirmation.as_ref().map(|c| c.mean).filter(|x| x.is_finite()))
    .bind(serde_json::to_value(&v.findings)?)
    .bind(serde_json::to_value(&v.stages)?)
    .bind(v.judge_version.as_ref())
    .bind(serde_json::to_value(v)?)
    .bind(signed.as_ref().map(|s| s.validator.as_str()))
    .bind(signed.as_ref().map(|s| s.signature.as_str()))
    .execute(&mut *tx)
    .await?;
    if let (Some(d), Some(m), false) = (d, m, judged_king.is_empty()) {
        // The king this was judged against: its floor, and the king itself when
        // the corpus has not seen it crowned (the genesis release).
        sqlx::query(
            "INSERT INTO noise_floors (repo, king_tag, config, mean_bpb, sigma, n) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (repo, king_tag, config) DO UPDATE SET mean_bpb = EXCLUDED.mean_bpb,
                 sigma = EXCLUDED.sigma, n = EXCLUDED.n, measured_at = now()",
        )
        .bind(j.repo)
        .bind(&judged_king)
        .bind(&m.config)
        .bind(d.king_mean)
        .bind(d.sigma)
        .bind(d.n as i32)
        .execute(&mut *tx)
        .await?;
        let commit = if m.king_tag == judged_king { m.king_commit.as_str() } else { "" };
        sqlx::query(
            "INSERT INTO kings (repo, tag, commit_sha, mean_bpb, sigma, runs) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (repo, tag) DO UPDATE SET mean_bpb = COALESCE(kings.mean_bpb, EXCLUDED.mean_bpb),
                 sigma = COALESCE(kings.sigma, EXCLUDED.sigma), runs = COALESCE(kings.runs, EXCLUDED.runs)",
        )
        .bind(j.repo)
        .bind(&judged_king)
        .bind(commit)
        .bind(d.king_mean)
        .bind(d.sigma)
        .bind(d.n as i32)
        .execute(&mut *tx)
        .await?;
    }
    if let (Some((tag, commit)), VerdictClass::Crowned) = (j.released, v.class) {
        let runs = crowned_runs(v);
        let (mean, sigma) = mean_sigma(&runs);
        sqlx::query(
            "INSERT INTO kings (repo, tag, commit_sha, pr, bundle_digest, hidden_bpb, verdict, mean_bpb, sigma, runs,
                                crowned_by, submission_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (repo, tag) DO UPDATE SET mean_bpb = EXCLUDED.mean_bpb, sigma = EXCLUDED.sigma,
                 runs = EXCLUDED.runs, crowned_by = COALESCE(kings.crowned_by, EXCLUDED.crowned_by), submission_id = COALESCE(kings.submission_id, EXCLUDED.submission_id),
                 bundle_digest = COALESCE(kings.bundle_digest, EXCLUDED.bundle_digest),
                 hidden_bpb = COALESCE(kings.hidden_bpb, EXCLUDED.hidden_bpb)",
        )
        .bind(j.repo)
        .bind(tag)
        .bind(commit)
        .bind(j.pr as i64)
        .bind(&digest)
        .bind(challenger)
        .bind(serde_json::to_value(v)?)
        .bind(mean)
        .bind(sigma)
        .bind(runs.len() as i32)
        .bind(m.map(|m| m.github_login.as_str()).or(j.author))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    }
    if let Some(m) = m {
        // Recounted, not incremented: recording the same judgment twice stays exact.
        sqlx::query(
            "INSERT INTO miners (hotkey, github_login, submissions, crowns, best_gain, last_seen)
             SELECT hotkey, max(github_login), count(*), count(*) FILTER (WHERE class = 'crowned'), max(gain),
                    max(judged_at)
             FROM submissions WHERE hotkey = $1 GROUP BY hotkey
             ON CONFLICT (hotkey) DO UPDATE SET github_login = EXCLUDED.github_login,
                 submissions = EXCLUDED.submissions, crowns = EXCLUDED.crowns, best_gain = EXCLUDED.best_gain,
                 last_seen = EXCLUDED.last_seen",
        )
        .bind(&m.miner_hotkey)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// Lists a verified model folder on the Models page (again: its row is replaced).
pub async fn publish_model(
    pool: &PgPool,
    repo: &str,
    m: &crate::release::model::ModelConfig,
    card: &str,
    download_url: Option<&str>,
) -> Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO models (repo, name, tag, config, params, hidden_bpb, sigma, floor_n, val_bpb, weights_sha256,
                             download_url, model_config, card)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (repo, name) DO UPDATE SET tag = $3, config = $4, params = $5, hidden_bpb = $6, sigma = $7,
             floor_n = $8, val_bpb = $9, weights_sha256 = $10, download_url = $11, model_config = $12, card = $13,
             published_at = now()
         RETURNING id",
    )
    .bind(repo)
    .bind(&m.name)
    .bind(&m.tag)
    .bind(&m.config)
    .bind(m.params as i64)
    .bind(m.scores.hidden_bpb)
    .bind(m.scores.sigma)
    .bind(m.scores.floor_n as i32)
    .bind(m.scores.val_bpb)
    .bind(m.weights.sha256.as_str())
    .bind(download_url)
    .bind(serde_json::to_value(m)?)
    .bind(card)
    .fetch_one(pool)
    .await?;
    Ok(id)
}

pub fn class_name(class: VerdictClass) -> &'static str {
    match class {
        VerdictClass::Crowned => "crowned",
        VerdictClass::MeaningfulFailure => "meaningful-failure",
        VerdictClass::Failure => "failure",
        VerdictClass::Rejected => "rejected",
        VerdictClass::Stale => "stale",
        VerdictClass::Error => "error",
        VerdictClass::Waiting => "waiting",
    }
}

/// Every hidden-eval number a crowned challenger has: its own run's and the guard's.
fn crowned_runs(v: &Verdict) -> Vec<f64> {
    let own = v.eval.as_ref().map(|e| e.hidden_bpb);
    let guard = v.confirmation.iter().flat_map(|c| c.hidden_bpb.iter().copied());
    own.into_iter().chain(guard).filter(|x| x.is_finite()).collect()
}

fn mean_sigma(xs: &[f64]) -> (Option<f64>, Option<f64>) {
    if xs.is_empty() {
        return (None, None);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sigma = (xs.len() > 1).then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (Some(mean), sigma)
}

/// The rationale's first line, without markdown heading marks, as a title.
pub fn title(rationale: &str) -> String {
    let line = rationale.lines().map(|l| l.trim().trim_start_matches('#').trim()).find(|l| !l.is_empty());
    line.unwrap_or("(no rationale)").chars().take(160).collect()
}
