//! `program.md`: what an external agent is told each trial. The task, the
//! rules it is held to (the judge's), the king and the noise it must beat, this
//! run's results so far with the reason of every refusal and crash, and what
//! the network has already judged on this king.

use super::network::Judged;
use super::record::{mean, State, Status};
use std::fmt::Write;

pub struct Facts<'a> {
    pub state: &'a State,
    /// What a first run must beat the best by (bpb), and the mean of two runs.
    pub gate: f64,
    pub margin: f64,
    pub network: &'a [Judged],
    /// The trial this prompt is for.
    pub number: u32,
    /// Trials proposed earlier in this round (several workers), not yet in the table.
    pub this_round: &'a [String],
}

pub fn write(f: &Facts<'_>) -> String {
    let s = f.state;
    let mut out = String::new();
    let _ = writeln!(out, "# Karpa mining: trial {}\n", f.number);
    let _ = writeln!(
        out,
        "You are improving a small language model's training recipe. The working directory is a git \
         checkout of the best recipe so far. Make one focused change that should lower the validation \
         bits per byte (bpb) of the model the official harness trains under the fixed budget of config \
         `{}`, then exit. Lower is better.\n",
        s.config
    );
    out.push_str(
        "## The rules (the validator's; the miner checks them before any training)\n\n\
         - Only `recipe/src/**.rs`, `recipe/recipe.toml` and `recipe/RATIONALE.md` may change. \
         Anything else you change is dropped.\n\
         - The recipe code is scanned: no `unsafe`, no FFI or linking attributes, no `include!`-style \
         macros, no file, network, process or environment access, no build scripts. A refused change \
         costs no training; the finding is shown to you next trial.\n\
         - recipe.toml keeps one table per protocol config, with scalar values.\n\
         - Every scored token's probability may depend only on the tokens before it; the validator \
         re-scores secret positions with the future replaced and refuses any recipe that looks ahead.\n\
         - Write `recipe/RATIONALE.md`: its first line says what you changed (it names the trial); then \
         at least two paragraphs on why it should help.\n\n",
    );
    let _ = writeln!(out, "## Where things stand\n");
    let _ =
        writeln!(out, "- King: {} (public val bpb {:.5} over {} seeds)", s.king, mean(&s.king_runs), s.king_runs.len());
    let _ = writeln!(out, "- Best so far: {} (bpb {:.5})", s.best.description, mean(&s.best.runs));
    let _ = writeln!(out, "- Noise: σ = {:.5} bpb between seeds of one recipe", s.sigma());
    let _ = writeln!(
        out,
        "- To be kept, a change must beat the best by {:.5} bpb on its first seed; then a second seed must beat \
         the best too, and the two by {:.5} on average.\n",
        f.gate, f.margin
    );
    if !s.trials.is_empty() {
        let _ = writeln!(out, "## This run's trials (most recent last)\n");
        let _ = writeln!(
            out,
            "| trial | status | bpb | Δ best | description | note |\n| --- | --- | --- | --- | --- | --- |"
        );
        for t in s.trials.iter().rev().take(30).rev() {
            let num = |x: Option<f64>| x.map_or("".into(), |v| format!("{v:.5}"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                t.number,
                t.status.as_str(),
                num(t.bpb()),
                num(t.delta()),
                cell(&t.description),
                cell(&t.note)
            );
        }
        out.push('\n');
        if let Some(last) = s.trials.last().filter(|t| matches!(t.status, Status::Refused | Status::Crash)) {
            let _ = writeln!(out, "The last trial was {}: {}\n", last.status.as_str(), last.note);
        }
    }
    if !f.this_round.is_empty() {
        let _ = writeln!(out, "## Proposed since, trained beside this trial (do not repeat these)\n");
        for line in f.this_round {
            let _ = writeln!(out, "- {}", cell(line));
        }
        out.push('\n');
    }
    if !f.network.is_empty() {
        let _ = writeln!(out, "## Already judged by the network on this king (do not repeat these)\n");
        for j in f.network.iter().take(40) {
            let gain = j.gain.map_or(String::new(), |g| format!(", gain {g:+.5}"));
            let _ = writeln!(out, "- {} ({}{gain}): {}", j.id, j.class, cell(&j.title));
        }
        out.push('\n');
    }
    out
}

/// One table cell: no pipes or line breaks, at most 160 characters.
fn cell(text: &str) -> String {
    text.replace(['|', '\n', '\r'], " ").chars().take(160).collect()
}
