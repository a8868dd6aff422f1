//! `karpa mine`: the autoresearch miner. One trial after another, until the
//! budget is spent (with no budget, until it is stopped):
//!
//! 1. the agent proposes a change of the best recipe (`agent`);
//! 2. a change already tried here or judged by the network is skipped
//!    (`network`, by normalised-diff digest), and one the judge's rules refuse
//!    costs no training (`judge::rules`), its finding shown to the agent next trial;
//! 3. the official harness trains it in the validator's sandbox on the public
//!    split and scores it on public val (`measure`), one trial per worker at a
//!    time (`--workers`, or one per GPU with `--gpus`);
//! 4. it is kept only past the validator's margin, twice (`keep`);
//! 5. a best that clears the rule against the king with room to spare is
//!    re-measured with fresh seeds, proved and opened as a pull request (`submit`).
//!
//! Everything is recorded as it happens (`record`): a killed run resumes
//! without losing or redoing a finished trial.

pub mod agent;
mod args;
pub mod compass;
pub mod external;
pub mod keep;
pub mod measure;
pub mod network;
pub mod plot;
pub mod program;
pub mod record;
pub mod submit;
mod summary;
mod trial;

pub use args::MineArgs;

use crate::judge::decision::DecisionRule;
use crate::repo::RecipeRepo;
use crate::sandbox::Sandbox;
use anyhow::{bail, Context as _, Result};
use measure::Bench;
use record::{Best, Record, State, Status, Trial};
use std::collections::HashSet;
use std::time::Instant;
use summary::{print_summary, progress_bar};

/// Refresh what the network has judged every this many trials.
const NETWORK_EVERY: u32 = 10;

/// What one `karpa mine` run works with.
struct Miner<'a> {
    args: &'a MineArgs,
    repo: &'a RecipeRepo,
    rule: DecisionRule,
    record: Record,
    /// One per worker; trials and the seeds of the king and the best are spread over them.
    benches: Vec<Bench<'a>>,
    network: Vec<network::Judged>,
    /// The king `network` was read for (None: not read yet).
    network_king: Option<String>,
}

pub fn mine(args: &MineArgs) -> Result<State> {
    if args.seeds < 2 {
        bail!("--seeds must be at least 2: the noise needs a spread");
    }
    // The arguments first: a bad one is refused before anything is opened or measured.
    let rule = crate::judge_cmd::load_rule(args.rule.as_deref())?;
    let mut agent = agent::from_arg(
        &args.agent,
        external::Options { timeout: args.agent_timeout, pass_env: args.agent_env.clone() },
    )?;
    args.submit.check(args.dry_run)?;
    let setups = worker_setups(args)?;
    let repo = RecipeRepo::open(&args.repo)?;
    let sandbox = Sandbox::new()?;
    let work = tempfile::Builder::new().prefix("karpa-mine-").tempdir()?;
    let count = setups.len();
    let benches = setups
        .into_iter()
        .enumerate()
        .map(|(i, setup)| {
            let label = format!("worker {} of {count} ({})", i + 1, setup.device);
            Bench::new(&sandbox, setup, &args.repo, &args.config, &work.path().join(format!("worker-{i}")), label)
        })
        .collect::<Result<Vec<_>>>()?;
    let record = Record::open(&args.out)?;
    let mut m = Miner { args, repo: &repo, rule, record, benches, network: Vec::new(), network_king: None };
    let mut state = m.start(agent.name())?;
    let started = Instant::now();
    let progress = progress_bar(args.trials.map(|t| t.saturating_sub(state.trials.len() as u32)));
    loop {
        let room = args.trials.map_or(usize::MAX, |t| (t as usize).saturating_sub(state.trials.len()));
        if room == 0 || args.time.is_some_and(|t| started.elapsed() >= t) {
            break;
        }
        m.follow_the_king(&mut state)?;
        if state.next_number() % NETWORK_EVERY == 1 || m.network_king.as_deref() != Some(state.king.as_str()) {
            m.refresh_network(&state);
        }
        let round = m.round(agent.as_mut(), &state, room)?;
        for trial in round.trials {
            let line = format!(
                "trial {}: {} {}{}",
                trial.number,
                trial.status.as_str(),
                trial.description,
                trial.bpb().map_or(String::new(), |b| format!(" ({b:.5})"))
            );
            // A terminal shows it above the bar; a log (nohup, CI) gets one line per trial.
            match progress.is_hidden() {
                true => eprintln!("karpa mine: {line}"),
                false => progress.println(&line),
            }
            progress.inc(1);
            m.settle(&mut state, trial)?;
        }
        if let Some(e) = round.failed {
            return Err(e);
        }
        submit::maybe_submit(&mut m, &mut state)?;
        if round.exhausted {
            eprintln!("karpa mine: the agent has nothing left to try");
            break;
        }
    }
    progress.finish_and_clear();
    print_summary(&state);
    Ok(state)
}

impl Miner<'_> {
    /// The saved run, or a new one: the king's noise measured first.
    fn start(&mut self, agent: String) -> Result<State> {
        let king = self.repo.king(None)?;
        if let Some(state) = self.record.resume()? {
            if state.config != self.args.config || state.agent != agent {
                bail!(
                    "{} holds a run of config {} with agent {:?}; choose another --out",
                    self.record.dir().display(),
                    state.config,
                    state.agent
                );
            }
            eprintln!("karpa mine: resuming at trial {}", state.next_number());
            return Ok(state);
        }
        let king_runs = self.runs_of(&king.tag, king.tree, 0)?;
        let best =
            Best { trial: None, tree: king.tree.to_string(), runs: king_runs.clone(), description: king.tag.clone() };
        let state = State {
            king: king.tag,
            king_tree: king.tree.to_string(),
            config: self.args.config.clone(),
            agent,
            king_runs,
            best,
            trials: vec![],
            submissions: vec![],
        };
        self.record.save(&state)?;
        Ok(state)
    }

    /// `--seeds` public-val runs of `tree` (`what` names it), seed offsets from
    /// `first` on. Every one must succeed: the king or a kept best failing is the
    /// miner's problem. The seeds run side by side, one per worker.
    fn runs_of(&mut self, what: &str, tree: git2::Oid, first: u64) -> Result<Vec<f64>> {
        let seeds: Vec<u64> = (first..first + self.args.seeds as u64).collect();
        let scored = measure::on_workers(&mut self.benches, seeds.clone(), |bench, seed| bench.score(tree, seed));
        let mut runs = Vec::new();
        for (seed, scored) in seeds.into_iter().zip(scored) {
            match scored? {
                Ok(bpb) => runs.push(bpb),
                Err(why) => bail!("{what} ({tree}) seed {seed}: {why}"),
            }
            eprintln!("karpa mine: {what} seed {seed}: public val bpb {:.5}", runs[runs.len() - 1]);
        }
        Ok(runs)
    }

    /// A new king: the best is rebased onto it (or dropped when its change no
    /// longer applies) and both are measured again; trials so far stay in the record.
    fn follow_the_king(&mut self, state: &mut State) -> Result<()> {
        let king = self.repo.king(None)?;
        if king.tag == state.king {
            return Ok(());
        }
        eprintln!("karpa mine: the king is now {} (was {}): rebasing the best onto it", king.tag, state.king);
        let rebased = rebase(self.repo, state.king_tree.parse()?, state.best.tree.parse()?, king.tree)?;
        state.king_runs = self.runs_of(&king.tag, king.tree, 0)?;
        state.best = match rebased {
            Some(tree) => Best {
                trial: state.best.trial,
                tree: tree.to_string(),
                runs: self.runs_of(&format!("the best rebased onto {}", king.tag), tree, 3_000_000)?,
                description: format!("{} on {}", state.best.description, king.tag),
            },
            None => Best {
                trial: None,
                tree: king.tree.to_string(),
                runs: state.king_runs.clone(),
                description: king.tag.clone(),
            },
        };
        (state.king, state.king_tree) = (king.tag, king.tree.to_string());
        self.record.save(state)
    }

    fn refresh_network(&mut self, state: &State) {
        let Some(url) = &self.args.corpus_url else { return };
        match state.king_tree.parse().map_err(anyhow::Error::from).and_then(|t| {
            // Judgments read for this king before keep their digests (a submission's diff never changes).
            let known = if self.network_king.as_deref() == Some(state.king.as_str()) { &self.network[..] } else { &[] };
            network::fetch(url, &state.king, self.repo, t, known)
        }) {
            Ok(judged) => (self.network, self.network_king) = (judged, Some(state.king.clone())),
            // The corpus being away never stops a night's mining: the last list stands.
            Err(e) => eprintln!("karpa mine: cannot read the corpus at {url}: {e:#}"),
        }
    }

    /// Digests of every change tried here or judged by the network.
    fn seen(&self, state: &State) -> HashSet<String> {
        let ours = state.trials.iter().filter_map(|t| t.digest.clone());
        ours.chain(self.network.iter().filter_map(|j| j.digest.clone())).collect()
    }

    /// Records a finished trial; a kept one becomes the best.
    fn settle(&mut self, state: &mut State, trial: Trial) -> Result<()> {
        if trial.status == Status::Keep {
            state.best = Best {
                trial: Some(trial.number),
                tree: trial.tree.clone().context("a kept trial has a tree")?,
                runs: trial.runs.clone(),
                description: trial.description.clone(),
            };
        }
        state.trials.push(trial);
        self.record.save(state)
    }
}

/// One sandbox setup per worker: one per GPU with `--gpus`, else `--workers`
/// on `--device`. Refused before anything runs when they disagree.
fn worker_setups(args: &MineArgs) -> Result<Vec<crate::judge::evaluate::EvalSetup>> {
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    if args.gpus.is_empty() {
        return Ok(vec![args.sandbox.setup(&args.repo)?; args.workers]);
    }
    if args.workers != 1 {
        bail!("--gpus runs one worker per GPU; leave out --workers");
    }
    let mut seen = HashSet::new();
    if let Some(twice) = args.gpus.iter().find(|g| !seen.insert(**g)) {
        bail!("--gpus names GPU {twice} twice");
    }
    args.gpus
        .iter()
        .map(|&gpu| {
            let mut sandbox = args.sandbox.clone();
            sandbox.device = crate::sandbox::gpu::DeviceChoice::Cuda(gpu);
            sandbox.setup(&args.repo)
        })
        .collect()
}

/// The best's change carried onto a new king: None when it no longer applies,
/// or when the new king already holds it (the best was crowned).
fn rebase(repo: &RecipeRepo, old_king: git2::Oid, best: git2::Oid, new_king: git2::Oid) -> Result<Option<git2::Oid>> {
    let change = repo.tree_diff(old_king, best)?;
    Ok(repo.apply_patch(new_king, &change).ok().filter(|t| *t != new_king))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_follows_a_new_king_unless_its_change_no_longer_applies() {
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::init(dir.path()).unwrap();
        let repo = RecipeRepo::open(dir.path()).unwrap();
        let empty = repo.git().treebuilder(None).unwrap().write().unwrap();
        let tree = |toml: &str, model: &str| {
            let files = [("recipe/recipe.toml", toml), ("recipe/src/model.rs", model)];
            let edits: Vec<_> = files.iter().map(|(p, c)| (p.to_string(), Some(c.as_bytes().to_vec()))).collect();
            repo.edit_tree(empty, &edits).unwrap()
        };
        let king = tree("[micro]\nlr = 1\nd = 4\n", "fn a() {}\n");
        let best = tree("[micro]\nlr = 2\nd = 4\n", "fn a() {}\n");
        // The new king changed the model: the best's lr change carries over.
        let moved = tree("[micro]\nlr = 1\nd = 4\n", "fn b() {}\n");
        assert_eq!(rebase(&repo, king, best, moved).unwrap(), Some(tree("[micro]\nlr = 2\nd = 4\n", "fn b() {}\n")));
        // The new king changed the same line: the change no longer applies.
        let clash = tree("[micro]\nlr = 3\nd = 4\n", "fn a() {}\n");
        assert_eq!(rebase(&repo, king, best, clash).unwrap(), None);
        // The best was crowned: nothing is left to carry.
        assert_eq!(rebase(&repo, king, best, best).unwrap(), None);
    }
}
