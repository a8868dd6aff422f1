//! The fake's git side. GitHub is a git server too: what its API makes (a
//! squash merge, a contents commit, an annotated tag, its ref) are objects and
//! refs that the next fetch brings. When a test gives a repository its bare
//! remote (`RepoState::git`), they are made there for real, so the bot's mirror
//! sees the new king as it would on GitHub, and a second judgment is decided
//! against it.

use git2::{Oid, Repository, Signature};
use std::path::Path;

/// What went wrong, in GitHub's words where it has some.
pub(crate) type Refusal = String;

fn open(git: &Path) -> Result<Repository, Refusal> {
    Repository::open_bare(git).map_err(|e| format!("the remote {}: {e}", git.display()))
}

fn github() -> Result<Signature<'static>, Refusal> {
    Signature::now("GitHub", "noreply@github.com").map_err(|e| e.to_string())
}

fn commit(git: &Path, sha: &str) -> Result<(Repository, Oid), Refusal> {
    let repo = open(git)?;
    let oid = Oid::from_str(sha).map_err(|_| format!("{sha:?} is not an object id"))?;
    repo.find_commit(oid).map_err(|_| format!("no commit {sha}"))?;
    Ok((repo, oid))
}

/// Whether `sha` names a commit of the remote.
pub(crate) fn has_commit(git: &Path, sha: &str) -> bool {
    commit(git, sha).is_ok()
}

/// Squash-merges `head` onto `main` as one new commit on `refs/heads/main`:
/// its tree is git's three-way merge of the two; a conflict is refused.
pub(crate) fn squash(git: &Path, main: &str, head: &str, message: &str) -> Result<String, Refusal> {
    let (repo, main) = commit(git, main)?;
    let head = Oid::from_str(head).map_err(|e| e.to_string())?;
    let (ours, theirs) =
        (repo.find_commit(main).map_err(|e| e.to_string())?, repo.find_commit(head).map_err(|e| e.to_string())?);
    let mut index = repo.merge_commits(&ours, &theirs, None).map_err(|e| e.to_string())?;
    if index.has_conflicts() {
        return Err("Merge conflict".into());
    }
    let tree = index.write_tree_to(&repo).map_err(|e| e.to_string())?;
    new_commit(&repo, &ours, tree, message)
}

/// The text of `path` on commit `main` and its blob id, as the contents API has them.
pub(crate) fn file(git: &Path, main: &str, path: &str) -> Option<(String, String)> {
    let (repo, main) = commit(git, main).ok()?;
    let entry = repo.find_commit(main).ok()?.tree().ok()?.get_path(Path::new(path)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    Some((entry.id().to_string(), String::from_utf8(blob.content().to_vec()).ok()?))
}

/// Commits `text` at `path` on top of `main` (the contents API's PUT).
pub(crate) fn commit_file(git: &Path, main: &str, path: &str, text: &str, message: &str) -> Result<String, Refusal> {
    let (repo, main) = commit(git, main)?;
    let parent = repo.find_commit(main).map_err(|e| e.to_string())?;
    let blob = repo.blob(text.as_bytes()).map_err(|e| e.to_string())?;
    let mut update = git2::build::TreeUpdateBuilder::new();
    update.upsert(path, blob, git2::FileMode::Blob);
    let tree = update.create_updated(&repo, &parent.tree().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    new_commit(&repo, &parent, tree, message)
}

fn new_commit(repo: &Repository, parent: &git2::Commit<'_>, tree: Oid, message: &str) -> Result<String, Refusal> {
    let tree = repo.find_tree(tree).map_err(|e| e.to_string())?;
    let who = github()?;
    let id = repo.commit(None, &who, &who, message, &tree, &[parent]).map_err(|e| e.to_string())?;
    repo.reference("refs/heads/main", id, true, "the fake GitHub").map_err(|e| e.to_string())?;
    Ok(id.to_string())
}

/// Writes an annotated tag object as its bytes are; its id is theirs.
pub(crate) fn write_tag(git: &Path, bytes: &[u8]) -> Result<String, Refusal> {
    let repo = open(git)?;
    let odb = repo.odb().map_err(|e| e.to_string())?;
    Ok(odb.write(git2::ObjectType::Tag, bytes).map_err(|e| e.to_string())?.to_string())
}

/// Creates `refs/tags/<tag>` at `sha`; an existing ref is refused.
pub(crate) fn create_tag_ref(git: &Path, tag: &str, sha: &str) -> Result<(), Refusal> {
    let repo = open(git)?;
    let oid = Oid::from_str(sha).map_err(|e| e.to_string())?;
    repo.reference(&format!("refs/tags/{tag}"), oid, false, "the fake GitHub").map_err(|e| e.to_string())?;
    Ok(())
}
