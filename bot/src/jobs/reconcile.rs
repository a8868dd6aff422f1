//! Reconciliation: GitHub does not redeliver a webhook it failed to deliver, so
//! every few minutes one worker lists the open PRs of every installed repository
//! and queues a judgment for any head (and bundle) that has none. Enqueueing is
//! idempotent on the same keys the webhook uses, so nothing is judged twice.
//! It first syncs the App's installations, which the webhook's repository check
//! relies on.

use super::Services;
use crate::db::jobs::{self, NewJob};
use crate::forge::github::{Installation, RepoName};
use crate::server::events::judge_key;
use anyhow::Result;

/// The periodic job's key: one per period, whichever replica enqueues it.
pub fn key(period: std::time::Duration) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("reconcile:{}", now.as_secs() / period.as_secs().max(1))
}

/// Brings `installed_repos` in line with GitHub: every installation of the App
/// and its repositories (an App installed before the bot first ran, or an
/// installation event that never arrived).
pub async fn sync_installations(s: &Services) -> Result<()> {
    let installations: Vec<serde_json::Value> = s.app.get("/app/installations?per_page=100", None::<&()>).await?;
    for inst in installations {
        let Some(id) = inst["id"].as_u64() else { continue };
        let gh = s.app.installation(octocrab::models::InstallationId(id))?;
        let mut repos = Vec::new();
        for page in 1.. {
            let list: serde_json::Value =
                gh.get(format!("/installation/repositories?per_page=100&page={page}"), None::<&()>).await?;
            let batch = list["repositories"].as_array().cloned().unwrap_or_default();
            repos.extend(batch.iter().filter_map(|r| r["full_name"].as_str().map(str::to_string)));
            if batch.len() < 100 {
                break;
            }
        }
        let mut tx = s.pool.begin().await?;
        crate::db::deliveries::uninstall(&mut tx, id as i64, None).await?;
        crate::db::deliveries::install(&mut tx, id as i64, &repos).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Syncs installations, then returns how many judgments it queued.
pub async fn run(s: &Services) -> Result<usize> {
    sync_installations(s).await?;
    let repos: Vec<(i64, String)> =
        sqlx::query_as("SELECT installation_id, repo FROM installed_repos ORDER BY repo").fetch_all(&s.pool).await?;
    let mut queued = 0;
    for (installation, full) in repos {
        let repo = RepoName::parse(&full)?;
        let gh = Installation::new(&s.app, installation as u64)?;
        for (pr, head, body) in gh.open_pulls(&repo).await? {
            let payload = serde_json::json!({"repo": full, "installation": installation, "pr": pr,
                                             "head_sha": head.as_str()});
            let job = NewJob { kind: "judge".into(), dedupe_key: judge_key(&full, pr, head.as_str(), &body), payload };
            if jobs::enqueue(&s.pool, &job).await?.is_some() {
                tracing::warn!(repo = full, pr, "reconciliation found a PR head without a judgment");
                queued += 1;
            }
        }
    }
    Ok(queued)
}
