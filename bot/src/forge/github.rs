//! The GitHub side of the bot: the App's JWT client, installation clients
//! (octocrab mints and refreshes their tokens), and check runs. octocrab's
//! automatic retries are off — they would repeat POSTs (two check runs for one
//! judgment); the job queue retries whole, idempotent steps instead.

use super::checks::{annotation_batches, CheckOutput, Conclusion, CHECK_NAME};
use anyhow::{bail, Context, Result};
use octocrab::models::{AppId, InstallationId};
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::Octocrab;
use serde_json::{json, Value};
use std::fmt;

/// `owner/name`, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoName {
    pub owner: String,
    pub name: String,
}

impl RepoName {
    pub fn parse(full: &str) -> Result<Self> {
        let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        match full.split_once('/') {
            Some((o, n)) if ok(o) && ok(n) && n != "." && n != ".." => {
                Ok(RepoName { owner: o.to_string(), name: n.to_string() })
            }
            _ => bail!("{full:?} is not an owner/name repository"),
        }
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A full 40-hex commit id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitSha(String);

impl CommitSha {
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(CommitSha(s.to_ascii_lowercase()))
        } else {
            bail!("{s:?} is not a commit sha")
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CheckRunId(pub u64);

/// The App itself, authenticated by its JWT (RS256 over the App's private key).
pub fn app_client(app_id: u64, private_key_pem: &[u8], base_uri: &str) -> Result<Octocrab> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem).context("the App key is not an RSA PEM")?;
    Octocrab::builder()
        .app(AppId(app_id), key)
        .base_uri(base_uri)
        .context("the GitHub API URL")?
        .add_retry_config(RetryConfig::None)
        .build()
        .context("cannot build the GitHub client")
}

/// What the judge needs to know about a PR, fresh from GitHub.
#[derive(Debug, Clone)]
pub struct PullInfo {
    pub open: bool,
    pub head: CommitSha,
    /// The branch it targets.
    pub base: String,
    pub body: String,
    /// Who opened it.
    pub author: String,
}

/// What a sha-guarded merge came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    /// Merged (now or before): the merge commit.
    Merged(CommitSha),
    /// 409: the PR's head is no longer the judged commit.
    HeadMoved,
    /// 405: GitHub will not merge it now (conflicts, base moved, protection).
    NotMergeable(String),
}

/// Acting for one installation: PRs and check runs on its repositories.
pub struct Installation {
    gh: Octocrab,
}

impl Installation {
    pub fn new(app: &Octocrab, id: u64) -> Result<Self> {
        Ok(Installation { gh: app.installation(InstallationId(id))? })
    }

    pub async fn pull(&self, repo: &RepoName, number: u64) -> Result<PullInfo> {
        let pr: Value = self.gh.get(format!("/repos/{repo}/pulls/{number}"), None::<&()>).await?;
        Ok(PullInfo {
            open: pr["state"] == "open",
            head: CommitSha::parse(pr["head"]["sha"].as_str().unwrap_or_default())?,
            base: pr["base"]["ref"].as_str().unwrap_or("main").to_string(),
            body: pr["body"].as_str().unwrap_or_default().to_string(),
            author: pr["user"]["login"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Squash-merges PR `number` if its head is still `head`.
    pub async fn merge(
        &self,
        repo: &RepoName,
        number: u64,
        head: &CommitSha,
        title: &str,
        message: &str,
    ) -> Result<Merge> {
        let body =
            json!({"sha": head.as_str(), "merge_method": "squash", "commit_title": title, "commit_message": message});
        let route = format!("/repos/{repo}/pulls/{number}/merge");
        match self.gh.put::<Value, _, _>(route, Some(&body)).await {
            Ok(v) => Ok(Merge::Merged(CommitSha::parse(v["sha"].as_str().unwrap_or_default())?)),
            Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 409 => Ok(Merge::HeadMoved),
            Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 405 => {
                // Already merged by us on an earlier try? Then that merge stands.
                let pr: Value = self.gh.get(format!("/repos/{repo}/pulls/{number}"), None::<&()>).await?;
                match (pr["merged"].as_bool(), pr["merge_commit_sha"].as_str()) {
                    (Some(true), Some(sha)) if pr["head"]["sha"] == head.as_str() => {
                        Ok(Merge::Merged(CommitSha::parse(sha)?))
                    }
                    _ => Ok(Merge::NotMergeable(source.message)),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Prepends `entry` (the release `tag`'s) to CHANGELOG.md on `branch` unless
    /// it is there; the new head commit of `branch`.
    pub async fn prepend_changelog(&self, repo: &RepoName, branch: &str, tag: &str, entry: &str) -> Result<CommitSha> {
        let edit = |old: Option<&str>| super::crown::with_changelog_entry(old, tag, entry);
        self.update_file(repo, branch, "CHANGELOG.md", &format!("CHANGELOG: {tag}"), edit).await
    }

    /// Writes `text` to `path` on `branch` unless it holds it already; the new head commit.
    pub async fn put_file(
        &self,
        repo: &RepoName,
        branch: &str,
        path: &str,
        message: &str,
        text: &str,
    ) -> Result<CommitSha> {
        self.update_file(repo, branch, path, message, |_| text.to_string()).await
    }

    /// `path` on `branch` rewritten by `edit` (given the old text, None when
    /// absent) in one commit, or left alone when `edit` changes nothing; the head
    /// commit of `branch` after it. GitHub checks the old blob's sha, so a
    /// concurrent edit fails instead of being overwritten.
    async fn update_file(
        &self,
        repo: &RepoName,
        branch: &str,
        path: &str,
        message: &str,
        edit: impl FnOnce(Option<&str>) -> String,
    ) -> Result<CommitSha> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let route = format!("/repos/{repo}/contents/{path}");
        let current: Option<Value> = match self.gh.get(format!("{route}?ref={branch}"), None::<&()>).await {
            Ok(v) => Some(v),
            Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 404 => None,
            Err(e) => return Err(e.into()),
        };
        let old = match &current {
            Some(v) => {
                Some(String::from_utf8(b64.decode(v["content"].as_str().unwrap_or_default().replace('\n', ""))?)?)
            }
            None => None,
        };
        let new = edit(old.as_deref());
        if old.as_deref() == Some(new.as_str()) {
            let head: Value = self.gh.get(format!("/repos/{repo}/commits/{branch}"), None::<&()>).await?;
            return CommitSha::parse(head["sha"].as_str().unwrap_or_default());
        }
        let mut body = json!({"message": message, "content": b64.encode(new), "branch": branch});
        if let Some(v) = &current {
            body["sha"] = v["sha"].clone();
        }
        let done: Value = self.gh.put(route, Some(&body)).await?;
        CommitSha::parse(done["commit"]["sha"].as_str().unwrap_or_default())
    }

    /// A signed annotated tag `tag` on `commit` and its ref; an existing ref on
    /// the same commit counts as done. The tag object is built and signed here
    /// (`signed_tag`), its signature sent in the message as git stores it; the
    /// object id GitHub answers with must be the signed object's, or no ref is made.
    pub async fn create_tag(
        &self,
        repo: &RepoName,
        tag: &str,
        message: &str,
        commit: &CommitSha,
        signer: &crate::lineage::signed_tag::TagSigner,
    ) -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let signed = signer.sign(git2::Oid::from_str(commit.as_str())?, tag, message, now as i64)?;
        let date = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(now));
        let tagger = json!({"name": signer.name, "email": signer.email, "date": date.to_string()});
        let body = json!({"tag": tag, "message": signed.message, "object": commit.as_str(), "type": "commit",
                          "tagger": tagger});
        let obj: Value = self.gh.post(format!("/repos/{repo}/git/tags"), Some(&body)).await?;
        if obj["sha"].as_str() != Some(signed.id.to_string().as_str()) {
            bail!(
                "GitHub stored the tag object of {tag} as {}, not the signed {}: its signature would not verify",
                obj["sha"],
                signed.id
            );
        }
        let refb = json!({"ref": format!("refs/tags/{tag}"), "sha": obj["sha"]});
        match self.gh.post::<_, Value>(format!("/repos/{repo}/git/refs"), Some(&refb)).await {
            Ok(_) => Ok(()),
            Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 422 => {
                if self.holds_our_tag(repo, tag, commit, signer).await? {
                    Ok(())
                } else {
                    bail!("tag {tag} already exists, and is not this validator's signed tag on {}", commit.as_str())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `refs/tags/<tag>` is a tag object on `commit` signed by `signer`:
    /// an earlier try's, not a tag someone else put there first. GitHub's JSON
    /// gives the fields, not the bytes, so the object is rebuilt from them and
    /// must hash to its id before its signature counts.
    async fn holds_our_tag(
        &self,
        repo: &RepoName,
        tag: &str,
        commit: &CommitSha,
        signer: &crate::lineage::signed_tag::TagSigner,
    ) -> Result<bool> {
        use crate::lineage::signed_tag::{tag_bytes, verify};
        let r: Value = match self.gh.get(format!("/repos/{repo}/git/ref/tags/{tag}"), None::<&()>).await {
            Ok(v) => v,
            Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 404 => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let Some(sha) = r["object"]["sha"].as_str().filter(|_| r["object"]["type"] == "tag") else { return Ok(false) };
        let t: Value = self.gh.get(format!("/repos/{repo}/git/tags/{sha}"), None::<&()>).await?;
        let (Some(name), Some(email), Some(date), Some(message)) = (
            t["tagger"]["name"].as_str(),
            t["tagger"]["email"].as_str(),
            t["tagger"]["date"].as_str(),
            t["message"].as_str(),
        ) else {
            return Ok(false);
        };
        let Ok(when) = humantime::parse_rfc3339(date) else { return Ok(false) };
        let seconds = when.duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let bytes = tag_bytes(
            git2::Oid::from_str(commit.as_str())?,
            tag,
            &format!("{name} <{email}> {seconds} +0000"),
            message,
        );
        let ours = [("this validator", signer.public_key())];
        let ours: Vec<(&str, &str)> = ours.iter().map(|(n, k)| (*n, k.as_str())).collect();
        Ok(t["object"]["sha"].as_str() == Some(commit.as_str())
            && git2::Oid::hash_object(git2::ObjectType::Tag, &bytes)?.to_string() == sha
            && verify(&bytes, &ours).is_ok())
    }

    /// The commit `tag` points at (through its tag object when annotated); None when absent.
    pub async fn tag_commit(&self, repo: &RepoName, tag: &str) -> Result<Option<CommitSha>> {
        let r: Value = match self.gh.get(format!("/repos/{repo}/git/ref/tags/{tag}"), None::<&()>).await {
            Ok(v) => v,
            Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 404 => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let sha = r["object"]["sha"].as_str().unwrap_or_default();
        if r["object"]["type"] == "tag" {
            let t: Value = self.gh.get(format!("/repos/{repo}/git/tags/{sha}"), None::<&()>).await?;
            return Ok(Some(CommitSha::parse(t["object"]["sha"].as_str().unwrap_or_default())?));
        }
        Ok(Some(CommitSha::parse(sha)?))
    }

    /// The repository's release tags (`recipe-vX.Y.Z`), by name.
    pub async fn release_tags(&self, repo: &RepoName) -> Result<Vec<String>> {
        let route = format!("/repos/{repo}/git/matching-refs/tags/{}", crate::repo::TAG_PREFIX);
        let refs: Vec<Value> = self.gh.get(route, None::<&()>).await?;
        let names = refs.iter().filter_map(|r| r["ref"].as_str()?.strip_prefix("refs/tags/"));
        Ok(names.filter(|t| crate::repo::tag_version(t).is_some()).map(str::to_string).collect())
    }

    /// A release for `tag`; one that exists already counts as done.
    pub async fn create_release(&self, repo: &RepoName, tag: &str, body: &str) -> Result<()> {
        let req = json!({"tag_name": tag, "name": tag, "body": body});
        match self.gh.post::<_, Value>(format!("/repos/{repo}/releases"), Some(&req)).await {
            Ok(_) => Ok(()),
            Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 422 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every open PR: number, head and body (100 per page, all pages).
    pub async fn open_pulls(&self, repo: &RepoName) -> Result<Vec<(u64, CommitSha, String)>> {
        let mut out = Vec::new();
        for page in 1.. {
            let route = format!("/repos/{repo}/pulls?state=open&per_page=100&page={page}");
            let list: Vec<Value> = self.gh.get(route, None::<&()>).await?;
            for pr in &list {
                let head = CommitSha::parse(pr["head"]["sha"].as_str().unwrap_or_default())?;
                let body = pr["body"].as_str().unwrap_or_default().to_string();
                out.push((pr["number"].as_u64().unwrap_or_default(), head, body));
            }
            if list.len() < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// The user's permission on the repository: admin, maintain, write, triage, read or none.
    pub async fn permission(&self, repo: &RepoName, user: &str) -> Result<String> {
        let v: Value = self.gh.get(format!("/repos/{repo}/collaborators/{user}/permission"), None::<&()>).await?;
        Ok(v["permission"].as_str().unwrap_or("none").to_string())
    }

    /// Posts `body` on PR `number` unless a comment carrying `marker` is there
    /// already (a retried job does not comment twice).
    pub async fn comment_once(&self, repo: &RepoName, number: u64, marker: &str, body: &str) -> Result<()> {
        let route = format!("/repos/{repo}/issues/{number}/comments");
        for page in 1.. {
            let list: Vec<Value> = self.gh.get(format!("{route}?per_page=100&page={page}"), None::<&()>).await?;
            if list.iter().any(|c| c["body"].as_str().is_some_and(|b| b.contains(marker))) {
                return Ok(());
            }
            if list.len() < 100 {
                break;
            }
        }
        let _: Value = self.gh.post(route, Some(&json!({"body": format!("{body}\n\n{marker}")}))).await?;
        Ok(())
    }

    /// A token for git over HTTPS as this installation.
    pub async fn git_token(&self) -> Result<String> {
        let token = self.gh.installation_token().await?;
        Ok(octocrab::secrecy::ExposeSecret::expose_secret(&token).to_string())
    }

    /// Creates the check run for `head`, queued. Returns its id.
    pub async fn start_check(&self, repo: &RepoName, head: &CommitSha, external_id: &str) -> Result<CheckRunId> {
        let body = json!({
            "name": CHECK_NAME, "head_sha": head.as_str(), "status": "queued", "external_id": external_id,
            "output": {"title": "queued", "summary": "Waiting for a judge."},
        });
        let run: Value = self.gh.post(format!("/repos/{repo}/check-runs"), Some(&body)).await?;
        let id = run["id"].as_u64().context("GitHub answered a check run without an id")?;
        Ok(CheckRunId(id))
    }

    /// Marks the check in progress at `stage`.
    pub async fn check_progress(&self, repo: &RepoName, id: CheckRunId, stage: &str) -> Result<()> {
        let body = json!({
            "status": "in_progress",
            "output": {"title": format!("judging: {stage}"), "summary": format!("Stage **{stage}** is running.")},
        });
        self.patch_check(repo, id, &body).await
    }

    /// Shows why the check is waiting (in progress, not concluded).
    pub async fn check_waiting(&self, repo: &RepoName, id: CheckRunId, why: &str) -> Result<()> {
        let body = json!({
            "status": "in_progress",
            "output": {"title": why, "summary": format!("{why}. The judgment resumes by itself when they are in.")},
        });
        self.patch_check(repo, id, &body).await
    }

    /// Completes the check: conclusion and output with the first 50 annotations,
    /// then one update per further 50 (GitHub appends them).
    pub async fn complete_check(
        &self,
        repo: &RepoName,
        id: CheckRunId,
        conclusion: Conclusion,
        out: &CheckOutput,
    ) -> Result<()> {
        let mut batches = annotation_batches(&out.annotations);
        let output = |annotations: &[super::checks::Annotation]| json!({"title": out.title, "summary": out.summary, "text": out.text, "annotations": annotations});
        let first = batches.next().unwrap_or(&[]);
        let mut body = json!({"status": "completed", "conclusion": conclusion, "output": output(first)});
        if !out.images.is_empty() {
            body["output"]["images"] = json!(out.images);
        }
        self.patch_check(repo, id, &body).await?;
        for more in batches {
            self.patch_check(repo, id, &json!({"output": output(more)})).await?;
        }
        Ok(())
    }

    async fn patch_check(&self, repo: &RepoName, id: CheckRunId, body: &Value) -> Result<()> {
        let _: Value = self.gh.patch(format!("/repos/{repo}/check-runs/{}", id.0), Some(body)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_shas_are_checked() {
        assert_eq!(RepoName::parse("karpa-net/recipe").unwrap().to_string(), "karpa-net/recipe");
        for bad in ["karpa-net", "a/b/c", "/x", "x/", "a/..", "a b/c", "a/c?x=1"] {
            assert!(RepoName::parse(bad).is_err(), "{bad}");
        }
        assert!(CommitSha::parse(&"A".repeat(40)).is_ok());
        assert!(CommitSha::parse(&"a".repeat(39)).is_err() && CommitSha::parse(&"g".repeat(40)).is_err());
    }
}
