//! The bot as users run it — the `karpa serve` binary — killed with SIGKILL in
//! the middle of a judgment and started again: the accepted delivery is not
//! lost, the job is re-claimed once its lease lapses, and GitHub sees exactly
//! one check run, completed exactly once.

use karpa_bot::server::webhook::sign;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const REPO: &str = "karpa-net/recipe";
const SECRET: &str = "a webhook secret of decent length";

/// One HTTP/1.1 request over a fresh connection; (status, body).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

fn deliver(port: u16, event: &str, guid: &str, payload: &Value) -> u16 {
    let body = serde_json::to_vec(payload).unwrap();
    let headers = [
        ("x-github-event", event.to_string()),
        ("x-github-delivery", guid.to_string()),
        ("x-hub-signature-256", sign(SECRET.as_bytes(), &body)),
        ("content-type", "application/json".to_string()),
    ];
    http(port, "POST", "/webhook", &headers, &body).expect("the bot answers").0
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_bot(port: u16, db: &str, gh: &str, dir: &Path) -> Child {
    let child = Command::new(karpa_tests::binary("karpa"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            db,
            "--app-id",
            "4242",
            "--validator-hotkey",
            karpa_tests::TEST_VALIDATOR,
            "--validator-tag-key",
            karpa_tests::TEST_VALIDATOR,
        ])
        .args(["--github-api", gh, "--lease-seconds", "2", "--workers", "1", "--webhook-secret-file"])
        .arg(dir.join("secret"))
        .arg("--app-key-file")
        .arg(karpa_tests::fixture("github-app.test-key.pem"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .spawn()
        .unwrap();
    wait_for("the bot's /healthz", Duration::from_secs(30), || {
        http(port, "GET", "/healthz", &[], b"").is_some_and(|(s, _)| s == 200)
    });
    child
}

#[test]
fn sigkill_mid_judgment_then_restart_makes_one_check_run() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("secret"), SECRET).unwrap();
    let gh = karpa_tests::fake_github_for_app(REPO, 51234567);
    let fixture = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(karpa_tests::fixture(&format!("webhooks/{name}"))).unwrap()).unwrap()
    };
    let mut opened = fixture("pull_request.opened.json");
    opened["pull_request"]["body"] = json!("No locator in this one.");
    let mut pr = opened["pull_request"].clone();
    pr["state"] = json!("open");
    gh.add_pull(REPO, pr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(karpa_tests::fresh_database_url());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    // GitHub is slow today: the judgment will be in flight when the bot dies.
    gh.ledger.lock().unwrap().patch_delay = Some(Duration::from_secs(3));
    let mut bot = start_bot(port, &db, &gh.url, tmp.path());
    assert_eq!(deliver(port, "installation", "d-1", &fixture("installation.created.json")), 202);
    assert_eq!(deliver(port, "pull_request", "d-2", &opened), 202);
    wait_for("the first check-run update", Duration::from_secs(30), || gh.ledger.lock().unwrap().patches_seen >= 1);
    bot.kill().unwrap(); // SIGKILL
    bot.wait().unwrap();
    gh.ledger.lock().unwrap().patch_delay = None;

    let mut bot = start_bot(port, &db, &gh.url, tmp.path());
    // A redelivery after the restart is still a duplicate.
    assert_eq!(deliver(port, "pull_request", "d-2", &opened), 202);
    wait_for("the check run to complete", Duration::from_secs(60), || {
        gh.check_runs().first().is_some_and(|r| r.statuses.last().map(String::as_str) == Some("completed"))
    });
    // The job is marked done just after GitHub hears the conclusion: wait for that too.
    let pool = rt.block_on(sqlx::PgPool::connect(&db)).unwrap();
    wait_for("the judge job to be done", Duration::from_secs(30), || {
        let done: i64 = rt
            .block_on(
                sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'done' AND kind = 'judge'")
                    .fetch_one(&pool),
            )
            .unwrap();
        done == 1
    });
    bot.kill().unwrap();
    bot.wait().unwrap();

    gh.assert_clean();
    let runs = gh.check_runs();
    assert_eq!(runs.len(), 1, "one check run across the crash");
    let run = &runs[0];
    assert_eq!(run.statuses.first().map(String::as_str), Some("queued"));
    assert_eq!(run.statuses.iter().filter(|s| *s == "completed").count(), 1, "{:?}", run.statuses);
    assert_eq!(run.state["conclusion"], "failure");
    assert!(run.state["output"]["summary"].as_str().unwrap().contains("intake.locator"));
    let (jobs, attempts): (i64, i32) = rt.block_on(async {
        let pool = sqlx::PgPool::connect(&db).await.unwrap();
        sqlx::query_as("SELECT count(*), max(attempts) FROM jobs WHERE state = 'done' AND kind = 'judge'")
            .fetch_one(&pool)
            .await
            .unwrap()
    });
    assert_eq!((jobs, attempts), (1, 2), "one job, finished on its second claim");
}
