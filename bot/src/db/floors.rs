//! Noise floors as state: each king's seeded runs, stored as runners finish
//! them (migrations/0009_floor_runs.up.sql). A judgment asks [`PgFloors`] for
//! its king's floor; one that is not complete is queued as `floor-run` jobs,
//! one per seed, and the judgment waits for it.

use crate::db::jobs::{self, NewJob};
use crate::judge::decision::NoiseFloor;
use crate::judge::noise_floor::{mean_per_token, FloorLookup, Floors};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// Which floor: a king on a config, measured on one class of device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloorKey {
    pub repo: String,
    pub king: String,
    pub config: String,
    pub device_class: String,
}

/// One finished run.
#[derive(Debug, Clone)]
pub struct FloorRun {
    pub seed: u64,
    pub hidden_bpb: f64,
    pub nats: Vec<f32>,
    pub harness_digest: String,
    pub runner: String,
    /// How long the run took (its start is recorded as now minus this).
    pub seconds: f64,
}

/// The job that measures one run; `installation` lets it fetch the repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloorRunJob {
    #[serde(flatten)]
    pub key: FloorKey,
    pub installation: u64,
    pub seed: u64,
}

impl FloorRunJob {
    pub fn job(&self) -> NewJob {
        let k = &self.key;
        NewJob {
            kind: "floor-run".into(),
            dedupe_key: format!("floor:{}@{}/{}/{}/seed-{}", k.repo, k.king, k.config, k.device_class, self.seed),
            payload: serde_json::to_value(self).expect("a floor job serialises"),
        }
    }
}

/// Stores a finished run; false when that seed was already in (a run redone
/// after a lost lease: the first one stands).
pub async fn record(pool: &PgPool, key: &FloorKey, run: &FloorRun) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO floor_runs (repo, king_tag, config, device_class, seed, hidden_bpb, nats, harness_digest,
                                 runner, started_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() - make_interval(secs => $10)) ON CONFLICT DO NOTHING",
    )
    .bind(&key.repo)
    .bind(&key.king)
    .bind(&key.config)
    .bind(&key.device_class)
    .bind(run.seed as i64)
    .bind(run.hidden_bpb)
    .bind(proof::causality::f32_bytes(&run.nats))
    .bind(&run.harness_digest)
    .bind(&run.runner)
    .bind(run.seconds)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether seed `seed` of the floor is in.
pub async fn has_run(pool: &PgPool, key: &FloorKey, seed: u64) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM floor_runs
                        WHERE repo = $1 AND king_tag = $2 AND config = $3 AND device_class = $4 AND seed = $5)",
    )
    .bind(&key.repo)
    .bind(&key.king)
    .bind(&key.config)
    .bind(&key.device_class)
    .bind(seed as i64)
    .fetch_one(pool)
    .await?)
}

/// The floor of seeds 0..seeds: complete, or how far it got (its missing runs queued).
pub async fn lookup(pool: &PgPool, key: &FloorKey, installation: u64, seeds: u32) -> Result<FloorLookup> {
    match stored(pool, key, seeds).await? {
        Ok(floor) => Ok(FloorLookup::Ready(floor)),
        Err(have) => {
            queue(pool, key, installation, (0..seeds as u64).filter(|s| !have.contains(s))).await?;
            Ok(FloorLookup::Measuring { done: have.len(), of: seeds as usize })
        }
    }
}

/// The floor of seeds 0..seeds if all its runs are in, else the seeds that are
/// (nothing queued: for a runner that only wants the reference).
pub async fn stored(pool: &PgPool, key: &FloorKey, seeds: u32) -> Result<std::result::Result<NoiseFloor, Vec<u64>>> {
    let rows: Vec<(i64, f64, Vec<u8>)> = sqlx::query_as(
        "SELECT seed, hidden_bpb, nats FROM floor_runs
         WHERE repo = $1 AND king_tag = $2 AND config = $3 AND device_class = $4 AND seed < $5 ORDER BY seed",
    )
    .bind(&key.repo)
    .bind(&key.king)
    .bind(&key.config)
    .bind(&key.device_class)
    .bind(seeds as i64)
    .fetch_all(pool)
    .await?;
    if rows.len() < seeds as usize {
        return Ok(Err(rows.iter().map(|r| r.0 as u64).collect()));
    }
    let mut nats = Vec::with_capacity(rows.len());
    for (seed, _, bytes) in &rows {
        nats.push(proof::causality::f32s_of(bytes).map_err(|n| anyhow::anyhow!("seed {seed}'s nats: {n} bytes"))?);
    }
    let lengths: std::collections::BTreeSet<usize> = nats.iter().map(Vec::len).collect();
    let reference = match lengths.into_iter().collect::<Vec<_>>()[..] {
        [n] if n > 0 => Some(mean_per_token(&nats).into()),
        // No nats, or runs that scored different evaluations: aim with none of them.
        _ => None,
    };
    Ok(Ok(NoiseFloor {
        king: key.king.clone(),
        config: key.config.clone(),
        values: rows.iter().map(|r| r.1).collect(),
        reference,
    }))
}

/// Stores an operator's floor file as the floor's runs, seeds 0..n in its order
/// (each run carries the file's per-token reference as its nats, so the floor's
/// reference is the file's). Runs already in stay; returns how many were new.
pub async fn import(pool: &PgPool, key: &FloorKey, floor: &NoiseFloor, runner: &str) -> Result<usize> {
    let nats: Vec<f32> = floor.reference.as_deref().map(<[f32]>::to_vec).unwrap_or_default();
    let mut stored = 0;
    for (seed, &hidden_bpb) in floor.values.iter().enumerate() {
        let run = FloorRun {
            seed: seed as u64,
            hidden_bpb,
            nats: nats.clone(),
            harness_digest: "imported".into(),
            runner: runner.into(),
            seconds: 0.0,
        };
        stored += usize::from(record(pool, key, &run).await?);
    }
    Ok(stored)
}

/// Queues the floor's runs for `seeds` (idempotent: one job per seed, ever).
pub async fn queue(pool: &PgPool, key: &FloorKey, installation: u64, seeds: impl Iterator<Item = u64>) -> Result<()> {
    let mut tx = pool.begin().await?;
    for seed in seeds {
        jobs::enqueue(&mut *tx, &FloorRunJob { key: key.clone(), installation, seed }.job()).await?;
    }
    tx.commit().await.context("queueing a noise floor")
}

/// Floors being measured: distinct floors with a floor-run job not yet done (for /metrics).
pub async fn pending(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(DISTINCT (payload->>'repo', payload->>'king', payload->>'config', payload->>'device_class'))
         FROM jobs WHERE kind = 'floor-run' AND state IN ('queued', 'running')",
    )
    .fetch_one(pool)
    .await?)
}

/// The judge's floors on a validator: operator files first, then the database.
pub struct PgFloors {
    pub pool: PgPool,
    pub rt: tokio::runtime::Handle,
    pub repo: String,
    pub installation: u64,
    pub device_class: String,
    pub seeds: u32,
    pub files: Vec<NoiseFloor>,
}

impl Floors for PgFloors {
    /// Call from a blocking thread (the pipeline runs on one).
    fn lookup(&self, king: &str, config: &str) -> Result<FloorLookup> {
        if let FloorLookup::Ready(f) = self.files.lookup(king, config)? {
            return Ok(FloorLookup::Ready(f));
        }
        let key = FloorKey {
            repo: self.repo.clone(),
            king: king.into(),
            config: config.into(),
            device_class: self.device_class.clone(),
        };
        self.rt.block_on(lookup(&self.pool, &key, self.installation, self.seeds))
    }
}
