//! `--agent "<command>"`: any program as the agent. Each trial it runs with
//! `sh -c` in a fresh git worktree of the best recipe (one commit, so `git
//! diff` shows the agent its own edits), reading the prompt at $KARPA_PROGRAM.
//! Its environment is empty but for PATH, a scratch HOME, the prompt's path and
//! the variables the miner names with `--agent-env`: no hotkey, no GitHub token,
//! no other secret of the miner's. Its time is bounded, and its whole process
//! group is killed at the end. What it leaves outside the allowlist is dropped.

use super::agent::{Agent, Context, Proposal, Proposed};
use super::record::Status;
use crate::allowlist::patchable;
use anyhow::{bail, Context as _, Result};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A file larger than this is no recipe source: dropped.
const MAX_FILE: usize = 1 << 20;
/// Names `--agent-env` refuses to pass: what could sign or push as the miner.
const NEVER_PASSED: &[&str] = &["GITHUB_TOKEN", "GH_TOKEN", "KARPA_HOTKEY", "SSH_AUTH_SOCK"];

#[derive(Debug, Clone)]
pub struct Options {
    pub timeout: Duration,
    /// Variables of the miner's environment the agent gets (its own API key, say).
    pub pass_env: Vec<String>,
}

pub struct External {
    command: String,
    options: Options,
}

impl External {
    pub fn new(command: &str, options: Options) -> Result<Self> {
        if command.trim().is_empty() {
            bail!("--agent needs a command (or `builtin`)");
        }
        if let Some(name) = options.pass_env.iter().find(|n| NEVER_PASSED.contains(&n.as_str())) {
            bail!("--agent-env {name}: the agent never gets the miner's credentials");
        }
        Ok(External { command: command.into(), options })
    }
}

impl Agent for External {
    fn name(&self) -> String {
        format!("command:{}", self.command)
    }

    fn propose(&mut self, cx: &Context<'_>) -> Result<Proposed> {
        let scratch = tempfile::Builder::new().prefix("karpa-mine-agent-").tempdir()?;
        let (worktree, home) = (scratch.path().join("recipe"), scratch.path().join("home"));
        std::fs::create_dir_all(&home)?;
        let before = BTreeMap::from_iter(cx.repo.files(cx.best_tree)?);
        cx.repo.checkout(cx.best_tree, &worktree)?;
        commit_all(&worktree)?;
        let program = cx.trial_dir.join("program.md");
        std::fs::write(&program, cx.program)?;
        let log = std::fs::File::create(cx.trial_dir.join("agent.log"))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&self.command).current_dir(&worktree).env_clear();
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()));
        cmd.env("HOME", &home).env("LANG", "C.UTF-8").env("KARPA_PROGRAM", &program);
        cmd.env("KARPA_TRIAL", cx.number.to_string()).env("KARPA_CONFIG", cx.config);
        for name in &self.options.pass_env {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
        let finished = run_bounded(&mut cmd, self.options.timeout)?;
        let (edits, dropped) = edits(&worktree, &before)?;
        let rationale = rationale(&edits);
        let description = description(&rationale).unwrap_or_else(|| format!("agent trial {}", cx.number));
        let failed = |status, note: String| {
            Ok(Proposed::Failed { status, description: description.clone(), note, dropped: dropped.clone() })
        };
        match finished {
            Finished::TimedOut => {
                return failed(Status::Crash, format!("the agent ran past {:?} and was killed", self.options.timeout))
            }
            Finished::Exited(code) if !code.success() => {
                return failed(Status::Crash, format!("the agent exited with {code}"))
            }
            Finished::Exited(_) => {}
        }
        if edits.is_empty() {
            return failed(Status::Refused, "the agent changed nothing a recipe may change".into());
        }
        let tree = cx.repo.edit_tree(cx.best_tree, &edits)?;
        Ok(Proposed::Change(Proposal { tree, description, rationale, dropped }))
    }
}

enum Finished {
    Exited(std::process::ExitStatus),
    TimedOut,
}

/// Runs `cmd` (its own process group) for at most `timeout`, then kills the
/// whole group either way: nothing the agent started outlives its trial.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Finished> {
    let mut child = cmd.spawn().context("cannot start the agent (sh -c …)")?;
    let pgid = child.id() as i32;
    let started = Instant::now();
    let finished = loop {
        if let Some(status) = child.try_wait()? {
            break Finished::Exited(status);
        }
        if started.elapsed() >= timeout {
            break Finished::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: kill(2) on the agent's own process group; no memory is involved.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    Ok(finished)
}

/// The worktree as one commit, for the agent's `git diff` and `git status`.
fn commit_all(dir: &Path) -> Result<()> {
    let repo = git2::Repository::init(dir)?;
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let who = git2::Signature::now("karpa mine", "mine@karpa.invalid")?;
    repo.commit(Some("HEAD"), &who, &who, "the best recipe so far", &tree, &[])?;
    Ok(())
}

type Edits = Vec<(String, Option<Vec<u8>>)>;

/// The agent's changes against `before`: allowlisted ones as edits, the rest as
/// notes of what was dropped. Only regular files count; links and the like are dropped.
fn edits(worktree: &Path, before: &BTreeMap<String, Vec<u8>>) -> Result<(Edits, Vec<String>)> {
    let mut after = BTreeMap::new();
    let mut dropped = Vec::new();
    walk(worktree, worktree, &mut after, &mut dropped)?;
    let mut edits = Vec::new();
    let paths: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for path in paths {
        let (old, new) = (before.get(path), after.get(path));
        if old == new {
            continue;
        }
        if !patchable(path) {
            dropped.push(format!("{path}: outside the allowlist"));
        } else if new.is_some_and(|n| n.len() > MAX_FILE) {
            dropped.push(format!("{path}: larger than {MAX_FILE} bytes"));
        } else {
            edits.push((path.clone(), new.cloned()));
        }
    }
    Ok((edits, dropped))
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>, dropped: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
        if rel == ".git" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, out, dropped)?;
        } else if kind.is_file() {
            out.insert(rel, std::fs::read(&path)?);
        } else {
            dropped.push(format!("{rel}: not a regular file"));
        }
    }
    Ok(())
}

/// The text of a changed RATIONALE.md (empty when the agent left it alone).
fn rationale(edits: &Edits) -> String {
    let text = edits.iter().find(|(p, _)| p == "recipe/RATIONALE.md").and_then(|(_, c)| c.as_ref());
    text.map(|c| String::from_utf8_lossy(c).into_owned()).unwrap_or_default()
}

/// The rationale's first line, without its heading marks.
fn description(rationale: &str) -> Option<String> {
    let line = rationale.lines().map(|l| l.trim_start_matches('#').trim()).find(|l| !l.is_empty())?;
    Some(line.chars().take(120).collect())
}
