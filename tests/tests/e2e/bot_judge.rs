//! The judge job end to end, short of training: a real PostgreSQL queue, the
//! strict fake GitHub (App token, PR, check runs, bundle hosting), a real git
//! remote mirrored by the bot, and the pipeline. Each broken PR ends as a
//! completed `failure` check naming what is wrong; closed or re-pushed PRs get
//! no check at all.

use karpa_bot::db::jobs::{self, NewJob};
use karpa_bot::jobs::run_one;
use karpa_tests::fake_github::FakeGitHub;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

const REPO: &str = "karpa-net/recipe";
const INSTALLATION: u64 = 51234567;

fn git(dir: &Path, args: &[&str]) -> String {
    karpa_tests::git(dir, args).trim().to_string()
}

/// A bare remote with the king tagged recipe-v0.1.0 and PR heads under refs/pull/N/head.
fn remote(tmp: &Path, prs: &[u64]) -> (String, Vec<String>) {
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "recipe\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "v0.1.0"]);
    git(&work, &["tag", "-a", "recipe-v0.1.0", "-m", "recipe v0.1.0"]);
    let mut heads = Vec::new();
    for pr in prs {
        git(&work, &["checkout", "-q", "-B", &format!("pr{pr}"), "recipe-v0.1.0"]);
        std::fs::write(work.join("NOTES.md"), format!("pr {pr}\n")).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", &format!("pr {pr}")]);
        heads.push(git(&work, &["rev-parse", "HEAD"]));
    }
    let bare = tmp.join(format!("remotes/{REPO}.git"));
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git(tmp, &["clone", "-q", "--bare", work.to_str().unwrap(), bare.to_str().unwrap()]);
    for (pr, head) in prs.iter().zip(&heads) {
        git(&bare, &["update-ref", &format!("refs/pull/{pr}/head"), head]);
    }
    (tmp.join("remotes/{repo}.git").to_string_lossy().into_owned(), heads)
}

fn locator(name: &str, sha256: &str) -> String {
    format!(
        "Why this helps.\n\n```karpa-bundle\nurl = \"https://bundles.example/{name}\"\nsha256 = \"{sha256}\"\nbundle_digest = \"{}\"\n```\n",
        "ab".repeat(32)
    )
}

fn pull(number: u64, head: &str, state: &str, body: &str) -> Value {
    json!({"number": number, "state": state, "body": body, "head": {"sha": head, "ref": format!("pr{number}")},
           "base": {"ref": "main"}, "user": {"login": "miner-ada", "type": "User"}})
}

// A plain test: the fake GitHub runs its own runtime, which cannot start inside another.
#[test]
fn broken_prs_end_as_failed_checks_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let gh = karpa_tests::fake_github_for_app(REPO, INSTALLATION);
    let (git_url, heads) = remote(tmp.path(), &[7, 8, 9, 10, 11]);

    let garbage = b"this is not a tar archive at all".repeat(100);
    let garbage_sha = hex::encode(Sha256::digest(&garbage));
    gh.add_file("garbage.tar", garbage);
    gh.add_file("other.tar", b"some other file".to_vec());
    gh.add_pull(REPO, pull(7, &heads[0], "open", "I forgot the locator."));
    gh.add_pull(REPO, pull(8, &heads[1], "open", &locator("other.tar", &"0".repeat(64))));
    gh.add_pull(REPO, pull(9, &heads[2], "open", &locator("garbage.tar", &garbage_sha)));
    gh.add_pull(REPO, pull(10, &heads[3], "closed", &locator("garbage.tar", &garbage_sha)));
    gh.add_pull(REPO, pull(11, &heads[0], "open", "pushed again since the job was queued"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(judge_them(&gh, tmp.path(), git_url, heads));
}

async fn judge_them(gh: &FakeGitHub, tmp: &Path, git_url: String, heads: Vec<String>) {
    let pool = karpa_tests::fresh_database().await;
    for (pr, head) in [(7, &heads[0]), (8, &heads[1]), (9, &heads[2]), (10, &heads[3]), (11, &heads[4])] {
        let payload = json!({"repo": REPO, "installation": INSTALLATION, "pr": pr, "head_sha": head});
        let job = NewJob { kind: "judge".into(), dedupe_key: format!("judge:{REPO}#{pr}@{head}"), payload };
        jobs::enqueue(&pool, &job).await.unwrap().unwrap();
    }
    let services =
        karpa_tests::services(pool.clone(), gh, karpa_tests::judge_settings(&tmp.join("state"), &git_url, gh));
    while run_one(&services, "w1").await.unwrap() {}

    gh.assert_clean();
    assert_eq!(jobs::counts(&pool).await.unwrap(), vec![("done".to_string(), 5)]);
    let runs = gh.check_runs();
    assert_eq!(runs.len(), 3, "no check for the closed PR or the re-pushed one");
    let expected = [(&heads[0], "intake.locator"), (&heads[1], "intake.digest"), (&heads[2], "intake.archive")];
    for (run, (head, code)) in runs.iter().zip(expected) {
        assert_eq!(run.statuses, ["queued", "in_progress", "completed"]);
        assert_eq!(run.state["head_sha"], head.as_str());
        assert_eq!(run.state["conclusion"], "failure", "{}", run.state);
        let summary = run.state["output"]["summary"].as_str().unwrap();
        assert!(summary.contains(code), "{code} not in {summary}");
    }
    let classes: Vec<(i64, String)> =
        sqlx::query_as("SELECT pr, class FROM judgments ORDER BY pr").fetch_all(&pool).await.unwrap();
    assert_eq!(classes, [(7, "rejected".into()), (8, "rejected".into()), (9, "rejected".into())]);
    // Refusals are kept in the corpus too, findings searchable.
    let corpus: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT pr, class, findings_text FROM submissions ORDER BY pr").fetch_all(&pool).await.unwrap();
    assert_eq!(
        corpus.iter().map(|c| (c.0, c.1.as_str())).collect::<Vec<_>>(),
        [(7, "rejected"), (8, "rejected"), (9, "rejected")]
    );
    for ((_, _, findings), (_, code)) in corpus.iter().zip(expected) {
        assert!(findings.contains(code), "{code} not in {findings}");
    }
    // The bot mirrored the remote to judge PR 9 on local objects.
    let mirror = tmp.join("state/mirrors/karpa-net/recipe.git");
    assert_eq!(git(&mirror, &["rev-parse", "refs/pull/9/head"]), heads[2]);
}
