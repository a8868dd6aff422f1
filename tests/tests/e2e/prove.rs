//! `karpa prove` end to end: a real recipe repository (a copy of this workspace,
//! tagged recipe-v0.1.0), a real patch, `karpa-train` built from the patched tree,
//! real training on `micro`, and a bundle that `karpa bundle verify` accepts.

use karpa_tests::{binary, git, micro_data, recipe_repo, run, workspace_root};
use std::path::{Path, PathBuf};

/// A patch that changes micro's peak learning rate, made with git itself.
fn lr_patch(repo: &Path, out: &Path) -> PathBuf {
    let toml = repo.join("recipe/recipe.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let changed = text.replacen("lr = 3e-3", "lr = 5e-3", 1);
    assert_ne!(text, changed);
    std::fs::write(&toml, changed).unwrap();
    let patch = out.join("lr.diff");
    std::fs::write(&patch, git(repo, &["diff"])).unwrap();
    git(repo, &["checkout", "--", "."]);
    patch
}

/// `karpa judge --json` of PR `pr` with the hidden evaluation (micro's data in
/// `data`), against `floor` when given.
pub(crate) fn judge_with_hidden_eval(
    repo: &Path,
    pr: &str,
    bundle: &Path,
    ledger: &Path,
    data: &Path,
    secret: &Path,
    floor: Option<&Path>,
) -> karpa_tests::Run {
    let mut owned: Vec<std::ffi::OsString> = ["judge", "--json", "--pr", pr].iter().map(Into::into).collect();
    for (flag, path) in [
        ("--repo", repo.to_path_buf()),
        ("--bundle", bundle.to_path_buf()),
        ("--ledger", ledger.to_path_buf()),
        ("--data", data.join("public")),
        ("--hidden", data.join("hidden")),
        ("--secret-file", secret.to_path_buf()),
        ("--target-dir", workspace_root().join("target/recipes")),
    ]
    .into_iter()
    .chain(floor.map(|f| ("--noise-floor", f.to_path_buf())))
    {
        owned.push(flag.into());
        owned.push(path.into());
    }
    let args: Vec<&dyn AsRef<std::ffi::OsStr>> = owned.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>).collect();
    run(&binary("karpa"), &args)
}

/// Prepares micro's data in `tmp/data` and proves `patch` into `tmp/bundle`.
fn prove_on_micro(repo: &Path, patch: &Path, tmp: &Path, rationale: &str) -> (PathBuf, PathBuf) {
    let data = micro_data(tmp);
    let why = tmp.join("why.md");
    std::fs::write(&why, rationale).unwrap();
    let bundle = tmp.join("bundle");
    run_prove(repo, patch, &data.join("public"), &why, &bundle).ok();
    (data, bundle)
}

#[test]
fn prove_builds_the_patched_recipe_and_seals_a_verifiable_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = recipe_repo(tmp.path());
    let patch = lr_patch(&repo, tmp.path());
    let (data, bundle) =
        prove_on_micro(&repo, &patch, tmp.path(), "A higher peak learning rate suits a model this small.\n");

    let verify = run(&binary("karpa"), &[&"bundle", &"verify", &bundle]).ok();
    assert!(verify.stdout.contains("all hold"), "{}", verify.stdout);

    let manifest: proof::bundle::BundleManifest =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.king_tag, "recipe-v0.1.0");
    assert_eq!(manifest.king_commit, git(&repo, &["rev-parse", "recipe-v0.1.0^{commit}"]).trim());
    assert_eq!(manifest.miner_hotkey, "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY");
    // git itself agrees on the patched tree.
    git(&repo, &["apply", "--cached", patch.to_str().unwrap()]);
    assert_eq!(manifest.patched_tree, git(&repo, &["write-tree"]).trim());
    git(&repo, &["reset", "-q"]);

    // The bundle was trained by the patched recipe: its peak learning rate is 5e-3.
    let log = proof::log::parse_log(&std::fs::read_to_string(bundle.join("log.jsonl")).unwrap()).unwrap();
    let peak = proof::log::steps(&log).map(|s| s.lr).fold(0.0, f64::max);
    assert!((peak - 5e-3).abs() < 1e-12, "peak lr {peak}");
    assert!(bundle.join("checkpoints/step-40.safetensors").exists());
    assert!(!tmp.path().join("bundle.partial").exists());

    judge_the_bundle(&repo, &patch, &bundle, &data, tmp.path());
}

/// `karpa judge` on the bundle `prove` made, then on the attacks of the catalog
/// that need a real bundle and a real repository.
fn judge_the_bundle(repo: &Path, patch: &Path, bundle: &Path, data: &Path, tmp: &Path) {
    let ledger = tmp.join("ledger");
    let judge = |pr: &str, bundle: &Path| {
        let r = run(
            &binary("karpa"),
            &[&"judge", &"--repo", &repo, &"--pr", &pr, &"--bundle", &bundle, &"--ledger", &ledger, &"--json"],
        );
        assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
        r.json()
    };
    let codes = |v: &serde_json::Value| {
        v["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };

    // The honest PR: the patch committed on a branch.
    git(repo, &["checkout", "-q", "-b", "pr/1"]);
    git(repo, &["apply", patch.to_str().unwrap()]);
    git(repo, &["commit", "-q", "-am", "faster lr"]);
    git(repo, &["checkout", "-q", "main"]);
    let v = judge("pr/1", bundle);
    assert_eq!(v["class"], "error", "{v:#}"); // every integrity stage passed; no hidden eval yet
    assert_eq!(v["stages"].as_array().unwrap().iter().filter(|s| s["passed"] == true).count(), 4, "{v:#}");
    // Judging the same bundle again is not a replay.
    assert_eq!(judge("pr/1", bundle)["class"], "error");

    // A packed bundle file judges the same.
    let file = tmp.join("bundle.tar");
    run(&binary("karpa"), &[&"bundle", &"pack", &bundle, &"--out", &file]).ok();
    assert_eq!(judge("pr/1", &file)["class"], "error");

    // The hidden evaluation, sandboxed: build the PR's recipe, probe, eval, replay.
    let secret = tmp.join("secret");
    std::fs::write(&secret, "a validator secret of some length").unwrap();
    let judge_eval_of = |bundle: &Path, floor: Option<&Path>| {
        let r = judge_with_hidden_eval(repo, "pr/1", bundle, &ledger, data, &secret, floor);
        assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
        r.json()
    };
    let judge_eval = |floor: Option<&Path>| judge_eval_of(bundle, floor);
    let v = judge_eval(None);
    assert_eq!(v["class"], "error", "{v:#}"); // evaluated, but no noise floor for this king yet
    let bpb = v["eval"]["hidden_bpb"].as_f64().expect("a hidden bpb");
    assert!(bpb > 1.0 && bpb < 8.0, "{bpb}");
    assert_eq!(v["eval"]["replay_max_abs_diff"].as_f64(), Some(0.0), "{v:#}");
    // The harness's own model time: positive, and inside the sandboxed processes' wall time.
    let secs = |k: &str| v["eval"][k].as_f64().unwrap_or_else(|| panic!("eval.{k} in {v:#}"));
    let compute = secs("compute_s");
    assert!(
        compute > 0.0 && compute < secs("probe_s") + secs("eval_s") + secs("causality_s") + secs("replay_s"),
        "{v:#}"
    );
    // The causality check ran on the bundle's score, and the honest recipe passed it exactly.
    let check = &v["eval"]["causality"];
    assert_eq!((check["passed"].as_bool(), check["max_abs_diff"].as_f64()), (Some(true), Some(0.0)), "{v:#}");
    assert!(check["pairs"].as_u64().unwrap() > 200 && check["positions"].as_u64().unwrap() > 4000, "{v:#}");
    let floor = |mean: f64| {
        let f = tmp.join(format!("floor-{mean}.json"));
        let values: Vec<f64> = [-0.001, 0.0, 0.001].iter().map(|d| mean + d).collect();
        std::fs::write(
            &f,
            serde_json::json!({"king": "recipe-v0.1.0", "config": "micro", "values": values}).to_string(),
        )
        .unwrap();
        f
    };
    let v = judge_eval(Some(&floor(bpb + 0.2)));
    assert_eq!(v["class"], "crowned", "{v:#}");
    assert!((v["decision"]["gain"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    // The guard retrained the challenger three times, with seeds of the validator's choosing.
    let c = &v["confirmation"];
    assert_eq!(c["passed"], true, "{v:#}");
    let seeds: Vec<u64> = c["seed_offsets"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
    let distinct: std::collections::BTreeSet<_> = seeds.iter().collect();
    assert!(seeds.len() == 3 && distinct.len() == 3 && seeds.iter().all(|s| *s >= 1 << 40), "{c}");
    let confirmed: Vec<f64> = c["hidden_bpb"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
    // Other seeds, other numbers, but the same recipe: micro's seed spread is
    // about 0.07 bpb, so 0.35 is five of it (0.2 was seen exceeded: 0.207).
    assert!(confirmed.iter().all(|b| *b != bpb && (b - bpb).abs() < 0.35), "{bpb} vs {confirmed:?}");
    assert_eq!(judge_eval(Some(&floor(bpb - 0.5)))["class"], "failure");

    // The bot, on the same PR: webhook-free here (the job is queued directly), but
    // everything after is real — bundle download, mirror, sandboxed eval, the
    // guard's runs, the crown on (fake) GitHub.
    bot_crowns_the_pr(repo, &file, data, &secret, &floor(bpb + 0.2));
    // A judgment waiting for its king's floor, measured by the runners: two
    // crowns in a row, tests/tests/e2e/two_crowns.rs.

    // The local forge's crown through the CLI, a measured floor and the lineage
    // from a clone: tests/tests/e2e/mine.rs, on the pull request `karpa mine` opens.

    // A PR whose diff is not the bundle's patch.
    git(repo, &["checkout", "-q", "-b", "pr/2", "recipe-v0.1.0"]);
    let toml = repo.join("recipe/recipe.toml");
    std::fs::write(&toml, std::fs::read_to_string(&toml).unwrap().replacen("lr = 3e-3", "lr = 9e-3", 1)).unwrap();
    git(repo, &["commit", "-q", "-am", "another lr"]);
    git(repo, &["checkout", "-q", "main"]);
    let v = judge("pr/2", bundle);
    assert_eq!((v["class"].as_str(), codes(&v)), (Some("rejected"), vec!["diff.mismatch".to_string()]), "{v:#}");

    // A checkpoint swapped after signing.
    let swapped = tmp.join("swapped");
    copy_dir(bundle, &swapped);
    let ck = swapped.join("checkpoints/step-40.safetensors");
    let mut bytes = std::fs::read(&ck).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x55;
    std::fs::write(&ck, bytes).unwrap();
    let v = judge("pr/1", &swapped);
    assert_eq!((v["class"].as_str(), codes(&v)), (Some("rejected"), vec!["file.digest".to_string()]), "{v:#}");

    // The same run's nonce in a second, re-attested bundle (a miner claiming one
    // run twice): the second bundle is new, its nonce is not.
    let twice = tmp.join("twice");
    copy_dir(bundle, &twice);
    for f in ["manifest.json", "attestation.json", "miner.sig.json"] {
        std::fs::remove_file(twice.join(f)).unwrap();
    }
    std::fs::write(twice.join("rationale.md"), "The same run, claimed again.\n").unwrap();
    let m: proof::bundle::BundleManifest =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    let nonce: [u8; 32] = std::array::from_fn(|i| u8::from_str_radix(&m.nonce[2 * i..2 * i + 2], 16).unwrap());
    let claims = proof::bundle::RunClaims {
        king_tag: m.king_tag.clone(),
        king_commit: m.king_commit.clone(),
        patched_tree: m.patched_tree.clone(),
        config: m.config.clone(),
        seed: m.seed,
        harness_digest: m.harness_digest.clone(),
        miner_hotkey: m.miner_hotkey.clone(),
        github_login: m.github_login.clone(),
        calibration: proof::intoto::CalibrationSummary {
            device: "cpu".into(),
            matmul_2048_fp32_ms: 80.0,
            h100_equivalence: 0.006,
        },
        started_at: "2026-11-26T06:00:00Z".into(),
        finished_at: "2026-11-26T06:01:00Z".into(),
        log_chain: proof::intoto::log_chain(&std::fs::read_to_string(twice.join("log.jsonl")).unwrap(), 64),
        tier: "software".into(),
    };
    let again = proof::bundle::assemble(&twice, &claims, &proof::dsse::generate_key().unwrap(), nonce).unwrap();
    proof::bundle::sign_as_miner(&twice, &again, &proof::hotkey::keypair_from_uri("//Alice").unwrap()).unwrap();
    assert_ne!(again.digest(), m.digest());
    let v = judge("pr/1", &twice);
    assert_eq!((v["class"].as_str(), codes(&v)), (Some("rejected"), vec!["attestation.nonce".to_string()]), "{v:#}");

    // The same change again in a bundle with a fresh nonce: every proof holds,
    // but it is a duplicate — no second crown from re-rolling.
    let fresh: [u8; 32] = std::array::from_fn(|i| nonce[i] ^ 0xa5);
    let m2 = proof::bundle::assemble(&twice, &claims, &proof::dsse::generate_key().unwrap(), fresh).unwrap();
    proof::bundle::sign_as_miner(&twice, &m2, &proof::hotkey::keypair_from_uri("//Alice").unwrap()).unwrap();
    let v = judge_eval_of(&twice, Some(&floor(bpb + 0.2)));
    assert_eq!((v["class"].as_str(), codes(&v)), (Some("failure"), vec!["decision.duplicate".to_string()]), "{v:#}");

    // A stale base: the king moves on before the PR is judged.
    std::fs::write(repo.join("NEWS.md"), "v0.1.1\n").unwrap();
    git(repo, &["add", "NEWS.md"]);
    git(repo, &["commit", "-q", "-m", "release"]);
    git(repo, &["tag", "-a", "recipe-v0.1.1", "-m", "recipe v0.1.1"]);
    let v = judge("pr/1", bundle);
    assert_eq!((v["class"].as_str(), codes(&v)), (Some("stale"), vec!["base.stale".to_string()]), "{v:#}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Runs `karpa prove` for config micro as //Alice, building into the shared
/// recipe target folder.
pub(crate) fn run_prove(repo: &Path, patch: &Path, data: &Path, rationale: &Path, out: &Path) -> karpa_tests::Run {
    let root = workspace_root();
    run(
        &binary("karpa"),
        &[
            &"prove",
            &"--repo",
            &repo,
            &"--patch",
            &patch,
            &"--config",
            &"micro",
            &"--data",
            &data,
            &"--hotkey",
            &"//Alice",
            &"--github-login",
            &"octo",
            &"--rationale",
            &rationale,
            &"--out",
            &out,
            &"--target-dir",
            &root.join("target/recipes"),
            &"--libtorch",
            &root.join(".karpa/libtorch"),
        ],
    )
}

#[test]
fn prove_refuses_a_patch_to_the_harness_before_doing_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = recipe_repo(tmp.path());
    let eval = repo.join("trainer/src/eval.rs");
    std::fs::write(&eval, std::fs::read_to_string(&eval).unwrap().replace("LN_2", "LN_10")).unwrap();
    let patch = tmp.path().join("cheat.diff");
    std::fs::write(&patch, git(&repo, &["diff"])).unwrap();
    std::fs::write(tmp.path().join("why.md"), "trust me").unwrap();
    let out = tmp.path().join("bundle");
    let r = run_prove(&repo, &patch, tmp.path(), &tmp.path().join("why.md"), &out);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("trainer/src/eval.rs") && r.stderr.contains("outside the patchable paths"),
        "{}",
        r.stderr
    );
    assert!(!out.exists() && !tmp.path().join("bundle.partial").exists());
}

/// What miner code might try, during training (`train_step`), the probe, the
/// hidden eval and the causality check (`logits`) or at build (`new`): each is
/// refused before anything runs, naming the call and its line. (What the scan
/// cannot see, Landlock and the sandbox stop at run time: trainer/tests/confine.rs,
/// tests/tests/trainer_confined.rs and the sandbox's own tests.)
#[test]
fn prove_refuses_recipe_code_the_judge_would_reject() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = recipe_repo(tmp.path());
    let model = repo.join("recipe/src/model.rs");
    let text = std::fs::read_to_string(&model).unwrap();
    let hooks = [
        "    fn logits(&self, inputs: &Tensor) -> Tensor {\n",
        "    fn train_step(&mut self, inputs: &Tensor, targets: &Tensor, ctx: &StepCtx) -> StepStats {\n",
        "    pub fn new(hp: HParams, spec: ModelSpec) -> Self {\n",
    ];
    let attacks = [
        ("scan.io", r#"let _ = std::fs::read("/validator/hidden/hidden-00000.bin");"#),
        ("scan.io", r#"let _ = Tensor::from_file("/validator/hidden/hidden-00000.bin", false, None, Kind::Int16);"#),
        ("scan.io", r#"let _ = Tensor::f_from_file("/proc/1/environ", false, None, Kind::Uint8);"#),
        ("scan.io", r#"let _ = tch::vision::image::load_dir("/data/public", 1, 1);"#),
        ("scan.io", r#"let _ = std::fs::read_to_string("/proc/self/maps");"#),
        ("scan.io", r#"let _ = std::fs::write("/tmp/karpa-leak", b"x");"#),
        ("scan.io", r#"let _ = std::env::var("KARPA_DATABASE_URL");"#),
        ("scan.io", r#"let _ = std::process::Command::new("sh").arg("-c").arg("id").status();"#),
        ("scan.io", r#"std::thread::spawn(|| loop { std::hint::spin_loop() });"#),
        ("scan.ffi", r#"extern "C" { fn setuid(uid: u32) -> i32; }"#),
        ("scan.unsafe", r#"let _ = unsafe { std::ptr::read_volatile(0x1000 as *const u8) };"#),
    ];
    std::fs::write(tmp.path().join("why.md"), "better data").unwrap();
    for (i, (code, attack)) in attacks.iter().enumerate() {
        let hook = hooks[i % hooks.len()];
        assert!(text.contains(hook), "{hook}");
        std::fs::write(&model, text.replacen(hook, &format!("{hook}        {attack}\n"), 1)).unwrap();
        let patch = tmp.path().join(format!("attack-{i}.diff"));
        std::fs::write(&patch, git(&repo, &["diff"])).unwrap();
        git(&repo, &["checkout", "--", "."]);
        let out = tmp.path().join(format!("bundle-{i}"));
        let r = run_prove(&repo, &patch, tmp.path(), &tmp.path().join("why.md"), &out);
        assert_eq!(r.code, 2, "{attack}: {}", r.stderr);
        assert!(
            r.stderr.contains("judge would reject")
                && r.stderr.contains("recipe/src/model.rs:")
                && r.stderr.contains(code),
            "{attack}: {}",
            r.stderr
        );
        assert!(!out.exists());
    }
}

const APP_REPO: &str = "karpa-net/recipe";

/// PR 1 on a fake GitHub, with the bundle at `bundle_file` as its locator, whose
/// git remote (`<name>.git` beside the bundle) is a bare clone of `repo`:
/// (GitHub, the PR head, the remote, the bundle's manifest).
fn app_with_pr(
    repo: &Path,
    bundle_file: &Path,
    name: &str,
) -> (karpa_tests::fake_github::FakeGitHub, String, PathBuf, proof::bundle::BundleManifest) {
    use karpa_tests::fake_github::RepoState;
    const REPO: &str = APP_REPO;
    let gh = karpa_tests::fake_github_for_app(REPO, 1);
    let head = git(repo, &["rev-parse", "pr/1"]).trim().to_string();
    let king = git(repo, &["rev-parse", "recipe-v0.1.0^{commit}"]).trim().to_string();
    // GitHub's side of git: a bare repository, as every server has.
    let remote = bundle_file.parent().unwrap().join(format!("{name}.git"));
    git(repo, &["clone", "-q", "--bare", repo.to_str().unwrap(), remote.to_str().unwrap()]);
    git(&remote, &["update-ref", "refs/pull/1/head", &head]);
    let bytes = std::fs::read(bundle_file).unwrap();
    let sha = proof::sha256_file(bundle_file).unwrap();
    let manifest: proof::bundle::BundleManifest =
        serde_json::from_slice(&std::fs::read(tmp_bundle_manifest(bundle_file)).unwrap()).unwrap();
    gh.add_file("bundle.tar", bytes);
    let locator = proof::locator::Locator {
        url: "https://bundles.example/bundle.tar".into(),
        sha256: sha,
        bundle_digest: manifest.digest(),
    };
    let body = format!("A higher peak learning rate.\n\n{}", locator.render());
    gh.add_pull(
        REPO,
        serde_json::json!({"number": 1, "state": "open", "body": body,
        "head": {"sha": head}, "base": {"ref": "main"}}),
    );
    gh.ledger
        .lock()
        .unwrap()
        .repos
        .insert(REPO.into(), RepoState { main: king.clone(), commits: vec![king], ..Default::default() });
    (gh, head, remote, manifest)
}

/// The validator's hidden evaluation on micro's `data`, with a floor file and a rule file when given.
pub(crate) fn validator(
    data: &Path,
    secret: &Path,
    floor: Option<&Path>,
    rule: &Path,
) -> (
    karpa_bot::judge::evaluate::EvalSetup,
    Option<karpa_bot::judge::decision::NoiseFloor>,
    karpa_bot::judge::decision::DecisionRule,
) {
    let paths = karpa_bot::judge_cmd::EvalPaths {
        data: data.join("public"),
        hidden: data.join("hidden"),
        secret_file: secret.to_path_buf(),
        target_dir: workspace_root().join("target/recipes"),
        noise_floor: floor.map(Path::to_path_buf),
        rule: Some(rule.to_path_buf()),
        libtorch: None,
        device: Default::default(),
    };
    karpa_bot::judge_cmd::setup(&workspace_root(), &paths).unwrap()
}

/// The webhook's judge job for PR 1 at `head`, queued.
async fn queue_judgment(pool: &sqlx::PgPool, head: &str) {
    use karpa_bot::db::jobs::{self, NewJob};
    let payload = serde_json::json!({"repo": APP_REPO, "installation": 1, "pr": 1, "head_sha": head});
    let job = NewJob { kind: "judge".into(), dedupe_key: format!("judge:{APP_REPO}#1@{head}"), payload };
    jobs::enqueue(pool, &job).await.unwrap();
}

/// The judge job on PR 1 of a fake GitHub whose git remote is a bare clone of
/// `repo`: crowned, merged, tagged recipe-v0.1.1, released and noted; the new
/// king's floor queued for the runners.
fn bot_crowns_the_pr(repo: &Path, bundle_file: &Path, data: &Path, secret: &Path, floor: &Path) {
    const REPO: &str = APP_REPO;
    let (gh, head, remote, manifest) = app_with_pr(repo, bundle_file, "github-remote");
    // One confirmation run (the default is three): the guard's jobs, at a third of the cost.
    let rule = bundle_file.parent().unwrap().join("rule-crown.toml");
    std::fs::write(&rule, "confirmation_runs = 1\n").unwrap();
    let (eval, floor, rule) = validator(data, secret, Some(floor), &rule);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = karpa_tests::fresh_database().await;
        queue_judgment(&pool, &head).await;
        let mut settings = karpa_tests::judge_settings(
            &bundle_file.parent().unwrap().join("bot-state"),
            &remote.to_string_lossy(),
            &gh,
        );
        settings.eval = Some(eval);
        settings.noise_floors = floor.into_iter().collect();
        settings.rule = rule;
        // GitHub fails the CHANGELOG commit once, after the merge: the job's retry
        // must finish the release it began, on a PR that is merged by then.
        settings.max_attempts = 2;
        gh.ledger.lock().unwrap().fail_once.push("PUT contents".into());
        settings.public_url = Some("https://karpa.example".into());
        let services = karpa_tests::services(pool.clone(), &gh, settings);
        // Until the job is settled: its retry waits out a short backoff.
        for _ in 0..200 {
            karpa_bot::jobs::run_one(&services, "w").await.unwrap();
            let state: String =
                sqlx::query_scalar("SELECT state FROM jobs WHERE kind = 'judge'").fetch_one(&pool).await.unwrap();
            if state != "queued" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let (state, err, attempts): (String, Option<String>, i32) =
            sqlx::query_as("SELECT state, last_error, attempts FROM jobs WHERE kind = 'judge'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((state.as_str(), attempts), ("done", 2), "{err:?}");
        // It waited for the guard's run with its hidden evaluation kept in the
        // job, and the verdict is that evaluation, not a second one.
        let payload: serde_json::Value =
            sqlx::query_scalar("SELECT payload FROM jobs WHERE kind = 'judge'").fetch_one(&pool).await.unwrap();
        let kept = &payload["prior_eval"];
        assert_eq!(kept["king"], "recipe-v0.1.0", "{payload:#}");
        assert_eq!(kept["bundle_digest"], manifest.digest().to_string());
        let text = gh.check_runs()[0].state["output"]["text"].as_str().unwrap().to_string();
        let verdict: serde_json::Value =
            serde_json::from_str(text.split("```json\n").nth(1).and_then(|t| t.split("\n```").next()).unwrap())
                .unwrap();
        assert_eq!(verdict["eval"], kept["eval"], "the evaluation ran again");
        // The new king's floor is queued for the runners, one job per seed of the rule.
        let floor_jobs: Vec<(String,)> =
            sqlx::query_as("SELECT dedupe_key FROM jobs WHERE kind = 'floor-run' AND state = 'queued' ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(floor_jobs.len(), 10, "{floor_jobs:?}");
        assert_eq!(floor_jobs[0].0, format!("floor:{REPO}@recipe-v0.1.1/micro/cpu-f32/seed-0"));
        // The guard's run was a job of its own, stored once.
        let runs: Vec<(i32, Option<f64>, String)> =
            sqlx::query_as("SELECT run, hidden_bpb, runner FROM confirmation_runs ORDER BY run")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), [0], "{runs:?}");
        assert!(runs.iter().all(|r| r.1.is_some_and(f64::is_finite) && r.2 == "w"), "{runs:?}");
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'confirm-run' AND state = 'done'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(done, 1);
        let kings: Vec<(String,)> =
            sqlx::query_as("SELECT tag FROM kings ORDER BY crowned_at").fetch_all(&pool).await.unwrap();
        assert_eq!(kings, [("recipe-v0.1.0".to_string(),), ("recipe-v0.1.1".to_string(),)]);
        let svg = karpa_bot::db::curves::get(&pool, manifest.digest().as_str()).await.unwrap().expect("a curve");
        assert!(svg.starts_with("<svg") && svg.contains("train loss"), "{svg}");
        // The corpus holds the crown: the real bundle's facts, the verdict, the new king.
        let (class, login, bpb, points): (String, String, f64, i64) = sqlx::query_as(
            "SELECT s.class, s.github_login, s.challenger_bpb, jsonb_array_length(b.train_curve)::bigint
             FROM submissions s JOIN bundles b ON b.digest = s.bundle_digest",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((class.as_str(), login.as_str()), ("crowned", "octo"));
        assert!(bpb.is_finite() && points > 2, "{bpb} {points}");
        let (by, runs): (Option<String>, Option<i32>) =
            sqlx::query_as("SELECT crowned_by, runs FROM kings WHERE tag = 'recipe-v0.1.1'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(by.as_deref(), Some("octo"));
        assert!(runs.unwrap_or(0) >= 2, "its own run and the guard's: {runs:?}");
    });
    gh.assert_clean();
    let runs = gh.check_runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state["conclusion"], "success", "{}", runs[0].state);
    let image = &runs[0].state["output"]["images"][0];
    assert_eq!(image["image_url"], format!("https://karpa.example/curves/{}.svg", manifest.digest()), "{image}");
    let summary = runs[0].state["output"]["summary"].as_str().unwrap();
    assert!(summary.contains("released as recipe-v0.1.1") && summary.contains("validator seeds"), "{summary}");
    assert!(summary.contains("| ↳ of which model compute |"), "the hidden eval's cost: {summary}");
    assert!(summary.contains("[in the corpus](https://karpa.example/submissions/ks-"), "{summary}");
    let text = runs[0].state["output"]["text"].as_str().unwrap();
    assert!(text.contains("Signed by validator `5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY`"), "{text}");
    let l = gh.ledger.lock().unwrap();
    assert!(l.repos[REPO].tag_refs.contains_key("recipe-v0.1.1") && l.repos[REPO].releases.len() == 1);
    let release = l.repos[REPO].releases[0]["body"].as_str().unwrap();
    for part in
        ["[in the corpus](https://karpa.example/submissions/ks-", "[bundle](https://bundles.example/", "### Rationale"]
    {
        assert!(release.contains(part), "{part} not in the release: {release}");
    }
    assert_eq!(l.pulls[REPO][0]["merged"], true);
    // The crown note went to the git remote, on the PR head and on the release commit.
    let release = l.repos[REPO].main.clone();
    for on in [&head, &release] {
        let note = git(&remote, &["notes", "--ref=karpa", "show", on]);
        let note: karpa_bot::lineage::note::CrownNote = serde_json::from_str(&note).unwrap();
        assert_eq!((note.tag.as_str(), note.pr.as_str(), note.head.as_str()), ("recipe-v0.1.1", "#1", head.as_str()));
        assert_eq!(note.bundle_url.as_deref(), Some("https://bundles.example/bundle.tar"));
        assert_eq!(note.bundle_digest, manifest.digest().to_string());
        // Signed by the validator's hotkey, over this very note.
        let dev = karpa_bot::lineage::trust::TrustedSet::parse(karpa_tests::TEST_TRUSTED_SET).unwrap();
        assert_eq!(dev.check(&note, "recipe-v0.1.1"), (vec!["dev validator (//Alice)".to_string()], vec![]));
    }
}

/// The manifest of the bundle packed at `file` (its folder sits next to it).
fn tmp_bundle_manifest(file: &Path) -> PathBuf {
    file.parent().unwrap().join("bundle/manifest.json")
}
