//! `karpa serve`: flags, secrets and the runtime around [`crate::server`].

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// PostgreSQL URL.
    #[arg(long, env = "KARPA_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// A file holding a webhook secret; repeat while rotating (every one is accepted).
    #[arg(long = "webhook-secret-file", required = true)]
    pub webhook_secret_files: Vec<PathBuf>,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Minutes between reconciliations (open PRs without a judgment); 0 turns them off.
    #[arg(long, default_value_t = 10)]
    pub reconcile_minutes: u64,
    /// In-process workers (0: leave the jobs to `karpa runner` processes).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    #[command(flatten)]
    pub work: WorkerArgs,
}

/// What a worker needs, for `karpa serve` and `karpa runner`.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The GitHub App's id.
    #[arg(long, env = "KARPA_APP_ID")]
    pub app_id: u64,
    /// The GitHub App's private key (PEM).
    #[arg(long, env = "KARPA_APP_KEY_FILE")]
    pub app_key_file: PathBuf,
    /// The validator's hotkey and tag key (both required: any worker may crown).
    #[command(flatten)]
    pub keys: crate::lineage::keys::ValidatorKeyArgs,
    /// A validators.toml the next crown puts in force, when it differs from the
    /// king's (the crown note that carries it is signed by the set it replaces).
    #[arg(long)]
    pub trusted_set: Option<PathBuf>,
    /// The GitHub REST API.
    #[arg(long, default_value = "https://api.github.com")]
    pub github_api: String,
    /// The recipe repository's git URL; `{repo}` stands for owner/name.
    #[arg(long, default_value = "https://github.com/{repo}.git")]
    pub git_url: String,
    /// Mirrors and downloaded bundles live here.
    #[arg(long, default_value = ".karpa/bot")]
    pub state_dir: PathBuf,
    /// Largest bundle file accepted, in bytes.
    #[arg(long, default_value_t = 64 << 30)]
    pub bundle_max_bytes: u64,
    /// FROM=TO: fetch bundle URLs starting with FROM from TO instead (a mirror or cache).
    #[arg(long = "bundle-url-rewrite")]
    pub bundle_url_rewrites: Vec<String>,
    /// The hidden evaluation (public data, hidden split, secret); without it verdicts stop at integrity.
    #[arg(long, requires_all = ["hidden", "secret_file"])]
    pub data: Option<PathBuf>,
    #[arg(long, requires = "data")]
    pub hidden: Option<PathBuf>,
    #[arg(long, requires = "data")]
    pub secret_file: Option<PathBuf>,
    /// Shared cargo target folder for recipe builds.
    #[arg(long, default_value = "target/recipes")]
    pub target_dir: PathBuf,
    /// A measured noise floor (JSON); repeat for several kings or configs.
    #[arg(long = "noise-floor")]
    pub noise_floors: Vec<PathBuf>,
    /// Decision rule (TOML).
    #[arg(long)]
    pub rule: Option<PathBuf>,
    /// Seconds a claimed job stays leased without a heartbeat (a dead worker's job waits this long).
    #[arg(long, default_value_t = 600)]
    pub lease_seconds: u64,
    /// Attempts before a job is dead; the last one shows an `error` verdict instead of retrying.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: i32,
    /// This server's public base URL (e.g. https://karpa.example); check runs then show
    /// each bundle's loss curve from /curves/<digest>.svg.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Where the sandboxed models run: auto, cpu, cuda or cuda:N (a GPU asked for
    /// but missing is an error at start, never a silent CPU run).
    #[arg(long, default_value = "cpu")]
    pub device: crate::sandbox::gpu::DeviceChoice,
}

/// `karpa runner`: workers only, on a host with the accelerator.
#[derive(clap::Args, Debug)]
pub struct RunnerArgs {
    #[arg(long, env = "KARPA_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// One worker per GPU, each on its own (e.g. 0,1,2,3); overrides --workers and --device.
    #[arg(long, value_delimiter = ',')]
    pub gpus: Vec<u32>,
    #[command(flatten)]
    pub work: WorkerArgs,
}

impl WorkerArgs {
    /// The workers' services; `device` overrides `--device` (a runner's `--gpus`).
    pub fn services(
        &self,
        pool: sqlx::PgPool,
        device: Option<crate::sandbox::gpu::DeviceChoice>,
    ) -> Result<crate::jobs::Services> {
        let key = std::fs::read(&self.app_key_file)
            .with_context(|| format!("cannot read {}", self.app_key_file.display()))?;
        crate::sandbox::protect_secret(&self.app_key_file);
        let app = crate::forge::github::app_client(self.app_id, &key, &self.github_api)?;
        let rewrites = self
            .bundle_url_rewrites
            .iter()
            .map(|r| match r.split_once('=') {
                Some((from, to)) => Ok((from.to_string(), to.to_string())),
                None => bail!("--bundle-url-rewrite takes FROM=TO, got {r:?}"),
            })
            .collect::<Result<_>>()?;
        let rule = crate::judge_cmd::load_rule(self.rule.as_deref())?;
        let eval = match (&self.data, &self.hidden, &self.secret_file) {
            (Some(data), Some(hidden), Some(secret_file)) => {
                let paths = crate::judge_cmd::EvalPaths {
                    data: data.clone(),
                    hidden: hidden.clone(),
                    secret_file: secret_file.clone(),
                    target_dir: self.target_dir.clone(),
                    noise_floor: None,
                    rule: None,
                    libtorch: None,
                    device: device.unwrap_or(self.device),
                };
                Some(crate::judge_cmd::setup(std::path::Path::new("."), &paths)?.0)
            }
            _ => None,
        };
        let validator = self.keys.load("a worker")?;
        let trusted_set = match &self.trusted_set {
            Some(f) => {
                let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
                crate::lineage::trust::TrustedSet::parse(&text).context("--trusted-set")?;
                Some(text)
            }
            None => None,
        };
        Ok(crate::jobs::Services {
            pool,
            app,
            validator,
            judge: crate::jobs::judge::Settings {
                state_dir: std::path::absolute(&self.state_dir)?,
                git_url: self.git_url.clone(),
                fetcher: crate::forge::bundle_fetch::Fetcher::new(self.bundle_max_bytes, rewrites)?,
                eval,
                noise_floors: self
                    .noise_floors
                    .iter()
                    .map(|f| crate::judge_cmd::load_noise_floor(f))
                    .collect::<Result<_>>()?,
                rule,
                max_attempts: self.max_attempts,
                public_url: self.public_url.as_ref().map(|u| u.trim_end_matches('/').to_string()),
                floor_poll: std::time::Duration::from_secs(30),
                trusted_set,
            },
            lease: std::time::Duration::from_secs(self.lease_seconds.max(1)),
            backoff: std::time::Duration::from_secs(30),
        })
    }
}

/// Starts `n` workers on `services`; they stop when `stop` turns true.
pub fn spawn_workers(
    services: std::sync::Arc<crate::jobs::Services>,
    n: usize,
    stop: &tokio::sync::watch::Sender<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    (0..n)
        .map(|i| {
            // A runner's workers are told apart by their GPU, too (one worker per GPU).
            let gpu = match services.judge.eval.as_ref().map(|e| e.device) {
                Some(crate::sandbox::gpu::Device::Cuda(n)) => format!("cuda{n}-"),
                _ => String::new(),
            };
            let id = format!("{host}-{}-{gpu}{i}", std::process::id());
            tokio::spawn(crate::jobs::work(services.clone(), id, std::time::Duration::from_secs(1), stop.subscribe()))
        })
        .collect()
}

/// Reads the webhook secrets; each must be at least 16 bytes after trimming.
pub fn read_secrets(files: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            crate::sandbox::protect_secret(f);
            let secret = text.trim().as_bytes().to_vec();
            if secret.len() < 16 {
                bail!("{} holds under 16 bytes; a webhook secret that short can be guessed", f.display());
            }
            Ok(secret)
        })
        .collect()
}

pub fn serve(args: &ServeArgs) -> Result<bool> {
    let secrets = read_secrets(&args.webhook_secret_files)?;
    init_tracing();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let pool = crate::db::connect(&args.database_url).await?;
        let services = std::sync::Arc::new(args.work.services(pool.clone(), None)?);
        let device = services.judge.eval.as_ref().filter(|_| args.workers > 0).map(|e| e.device);
        let (stop, _) = tokio::sync::watch::channel(false);
        let _workers = spawn_workers(services, args.workers, &stop);
        if args.reconcile_minutes > 0 {
            let period = std::time::Duration::from_secs(60 * args.reconcile_minutes);
            tokio::spawn(crate::jobs::schedule_reconciliation(pool.clone(), period, stop.subscribe()));
        }
        let state = crate::server::AppState::new(pool, secrets, args.work.app_id as i64, args.max_body)
            .with_public_url(args.work.public_url.clone())
            .with_device(device);
        crate::server::serve(state, args.listen).await
    })?;
    Ok(true)
}

pub fn runner(args: &RunnerArgs) -> Result<bool> {
    init_tracing();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let pool = crate::db::connect(&args.database_url).await?;
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut workers = Vec::new();
        if args.gpus.is_empty() {
            let services = std::sync::Arc::new(args.work.services(pool.clone(), None)?);
            workers.extend(spawn_workers(services, args.workers.max(1), &stop));
        }
        for &gpu in &args.gpus {
            let choice = crate::sandbox::gpu::DeviceChoice::Cuda(gpu);
            let services = std::sync::Arc::new(args.work.services(pool.clone(), Some(choice))?);
            workers.extend(spawn_workers(services, 1, &stop));
        }
        for w in workers {
            w.await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(true)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "karpa_bot=info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
