//! Reconciliation syncs the App's installations, then finds the open PR heads a lost webhook never queued, and only
//! those: keys are the webhook's, so a second pass queues nothing.

use karpa_bot::db::jobs::{self, NewJob};
use karpa_bot::server::events::judge_key;
use serde_json::json;

const REPO: &str = "karpa-net/recipe";

#[test]
fn lost_deliveries_are_found_once() {
    let gh = karpa_tests::fake_github_for_app(REPO, 5);
    for n in [1u64, 2, 3] {
        gh.add_pull(
            REPO,
            json!({"number": n, "state": "open", "body": format!("PR {n}"), "head": {"sha": format!("{n:040x}")}}),
        );
    }
    gh.add_pull(REPO, json!({"number": 4, "state": "closed", "body": "", "head": {"sha": format!("{:040x}", 4)}}));
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = karpa_tests::fresh_database().await;
        sqlx::query("INSERT INTO installed_repos (installation_id, repo) VALUES (5, $1)")
            .bind(REPO)
            .execute(&pool)
            .await
            .unwrap();
        // PR 1's delivery arrived: its job exists.
        let head1 = format!("{:040x}", 1);
        let key = judge_key(REPO, 1, &head1, "PR 1");
        jobs::enqueue(&pool, &NewJob { kind: "judge".into(), dedupe_key: key, payload: json!({}) }).await.unwrap();
        let s = karpa_tests::services(pool.clone(), &gh, karpa_tests::judge_settings(tmp.path(), "unused", &gh));
        assert_eq!(karpa_bot::jobs::reconcile::run(&s).await.unwrap(), 2, "PRs 2 and 3; not 1, not the closed 4");
        let row: (i64, String) =
            sqlx::query_as("SELECT installation_id, repo FROM installed_repos").fetch_one(&pool).await.unwrap();
        assert_eq!(row, (5, REPO.to_string()));
        assert_eq!(karpa_bot::jobs::reconcile::run(&s).await.unwrap(), 0);
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'judge'").fetch_one(&pool).await.unwrap();
        assert_eq!(n, 3);
    });
    gh.assert_clean();
}
