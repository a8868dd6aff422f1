//! Judgments: the check run each judge job owns, and its verdict once judged.

use crate::judge::verdict::Verdict;
use anyhow::Result;
use sqlx::PgPool;

/// The job's check run, if one was created before (a retried job reuses it).
pub async fn check_run(pool: &PgPool, job_key: &str) -> Result<Option<u64>> {
    let id: Option<Option<i64>> = sqlx::query_scalar("SELECT check_run_id FROM judgments WHERE job_key = $1")
        .bind(job_key)
        .fetch_optional(pool)
        .await?;
    Ok(id.flatten().map(|i| i as u64))
}

pub async fn set_check_run(pool: &PgPool, job_key: &str, repo: &str, pr: u64, head: &str, check: u64) -> Result<()> {
    sqlx::query(
        "INSERT INTO judgments (job_key, repo, pr, head_sha, check_run_id) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (job_key) DO UPDATE SET check_run_id = excluded.check_run_id",
    )
    .bind(job_key)
    .bind(repo)
    .bind(pr as i64)
    .bind(head)
    .bind(check as i64)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records the crowned verdict before its release begins: a job retried after a
/// crash part-way (the PR merged, say) resumes the release with it instead of
/// judging a merged PR again. Only the first record counts.
pub async fn begin_crowning(pool: &PgPool, job_key: &str, v: &Verdict) -> Result<()> {
    sqlx::query("UPDATE judgments SET crowning = $2 WHERE job_key = $1 AND crowning IS NULL")
        .bind(job_key)
        .bind(serde_json::to_value(v)?)
        .execute(pool)
        .await?;
    Ok(())
}

/// The crowned verdict of a release that began and may not have finished.
pub async fn crowning(pool: &PgPool, job_key: &str) -> Result<Option<Verdict>> {
    let v: Option<Option<serde_json::Value>> = sqlx::query_scalar("SELECT crowning FROM judgments WHERE job_key = $1")
        .bind(job_key)
        .fetch_optional(pool)
        .await?;
    Ok(v.flatten().map(serde_json::from_value).transpose()?)
}

pub async fn record_verdict(pool: &PgPool, job_key: &str, v: &Verdict) -> Result<()> {
    let class = serde_json::to_value(v.class)?;
    sqlx::query(
        "UPDATE judgments SET verdict = $2, class = $3, bundle_digest = $4, judged_at = now() WHERE job_key = $1",
    )
    .bind(job_key)
    .bind(serde_json::to_value(v)?)
    .bind(class.as_str())
    .bind(v.bundle_digest.as_deref())
    .execute(pool)
    .await?;
    Ok(())
}
