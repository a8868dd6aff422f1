//! `karpa judge`: run the pipeline on a local repository and print the verdict.

use crate::db::kings::Bump;
use crate::forge::crown::CrownOutcome;
use crate::forge::local::LocalForge;
use crate::judge::decision::{DecisionRule, NoiseFloor};
use crate::judge::evaluate::EvalSetup;
use crate::judge::ledger::JsonlLedger;
use crate::judge::pipeline::{judge, JudgeInput};
use crate::judge::verdict::{Verdict, VerdictClass};
use crate::sandbox::gpu::DeviceChoice;
use crate::sandbox::Limits;
use anyhow::Result;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::time::Duration;

/// What a validator brings to a sandboxed run, as command-line flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ValidatorArgs {
    /// The config's public data folder.
    #[arg(long)]
    pub data: PathBuf,
    /// The validator's hidden split folder.
    #[arg(long)]
    pub hidden: PathBuf,
    /// The validator's secret (picks replay segments and confirmation seeds).
    #[arg(long)]
    pub secret_file: PathBuf,
    /// Shared cargo target folder for recipe builds.
    #[arg(long, default_value = "target/recipes")]
    pub target_dir: PathBuf,
    /// libtorch folder (default: $LIBTORCH, then <repo>/.karpa/libtorch).
    #[arg(long)]
    pub libtorch: Option<PathBuf>,
    /// Where the sandboxed models run: auto, cpu, cuda or cuda:N (a GPU asked for
    /// but missing is an error, never a silent CPU run).
    #[arg(long, default_value = "cpu")]
    pub device: crate::sandbox::gpu::DeviceChoice,
}

impl ValidatorArgs {
    pub fn paths(&self) -> EvalPaths {
        EvalPaths {
            data: self.data.clone(),
            hidden: self.hidden.clone(),
            secret_file: self.secret_file.clone(),
            target_dir: self.target_dir.clone(),
            noise_floor: None,
            rule: None,
            libtorch: self.libtorch.clone(),
            device: self.device,
        }
    }
}

/// `karpa judge-sim`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The king's release tag.
    #[arg(long)]
    pub king: String,
    /// A release tag holding a real improvement over the king.
    #[arg(long)]
    pub improved: String,
    #[arg(long)]
    pub config: String,
    /// Noise-floor seeds.
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// Null patches: king runs with other seeds.
    #[arg(long, default_value_t = 20)]
    pub nulls: u64,
    /// Runs of the improvement.
    #[arg(long, default_value_t = 8)]
    pub improved_runs: u64,
    /// Seeds a seed-searching miner tries.
    #[arg(long, default_value_t = 20)]
    pub tries: usize,
    /// Decision rule (TOML).
    #[arg(long)]
    pub rule: Option<PathBuf>,
    #[command(flatten)]
    pub validator: ValidatorArgs,
    /// Where to write the runs and the table (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// Where the validator keeps what the hidden evaluation needs.
pub struct EvalPaths {
    pub data: PathBuf,
    pub hidden: PathBuf,
    pub secret_file: PathBuf,
    pub target_dir: PathBuf,
    pub noise_floor: Option<PathBuf>,
    pub rule: Option<PathBuf>,
    pub libtorch: Option<PathBuf>,
    pub device: crate::sandbox::gpu::DeviceChoice,
}

pub fn setup(repo: &std::path::Path, p: &EvalPaths) -> Result<(EvalSetup, Option<NoiseFloor>, DecisionRule)> {
    let secret = std::fs::read(&p.secret_file).with_context(|| format!("cannot read {}", p.secret_file.display()))?;
    crate::sandbox::protect_secret(&p.secret_file);
    if secret.len() < 16 {
        bail!("{} holds under 16 bytes; the replay choice would be guessable", p.secret_file.display());
    }
    let floor = p.noise_floor.as_deref().map(load_noise_floor).transpose()?;
    let rule = load_rule(p.rule.as_deref())?;
    let public = SandboxPaths { data: &p.data, target_dir: &p.target_dir, libtorch: p.libtorch.as_deref() };
    let setup = EvalSetup { hidden: std::path::absolute(&p.hidden)?, secret, ..public_setup(repo, &public, p.device)? };
    Ok((setup, floor, rule))
}

/// The sandbox of a run on public data, as command-line flags (`karpa mine`,
/// `karpa reproduce`): what the judge's path needs without a validator's secrets.
#[derive(clap::Args, Debug, Clone)]
pub struct PublicSandboxArgs {
    /// The config's prepared public data (`karpa-train prepare`'s public/ folder).
    #[arg(long)]
    pub data: PathBuf,
    /// Shared cargo target folder for recipe builds.
    #[arg(long, default_value = "target/recipes")]
    pub target_dir: PathBuf,
    /// libtorch folder (default: $LIBTORCH, then <repo>/.karpa/libtorch).
    #[arg(long)]
    pub libtorch: Option<PathBuf>,
    /// Where the sandboxed models run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
}

impl PublicSandboxArgs {
    pub fn setup(&self, repo: &std::path::Path) -> Result<EvalSetup> {
        let paths = SandboxPaths { data: &self.data, target_dir: &self.target_dir, libtorch: self.libtorch.as_deref() };
        public_setup(repo, &paths, self.device)
    }
}

/// What a sandboxed build and training need, public data only.
pub struct SandboxPaths<'a> {
    pub data: &'a std::path::Path,
    pub target_dir: &'a std::path::Path,
    pub libtorch: Option<&'a std::path::Path>,
}

/// The judge's sandboxed path without the hidden split or a secret: what a miner
/// trains and scores its trials with (`karpa mine`), exactly as the judge would.
pub fn public_setup(repo: &std::path::Path, p: &SandboxPaths<'_>, device: DeviceChoice) -> Result<EvalSetup> {
    let sysroot =
        std::process::Command::new("rustc").args(["--print", "sysroot"]).output().context("rustc --print sysroot")?;
    let toolchain = PathBuf::from(String::from_utf8(sysroot.stdout)?.trim());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    let libtorch = crate::miner::prove::resolve_libtorch(p.libtorch, repo)?;
    let device = device.resolve(std::path::Path::new("/dev"))?;
    Ok(EvalSetup {
        target_dir: std::path::absolute(p.target_dir)?,
        libtorch,
        toolchain,
        cargo_home,
        data: std::path::absolute(p.data)?,
        hidden: PathBuf::new(),
        secret: Vec::new(),
        device,
        limits: Limits {
            // CUDA maps address space far beyond what it uses: no RLIMIT_AS there.
            memory_bytes: if device.is_cuda() { None } else { Some(16 << 30) },
            cpu_seconds: 3600,
            file_bytes: 8 << 30,
            wall: Duration::from_secs(1800),
        },
    })
}

/// A floor file and, when it is there, its per-token reference beside it.
pub fn load_noise_floor(f: &std::path::Path) -> Result<NoiseFloor> {
    let mut floor: NoiseFloor =
        serde_json::from_slice(&std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?)
            .with_context(|| format!("{} is not a noise floor", f.display()))?;
    let nats = NoiseFloor::reference_path(f);
    match proof::causality::read_f32s(&nats) {
        Ok(values) => floor.reference = Some(values.into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => tracing::warn!(
            "{} has no per-token reference ({}): its judgments' causality pairs are all uniform",
            f.display(),
            nats.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("{} is not a floor's reference", nats.display())),
    }
    Ok(floor)
}

/// Writes a floor file and its per-token reference (the reference first, so a
/// floor file is never newer than the numbers it names).
pub fn save_noise_floor(floor: &NoiseFloor, f: &std::path::Path) -> Result<()> {
    if let Some(reference) = &floor.reference {
        proof::causality::write_f32s(&NoiseFloor::reference_path(f), reference)?;
    }
    Ok(proof::fsio::write_json_atomic(f, floor)?)
}

/// The decision rule from a TOML file (defaults for absent fields), checked.
pub fn load_rule(f: Option<&std::path::Path>) -> Result<DecisionRule> {
    let rule: DecisionRule = match f {
        Some(f) => toml::from_str(&std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?)
            .with_context(|| format!("{} is not a decision rule", f.display()))?,
        None => DecisionRule::default(),
    };
    if let Err(why) = rule.validate() {
        bail!("the decision rule is not usable: {why}");
    }
    Ok(rule)
}

/// `karpa noise-floor`: measures the king and writes the floor as JSON.
pub fn noise_floor(
    repo: PathBuf,
    king: Option<String>,
    config: String,
    seeds: u64,
    paths: &EvalPaths,
    out: PathBuf,
) -> Result<bool> {
    let (setup, _, _) = setup(&repo, paths)?;
    let sandbox = crate::sandbox::Sandbox::new()?;
    let recipe = crate::repo::RecipeRepo::open(&repo)?;
    let king = recipe.king(king.as_deref())?;
    let floor = crate::judge::noise_floor::measure(&sandbox, &setup, &recipe, &king, &config, 0..seeds)?;
    save_noise_floor(&floor, &out)?;
    println!("{} on {}: mean {:.5}, σ {:.5}, n {}", floor.king, floor.config, floor.mean(), floor.sigma(), floor.n());
    Ok(true)
}

/// `karpa import-floor`: an operator's floor file into the database.
pub fn import_floor(file: &std::path::Path, database_url: &str, repo: &str, device_class: &str) -> Result<bool> {
    crate::forge::github::RepoName::parse(repo)?;
    let floor = load_noise_floor(file)?;
    let key = crate::db::floors::FloorKey {
        repo: repo.into(),
        king: floor.king.clone(),
        config: floor.config.clone(),
        device_class: device_class.into(),
    };
    let stored = tokio::runtime::Runtime::new()?.block_on(async {
        let pool = crate::db::connect(database_url).await?;
        crate::db::floors::import(&pool, &key, &floor, &format!("import:{}", file.display())).await
    })?;
    println!(
        "{} on {} ({device_class}): {stored} of {} runs stored{}",
        floor.king,
        floor.config,
        floor.n(),
        if floor.reference.is_some() { ", with its per-token reference" } else { "" }
    );
    Ok(true)
}

/// What `karpa judge` judges: a PR of a local repository, by ref or local number.
pub struct JudgeTarget {
    pub repo: PathBuf,
    /// A branch, ref or commit; or the number of a local forge pull request.
    pub pr: String,
    /// Required unless `pr` is a local pull request (which records its bundle).
    pub bundle: Option<PathBuf>,
    pub ledger: PathBuf,
    /// Release a crowned verdict on the local forge (needs both of `keys`).
    pub crown: bool,
    /// The validator's keys: the hotkey signs the crown note and the verdict
    /// recorded in the corpus, the tag key the release tag.
    pub keys: crate::lineage::keys::ValidatorKeyArgs,
    /// With `crown`: a validators.toml the release puts in force (signed by the set it replaces).
    pub trusted_set: Option<PathBuf>,
    /// Number that release recipe-vX.(Y+1).0 instead of a patch bump.
    pub minor: bool,
    /// Record the judgment in the corpus at this PostgreSQL URL.
    pub database_url: Option<String>,
}

/// Ok(false) when the verdict is `rejected` or `stale`.
pub fn run(t: JudgeTarget, eval: Option<EvalPaths>, json: bool) -> Result<bool> {
    let hotkey = t.keys.validator_hotkey.as_deref();
    let validator = hotkey.map(crate::miner::prove::load_hotkey).transpose().context("--validator-hotkey")?;
    let crown_keys = t.crown.then(|| t.keys.load("--crown")).transpose()?;
    let trusted_set = match &t.trusted_set {
        Some(f) => Some(std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?),
        None => None,
    };
    let local = match t.pr.parse::<u64>() {
        Ok(n) => {
            let forge = LocalForge::open(&t.repo)?;
            let pull = forge.pull(n)?;
            Some((forge, pull))
        }
        Err(_) if t.crown => bail!("--crown needs --pr to name a local pull request by number (karpa pr open)"),
        Err(_) if t.database_url.is_some() => {
            bail!("--database-url needs --pr to name a local pull request by number (karpa pr open)")
        }
        Err(_) => None,
    };
    let pr_head = match &local {
        Some((forge, pull)) => forge.head(pull)?.to_string(),
        None => t.pr.clone(),
    };
    let bundle = match (t.bundle, &local) {
        (Some(b), _) => b,
        (None, Some((_, pull))) => pull.bundle.clone(),
        (None, None) => bail!("--bundle is needed unless --pr names a local pull request"),
    };
    let (eval, noise_floor, rule) = match &eval {
        Some(p) => {
            let (s, f, r) = setup(&t.repo, p)?;
            (Some(s), f, r)
        }
        None => (None, None, DecisionRule::default()),
    };
    let mut verdict = judge(&JudgeInput {
        repo: t.repo.clone(),
        pr_head: pr_head.clone(),
        bundle: bundle.clone(),
        ledger: Box::new(JsonlLedger::open(t.ledger)),
        eval,
        floors: Box::new(noise_floor.into_iter().collect::<Vec<_>>()),
        confirmations: Box::new(crate::judge::confirmation::InProcess),
        rule,
        prior: None,
    })?;
    let mut released = None;
    if let Some((forge, mut pull)) = local {
        if let (Some(keys), VerdictClass::Crowned) = (&crown_keys, verdict.class) {
            let bump = if t.minor { Bump::Minor } else { Bump::Patch };
            let head = git2::Oid::from_str(&pr_head)?;
            let outcome = forge.crown(&mut pull, head, &verdict, bump, keys, trusted_set.as_deref())?;
            outcome.settle(&mut verdict);
            if let CrownOutcome::Crowned { tag, commit } = outcome {
                released = Some((tag, commit.as_str().to_string()));
            }
        }
        forge.record_verdict(&mut pull, verdict.class)?;
        if let Some(url) = &t.database_url {
            let judged = (pull.number, pr_head.as_str(), &verdict);
            let id = record_locally(url, &t.repo, judged, &bundle, released.as_ref(), validator.as_ref())?;
            eprintln!("recorded in the corpus as {id}");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print_table(&verdict);
    }
    Ok(!matches!(verdict.class, VerdictClass::Rejected | VerdictClass::Stale))
}

/// The judgment into the corpus, as `local/<repository folder>`.
fn record_locally(
    url: &str,
    repo: &std::path::Path,
    (pr, head, verdict): (u64, &str, &Verdict),
    bundle: &std::path::Path,
    released: Option<&(String, String)>,
    signer: Option<&subxt_signer::sr25519::Keypair>,
) -> Result<crate::corpus::SubmissionId> {
    use crate::corpus::record::{record, BundleFacts, Forge, Judged};
    let name = std::path::absolute(repo)?;
    let name = name.file_name().map(|n| n.to_string_lossy().trim_end_matches(".git").to_string());
    let repo = format!("local/{}", name.unwrap_or_else(|| "recipe".into()));
    let facts = verdict.bundle_digest.is_some().then(|| BundleFacts::read(bundle, None)).transpose()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let pool = crate::db::connect(url).await?;
        let judged = Judged {
            repo: &repo,
            forge: Forge::Local,
            pr,
            head_sha: head,
            bundle: facts.as_ref(),
            author: None,
            verdict,
            released: released.map(|(t, c)| (t.as_str(), c.as_str())),
            signer,
        };
        record(&pool, &judged).await
    })
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
    if let Some(e) = &v.eval {
        println!(
            "    hidden-eval: build {:.1} s · probe {:.2} s · eval {:.2} s · causality {:.2} s · replay {:.2} s · model compute {:.2} s",
            e.build_s, e.probe_s, e.eval_s, e.causality_s, e.replay_s, e.compute_s
        );
        if let Some(c) = &e.causality {
            println!("    causality: {}", c.explain());
        }
    }
    if let Some(d) = &v.decision {
        println!(
            "\n  challenger {:.4}  king {:.4} ± {:.4} (n={})  gain {:+.4}  threshold {:.4}",
            d.challenger, d.king_mean, d.sigma, d.n, d.gain, d.threshold
        );
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

/// `karpa judge-sim`: real runs through the sandbox, then the rule's rates.
pub fn judge_sim(args: &SimArgs) -> Result<bool> {
    use crate::judge::noise_floor::measure;
    let paths = EvalPaths { rule: args.rule.clone(), ..args.validator.paths() };
    let (setup, _, rule) = setup(&args.repo, &paths)?;
    let sandbox = crate::sandbox::Sandbox::new()?;
    let recipe = crate::repo::RecipeRepo::open(&args.repo)?;
    let king = recipe.king(Some(&args.king))?;
    let improved = recipe.king(Some(&args.improved))?;
    let (n, k) = (args.seeds, args.nulls);
    let all = measure(&sandbox, &setup, &recipe, &king, &args.config, 0..n + k)?;
    // Improvement seeds far from the king's, so no pair shares a data order.
    let better = measure(&sandbox, &setup, &recipe, &improved, &args.config, 1 << 20..(1 << 20) + args.improved_runs)?;
    let floor = crate::judge::decision::NoiseFloor { values: all.values[..n as usize].to_vec(), ..all.clone() };
    let runs = crate::judge::sim::SimRuns { floor, nulls: all.values[n as usize..].to_vec(), improved: better.values };
    let rows = crate::judge::sim::report(&rule, &runs, args.tries, 200_000);
    proof::fsio::write_json_atomic(&args.out, &serde_json::json!({"rule": rule, "runs": runs, "rows": rows}))?;
    let f = &runs.floor;
    println!("noise floor {} on {}: mean {:.5}, σ {:.5}, n {}", f.king, f.config, f.mean(), f.sigma(), f.n());
    println!("rule: α {}, confirmation runs {}, gate {}σ\n", rule.alpha, rule.confirmation_runs, rule.gate_z);
    println!("| {:<52} | {:>9} | {:>8} |", "", "real runs", "model");
    println!("| {:-<52} | {:->9} | {:->8} |", "", "", "");
    for r in &rows {
        let e = r.empirical.as_deref().unwrap_or("-");
        println!("| {:<52} | {e:>9} | {:>7.2}% |", r.what, 100.0 * r.model);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_keeps_its_per_token_reference_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("noise-floor.json");
        let floor = NoiseFloor {
            king: "recipe-v0.1.0".into(),
            config: "tiny".into(),
            values: vec![2.34, 2.36],
            reference: Some(vec![4.5f32, 0.25, 7.0].into()),
        };
        save_noise_floor(&floor, &file).unwrap();
        assert!(dir.path().join("noise-floor.nats.f32").exists());
        assert_eq!(load_noise_floor(&file).unwrap(), floor);
        // A floor file from before (or copied without its reference) still loads: pairs all uniform.
        std::fs::remove_file(dir.path().join("noise-floor.nats.f32")).unwrap();
        assert_eq!(load_noise_floor(&file).unwrap(), NoiseFloor { reference: None, ..floor.clone() });
        // A torn reference is an error, not a silent fallback.
        std::fs::write(dir.path().join("noise-floor.nats.f32"), [0u8; 7]).unwrap();
        let err = format!("{:#}", load_noise_floor(&file).unwrap_err());
        assert!(err.contains("is not a floor's reference"), "{err}");
    }
}
