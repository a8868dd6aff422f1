//! The king per repository, and the merge lock that serialises crowning.

use anyhow::Result;
use sqlx::{PgPool, Postgres, Transaction};

/// Proof that this holder has the crowning lock (a transaction-scoped Postgres
/// advisory lock): crowning code takes it as an argument, so it cannot run
/// without it. Released when dropped or committed.
pub struct MergeLock {
    tx: Transaction<'static, Postgres>,
}

/// An arbitrary, fixed advisory-lock key for "crowning".
const CROWN_LOCK: i64 = 0x4b41_5250_4143_524f;

impl MergeLock {
    /// Waits for the lock.
    pub async fn acquire(pool: &PgPool) -> Result<MergeLock> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CROWN_LOCK).execute(&mut *tx).await?;
        Ok(MergeLock { tx })
    }

    /// The current king of `repo`, read under the lock.
    pub async fn king(&mut self, repo: &str) -> Result<Option<King>> {
        king_in(&mut *self.tx, repo).await
    }

    /// How the next release is numbered: a pending maintainer request for a minor
    /// bump is used up here (for good once the lock's transaction commits).
    pub async fn take_bump(&mut self, repo: &str) -> Result<Bump> {
        let used: Option<(String,)> = sqlx::query_as("DELETE FROM release_bumps WHERE repo = $1 RETURNING repo")
            .bind(repo)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(if used.is_some() { Bump::Minor } else { Bump::Patch })
    }

    /// Records a new king; durable once [`MergeLock::release`] commits.
    pub async fn crown(&mut self, repo: &str, king: &NewKing<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO kings (repo, tag, commit_sha, pr, bundle_digest, hidden_bpb, verdict)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (repo, tag) DO NOTHING",
        )
        .bind(repo)
        .bind(king.tag)
        .bind(king.commit)
        .bind(king.pr.map(|p| p as i64))
        .bind(king.bundle_digest)
        .bind(king.hidden_bpb)
        .bind(king.verdict)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn release(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// The current king of `repo`, outside the lock (for display only).
pub async fn king(pool: &PgPool, repo: &str) -> Result<Option<King>> {
    let mut conn = pool.acquire().await?;
    king_in(&mut conn, repo).await
}

async fn king_in(conn: &mut sqlx::PgConnection, repo: &str) -> Result<Option<King>> {
    let row: Option<(String, String, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT tag, commit_sha, pr, bundle_digest FROM kings WHERE repo = $1
         ORDER BY crowned_at DESC, tag DESC LIMIT 1",
    )
    .bind(repo)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(tag, commit, pr, bundle_digest)| King { tag, commit, pr: pr.map(|p| p as u64), bundle_digest }))
}

/// Asks that the next crown on `repo` bump the minor version; asking again is a no-op.
pub async fn request_minor_bump(pool: &PgPool, repo: &str, by: &str) -> Result<()> {
    sqlx::query("INSERT INTO release_bumps (repo, requested_by) VALUES ($1, $2) ON CONFLICT (repo) DO NOTHING")
        .bind(repo)
        .bind(by)
        .execute(pool)
        .await?;
    Ok(())
}

/// Which part of recipe-vX.Y.Z a crown increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bump {
    Patch,
    /// X.(Y+1).0: a maintainer marks a new line of kings (a new config, a changed harness).
    Minor,
}

#[derive(Debug, Clone, PartialEq)]
pub struct King {
    pub tag: String,
    pub commit: String,
    /// The PR that crowned it (none for the first release).
    pub pr: Option<u64>,
    pub bundle_digest: Option<String>,
}

pub struct NewKing<'a> {
    pub tag: &'a str,
    pub commit: &'a str,
    pub pr: Option<u64>,
    pub bundle_digest: Option<&'a str>,
    pub hidden_bpb: Option<f64>,
    pub verdict: Option<&'a serde_json::Value>,
}

/// Seeds a repository's first king (the release the protocol starts from).
pub async fn seed(pool: &PgPool, repo: &str, tag: &str, commit: &str) -> Result<()> {
    let mut lock = MergeLock::acquire(pool).await?;
    if lock.king(repo).await?.is_none() {
        let king = NewKing { tag, commit, pr: None, bundle_digest: None, hidden_bpb: None, verdict: None };
        lock.crown(repo, &king).await?;
    }
    lock.release().await
}
