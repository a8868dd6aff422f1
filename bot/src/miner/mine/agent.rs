//! What proposes the changes: a built-in search over recipe.toml, or any
//! program run in a fresh worktree (a coding agent's CLI, a script). An agent
//! only proposes a tree; the miner checks it against the judge's rules, trains
//! and scores it, and decides — an agent never sees a score it did not earn.

use super::record::State;
use crate::repo::RecipeRepo;
use anyhow::Result;
use std::collections::HashSet;
use std::path::Path;

/// A proposed recipe: the best tree with the agent's edits.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub tree: git2::Oid,
    /// One line for results.tsv.
    pub description: String,
    /// Why it should help (becomes recipe/RATIONALE.md's text in the PR).
    pub rationale: String,
    /// What was dropped from the agent's edits (paths outside the allowlist).
    pub dropped: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Proposed {
    Change(Proposal),
    /// The agent failed (exit status, time: a crash) or changed nothing a
    /// recipe may change (refused).
    Failed {
        status: super::record::Status,
        description: String,
        note: String,
        dropped: Vec<String>,
    },
    /// Nothing left to try: a built-in search has covered its space.
    Exhausted,
}

/// What an agent sees of the run.
pub struct Context<'a> {
    pub repo: &'a RecipeRepo,
    pub config: &'a str,
    pub king_tree: git2::Oid,
    pub best_tree: git2::Oid,
    pub state: &'a State,
    /// This trial's number (a round of several workers proposes several at once).
    pub number: u32,
    /// This trial's folder (the agent's log and prompt go here).
    pub trial_dir: &'a Path,
    /// The prompt an external agent reads (program.md).
    pub program: &'a str,
    /// Normalised-diff digests against the king already tried here or judged by the network.
    pub seen: &'a HashSet<String>,
}

impl Context<'_> {
    /// Whether `tree` makes a change already tried or judged.
    pub fn tried(&self, tree: git2::Oid) -> Result<bool> {
        Ok(self.seen.contains(&crate::judge::duplicate::normalized_diff_digest(self.repo, self.king_tree, tree)?))
    }
}

pub trait Agent {
    /// Recorded in the state; a run resumes only with the same agent.
    fn name(&self) -> String;
    fn propose(&mut self, cx: &Context<'_>) -> Result<Proposed>;
}

/// `builtin` (the compass search) or a command line.
pub fn from_arg(spec: &str, options: super::external::Options) -> Result<Box<dyn Agent>> {
    Ok(match spec {
        "builtin" | "builtin:compass" => Box::new(super::compass::Compass),
        command if command.starts_with("builtin") => anyhow::bail!("unknown built-in agent {command:?} (builtin)"),
        command => Box::new(super::external::External::new(command, options)?),
    })
}
