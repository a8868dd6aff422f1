//! `karpa mine`: the autoresearch miner. One trial after another, until the
//! budget is spent (with no budget, until it is stopped):
//!
//! 1. the agent proposes a change of the best recipe (`agent`);
//! 2. a change already tried here or judged by the network is skipped
//!    (`network`, by normalised-diff digest), and one the judge's rules refuse
//!    costs no training (`judge::rules`), its finding shown to the agent next trial;
//! 3. the official harness trains it in the validator's sandbox on the public
//!    split and scores it on public val (`measure`);
//! 4. it is kept only past the validator's margin, twice (`keep`);
//! 5. a best that clears the rule against the king with room to spare is
//!    re-measured with fresh seeds, proved and opened as a pull request (`submit`).
//!
//! Everything is recorded as it happens (`record`): a killed run resumes
//! without losing or redoing a finished trial.

pub mod agent;
pub mod compass;
pub mod external;
pub mod keep;
pub mod measure;
pub mod network;
pub mod plot;
pub mod program;
pub mod record;
pub mod submit;

use crate::judge::decision::DecisionRule;
use crate::judge_cmd::{public_setup, SandboxPaths};
use crate::repo::{King, RecipeRepo};
use crate::sandbox::gpu::DeviceChoice;
use crate::sandbox::Sandbox;
use agent::{Agent, Context, Proposal, Proposed};
use anyhow::{bail, Context as _, Result};
use measure::Bench;
use record::{mean, Best, Record, State, Status, Trial};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct MineArgs {
    /// The miner's clone of the canonical recipe repository (or the local forge itself).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Protocol config: tiny on a CPU, proxy on a GPU.
    #[arg(long)]
    pub config: String,
    /// The config's prepared public data (`karpa-train prepare`'s public/ folder).
    #[arg(long)]
    pub data: PathBuf,
    /// `builtin` (compass search over recipe.toml) or a command, run with `sh -c`
    /// in a fresh worktree of the best recipe each trial; it reads $KARPA_PROGRAM.
    #[arg(long, default_value = "builtin")]
    pub agent: String,
    /// How long an external agent may take per trial.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub agent_timeout: Duration,
    /// A variable of this environment the agent gets (its own API key, say); repeatable.
    #[arg(long)]
    pub agent_env: Vec<String>,
    /// The results folder (results.tsv, progress.svg, trials/); a run there resumes.
    #[arg(long)]
    pub out: PathBuf,
    /// Stop after this many trials in all.
    #[arg(long)]
    pub trials: Option<u32>,
    /// Start no trial after this long (e.g. 8h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub time: Option<Duration>,
    /// Seeds of the king measured for the noise (and of a best before it is submitted).
    #[arg(long, default_value_t = 3)]
    pub seeds: u32,
    /// The validator's decision rule (TOML; default: the rule's defaults).
    #[arg(long)]
    pub rule: Option<PathBuf>,
    /// A validator's corpus (https://…): what the network has judged on this king.
    #[arg(long)]
    pub corpus_url: Option<String>,
    /// Submit only a best that beats the king by this many times the validator's threshold.
    #[arg(long, default_value_t = 1.5)]
    pub spare: f64,
    /// Never prove or open a pull request.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub submit: submit::SubmitTo,
    /// Shared cargo target folder for recipe builds.
    #[arg(long, default_value = "target/recipes")]
    pub target_dir: PathBuf,
    /// libtorch folder (default: $LIBTORCH, then <repo>/.karpa/libtorch).
    #[arg(long)]
    pub libtorch: Option<PathBuf>,
    /// Where the sandboxed models run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
}

/// Refresh what the network has judged every this many trials.
const NETWORK_EVERY: u32 = 10;

/// What one `karpa mine` run works with.
struct Miner<'a> {
    args: &'a MineArgs,
    repo: &'a RecipeRepo,
    rule: DecisionRule,
    record: Record,
    bench: Bench<'a>,
    network: Vec<network::Judged>,
}

pub fn mine(args: &MineArgs) -> Result<State> {
    if args.seeds < 2 {
        bail!("--seeds must be at least 2: the noise needs a spread");
    }
    let repo = RecipeRepo::open(&args.repo)?;
    let rule = crate::judge_cmd::load_rule(args.rule.as_deref())?;
    let mut agent = agent::from_arg(
        &args.agent,
        external::Options { timeout: args.agent_timeout, pass_env: args.agent_env.clone() },
    )?;
    args.submit.check(args.dry_run)?;
    let sandbox = Sandbox::new()?;
    let paths = SandboxPaths { data: &args.data, target_dir: &args.target_dir, libtorch: args.libtorch.as_deref() };
    let setup = public_setup(&args.repo, &paths, args.device)?;
    let work = tempfile::Builder::new().prefix("karpa-mine-").tempdir()?;
    let bench = Bench::new(&sandbox, &setup, &repo, &args.config, work.path());
    let record = Record::open(&args.out)?;
    let mut m = Miner { args, repo: &repo, rule, record, bench, network: Vec::new() };
    let mut state = m.start(agent.name())?;
    let started = Instant::now();
    let progress = progress_bar(args.trials.map(|t| t.saturating_sub(state.trials.len() as u32)));
    loop {
        if args.trials.is_some_and(|t| state.trials.len() as u32 >= t) || args.time.is_some_and(|t| started.elapsed() >= t)
        {
            break;
        }
        m.follow_the_king(&mut state)?;
        if state.next_number() % NETWORK_EVERY == 1 || m.network.is_empty() {
            m.refresh_network(&state);
        }
        let Some(trial) = m.trial(agent.as_mut(), &state)? else {
            eprintln!("karpa mine: the agent has nothing left to try");
            break;
        };
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
        submit::maybe_submit(&mut m, &mut state)?;
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
        let king_runs = self.runs_of(&king, king.tree, 0)?;
        let best = Best { trial: None, tree: king.tree.to_string(), runs: king_runs.clone(), description: king.tag.clone() };
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

    /// `--seeds` public-val runs of `tree`, seed offsets from `first` on. Every
    /// one must succeed: the king or a kept best failing is the miner's problem.
    fn runs_of(&mut self, king: &King, tree: git2::Oid, first: u64) -> Result<Vec<f64>> {
        let mut runs = Vec::new();
        for seed in first..first + self.args.seeds as u64 {
            match self.bench.score(tree, seed)? {
                Ok(bpb) => runs.push(bpb),
                Err(why) => bail!("{} ({tree}) seed {seed}: {why}", king.tag),
            }
            eprintln!("karpa mine: {} seed {seed}: public val bpb {:.5}", king.tag, runs[runs.len() - 1]);
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
        state.king_runs = self.runs_of(&king, king.tree, 0)?;
        state.best = match rebased {
            Some(tree) => Best {
                trial: state.best.trial,
                tree: tree.to_string(),
                runs: self.runs_of(&king, tree, 3_000_000)?,
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
        match state.king_tree.parse().map_err(anyhow::Error::from).and_then(|t| network::fetch(url, &state.king, self.repo, t)) {
            Ok(judged) => self.network = judged,
            // The corpus being away never stops a night's mining: the last list stands.
            Err(e) => eprintln!("karpa mine: cannot read the corpus at {url}: {e:#}"),
        }
    }

    /// Digests of every change tried here or judged by the network.
    fn seen(&self, state: &State) -> HashSet<String> {
        let ours = state.trials.iter().filter_map(|t| t.digest.clone());
        ours.chain(self.network.iter().filter_map(|j| j.digest.clone())).collect()
    }

    /// One trial, start to finish; None when the agent has nothing left to try.
    fn trial(&mut self, agent: &mut dyn Agent, state: &State) -> Result<Option<Trial>> {
        let started = Instant::now();
        let number = state.next_number();
        let dir = self.record.trial_dir(number)?;
        let (king_tree, best_tree) = (state.king_tree.parse()?, state.best.tree.parse()?);
        let sigma = state.sigma();
        let program = program::write(&program::Facts {
            state,
            margin: keep::margin(&self.rule, sigma, 1),
            network: &self.network,
        });
        let seen = self.seen(state);
        let cx = Context {
            repo: self.repo,
            config: &self.args.config,
            king_tree,
            best_tree,
            state,
            trial_dir: &dir,
            program: &program,
            seen: &seen,
        };
        let mut log = TrialLog::new(number, mean(&state.best.runs));
        let proposal = match agent.propose(&cx)? {
            Proposed::Exhausted => return Ok(None),
            Proposed::Failed { status, description, note, dropped } => {
                log.dropped(&dropped);
                return Ok(Some(log.end(status, None, description, note, started, &dir)?));
            }
            Proposed::Change(p) => p,
        };
        log.dropped(&proposal.dropped);
        self.write_change(&dir, king_tree, best_tree, &proposal)?;
        let digest = crate::judge::duplicate::normalized_diff_digest(self.repo, king_tree, proposal.tree)?;
        log.digest = Some(digest.clone());
        if seen.contains(&digest) {
            let note = "the same change was already tried here or judged by the network".to_string();
            return Ok(Some(log.end(Status::Duplicate, Some(proposal.tree), proposal.description, note, started, &dir)?));
        }
        let findings = crate::judge::rules::findings(self.repo, king_tree, proposal.tree)?;
        if !findings.is_empty() {
            let note = findings.iter().map(finding_line).collect::<Vec<_>>().join("; ");
            return Ok(Some(log.end(Status::Refused, Some(proposal.tree), proposal.description, note, started, &dir)?));
        }
        let (status, note) = self.score(&mut log, number, proposal.tree, state)?;
        Ok(Some(log.end(status, Some(proposal.tree), proposal.description, note, started, &dir)?))
    }

    /// The screening run, and the confirming one when the first earns it.
    fn score(&mut self, log: &mut TrialLog, number: u32, tree: git2::Oid, state: &State) -> Result<(Status, String)> {
        let (best, sigma) = (mean(&state.best.runs), state.sigma());
        for (i, seed) in trial_seeds(number).into_iter().enumerate() {
            match self.bench.score(tree, seed)? {
                Ok(bpb) => log.run(seed, bpb),
                Err(why) => return Ok((Status::Crash, why)),
            }
            if i == 0 && keep::screen(&self.rule, best, sigma, log.runs[0]) == keep::Screen::Discard {
                let need = keep::margin(&self.rule, sigma, 1);
                return Ok((Status::Discard, format!("not better than the best by {need:.5}")));
            }
        }
        if keep::confirmed(&self.rule, best, sigma, &log.runs) {
            Ok((Status::Keep, "better by the margin on two seeds".into()))
        } else {
            Ok((Status::Discard, "the second seed did not confirm the first".into()))
        }
    }

    fn write_change(&self, dir: &std::path::Path, king: git2::Oid, best: git2::Oid, p: &Proposal) -> Result<()> {
        std::fs::write(dir.join("change.diff"), self.repo.patch_text(best, p.tree)?)?;
        std::fs::write(dir.join("patch.diff"), self.repo.patch_text(king, p.tree)?)?;
        std::fs::write(dir.join("rationale.md"), &p.rationale)?;
        Ok(())
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

/// The best's change carried onto a new king: None when it no longer applies,
/// or when the new king already holds it (the best was crowned).
fn rebase(repo: &RecipeRepo, old_king: git2::Oid, best: git2::Oid, new_king: git2::Oid) -> Result<Option<git2::Oid>> {
    let change = repo.tree_diff(old_king, best)?;
    Ok(repo.apply_patch(new_king, &change).ok().filter(|t| *t != new_king))
}

/// The seed offsets of trial n's screening and confirming runs: never the king's
/// noise seeds, never another trial's.
fn trial_seeds(number: u32) -> [u64; 2] {
    let base = 1000 + 2 * number as u64;
    [base, base + 1]
}

fn finding_line(f: &crate::judge::Finding) -> String {
    let at = match (&f.path, f.line) {
        (Some(p), Some(l)) => format!("{p}:{l}: "),
        (Some(p), None) => format!("{p}: "),
        _ => String::new(),
    };
    format!("{at}{} ({})", f.message, f.code)
}

/// What a trial did, as it happens: written to its folder's log.txt at the end.
struct TrialLog {
    number: u32,
    best: f64,
    lines: Vec<String>,
    runs: Vec<f64>,
    digest: Option<String>,
}

impl TrialLog {
    fn new(number: u32, best: f64) -> Self {
        TrialLog { number, best, lines: vec![format!("trial {number}: best {best:.5}")], runs: vec![], digest: None }
    }
    fn dropped(&mut self, dropped: &[String]) {
        self.lines.extend(dropped.iter().map(|d| format!("dropped {d}")));
    }
    fn run(&mut self, seed: u64, bpb: f64) {
        self.lines.push(format!("seed {seed}: public val bpb {bpb:.5}"));
        self.runs.push(bpb);
    }
    fn end(
        mut self,
        status: Status,
        tree: Option<git2::Oid>,
        description: String,
        note: String,
        started: Instant,
        dir: &std::path::Path,
    ) -> Result<Trial> {
        self.lines.push(format!("{}: {note}", status.as_str()));
        std::fs::write(dir.join("log.txt"), self.lines.join("\n") + "\n")?;
        Ok(Trial {
            number: self.number,
            tree: tree.map(|t| t.to_string()),
            digest: self.digest,
            runs: self.runs,
            best: self.best,
            status,
            seconds: started.elapsed().as_secs_f64(),
            description,
            note,
        })
    }
}

fn progress_bar(trials: Option<u32>) -> indicatif::ProgressBar {
    let bar = match trials {
        Some(n) => indicatif::ProgressBar::new(n as u64),
        None => indicatif::ProgressBar::no_length(),
    };
    let style = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos}/{len} {wide_msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// The table a researcher reads first: every trial, then the best.
pub fn print_summary(state: &State) {
    println!("{:>5}  {:<9}  {:>8}  {:>9}  {:>6}  description", "trial", "status", "bpb", "Δ best", "s");
    for t in &state.trials {
        let num = |x: Option<f64>, w: usize| x.map_or(format!("{:>w$}", "-"), |v| format!("{v:>w$.5}"));
        println!(
            "{:>5}  {:<9}  {}  {}  {:>6.0}  {}",
            t.number,
            t.status.as_str(),
            num(t.bpb(), 8),
            num(t.delta(), 9),
            t.seconds,
            t.description
        );
    }
    let kept = state.trials.iter().filter(|t| t.status == Status::Keep).count();
    println!(
        "king {} {:.5}; best {} {:.5} ({} kept of {} trials; σ {:.5})",
        state.king,
        mean(&state.king_runs),
        state.best.description,
        mean(&state.best.runs),
        kept,
        state.trials.len(),
        state.sigma()
    );
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
