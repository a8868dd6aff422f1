//! The local forge: a recipe repository on disk (bare or not) where a pull request
//! is the ref `refs/pull/<n>/head` plus a bundle path, recorded in
//! `<git dir>/karpa/pulls/<n>.json`. `karpa judge` runs the same pipeline on it,
//! and a crowned verdict is released exactly as on GitHub: a squash commit on the
//! base branch, a CHANGELOG.md commit, the annotated tag `recipe-vX.Y.Z`, and the
//! crown note on the PR head and on the release commit.
//!
//! Without a database the merge lock is git's own: the tag is created only if it
//! does not exist (a second crown of the same release fails), and the base branch
//! moves by compare-and-swap from the tip the squash was built on.

use super::crown::{next_release, with_changelog_entry, CrownOutcome, ReleaseText};
use super::github::CommitSha;
use crate::db::kings::Bump;
use crate::judge::verdict::{Verdict, VerdictClass};
use crate::lineage::keys::ValidatorKeys;
use crate::lineage::note::{self, CrownFacts, CrownNote};
use crate::lineage::trust::TRUST_FILE;
use crate::repo::RecipeRepo;
use anyhow::{bail, Context, Result};
use git2::{Oid, Signature};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullState {
    Open,
    Merged,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalPull {
    pub number: u64,
    /// The branch it asks to be merged into.
    pub base: String,
    /// The bundle's folder or packed file, absolute.
    pub bundle: PathBuf,
    pub state: PullState,
    /// The class of its latest verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictClass>,
    /// The release it made, once crowned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

impl LocalPull {
    pub fn head_ref(&self) -> String {
        format!("refs/pull/{}/head", self.number)
    }

    /// How the changelog and the crown note name it.
    pub fn label(&self) -> String {
        format!("pull/{}", self.number)
    }
}

pub struct LocalForge {
    repo: RecipeRepo,
    pulls: PathBuf,
}

impl LocalForge {
    pub fn open(path: &Path) -> Result<Self> {
        let repo = RecipeRepo::open(path)?;
        let pulls = repo.git().path().join("karpa/pulls");
        Ok(LocalForge { repo, pulls })
    }

    pub fn repo(&self) -> &RecipeRepo {
        &self.repo
    }

    /// Opens a pull request of `head` (any revision) into `base` with its bundle.
    pub fn open_pull(&self, head: &str, bundle: &Path, base: &str) -> Result<LocalPull> {
        let (commit, _) = self.repo.commit(head)?;
        self.branch_tip(base)?;
        if !bundle.exists() {
            bail!("no bundle at {}", bundle.display());
        }
        std::fs::create_dir_all(&self.pulls)?;
        let mut pull = LocalPull {
            number: self.last_number()? + 1,
            base: base.to_string(),
            bundle: std::path::absolute(bundle)?,
            state: PullState::Open,
            verdict: None,
            release: None,
        };
        // The record file is created exclusively: two openers never share a number.
        loop {
            let path = self.record(pull.number);
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => pull.number += 1,
                Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
            }
        }
        self.save(&pull)?;
        self.repo.git().reference(&pull.head_ref(), commit, true, "karpa: pull request opened")?;
        Ok(pull)
    }

    pub fn pull(&self, number: u64) -> Result<LocalPull> {
        let path = self.record(number);
        let bytes = std::fs::read(&path).with_context(|| format!("no pull request #{number} in this repository"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a pull request record", path.display()))
    }

    pub fn pulls(&self) -> Result<Vec<LocalPull>> {
        (1..=self.last_number()?).filter(|n| self.record(*n).exists()).map(|n| self.pull(n)).collect()
    }

    /// The commit the pull request's head ref points at now.
    pub fn head(&self, pull: &LocalPull) -> Result<Oid> {
        Ok(self.repo.commit(&pull.head_ref())?.0)
    }

    pub fn record_verdict(&self, pull: &mut LocalPull, class: VerdictClass) -> Result<()> {
        pull.verdict = Some(class);
        self.save(pull)
    }

    /// Releases a crowned verdict on `pull`, judged at `head`, numbered by `bump`;
    /// the crown note is signed by the validator's hotkey and the tag by its tag
    /// key. With `trusted_set` (a validators.toml) the release also puts that set
    /// in force, when it differs from the king's. Crowning the same pull request
    /// again returns its release.
    pub fn crown(
        &self,
        pull: &mut LocalPull,
        head: Oid,
        verdict: &Verdict,
        bump: Bump,
        validator: &ValidatorKeys,
        trusted_set: Option<&str>,
    ) -> Result<CrownOutcome> {
        if verdict.class != VerdictClass::Crowned {
            bail!("only a crowned verdict crowns");
        }
        if let (PullState::Merged, Some(tag)) = (pull.state, &pull.release) {
            let commit = self.repo.king(Some(tag))?.commit;
            return Ok(CrownOutcome::Crowned { tag: tag.clone(), commit: CommitSha::parse(&commit.to_string())? });
        }
        let king = self.repo.king(None)?;
        if verdict.king.as_deref() != Some(king.tag.as_str()) {
            return Ok(CrownOutcome::Stale { king: king.tag });
        }
        if self.head(pull)? != head {
            return Ok(CrownOutcome::HeadMoved);
        }
        let tag = next_release(&king.tag, bump)?;
        // Everything that can fail on the miner's side comes before any ref moves.
        let facts =
            CrownFacts { tag: &tag, king: &king.tag, pr: &pull.label(), head: &head.to_string(), bundle_url: None };
        let change = validator.crown_over(&king.tag, self.repo.file(king.tree, TRUST_FILE)?.as_deref(), trusted_set)?;
        let mut crown_note = CrownNote::from_bundle(&pull.bundle, &facts, verdict)?;
        crown_note.trusted_set = change.clone();
        crown_note.sign(&validator.hotkey);
        let git = self.repo.git();
        let tip = self.branch_tip(&pull.base)?;
        if !self.repo.descends_from(tip, king.commit)? {
            bail!("{} does not contain {}; the king must be on the base branch", pull.base, king.tag);
        }
        let sig = Signature::now("karpa", "karpa@localhost")?;
        let text = ReleaseText::new(verdict, &king.tag);

        // The squash merge: the PR's changes since the king, on the branch's tip.
        let (ancestor, ours, theirs) =
            (git.find_tree(king.tree)?, git.find_commit(tip)?.tree()?, git.find_commit(head)?.tree()?);
        let mut index = git.merge_trees(&ancestor, &ours, &theirs, None)?;
        if index.has_conflicts() {
            bail!("{} does not merge cleanly into {}", pull.label(), pull.base);
        }
        let merged_tree = git.find_tree(index.write_tree_to(git)?)?;
        let message = format!("{tag}: {}\n\n{}", pull.label(), text.merge_body());
        let squash = git.commit(None, &sig, &sig, &message, &merged_tree, &[&git.find_commit(tip)?])?;

        // The CHANGELOG.md entry (and a new trusted set), in a commit of its own as on GitHub.
        let old = match merged_tree.get_name("CHANGELOG.md") {
            Some(e) => Some(String::from_utf8(git.find_blob(e.id())?.content().to_vec())?),
            None => None,
        };
        let entry = text.changelog_entry(&tag, &pull.label(), &squash.to_string());
        let blob = git.blob(with_changelog_entry(old.as_deref(), &tag, &entry).as_bytes())?;
        let mut builder = git.treebuilder(Some(&merged_tree))?;
        builder.insert("CHANGELOG.md", blob, git2::FileMode::Blob.into())?;
        let mut message = format!("CHANGELOG: {tag}");
        if let Some(set) = &change {
            builder.insert(TRUST_FILE, git.blob(set.as_bytes())?, git2::FileMode::Blob.into())?;
            message.push_str(&format!("\n\n{TRUST_FILE}: the trusted set this release puts in force"));
        }
        let tree = git.find_tree(builder.write()?)?;
        let release = git.commit(None, &sig, &sig, &message, &tree, &[&git.find_commit(squash)?])?;

        // The signed tag claims the release; then the branch moves, only from `tip`.
        let message = text.tag_message(&tag, &pull.label(), &head.to_string());
        validator.tags.sign(release, &tag, &message, sig.when().seconds())?.write(git, &tag)?;
        let branch = format!("refs/heads/{}", pull.base);
        if let Err(e) = git.reference_matching(&branch, release, true, tip, &format!("karpa: {tag}")) {
            let _ = git.find_reference(&format!("refs/tags/{tag}")).and_then(|mut r| r.delete());
            bail!("{} moved during the crown ({e}); judge the pull request again", pull.base);
        }
        note::write(git, &[head, release], &crown_note)?;
        pull.state = PullState::Merged;
        pull.release = Some(tag.clone());
        pull.verdict = Some(VerdictClass::Crowned);
        self.save(pull)?;
        Ok(CrownOutcome::Crowned { tag, commit: CommitSha::parse(&release.to_string())? })
    }

    fn branch_tip(&self, branch: &str) -> Result<Oid> {
        let r = self.repo.git().find_reference(&format!("refs/heads/{branch}"));
        r.ok().and_then(|r| r.target()).with_context(|| format!("the repository has no branch {branch:?}"))
    }

    fn record(&self, number: u64) -> PathBuf {
        self.pulls.join(format!("{number}.json"))
    }

    fn save(&self, pull: &LocalPull) -> Result<()> {
        Ok(proof::fsio::write_json_atomic(&self.record(pull.number), pull)?)
    }

    fn last_number(&self) -> Result<u64> {
        let Ok(entries) = std::fs::read_dir(&self.pulls) else { return Ok(0) };
        let mut last = 0;
        for e in entries {
            let name = e?.file_name();
            if let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".json")).and_then(|n| n.parse::<u64>().ok()) {
                last = last.max(n);
            }
        }
        Ok(last)
    }
}
