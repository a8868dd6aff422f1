//! Workers: claim a job, run its handler while a heartbeat keeps the lease,
//! then mark it done or failed (retried with backoff, dead after its attempts).
//! The same loop runs inside `karpa serve` and in `karpa runner` on other hosts.

pub mod command;
pub mod confirm;
pub mod floor;
pub mod judge;
pub mod reconcile;

use crate::db::jobs::{self, Lease};
use anyhow::{bail, Result};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// What the handlers need: the database, the GitHub App, the judge's settings.
pub struct Services {
    pub pool: PgPool,
    pub app: octocrab::Octocrab,
    pub judge: judge::Settings,
    /// The validator's keys: the hotkey signs every verdict and crown note this
    /// validator publishes, the tag key its release tags.
    pub validator: crate::lineage::keys::ValidatorKeys,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// First retry delay; doubles per attempt.
    pub backoff: Duration,
}

/// Runs jobs until `stop` turns true; sleeps `idle` when the queue is empty.
pub async fn work(s: Arc<Services>, worker: String, idle: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        match run_one(&s, &worker).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::error!(worker, "the queue is unreachable: {e:#}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Claims and runs one job; false when none was ready.
pub async fn run_one(s: &Services, worker: &str) -> Result<bool> {
    let Some(lease) = jobs::claim(&s.pool, worker, s.lease).await? else { return Ok(false) };
    tracing::info!(worker, job = lease.id.0, kind = lease.kind, attempt = lease.attempt, "claimed");
    let beat = {
        let (pool, id, worker, every) = (s.pool.clone(), lease.id, lease.worker.clone(), s.lease / 3);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if !matches!(jobs::heartbeat(&pool, id, &worker, every * 3).await, Ok(true)) {
                    return;
                }
            }
        })
    };
    let outcome = dispatch(s, &lease).await;
    beat.abort();
    match outcome {
        Ok(Next::Done) => {
            jobs::complete(&s.pool, lease).await?;
        }
        Ok(Next::Later(after, payload)) => {
            tracing::info!(worker, job = lease.id.0, "waiting; back in {after:?}");
            jobs::snooze(&s.pool, lease, after, payload.as_ref()).await?;
        }
        Err(e) => {
            tracing::warn!(worker, job = lease.id.0, "failed: {e:#}");
            jobs::fail(&s.pool, lease, &format!("{e:#}"), s.backoff).await?;
        }
    }
    Ok(true)
}

/// What became of a job a handler ran.
pub enum Next {
    Done,
    /// It waits on other jobs (a judgment on its king's floor): back in the queue
    /// after this long, the attempt not counted, with its payload replaced when given.
    Later(Duration, Option<serde_json::Value>),
}

async fn dispatch(s: &Services, lease: &Lease) -> Result<Next> {
    let done = |r: Result<()>| r.map(|()| Next::Done);
    match lease.kind.as_str() {
        "judge" | "rejudge" => judge::run(s, lease).await,
        "floor-run" => floor::run(s, lease).await,
        "confirm-run" => confirm::run(s, lease).await,
        "command" => done(command::run(s, lease).await),
        "reconcile" => done(reconcile::run(s).await.map(|_| ())),
        // A closed PR's pending judgment finds the PR closed and stops by itself.
        "pr-closed" => Ok(Next::Done),
        other => bail!("no handler for jobs of kind {other:?}"),
    }
}

/// Queues a reconciliation once per `period` (one per period across replicas).
pub async fn schedule_reconciliation(pool: PgPool, period: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        let job = jobs::NewJob {
            kind: "reconcile".into(),
            dedupe_key: reconcile::key(period),
            payload: serde_json::json!({}),
        };
        if let Err(e) = jobs::enqueue(&pool, &job).await {
            tracing::error!("cannot queue the reconciliation: {e:#}");
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => {}
        }
    }
}
