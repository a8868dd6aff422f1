//! Reconciliation syncs the App's installations, then finds the open PR heads a lost webhook never queued, and only
//! those: keys are the webhook's, so a second pass queues nothing. It also reports release tags that drifted from
//! the recorded king.

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
        let first = karpa_bot::jobs::reconcile::run(&s).await.unwrap();
        assert_eq!(first.queued, 2, "PRs 2 and 3; not 1, not the closed 4");
        assert!(first.drift.is_empty(), "no king recorded yet: nothing to compare");
        let row: (i64, String) =
            sqlx::query_as("SELECT installation_id, repo FROM installed_repos").fetch_one(&pool).await.unwrap();
        assert_eq!(row, (5, REPO.to_string()));
        assert_eq!(karpa_bot::jobs::reconcile::run(&s).await.unwrap().queued, 0);
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'judge'").fetch_one(&pool).await.unwrap();
        assert_eq!(n, 3);

        // Drift: the king's tag where we crowned it is fine; a hand-made release
        // above it, then the king's tag moved, then deleted, are each reported.
        let king = "c0".repeat(20);
        karpa_bot::db::kings::seed(&pool, REPO, "recipe-v0.1.4", &king).await.unwrap();
        let tag = |name: &str, commit: &str| {
            let mut l = gh.ledger.lock().unwrap();
            let state = l.repos.entry(REPO.into()).or_default();
            let sha = format!("{:040x}", 0xbeef00 + state.tag_objects.len());
            state
                .tag_objects
                .insert(sha.clone(), json!({"sha": sha, "tag": name, "object": {"sha": commit, "type": "commit"}}));
            state.tag_refs.insert(name.into(), sha);
        };
        tag("recipe-v0.1.4", &king);
        tag("recipe-v0.1.3", &"0a".repeat(20));
        let drift = |r: karpa_bot::jobs::reconcile::Reconciled| r.drift.into_iter().map(|(_, d)| d).collect::<Vec<_>>();
        assert!(drift(karpa_bot::jobs::reconcile::run(&s).await.unwrap()).is_empty());
        tag("recipe-v0.2.0", &"0b".repeat(20));
        use karpa_bot::jobs::reconcile::Drift;
        let unknown = Drift::UnknownRelease { tag: "recipe-v0.2.0".into() };
        assert_eq!(drift(karpa_bot::jobs::reconcile::run(&s).await.unwrap()), [unknown.clone()]);
        tag("recipe-v0.1.4", &"0c".repeat(20));
        let moved = Drift::KingTagMoved { tag: "recipe-v0.1.4".into(), crowned: king.clone(), now: "0c".repeat(20) };
        assert_eq!(drift(karpa_bot::jobs::reconcile::run(&s).await.unwrap()), [moved, unknown.clone()]);
        gh.ledger.lock().unwrap().repos.get_mut(REPO).unwrap().tag_refs.remove("recipe-v0.1.4");
        let missing = Drift::KingTagMissing { tag: "recipe-v0.1.4".into() };
        assert_eq!(drift(karpa_bot::jobs::reconcile::run(&s).await.unwrap()), [missing, unknown]);
    });
    gh.assert_clean();
}

/// An App on more than a page of installations: reconciliation reads them all
/// (GitHub lists at most 100 a page), not only the first hundred.
#[test]
fn every_page_of_installations_is_synced() {
    let gh = karpa_tests::fake_github_for_app(REPO, 5);
    gh.ledger.lock().unwrap().other_installations = (1001..=1149).collect();
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = karpa_tests::fresh_database().await;
        let s = karpa_tests::services(pool.clone(), &gh, karpa_tests::judge_settings(tmp.path(), "unused", &gh));
        karpa_bot::jobs::reconcile::sync_installations(&s).await.unwrap();
        // The fake serves the same repository to every installation: the last
        // one synced, on the second page, holds it.
        let row: (i64, String) =
            sqlx::query_as("SELECT installation_id, repo FROM installed_repos").fetch_one(&pool).await.unwrap();
        assert_eq!(row, (1149, REPO.to_string()));
    });
    let minted = gh.ledger.lock().unwrap().tokens.iter().filter(|t| t.starts_with("ghs_fake_")).count();
    assert!(minted >= 150, "a token per installation: {minted}");
    gh.assert_clean();
}
