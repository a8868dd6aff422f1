//! What a verified delivery asks of us: a job, an installation change, or
//! nothing. Only the fields the bot uses are parsed; a payload without them is
//! malformed. Job keys make the side effects idempotent across duplicate
//! deliveries, including duplicates GitHub sends under a new GUID.

use crate::db::jobs::NewJob;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug)]
pub enum Intake {
    Job(NewJob),
    Install { installation: i64, add: Vec<String>, remove: Removal },
    Ignore(&'static str),
}

#[derive(Debug)]
pub enum Removal {
    None,
    All,
    Some(Vec<String>),
}

/// A parsed delivery: its action and repository (for the record) and what to do.
#[derive(Debug)]
pub struct Classified {
    pub action: Option<String>,
    pub repo: Option<String>,
    /// The repository must be one the App is installed on.
    pub needs_installed_repo: bool,
    pub intake: Intake,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BadDelivery {
    #[error("event {0:?} is not one this App subscribes to")]
    UnknownEvent(String),
    #[error("malformed {event} payload: {why}")]
    Malformed { event: String, why: String },
}

#[derive(Deserialize)]
struct Repo {
    full_name: String,
}
#[derive(Deserialize)]
struct Installation {
    id: i64,
}
#[derive(Deserialize)]
struct User {
    login: String,
    #[serde(rename = "type", default)]
    kind: String,
}
#[derive(Deserialize)]
struct Head {
    sha: String,
}
#[derive(Deserialize)]
struct Base {
    #[serde(rename = "ref")]
    name: String,
}
#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    head: Head,
    base: Base,
    #[serde(default)]
    body: Option<String>,
    user: User,
}
#[derive(Deserialize)]
struct PullRequestEvent {
    action: String,
    pull_request: PullRequest,
    repository: Repo,
    installation: Installation,
}
#[derive(Deserialize)]
struct CheckRunPr {
    number: u64,
}
#[derive(Deserialize)]
struct CheckRun {
    id: i64,
    head_sha: String,
    #[serde(default)]
    pull_requests: Vec<CheckRunPr>,
}
#[derive(Deserialize)]
struct CheckRunEvent {
    action: String,
    check_run: CheckRun,
    repository: Repo,
    installation: Installation,
}
#[derive(Deserialize)]
struct App {
    id: i64,
}
#[derive(Deserialize)]
struct Comment {
    id: i64,
    body: String,
    user: User,
    #[serde(default)]
    author_association: String,
    #[serde(default)]
    performed_via_github_app: Option<App>,
}
#[derive(Deserialize)]
struct Issue {
    number: u64,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}
#[derive(Deserialize)]
struct IssueCommentEvent {
    action: String,
    issue: Issue,
    comment: Comment,
    repository: Repo,
    installation: Installation,
}
#[derive(Deserialize)]
struct InstallationEvent {
    action: String,
    installation: Installation,
    #[serde(default)]
    repositories: Vec<Repo>,
}
#[derive(Deserialize)]
struct InstallationReposEvent {
    action: String,
    installation: Installation,
    #[serde(default)]
    repositories_added: Vec<Repo>,
    #[serde(default)]
    repositories_removed: Vec<Repo>,
}

fn parse<'a, T: Deserialize<'a>>(event: &str, body: &'a [u8]) -> Result<T, BadDelivery> {
    serde_json::from_slice(body).map_err(|e| BadDelivery::Malformed { event: event.to_string(), why: e.to_string() })
}

fn names(repos: Vec<Repo>) -> Vec<String> {
    repos.into_iter().map(|r| r.full_name).collect()
}

/// The judge job's key: one judgment per PR head and bundle, so an edit that
/// points the PR at a new bundle is judged again and a duplicate is not.
pub fn judge_key(repo: &str, pr: u64, sha: &str, body: &str) -> String {
    let bundle = proof::locator::Locator::parse_from_body(body).map(|l| l.bundle_digest.to_string());
    format!("judge:{repo}#{pr}@{sha}/{}", bundle.unwrap_or_else(|_| "no-bundle".into()))
}

pub fn classify(event: &str, body: &[u8], app_id: i64) -> Result<Classified, BadDelivery> {
    let job = |kind: &str, dedupe_key: String, payload: serde_json::Value| {
        Intake::Job(NewJob { kind: kind.into(), dedupe_key, payload })
    };
    Ok(match event {
        "ping" => Classified { action: None, repo: None, needs_installed_repo: false, intake: Intake::Ignore("ping") },
        "pull_request" => {
            let e: PullRequestEvent = parse(event, body)?;
            let (repo, pr) = (e.repository.full_name, e.pull_request);
            let payload = json!({
                "repo": repo, "installation": e.installation.id, "pr": pr.number, "head_sha": pr.head.sha,
                "base_ref": pr.base.name, "author": pr.user.login,
            });
            let intake = match e.action.as_str() {
                "opened" | "synchronize" | "reopened" | "edited" => job(
                    "judge",
                    judge_key(&repo, pr.number, &pr.head.sha, pr.body.as_deref().unwrap_or_default()),
                    payload,
                ),
                "closed" => job("pr-closed", format!("closed:{repo}#{}@{}", pr.number, pr.head.sha), payload),
                _ => Intake::Ignore("pull_request action the bot does not act on"),
            };
            Classified { action: Some(e.action), repo: Some(repo), needs_installed_repo: true, intake }
        }
        "check_run" => {
            let e: CheckRunEvent = parse(event, body)?;
            let repo = e.repository.full_name;
            let intake = match (e.action.as_str(), e.check_run.pull_requests.first()) {
                ("rerequested", Some(pr)) => job(
                    "rejudge",
                    format!("rejudge:{repo}#{}@{}/check-{}", pr.number, e.check_run.head_sha, e.check_run.id),
                    json!({"repo": repo, "installation": e.installation.id, "pr": pr.number,
                           "head_sha": e.check_run.head_sha, "check_run": e.check_run.id}),
                ),
                // A fork PR's check run names no PR: the job finds it by head sha.
                ("rerequested", None) => job(
                    "rejudge",
                    format!("rejudge:{repo}@{}/check-{}", e.check_run.head_sha, e.check_run.id),
                    json!({"repo": repo, "installation": e.installation.id, "head_sha": e.check_run.head_sha,
                           "check_run": e.check_run.id}),
                ),
                _ => Intake::Ignore("check_run action the bot does not act on"),
            };
            Classified { action: Some(e.action), repo: Some(repo), needs_installed_repo: true, intake }
        }
        "issue_comment" => {
            let e: IssueCommentEvent = parse(event, body)?;
            let repo = e.repository.full_name;
            let c = e.comment;
            let ours = c.performed_via_github_app.as_ref().is_some_and(|a| a.id == app_id);
            let command = c
                .body
                .trim_start()
                .strip_prefix("/karpa")
                .filter(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
            let intake = match command {
                _ if e.action != "created" => Intake::Ignore("comment edits and deletions are not commands"),
                _ if ours || c.user.kind == "Bot" => Intake::Ignore("comments by bots are not commands"),
                _ if e.issue.pull_request.is_none() => Intake::Ignore("commands work on pull requests only"),
                None => Intake::Ignore("not a /karpa command"),
                Some(rest) => job(
                    "command",
                    format!("command:{repo}#{}/comment-{}", e.issue.number, c.id),
                    json!({"repo": repo, "installation": e.installation.id, "pr": e.issue.number,
                           "comment": c.id, "author": c.user.login, "association": c.author_association,
                           "command": rest.trim()}),
                ),
            };
            Classified { action: Some(e.action), repo: Some(repo), needs_installed_repo: true, intake }
        }
        "installation" => {
            let e: InstallationEvent = parse(event, body)?;
            let id = e.installation.id;
            let intake = match e.action.as_str() {
                "created" | "unsuspend" => {
                    Intake::Install { installation: id, add: names(e.repositories), remove: Removal::None }
                }
                "deleted" | "suspend" => Intake::Install { installation: id, add: vec![], remove: Removal::All },
                _ => Intake::Ignore("installation action the bot does not act on"),
            };
            Classified { action: Some(e.action), repo: None, needs_installed_repo: false, intake }
        }
        "installation_repositories" => {
            let e: InstallationReposEvent = parse(event, body)?;
            let intake = Intake::Install {
                installation: e.installation.id,
                add: names(e.repositories_added),
                remove: Removal::Some(names(e.repositories_removed)),
            };
            Classified { action: Some(e.action), repo: None, needs_installed_repo: false, intake }
        }
        other => return Err(BadDelivery::UnknownEvent(other.to_string())),
    })
}
