//! The end of the search: a best that clears the validator's rule against the
//! king with room to spare is measured again with fresh seeds (its kept runs
//! were chosen for being low, so they flatter it), then proved with the
//! official flow (`karpa prove`) and opened as a pull request: on a local
//! forge (`--forge`), or on GitHub (`--github`: the branch pushed to the miner's
//! fork, the packed bundle hosted by the miner's own upload command, the PR
//! opened as `karpa submit` opens it). With neither, the bundle and a branch are
//! left ready for `karpa submit`.

use super::record::{mean, State, Submission};
use super::{keep, Miner};
use crate::forge::local::LocalForge;
use crate::miner::prove::{prove, ProveArgs};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct SubmitTo {
    /// Open the pull request on this local forge (a recipe repository `karpa pr` serves).
    #[arg(long)]
    pub forge: Option<PathBuf>,
    /// Secret URI or seed phrase of the hotkey, or a Bittensor hotkey file: signs the bundle.
    #[arg(long)]
    pub hotkey: Option<String>,
    #[arg(long)]
    pub github_login: Option<String>,
    /// Open the pull request on GitHub: the canonical repository, owner/name
    /// (the token is GITHUB_TOKEN's, which the agent never sees).
    #[arg(long, conflicts_with = "forge", requires_all = ["push_to", "bundle_upload"])]
    pub github: Option<String>,
    /// With --github: the fork the branch is pushed to (a git URL the miner can push to).
    #[arg(long)]
    pub push_to: Option<String>,
    /// With --github: a command that hosts the packed bundle. It runs with
    /// KARPA_BUNDLE_FILE set; the last line it prints is the bundle's https URL.
    #[arg(long)]
    pub bundle_upload: Option<String>,
    #[arg(long, default_value = "https://api.github.com")]
    pub github_api: String,
}

impl SubmitTo {
    pub fn check(&self, dry_run: bool) -> Result<()> {
        if !dry_run && (self.hotkey.is_none() || self.github_login.is_none()) {
            bail!("submitting needs --hotkey and --github-login (or pass --dry-run)");
        }
        if !dry_run && self.github.is_some() && std::env::var_os("GITHUB_TOKEN").is_none() {
            bail!("--github opens the pull request with GITHUB_TOKEN, which is not set");
        }
        Ok(())
    }
}

/// Seed offsets of the fresh runs before a submission.
const FRESH_SEEDS: u64 = 2_000_000;

pub(super) fn maybe_submit(m: &mut Miner<'_>, state: &mut State) -> Result<()> {
    let Some(trial) = state.best.trial else { return Ok(()) };
    if state.submissions.iter().any(|s| s.trial == trial && s.king == state.king) {
        return Ok(());
    }
    let (king_mean, sigma) = (mean(&state.king_runs), state.sigma());
    if !keep::worth_submitting(&m.rule, king_mean, &state.best.runs, sigma, m.args.spare) {
        return Ok(());
    }
    let tree: git2::Oid = state.best.tree.parse()?;
    eprintln!("karpa mine: trial {trial} clears the rule against {}: measuring it with fresh seeds", state.king);
    let fresh = m.runs_of(&format!("trial {trial}"), tree, FRESH_SEEDS + trial as u64 * m.args.seeds as u64)?;
    let mut sub =
        Submission { trial, king: state.king.clone(), fresh_runs: fresh.clone(), pull: None, note: String::new() };
    if !keep::worth_submitting(&m.rule, king_mean, &fresh, sigma, m.args.spare) {
        sub.note = format!("withheld: fresh seeds gave {:.5} against the king's {king_mean:.5}", mean(&fresh));
    } else if m.args.dry_run {
        sub.note = format!("dry run: would submit at {:.5} against the king's {king_mean:.5}", mean(&fresh));
    } else {
        let (pull, note) = prove_and_open(m, state, trial, &fresh)?;
        (sub.pull, sub.note) = (pull, note);
    }
    eprintln!("karpa mine: trial {trial}: {}", sub.note);
    state.submissions.push(sub);
    m.record.save(state)
}

/// Proves the best (king → best as the patch) and opens its pull request.
fn prove_and_open(m: &Miner<'_>, state: &State, trial: u32, fresh: &[f64]) -> Result<(Option<String>, String)> {
    let to = &m.args.submit;
    let dir = m.record.dir().join("submissions").join(format!("{trial:04}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?; // an interrupted proof starts over
    }
    std::fs::create_dir_all(&dir)?;
    let king = m.repo.king(Some(&state.king))?;
    let tree: git2::Oid = state.best.tree.parse()?;
    let patch = dir.join("patch.diff");
    std::fs::write(&patch, m.repo.patch_text(king.tree, tree)?)?;
    let trial_dir = m.record.dir().join("trials").join(format!("{trial:04}"));
    let mut why = std::fs::read_to_string(trial_dir.join("rationale.md")).unwrap_or_default();
    why.push_str(&format!(
        "\n\nMeasured by `karpa mine` on the public val split of `{}`: {} fresh seeds gave {:.5} bpb against \
         {}'s {:.5} over {} seeds (σ {:.5} between seeds).\n",
        state.config,
        fresh.len(),
        mean(fresh),
        king.tag,
        mean(&state.king_runs),
        state.king_runs.len(),
        state.sigma()
    ));
    let rationale = dir.join("rationale.md");
    std::fs::write(&rationale, &why)?;
    let bundle = dir.join("bundle");
    prove(&ProveArgs {
        patch,
        king: Some(king.tag.clone()),
        config: state.config.clone(),
        data: m.args.sandbox.data.clone(),
        allow_unpinned_data: false,
        hotkey: to.hotkey.clone().context("--hotkey")?,
        github_login: to.github_login.clone().context("--github-login")?,
        rationale,
        out: bundle.clone(),
        repo: m.args.repo.clone(),
        target_dir: m.args.sandbox.target_dir.clone(),
        libtorch: m.args.sandbox.libtorch.clone(),
    })?;
    let branch = format!("karpa-mine/trial-{trial}");
    let commit = branch_commit(m, &king, tree, &branch, &state.best.description)?;
    if to.github.is_some() {
        let login = to.github_login.clone().context("--github-login")?;
        let token = std::env::var("GITHUB_TOKEN").context("--github opens the pull request with GITHUB_TOKEN")?;
        let pr = open_on_github(to, &m.args.repo, &bundle, (commit, &branch), (&login, &token))?;
        let what = if pr.existing { "found open" } else { "opened" };
        return Ok((
            Some(format!("#{}", pr.number)),
            format!("{what} pull request #{} on GitHub ({})", pr.number, pr.url),
        ));
    }
    let Some(forge) = &to.forge else {
        let note = format!(
            "proved: bundle {} on branch {branch} ({commit}); pack it and run `karpa submit`",
            bundle.display()
        );
        return Ok((None, note));
    };
    if std::fs::canonicalize(forge)? != std::fs::canonicalize(&m.args.repo)? {
        push(&m.args.repo, forge, commit, &branch)?;
    }
    let pull = LocalForge::open(forge)?.open_pull(&branch, &bundle, "main")?;
    Ok((Some(format!("#{}", pull.number)), format!("opened pull request #{} ({branch})", pull.number)))
}

/// A commit of `tree` on the king, on `branch` of the miner's repository.
fn branch_commit(
    m: &Miner<'_>,
    king: &crate::repo::King,
    tree: git2::Oid,
    branch: &str,
    what: &str,
) -> Result<git2::Oid> {
    let git = m.repo.git();
    let who = git2::Signature::now("karpa mine", "mine@karpa.invalid")?;
    let parent = git.find_commit(king.commit)?;
    let commit =
        git.commit(None, &who, &who, &format!("{}: {what}", m.args.config), &git.find_tree(tree)?, &[&parent])?;
    git.reference(&format!("refs/heads/{branch}"), commit, true, "karpa mine: a change to submit")?;
    Ok(commit)
}

fn push(repo: &std::path::Path, to: impl AsRef<std::ffi::OsStr>, commit: git2::Oid, branch: &str) -> Result<()> {
    let to = to.as_ref();
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .arg("push")
        .arg("--quiet")
        .arg(to)
        .arg(format!("{commit}:refs/heads/{branch}"))
        .output()
        .context("cannot run git push")?;
    if !out.status.success() {
        bail!("git push to {} failed: {}", to.to_string_lossy(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The proved change as a pull request on GitHub: `commit` pushed to the fork
/// as `branch`, the bundle packed beside its folder and hosted by the upload
/// command, and the PR opened (or found open) with the bundle's locator.
pub fn open_on_github(
    to: &SubmitTo,
    repo: &std::path::Path,
    bundle: &std::path::Path,
    (commit, branch): (git2::Oid, &str),
    (login, token): (&str, &str),
) -> Result<crate::miner::submit::Submitted> {
    let (Some(canonical), Some(fork), Some(upload)) = (&to.github, &to.push_to, &to.bundle_upload) else {
        bail!("--github needs --push-to and --bundle-upload");
    };
    push(repo, fork, commit, branch)?;
    let file = bundle.with_extension("tar");
    if file.exists() {
        std::fs::remove_file(&file)?; // a retry packs again what it packed before
    }
    crate::archive::pack(bundle, &file)?;
    let bundle_url = hosted(upload, &file)?;
    let args = crate::miner::submit::SubmitArgs {
        repo: canonical.clone(),
        head: format!("{login}:{branch}"),
        base: "main".into(),
        bundle_file: file,
        bundle_url,
        api_url: to.github_api.clone(),
        token: token.to_string(),
    };
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(crate::miner::submit::submit(&args))
}

/// Runs the miner's upload command on the packed bundle; the https URL it prints last.
fn hosted(upload: &str, file: &std::path::Path) -> Result<String> {
    let out = std::process::Command::new("sh")
        .args(["-c", upload])
        .env("KARPA_BUNDLE_FILE", file)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run the upload command {upload:?}"))?;
    if !out.status.success() {
        bail!("the upload command failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = stdout.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    if !url.starts_with("https://") {
        bail!("the upload command's last line is {url:?}, not the bundle's https URL");
    }
    Ok(url.to_string())
}
