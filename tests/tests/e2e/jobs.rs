//! The job queue on a real PostgreSQL: idempotent enqueue, exclusive claims under
//! concurrency, leases that lapse when a worker dies, backoff and dead letters.

use karpa_bot::db::jobs::{self, NewJob};
use serde_json::json;
use std::time::Duration;

fn job(key: &str) -> NewJob {
    NewJob { kind: "judge".into(), dedupe_key: key.into(), payload: json!({"key": key}) }
}

async fn state_of(pool: &sqlx::PgPool, id: jobs::JobId) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT state, attempts, last_error FROM jobs WHERE id = $1")
        .bind(id.0)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn concurrent_workers_never_share_a_job() {
    let pool = karpa_tests::fresh_database().await;
    for i in 0..40 {
        assert!(jobs::enqueue(&pool, &job(&format!("k{i}"))).await.unwrap().is_some());
    }
    assert!(jobs::enqueue(&pool, &job("k0")).await.unwrap().is_none(), "idempotent on the key");
    let mut workers = Vec::new();
    for w in 0..8 {
        let pool = pool.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(lease) = jobs::claim(&pool, &format!("w{w}"), Duration::from_secs(60)).await.unwrap() {
                mine.push(lease.id);
                assert!(jobs::complete(&pool, lease).await.unwrap());
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (40, 40), "every job claimed exactly once");
    assert_eq!(jobs::counts(&pool).await.unwrap(), vec![("done".to_string(), 40)]);
}

#[tokio::test]
async fn a_dead_workers_lease_lapses_and_only_the_holder_finishes() {
    let pool = karpa_tests::fresh_database().await;
    let id = jobs::enqueue(&pool, &job("k")).await.unwrap().unwrap();
    let first = jobs::claim(&pool, "w1", Duration::from_millis(200)).await.unwrap().unwrap();
    assert_eq!((first.id, first.attempt), (id, 1));
    assert!(jobs::claim(&pool, "w2", Duration::from_secs(60)).await.unwrap().is_none(), "leased");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // w1 "died": its lease lapsed, w2 takes over; w1 can no longer finish it.
    let second = jobs::claim(&pool, "w2", Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!((second.id, second.attempt), (id, 2));
    assert!(!jobs::heartbeat(&pool, first.id, &first.worker, Duration::from_secs(60)).await.unwrap());
    assert!(!jobs::complete(&pool, first).await.unwrap());
    assert!(jobs::heartbeat(&pool, second.id, &second.worker, Duration::from_secs(60)).await.unwrap());
    assert!(jobs::complete(&pool, second).await.unwrap());
    assert_eq!(state_of(&pool, id).await.0, "done");
}

#[tokio::test]
async fn failures_back_off_then_the_job_is_dead_but_kept() {
    let pool = karpa_tests::fresh_database().await;
    let id = jobs::enqueue(&pool, &job("k")).await.unwrap().unwrap();
    sqlx::query("UPDATE jobs SET max_attempts = 2 WHERE id = $1").bind(id.0).execute(&pool).await.unwrap();
    let lease = jobs::claim(&pool, "w", Duration::from_secs(60)).await.unwrap().unwrap();
    jobs::fail(&pool, lease, "GitHub said 502", Duration::from_secs(3600)).await.unwrap();
    assert_eq!(state_of(&pool, id).await, ("queued".into(), 1, Some("GitHub said 502".into())));
    assert!(jobs::claim(&pool, "w", Duration::from_secs(60)).await.unwrap().is_none(), "backing off");
    sqlx::query("UPDATE jobs SET run_after = now() WHERE id = $1").bind(id.0).execute(&pool).await.unwrap();
    let lease = jobs::claim(&pool, "w", Duration::from_secs(60)).await.unwrap().unwrap();
    jobs::fail(&pool, lease, "GitHub said 502 again", Duration::from_millis(1)).await.unwrap();
    assert_eq!(state_of(&pool, id).await.0, "dead");
    assert!(jobs::claim(&pool, "w", Duration::from_secs(60)).await.unwrap().is_none());

    // A job whose worker keeps dying is buried once its attempts are used up.
    let id = jobs::enqueue(&pool, &job("crashy")).await.unwrap().unwrap();
    sqlx::query("UPDATE jobs SET max_attempts = 1 WHERE id = $1").bind(id.0).execute(&pool).await.unwrap();
    let _lost = jobs::claim(&pool, "w", Duration::from_millis(50)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(jobs::claim(&pool, "w", Duration::from_secs(60)).await.unwrap().is_none());
    let (state, _, err) = state_of(&pool, id).await;
    assert_eq!(state, "dead");
    assert!(err.unwrap().contains("no attempts left"));
}
