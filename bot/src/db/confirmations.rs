//! Confirmation runs as jobs: a judgment whose challenger earned the guard's
//! runs queues one `confirm-run` job per run (any runner claims them, in
//! parallel) and waits; each run is stored as it finishes
//! (migrations/0010_confirmation_runs.up.sql), and the judgment resumes when all
//! are in. A run redone after a lost lease has the same seed; the first stays.

use crate::db::jobs::{self, NewJob};
use crate::judge::confirmation::{Challenger, Confirmations, RunOutcome, RunsLookup};
use crate::judge::Finding;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// One confirmation run to train: the PR it belongs to and which run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmRunJob {
    pub repo: String,
    pub installation: u64,
    pub pr: u64,
    pub head_sha: String,
    pub bundle_digest: String,
    pub config: String,
    pub king: String,
    pub device_class: String,
    pub run: u32,
}

impl ConfirmRunJob {
    pub fn job(&self) -> NewJob {
        NewJob {
            kind: "confirm-run".into(),
            dedupe_key: format!("confirm:{}/{}/run-{}", self.bundle_digest, self.device_class, self.run),
            payload: serde_json::to_value(self).expect("a confirmation job serialises"),
        }
    }
}

/// Stores a finished run; false when it was already in.
pub async fn record(
    pool: &PgPool,
    job: &ConfirmRunJob,
    seed: u64,
    outcome: &RunOutcome,
    runner: &str,
    seconds: f64,
) -> Result<bool> {
    let (bpb, finding) = match outcome {
        Ok(bpb) => (Some(*bpb), None),
        Err(f) => (None, Some(serde_json::to_value(f)?)),
    };
    let done = sqlx::query(
        "INSERT INTO confirmation_runs (bundle_digest, device_class, run, seed, hidden_bpb, finding, runner, started_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now() - make_interval(secs => $8)) ON CONFLICT DO NOTHING",
    )
    .bind(&job.bundle_digest)
    .bind(&job.device_class)
    .bind(job.run as i32)
    .bind(seed as i64)
    .bind(bpb)
    .bind(finding)
    .bind(runner)
    .bind(seconds)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn has_run(pool: &PgPool, job: &ConfirmRunJob) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM confirmation_runs WHERE bundle_digest = $1 AND device_class = $2 AND run = $3)",
    )
    .bind(&job.bundle_digest)
    .bind(&job.device_class)
    .bind(job.run as i32)
    .fetch_one(pool)
    .await?)
}

/// Runs 0..n of `template`'s bundle: all in, or how many (the missing ones queued).
pub async fn lookup(pool: &PgPool, template: &ConfirmRunJob, n: u32) -> Result<RunsLookup> {
    let rows: Vec<(i32, Option<f64>, Option<serde_json::Value>)> = sqlx::query_as(
        "SELECT run, hidden_bpb, finding FROM confirmation_runs
         WHERE bundle_digest = $1 AND device_class = $2 AND run < $3 ORDER BY run",
    )
    .bind(&template.bundle_digest)
    .bind(&template.device_class)
    .bind(n as i32)
    .fetch_all(pool)
    .await?;
    if rows.len() < n as usize {
        let have: Vec<u32> = rows.iter().map(|r| r.0 as u32).collect();
        let mut tx = pool.begin().await?;
        for run in (0..n).filter(|r| !have.contains(r)) {
            jobs::enqueue(&mut *tx, &ConfirmRunJob { run, ..template.clone() }.job()).await?;
        }
        tx.commit().await.context("queueing confirmation runs")?;
        return Ok(RunsLookup::Measuring { done: rows.len(), of: n as usize });
    }
    let mut outcomes = Vec::new();
    for (run, bpb, finding) in rows {
        let outcome = match (bpb, finding) {
            (Some(bpb), _) => Ok(bpb),
            (None, Some(f)) => {
                Err(serde_json::from_value::<Finding>(f).with_context(|| format!("run {run}'s finding"))?)
            }
            (None, None) => anyhow::bail!("confirmation run {run} holds neither a score nor a finding"),
        };
        let failed = outcome.is_err();
        outcomes.push(outcome);
        if failed {
            break;
        }
    }
    Ok(RunsLookup::Done(outcomes))
}

/// The judge's confirmation runs on a validator with runners.
pub struct PgConfirmations {
    pub pool: PgPool,
    pub rt: tokio::runtime::Handle,
    /// The judged PR (the job's `bundle_digest`, `config`, `king` and `run` are filled in per lookup).
    pub pr: ConfirmRunJob,
}

impl Confirmations for PgConfirmations {
    /// Call from a blocking thread (the pipeline runs on one).
    fn runs(&self, c: &Challenger, n: u32) -> Result<RunsLookup> {
        let template = ConfirmRunJob {
            bundle_digest: c.digest.to_string(),
            config: c.protocol.name.clone(),
            king: c.king.to_string(),
            run: 0,
            ..self.pr.clone()
        };
        self.rt.block_on(lookup(&self.pool, &template, n))
    }
}
