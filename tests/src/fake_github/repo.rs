//! The repository side of the fake: the PR merge (guarded by the head sha),
//! CHANGELOG.md through the contents API (guarded by the blob sha), annotated
//! tags and their refs, releases. Commit ids are made up but consistent, or,
//! when the test gives the repository its bare remote, real (remote.rs).

use super::{error, remote, Ctx};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct RepoState {
    /// The head of the default branch, `main`.
    pub main: String,
    /// Files on main, by path.
    pub files: HashMap<String, String>,
    /// Annotated tag objects by their sha (their git id, from their bytes).
    pub tag_objects: HashMap<String, Value>,
    /// The bytes of each tag object as git stores them, by sha.
    pub tag_bytes: HashMap<String, Vec<u8>>,
    /// refs/tags/* → tag object sha.
    pub tag_refs: HashMap<String, String>,
    pub releases: Vec<Value>,
    /// Every commit made on main, in order (merges and content updates).
    pub commits: Vec<String>,
    /// Merges GitHub would answer 405 to (e.g. conflicts), by PR number.
    pub unmergeable: Vec<u64>,
    /// Store tag messages with trailing newlines trimmed, as a forge that
    /// normalises text would (the signed bytes then differ from the stored ones).
    pub trim_tag_messages: bool,
    /// The bare repository behind the API, when the test has one: merges,
    /// contents commits, tags and their refs are then made there for real.
    pub git: Option<PathBuf>,
}

impl RepoState {
    fn new_sha(&mut self, what: &str) -> String {
        let sha = format!("{:08x}{:032x}", what.len() as u32, self.commits.len() + 1);
        self.record(sha)
    }

    /// `sha` is main's new head.
    fn record(&mut self, sha: String) -> String {
        self.commits.push(sha.clone());
        self.main = sha.clone();
        sha
    }

    /// A file on main: (its blob sha, its text).
    fn file(&self, path: &str) -> Option<(String, String)> {
        match &self.git {
            Some(git) => remote::file(git, &self.main, path),
            None => self.files.get(path).map(|t| (blob_sha(t), t.clone())),
        }
    }

    fn knows_commit(&self, sha: &str) -> bool {
        match &self.git {
            Some(git) => remote::has_commit(git, sha),
            None => self.commits.iter().any(|c| c == sha),
        }
    }
}

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/repos/{owner}/{repo}/pulls/{number}/merge", put(merge))
        .route("/repos/{owner}/{repo}/contents/{*path}", get(get_content).put(put_content))
        .route("/repos/{owner}/{repo}/commits/{reference}", get(get_commit))
        .route("/repos/{owner}/{repo}/git/tags", post(create_tag))
        .route("/repos/{owner}/{repo}/git/tags/{sha}", get(get_tag))
        .route("/repos/{owner}/{repo}/git/refs", post(create_ref))
        .route("/repos/{owner}/{repo}/git/ref/tags/{tag}", get(get_tag_ref))
        .route("/repos/{owner}/{repo}/git/matching-refs/tags/{prefix}", get(matching_tag_refs))
        .route("/repos/{owner}/{repo}/releases", post(create_release))
        .route("/repos/{owner}/{repo}/collaborators/{user}/permission", get(permission))
        .route("/repos/{owner}/{repo}/issues/{number}/comments", get(list_comments).post(create_comment))
}

async fn merge(
    State(ctx): State<Ctx>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    ctx.with_repo(&headers, "PUT merge", &owner, &repo, |l, slug| {
        if req["merge_method"] != "squash" || req["sha"].as_str().is_none() {
            l.unexpected.push(format!("PUT merge #{number} without squash and a head sha: {req}"));
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        }
        let unmergeable = l.repos.get(slug).is_some_and(|r| r.unmergeable.contains(&number));
        let Some(pr) = l.pulls.get(slug).and_then(|ps| ps.iter().position(|p| p["number"] == number)) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let p = &l.pulls[slug][pr];
        if p["state"] != "open" || unmergeable {
            return error(StatusCode::METHOD_NOT_ALLOWED, "Pull Request is not mergeable");
        }
        if p["head"]["sha"] != req["sha"] {
            return error(StatusCode::CONFLICT, "Head branch was modified. Review and try the merge again.");
        }
        let state = l.repos.entry(slug.to_string()).or_default();
        let sha = match state.git.clone() {
            Some(git) => {
                let title = req["commit_title"].as_str().unwrap_or_default();
                let message = format!("{title}\n\n{}", req["commit_message"].as_str().unwrap_or_default());
                match remote::squash(&git, &state.main, req["sha"].as_str().unwrap_or_default(), &message) {
                    Ok(sha) => state.record(sha),
                    Err(why) => return error(StatusCode::METHOD_NOT_ALLOWED, &why),
                }
            }
            None => state.new_sha("merge"),
        };
        let p = &mut l.pulls.get_mut(slug).expect("found above")[pr];
        p["state"] = json!("closed");
        p["merged"] = json!(true);
        p["merge_commit_sha"] = json!(sha);
        Json(json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"})).into_response()
    })
}

async fn get_content(
    State(ctx): State<Ctx>,
    Path((owner, repo, path)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    ctx.with_repo(&headers, "GET contents", &owner, &repo, |l, slug| {
        match l.repos.get(slug).and_then(|r| r.file(&path)) {
            Some((sha, text)) => Json(json!({
                "path": path, "sha": sha, "encoding": "base64",
                "content": wrapped_base64(text.as_bytes()),
            }))
            .into_response(),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    })
}

/// Base64 as the contents API sends it: a line break after every 60 characters.
fn wrapped_base64(bytes: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines: Vec<&str> =
        flat.as_bytes().chunks(60).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    lines.join("\n") + "\n"
}

fn blob_sha(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..20])
}

async fn put_content(
    State(ctx): State<Ctx>,
    Path((owner, repo, path)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    ctx.with_repo(&headers, "PUT contents", &owner, &repo, |l, slug| {
        let state = l.repos.entry(slug.to_string()).or_default();
        let current = state.file(&path).map(|(sha, _)| sha);
        if req["sha"].as_str().map(str::to_string) != current {
            return error(StatusCode::CONFLICT, "sha does not match");
        }
        let Some(text) = req["content"]
            .as_str()
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "content is not base64");
        };
        let sha = match state.git.clone() {
            Some(git) => {
                match remote::commit_file(&git, &state.main, &path, &text, req["message"].as_str().unwrap_or("")) {
                    Ok(sha) => state.record(sha),
                    Err(why) => return error(StatusCode::UNPROCESSABLE_ENTITY, &why),
                }
            }
            None => {
                state.files.insert(path.clone(), text);
                state.new_sha("contents")
            }
        };
        (StatusCode::OK, Json(json!({"commit": {"sha": sha}, "content": {"path": path}}))).into_response()
    })
}

async fn get_commit(
    State(ctx): State<Ctx>,
    Path((owner, repo, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    ctx.with_repo(&headers, "GET commit", &owner, &repo, |l, slug| {
        match l.repos.get(slug).filter(|_| reference == "main") {
            Some(r) => Json(json!({"sha": r.main})).into_response(),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    })
}

async fn create_tag(
    State(ctx): State<Ctx>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    ctx.with_repo(&headers, "POST git/tags", &owner, &repo, |l, slug| {
        let state = l.repos.entry(slug.to_string()).or_default();
        let known = req["object"].as_str().is_some_and(|o| state.knows_commit(o));
        let (Some(bytes), true) = (tag_object_bytes(&req, state.trim_tag_messages), req["type"] == "commit" && known)
        else {
            l.unexpected.push(format!("POST git/tags: {req}"));
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        };
        let sha = git2::Oid::hash_object(git2::ObjectType::Tag, &bytes).expect("hashing").to_string();
        if let Some(git) = &state.git {
            if remote::write_tag(git, &bytes).as_deref() != Ok(sha.as_str()) {
                l.unexpected.push(format!("POST git/tags: the remote would not store {sha}"));
                return error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error");
            }
        }
        let obj = json!({"sha": sha, "tag": req["tag"], "message": req["message"], "tagger": req["tagger"],
                         "object": {"sha": req["object"], "type": "commit"}});
        state.tag_bytes.insert(sha.clone(), bytes);
        state.tag_objects.insert(sha, obj.clone());
        (StatusCode::CREATED, Json(obj)).into_response()
    })
}

/// The tag object GitHub writes for a create-tag request, as git stores it:
/// the tagger's date (ISO 8601, UTC) becomes seconds and +0000. None when a
/// field GitHub requires is missing or the date does not parse.
fn tag_object_bytes(req: &Value, trim: bool) -> Option<Vec<u8>> {
    let (object, tag, mut message) = (req["object"].as_str()?, req["tag"].as_str()?, req["message"].as_str()?);
    if trim {
        message = message.trim_end();
    }
    let t = &req["tagger"];
    let (name, email, date) = (t["name"].as_str()?, t["email"].as_str()?, t["date"].as_str()?);
    let when = humantime::parse_rfc3339(date).ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let text = format!("object {object}\ntype commit\ntag {tag}\ntagger {name} <{email}> {when} +0000\n\n{message}");
    Some(text.into_bytes())
}

async fn get_tag(
    State(ctx): State<Ctx>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    ctx.with_repo(&headers, "GET git/tags", &owner, &repo, |l, slug| {
        match l.repos.get(slug).and_then(|r| r.tag_objects.get(&sha)) {
            Some(t) => Json(t.clone()).into_response(),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    })
}

async fn create_ref(
    State(ctx): State<Ctx>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    ctx.with_repo(&headers, "POST git/refs", &owner, &repo, |l, slug| {
        let state = l.repos.entry(slug.to_string()).or_default();
        let (Some(name), Some(sha)) = (req["ref"].as_str(), req["sha"].as_str()) else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        };
        let Some(tag) = name.strip_prefix("refs/tags/") else {
            l.unexpected.push(format!("POST git/refs for {name}"));
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        };
        if state.tag_refs.contains_key(tag) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference already exists");
        }
        if let Some(git) = &state.git {
            if let Err(why) = remote::create_tag_ref(git, tag, sha) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, &why);
            }
        }
        state.tag_refs.insert(tag.to_string(), sha.to_string());
        (StatusCode::CREATED, Json(json!({"ref": name, "object": {"sha": sha, "type": "tag"}}))).into_response()
    })
}

async fn get_tag_ref(
    State(ctx): State<Ctx>,
    Path((owner, repo, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    ctx.with_repo(&headers, "GET git/ref", &owner, &repo, |l, slug| {
        match l.repos.get(slug).and_then(|r| r.tag_refs.get(&tag)) {
            Some(sha) => {
                Json(json!({"ref": format!("refs/tags/{tag}"), "object": {"sha": sha, "type": "tag"}})).into_response()
            }
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    })
}

async fn matching_tag_refs(
    State(ctx): State<Ctx>,
    Path((owner, repo, prefix)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    ctx.with_repo(&headers, "GET git/matching-refs", &owner, &repo, |l, slug| {
        let mut refs: Vec<Value> = l
            .repos
            .get(slug)
            .map(|r| r.tag_refs.iter().filter(|(t, _)| t.starts_with(&prefix)).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|(t, sha)| json!({"ref": format!("refs/tags/{t}"), "object": {"sha": sha, "type": "tag"}}))
            .collect();
        refs.sort_by(|a, b| a["ref"].as_str().cmp(&b["ref"].as_str()));
        Json(refs).into_response()
    })
}

async fn create_release(
    State(ctx): State<Ctx>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Query(_q): Query<HashMap<String, String>>,
    Json(req): Json<Value>,
) -> Response {
    ctx.with_repo(&headers, "POST releases", &owner, &repo, |l, slug| {
        let state = l.repos.entry(slug.to_string()).or_default();
        let Some(tag) = req["tag_name"].as_str() else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        };
        if !state.tag_refs.contains_key(tag) {
            l.unexpected.push(format!("POST releases for {tag}, which has no tag"));
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        }
        if state.releases.iter().any(|r| r["tag_name"] == tag) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed: already_exists");
        }
        state.releases.push(req.clone());
        (StatusCode::CREATED, Json(req)).into_response()
    })
}

async fn permission(
    State(ctx): State<Ctx>,
    Path((owner, repo, user)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    ctx.with_repo(&headers, "GET permission", &owner, &repo, |l, _| {
        let p = l.permissions.get(&user).cloned().unwrap_or_else(|| "read".into());
        Json(json!({"permission": p, "user": {"login": user}})).into_response()
    })
}

async fn list_comments(
    State(ctx): State<Ctx>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    ctx.with_repo(&headers, "GET comments", &owner, &repo, |l, slug| {
        Json(l.comments.get(&(slug.to_string(), number)).cloned().unwrap_or_default()).into_response()
    })
}

async fn create_comment(
    State(ctx): State<Ctx>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    ctx.with_repo(&headers, "POST comment", &owner, &repo, |l, slug| {
        let Some(body) = req["body"].as_str().filter(|b| !b.is_empty()) else {
            l.unexpected.push(format!("POST comment without a body: {req}"));
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        };
        let list = l.comments.entry((slug.to_string(), number)).or_default();
        let c = json!({"id": 7000 + list.len(), "body": body, "user": {"login": "karpa-judge[bot]", "type": "Bot"}});
        list.push(c.clone());
        (StatusCode::CREATED, Json(c)).into_response()
    })
}
