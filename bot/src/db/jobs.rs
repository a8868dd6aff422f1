//! The job queue. Enqueueing is idempotent on the job's dedupe key; a worker
//! claims one job at a time with `FOR UPDATE SKIP LOCKED` under a lease; a job
//! whose lease ran out (its worker died) is claimable again; failures back off
//! exponentially; a job that used all its attempts is dead — kept, not lost.

use anyhow::Result;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type, serde::Serialize)]
#[sqlx(transparent)]
pub struct JobId(pub i64);

/// A job to be done once per `dedupe_key` (e.g. `judge:owner/repo#12@<sha>`).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub dedupe_key: String,
    pub payload: Value,
}

/// A claimed job. Finishing it needs this value: only the lease holder can.
#[derive(Debug)]
pub struct Lease {
    pub id: JobId,
    pub kind: String,
    pub payload: Value,
    /// 1 on the first try.
    pub attempt: i32,
    pub worker: String,
}

/// Inserts the job unless one with its key exists; returns the new id, or None
/// for a duplicate. Runs inside the caller's transaction.
pub async fn enqueue(db: impl PgExecutor<'_>, job: &NewJob) -> Result<Option<JobId>> {
    let id = sqlx::query_scalar(
        "INSERT INTO jobs (kind, dedupe_key, payload) VALUES ($1, $2, $3)
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(&job.kind)
    .bind(&job.dedupe_key)
    .bind(&job.payload)
    .fetch_optional(db)
    .await?;
    Ok(id.map(JobId))
}

/// Claims the oldest ready job: queued and due, or running with a lapsed lease.
/// A lapsed job that has used all its attempts is buried instead.
pub async fn claim(pool: &PgPool, worker: &str, lease: Duration) -> Result<Option<Lease>> {
    loop {
        let row: Option<(i64, String, Value, i32, i32)> = sqlx::query_as(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, leased_by = $1,
                    lease_until = now() + make_interval(secs => $2), updated_at = now()
             WHERE id = (SELECT id FROM jobs
                         WHERE (state = 'queued' AND run_after <= now())
                            OR (state = 'running' AND lease_until < now())
                         ORDER BY run_after, id
                         FOR UPDATE SKIP LOCKED LIMIT 1)
             RETURNING id, kind, payload, attempts, max_attempts",
        )
        .bind(worker)
        .bind(lease.as_secs_f64())
        .fetch_optional(pool)
        .await?;
        let Some((id, kind, payload, attempt, max)) = row else { return Ok(None) };
        if attempt > max {
            sqlx::query(
                "UPDATE jobs SET state = 'dead', leased_by = NULL, lease_until = NULL, updated_at = now(),
                        last_error = coalesce(last_error, '') || ' (its worker stopped; no attempts left)'
                 WHERE id = $1",
            )
            .bind(id)
            .execute(pool)
            .await?;
            continue;
        }
        return Ok(Some(Lease { id: JobId(id), kind, payload, attempt, worker: worker.to_string() }));
    }
}

/// Extends the lease `worker` holds on job `id`; false if the lease was lost.
/// Takes the ids, not the [`Lease`], so a heartbeat task can run beside the handler.
pub async fn heartbeat(pool: &PgPool, id: JobId, worker: &str, extend: Duration) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET lease_until = now() + make_interval(secs => $3), updated_at = now()
         WHERE id = $1 AND leased_by = $2 AND state = 'running'",
    )
    .bind(id.0)
    .bind(worker)
    .bind(extend.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the job done; false if this worker no longer held it.
pub async fn complete(pool: &PgPool, lease: Lease) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'done', leased_by = NULL, lease_until = NULL, last_error = NULL, updated_at = now()
         WHERE id = $1 AND leased_by = $2 AND state = 'running'",
    )
    .bind(lease.id.0)
    .bind(&lease.worker)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts a job that waits on others back in the queue for `after`, its attempt
/// not counted (waiting is nobody's failure), with `payload` (what it waited on)
/// instead of its own when given; false if this worker no longer held it.
pub async fn snooze(pool: &PgPool, lease: Lease, after: Duration, payload: Option<&Value>) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = greatest(attempts - 1, 0),
                run_after = now() + make_interval(secs => $3), leased_by = NULL, lease_until = NULL,
                payload = coalesce($4, payload), updated_at = now()
         WHERE id = $1 AND leased_by = $2 AND state = 'running'",
    )
    .bind(lease.id.0)
    .bind(&lease.worker)
    .bind(after.as_secs_f64())
    .bind(payload)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failure: retried after a backoff of `base`·2^(attempt−1) (capped at
/// an hour), or dead once the attempts are used up.
pub async fn fail(pool: &PgPool, lease: Lease, error: &str, base: Duration) -> Result<()> {
    let backoff = (base.as_secs_f64() * 2f64.powi(lease.attempt.clamp(1, 30) - 1)).min(3600.0);
    sqlx::query(
        "UPDATE jobs SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
                run_after = now() + make_interval(secs => $3), leased_by = NULL, lease_until = NULL,
                last_error = $4, updated_at = now()
         WHERE id = $1 AND leased_by = $2 AND state = 'running'",
    )
    .bind(lease.id.0)
    .bind(&lease.worker)
    .bind(backoff)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Queued jobs by kind, and running jobs by the worker holding them (for /metrics).
pub async fn depth(pool: &PgPool) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>)> {
    let queued = sqlx::query_as("SELECT kind, count(*) FROM jobs WHERE state = 'queued' GROUP BY kind ORDER BY kind")
        .fetch_all(pool)
        .await?;
    let running = sqlx::query_as(
        "SELECT leased_by, count(*) FROM jobs WHERE state = 'running' AND leased_by IS NOT NULL
         GROUP BY leased_by ORDER BY leased_by",
    )
    .fetch_all(pool)
    .await?;
    Ok((queued, running))
}

/// Counts by state, for /metrics and the tests.
pub async fn counts(pool: &PgPool) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state ORDER BY state").fetch_all(pool).await?)
}
