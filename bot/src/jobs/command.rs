//! `/karpa …` commands in PR comments: `help`, `explain` (the latest verdict on
//! the PR, in words), `retry` (judge the PR's head again; the PR's author or
//! anyone with write access), `release minor` (maintainers: the next crown is
//! recipe-vX.(Y+1).0). Each reply is posted once, even if the job is
//! retried.

use super::Services;
use crate::db::jobs::{self, Lease, NewJob};
use crate::db::kings::{self, Bump};
use crate::forge::crown::next_release;
use crate::forge::github::{Installation, RepoName};
use anyhow::Result;
use serde::Deserialize;

#[derive(Deserialize)]
struct Payload {
    repo: String,
    installation: u64,
    pr: u64,
    comment: u64,
    author: String,
    command: String,
}

pub const HELP: &str = "Karpa understands, in a comment on a pull request:\n\n\
    - `/karpa retry`: judge the PR's head again (its author, or anyone with write access)\n\
    - `/karpa explain`: the latest verdict on this PR, stage by stage\n\
    - `/karpa release minor`: release the next crown as recipe-vX.(Y+1).0 (maintainers)\n\
    - `/karpa help`: this message";

pub async fn run(s: &Services, lease: &Lease) -> Result<()> {
    let p: Payload = serde_json::from_value(lease.payload.clone())?;
    let repo = RepoName::parse(&p.repo)?;
    let gh = Installation::new(&s.app, p.installation)?;
    let marker = format!("<!-- karpa:reply-to:{} -->", p.comment);
    let word = p.command.split_whitespace().next().unwrap_or("help");
    let reply = match word {
        "retry" => retry(s, &gh, &repo, &p).await?,
        "explain" => explain(s, &p).await?,
        "release" => release(s, &gh, &repo, &p).await?,
        "help" => HELP.to_string(),
        other => format!("`/karpa {}` is not a command.\n\n{HELP}", other.replace('`', "")),
    };
    gh.comment_once(&repo, p.pr, &marker, &format!("@{} {reply}", p.author)).await
}

async fn retry(s: &Services, gh: &Installation, repo: &RepoName, p: &Payload) -> Result<String> {
    let pr = gh.pull(repo, p.pr).await?;
    let allowed = pr.author == p.author
        || matches!(gh.permission(repo, &p.author).await?.as_str(), "admin" | "maintain" | "write");
    if !allowed {
        return Ok("only the PR's author or someone with write access can ask for a retry.".into());
    }
    if !pr.open {
        return Ok("this PR is closed; there is nothing to judge.".into());
    }
    let payload = serde_json::json!({"repo": p.repo, "installation": p.installation, "pr": p.pr,
                                     "head_sha": pr.head.as_str()});
    let key = format!("retry:{}#{}@{}/comment-{}", p.repo, p.pr, pr.head.as_str(), p.comment);
    jobs::enqueue(&s.pool, &NewJob { kind: "rejudge".into(), dedupe_key: key, payload }).await?;
    Ok(format!("judging `{}` again; the check run will show the verdict.", &pr.head.as_str()[..12]))
}

/// `/karpa release minor`: the next crown on this repository bumps the minor version.
async fn release(s: &Services, gh: &Installation, repo: &RepoName, p: &Payload) -> Result<String> {
    if p.command.split_whitespace().nth(1) != Some("minor") {
        return Ok("the only release command is `/karpa release minor`.".into());
    }
    if !matches!(gh.permission(repo, &p.author).await?.as_str(), "admin" | "maintain") {
        return Ok("only a maintainer of this repository can change how releases are numbered.".into());
    }
    kings::request_minor_bump(&s.pool, &p.repo, &p.author).await?;
    let next = match kings::king(&s.pool, &p.repo).await? {
        Some(k) => next_release(&k.tag, Bump::Minor)?,
        None => "the next minor version".into(),
    };
    Ok(format!("the next crown on this repository will be released as {next}."))
}

async fn explain(s: &Services, p: &Payload) -> Result<String> {
    let row: Option<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT head_sha, verdict FROM judgments WHERE repo = $1 AND pr = $2 AND verdict IS NOT NULL
         ORDER BY judged_at DESC LIMIT 1",
    )
    .bind(&p.repo)
    .bind(p.pr as i64)
    .fetch_optional(&s.pool)
    .await?;
    let Some((head, v)) = row else { return Ok("this PR has no verdict yet.".into()) };
    let mut out = format!(
        "the latest verdict, on `{}`: **{}** — {}\n",
        &head[..head.len().min(12)],
        v["class"].as_str().unwrap_or("?"),
        v["summary"].as_str().unwrap_or("")
    );
    for st in v["stages"].as_array().into_iter().flatten() {
        let mark = if st["passed"] == true { "✔" } else { "✘" };
        out.push_str(&format!("\n- {mark} {}", st["stage"].as_str().unwrap_or("?")));
    }
    for f in v["findings"].as_array().into_iter().flatten() {
        out.push_str(&format!("\n- `{}`: {}", f["code"].as_str().unwrap_or("?"), f["message"].as_str().unwrap_or("")));
    }
    Ok(out)
}
