//! Trials, a round at a time: the agent's proposals one after another, the
//! checks that cost no training (duplicate, the judge's rules), then the
//! scoring of every proposal that earned it side by side, one per worker (the
//! screening run and, when it earns one, the confirming run). Everything a
//! trial did goes to its folder's log.txt.

use super::agent::{Agent, Context, Proposal, Proposed};
use super::measure::{on_workers, Bench};
use super::record::{mean, State, Status, Trial};
use super::{keep, program, Miner};
use crate::judge::decision::DecisionRule;
use anyhow::Result;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

/// At most this many proposals per worker in a round, however many of them
/// need no training: a round always ends, and its trials are recorded.
const PROPOSALS_PER_WORKER: usize = 4;

/// A proposal that needs training, waiting for a worker.
struct Pending {
    number: u32,
    started: Instant,
    dir: PathBuf,
    log: TrialLog,
    proposal: Proposal,
}

/// A round's trials to record, in number order (those before a worker's
/// failure), whether the agent had nothing left, and the failure.
pub(super) struct Round {
    pub trials: Vec<Trial>,
    pub exhausted: bool,
    pub failed: Option<anyhow::Error>,
}

/// What a proposal became before any training.
enum Planned {
    /// The agent failed, or the change is a duplicate or refused: no training.
    Done(Trial),
    Score(Pending),
}

impl Miner<'_> {
    /// One round of at most `room` trials, in number order, and whether the
    /// agent had nothing left to try. Proposals come until every worker has a
    /// tree to score; those changes in flight count as tried, so that no two
    /// workers train the same one. A first proposal that needs no training is
    /// a round of its own, recorded before anything else runs.
    pub(super) fn round(&mut self, agent: &mut dyn Agent, state: &State, room: usize) -> Result<Round> {
        let workers = self.benches.len();
        let (mut done, mut pending, mut in_flight, mut so_far) = (Vec::new(), Vec::new(), HashSet::new(), Vec::new());
        let mut exhausted = false;
        while pending.len() < workers && done.len() + pending.len() < room.min(PROPOSALS_PER_WORKER * workers) {
            let number = state.next_number() + (done.len() + pending.len()) as u32;
            match self.plan(agent, state, number, &in_flight, &so_far)? {
                None => {
                    // Out of ideas only while nothing is in flight: a kept change opens new ones.
                    exhausted = done.is_empty() && pending.is_empty();
                    break;
                }
                Some(Planned::Done(trial)) => {
                    in_flight.extend(trial.digest.clone());
                    so_far.push(format!(
                        "trial {}: {} {} ({})",
                        trial.number,
                        trial.status.as_str(),
                        trial.description,
                        trial.note
                    ));
                    done.push(trial);
                    // Recorded at once when nothing is in flight before it.
                    if pending.is_empty() {
                        break;
                    }
                }
                Some(Planned::Score(p)) => {
                    in_flight.extend(p.log.digest.clone());
                    so_far.push(format!("trial {}: being trained: {}", p.number, p.proposal.description));
                    pending.push(p);
                }
            }
        }
        let (rule, best, sigma) = (&self.rule, mean(&state.best.runs), state.sigma());
        let numbers: Vec<u32> = pending.iter().map(|p| p.number).collect();
        let scored = on_workers(&mut self.benches, pending, |bench, p| p.score(bench, rule, best, sigma));
        let mut results: Vec<(u32, Result<Trial>)> = done.into_iter().map(|t| (t.number, Ok(t))).collect();
        results.extend(numbers.into_iter().zip(scored));
        results.sort_by_key(|(n, _)| *n);
        // The trials before a worker's failure are recorded; the failure then stops the run.
        let mut trials = Vec::new();
        let mut failed = None;
        for (_, r) in results {
            match r {
                Ok(t) if failed.is_none() => trials.push(t),
                Ok(_) => {}
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        for t in demote_second_bests(&self.rule, &mut trials, sigma) {
            let log = self.record.trial_dir_path(t.number).join("log.txt");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            std::fs::write(&log, format!("{text}discard: {}\n", t.note))?;
        }
        Ok(Round { trials, exhausted, failed })
    }

    /// Trial `number`'s proposal and the checks that cost no training; None
    /// when the agent has nothing left to try.
    fn plan(
        &mut self,
        agent: &mut dyn Agent,
        state: &State,
        number: u32,
        in_flight: &HashSet<String>,
        this_round: &[String],
    ) -> Result<Option<Planned>> {
        let started = Instant::now();
        let dir = self.record.trial_dir(number)?;
        let (king_tree, best_tree) = (state.king_tree.parse()?, state.best.tree.parse()?);
        let sigma = state.sigma();
        let program = program::write(&program::Facts {
            state,
            gate: keep::gate(&self.rule, sigma),
            margin: keep::margin(&self.rule, sigma, 2),
            network: &self.network,
            number,
            this_round,
        });
        let mut seen = self.seen(state);
        seen.extend(in_flight.iter().cloned());
        let cx = Context {
            repo: self.repo,
            config: &self.args.config,
            king_tree,
            best_tree,
            state,
            number,
            trial_dir: &dir,
            program: &program,
            seen: &seen,
        };
        let mut log = TrialLog::new(number, mean(&state.best.runs));
        let proposal = match agent.propose(&cx)? {
            Proposed::Exhausted => return Ok(None),
            Proposed::Failed { status, description, note, dropped } => {
                log.dropped(&dropped);
                return Ok(Some(Planned::Done(log.end(status, None, description, note, started, &dir)?)));
            }
            Proposed::Change(p) => p,
        };
        log.dropped(&proposal.dropped);
        self.write_change(&dir, king_tree, best_tree, &proposal)?;
        let digest = crate::judge::duplicate::normalized_diff_digest(self.repo, king_tree, proposal.tree)?;
        log.digest = Some(digest.clone());
        let refusal = if seen.contains(&digest) {
            Some((Status::Duplicate, "the same change was already tried here or judged by the network".to_string()))
        } else {
            let findings = crate::judge::rules::findings(self.repo, king_tree, proposal.tree)?;
            (!findings.is_empty())
                .then(|| (Status::Refused, findings.iter().map(finding_line).collect::<Vec<_>>().join("; ")))
        };
        Ok(Some(match refusal {
            Some((status, note)) => {
                Planned::Done(log.end(status, Some(proposal.tree), proposal.description, note, started, &dir)?)
            }
            None => Planned::Score(Pending { number, started, dir, log, proposal }),
        }))
    }

    fn write_change(&self, dir: &std::path::Path, king: git2::Oid, best: git2::Oid, p: &Proposal) -> Result<()> {
        std::fs::write(dir.join("change.diff"), self.repo.patch_text(best, p.tree)?)?;
        std::fs::write(dir.join("patch.diff"), self.repo.patch_text(king, p.tree)?)?;
        std::fs::write(dir.join("rationale.md"), &p.rationale)?;
        Ok(())
    }
}

impl Pending {
    /// The screening run on `bench`, and the confirming one when the first
    /// earns it, against the best's runs (mean `best`, spread `sigma`).
    fn score(mut self, bench: &mut Bench<'_>, rule: &DecisionRule, best: f64, sigma: f64) -> Result<Trial> {
        self.log.lines.push(format!("on {}", bench.label));
        let tree = self.proposal.tree;
        let (status, note) = 'outcome: {
            for (i, seed) in trial_seeds(self.number).into_iter().enumerate() {
                match bench.score(tree, seed)? {
                    Ok(bpb) => self.log.run(seed, bpb),
                    Err(why) => break 'outcome (Status::Crash, why),
                }
                if i == 0 && keep::screen(rule, best, sigma, self.log.runs[0]) == keep::Screen::Discard {
                    let need = keep::gate(rule, sigma);
                    break 'outcome (Status::Discard, format!("not better than the best by {need:.5}"));
                }
            }
            if keep::confirmed(rule, best, sigma, &self.log.runs) {
                (Status::Keep, "better by the margin on two seeds".into())
            } else {
                (Status::Discard, "the second seed did not confirm the first".into())
            }
        };
        let p = self.proposal;
        self.log.end(status, Some(tree), p.description, note, self.started, &self.dir)
    }
}

/// Every trial of a round was measured against the best before the round; a
/// kept one must also beat the one kept before it in the round, or it is
/// discarded. The trials demoted.
fn demote_second_bests<'t>(rule: &DecisionRule, trials: &'t mut [Trial], sigma: f64) -> Vec<&'t Trial> {
    let mut kept: Option<(u32, Vec<f64>)> = None;
    let mut demoted = Vec::new();
    for t in trials.iter_mut().filter(|t| t.status == Status::Keep) {
        match &kept {
            Some((number, runs)) if !keep::confirmed(rule, mean(runs), sigma, &t.runs) => {
                t.status = Status::Discard;
                t.note = format!("trial {number}, kept in the same round, is as good");
                demoted.push(&*t);
            }
            _ => kept = Some((t.number, t.runs.clone())),
        }
    }
    demoted
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

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(number: u32, status: Status, runs: &[f64]) -> Trial {
        Trial {
            number,
            tree: None,
            digest: None,
            runs: runs.to_vec(),
            best: 4.0,
            status,
            seconds: 1.0,
            description: format!("trial {number}"),
            note: String::new(),
        }
    }

    #[test]
    fn a_round_keeps_a_second_best_only_if_it_beats_the_first() {
        let rule = DecisionRule { min_delta: 0.0, floor_seeds: 3, ..Default::default() };
        let sigma = 0.01;
        // Trials 1, 2 and 4 each beat the old best (4.0); 2 is no better than 1, 4 beats 1 by far.
        let mut round = vec![
            trial(1, Status::Keep, &[3.8, 3.8]),
            trial(2, Status::Keep, &[3.79, 3.8]),
            trial(3, Status::Discard, &[3.95]),
            trial(4, Status::Keep, &[3.5, 3.5]),
        ];
        let demoted: Vec<u32> = demote_second_bests(&rule, &mut round, sigma).iter().map(|t| t.number).collect();
        assert_eq!(demoted, [2]);
        let statuses: Vec<Status> = round.iter().map(|t| t.status).collect();
        assert_eq!(statuses, [Status::Keep, Status::Discard, Status::Discard, Status::Keep]);
        assert_eq!(round[1].note, "trial 1, kept in the same round, is as good");
    }
}
