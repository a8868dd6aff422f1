//! An epoch's plan from the corpus: the current king's miner and the
//! meaningful failures judged since the last planned epoch, scored, mapped to
//! uids, clipped and converted, checked as the chain will check them, and
//! (with legacy commit-reveal) salted and hashed.

use super::commit::{new_salt, Commit};
use super::outbox::{Mode, Plan};
use super::path::Path;
use super::preflight;
use super::weights::{for_chain, scores, Target};
use anyhow::Result;
use sqlx::PgPool;

/// What the corpus says about an epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub king_tag: Option<String>,
    /// The hotkey of the miner who crowned the king (none for a genesis king).
    pub king_hotkey: Option<String>,
    /// Hotkeys with a meaningful failure since the last planned epoch.
    pub meaningful: Vec<String>,
}

pub async fn facts(pool: &PgPool, repo: &str, netuid: u16) -> Result<Facts> {
    let king: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT k.tag, s.hotkey FROM kings k LEFT JOIN submissions s ON s.id = k.submission_id
         WHERE k.repo = $1 ORDER BY k.crowned_at DESC, k.tag DESC LIMIT 1",
    )
    .bind(repo)
    .fetch_optional(pool)
    .await?;
    // Near misses since the last planned epoch (else since the king was crowned).
    let meaningful: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT s.hotkey FROM verdicts v JOIN submissions s ON s.id = v.submission_id
         WHERE s.repo = $1 AND v.class = 'meaningful-failure' AND s.hotkey IS NOT NULL
           AND v.judged_at > COALESCE((SELECT max(created_at) FROM chain_epochs WHERE netuid = $2),
                                      (SELECT max(crowned_at) FROM kings WHERE repo = $1), '-infinity')
         ORDER BY s.hotkey",
    )
    .bind(repo)
    .bind(i32::from(netuid))
    .fetch_all(pool)
    .await?;
    Ok(Facts {
        king_tag: king.as_ref().map(|k| k.0.clone()),
        king_hotkey: king.and_then(|k| k.1),
        meaningful: meaningful.into_iter().map(|m| m.0).collect(),
    })
}

/// What the subnet says: its rules and who is registered.
pub struct Subnet<'a> {
    pub netuid: u16,
    pub epoch: u64,
    pub max_weight_limit: u16,
    pub version_key: u64,
    /// How the weights go to the chain (`path::choose`).
    pub path: Path,
    /// The chain's checks at this block (None: not known, as offline).
    pub preflight: Option<preflight::Subnet>,
    pub burn_uid: Option<u16>,
    pub uid_of: &'a dyn Fn(&str) -> Option<u16>,
    /// The validator's own account (part of the commit hash).
    pub account: [u8; 32],
}

/// Why an epoch cannot be planned now (its row is kept as `blocked`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unplannable(pub String);

pub fn plan(repo: &str, facts: &Facts, subnet: &Subnet<'_>) -> Result<Plan> {
    let scores = scores(facts.king_hotkey.as_deref(), &facts.meaningful);
    let uid = |t: &Target| match t {
        Target::Hotkey(h) => (subnet.uid_of)(h),
        Target::Burn => subnet.burn_uid,
    };
    let (mut uids, mut weights) = for_chain(&scores, uid, subnet.max_weight_limit).map_err(Unplannable)?;
    if let Some(chain) = &subnet.preflight {
        (uids, weights) = preflight::check(chain, subnet.version_key, &uids, &weights, subnet.burn_uid)
            .map_err(|e| Unplannable(e.to_string()))?;
    }
    let (mode, salt, hash, reveal_epoch) = match subnet.path {
        Path::Set => (Mode::Set, None, None, None),
        Path::Timelocked { reveal_after, .. } => (Mode::Timelocked, None, None, Some(subnet.epoch + reveal_after)),
        Path::Legacy { reveal_after: after } => {
            let salt = new_salt().map_err(|e| anyhow::anyhow!("no randomness for the commit salt: {e}"))?;
            let commit = Commit {
                account: &subnet.account,
                netuid: subnet.netuid,
                uids: &uids,
                values: &weights,
                salt: &salt,
                version_key: subnet.version_key,
            };
            let hash = commit.hash();
            (Mode::Commit, Some(salt), Some(hash), Some(subnet.epoch + after))
        }
    };
    Ok(Plan {
        netuid: subnet.netuid,
        epoch: subnet.epoch,
        repo: repo.to_string(),
        king_tag: facts.king_tag.clone(),
        scores,
        uids,
        weights,
        version_key: subnet.version_key,
        mode,
        salt,
        commit_hash: hash,
        reveal_epoch,
    })
}
