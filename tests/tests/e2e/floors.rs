//! Noise floors as state on a real PostgreSQL: a floor is complete only with
//! the rule's runs of its own device class; until then its missing seeds are
//! queued (once each, ever); a run stored twice counts once; the reference is
//! the per-token mean of the runs' nats. And a waiting job's snooze spends no
//! attempt.

use karpa_bot::db::floors::{self, FloorKey, FloorRun};
use karpa_bot::db::jobs::{self, NewJob};
use karpa_bot::judge::noise_floor::FloorLookup;

fn key(device_class: &str) -> FloorKey {
    FloorKey {
        repo: "karpa-net/recipe".into(),
        king: "recipe-v0.1.2".into(),
        config: "tiny".into(),
        device_class: device_class.into(),
    }
}

fn run(seed: u64, bpb: f64, nats: Vec<f32>) -> FloorRun {
    FloorRun { seed, hidden_bpb: bpb, nats, harness_digest: "h".repeat(64), runner: "host-1-0".into(), seconds: 42.0 }
}

async fn floor_jobs(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT dedupe_key FROM jobs WHERE kind = 'floor-run' ORDER BY dedupe_key")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_floor_is_complete_with_its_own_classes_runs_only() {
    let pool = karpa_tests::fresh_database().await;
    let (cpu, h200) = (key("cpu-f32"), key("cuda-bf16/NVIDIA-H200"));
    assert_eq!(floors::lookup(&pool, &cpu, 7, 3).await.unwrap(), FloorLookup::Measuring { done: 0, of: 3 });
    assert_eq!(floor_jobs(&pool).await.len(), 3);
    assert!(floors::record(&pool, &cpu, &run(0, 2.36, vec![4.0, 2.0])).await.unwrap());
    assert!(floors::record(&pool, &cpu, &run(2, 2.34, vec![2.0, 4.0])).await.unwrap());
    // The same seed again (a run redone after its runner died): the first stands.
    assert!(!floors::record(&pool, &cpu, &run(2, 9.99, vec![0.0, 0.0])).await.unwrap());
    assert_eq!(floors::lookup(&pool, &cpu, 7, 3).await.unwrap(), FloorLookup::Measuring { done: 2, of: 3 });
    assert_eq!(floor_jobs(&pool).await.len(), 3, "asking again queues nothing new");
    assert!(floors::record(&pool, &cpu, &run(1, 2.35, vec![3.0, 3.0])).await.unwrap());
    let FloorLookup::Ready(floor) = floors::lookup(&pool, &cpu, 7, 3).await.unwrap() else { panic!("complete") };
    assert_eq!(floor.values, [2.36, 2.35, 2.34]);
    assert_eq!(floor.reference.as_deref(), Some(&[3.0f32, 3.0][..]));
    // An H200's floor is not the CPU's: none of those runs count for it.
    assert_eq!(floors::lookup(&pool, &h200, 7, 3).await.unwrap(), FloorLookup::Measuring { done: 0, of: 3 });
    let queued = floor_jobs(&pool).await;
    assert_eq!(queued.len(), 6);
    assert!(queued.contains(&"floor:karpa-net/recipe@recipe-v0.1.2/tiny/cuda-bf16/NVIDIA-H200/seed-0".to_string()));
    assert_eq!(floors::pending(&pool).await.unwrap(), 2, "both floors' jobs are still queued");
}

#[tokio::test]
async fn a_waiting_job_goes_back_without_spending_an_attempt() {
    let pool = karpa_tests::fresh_database().await;
    let job = NewJob { kind: "judge".into(), dedupe_key: "judge:w".into(), payload: serde_json::json!({}) };
    jobs::enqueue(&pool, &job).await.unwrap();
    for _ in 0..10 {
        let lease = jobs::claim(&pool, "w", std::time::Duration::from_secs(60)).await.unwrap().expect("ready");
        assert_eq!(lease.attempt, 1, "waiting is nobody's failure");
        let waits = lease.payload["waits"].as_u64().unwrap_or(0);
        let payload = serde_json::json!({"waits": waits + 1});
        assert!(jobs::snooze(&pool, lease, std::time::Duration::ZERO, Some(&payload)).await.unwrap());
    }
    let (state, attempts, payload): (String, i32, serde_json::Value) =
        sqlx::query_as("SELECT state, attempts, payload FROM jobs").fetch_one(&pool).await.unwrap();
    assert_eq!((state.as_str(), attempts), ("queued", 0));
    assert_eq!(payload["waits"], 10, "what it waited on travels with it");
}

/// An operator's floor file imported: the judge finds it complete, with the
/// file's values and per-token reference; importing again stores nothing new.
#[tokio::test]
async fn an_operators_floor_imports_as_its_runs() {
    use karpa_bot::judge::decision::NoiseFloor;
    let pool = karpa_tests::fresh_database().await;
    let cpu = key("cpu-f32");
    let file = NoiseFloor {
        king: cpu.king.clone(),
        config: cpu.config.clone(),
        values: vec![2.36, 2.35],
        reference: Some(vec![4.5f32, 1.0].into()),
    };
    assert_eq!(floors::import(&pool, &cpu, &file, "import:floor.json").await.unwrap(), 2);
    assert_eq!(floors::import(&pool, &cpu, &file, "import:floor.json").await.unwrap(), 0);
    assert_eq!(floors::lookup(&pool, &cpu, 7, 2).await.unwrap(), FloorLookup::Ready(file.clone()));
    // Without a reference the floor is complete all the same; the judge aims with none.
    let bare = NoiseFloor { reference: None, king: "recipe-v0.1.3".into(), ..file };
    let bare_key = FloorKey { king: "recipe-v0.1.3".into(), ..cpu };
    floors::import(&pool, &bare_key, &bare, "import").await.unwrap();
    assert_eq!(floors::lookup(&pool, &bare_key, 7, 2).await.unwrap(), FloorLookup::Ready(bare));
}
