//! Three `karpa runner` processes, as validators run them on their GPU hosts
//! (here on the CPU, on micro), draining one queue of floor, confirmation and
//! judge jobs (two seeds of the king's floor, one run of a challenger, and the
//! judgment of a pull request whose bundle was trained on another commit) while
//! one of them is killed with SIGKILL in the middle of a run: its lease lapses,
//! another runner redoes that run with the same seed, every run is stored
//! exactly once, and the judgment is posted once, stale for its base.

use karpa_bot::db::confirmations::ConfirmRunJob;
use karpa_bot::db::floors::{FloorKey, FloorRunJob};
use karpa_bot::db::jobs;
use karpa_tests::{git, micro_data, recipe_repo};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn runner(i: usize, db: &str, gh: &str, dir: &Path, remote: &Path, data: &Path) -> Child {
    let rewrite = format!("https://bundles.example/={gh}/files/");
    let log = std::fs::File::create(dir.join(format!("runner-{i}.log"))).unwrap();
    Command::new(karpa_tests::binary("karpa"))
        .args([
            "runner",
            "--database-url",
            db,
            "--app-id",
            "4242",
            "--validator-hotkey",
            karpa_tests::TEST_VALIDATOR,
            "--validator-tag-key",
            karpa_tests::TEST_VALIDATOR,
            "--github-api",
            gh,
            "--lease-seconds",
            "8",
        ])
        .arg("--app-key-file")
        .arg(karpa_tests::fixture("github-app.test-key.pem"))
        .arg("--git-url")
        .arg(remote)
        .arg("--state-dir")
        .arg(dir.join(format!("state-{i}")))
        .arg("--data")
        .arg(data.join("public"))
        .arg("--hidden")
        .arg(data.join("hidden"))
        .arg("--secret-file")
        .arg(dir.join("secret"))
        .arg("--target-dir")
        .arg(karpa_tests::workspace_root().join("target/recipes"))
        .arg("--rule")
        .arg(dir.join("rule.toml"))
        .arg("--bundle-url-rewrite")
        .arg(rewrite)
        .env("RUST_LOG", "karpa_bot=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[test]
fn three_runners_one_killed_mid_run_store_every_run_once() {
    const REPO: &str = "karpa-net/recipe";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let repo = recipe_repo(dir);
    let data = micro_data(dir);
    std::fs::write(dir.join("secret"), "a validator secret of some length").unwrap();
    std::fs::write(dir.join("rule.toml"), "floor_seeds = 2\n").unwrap();
    // The forge's side of git; the challenger of the confirmation run is the king's own tree.
    let remote = dir.join("remote.git");
    git(dir, &["clone", "-q", "--bare", repo.to_str().unwrap(), remote.to_str().unwrap()]);
    let king = git(&repo, &["rev-parse", "recipe-v0.1.0^{commit}"]).trim().to_string();
    git(&remote, &["update-ref", "refs/pull/1/head", &king]);
    let gh = karpa_tests::fake_github_for_app(REPO, 1);
    // PR 2: a real signed bundle, but trained (on paper) against another commit than the king's.
    let manifest = karpa_tests::make_bundle(&dir.join("bundle"));
    karpa_bot::archive::pack(&dir.join("bundle"), &dir.join("bundle.tar")).unwrap();
    gh.add_file("bundle.tar", std::fs::read(dir.join("bundle.tar")).unwrap());
    let locator = proof::locator::Locator {
        url: "https://bundles.example/bundle.tar".into(),
        sha256: proof::sha256_file(&dir.join("bundle.tar")).unwrap(),
        bundle_digest: manifest.digest(),
    };
    git(&remote, &["update-ref", "refs/pull/2/head", &king]);
    gh.add_pull(
        REPO,
        serde_json::json!({"number": 2, "state": "open", "body": format!("Faster.\n\n{}", locator.render()),
                           "head": {"sha": king}, "base": {"ref": "main"}}),
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(karpa_tests::fresh_database_url());
    let pool = rt.block_on(karpa_bot::db::connect(&db)).unwrap();
    let floor = FloorKey {
        repo: REPO.into(),
        king: "recipe-v0.1.0".into(),
        config: "micro".into(),
        device_class: "cpu-f32".into(),
    };
    let confirm = ConfirmRunJob {
        repo: REPO.into(),
        installation: 1,
        pr: 1,
        head_sha: king.clone(),
        bundle_digest: "d".repeat(64),
        config: "micro".into(),
        king: "recipe-v0.1.0".into(),
        device_class: "cpu-f32".into(),
        run: 0,
    };
    rt.block_on(async {
        for seed in 0..2 {
            jobs::enqueue(&pool, &FloorRunJob { key: floor.clone(), installation: 1, seed }.job()).await.unwrap();
        }
        jobs::enqueue(&pool, &confirm.job()).await.unwrap();
        let payload = serde_json::json!({"repo": REPO, "installation": 1, "pr": 2, "head_sha": king});
        let judge = jobs::NewJob { kind: "judge".into(), dedupe_key: format!("judge:{REPO}#2@{king}"), payload };
        jobs::enqueue(&pool, &judge).await.unwrap();
    });

    let mut runners: Vec<Child> = (0..3).map(|i| runner(i, &db, &gh.url, dir, &remote, &data)).collect();
    // Wait for a run in flight, let it get going, and kill its runner.
    let holder = |pool: &sqlx::PgPool| {
        rt.block_on(
            sqlx::query_scalar::<_, String>("SELECT leased_by FROM jobs WHERE state = 'running' ORDER BY id LIMIT 1")
                .fetch_optional(pool),
        )
        .unwrap()
    };
    let started = Instant::now();
    let victim = loop {
        if let Some(worker) = holder(&pool) {
            break worker;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no runner claimed a job");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(4));
    let pid: u32 = victim.split('-').rev().nth(1).unwrap().parse().unwrap();
    let killed = runners.iter().position(|c| c.id() == pid).expect("the victim is one of ours");
    let mut child = runners.remove(killed);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The others drain the queue, the killed runner's job included.
    let done = |pool: &sqlx::PgPool| {
        rt.block_on(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE state = 'done'").fetch_one(pool))
            .unwrap()
    };
    while done(&pool) < 4 {
        let dead: i64 =
            rt.block_on(sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'dead'").fetch_one(&pool)).unwrap();
        assert_eq!(dead, 0, "a job died: see {}/runner-*.log", dir.display());
        assert!(started.elapsed() < Duration::from_secs(1200), "the queue did not drain");
        std::thread::sleep(Duration::from_millis(500));
    }
    for mut r in runners {
        r.kill().unwrap();
        r.wait().unwrap();
    }

    rt.block_on(async {
        let floor_runs: Vec<(i64, f64, String)> =
            sqlx::query_as("SELECT seed, hidden_bpb, runner FROM floor_runs ORDER BY seed")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(floor_runs.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1], "{floor_runs:?}");
        assert!(floor_runs.iter().all(|r| r.1.is_finite() && r.2 != victim), "{floor_runs:?}");
        let confirmed: Vec<(i32, Option<f64>, String)> =
            sqlx::query_as("SELECT run, hidden_bpb, runner FROM confirmation_runs").fetch_all(&pool).await.unwrap();
        assert_eq!(confirmed.len(), 1, "{confirmed:?}");
        assert!(confirmed[0].1.is_some_and(f64::is_finite) && confirmed[0].2 != victim, "{confirmed:?}");
        // The victim's job was claimed twice (its try and the redo); the rest once.
        let attempts: Vec<(String, i32)> =
            sqlx::query_as("SELECT dedupe_key, attempts FROM jobs ORDER BY id").fetch_all(&pool).await.unwrap();
        assert_eq!(attempts.iter().filter(|a| a.1 == 2).count(), 1, "{attempts:?}");
        assert!(attempts.iter().all(|a| a.1 == 1 || a.1 == 2), "{attempts:?}");
        // Two seeds of one floor differ; the same floor run is never stored twice (the key).
        assert!(floor_runs[0].1 != floor_runs[1].1);
        // The judgment: recorded once, in the corpus, with its verdict.
        let verdicts: Vec<(String,)> = sqlx::query_as("SELECT class FROM verdicts").fetch_all(&pool).await.unwrap();
        assert_eq!(verdicts, [("stale".to_string(),)]);
    });
    // Posted once on PR 2's head: stale, for the base the bundle was trained on.
    let checks = gh.check_runs();
    assert_eq!(checks.len(), 1, "one check run for PR 2");
    let check = &checks[0].state;
    assert_eq!(
        (check["status"].as_str(), check["conclusion"].as_str()),
        (Some("completed"), Some("neutral")),
        "{check:#}"
    );
    assert_eq!(check["head_sha"].as_str(), Some(king.as_str()));
    assert!(check["output"]["summary"].as_str().unwrap().contains("`base.stale`"), "{check:#}");
    gh.assert_clean();
}
