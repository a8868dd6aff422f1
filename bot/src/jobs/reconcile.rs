//! Reconciliation: GitHub does not redeliver a webhook it failed to deliver, so
//! every few minutes one worker lists the open PRs of every installed repository
//! and queues a judgment for any head (and bundle) that has none. Enqueueing is
//! idempotent on the same keys the webhook uses, so nothing is judged twice.

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

/// Returns how many judgments it queued.
pub async fn run(s: &Services) -> Result<usize> {
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
