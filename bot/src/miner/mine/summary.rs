//! What a terminal shows: a progress bar while it runs, the table at the end.

use super::record::{mean, State, Status};

pub(super) fn progress_bar(trials: Option<u32>) -> indicatif::ProgressBar {
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
