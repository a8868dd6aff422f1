//! The chain outbox (migrations/0008_chain): one row per (netuid, epoch).
//! Planning is an insert that does nothing when the epoch is planned already;
//! each transition names the state it leaves, so a stale or repeated step
//! changes nothing; an error keeps the state, counts the attempt and sets the
//! next try after a backoff; after `MAX_ATTEMPTS` the epoch is `failed`, kept.
//! A timelocked commit is revealed by the chain: the validator only watches
//! for its weights (`timelocked_next`), and a dropped one is kept as `dropped`.

use super::weights::Target;
use anyhow::Result;
use serde::Serialize;
use sqlx::PgPool;
use std::collections::BTreeMap;

pub const MAX_ATTEMPTS: i32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `set_weights` directly.
    Set,
    /// `commit_weights` now, `reveal_weights` at the reveal epoch.
    Commit,
    /// A timelocked commit (commit-reveal v4) now; the chain reveals it.
    Timelocked,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Set => "set",
            Mode::Commit => "commit",
            Mode::Timelocked => "timelocked",
        }
    }
}

/// What an epoch owes the chain.
#[derive(Debug, Clone)]
pub struct Plan {
    pub netuid: u16,
    pub epoch: u64,
    pub repo: String,
    pub king_tag: Option<String>,
    pub scores: BTreeMap<Target, f64>,
    pub uids: Vec<u16>,
    pub weights: Vec<u16>,
    pub version_key: u64,
    pub mode: Mode,
    /// Commit mode: the salt, the hash and when to reveal.
    pub salt: Option<Vec<u16>>,
    pub commit_hash: Option<[u8; 32]>,
    pub reveal_epoch: Option<u64>,
}

/// Which row: one per subnet and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochKey {
    pub netuid: u16,
    pub epoch: u64,
}

/// An epoch's row as `karpa chain status` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Row {
    pub netuid: i32,
    pub epoch: i64,
    pub repo: String,
    pub king_tag: Option<String>,
    pub mode: String,
    pub state: String,
    pub uids: serde_json::Value,
    pub weights: serde_json::Value,
    pub version_key: i64,
    pub salt: Option<serde_json::Value>,
    pub reveal_epoch: Option<i64>,
    /// Timelocked: the drand round the chain reveals the commit at, the first
    /// block it can, and the block it was sent at.
    pub reveal_round: Option<i64>,
    pub reveal_block: Option<i64>,
    pub sent_block: Option<i64>,
    pub tx_hash: Option<String>,
    pub block_hash: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub updated_at: String,
}

const COLUMNS: &str = "netuid, epoch, repo, king_tag, mode, state, uids, weights, version_key, salt, reveal_epoch, \
     reveal_round, reveal_block, sent_block, tx_hash, block_hash, attempts, last_error, \
     to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS updated_at";

/// Records the plan unless the epoch has one (a `blocked` epoch is re-planned);
/// true when this call recorded it.
pub async fn plan(pool: &PgPool, p: &Plan) -> Result<bool> {
    let scores: Vec<serde_json::Value> =
        p.scores.iter().map(|(t, s)| serde_json::json!({"target": t, "share": s})).collect();
    let done = sqlx::query(
        "INSERT INTO chain_epochs (netuid, epoch, repo, king_tag, scores, uids, weights, version_key, mode, salt,
                                   commit_hash, reveal_epoch)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (netuid, epoch) DO UPDATE SET king_tag = EXCLUDED.king_tag, scores = EXCLUDED.scores,
             uids = EXCLUDED.uids, weights = EXCLUDED.weights, version_key = EXCLUDED.version_key,
             mode = EXCLUDED.mode, salt = EXCLUDED.salt, commit_hash = EXCLUDED.commit_hash,
             reveal_epoch = EXCLUDED.reveal_epoch, state = 'pending', last_error = NULL, next_try_at = now(),
             updated_at = now()
         WHERE chain_epochs.state = 'blocked'",
    )
    .bind(i32::from(p.netuid))
    .bind(p.epoch as i64)
    .bind(&p.repo)
    .bind(&p.king_tag)
    .bind(serde_json::Value::from(scores))
    .bind(serde_json::to_value(&p.uids)?)
    .bind(serde_json::to_value(&p.weights)?)
    .bind(p.version_key as i64)
    .bind(p.mode.as_str())
    .bind(p.salt.as_ref().map(serde_json::to_value).transpose()?)
    .bind(p.commit_hash.map(hex::encode))
    .bind(p.reveal_epoch.map(|e| e as i64))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The epoch could not be planned (a miner not in the metagraph, no burn uid):
/// kept as `blocked` with the reason, to be planned again on the next run.
pub async fn blocked(pool: &PgPool, key: EpochKey, repo: &str, king_tag: Option<&str>, why: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO chain_epochs (netuid, epoch, repo, king_tag, scores, uids, weights, version_key, mode, state,
                                   attempts, last_error)
         VALUES ($1, $2, $3, $4, '[]', '[]', '[]', 0, 'set', 'blocked', 1, $5)
         ON CONFLICT (netuid, epoch) DO UPDATE SET attempts = chain_epochs.attempts + 1, last_error = EXCLUDED.last_error,
             updated_at = now()
         WHERE chain_epochs.state = 'blocked'",
    )
    .bind(i32::from(key.netuid))
    .bind(key.epoch as i64)
    .bind(repo)
    .bind(king_tag)
    .bind(why)
    .execute(pool)
    .await?;
    Ok(())
}

/// Not yet (the chain's weights rate limit): the next try waits, and the wait
/// is not counted as a failed attempt.
pub async fn defer(pool: &PgPool, key: EpochKey, why: &str, wait: std::time::Duration) -> Result<()> {
    sqlx::query(
        "UPDATE chain_epochs SET last_error = $3, next_try_at = now() + make_interval(secs => $4), updated_at = now()
         WHERE netuid = $1 AND epoch = $2 AND state NOT IN ('finalized', 'failed')",
    )
    .bind(i32::from(key.netuid))
    .bind(key.epoch as i64)
    .bind(why)
    .bind(wait.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// Moves (netuid, epoch) from `from` to `to`, recording the transaction or
/// block hash when given. False when the row was not in `from` (someone else
/// moved it, or this step already ran): the caller does nothing more.
pub async fn advance(
    pool: &PgPool,
    key: EpochKey,
    from: &str,
    to: &str,
    tx_hash: Option<&str>,
    block_hash: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE chain_epochs SET state = $4, tx_hash = COALESCE($5, tx_hash), block_hash = COALESCE($6, block_hash),
                last_error = NULL, updated_at = now()
         WHERE netuid = $1 AND epoch = $2 AND state = $3",
    )
    .bind(i32::from(key.netuid))
    .bind(key.epoch as i64)
    .bind(from)
    .bind(to)
    .bind(tx_hash)
    .bind(block_hash)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An attempt failed: the state stays, the error and the count are kept, the
/// next try waits `backoff` × 2^attempts (capped at an hour); past
/// [`MAX_ATTEMPTS`] the epoch is `failed`.
pub async fn failed_attempt(pool: &PgPool, key: EpochKey, error: &str, backoff: std::time::Duration) -> Result<()> {
    sqlx::query(
        "UPDATE chain_epochs SET attempts = attempts + 1, last_error = $3, updated_at = now(),
                state = CASE WHEN attempts + 1 >= $4 THEN 'failed' ELSE state END,
                next_try_at = now() + least(make_interval(secs => $5 * power(2, attempts)), interval '1 hour')
         WHERE netuid = $1 AND epoch = $2 AND state NOT IN ('finalized', 'failed')",
    )
    .bind(i32::from(key.netuid))
    .bind(key.epoch as i64)
    .bind(error)
    .bind(MAX_ATTEMPTS)
    .bind(backoff.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// A timelocked commit accepted into the node's pool.
pub struct Sent<'a> {
    pub commit: &'a [u8],
    pub reveal_round: u64,
    pub reveal_epoch: u64,
    /// The first block the chain can reveal it at.
    pub reveal_block: u64,
    pub version: u16,
    pub tx_hash: &'a str,
    /// The head block it was signed at (its mortality counts from there).
    pub block: u64,
}

/// Records a timelocked commit the pool accepted: `pending` → `submitted`.
/// False when the row was not pending (another run sent it): the caller stops.
pub async fn timelocked_sent(pool: &PgPool, key: EpochKey, s: &Sent<'_>) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE chain_epochs SET tlock_commit = $3, reveal_round = $4, reveal_epoch = $5, reveal_block = $6,
                commit_reveal_version = $7, tx_hash = $8, sent_block = $9, state = 'submitted', last_error = NULL,
                updated_at = now()
         WHERE netuid = $1 AND epoch = $2 AND mode = 'timelocked' AND state = 'pending'",
    )
    .bind(i32::from(key.netuid))
    .bind(key.epoch as i64)
    .bind(s.commit)
    .bind(s.reveal_round as i64)
    .bind(s.reveal_epoch as i64)
    .bind(s.reveal_block as i64)
    .bind(i32::from(s.version))
    .bind(s.tx_hash)
    .bind(s.block as i64)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Where a committed timelocked epoch goes, given the chain's epoch now and
/// whether its weights are on chain: revealed once seen from the reveal epoch
/// on, finalized when that epoch is over, dropped when it ended unseen (the
/// chain drops a commit whose pulse or weights fail, and says nothing).
pub fn timelocked_next(state: &str, reveal_epoch: u64, epoch_now: u64, seen: bool) -> Option<&'static str> {
    match state {
        "committed" if epoch_now >= reveal_epoch && seen => Some("revealed"),
        "committed" if epoch_now > reveal_epoch => Some("dropped"),
        "revealed" if epoch_now > reveal_epoch => Some("finalized"),
        _ => None,
    }
}

/// A dropped epoch: a commit the chain did not apply, or a timelocked one
/// whose epoch passed before it was sent. Kept with the reason, never retried
/// (the current epoch's plan commits the weights again).
pub async fn dropped(pool: &PgPool, key: EpochKey, why: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE chain_epochs SET state = 'dropped', last_error = $3, updated_at = now()
         WHERE netuid = $1 AND epoch = $2 AND (state = 'committed' OR (mode = 'timelocked' AND state = 'pending'))",
    )
    .bind(i32::from(key.netuid))
    .bind(key.epoch as i64)
    .bind(why)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Epochs with work left whose next try is due, oldest first.
pub async fn due(pool: &PgPool) -> Result<Vec<Row>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM chain_epochs WHERE state NOT IN ('finalized', 'failed', 'blocked', 'dropped')
           AND next_try_at <= now()
         ORDER BY epoch, netuid"
    );
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}

/// The newest epochs, newest first.
pub async fn recent(pool: &PgPool, limit: i64) -> Result<Vec<Row>> {
    let sql = format!("SELECT {COLUMNS} FROM chain_epochs ORDER BY epoch DESC, netuid LIMIT $1");
    Ok(sqlx::query_as(&sql).bind(limit).fetch_all(pool).await?)
}
