//! What the network has already judged on this king, from a validator's corpus
//! API (`--corpus-url`): the failures and meaningful failures the agent is
//! told about, and every judged change's normalised-diff digest, so the miner
//! never spends a training on what a validator has already decided.

use crate::repo::RecipeRepo;
use anyhow::{bail, Context, Result};
use http_body_util::BodyExt;
use serde::Deserialize;

/// Pages of 100 read per refresh: the newest 300 judgments on this king.
const PAGES: u64 = 3;
const MAX_BODY: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub id: String,
    pub class: String,
    pub title: String,
    pub gain: Option<f64>,
    /// Its change's normalised-diff digest against the king (None: its diff does not apply).
    pub digest: Option<String>,
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Summary>,
    has_more: bool,
}

#[derive(Deserialize)]
struct Summary {
    id: String,
    class: String,
    title: String,
    gain: Option<f64>,
}

#[derive(Deserialize)]
struct Detail {
    diff: String,
}

/// The judgments on `king` the corpus at `base` holds, newest first. Those in
/// `known` (read before, for the same king) keep their digest: only new ones
/// are fetched whole.
pub fn fetch(base: &str, king: &str, repo: &RecipeRepo, king_tree: git2::Oid, known: &[Judged]) -> Result<Vec<Judged>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = crate::forge::bundle_fetch::https_client()?;
    let base = base.trim_end_matches('/');
    let get = |url: String| {
        let client = &client;
        async move { get_json(client, &url).await.with_context(|| format!("GET {url}")) }
    };
    rt.block_on(async {
        let mut out = Vec::new();
        for page in 1..=PAGES {
            let page: Page = serde_json::from_value(
                get(format!("{base}/api/v1/submissions?king={}&per_page=100&page={page}", encode(king))).await?,
            )?;
            for item in page.items {
                let digest = match known.iter().find(|j| j.id == item.id) {
                    Some(j) => j.digest.clone(),
                    None => {
                        let url = format!("{base}/api/v1/submissions/{}", item.id);
                        let detail: Detail = serde_json::from_value(get(url).await?)?;
                        digest_of(repo, king_tree, &detail.diff)
                    }
                };
                out.push(Judged { id: item.id, class: item.class, title: item.title, gain: item.gain, digest });
            }
            if !page.has_more {
                break;
            }
        }
        Ok(out)
    })
}

fn digest_of(repo: &RecipeRepo, king_tree: git2::Oid, diff: &str) -> Option<String> {
    let diff = git2::Diff::from_buffer(diff.as_bytes()).ok()?;
    let tree = repo.apply_patch(king_tree, &diff).ok()?;
    crate::judge::duplicate::normalized_diff_digest(repo, king_tree, tree).ok()
}

async fn get_json(client: &crate::forge::bundle_fetch::HttpsClient, url: &str) -> Result<serde_json::Value> {
    let resp = client.get(url.parse()?).await?;
    if !resp.status().is_success() {
        bail!("answered {}", resp.status());
    }
    let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("the body broke off or passed {MAX_BODY} bytes: {e}"))?;
    Ok(serde_json::from_slice(&body.to_bytes())?)
}

/// A release tag in a query string (tags are `recipe-vX.Y.Z`; anything else is escaped).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
