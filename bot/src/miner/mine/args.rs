//! `karpa mine`'s command line.

use super::submit::SubmitTo;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct MineArgs {
    /// The miner's clone of the canonical recipe repository (or the local forge itself).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Protocol config: tiny on a CPU, proxy on a GPU.
    #[arg(long)]
    pub config: String,
    #[command(flatten)]
    pub sandbox: crate::judge_cmd::PublicSandboxArgs,
    /// `builtin` (compass search over recipe.toml) or a command, run with `sh -c`
    /// in a fresh worktree of the best recipe each trial; it reads $KARPA_PROGRAM.
    #[arg(long, default_value = "builtin")]
    pub agent: String,
    /// How long an external agent may take per trial.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub agent_timeout: Duration,
    /// A variable of this environment the agent gets (its own API key, say); repeatable.
    #[arg(long)]
    pub agent_env: Vec<String>,
    /// Trials trained at a time, each by its own worker on `--device`.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// One worker per GPU, each training its own trial (e.g. 0,1,2,3);
    /// overrides `--device`.
    #[arg(long, value_delimiter = ',')]
    pub gpus: Vec<u32>,
    /// The results folder (results.tsv, progress.svg, trials/); a run there resumes.
    #[arg(long)]
    pub out: PathBuf,
    /// Stop after this many trials in all.
    #[arg(long)]
    pub trials: Option<u32>,
    /// Start no trial after this long (e.g. 8h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub time: Option<Duration>,
    /// Seeds of the king measured for the noise (and of a best before it is submitted).
    #[arg(long, default_value_t = 3)]
    pub seeds: u32,
    /// The validator's decision rule (TOML; default: the rule's defaults).
    #[arg(long)]
    pub rule: Option<PathBuf>,
    /// A validator's corpus (https://…): what the network has judged on this king.
    #[arg(long)]
    pub corpus_url: Option<String>,
    /// Submit only a best that beats the king by this many times the validator's threshold.
    #[arg(long, default_value_t = 1.5)]
    pub spare: f64,
    /// Never prove or open a pull request.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub submit: SubmitTo,
}
