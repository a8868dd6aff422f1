//! One trial, start to finish: the agent's proposal, the checks that cost no
//! training (duplicate, the judge's rules), then the screening run and, when it
//! earns one, the confirming run; everything it did goes to its folder's log.txt.

use super::agent::{Agent, Context, Proposal, Proposed};
use super::record::{mean, State, Status, Trial};
use super::{keep, program, Miner};
use anyhow::Result;
use std::time::Instant;

impl Miner<'_> {
    /// One trial, start to finish; None when the agent has nothing left to try.
    pub(super) fn trial(&mut self, agent: &mut dyn Agent, state: &State) -> Result<Option<Trial>> {
        let started = Instant::now();
        let number = state.next_number();
        let dir = self.record.trial_dir(number)?;
        let (king_tree, best_tree) = (state.king_tree.parse()?, state.best.tree.parse()?);
        let sigma = state.sigma();
        let program = program::write(&program::Facts {
            state,
            gate: keep::gate(&self.rule, sigma),
            margin: keep::margin(&self.rule, sigma, 2),
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
        let (status, note) = self.judge_change(&mut log, number, king_tree, proposal.tree, &seen, state)?;
        Ok(Some(log.end(status, Some(proposal.tree), proposal.description, note, started, &dir)?))
    }

    /// What becomes of a proposed tree: skipped as a duplicate, refused by the
    /// judge's rules (neither costs a training), or scored.
    fn judge_change(
        &mut self,
        log: &mut TrialLog,
        number: u32,
        king_tree: git2::Oid,
        tree: git2::Oid,
        seen: &std::collections::HashSet<String>,
        state: &State,
    ) -> Result<(Status, String)> {
        let digest = crate::judge::duplicate::normalized_diff_digest(self.repo, king_tree, tree)?;
        log.digest = Some(digest.clone());
        if seen.contains(&digest) {
            return Ok((Status::Duplicate, "the same change was already tried here or judged by the network".into()));
        }
        let findings = crate::judge::rules::findings(self.repo, king_tree, tree)?;
        if !findings.is_empty() {
            return Ok((Status::Refused, findings.iter().map(finding_line).collect::<Vec<_>>().join("; ")));
        }
        self.score(log, number, tree, state)
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
                let need = keep::gate(&self.rule, sigma);
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
