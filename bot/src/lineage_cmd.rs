//! `karpa pr …` (the local forge's pull requests) and `karpa lineage verify`.

use crate::forge::local::LocalForge;
use crate::lineage::verify::{verify_from, Report};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum PrCommand {
    /// Open a pull request of a revision with its bundle; prints its number.
    Open {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The PR's head: a branch, ref or commit.
        #[arg(long)]
        head: String,
        /// The bundle folder or packed file `karpa prove` made for it.
        #[arg(long)]
        bundle: PathBuf,
        /// The branch kings live on.
        #[arg(long, default_value = "main")]
        base: String,
    },
    /// List the pull requests and their latest verdicts.
    List {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
}

#[derive(clap::Subcommand)]
pub enum LineageCommand {
    /// Re-check offline every release's crown note, bundle digest, attestation and
    /// the chain of improvements. Exit 1 when any link does not hold.
    Verify {
        /// A clone of the recipe repository with refs/notes/karpa fetched.
        clone: PathBuf,
        /// The genesis commit you trust (full id or ≥ 12 hex digits): the root of
        /// the trusted set. Without it, the clone's own genesis is taken on trust.
        #[arg(long)]
        genesis: Option<String>,
        /// Fail (exit 1) when a release is trusted to a public dev key such as
        /// `//Alice`, whose signatures anyone can make; without it, a warning.
        #[arg(long)]
        deny_dev_keys: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print this validator's `[[validator]]` entry for validators.toml: its
    /// hotkey's SS58 and its tag key's public half.
    Keys {
        #[command(flatten)]
        keys: crate::lineage::keys::ValidatorKeyArgs,
        /// The name the entry gives the validator.
        #[arg(long, default_value = "validator")]
        name: String,
    },
}

pub fn pr(command: PrCommand) -> Result<bool> {
    match command {
        PrCommand::Open { repo, head, bundle, base } => {
            let pull = LocalForge::open(&repo)?.open_pull(&head, &bundle, &base)?;
            println!("{}", pull.number);
        }
        PrCommand::List { repo } => {
            for p in LocalForge::open(&repo)?.pulls()? {
                let class = p.verdict.map(|c| serde_json::to_value(c).unwrap_or_default());
                let class = class.as_ref().and_then(|c| c.as_str()).unwrap_or("not judged");
                let state = serde_json::to_value(p.state)?;
                let release = p.release.as_deref().unwrap_or("");
                println!(
                    "#{:<4} {:<7} {class:<19} {release:<16} {}",
                    p.number,
                    state.as_str().unwrap_or(""),
                    p.bundle.display()
                );
            }
        }
    }
    Ok(true)
}

pub fn lineage(command: LineageCommand) -> Result<bool> {
    let (clone, genesis, deny_dev_keys, json) = match command {
        LineageCommand::Verify { clone, genesis, deny_dev_keys, json } => (clone, genesis, deny_dev_keys, json),
        LineageCommand::Keys { keys, name } => {
            print!("{}", keys.load("karpa lineage keys")?.entry(&name));
            return Ok(true);
        }
    };
    let report = verify_from(&clone, genesis.as_deref())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report, deny_dev_keys);
    }
    Ok(report.holds() && !(deny_dev_keys && report.dev_keyed()))
}

fn print(report: &Report, deny_dev_keys: bool) {
    println!(
        "  {:<16} {:<9} {:>10} {:>10} {:>8}  {:<16}  signed by",
        "release", "commit", "hidden bpb", "king bpb", "gain", "bundle"
    );
    for l in &report.links {
        let mark = if l.problems.is_empty() { "✔" } else { "✘" };
        let commit = &l.commit[..9.min(l.commit.len())];
        let num = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
        let gain = match (l.king_bpb, l.hidden_bpb) {
            (Some(k), Some(c)) => format!("{:+.4}", k - c),
            _ => "-".into(),
        };
        let bundle = match (&l.king, &l.bundle_digest) {
            (None, _) => "genesis".to_string(),
            (Some(_), Some(d)) => d.chars().take(16).collect(),
            (Some(_), None) => "-".into(),
        };
        let mut signers = if l.signers.is_empty() { "-".to_string() } else { l.signers.join(", ") };
        if let Some(t) = &l.tag_signer {
            signers.push_str(&format!("; tag: {t}"));
        }
        if l.trusted_set_changed {
            signers.push_str("; new trusted set");
        }
        println!(
            "{mark} {:<16} {commit:<9} {:>10} {:>10} {gain:>8}  {bundle:<16}  {signers}",
            l.tag,
            num(l.hidden_bpb),
            num(l.king_bpb)
        );
        for p in &l.problems {
            println!("    {:<24} {}", p.code, p.message);
        }
        if !l.dev_keys.is_empty() {
            println!(
                "  ⚠ {:<22} {} is trusted to public dev keys ({}): anyone can sign as them",
                "lineage.dev-key",
                l.tag,
                l.dev_keys.join(", ")
            );
        }
    }
    if report.dev_keyed() {
        let then = if deny_dev_keys { "--deny-dev-keys fails it" } else { "fine for a test, never for a real network" };
        println!("\nwarning: this lineage's signatures are by public dev keys; {then}");
    }
    // Denied, a release trusted to a dev key does not hold either.
    let broken =
        report.links.iter().filter(|l| !l.problems.is_empty() || (deny_dev_keys && !l.dev_keys.is_empty())).count();
    if let Some(g) = report.links.first() {
        println!("\ngenesis {} is commit {} (pin it: --genesis {})", g.tag, g.commit, g.commit);
    }
    match broken {
        0 => println!("\nlineage holds: {} releases, each proven from the one before", report.links.len()),
        n => println!("\nlineage broken: {n} of {} releases do not hold", report.links.len()),
    }
}
