//! `karpa judge`: run the pipeline on a local repository and print the verdict.

use crate::judge::nonces::NonceLedger;
use crate::judge::pipeline::{judge, JudgeInput};
use crate::judge::verdict::{Verdict, VerdictClass};
use anyhow::Result;
use std::path::PathBuf;

/// Ok(false) when the verdict is `rejected` or `stale`.
pub fn run(repo: PathBuf, pr_head: String, bundle: PathBuf, nonces: PathBuf, json: bool) -> Result<bool> {
    let verdict = judge(&JudgeInput { repo, pr_head, bundle, nonces: NonceLedger::open(nonces) })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print_table(&verdict);
    }
    Ok(!matches!(verdict.class, VerdictClass::Rejected | VerdictClass::Stale))
}

fn print_table(v: &Verdict) {
    let class = serde_json::to_value(v.class).ok().and_then(|c| c.as_str().map(str::to_string)).unwrap_or_default();
    println!("verdict: {class} — {}", v.summary);
    if let (Some(d), Some(k)) = (&v.bundle_digest, &v.king) {
        println!("bundle {d}  king {k}");
    }
    println!();
    for s in &v.stages {
        println!("  {} {:<18} {:>8.3} s", if s.passed { "✔" } else { "✘" }, s.stage, s.seconds);
    }
    if !v.findings.is_empty() {
        println!();
        for f in &v.findings {
            let at = match (&f.path, f.line) {
                (Some(p), Some(l)) => format!("{p}:{l}"),
                (Some(p), None) => p.clone(),
                _ => "-".into(),
            };
            println!("  {:<22} {:<32} {}", f.code, at, f.message);
        }
    }
}
