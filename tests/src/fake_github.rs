//! A strict, stateful fake of the GitHub REST API for tests (GitHub itself cannot
//! be reached here). It serves only the routes a test declares it expects, keeps
//! what was created, checks the token, and records every other request as
//! unexpected — `assert_clean` fails the test on any.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Ledger {
    /// Open and closed pull requests, by repository `owner/name`.
    pub pulls: HashMap<String, Vec<Value>>,
    /// Requests nobody expected, as "METHOD path".
    pub unexpected: Vec<String>,
}

pub struct FakeGitHub {
    pub url: String,
    pub ledger: Arc<Mutex<Ledger>>,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Clone)]
struct Ctx {
    ledger: Arc<Mutex<Ledger>>,
    token: String,
    repos: Vec<String>,
}

impl FakeGitHub {
    /// Starts a server that knows `repos` (owner/name) and accepts `token`.
    pub fn start(repos: &[&str], token: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let ctx =
            Ctx { ledger: ledger.clone(), token: token.into(), repos: repos.iter().map(|r| r.to_string()).collect() };
        let app = Router::new()
            .route("/repos/{owner}/{repo}/pulls", get(list_pulls).post(create_pull))
            .fallback(unexpected)
            .with_state(ctx);
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGitHub { url, ledger, _runtime: runtime }
    }

    pub fn pulls(&self, repo: &str) -> Vec<Value> {
        self.ledger.lock().unwrap().pulls.get(repo).cloned().unwrap_or_default()
    }

    pub fn assert_clean(&self) {
        let l = self.ledger.lock().unwrap();
        assert!(l.unexpected.is_empty(), "unexpected GitHub requests: {:?}", l.unexpected);
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message, "documentation_url": "https://docs.github.com/rest"}))).into_response()
}

impl Ctx {
    /// Token and repository checks every route shares; a failure is recorded.
    fn admit(&self, headers: &HeaderMap, what: &str, repo: &str) -> Result<(), Response> {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let ok_token = auth == format!("Bearer {}", self.token) || auth == format!("token {}", self.token);
        let mut l = self.ledger.lock().unwrap();
        if !ok_token {
            l.unexpected.push(format!("{what} without a valid token"));
            return Err(error(StatusCode::UNAUTHORIZED, "Bad credentials"));
        }
        if !self.repos.iter().any(|r| r == repo) {
            l.unexpected.push(format!("{what} on unknown repository {repo}"));
            return Err(error(StatusCode::NOT_FOUND, "Not Found"));
        }
        Ok(())
    }
}

async fn unexpected(State(ctx): State<Ctx>, method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ctx.ledger.lock().unwrap().unexpected.push(format!("{method} {uri}"));
    error(StatusCode::NOT_FOUND, "Not Found (unexpected by the fake)")
}

async fn list_pulls(
    State(ctx): State<Ctx>,
    Path((owner, repo)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let slug = format!("{owner}/{repo}");
    if let Err(r) = ctx.admit(&headers, "GET pulls", &slug) {
        return r;
    }
    let l = ctx.ledger.lock().unwrap();
    let state = q.get("state").map(String::as_str).unwrap_or("open");
    let items: Vec<Value> = l
        .pulls
        .get(&slug)
        .into_iter()
        .flatten()
        .filter(|p| state == "all" || p["state"] == state)
        .filter(|p| q.get("head").is_none_or(|h| p["head"]["label"] == h.as_str()))
        .cloned()
        .collect();
    Json(Value::Array(items)).into_response()
}

async fn create_pull(
    State(ctx): State<Ctx>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    let slug = format!("{owner}/{repo}");
    if let Err(r) = ctx.admit(&headers, "POST pulls", &slug) {
        return r;
    }
    let field = |k: &str| req.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(title), Some(head), Some(base)) = (field("title"), field("head"), field("base")) else {
        ctx.ledger.lock().unwrap().unexpected.push(format!("POST pulls with a malformed body: {req}"));
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    };
    let mut l = ctx.ledger.lock().unwrap();
    let pulls = l.pulls.entry(slug.clone()).or_default();
    if pulls.iter().any(|p| p["head"]["label"] == head.as_str() && p["state"] == "open") {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "A pull request already exists");
    }
    let number = pulls.len() as u64 + 1;
    let branch = head.split_once(':').map(|(_, b)| b).unwrap_or(&head).to_string();
    let pr = json!({
        "id": 1000 + number,
        "number": number,
        "url": format!("https://api.github.com/repos/{slug}/pulls/{number}"),
        "html_url": format!("https://github.com/{slug}/pull/{number}"),
        "state": "open",
        "locked": false,
        "title": title,
        "body": field("body"),
        "head": {"label": head, "ref": branch, "sha": "0".repeat(40)},
        "base": {"label": format!("{owner}:{base}"), "ref": base, "sha": "1".repeat(40)},
    });
    pulls.push(pr.clone());
    (StatusCode::CREATED, Json(pr)).into_response()
}
