//! `cargo xtask …`: the project's own set-up and entry points.
//!
//! - `cargo xtask demo`  — set up, then run the main job on the embedded default.
//! - `cargo xtask test`  — set up, then run every test.
//! - `cargo xtask setup` — only the set-up (idempotent; each step runs only when missing).
//! - `cargo xtask bench-trainer` — karpa-train against PyTorch eager, same model and tokens.
//! - `cargo xtask judge-sim` — the decision rule's false-crown rate and power on real runs.
//! - `cargo xtask bench-webhooks` — webhook deliveries/s and latency against a real PostgreSQL.
//! - `cargo xtask bench-corpus` — corpus search latency over 1,000,000 seeded submissions.
//! - `cargo xtask mine-demo` — a short mining session on tiny with the built-in search.
//! - `cargo xtask gpu-pack` — karpa-train and prepared data for the GPU check on a CUDA host.

mod bench;
mod demo;
mod gpu_pack;
mod judge_sim;
mod mine_demo;
mod postgres;
mod recipe_repo;
mod setup;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: torch in .venv, PostgreSQL, bubblewrap, Chromium, the demo corpus.
    Setup,
    /// Set up, prepare the demo corpus and train the canonical recipe on `tiny`.
    Demo,
    /// Set up and run the whole test suite.
    Test {
        /// Extra arguments for cargo nextest (e.g. a test name filter).
        args: Vec<String>,
    },
    /// Tokens/s of karpa-train against an equivalent PyTorch-eager script.
    BenchTrainer {
        /// Optimizer steps to time (after warm-up).
        #[arg(long, default_value_t = 60)]
        steps: u32,
    },
    /// Webhook deliveries/s and p50/p99 latency over loopback into a throwaway PostgreSQL.
    BenchWebhooks {
        #[arg(long, default_value_t = 20_000)]
        deliveries: usize,
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Corpus search p50/p99 over a seeded corpus (bulk COPY) in a throwaway PostgreSQL.
    BenchCorpus {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 10)]
        rounds: u32,
    },
    /// Fill .gpu/ with karpa-train and prepared data for the GPU check (bench/gpu_check.sh).
    GpuPack,
    /// A short mining session on tiny with the built-in search (a dry run); prints its results table.
    MineDemo {
        #[arg(long, default_value_t = 8)]
        trials: u32,
    },
    /// False-crown rate and power of the decision rule on real sandboxed runs (slow; not in CI).
    JudgeSim {
        #[arg(long, default_value = "tiny")]
        config: String,
        /// The change under test, `key=value` in the config's table of recipe.toml
        /// (repeat for several). The default is a real improvement on tiny of about
        /// 4.5σ: twice the optimizer steps for the same tokens.
        #[arg(long = "change", default_value = "batch_rows=8")]
        changes: Vec<String>,
        #[arg(long, default_value_t = 10)]
        seeds: u32,
        #[arg(long, default_value_t = 20)]
        nulls: u32,
        #[arg(long, default_value_t = 6)]
        improved_runs: u32,
    },
}

fn main() -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match Cli::parse().command {
        Cmd::Setup => setup::ensure_all(&root).map(|_| ()),
        Cmd::Demo => demo::run(&root),
        Cmd::Test { args } => test(&root, &args),
        Cmd::BenchTrainer { steps } => bench::run(&root, steps),
        Cmd::GpuPack => gpu_pack::run(&root),
        Cmd::BenchWebhooks { deliveries, seconds, concurrency } => bench_against_postgres(
            &root,
            "bench-webhooks",
            &[
                ("--deliveries", deliveries.to_string()),
                ("--seconds", seconds.to_string()),
                ("--concurrency", concurrency.to_string()),
            ],
        ),
        Cmd::BenchCorpus { rows, rounds } => bench_against_postgres(
            &root,
            "bench-corpus",
            &[("--rows", rows.to_string()), ("--rounds", rounds.to_string())],
        ),
        Cmd::MineDemo { trials } => mine_demo::run(&root, trials),
        Cmd::JudgeSim { config, changes, seeds, nulls, improved_runs } => {
            judge_sim::run(&root, &judge_sim::Sim { config, changes, seeds, nulls, improved_runs })
        }
    }
}

/// `karpa <bench> --database-url <a throwaway cluster> <args>`, built as the tests build it.
fn bench_against_postgres(root: &Path, bench: &str, args: &[(&str, String)]) -> Result<()> {
    let env = setup::ensure_all(root)?;
    cargo(&["build", "--bin", "karpa"], &env)?;
    let pg = postgres::Cluster::start()?;
    let mut cmd = Command::new(root.join("target/debug/karpa"));
    cmd.args([bench, "--database-url", &pg.url()]);
    for (flag, value) in args {
        cmd.args([flag, value.as_str()]);
    }
    run(&mut cmd)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn test(root: &Path, args: &[String]) -> Result<()> {
    let env = setup::ensure_all(root)?;
    cargo(&["build", "--workspace", "--bins"], &env)?;
    // One throwaway cluster for the run; every test makes its own database in it.
    let pg = postgres::Cluster::start()?;
    let mut nextest = vec!["nextest", "run", "--workspace", "--no-fail-fast"];
    nextest.extend(args.iter().map(String::as_str));
    run(Command::new(env!("CARGO")).args(&nextest).envs(env.vars()).env("KARPA_TEST_DATABASE_URL", pg.url()))
}

/// Runs cargo with the set-up's environment; fails if cargo fails.
fn cargo(args: &[&str], env: &setup::Env) -> Result<()> {
    run(Command::new(env!("CARGO")).args(args).envs(env.vars()))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}
