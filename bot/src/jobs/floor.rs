//! The floor-run job: one seeded run of a king's noise floor, claimable by any
//! runner. It fetches the releases into the mirror, builds the king in the
//! sandbox (cached in the shared target folder), trains it with the job's seed,
//! scores it on the hidden split with the causality check, and stores the run.
//! A runner killed mid-run loses nothing: the lease lapses, another runner
//! redoes the same seed, and the first stored run stands.

use super::Services;
use crate::db::floors::{self, FloorRun, FloorRunJob};
use crate::db::jobs::Lease;
use crate::forge::github::RepoName;
use anyhow::{bail, Context, Result};
use std::time::Instant;

pub async fn run(s: &Services, lease: &Lease) -> Result<super::Next> {
    let job: FloorRunJob = serde_json::from_value(lease.payload.clone()).context("a floor-run job's payload")?;
    let key = job.key.clone();
    if floors::has_run(&s.pool, &key, job.seed).await? {
        return Ok(super::Next::Done);
    }
    let Some(setup) = s.judge.eval.clone() else {
        bail!("this runner has no hidden evaluation set up (--data, --hidden, --secret-file); floor runs need one");
    };
    // Like with like: a floor of another device class is another runner's.
    if setup.device.class() != key.device_class {
        return Ok(super::Next::Later(s.judge.floor_poll, None));
    }
    let (mirror, url, token) = super::judge::git_access(s, &RepoName::parse(&key.repo)?, job.installation).await?;
    let started = Instant::now();
    let (king, config, seed) = (key.king.clone(), key.config.clone(), job.seed);
    let (score, harness_digest) = tokio::task::spawn_blocking(move || -> Result<_> {
        crate::forge::mirror::fetch(&mirror, &url, None, token.as_deref())?;
        let recipe = crate::repo::RecipeRepo::open(&mirror)?;
        let king = recipe.king(Some(&king))?;
        let digest = recipe.harness_digest(king.tree)?.to_string();
        let sandbox = crate::sandbox::Sandbox::new()?;
        let work = tempfile::Builder::new().prefix("karpa-floor-").tempdir()?;
        let score =
            crate::judge::noise_floor::measure_one(&sandbox, &setup, &recipe, &king, &config, seed, work.path())?;
        Ok((score, digest))
    })
    .await??;
    let run = FloorRun {
        seed,
        hidden_bpb: score.bpb,
        nats: score.nats,
        harness_digest,
        runner: lease.worker.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let stored = floors::record(&s.pool, &key, &run).await?;
    tracing::info!(repo = key.repo, king = key.king, seed, bpb = run.hidden_bpb, stored, "floor run done");
    Ok(super::Next::Done)
}
