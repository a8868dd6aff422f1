//! A strict, stateful fake of the GitHub REST API for tests (GitHub itself cannot
//! be reached here). It serves only the routes a test declares it expects, keeps
//! what was created, checks the token, and records every other request as
//! unexpected — `assert_clean` fails the test on any.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

mod remote;
mod repo;
pub use repo::RepoState;

#[derive(Default)]
pub struct Ledger {
    /// Open and closed pull requests, by repository `owner/name`.
    pub pulls: HashMap<String, Vec<Value>>,
    /// Check runs by id, each with every request that touched it, in order.
    pub check_runs: Vec<CheckRun>,
    /// Files served at /files/{name} without auth (bundle hosting).
    pub files: HashMap<String, Vec<u8>>,
    /// Holds every check-run PATCH this long before answering (a slow GitHub).
    pub patch_delay: Option<std::time::Duration>,
    /// Check-run PATCHes that have arrived, answered or not.
    pub patches_seen: usize,
    /// Tokens the fake accepts: the test's own, and installation tokens it minted.
    pub tokens: Vec<String>,
    /// Requests nobody expected, as "METHOD path".
    pub unexpected: Vec<String>,
    /// Repository permissions by user login (others read).
    pub permissions: HashMap<String, String>,
    /// Issue and PR comments by (repository, number).
    pub comments: HashMap<(String, u64), Vec<Value>>,
    /// Branches, files, tags and releases, by repository `owner/name`.
    pub repos: HashMap<String, RepoState>,
    /// Requests (by their label, e.g. "PUT contents") to answer once with a 502,
    /// as GitHub sometimes does: the caller must retry without doubling effects.
    pub fail_once: Vec<String>,
    /// Installations of the App besides its own (each served like it), listed
    /// after it by GET /app/installations, a page at a time as GitHub does.
    pub other_installations: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct CheckRun {
    pub repo: String,
    /// The state after every update (GitHub's merge of the fields sent).
    pub state: Value,
    /// Every annotation ever sent (GitHub appends them across updates).
    pub annotations: Vec<Value>,
    /// The statuses it went through, in order.
    pub statuses: Vec<String>,
}

/// The GitHub App the fake knows: its id, public key and one installation.
#[derive(Clone)]
pub struct FakeApp {
    pub app_id: u64,
    pub public_key_pem: Vec<u8>,
    pub installation: u64,
}

pub struct FakeGitHub {
    pub url: String,
    pub ledger: Arc<Mutex<Ledger>>,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) ledger: Arc<Mutex<Ledger>>,
    repos: Vec<String>,
    app: Option<FakeApp>,
}

impl FakeGitHub {
    /// Starts a server that knows `repos` (owner/name) and accepts `token`.
    pub fn start(repos: &[&str], token: &str) -> Self {
        Self::start_with(repos, token, None)
    }

    /// Also serves the App's installation-token endpoint for `app`.
    pub fn start_with(repos: &[&str], token: &str, app: Option<FakeApp>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let ledger = Arc::new(Mutex::new(Ledger { tokens: vec![token.to_string()], ..Ledger::default() }));
        let ctx = Ctx { ledger: ledger.clone(), repos: repos.iter().map(|r| r.to_string()).collect(), app };
        let app = Router::new()
            .route("/repos/{owner}/{repo}/pulls", get(list_pulls).post(create_pull))
            .route("/repos/{owner}/{repo}/pulls/{number}", get(get_pull))
            .merge(repo::routes())
            .route("/files/{name}", get(get_file))
            .route("/app/installations/{id}/access_tokens", post(mint_token))
            .route("/app/installations", get(list_installations))
            .route("/installation/repositories", get(installation_repos))
            .route("/repos/{owner}/{repo}/check-runs", post(create_check_run))
            .route("/repos/{owner}/{repo}/check-runs/{id}", patch(update_check_run))
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

    /// Adds a pull request as GitHub would show it.
    pub fn add_pull(&self, repo: &str, pr: Value) {
        self.ledger.lock().unwrap().pulls.entry(repo.to_string()).or_default().push(pr);
    }

    /// Serves `bytes` at `{url}/files/{name}`.
    pub fn add_file(&self, name: &str, bytes: Vec<u8>) {
        self.ledger.lock().unwrap().files.insert(name.to_string(), bytes);
    }

    pub fn check_runs(&self) -> Vec<CheckRun> {
        self.ledger.lock().unwrap().check_runs.clone()
    }

    pub fn assert_clean(&self) {
        let l = self.ledger.lock().unwrap();
        assert!(l.unexpected.is_empty(), "unexpected GitHub requests: {:?}", l.unexpected);
    }
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message, "documentation_url": "https://docs.github.com/rest"}))).into_response()
}

impl Ctx {
    /// Admits the request and runs `f` on the ledger with the repository's slug.
    pub(crate) fn with_repo(
        &self,
        headers: &HeaderMap,
        what: &str,
        owner: &str,
        repo: &str,
        f: impl FnOnce(&mut Ledger, &str) -> Response,
    ) -> Response {
        let slug = format!("{owner}/{repo}");
        if let Err(r) = self.admit(headers, what, &slug) {
            return r;
        }
        let mut l = self.ledger.lock().unwrap();
        if let Some(i) = l.fail_once.iter().position(|w| w == what) {
            l.fail_once.remove(i);
            return error(StatusCode::BAD_GATEWAY, "Server Error");
        }
        f(&mut l, &slug)
    }

    /// Token and repository checks every route shares; a failure is recorded.
    pub(crate) fn admit(&self, headers: &HeaderMap, what: &str, repo: &str) -> Result<(), Response> {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let mut l = self.ledger.lock().unwrap();
        let ok_token = l.tokens.iter().any(|t| auth == format!("Bearer {t}") || auth == format!("token {t}"));
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
    ctx.with_repo(&headers, "GET pulls", &owner, &repo, |l, slug| {
        let state = q.get("state").map(String::as_str).unwrap_or("open");
        let items: Vec<Value> = l
            .pulls
            .get(slug)
            .into_iter()
            .flatten()
            .filter(|p| state == "all" || p["state"] == state)
            .filter(|p| q.get("head").is_none_or(|h| p["head"]["label"] == h.as_str()))
            .cloned()
            .collect();
        Json(Value::Array(items)).into_response()
    })
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

/// POST /app/installations/{id}/access_tokens: the App's JWT (RS256, signed by
/// the App's key, iss = app id, not expired) buys an installation token.
/// The App's JWT from `headers`, checked: RS256 by the App's key, not expired,
/// iss = the App id. Err is the reply (and an unexpected request on record).
fn app_jwt(ctx: &Ctx, headers: &HeaderMap, what: &str) -> Result<FakeApp, Response> {
    let Some(app) = ctx.app.clone() else {
        ctx.ledger.lock().unwrap().unexpected.push(format!("{what} with no App configured"));
        return Err(error(StatusCode::NOT_FOUND, "Not Found"));
    };
    let jwt = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&app.public_key_pem).expect("the test's public key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // GitHub takes a numeric `iss` (the App id), which jsonwebtoken does not count
    // as present; it is compared below instead.
    validation.set_required_spec_claims(&["exp", "iat"]);
    validation.validate_aud = false;
    match jsonwebtoken::decode::<Value>(jwt, &key, &validation).map(|d| d.claims) {
        Ok(c) if c["iss"].to_string().trim_matches('"') == app.app_id.to_string() => Ok(app),
        Ok(c) => {
            ctx.ledger.lock().unwrap().unexpected.push(format!("{what} with claims {c}"));
            Err(error(StatusCode::UNAUTHORIZED, "Bad credentials"))
        }
        Err(e) => {
            ctx.ledger.lock().unwrap().unexpected.push(format!("{what} with a bad JWT: {e}"));
            Err(error(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded"))
        }
    }
}

/// POST /app/installations/{id}/access_tokens: the App's JWT buys an installation token.
async fn mint_token(State(ctx): State<Ctx>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    let app = match app_jwt(&ctx, &headers, "POST access_tokens") {
        Ok(app) => app,
        Err(r) => return r,
    };
    let mut l = ctx.ledger.lock().unwrap();
    if id != app.installation && !l.other_installations.contains(&id) {
        l.unexpected.push(format!("POST access_tokens for installation {id}"));
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let token = format!("ghs_fake_{id}_{}", l.tokens.len());
    l.tokens.push(token.clone());
    (StatusCode::CREATED, Json(json!({"token": token, "expires_at": "2099-01-01T00:00:00Z", "permissions": {}})))
        .into_response()
}

/// GET /app/installations: the App's installations, `per_page` (GitHub's
/// default 30, at most 100) at a time.
async fn list_installations(
    State(ctx): State<Ctx>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let app = match app_jwt(&ctx, &headers, "GET installations") {
        Ok(app) => app,
        Err(r) => return r,
    };
    let per_page = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30usize).clamp(1, 100);
    let page = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1usize).max(1);
    let all: Vec<u64> =
        std::iter::once(app.installation).chain(ctx.ledger.lock().unwrap().other_installations.clone()).collect();
    let listed: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|id| json!({"id": id, "app_id": app.app_id}))
        .collect();
    Json(listed).into_response()
}

/// GET /installation/repositories: every repository the fake serves, for an installation token.
async fn installation_repos(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let mut l = ctx.ledger.lock().unwrap();
    if !l
        .tokens
        .iter()
        .any(|t| t.starts_with("ghs_fake_") && (auth == format!("Bearer {t}") || auth == format!("token {t}")))
    {
        l.unexpected.push("GET installation/repositories without an installation token".into());
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let repos: Vec<Value> = ctx.repos.iter().map(|r| json!({"full_name": r})).collect();
    Json(json!({"total_count": repos.len(), "repositories": repos})).into_response()
}

const STATUSES: [&str; 3] = ["queued", "in_progress", "completed"];
const CONCLUSIONS: [&str; 6] = ["success", "failure", "neutral", "cancelled", "skipped", "timed_out"];
const MAX_BYTES: usize = 65_535;

/// GitHub's own limits on a check run's body; a violation is a 422 and a failed test.
fn check_body_problem(req: &Value) -> Option<String> {
    if let Some(s) = req.get("status").and_then(Value::as_str) {
        if !STATUSES.contains(&s) {
            return Some(format!("status {s:?}"));
        }
    }
    if let Some(c) = req.get("conclusion").and_then(Value::as_str) {
        if !CONCLUSIONS.contains(&c) {
            return Some(format!("conclusion {c:?}"));
        }
    }
    if req.get("status").and_then(Value::as_str) == Some("completed") && req.get("conclusion").is_none() {
        return Some("completed without a conclusion".into());
    }
    let out = req.get("output")?;
    for field in ["summary", "text"] {
        let len = out.get(field).and_then(Value::as_str).map_or(0, str::len);
        if len > MAX_BYTES {
            return Some(format!("output.{field} is {len} bytes"));
        }
    }
    if out.get("title").and_then(Value::as_str).is_none() || out.get("summary").and_then(Value::as_str).is_none() {
        return Some("output without title and summary".into());
    }
    match out.get("annotations").and_then(Value::as_array) {
        Some(a) if a.len() > 50 => Some(format!("{} annotations in one request", a.len())),
        _ => None,
    }
}

fn apply_check(run: &mut CheckRun, req: &Value) {
    for (k, v) in req.as_object().into_iter().flatten() {
        run.state[k] = v.clone();
    }
    if let Some(a) = req.pointer("/output/annotations").and_then(Value::as_array) {
        run.annotations.extend(a.iter().cloned());
    }
    if let Some(s) = req.get("status").and_then(Value::as_str) {
        run.statuses.push(s.to_string());
    }
}

async fn create_check_run(
    State(ctx): State<Ctx>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    ctx.with_repo(&headers, "POST check-runs", &owner, &repo, |l, slug| {
        let sha_ok = req["head_sha"].as_str().is_some_and(|s| s.len() == 40);
        let named = sha_ok && req["name"].as_str().is_some();
        if let Some(problem) = check_body_problem(&req).or((!named).then(|| "name and head_sha".into())) {
            l.unexpected.push(format!("POST check-runs: {problem}"));
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        }
        let id = 9000 + l.check_runs.len() as u64;
        let mut run =
            CheckRun { repo: slug.to_string(), state: json!({"id": id}), annotations: vec![], statuses: vec![] };
        apply_check(&mut run, &req);
        let state = run.state.clone();
        l.check_runs.push(run);
        (StatusCode::CREATED, Json(state)).into_response()
    })
}

async fn update_check_run(
    State(ctx): State<Ctx>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    let slug = format!("{owner}/{repo}");
    if let Err(r) = ctx.admit(&headers, "PATCH check-runs", &slug) {
        return r;
    }
    let delay = {
        let mut l = ctx.ledger.lock().unwrap();
        l.patches_seen += 1;
        l.patch_delay
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
        // The test cleared the delay while this request hung: its sender is
        // gone (a killed bot), so the request is lost rather than applied late.
        if ctx.ledger.lock().unwrap().patch_delay.is_none() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the connection was lost");
        }
    }
    let mut l = ctx.ledger.lock().unwrap();
    if let Some(problem) = check_body_problem(&req) {
        l.unexpected.push(format!("PATCH check-runs/{id}: {problem}"));
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    let Some(run) = l.check_runs.iter_mut().find(|r| r.state["id"] == id && r.repo == slug) else {
        l.unexpected.push(format!("PATCH check-runs/{id}: no such check run"));
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    apply_check(run, &req);
    Json(run.state.clone()).into_response()
}

async fn get_pull(
    State(ctx): State<Ctx>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    ctx.with_repo(&headers, "GET pull", &owner, &repo, |l, slug| {
        match l.pulls.get(slug).into_iter().flatten().find(|p| p["number"] == number) {
            Some(pr) => Json(pr.clone()).into_response(),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    })
}

async fn get_file(State(ctx): State<Ctx>, Path(name): Path<String>) -> Response {
    match ctx.ledger.lock().unwrap().files.get(&name) {
        Some(bytes) => bytes.clone().into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}
