//! Offline consistency check of a training run: the first, cheapest layer of what
//! the judge will ask of a bundle.

use anyhow::{Context, Result};
use proof::log::{parse_log, steps, LogLine};
use proof::state::FinalState;
use std::path::Path;

#[derive(Debug, PartialEq)]
pub struct Finding {
    pub code: &'static str,
    pub message: String,
}

fn finding(code: &'static str, message: impl Into<String>) -> Finding {
    Finding { code, message: message.into() }
}

pub fn check_run(dir: &Path) -> Result<Vec<Finding>> {
    let log_path = dir.join("log.jsonl");
    let text = std::fs::read_to_string(&log_path).with_context(|| format!("cannot read {}", log_path.display()))?;
    let state_path = dir.join("final_state.json");
    let state: FinalState = serde_json::from_slice(
        &std::fs::read(&state_path).with_context(|| format!("cannot read {}", state_path.display()))?,
    )
    .with_context(|| format!("{} is not a final state", state_path.display()))?;
    let mut out = Vec::new();
    let lines = match parse_log(&text) {
        Ok(lines) => lines,
        Err(e) => return Ok(vec![finding("log.schema", e.to_string())]),
    };
    if proof::sha256_bytes(text.as_bytes()) != state.log_sha256 {
        out.push(finding("log.digest", "log.jsonl does not match final_state.log_sha256"));
    }
    let mut expected = 1;
    let mut last_tokens = 0;
    for s in steps(&lines) {
        if s.step != expected {
            out.push(finding("log.steps", format!("step {} follows step {}", s.step, expected - 1)));
        }
        if !s.loss.is_finite() {
            out.push(finding("log.nan", format!("step {}: loss {}", s.step, s.loss)));
        }
        if s.tokens_seen <= last_tokens {
            out.push(finding("log.tokens", format!("step {}: tokens_seen does not grow", s.step)));
        }
        expected = s.step + 1;
        last_tokens = s.tokens_seen;
    }
    if last_tokens != state.tokens_seen {
        out.push(finding(
            "log.budget",
            format!("log ends at {last_tokens} tokens, final state says {}", state.tokens_seen),
        ));
    }
    for line in &lines {
        if let LogLine::Checkpoint(c) = line {
            if c.path.starts_with('/') || c.path.contains("..") {
                out.push(finding("checkpoint.path", format!("{:?} leaves the run folder", c.path)));
                continue;
            }
            match proof::sha256_file(&dir.join(&c.path)) {
                Ok(d) if d == c.sha256 => {}
                Ok(_) => out.push(finding("checkpoint.digest", format!("{} does not match the log", c.path))),
                Err(e) => out.push(finding("checkpoint.missing", format!("{}: {e}", c.path))),
            }
        }
    }
    Ok(out)
}

pub fn print(findings: &[Finding]) {
    if findings.is_empty() {
        println!("ok: the run is consistent");
    }
    for f in findings {
        println!("{:<18} {}", f.code, f.message);
    }
}
