//! `/karpa` commands through the worker, against the fake GitHub and a real
//! PostgreSQL: permission-checked retries, explanations from the stored
//! verdict, help for anything else, and one reply per comment even when the
//! job runs twice.

use karpa_bot::db::jobs::{self, NewJob};
use karpa_bot::jobs::run_one;
use serde_json::json;

const REPO: &str = "karpa-net/recipe";

#[test]
fn retry_explain_and_help() {
    let gh = karpa_tests::fake_github_for_app(REPO, 1);
    let head = "4c".repeat(20);
    gh.add_pull(
        REPO,
        json!({"number": 7, "state": "open", "body": "", "head": {"sha": head},
                              "base": {"ref": "main"}, "user": {"login": "miner-ada"}}),
    );
    gh.ledger.lock().unwrap().permissions.insert("maintainer-bo".into(), "write".into());
    gh.ledger.lock().unwrap().permissions.insert("owner-cy".into(), "admin".into());
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = karpa_tests::fresh_database().await;
        let settings = karpa_tests::judge_settings(tmp.path(), "unused", &gh);
        let services = karpa_tests::services(pool.clone(), &gh, settings);
        let command = |id: u64, author: &str, command: &str, key: &str| NewJob {
            kind: "command".into(),
            dedupe_key: key.into(),
            payload: json!({"repo": REPO, "installation": 1, "pr": 7, "comment": id, "author": author,
                            "association": "NONE", "command": command}),
        };
        let run = |job: NewJob| {
            let (pool, services) = (&pool, &services);
            async move {
                jobs::enqueue(pool, &job).await.unwrap().unwrap();
                assert!(run_one(services, "w").await.unwrap());
            }
        };
        run(command(1, "passer-by", "retry", "c1")).await;
        run(command(2, "miner-ada", "explain", "c2")).await;
        run(command(3, "maintainer-bo", "retry", "c3")).await;
        assert!(run_one(&services, "w").await.unwrap(), "the retry's judgment");
        run(command(4, "miner-ada", "explain", "c4")).await;
        run(command(5, "miner-ada", "frobnicate now", "c5")).await;
        // The same comment's job again (a retry after a crash): no second reply.
        run(command(5, "miner-ada", "frobnicate now", "c5-again")).await;
        // Release numbering is for maintainers only; write access is not enough.
        karpa_bot::db::kings::seed(&pool, REPO, "recipe-v0.1.3", &"ab".repeat(20)).await.unwrap();
        run(command(6, "maintainer-bo", "release minor", "c6")).await;
        let pending: (i64,) = sqlx::query_as("SELECT count(*) FROM release_bumps").fetch_one(&pool).await.unwrap();
        assert_eq!(pending.0, 0);
        run(command(7, "owner-cy", "release minor", "c7")).await;
        let by: (String,) = sqlx::query_as("SELECT requested_by FROM release_bumps").fetch_one(&pool).await.unwrap();
        assert_eq!(by.0, "owner-cy");

        let queued: Vec<(String, String)> =
            sqlx::query_as("SELECT kind, state FROM jobs WHERE kind = 'rejudge'").fetch_all(&pool).await.unwrap();
        assert_eq!(queued, [("rejudge".to_string(), "done".to_string())], "only the maintainer's retry");
    });
    gh.assert_clean();
    // The retry was judged (this PR has no bundle locator, so it fails at intake).
    let runs = gh.check_runs();
    assert_eq!((runs.len(), runs[0].state["conclusion"].as_str()), (1, Some("failure")));
    let l = gh.ledger.lock().unwrap();
    let replies: Vec<&str> = l.comments[&(REPO.to_string(), 7)].iter().map(|c| c["body"].as_str().unwrap()).collect();
    assert_eq!(replies.len(), 7, "{replies:#?}");
    assert!(replies[0].starts_with("@passer-by only the PR's author or someone with write access"));
    assert!(replies[1].contains("no verdict yet"));
    assert!(replies[2].contains("judging `4c4c4c4c4c4c` again"));
    let explained = replies[3];
    assert!(
        explained.contains("**rejected**") && explained.contains("✘ intake") && explained.contains("`intake.locator`")
    );
    assert!(replies[4].contains("`/karpa frobnicate` is not a command") && replies[4].contains("/karpa retry"));
    assert!(replies[5].contains("only a maintainer"), "{}", replies[5]);
    assert!(replies[6].contains("will be released as recipe-v0.2.0"), "{}", replies[6]);
    for (reply, id) in replies.iter().zip([1, 2, 3, 4, 5, 6, 7]) {
        assert!(reply.contains(&format!("karpa:reply-to:{id} ")), "{reply}");
    }
}
