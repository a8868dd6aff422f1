//! The webhook against a real PostgreSQL: the real axum router, driven with
//! signed requests built from GitHub-shaped payload fixtures.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use karpa_bot::server::{router, webhook::sign, AppState};
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;

const APP_ID: i64 = 4242;
const SECRET: &[u8] = b"the current webhook secret";
const OLD_SECRET: &[u8] = b"the previous webhook secret";

fn fixture(name: &str) -> Value {
    let path = karpa_tests::workspace_root().join("tests/fixtures/webhooks").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

struct Bot {
    pool: PgPool,
    app: axum::Router,
}

impl Bot {
    async fn new() -> Bot {
        let pool = karpa_tests::fresh_database().await;
        let state = AppState::new(pool.clone(), vec![SECRET.to_vec(), OLD_SECRET.to_vec()], APP_ID, 1 << 20);
        Bot { pool, app: router(state) }
    }

    /// Sends `body` as event `event` with delivery `guid`, signed by `secret`
    /// (None: unsigned); returns the status and the JSON reply.
    async fn send(&self, event: &str, guid: &str, body: &[u8], secret: Option<&[u8]>) -> (StatusCode, Value) {
        let mut req = Request::post("/webhook")
            .header("x-github-event", event)
            .header("x-github-delivery", guid)
            .header("content-type", "application/json");
        if let Some(s) = secret {
            req = req.header("x-hub-signature-256", sign(s, body));
        }
        let resp = self.app.clone().oneshot(req.body(Body::from(body.to_vec())).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
        (status, v)
    }

    async fn deliver(&self, event: &str, guid: &str, payload: &Value) -> (StatusCode, Value) {
        self.send(event, guid, &serde_json::to_vec(payload).unwrap(), Some(SECRET)).await
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&self.pool).await.unwrap()
    }

    async fn installed(&self) {
        let (status, v) = self.deliver("installation", "guid-install", &fixture("installation.created.json")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    }
}

#[tokio::test]
async fn forged_unsigned_and_garbled_deliveries_write_nothing() {
    let bot = Bot::new().await;
    bot.installed().await;
    let body = serde_json::to_vec(&fixture("pull_request.opened.json")).unwrap();
    let (before_d, before_j) = (bot.count("deliveries").await, bot.count("jobs").await);

    for (secret, what) in [(None, "unsigned"), (Some(&b"a guessed secret"[..]), "forged")] {
        let (status, v) = bot.send("pull_request", "guid-1", &body, secret).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {v}");
        assert!(v["error"].as_str().unwrap().contains("X-Hub-Signature-256"), "{v}");
    }
    // A valid signature over another body: a replay with the payload changed.
    let mut other = fixture("pull_request.opened.json");
    other["pull_request"]["head"]["sha"] = json!("0000000000000000000000000000000000000000");
    let forged_sig = sign(SECRET, &body);
    let req = Request::post("/webhook")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "guid-2")
        .header("x-hub-signature-256", forged_sig)
        .body(Body::from(serde_json::to_vec(&other).unwrap()))
        .unwrap();
    assert_eq!(bot.app.clone().oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Signed but malformed, unknown, or missing headers: 4xx with a JSON error.
    let (s, v) = bot.send("pull_request", "guid-3", b"{not json", Some(SECRET)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = bot.send("pull_request", "guid-4", br#"{"action":"opened"}"#, Some(SECRET)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"].as_str().unwrap().contains("malformed pull_request payload"), "{v}");
    // An event the App does not handle is no failed delivery: 202, recorded nowhere.
    for (event, guid) in
        [("fork", "guid-5"), ("installation_target", "guid-5b"), ("push", "guid-5c"), ("issues", "guid-5d")]
    {
        let (s, v) = bot.send(event, guid, b"{}", Some(SECRET)).await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::ACCEPTED, Some("ignored")), "{event}: {v}");
        assert!(v["reason"].as_str().unwrap().contains(&format!("\"{event}\"")), "{v}");
    }
    let (s, _) = bot.send("pull_request", "", &body, Some(SECRET)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Too large: 413, JSON.
    let big = vec![b' '; 2 << 20];
    let (s, v) = bot.send("pull_request", "guid-6", &big, Some(SECRET)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"].is_string(), "{v}");

    assert_eq!((bot.count("deliveries").await, bot.count("jobs").await), (before_d, before_j));
}

#[tokio::test]
async fn a_repository_the_app_is_not_installed_on_is_refused() {
    let bot = Bot::new().await;
    let (s, v) = bot.deliver("pull_request", "guid-1", &fixture("pull_request.opened.json")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not installed on karpa-net/recipe"), "{v}");
    assert_eq!((bot.count("deliveries").await, bot.count("jobs").await), (0, 0));

    // Installed, then uninstalled: refused again.
    bot.installed().await;
    assert_eq!(
        bot.deliver("pull_request", "guid-2", &fixture("pull_request.opened.json")).await.0,
        StatusCode::ACCEPTED
    );
    let mut gone = fixture("installation.created.json");
    gone["action"] = json!("deleted");
    assert_eq!(bot.deliver("installation", "guid-3", &gone).await.0, StatusCode::ACCEPTED);
    let mut sync = fixture("pull_request.opened.json");
    sync["action"] = json!("synchronize");
    assert_eq!(bot.deliver("pull_request", "guid-4", &sync).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn duplicates_by_guid_and_by_content_make_one_job() {
    let bot = Bot::new().await;
    bot.installed().await;
    let pr = fixture("pull_request.opened.json");
    let (s, v) = bot.deliver("pull_request", "guid-a", &pr).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::ACCEPTED, Some("queued")), "{v}");
    // GitHub's redelivery: the same GUID.
    let (s, v) = bot.deliver("pull_request", "guid-a", &pr).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::ACCEPTED, Some("duplicate")), "{v}");
    // The same event under a new GUID (it happens): recorded, but no second job.
    let (s, v) = bot.deliver("pull_request", "guid-b", &pr).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::ACCEPTED, Some("duplicate")), "{v}");
    // Signed with the previous secret during a rotation: accepted too.
    let (s, v) = bot.send("pull_request", "guid-c", &serde_json::to_vec(&pr).unwrap(), Some(OLD_SECRET)).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::ACCEPTED, Some("duplicate")), "{v}");
    assert_eq!(bot.count("jobs").await, 1);
    let key: String = sqlx::query_scalar("SELECT dedupe_key FROM jobs").fetch_one(&bot.pool).await.unwrap();
    assert_eq!(
        key,
        "judge:karpa-net/recipe#7@4c1e3a1f1a9d9f5c4ad1f1f3b5f8e2c6a7d0b9e1/\
         3b9c358f36f0a31b6ad3e14f309c7cf198ac9246e8316f9ce543d5b19ac02b80"
    );

    // A new head is a new judgment; an edit pointing at a new bundle too.
    let mut sync = pr.clone();
    sync["action"] = json!("synchronize");
    sync["pull_request"]["head"]["sha"] = json!("5d2f4b2a2b0e0a6d5be2a2a4c6a9f3d7b8e1c0f2");
    assert_eq!(bot.deliver("pull_request", "guid-d", &sync).await.1["status"], "queued");
    let mut edited = sync.clone();
    edited["action"] = json!("edited");
    let body = edited["pull_request"]["body"].as_str().unwrap().replace("3b9c358f", "4b9c358f");
    edited["pull_request"]["body"] = json!(body);
    assert_eq!(bot.deliver("pull_request", "guid-e", &edited).await.1["status"], "queued");
    // Labels and the like are recorded and ignored.
    let mut labeled = pr.clone();
    labeled["action"] = json!("labeled");
    assert_eq!(bot.deliver("pull_request", "guid-f", &labeled).await.1["status"], "ignored");
    assert_eq!((bot.count("jobs").await, bot.count("deliveries").await), (3, 7));
}

#[tokio::test]
async fn commands_rerequests_pings_and_our_own_comments() {
    let bot = Bot::new().await;
    bot.installed().await;
    let (_, v) = bot.deliver("issue_comment", "g1", &fixture("issue_comment.created.json")).await;
    assert_eq!(v["status"], "queued", "{v}");
    let payload: Value =
        sqlx::query_scalar("SELECT payload FROM jobs WHERE kind = 'command'").fetch_one(&bot.pool).await.unwrap();
    assert_eq!((payload["command"].as_str(), payload["association"].as_str()), (Some("retry"), Some("MEMBER")));

    let mut ours = fixture("issue_comment.created.json");
    ours["comment"]["id"] = json!(2512345679u64);
    ours["comment"]["performed_via_github_app"] = json!({"id": APP_ID, "slug": "karpa-judge"});
    assert_eq!(bot.deliver("issue_comment", "g2", &ours).await.1["status"], "ignored");
    let mut chatter = fixture("issue_comment.created.json");
    chatter["comment"]["id"] = json!(2512345680u64);
    chatter["comment"]["body"] = json!("/karpathy fan club");
    assert_eq!(bot.deliver("issue_comment", "g3", &chatter).await.1["status"], "ignored");

    let (_, v) = bot.deliver("check_run", "g4", &fixture("check_run.rerequested.json")).await;
    assert_eq!(v["kind"], "rejudge", "{v}");
    let (s, v) = bot.deliver("ping", "g5", &fixture("ping.json")).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::ACCEPTED, Some("ignored")));
    assert_eq!(bot.count("jobs").await, 2);

    // /healthz and /metrics see the same state.
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    assert_eq!(bot.app.clone().oneshot(get("/healthz")).await.unwrap().status(), StatusCode::OK);
    let resp = bot.app.clone().oneshot(get("/metrics")).await.unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains("karpa_jobs{state=\"queued\"} 2"), "{text}");
    for line in
        ["karpa_jobs_queued{kind=\"command\"} 1", "karpa_jobs_queued{kind=\"rejudge\"} 1", "karpa_floors_pending 0"]
    {
        assert!(text.contains(line), "{line} not in {text}");
    }
    assert!(text.contains("karpa_webhook_replies_total{status=\"202\"} 6"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    // /curves serves stored loss curves as SVG that cannot run script; anything
    // else is a 4xx with a JSON error.
    let digest = "ab".repeat(32);
    karpa_bot::db::curves::put(&bot.pool, &digest, "<svg xmlns=\"http://www.w3.org/2000/svg\"/>").await.unwrap();
    let resp = bot.app.clone().oneshot(get(&format!("/curves/{digest}.svg"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/svg+xml");
    assert!(resp.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    for (path, status) in [
        (format!("/curves/{}.svg", "cd".repeat(32)), StatusCode::NOT_FOUND),
        ("/curves/..%2F..%2Fetc%2Fpasswd".to_string(), StatusCode::BAD_REQUEST),
        (format!("/curves/{}.svg", "AB".repeat(32)), StatusCode::BAD_REQUEST),
        (format!("/curves/{digest}"), StatusCode::BAD_REQUEST),
    ] {
        let resp = bot.app.clone().oneshot(get(&path)).await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"].is_string(), "{path}");
    }
}

/// GitHub sends NUL in text (a comment, a login): PostgreSQL's text and jsonb
/// cannot hold it, and a 503 would be repeated by every redelivery. Stored as
/// U+FFFD instead, once.
#[tokio::test]
async fn a_nul_in_a_comment_or_login_is_stored_not_refused_forever() {
    let bot = Bot::new().await;
    bot.installed().await;
    let mut comment = fixture("issue_comment.created.json");
    comment["comment"]["user"]["login"] = json!("oct\u{0}o");
    let body = comment["comment"]["body"].as_str().unwrap().to_string();
    comment["comment"]["body"] = json!(format!("{body} \u{0}now"));
    for guid in ["nul-1", "nul-1"] {
        let (s, v) = bot.deliver("issue_comment", guid, &comment).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }
    let payload: Value =
        sqlx::query_scalar("SELECT payload FROM jobs WHERE kind = 'command'").fetch_one(&bot.pool).await.unwrap();
    assert_eq!(payload["author"], "oct\u{FFFD}o", "{payload}");
    assert!(payload["command"].as_str().unwrap().ends_with("\u{FFFD}now"), "{payload}");
    assert_eq!((bot.count("deliveries").await, bot.count("jobs").await), (2, 1));
}

/// With PostgreSQL away the webhook answers 503 within its deadline (GitHub
/// gives up after 10 s and counts a timeout), and GitHub redelivers.
#[tokio::test]
async fn with_the_database_away_the_answer_is_a_quick_503() {
    // A pool whose every connection attempt hangs: a listener that never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("postgres://karpa@127.0.0.1:{}/karpa", silent.local_addr().unwrap().port());
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(30))
        .connect_lazy(&url)
        .unwrap();
    let app = router(AppState::new(pool, vec![SECRET.to_vec()], APP_ID, 1 << 20));
    let body = serde_json::to_vec(&fixture("pull_request.opened.json")).unwrap();
    let req = Request::post("/webhook")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "away-1")
        .header("x-hub-signature-256", sign(SECRET, &body))
        .body(Body::from(body))
        .unwrap();
    let started = std::time::Instant::now();
    let resp = app.oneshot(req).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The deadline is 2 s; GitHub's is 10 s. Between them, room for a loaded machine.
    assert!(waited < std::time::Duration::from_secs(6), "answered after {waited:?}");
    drop(silent);
}

/// A judging server's /healthz self-tests where it judges: the sandbox, and the
/// device's nodes; a GPU it was configured with but cannot reach is a 503.
#[tokio::test]
async fn healthz_reports_the_sandbox_and_the_device() {
    use karpa_bot::sandbox::gpu::Device;
    let pool = karpa_tests::fresh_database().await;
    let health = |device: Option<Device>| {
        let app = router(AppState::new(pool.clone(), vec![SECRET.to_vec()], APP_ID, 1 << 20).with_device(device));
        async move {
            let resp = app.oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
            let status = resp.status();
            let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
            (status, body)
        }
    };
    assert_eq!(health(None).await, (StatusCode::OK, json!({"status": "ok"})));
    assert_eq!(
        health(Some(Device::Cpu)).await,
        (StatusCode::OK, json!({"status": "ok", "sandbox": "ok", "device": "cpu-f32", "gpu_self_test": "not needed"}))
    );
    let (status, body) = health(Some(Device::Cuda(63))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("cuda:63"), "{body}");
}
