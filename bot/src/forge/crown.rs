//! Crowning on GitHub, under the merge lock: the squash merge guarded by the
//! judged head, a CHANGELOG.md entry (and a new validators.toml when the crown
//! puts a new trusted set in force), the signed annotated tag `recipe-vX.Y.Z` on
//! that commit, a release, and the new king recorded. Each step is idempotent, so a
//! crown interrupted half-way finishes on retry instead of crowning twice.

use super::github::{CommitSha, Installation, Merge, RepoName};
use crate::db::kings::{Bump, MergeLock, NewKing};
use crate::judge::verdict::{Verdict, VerdictClass};
use crate::lineage::trust::TRUST_FILE;
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

impl CrownOutcome {
    /// The verdict as the miner should read it after the crown was tried: a lost
    /// race or a moved head makes it stale.
    pub fn settle(&self, verdict: &mut Verdict) {
        match self {
            CrownOutcome::Crowned { tag, .. } => verdict.summary = format!("{}; released as {tag}", verdict.summary),
            CrownOutcome::Stale { king } => {
                verdict.class = VerdictClass::Stale;
                verdict.summary = format!("{}, but {king} was crowned first; rebase and re-prove", verdict.summary);
            }
            CrownOutcome::HeadMoved => {
                verdict.class = VerdictClass::Stale;
                verdict.summary =
                    "the PR was pushed again after this judgment; the new head is judged on its own".into();
            }
        }
    }
}

/// The release after `king`: its patch number bumped, or its minor one.
pub fn next_release(king: &str, bump: Bump) -> Result<String> {
    let (x, y, z) = tag_version(king).with_context(|| format!("{king} is not a release tag"))?;
    Ok(match bump {
        Bump::Patch => format!("recipe-v{x}.{y}.{}", z + 1),
        Bump::Minor => format!("recipe-v{x}.{}.0", y + 1),
    })
}

pub struct Crowning<'a> {
    pub repo: &'a RepoName,
    pub pr: u64,
    pub head: &'a CommitSha,
    /// The branch kings live on.
    pub base: &'a str,
    pub verdict: &'a Verdict,
    /// What the release links to besides the numbers.
    pub links: ReleaseLinks<'a>,
    /// The validator's tag key and tagger.
    pub tags: &'a crate::lineage::signed_tag::TagSigner,
    /// A new validators.toml this release puts in force (its crown note carries it too).
    pub trusted_set: Option<&'a str>,
}

/// A release's rationale and links (all optional).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReleaseLinks<'a> {
    /// The miner's rationale, quoted inert.
    pub rationale: Option<&'a str>,
    pub bundle_url: Option<&'a str>,
    pub corpus_url: Option<&'a str>,
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
    let tag = next_release(&king.tag, lock.take_bump(&repo_name).await?)?;
    let text = ReleaseText::new(v, &king.tag);
    let merged = match gh.merge(c.repo, c.pr, c.head, &format!("{tag}: #{}", c.pr), &text.merge_body()).await? {
        Merge::Merged(sha) => sha,
        Merge::HeadMoved => return Ok(CrownOutcome::HeadMoved),
        Merge::NotMergeable(why) => bail!("GitHub will not merge #{} now: {why}", c.pr),
    };
    let pr = format!("#{}", c.pr);
    let entry = text.changelog_entry(&tag, &pr, merged.as_str());
    let mut commit = gh.prepend_changelog(c.repo, c.base, &tag, &entry).await?;
    if let Some(set) = c.trusted_set {
        let message = format!("{TRUST_FILE}: the trusted set {tag} puts in force");
        commit = gh.put_file(c.repo, c.base, TRUST_FILE, &message, set).await?;
    }
    gh.create_tag(c.repo, &tag, &text.tag_message(&tag, &pr, c.head.as_str()), &commit, c.tags).await?;
    gh.create_release(c.repo, &tag, &text.release_body(&tag, &c.links)).await?;
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

/// What a release says about its crown, worded once for GitHub and the local forge.
pub struct ReleaseText<'a> {
    verdict: &'a Verdict,
    /// One line: the challenger's numbers against the king's.
    pub numbers: String,
    pub digest: String,
}

impl<'a> ReleaseText<'a> {
    pub fn new(v: &'a Verdict, king: &str) -> Self {
        let numbers = match (&v.decision, &v.confirmation) {
            (Some(d), Some(conf)) => format!(
                "hidden bpb {:.4} (validator runs {:.4}) against {king} at {:.4} ± {:.4} (n = {}); threshold {:.4}",
                d.challenger, conf.mean, d.king_mean, d.sigma, d.n, conf.threshold
            ),
            (Some(d), None) => format!(
                "hidden bpb {:.4} against {king} at {:.4} ± {:.4} (n = {}); threshold {:.4}",
                d.challenger, d.king_mean, d.sigma, d.n, d.threshold
            ),
            _ => v.summary.clone(),
        };
        ReleaseText { verdict: v, numbers, digest: v.bundle_digest.clone().unwrap_or_else(|| "?".into()) }
    }

    pub fn merge_body(&self) -> String {
        format!("{}\n\nbundle {}", self.numbers, self.digest)
    }

    pub fn changelog_entry(&self, tag: &str, pr: &str, merge: &str) -> String {
        format!("{}\n- {pr}: {}\n- bundle `{}`, merge {merge}\n", changelog_marker(tag), self.numbers, self.digest)
    }

    /// The annotated tag's message; `head:` names the commit the crown note is on too.
    pub fn tag_message(&self, tag: &str, pr: &str, head: &str) -> String {
        let (summary, numbers, digest) = (&self.verdict.summary, &self.numbers, &self.digest);
        format!("{tag}\n\n{summary}\n\n{numbers}\nbundle-digest: {digest}\npr: {pr}\nhead: {head}\n")
    }

    /// The GitHub release: the verdict, the numbers, the bundle and the corpus
    /// page, and the miner's rationale in a fence it cannot close (so its
    /// markdown, HTML and @-mentions stay text).
    pub fn release_body(&self, tag: &str, links: &ReleaseLinks<'_>) -> String {
        let mut body = format!("{}\n\n{}\n\nBundle digest: `{}`", self.verdict.summary, self.numbers, self.digest);
        if let Some(url) = links.bundle_url {
            body.push_str(&format!(" · [bundle]({url})"));
        }
        if let Some(url) = links.corpus_url {
            body.push_str(&format!(" · [in the corpus]({url})"));
        }
        body.push_str(&format!(
            "\n\nReproduce it from a clone: `karpa reproduce --tag {} --data <prepared data>` (README, \"Reproduce a release\").",
            tag
        ));
        if let Some(text) = links.rationale {
            let text = super::checks::truncate(text.trim_end(), 20_000);
            let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
            let fence = "`".repeat(longest.max(2) + 1);
            body.push_str(&format!("\n\n### Rationale\n\n{fence}text\n{text}\n{fence}\n"));
        }
        body
    }
}

/// The heading of a release's CHANGELOG.md entry; its presence means the entry is in.
pub fn changelog_marker(tag: &str) -> String {
    format!("## {tag}\n")
}

/// CHANGELOG.md with `entry` first (under the title), or a new file holding it.
/// Unchanged when the entry's heading is already there.
pub fn with_changelog_entry(old: Option<&str>, tag: &str, entry: &str) -> String {
    let old = old.unwrap_or("# Changelog\n\nEvery crowned recipe release, newest first.\n");
    if old.contains(&changelog_marker(tag)) {
        return old.to_string();
    }
    let (title, rest) = old.split_once("\n\n").unwrap_or((old, ""));
    format!("{title}\n\n{entry}\n{rest}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rationale_cannot_escape_its_fence() {
        let v: crate::judge::verdict::Verdict = serde_json::from_value(serde_json::json!({
            "class": "crowned", "summary": "crowned", "bundle_digest": "ab", "king": "recipe-v0.1.0",
            "findings": [], "stages": [], "judge_version": "0"
        }))
        .unwrap();
        let text = super::ReleaseText::new(&v, "recipe-v0.1.0");
        let evil = "fine\n````\n<img src=x> @everyone\n````";
        let links =
            super::ReleaseLinks { rationale: Some(evil), corpus_url: Some("https://k/s/ks-1"), ..Default::default() };
        let body = text.release_body("recipe-v0.1.4", &links);
        assert!(body.contains("`karpa reproduce --tag recipe-v0.1.4 "), "{body}");
        assert!(body.contains("`````text\nfine\n````\n<img src=x> @everyone\n````\n`````\n"), "{body}");
        assert!(body.contains("[in the corpus](https://k/s/ks-1)"));
    }

    #[test]
    fn releases_bump_the_patch() {
        use crate::db::kings::Bump;
        assert_eq!(super::next_release("recipe-v0.1.9", Bump::Patch).unwrap(), "recipe-v0.1.10");
        assert_eq!(super::next_release("recipe-v0.1.9", Bump::Minor).unwrap(), "recipe-v0.2.0");
        assert!(super::next_release("v0.1.0", Bump::Patch).is_err());
    }

    #[test]
    fn changelog_entries_go_first_once() {
        let first = super::with_changelog_entry(None, "recipe-v0.1.1", "## recipe-v0.1.1\n\n- one\n");
        assert!(first.starts_with("# Changelog\n\n## recipe-v0.1.1\n"), "{first}");
        let second = super::with_changelog_entry(Some(&first), "recipe-v0.1.2", "## recipe-v0.1.2\n\n- two\n");
        assert!(second.find("recipe-v0.1.2").unwrap() < second.find("recipe-v0.1.1").unwrap(), "{second}");
        assert_eq!(
            super::with_changelog_entry(Some(&second), "recipe-v0.1.2", "## recipe-v0.1.2\n\n- again\n"),
            second
        );
    }
}
