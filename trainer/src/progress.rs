//! Progress: a bar on a terminal, a plain line every tenth of the run otherwise
//! (CI logs and pipes stay readable).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    next_line: u64,
}

impl Progress {
    pub fn new(total_tokens: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total_tokens);
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} tokens {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar
        });
        let next_line = if quiet { u64::MAX } else { 0 };
        Progress { bar, total: total_tokens, next_line }
    }

    pub fn update(&mut self, step: u64, tokens: u64, loss: f64, tokens_per_s: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(tokens);
            bar.set_message(format!("step {step} loss {loss:.4} {tokens_per_s:.0} tok/s"));
        } else if tokens >= self.next_line {
            eprintln!("step {step:>6}  tokens {tokens:>12}/{}  loss {loss:.4}  {tokens_per_s:.0} tok/s", self.total);
            self.next_line = tokens + self.total.div_ceil(10);
        }
    }

    pub fn note(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None if self.next_line != u64::MAX => eprintln!("{message}"),
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
