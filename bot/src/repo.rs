//! The recipe repository through git2: kings (release tags), patches applied to
//! trees (compared by tree id, never by text), checkouts and harness digests.

use anyhow::{anyhow, bail, Context, Result};
use git2::{Oid, Repository};
use std::path::Path;

pub const TAG_PREFIX: &str = "recipe-v";

/// A release of the recipe: the tag and the commit it points at.
#[derive(Debug, Clone, PartialEq)]
pub struct King {
    pub tag: String,
    pub commit: Oid,
    pub tree: Oid,
}

/// `recipe-vX.Y.Z` → (X, Y, Z).
pub fn tag_version(tag: &str) -> Option<(u64, u64, u64)> {
    let mut parts = tag.strip_prefix(TAG_PREFIX)?.split('.').map(|p| p.parse::<u64>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

pub struct RecipeRepo {
    repo: Repository,
}

impl RecipeRepo {
    pub fn open(path: &Path) -> Result<Self> {
        let repo = Repository::open(path).with_context(|| format!("{} is not a git repository", path.display()))?;
        Ok(RecipeRepo { repo })
    }

    /// The git repository itself.
    pub fn git(&self) -> &Repository {
        &self.repo
    }

    /// Every release, oldest (lowest version) first.
    pub fn releases(&self) -> Result<Vec<King>> {
        self.release_tags()?.into_iter().map(|t| self.king(Some(&t))).collect()
    }

    /// The names of every `recipe-vX.Y.Z` tag, lowest version first, whatever they point at.
    pub fn release_tags(&self) -> Result<Vec<String>> {
        let names = self.repo.tag_names(Some(&format!("{TAG_PREFIX}*")))?;
        let mut tags: Vec<_> =
            names.iter().flatten().flatten().filter_map(|n| Some((tag_version(n)?, n.to_string()))).collect();
        tags.sort();
        Ok(tags.into_iter().map(|(_, t)| t).collect())
    }

    /// The named release, or the highest `recipe-vX.Y.Z` tag.
    pub fn king(&self, tag: Option<&str>) -> Result<King> {
        let tag = match tag {
            Some(t) => {
                if tag_version(t).is_none() {
                    bail!("{t:?} is not a release tag ({TAG_PREFIX}X.Y.Z)");
                }
                t.to_string()
            }
            None => {
                return self.releases()?.pop().ok_or_else(|| anyhow!("the repository has no {TAG_PREFIX}X.Y.Z tag"))
            }
        };
        let obj = self.repo.revparse_single(&format!("refs/tags/{tag}")).with_context(|| format!("no tag {tag}"))?;
        let commit = obj.peel_to_commit().with_context(|| format!("tag {tag} does not point at a commit"))?;
        Ok(King { tag, commit: commit.id(), tree: commit.tree_id() })
    }

    /// Applies a unified git diff to `base` and returns the resulting tree id.
    pub fn apply_patch(&self, base: Oid, diff: &git2::Diff<'_>) -> Result<Oid> {
        let tree = self.repo.find_tree(base)?;
        let mut index = self.repo.apply_to_tree(&tree, diff, None).context("the patch does not apply to the king")?;
        Ok(index.write_tree_to(&self.repo)?)
    }

    /// Writes the files of `tree` into `dir` (which must be empty or absent).
    pub fn checkout(&self, tree: Oid, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let obj = self.repo.find_object(tree, Some(git2::ObjectType::Tree))?;
        let mut opts = git2::build::CheckoutBuilder::new();
        // Never touch the repository's own index or work tree.
        opts.target_dir(dir).force().recreate_missing(true).update_index(false);
        self.repo
            .checkout_tree(&obj, Some(&mut opts))
            .with_context(|| format!("cannot check out into {}", dir.display()))?;
        Ok(())
    }

    /// A commit by revision (branch, ref, sha): (commit, tree).
    pub fn commit(&self, rev: &str) -> Result<(Oid, Oid)> {
        let obj = self.repo.revparse_single(rev).with_context(|| format!("no revision {rev:?}"))?;
        let commit = obj.peel_to_commit().with_context(|| format!("{rev:?} is not a commit"))?;
        Ok((commit.id(), commit.tree_id()))
    }

    /// Whether `ancestor` is `commit` or one of its ancestors.
    pub fn descends_from(&self, commit: Oid, ancestor: Oid) -> Result<bool> {
        Ok(commit == ancestor || self.repo.graph_descendant_of(commit, ancestor)?)
    }

    /// The changes from tree `a` to tree `b`.
    pub fn tree_diff(&self, a: Oid, b: Oid) -> Result<git2::Diff<'_>> {
        let (a, b) = (self.repo.find_tree(a)?, self.repo.find_tree(b)?);
        Ok(self.repo.diff_tree_to_tree(Some(&a), Some(&b), None)?)
    }

    /// `base` with each (path, content) written, or removed where content is None.
    pub fn edit_tree(&self, base: Oid, edits: &[(String, Option<Vec<u8>>)]) -> Result<Oid> {
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, content) in edits {
            match content {
                Some(bytes) => update.upsert(path.as_str(), self.repo.blob(bytes)?, git2::FileMode::Blob),
                None => update.remove(path.as_str()),
            };
        }
        Ok(update.create_updated(&self.repo, &self.repo.find_tree(base)?)?)
    }

    /// The change from tree `a` to tree `b` as a git patch (what `karpa prove` takes).
    pub fn patch_text(&self, a: Oid, b: Oid) -> Result<String> {
        let mut out = Vec::new();
        self.tree_diff(a, b)?.print(git2::DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                out.push(line.origin() as u8);
            }
            out.extend_from_slice(line.content());
            true
        })?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Every blob of `tree` as (path, bytes).
    pub fn files(&self, tree: Oid) -> Result<Vec<(String, Vec<u8>)>> {
        let tree = self.repo.find_tree(tree)?;
        let mut out = Vec::new();
        let mut err = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(git2::ObjectType::Blob) {
                match entry.to_object(&self.repo).and_then(|o| o.peel_to_blob()) {
                    Ok(blob) => {
                        out.push((format!("{dir}{}", entry.name().unwrap_or_default()), blob.content().to_vec()))
                    }
                    Err(e) => {
                        err = Some(e);
                        return git2::TreeWalkResult::Abort;
                    }
                }
            }
            git2::TreeWalkResult::Ok
        })?;
        match err {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }

    /// The blob at `path` in `tree`, or None when the tree has no file there.
    pub fn file(&self, tree: Oid, path: &str) -> Result<Option<Vec<u8>>> {
        let entry = match self.repo.find_tree(tree)?.get_path(Path::new(path)) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match entry.to_object(&self.repo)?.into_blob() {
            Ok(blob) => Ok(Some(blob.content().to_vec())),
            Err(_) => Ok(None), // a folder or a submodule, not a file
        }
    }

    /// The protocol config `name` as `tree` holds it (`trainer/configs/<name>.toml`).
    pub fn protocol_config(&self, tree: Oid, name: &str) -> Result<proof::config::ProtocolConfig> {
        let path = format!("trainer/configs/{name}.toml");
        let bytes = self.file(tree, &path)?.with_context(|| format!("the tree has no {path}"))?;
        Ok(proof::config::ProtocolConfig::from_toml(name, &String::from_utf8_lossy(&bytes))?)
    }

    /// The harness digest of a tree (see `proof::harness`).
    pub fn harness_digest(&self, tree: Oid) -> Result<proof::Sha256Hex> {
        Ok(proof::harness::harness_digest(self.files(tree)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_versions() {
        assert_eq!(tag_version("recipe-v0.1.10"), Some((0, 1, 10)));
        assert_eq!(tag_version("recipe-v1.2"), None);
        assert_eq!(tag_version("recipe-v1.2.3.4"), None);
        assert_eq!(tag_version("v1.2.3"), None);
        assert!(tag_version("recipe-v0.1.10") > tag_version("recipe-v0.1.9"));
    }
}
