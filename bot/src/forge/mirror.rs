//! The validator's local mirror of a recipe repository: a bare clone under the
//! bot's state folder, fetched before each judgment (releases, branches and the
//! PR's head), so the judge works on local git objects only.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Fetches tags, branches and (for a judgment) `refs/pull/<pr>/head` from `url`
/// into the bare mirror at `dir` (created on first use). `token` answers HTTPS auth.
pub fn fetch(dir: &Path, url: &str, pr: Option<u64>, token: Option<&str>) -> Result<PathBuf> {
    let repo = match git2::Repository::open_bare(dir) {
        Ok(r) => r,
        Err(_) => {
            std::fs::create_dir_all(dir)?;
            git2::Repository::init_bare(dir).with_context(|| format!("cannot create a mirror at {}", dir.display()))?
        }
    };
    let mut remote = repo.remote_anonymous(url)?;
    let mut opts = git2::FetchOptions::new();
    opts.remote_callbacks(callbacks(token));
    let mut refspecs = vec!["+refs/tags/*:refs/tags/*".to_string(), "+refs/heads/*:refs/heads/*".to_string()];
    refspecs.extend(pr.map(|pr| format!("+refs/pull/{pr}/head:refs/pull/{pr}/head")));
    let what = pr.map_or("the releases".to_string(), |pr| format!("PR #{pr}"));
    remote
        .fetch(&refspecs, Some(&mut opts), None)
        .with_context(|| format!("cannot fetch {what} from the recipe repository"))?;
    Ok(dir.to_path_buf())
}

/// Writes `note` on `commits` under refs/notes/karpa in the mirror and pushes the
/// notes ref to `url`. The remote's notes are fetched first and the push is
/// fast-forward only, so a concurrent writer is never overwritten: a rejected
/// push is fetched, rewritten and tried again.
pub fn publish_note(
    dir: &Path,
    url: &str,
    token: Option<&str>,
    commits: &[git2::Oid],
    note: &crate::lineage::note::CrownNote,
) -> Result<()> {
    use crate::lineage::note::{write, NOTES_REF};
    let repo = git2::Repository::open_bare(dir).with_context(|| format!("no mirror at {}", dir.display()))?;
    let mut last = None;
    for _ in 0..3 {
        let mut remote = repo.remote_anonymous(url)?;
        let mut opts = git2::FetchOptions::new();
        opts.remote_callbacks(callbacks(token));
        // The remote may have no notes yet; then ours start the ref.
        let _ = remote.fetch(&[format!("+{NOTES_REF}:{NOTES_REF}")], Some(&mut opts), None);
        write(&repo, commits, note)?;
        let rejected = std::cell::RefCell::new(None);
        let mut cb = callbacks(token);
        cb.push_update_reference(|_, status| {
            *rejected.borrow_mut() = status.map(str::to_string);
            Ok(())
        });
        let mut push = git2::PushOptions::new();
        push.remote_callbacks(cb);
        let pushed = remote.push(&[format!("{NOTES_REF}:{NOTES_REF}")], Some(&mut push));
        drop(push);
        match pushed {
            Ok(()) => match rejected.into_inner() {
                None => return Ok(()),
                Some(why) => last = Some(anyhow::anyhow!("the remote refused {NOTES_REF}: {why}")),
            },
            Err(e) => last = Some(anyhow::Error::from(e).context(format!("cannot push {NOTES_REF}"))),
        }
    }
    Err(last.expect("three tries"))
}

fn callbacks<'a>(token: Option<&str>) -> git2::RemoteCallbacks<'a> {
    let mut callbacks = git2::RemoteCallbacks::new();
    if let Some(token) = token {
        let token = token.to_string();
        callbacks.credentials(move |_, _, _| git2::Cred::userpass_plaintext("x-access-token", &token));
    }
    callbacks
}
