//! Shared helpers for Karpa's end-to-end tests: locate the built binaries and the
//! demo corpus that `cargo xtask test` sets up, and run commands.

pub mod corpus_seed;
pub mod fake_github;

/// The GitHub App the tests' fake knows (key pair in tests/fixtures).
pub const TEST_APP_ID: u64 = 4242;

/// The validator key the tests crown with (Substrate's public dev key //Alice).
pub const TEST_VALIDATOR: &str = "//Alice";

/// Finney's genesis block hash.
pub const FINNEY_GENESIS: &str = "2f0555cc76fc2840a25a6ea3b9637146806f1f44b090c175ffde2a7e5ab36c03";

/// A seeded corpus and a metagraph naming its king's miner (//Alice) as uid 3,
/// for `karpa chain dry-run` offline against finney's metadata.
pub struct OfflineChain {
    pub pool: sqlx::PgPool,
    pub url: String,
    pub metagraph: PathBuf,
    _dir: tempfile::TempDir,
}

impl OfflineChain {
    pub async fn new() -> Self {
        let pool = fresh_database().await;
        let dir = tempfile::tempdir().unwrap();
        corpus_seed::seed(&pool, dir.path()).await;
        let url = sqlx::ConnectOptions::to_url_lossy(&*pool.connect_options()).to_string();
        let alice = proof::hotkey::ss58(&proof::hotkey::keypair_from_uri("//Alice").unwrap());
        let metagraph = dir.path().join("metagraph.json");
        std::fs::write(&metagraph, serde_json::json!({ alice: 3 }).to_string()).unwrap();
        OfflineChain { pool, url, metagraph, _dir: dir }
    }

    /// `karpa chain dry-run` of subnet 64 at epoch 7, signed by //Alice, with `extra` flags.
    pub fn dry_run(&self, extra: &[&str]) -> Run {
        let metadata = fixture("chain/finney.scale");
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"chain", &"dry-run", &"--database-url", &self.url];
        args.extend([&"--repo" as &dyn AsRef<std::ffi::OsStr>, &corpus_seed::REPO, &"--netuid", &"64"]);
        args.extend([&"--metadata" as &dyn AsRef<std::ffi::OsStr>, &metadata, &"--genesis", &FINNEY_GENESIS]);
        args.extend([&"--epoch" as &dyn AsRef<std::ffi::OsStr>, &"7", &"--hotkey-uri", &"//Alice"]);
        args.extend([&"--metagraph" as &dyn AsRef<std::ffi::OsStr>, &self.metagraph]);
        args.extend(extra.iter().map(|e| e as &dyn AsRef<std::ffi::OsStr>));
        run(&binary("karpa"), &args)
    }
}

/// The validator's keys the tests crown with: //Alice's hotkey, and the dev tag
/// key of the same name that the dev set names.
pub fn test_validator() -> karpa_bot::lineage::keys::ValidatorKeys {
    use karpa_bot::lineage::keys::{ValidatorKeys, DEFAULT_TAGGER};
    ValidatorKeys::load(TEST_VALIDATOR, TEST_VALIDATOR, DEFAULT_TAGGER).expect("the dev keys")
}

/// The trusted set the tests' genesis carries as validators.toml: //Alice alone.
pub const TEST_TRUSTED_SET: &str = include_str!("../../deploy/validators.dev.toml");

pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(name)
}

/// A fake GitHub serving `repo` to the test App, installed as `installation`.
pub fn fake_github_for_app(repo: &str, installation: u64) -> fake_github::FakeGitHub {
    let app = fake_github::FakeApp {
        app_id: TEST_APP_ID,
        public_key_pem: std::fs::read(fixture("github-app.test-key.pub.pem")).expect("the test key"),
        installation,
    };
    fake_github::FakeGitHub::start_with(&[repo], "no-personal-token", Some(app))
}

/// Worker services against `gh` with the test App's key.
pub fn services(
    pool: sqlx::PgPool,
    gh: &fake_github::FakeGitHub,
    judge: karpa_bot::jobs::judge::Settings,
) -> karpa_bot::jobs::Services {
    let key = std::fs::read(fixture("github-app.test-key.pem")).expect("the test key");
    karpa_bot::jobs::Services {
        pool,
        app: karpa_bot::forge::github::app_client(TEST_APP_ID, &key, &gh.url).expect("an App client"),
        judge,
        validator: test_validator(),
        lease: std::time::Duration::from_secs(60),
        backoff: std::time::Duration::from_millis(1),
    }
}

/// Judge settings without a hidden evaluation; bundle URLs under
/// https://bundles.example/ are fetched from `gh`'s /files/.
pub fn judge_settings(
    state_dir: &Path,
    git_url: &str,
    gh: &fake_github::FakeGitHub,
) -> karpa_bot::jobs::judge::Settings {
    let rewrite = vec![("https://bundles.example/".to_string(), format!("{}/files/", gh.url))];
    karpa_bot::jobs::judge::Settings {
        state_dir: state_dir.to_path_buf(),
        git_url: git_url.to_string(),
        fetcher: karpa_bot::forge::bundle_fetch::Fetcher::new(1 << 30, rewrite).expect("a fetcher"),
        eval: None,
        noise_floors: vec![],
        rule: Default::default(),
        max_attempts: 3,
        public_url: None,
        floor_poll: std::time::Duration::from_millis(50),
        trusted_set: None,
    }
}

/// A fresh database per test in the cluster `cargo xtask test` starts; its URL.
pub async fn fresh_database_url() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let url = std::env::var("KARPA_TEST_DATABASE_URL")
        .expect("KARPA_TEST_DATABASE_URL is not set; run the tests with `cargo xtask test`, which starts PostgreSQL");
    let name = format!("karpa_test_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let admin = sqlx::PgPool::connect(&url).await.expect("the test cluster accepts connections");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
    admin.close().await;
    let (base, _) = url.rsplit_once('/').expect("a database URL ends in /<db>");
    format!("{base}/{name}")
}

/// A fresh, migrated database per test.
pub async fn fresh_database() -> sqlx::PgPool {
    karpa_bot::db::connect(&fresh_database_url().await).await.expect("migrations apply to a fresh database")
}

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace").to_path_buf()
}

/// Runs git in `dir` with a fixed identity; its stdout. Fails the test on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Karpa Test", "-c", "user.email=test@karpa.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("git prints UTF-8")
}

/// A recipe repository holding this workspace's tracked files, tagged recipe-v0.1.0.
pub fn recipe_repo(dir: &Path) -> PathBuf {
    let root = workspace_root();
    let repo = dir.join("recipe-repo");
    for file in git(&root, &["ls-files", "-z"]).split('\0').filter(|f| !f.is_empty()) {
        let dst = repo.join(file);
        std::fs::create_dir_all(dst.parent().expect("a file has a folder")).expect("a folder in the copy");
        std::fs::copy(root.join(file), &dst).expect("a tracked file copies");
    }
    std::fs::write(repo.join("validators.toml"), TEST_TRUSTED_SET).expect("the trusted set");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "recipe v0.1.0"]);
    git(&repo, &["tag", "-a", "recipe-v0.1.0", "-m", "recipe v0.1.0"]);
    repo
}

/// micro's data prepared from the demo corpus into `dir/data` (public/ and hidden/).
pub fn micro_data(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    run(
        &binary("karpa-train"),
        &[&"prepare", &"--config", &"micro", &"--input", &corpus(), &"--salt-file", &demo_salt_file(), &"--out", &data],
    )
    .ok();
    data
}

/// A binary of the workspace, built next to this test's own target folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let bin = dir.join(name);
    assert!(bin.exists(), "{} is not built; run `cargo xtask test` (it builds every binary first)", bin.display());
    bin
}

/// The demo corpus (Shakespeare) that `cargo xtask test` downloads and unpacks.
pub fn corpus() -> PathBuf {
    let dir = std::env::var_os("KARPA_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".karpa/corpus/shakespeare"));
    assert!(dir.join(".complete").exists(), "the demo corpus is missing at {}; run `cargo xtask test`", dir.display());
    dir
}

/// The demo salt file, the one the pinned micro and tiny digests were made with.
pub fn demo_salt_file() -> PathBuf {
    let file = std::env::var_os("KARPA_DEMO_SALT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".karpa/demo-salt"));
    assert!(file.exists(), "the demo salt file is missing at {}; run `cargo xtask test`", file.display());
    file
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed:\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

pub fn run(bin: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    let out: Output = Command::new(bin).args(args.iter().map(|a| a.as_ref())).output().expect("binary starts");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A run's final state and its one checkpoint, both well formed (the checkpoint
/// a safetensors file of one `model.w` tensor made of `seed`'s bytes): what a
/// crown note reads of a bundle, for tests of the bundle machinery.
pub fn fake_run(dir: &Path, config: &str, checkpoint: &str, seed: &[u8]) {
    let data: Vec<u8> = (0..16).map(|i| seed[i % seed.len()]).collect();
    let meta = serde_json::json!({"format": "karpa-checkpoint/v1", "config": config, "step": 4, "tokens_seen": 256,
                                   "data_manifest": "ab".repeat(32)});
    let header = serde_json::json!({"__metadata__": {"karpa": meta.to_string()},
                                     "model.w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})
    .to_string();
    let header = format!("{header:<width$}", width = header.len().div_ceil(8) * 8); // padded as safetensors writes it
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend(&data);
    let path = dir.join(checkpoint);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let state = serde_json::json!({
        "config": config, "seed": 1337, "steps": 4, "tokens_seen": 256, "params": 4, "final_loss": 5.9,
        "val_bpb": 3.1, "elapsed_s": 1.5, "data_manifest": "ab".repeat(32), "log_sha256": "cd".repeat(32),
        "checkpoints": [{"step": 4, "tokens_seen": 256, "path": checkpoint, "sha256": proof::sha256_bytes(&bytes)}],
    });
    std::fs::write(dir.join("final_state.json"), serde_json::to_string_pretty(&state).unwrap()).unwrap();
}

/// A small but complete bundle signed by //Alice for GitHub login `octo`
/// (placeholder payload files: for tests of the bundle machinery, not of training).
pub fn make_bundle(dir: &Path) -> proof::bundle::BundleManifest {
    make_bundle_with(dir, &[])
}

/// [`make_bundle`] with some payload files given (e.g. a rationale, a patch, a log).
pub fn make_bundle_with(dir: &Path, files: &[(&str, &str)]) -> proof::bundle::BundleManifest {
    use proof::bundle::{assemble, RunClaims};
    std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
    for f in ["patch.diff", "rationale.md", "log.jsonl", "calibration.json"] {
        std::fs::write(dir.join(f), format!("{f}\n")).unwrap();
    }
    fake_run(dir, "micro", "checkpoints/step-4.safetensors", b"weights");
    std::fs::write(dir.join("rationale.md"), "Warm up for longer.\n\nA longer warmup keeps early steps stable.\n")
        .unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let claims = RunClaims {
        king_tag: "recipe-v0.1.0".into(),
        king_commit: "c".repeat(40),
        patched_tree: "d".repeat(40),
        config: "micro".into(),
        seed: 1337,
        harness_digest: proof::sha256_bytes(b"harness"),
        miner_hotkey: "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY".into(),
        github_login: "octo".into(),
        calibration: proof::intoto::CalibrationSummary {
            device: "cpu".into(),
            matmul_2048_fp32_ms: 50.0,
            h100_equivalence: 0.0102,
        },
        started_at: "2026-11-26T06:00:00Z".into(),
        finished_at: "2026-11-26T06:00:01Z".into(),
        log_chain: proof::intoto::log_chain(&std::fs::read_to_string(dir.join("log.jsonl")).unwrap(), 64),
        tier: "software".into(),
    };
    let key = proof::dsse::generate_key().unwrap();
    let manifest = assemble(dir, &claims, &key, [1u8; 32]).unwrap();
    proof::bundle::sign_as_miner(dir, &manifest, &proof::hotkey::keypair_from_uri("//Alice").unwrap()).unwrap();
    manifest
}
