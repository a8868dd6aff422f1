//! karpa-train: the fixed Karpa training harness.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tch::Device;
use trainer::config::{self, ProtocolConfig};
use trainer::data::dataset::{Dataset, Windows};
use trainer::{calibrate, checkpoint, data, eval, probe, replay, train};

#[derive(Parser)]
#[command(
    name = "karpa-train",
    version,
    about = "The Karpa training harness: prepare, train, eval, probe, replay, calibrate."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum SplitArg {
    Val,
    Hidden,
}

#[derive(clap::Args)]
struct Common {
    /// Protocol config (micro, tiny, proxy, karpa-1).
    #[arg(long)]
    config: String,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

#[derive(clap::Args)]
struct DataArgs {
    /// The `public/` folder written by `prepare`.
    #[arg(long)]
    data: PathBuf,
    /// Accept data the config does not pin (local experiments only).
    #[arg(long)]
    allow_unpinned_data: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Corpus (text folders, JSONL, Parquet) → splits, tokenizer, shards, manifests.
    Prepare {
        #[arg(long)]
        config: String,
        /// Corpus folders or files; repeat for several.
        #[arg(long, required = true)]
        input: Vec<PathBuf>,
        /// File holding the secret salt that picks the hidden split.
        #[arg(long)]
        salt_file: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Train the recipe on a config's budget; writes log, checkpoints, final state.
    Train {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        data: DataArgs,
        /// Run folder to create.
        #[arg(long)]
        out: PathBuf,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
        /// Train with the config's seed plus this offset (noise-floor runs only:
        /// the log records the seed, and the judge accepts only the config's).
        #[arg(long, default_value_t = 0)]
        seed_offset: u64,
    },
    /// Bits per byte of a checkpoint on the public val or the hidden split (JSON).
    Eval {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long, value_enum, default_value = "val")]
        split: SplitArg,
        /// The validator's `hidden/` folder (for --split hidden).
        #[arg(long)]
        hidden: Option<PathBuf>,
    },
    /// Causality, shape, finiteness and determinism checks (JSON; exit 1 on failure).
    Probe {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        data: DataArgs,
        /// Probe these weights instead of the seeded initialisation.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Re-run steps from a checkpoint and compare losses with the log (JSON; exit 1 past tolerance).
    Replay {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        data: DataArgs,
        /// The run folder (log.jsonl and checkpoints/).
        #[arg(long)]
        run: PathBuf,
        /// Step of the checkpoint to start from (0: the seeded initialisation).
        #[arg(long)]
        from_step: u64,
        #[arg(long, default_value_t = proof::judge_budget::REPLAY_STEPS)]
        steps: u64,
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
    },
    /// Micro-benchmark this machine into calibration.json.
    Calibrate {
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceArg,
        #[arg(long)]
        out: PathBuf,
    },
    /// Training throughput of the recipe, without log or checkpoints (JSON).
    Bench {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, default_value_t = 50)]
        steps: u64,
    },
    /// List the protocol configs, with what judging a submission costs against its training.
    Configs,
}

fn device(arg: DeviceArg) -> Result<Device> {
    Ok(match arg {
        DeviceArg::Auto => Device::cuda_if_available(),
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda if tch::Cuda::is_available() => Device::Cuda(0),
        DeviceArg::Cuda => bail!("--device cuda: no CUDA device is available"),
    })
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn open(common: &Common, args: &DataArgs) -> Result<(ProtocolConfig, Dataset, Device)> {
    let cfg = config::load(&common.config)?;
    let data = Dataset::open(&args.data, &cfg, args.allow_unpinned_data)?;
    Ok((cfg, data, device(common.device)?))
}

fn run(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Prepare { config, input, salt_file, out } => {
            let cfg = config::load(&config)?;
            let salt =
                std::fs::read(&salt_file).with_context(|| format!("cannot read salt file {}", salt_file.display()))?;
            let p = data::prepare::prepare(&cfg, &input, salt.trim_ascii(), &out)?;
            let pinned = cfg.data.manifest_sha256 == p.manifest_sha256.as_str();
            print_json(&serde_json::json!({
                "config": cfg.name,
                "manifest_sha256": p.manifest_sha256,
                "tokenizer_sha256": p.tokenizer_sha256,
                "matches_config_pin": pinned,
                "train": {"documents": p.manifest.train.documents, "tokens": p.manifest.train.tokens},
                "val": {"documents": p.manifest.val.documents, "tokens": p.manifest.val.tokens},
                "hidden": {"documents": p.hidden.hidden.documents, "tokens": p.hidden.hidden.tokens},
            }))?;
            Ok(true)
        }
        Command::Train { common, data, out, quiet, seed_offset } => {
            let (mut cfg, data, device) = open(&common, &data)?;
            cfg.seed = cfg.seed.wrapping_add(seed_offset);
            let state = train::train(&cfg, &data, &train::TrainOptions { out, device, quiet })?;
            print_json(&state)?;
            Ok(true)
        }
        Command::Eval { common, data, checkpoint: path, split, hidden } => {
            let (cfg, data, device) = open(&common, &data)?;
            let tokens = match (split, hidden) {
                (SplitArg::Val, _) => data.val()?,
                (SplitArg::Hidden, Some(dir)) => data.hidden(&dir)?,
                (SplitArg::Hidden, None) => bail!("--split hidden needs --hidden <validator's hidden folder>"),
            };
            let mut recipe = train::build_recipe(&cfg, device)?;
            let (meta, state) = checkpoint::load(&path, &cfg.name, device)?;
            recipe.load_state(&state).with_context(|| format!("{}", path.display()))?;
            let windows = Windows::new(&tokens, cfg.seq_len)?;
            let token_bytes = data.token_bytes()?;
            let started = Instant::now();
            let r = eval::evaluate(recipe.as_ref(), &windows, cfg.eval_tokens, cfg.seq_len, &token_bytes, device)?;
            print_json(&serde_json::json!({
                "config": cfg.name, "checkpoint_step": meta.step,
                "split": if split == SplitArg::Val { "val" } else { "hidden" },
                "val_bpb": r.bpb, "loss": r.loss, "tokens": r.tokens, "bytes": r.bytes,
                "compute_s": started.elapsed().as_secs_f64(),
            }))?;
            Ok(true)
        }
        Command::Probe { common, data, checkpoint: path } => {
            let (cfg, data, device) = open(&common, &data)?;
            let mut recipe = train::build_recipe(&cfg, device)?;
            if let Some(path) = path {
                let (_, state) = checkpoint::load(&path, &cfg.name, device)?;
                recipe.load_state(&state).with_context(|| format!("{}", path.display()))?;
            }
            let val = data.val()?;
            let windows = Windows::new(&val, cfg.seq_len)?;
            if windows.len() < 4 {
                bail!("the val split is too short to probe ({} windows)", windows.len());
            }
            let (x, _) = windows.batch(&[0, 1], device);
            let (other, _) = windows.batch(&[2, 3], device);
            let started = Instant::now();
            let report = probe::probe(recipe.as_ref(), &x, &other, cfg.data.vocab_size as i64, device);
            let compute_s = started.elapsed().as_secs_f64();
            print_json(&serde_json::json!({"passed": report.passed, "checks": report.checks, "compute_s": compute_s}))?;
            Ok(report.passed)
        }
        Command::Replay { common, data, run, from_step, steps, tolerance } => {
            let (cfg, data, device) = open(&common, &data)?;
            let report = replay::replay(&cfg, &data, &run, from_step, steps, device)?;
            let ok = report.max_abs_diff <= tolerance;
            let compute_s = report.compute_s;
            print_json(
                &serde_json::json!({"report": report, "tolerance": tolerance, "passed": ok, "compute_s": compute_s}),
            )?;
            Ok(ok)
        }
        Command::Calibrate { device: d, out } => {
            let c = calibrate::calibrate(device(d)?);
            proof::fsio::write_json_atomic(&out, &c).with_context(|| format!("cannot write {}", out.display()))?;
            print_json(&c)?;
            Ok(true)
        }
        Command::Bench { common, data, steps } => {
            let (cfg, data, device) = open(&common, &data)?;
            print_json(&trainer::bench::bench(&cfg, &data, steps, device)?)?;
            Ok(true)
        }
        Command::Configs => {
            println!("{:<8} {:>6}  about", "config", "judge");
            for name in config::names() {
                let c = config::load(name)?;
                let hp = recipe::HParams::from_toml(config::RECIPE_TOML, name)?;
                let judge = c.judge_compute(hp.batch_rows as u64).fraction();
                println!("{:<8} {:>5.2}%  {}", c.name, judge * 100.0, c.about);
            }
            println!("judge: probe, hidden eval and replay as a share of training FLOPs, at recipe.toml's batch");
            Ok(true)
        }
    }
}

/// glibc hands freed blocks of 128 KiB and more back to the kernel, so every
/// training step maps its activations afresh and page-faults through them again.
/// Keeping freed memory in the heap (up to libtorch's largest CPU tensors) makes a
/// CPU step about 7 % faster; the numbers it computes are the same. CUDA memory
/// has its own caching allocator and is not affected.
fn keep_freed_memory_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() -> ExitCode {
    keep_freed_memory_in_the_heap();
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("karpa-train: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
