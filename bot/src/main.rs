//! karpa: the Karpa validator and miner CLI. It never links libtorch: anything
//! that runs a model is a `karpa-train` subprocess built from the recipe under test.
//!
//! The judge, the forges, the corpus and the chain mirror grow here; today it can
//! check a finished training run offline.

mod bundle_cmd;
mod run_check;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "karpa", version, about = "Karpa: judge recipe patches by their proof.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a karpa-train run folder offline: log schema, digests, budget, checkpoints.
    CheckRun {
        /// The run folder (log.jsonl, final_state.json, checkpoints/).
        dir: PathBuf,
    },
    /// Proof bundles.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Offline check of a bundle folder: manifest, file digests, DSSE attestation, hotkey signature.
    /// Prints a table of findings; exit 0 when all hold, 1 otherwise.
    Verify {
        dir: PathBuf,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let result: Result<bool> = match Cli::parse().command {
        Command::CheckRun { dir } => run_check::check_run(&dir).map(|findings| {
            run_check::print(&findings);
            findings.is_empty()
        }),
        Command::Bundle { command: BundleCommand::Verify { dir, json } } => bundle_cmd::verify(&dir, json),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("karpa: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
