//! karpa: the Karpa validator and miner CLI (`prove`, `bundle`, `submit`,
//! `check-run`). The logic lives in the library; this file is the command line.

use anyhow::Result;
use clap::{Parser, Subcommand};
use karpa_bot::miner::{mine, prove, seal, submit};
use karpa_bot::{archive, bundle_cmd, judge_cmd, lineage_cmd, run_check};
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
    /// Train a patch of the recipe with the official harness and seal a signed proof bundle.
    Prove(prove::ProveArgs),
    /// Open the pull request that carries a bundle (its locator goes in the body).
    Submit(submit::SubmitArgs),
    /// Search for a better recipe: an agent proposes, the official harness trains in
    /// the validator's sandbox, honest keeps become a proved pull request.
    Mine(Box<mine::MineArgs>),
    /// Judge a PR of a local recipe repository by its bundle; prints the verdict.
    /// Exit 1 when rejected or stale.
    Judge {
        /// The recipe repository.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The PR: a local pull request's number (`karpa pr open`), or a branch, ref or commit.
        #[arg(long)]
        pr: String,
        /// The bundle folder or packed file (default: the local pull request's).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Release a crowned verdict: merge, CHANGELOG.md, signed tag and crown note
        /// (local pull requests; needs --validator-hotkey and --validator-tag-key).
        #[arg(long)]
        crown: bool,
        #[command(flatten)]
        keys: karpa_bot::lineage::keys::ValidatorKeyArgs,
        /// With --crown: a validators.toml this release puts in force, when it
        /// differs from the king's (the crown note that carries it is signed by
        /// the set it replaces).
        #[arg(long, requires = "crown")]
        trusted_set: Option<PathBuf>,
        /// With --crown: release as recipe-vX.(Y+1).0 instead of a patch bump.
        #[arg(long, requires = "crown")]
        minor: bool,
        /// Folder of the nonces and normalised diffs seen so far (default: <repo>/.karpa/judge).
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Record the judgment in this PostgreSQL corpus (local pull requests).
        #[arg(long, env = "KARPA_DATABASE_URL")]
        database_url: Option<String>,
        #[arg(long)]
        json: bool,
        /// The config's public data folder (enables the hidden evaluation, with --hidden and --secret-file).
        #[arg(long, requires_all = ["hidden", "secret_file"])]
        data: Option<PathBuf>,
        /// The validator's hidden split folder.
        #[arg(long, requires = "data")]
        hidden: Option<PathBuf>,
        /// The validator's secret (picks the replay segment).
        #[arg(long, requires = "data")]
        secret_file: Option<PathBuf>,
        /// The king's noise floor (JSON: king, config, values).
        #[arg(long, requires = "data")]
        noise_floor: Option<PathBuf>,
        /// Decision rule (TOML; defaults: z 2.33, min_delta 0.002, …).
        #[arg(long)]
        rule: Option<PathBuf>,
        /// Shared cargo target folder for PR builds.
        #[arg(long, default_value = "target/recipes")]
        target_dir: PathBuf,
        /// libtorch folder (default: $LIBTORCH, then <repo>/.karpa/libtorch).
        #[arg(long)]
        libtorch: Option<PathBuf>,
        /// Where the sandboxed models run: auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: karpa_bot::sandbox::gpu::DeviceChoice,
    },
    /// Pull requests of a local recipe repository (the local forge).
    Pr {
        #[command(subcommand)]
        command: lineage_cmd::PrCommand,
    },
    /// The recipe repository as the record of every crown.
    Lineage {
        #[command(subcommand)]
        command: lineage_cmd::LineageCommand,
    },
    /// Re-make a release's number from its tag: build, train with the config's seed,
    /// score, and set it beside the crown note's. Exit 1 when outside the noise floor.
    Reproduce(karpa_bot::release::reproduce::ReproduceArgs),
    /// Re-train a release on a reference config (tiny on a CPU, karpa-1 on a GPU)
    /// in the validator's sandbox and export it as a model folder.
    Reference(karpa_bot::release::reference::ReferenceArgs),
    /// A release as a model folder (weights, tokenizer, config.json, model card), and its offline check.
    Model {
        #[command(subcommand)]
        command: karpa_bot::release::model::ModelCommand,
    },
    /// Measure the king's noise floor: n seeds through the judge's sandboxed path.
    NoiseFloor {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The release (default: the highest recipe-vX.Y.Z tag).
        #[arg(long)]
        king: Option<String>,
        #[arg(long)]
        config: String,
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        #[command(flatten)]
        validator: judge_cmd::ValidatorArgs,
        /// Where to write the floor (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Store a measured noise floor (`noise-floor --out`) in the bot's database, as
    /// the runs the runners would have measured.
    ImportFloor {
        /// The floor file (its `.nats.f32` beside it, when there is one).
        file: PathBuf,
        #[arg(long, env = "KARPA_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The recipe repository on GitHub, owner/name.
        #[arg(long)]
        repo_name: String,
        /// The class of device it was measured on (`cpu-f32`, `cuda-bf16/<model>`).
        #[arg(long, default_value = "cpu-f32")]
        device_class: String,
    },
    /// How often the decision rule crowns a null patch, a seed-searched null and a real
    /// improvement: real sandboxed runs, plus the rule under a normal model.
    JudgeSim(judge_cmd::SimArgs),
    /// Run the GitHub App: webhooks into the durable queue, /healthz and /metrics.
    Serve(karpa_bot::serve_cmd::ServeArgs),
    /// Run judge workers only, on another host: they claim jobs from the shared database.
    Runner(karpa_bot::serve_cmd::RunnerArgs),
    /// Load-test the webhook: signed deliveries over loopback into a real database.
    BenchWebhooks(karpa_bot::bench_webhooks::BenchArgs),
    /// Search latency over a seeded corpus (bulk COPY), with a no-index baseline.
    BenchCorpus(karpa_bot::bench_corpus::BenchArgs),
    /// Scores mirrored to the Bittensor chain: the outbox, a dry run, the epoch loop.
    Chain {
        #[command(subcommand)]
        command: karpa_bot::chain_cmd::ChainCommand,
    },
    /// The corpus of every judged submission: search it, export it.
    Corpus {
        #[command(subcommand)]
        command: karpa_bot::corpus_cmd::CorpusCommand,
    },
    /// Proof bundles.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Offline check of a bundle folder or packed file: manifest, file digests, DSSE attestation, hotkey signature.
    /// Prints a table of findings; exit 0 when all hold, 1 otherwise.
    Verify {
        dir: PathBuf,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Encrypt a bundle to the validator's age X25519 recipient (manifest stays plain).
    Seal {
        dir: PathBuf,
        /// The validator's recipient, `age1…`.
        #[arg(long)]
        to: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Decrypt a sealed bundle with the validator's identity file into a bundle folder.
    Open {
        sealed: PathBuf,
        /// age identity file (`AGE-SECRET-KEY-1…`).
        #[arg(long)]
        identity: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a new age identity for a validator (its recipient in a comment).
    Keygen,
    /// Pack a bundle folder (plain or sealed) into one file to upload.
    Pack {
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let result: Result<bool> = match Cli::parse().command {
        Command::CheckRun { dir } => run_check::check_run(&dir).map(|findings| {
            run_check::print(&findings);
            findings.is_empty()
        }),
        Command::Bundle { command: BundleCommand::Verify { dir, json } } => bundle_cmd::verify(&dir, json),
        Command::Bundle { command: BundleCommand::Seal { dir, to, out } } => {
            seal::parse_recipient(&to).and_then(|r| seal::seal(&dir, &r, &out)).map(|_| true)
        }
        Command::Bundle { command: BundleCommand::Open { sealed, identity, out } } => {
            seal::read_identity(&identity).and_then(|id| seal::open(&sealed, &id, &out)).map(|_| true)
        }
        Command::Bundle { command: BundleCommand::Pack { dir, out } } => archive::pack(&dir, &out).map(|_| {
            println!("{}", proof::sha256_file(&out).map(|d| d.to_string()).unwrap_or_default());
            true
        }),
        Command::Bundle { command: BundleCommand::Keygen } => {
            use age::secrecy::ExposeSecret;
            let id = age::x25519::Identity::generate();
            println!("# recipient: {}\n{}", id.to_public(), id.to_string().expose_secret());
            Ok(true)
        }
        Command::Judge {
            repo,
            pr,
            bundle,
            crown,
            keys,
            trusted_set,
            minor,
            ledger,
            database_url,
            json,
            data,
            hidden,
            secret_file,
            noise_floor,
            rule,
            target_dir,
            libtorch,
            device,
        } => {
            let ledger = ledger.unwrap_or_else(|| repo.join(".karpa/judge"));
            let eval = match (data, hidden, secret_file) {
                (Some(data), Some(hidden), Some(secret_file)) => Some(judge_cmd::EvalPaths {
                    data,
                    hidden,
                    secret_file,
                    target_dir,
                    noise_floor,
                    rule,
                    libtorch,
                    device,
                }),
                _ => None,
            };
            let target =
                judge_cmd::JudgeTarget { repo, pr, bundle, ledger, crown, keys, trusted_set, minor, database_url };
            judge_cmd::run(target, eval, json)
        }
        Command::Pr { command } => lineage_cmd::pr(command),
        Command::Corpus { command } => karpa_bot::corpus_cmd::run(command),
        Command::Chain { command } => karpa_bot::chain_cmd::run(command),
        Command::Lineage { command } => lineage_cmd::lineage(command),
        Command::Reproduce(args) => karpa_bot::release::reproduce::run(&args),
        Command::Model { command } => karpa_bot::release::model::run(command),
        Command::Reference(args) => karpa_bot::release::reference::run(&args),
        Command::NoiseFloor { repo, king, config, seeds, validator, out } => {
            judge_cmd::noise_floor(repo, king, config, seeds, &validator.paths(), out)
        }
        Command::ImportFloor { file, database_url, repo_name, device_class } => {
            judge_cmd::import_floor(&file, &database_url, &repo_name, &device_class)
        }
        Command::JudgeSim(args) => judge_cmd::judge_sim(&args),
        Command::Serve(args) => karpa_bot::serve_cmd::serve(&args),
        Command::Runner(args) => karpa_bot::serve_cmd::runner(&args),
        Command::BenchWebhooks(args) => karpa_bot::bench_webhooks::run(&args),
        Command::BenchCorpus(args) => karpa_bot::bench_corpus::run(&args),
        Command::Submit(args) => tokio::runtime::Runtime::new()
            .map_err(Into::into)
            .and_then(|rt| rt.block_on(submit::submit(&args)))
            .map(|s| {
                let verb = if s.existing { "already open" } else { "opened" };
                println!("pull request #{} {verb}: {}", s.number, s.url);
                true
            }),
        Command::Mine(args) => mine::mine(&args).map(|_| true),
        Command::Prove(args) => prove::prove(&args).map(|m| {
            println!("bundle {}  ({} files) in {}", m.digest(), m.files.len(), args.out.display());
            true
        }),
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
