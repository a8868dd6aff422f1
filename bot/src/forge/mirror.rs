//! The validator's local mirror of a recipe repository: a bare clone under the
//! bot's state folder, fetched before each judgment (releases, branches and the
//! PR's head), so the judge works on local git objects only.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Fetches tags, branches and `refs/pull/<pr>/head` from `url` into the bare
/// mirror at `dir` (created on first use). `token` answers HTTPS auth.
pub fn fetch(dir: &Path, url: &str, pr: u64, token: Option<&str>) -> Result<PathBuf> {
    let repo = match git2::Repository::open_bare(dir) {
        Ok(r) => r,
        Err(_) => {
            std::fs::create_dir_all(dir)?;
            git2::Repository::init_bare(dir).with_context(|| format!("cannot create a mirror at {}", dir.display()))?
        }
    };
    let mut remote = repo.remote_anonymous(url)?;
    let mut callbacks = git2::RemoteCallbacks::new();
    if let Some(token) = token {
        let token = token.to_string();
        callbacks.credentials(move |_, _, _| git2::Cred::userpass_plaintext("x-access-token", &token));
    }
    let mut opts = git2::FetchOptions::new();
    opts.remote_callbacks(callbacks);
    let refspecs = [
        "+refs/tags/*:refs/tags/*".to_string(),
        "+refs/heads/*:refs/heads/*".to_string(),
        format!("+refs/pull/{pr}/head:refs/pull/{pr}/head"),
    ];
    remote
        .fetch(&refspecs, Some(&mut opts), None)
        .with_context(|| format!("cannot fetch PR #{pr} from the recipe repository"))?;
    Ok(dir.to_path_buf())
}
