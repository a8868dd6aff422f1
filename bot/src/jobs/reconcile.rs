//! Reconciliation: GitHub does not redeliver a webhook it failed to deliver, so
//! every few minutes one worker lists the open PRs of every installed repository
//! and queues a judgment for any head (and bundle) that has none. Enqueueing is
//! idempotent on the same keys the webhook uses, so nothing is judged twice.
//! It first syncs the App's installations, which the webhook's repository check
//! relies on, and ends by comparing each repository's release tags with the king
//! we recorded (drift: a tag moved, deleted or made by hand), under the merge lock
//! so that a crown in progress is never mistaken for drift.

use super::Services;
use crate::db::jobs::{self, NewJob};
use crate::db::kings::MergeLock;
use crate::forge::github::{Installation, RepoName};
use crate::repo::tag_version;
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
    let mut installations: Vec<serde_json::Value> = Vec::new();
    for page in 1.. {
        let batch: Vec<serde_json::Value> =
            s.app.get(format!("/app/installations?per_page=100&page={page}"), None::<&()>).await?;
        let last = batch.len() < 100;
        installations.extend(batch);
        if last {
            break;
        }
    }
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

/// A difference between the king we recorded and the repository's release tags.
/// Reported, never repaired: a moved release tag is for a person to look at.
#[derive(Debug, Clone, PartialEq)]
pub enum Drift {
    /// The king's tag is gone.
    KingTagMissing { tag: String },
    /// The king's tag points at another commit than the one crowned.
    KingTagMoved { tag: String, crowned: String, now: String },
    /// A release above the king that no crown made.
    UnknownRelease { tag: String },
}

#[derive(Debug, Default)]
pub struct Reconciled {
    /// Judgments queued for PR heads that had none.
    pub queued: usize,
    pub drift: Vec<(String, Drift)>,
}

/// Syncs installations, queues the missing judgments, and reports drift.
pub async fn run(s: &Services) -> Result<Reconciled> {
    sync_installations(s).await?;
    let repos: Vec<(i64, String)> =
        sqlx::query_as("SELECT installation_id, repo FROM installed_repos ORDER BY repo").fetch_all(&s.pool).await?;
    let mut out = Reconciled::default();
    for (installation, full) in repos {
        let repo = RepoName::parse(&full)?;
        let gh = Installation::new(&s.app, installation as u64)?;
        for d in drift(s, &gh, &repo).await? {
            tracing::error!(repo = full, drift = ?d, "the release tags differ from the recorded king");
            out.drift.push((full.clone(), d));
        }
        for (pr, head, body) in gh.open_pulls(&repo).await? {
            let payload = serde_json::json!({"repo": full, "installation": installation, "pr": pr,
                                             "head_sha": head.as_str()});
            let job = NewJob { kind: "judge".into(), dedupe_key: judge_key(&full, pr, head.as_str(), &body), payload };
            if jobs::enqueue(&s.pool, &job).await?.is_some() {
                tracing::warn!(repo = full, pr, "reconciliation found a PR head without a judgment");
                out.queued += 1;
            }
        }
    }
    Ok(out)
}

async fn drift(s: &Services, gh: &Installation, repo: &RepoName) -> Result<Vec<Drift>> {
    let mut lock = MergeLock::acquire(&s.pool).await?;
    let Some(king) = lock.king(&repo.to_string()).await? else { return Ok(vec![]) };
    let mut found = Vec::new();
    match gh.tag_commit(repo, &king.tag).await? {
        None => found.push(Drift::KingTagMissing { tag: king.tag.clone() }),
        Some(now) if now.as_str() != king.commit => found.push(Drift::KingTagMoved {
            tag: king.tag.clone(),
            crowned: king.commit.clone(),
            now: now.as_str().into(),
        }),
        Some(_) => {}
    }
    let ours = tag_version(&king.tag);
    for tag in gh.release_tags(repo).await? {
        if tag_version(&tag) > ours {
            found.push(Drift::UnknownRelease { tag });
        }
    }
    lock.release().await?;
    Ok(found)
}
