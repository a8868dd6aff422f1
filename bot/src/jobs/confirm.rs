//! The confirm-run job: one of the guard's runs of a challenger, claimable by any
//! runner. It fetches the PR into the mirror, builds its head in the sandbox
//! (cached in the shared target folder), trains it with the validator's seed for
//! that run, scores and causality-checks it (aimed with the king's floor, when
//! it is in), and stores the outcome. A recipe failure is stored as the run's
//! finding; only the validator's own failure makes the job retry.

use super::{Next, Services};
use crate::db::confirmations::{self, ConfirmRunJob};
use crate::db::floors::{self, FloorKey};
use crate::db::jobs::Lease;
use crate::forge::github::RepoName;
use crate::judge::confirmation::{run_one, Challenger};
use crate::judge::noise_floor::{FloorLookup, Floors};
use anyhow::{bail, Context, Result};
use std::time::Instant;

pub async fn run(s: &Services, lease: &Lease) -> Result<Next> {
    let job: ConfirmRunJob = serde_json::from_value(lease.payload.clone()).context("a confirm-run job's payload")?;
    if confirmations::has_run(&s.pool, &job).await? {
        return Ok(Next::Done);
    }
    let Some(setup) = s.judge.eval.clone() else {
        bail!(
            "this runner has no hidden evaluation set up (--data, --hidden, --secret-file); confirmation runs need one"
        );
    };
    if setup.device.class() != job.device_class {
        return Ok(Next::Later(s.judge.floor_poll, None));
    }
    let floor = FloorKey {
        repo: job.repo.clone(),
        king: job.king.clone(),
        config: job.config.clone(),
        device_class: job.device_class.clone(),
    };
    // The floor the judgment decides with: an operator's file, else the stored runs.
    let reference = match s.judge.noise_floors.lookup(&job.king, &job.config)? {
        FloorLookup::Ready(f) => f.reference,
        _ => floors::stored(&s.pool, &floor, s.judge.rule.floor_seeds).await?.ok().and_then(|f| f.reference),
    };
    let (mirror, url, token) = super::judge::git_access(s, &RepoName::parse(&job.repo)?, job.installation).await?;
    let started = Instant::now();
    let j = job.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<_> {
        crate::forge::mirror::fetch(&mirror, &url, Some(j.pr), token.as_deref())?;
        let recipe = crate::repo::RecipeRepo::open(&mirror)?;
        let (_, head_tree) = recipe.commit(&j.head_sha)?;
        let king = recipe.king(Some(&j.king))?;
        let protocol = recipe.protocol_config(king.tree, &j.config)?;
        let sandbox = crate::sandbox::Sandbox::new()?;
        let work = tempfile::Builder::new().prefix("karpa-confirm-").tempdir()?;
        let bin = match crate::judge::evaluate::build(&sandbox, &setup, &recipe, head_tree, work.path())? {
            Ok(bin) => bin,
            // It built for the judgment that queued this run: here it is ours.
            Err(why) => bail!("the challenger does not build on this runner: {why}"),
        };
        let c = Challenger {
            sandbox: &sandbox,
            setup: &setup,
            bin: Some(&bin),
            protocol: &protocol,
            digest: &j.bundle_digest,
            king: &j.king,
            aim_at: reference.as_deref(),
            work: work.path(),
        };
        let seed = crate::judge::evaluate::confirmation_seed(&setup.secret, &j.bundle_digest, j.run);
        Ok((seed, run_one(&c, j.run)?))
    })
    .await??;
    let (seed, outcome) = outcome;
    let seconds = started.elapsed().as_secs_f64();
    let stored = confirmations::record(&s.pool, &job, seed, &outcome, &lease.worker, seconds).await?;
    tracing::info!(digest = job.bundle_digest, run = job.run, ok = outcome.is_ok(), stored, "confirmation run done");
    Ok(Next::Done)
}
