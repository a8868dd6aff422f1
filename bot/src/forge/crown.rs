//! Crowning on GitHub, under the merge lock: the squash merge guarded by the
//! judged head, a CHANGELOG.md entry, the annotated tag `recipe-vX.Y.Z` on that
//! commit, a release, and the new king recorded. Each step is idempotent, so a
//! crown interrupted half-way finishes on retry instead of crowning twice.

use super::github::{CommitSha, Installation, Merge, RepoName};
use crate::db::kings::{MergeLock, NewKing};
use crate::judge::verdict::{Verdict, VerdictClass};
use crate::repo::tag_version;
use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum CrownOutcome {
    Crowned {
        tag: String,
        commit: CommitSha,
    },
    /// The king changed since the judgment: rebase and re-prove.
    Stale {
        king: String,
    },
    /// The PR was pushed again after the judgment; the new head gets its own.
    HeadMoved,
}

/// The next release after `king`: the patch number bumped.
pub fn next_release(king: &str) -> Result<String> {
    let (x, y, z) = tag_version(king).with_context(|| format!("{king} is not a release tag"))?;
    Ok(format!("recipe-v{x}.{y}.{}", z + 1))
}

pub struct Crowning<'a> {
    pub repo: &'a RepoName,
    pub pr: u64,
    pub head: &'a CommitSha,
    /// The branch kings live on.
    pub base: &'a str,
    pub verdict: &'a Verdict,
}

pub async fn crown(gh: &Installation, lock: &mut MergeLock, c: &Crowning<'_>) -> Result<CrownOutcome> {
    let v = c.verdict;
    if v.class != VerdictClass::Crowned {
        bail!("only a crowned verdict crowns");
    }
    let repo_name = c.repo.to_string();
    let Some(king) = lock.king(&repo_name).await? else { bail!("no king is recorded for {repo_name}") };
    if king.pr == Some(c.pr) && king.bundle_digest == v.bundle_digest {
        // This PR already took the crown (an earlier try got this far).
        return Ok(CrownOutcome::Crowned { tag: king.tag, commit: CommitSha::parse(&king.commit)? });
    }
    if v.king.as_deref() != Some(king.tag.as_str()) {
        return Ok(CrownOutcome::Stale { king: king.tag });
    }
    let tag = next_release(&king.tag)?;
    let digest = v.bundle_digest.as_deref().unwrap_or("?");
    let numbers = match (&v.decision, &v.confirmation) {
        (Some(d), Some(conf)) => format!(
            "hidden bpb {:.4} (validator runs {:.4}) against {} at {:.4} ± {:.4} (n = {}); threshold {:.4}",
            d.challenger, conf.mean, king.tag, d.king_mean, d.sigma, d.n, conf.threshold
        ),
        (Some(d), None) => format!(
            "hidden bpb {:.4} against {} at {:.4} ± {:.4} (n = {}); threshold {:.4}",
            d.challenger, king.tag, d.king_mean, d.sigma, d.n, d.threshold
        ),
        _ => v.summary.clone(),
    };
    let merged = match gh
        .merge(c.repo, c.pr, c.head, &format!("{tag}: #{}", c.pr), &format!("{numbers}\n\nbundle {digest}"))
        .await?
    {
        Merge::Merged(sha) => sha,
        Merge::HeadMoved => return Ok(CrownOutcome::HeadMoved),
        Merge::NotMergeable(why) => bail!("GitHub will not merge #{} now: {why}", c.pr),
    };
    let entry = format!("## {tag}\n\n- #{}: {numbers}\n- bundle `{digest}`, merge {}\n", c.pr, merged.as_str());
    let commit = gh.prepend_changelog(c.repo, c.base, &format!("## {tag}\n"), &entry).await?;
    let message = format!("{tag}\n\n{}\n\n{numbers}\nbundle-digest: {digest}\npr: {}\n", v.summary, c.pr);
    gh.create_tag(c.repo, &tag, &message, &commit).await?;
    gh.create_release(c.repo, &tag, &format!("{}\n\n{numbers}\n\nBundle digest: `{digest}`", v.summary)).await?;
    let verdict = serde_json::to_value(v)?;
    let bpb = v.confirmation.as_ref().map(|c| c.mean).or(v.decision.as_ref().map(|d| d.challenger));
    let new = NewKing {
        tag: &tag,
        commit: commit.as_str(),
        pr: Some(c.pr),
        bundle_digest: v.bundle_digest.as_deref(),
        hidden_bpb: bpb,
        verdict: Some(&verdict),
    };
    lock.crown(&repo_name, &new).await?;
    Ok(CrownOutcome::Crowned { tag, commit })
}

#[cfg(test)]
mod tests {
    #[test]
    fn releases_bump_the_patch() {
        assert_eq!(super::next_release("recipe-v0.1.9").unwrap(), "recipe-v0.1.10");
        assert!(super::next_release("v0.1.0").is_err());
    }
}
