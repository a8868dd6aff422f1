//! `karpa bench-webhooks`: signed deliveries over loopback against the real
//! server and a real PostgreSQL, bounded in count and time; prints deliveries/s
//! and p50/p99 latency of the 2xx per kind of delivery, next to a baseline that
//! stops at the signature check (the floor the database path is compared with).

use crate::server::{router, webhook::sign, AppState};
use anyhow::{bail, Result};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, env = "KARPA_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Deliveries per row (at most).
    #[arg(long, default_value_t = 20_000)]
    pub deliveries: usize,
    /// Seconds per row (at most).
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

const SECRET: &[u8] = b"bench webhook secret, 32 bytes..";
const REPO: &str = "karpa-net/recipe";

struct Row {
    what: &'static str,
    sent: usize,
    ok: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

pub fn run(args: &BenchArgs) -> Result<bool> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let pool = crate::db::connect(&args.database_url).await?;
        let state = AppState::new(pool.clone(), vec![SECRET.to_vec()], 1, crate::server::DEFAULT_MAX_BODY);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/webhook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(args.concurrency).build_http();
        let install = serde_json::json!({"action": "created", "installation": {"id": 1},
                                         "repositories": [{"full_name": REPO}]});
        let once = send(&client, &url, "installation", "bench-install", serde_json::to_vec(&install)?, true).await?;
        if once.0 != 202 {
            bail!("the installation delivery got {}", once.0);
        }
        let run = format!("{:x}", std::process::id());
        let rows = vec![
            bench(&client, &url, args, ("baseline: bad signature → 401", 0), 401, |i| ("ping", ping(), false, i))
                .await?,
            bench(&client, &url, args, ("ping → 202 (delivery recorded)", 1), 202, |i| ("ping", ping(), true, i))
                .await?,
            bench(&client, &url, args, ("pull_request → 202 (delivery + job)", 2), 202, |i| {
                ("pull_request", pull_request(&run, i), true, i)
            })
            .await?,
        ];
        println!("| delivery | sent | 2xx/expected | deliveries/s | p50 ms | p99 ms |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for r in &rows {
            println!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} |",
                r.what,
                r.sent,
                r.ok,
                r.ok as f64 / r.seconds,
                r.p50_ms,
                r.p99_ms
            );
        }
        let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&pool).await?;
        println!("\njobs in the queue: {jobs} (one per pull_request delivery)");
        Ok(rows.iter().all(|r| r.ok == r.sent))
    })
}

fn ping() -> Vec<u8> {
    br#"{"zen":"Practicality beats purity.","hook_id":1}"#.to_vec()
}

fn pull_request(run: &str, i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": "synchronize",
        "pull_request": {"number": 1 + i % 50, "head": {"sha": format!("{run}{i:034x}")}, "base": {"ref": "main"},
                         "body": "bench", "user": {"login": "miner", "type": "User"}},
        "repository": {"full_name": REPO},
        "installation": {"id": 1}
    }))
    .expect("json")
}

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn send(client: &Http, url: &str, event: &str, guid: &str, body: Vec<u8>, signed: bool) -> Result<(u16, f64)> {
    let sig = if signed { sign(SECRET, &body) } else { sign(b"not the secret", &body) };
    let req = axum::http::Request::post(url)
        .header("x-github-event", event)
        .header("x-github-delivery", guid)
        .header("x-hub-signature-256", sig)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let t = Instant::now();
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok((status, t.elapsed().as_secs_f64() * 1e3))
}

async fn bench(
    client: &Http,
    url: &str,
    args: &BenchArgs,
    // The row's label, and its number (each row's delivery GUIDs are its own).
    (what, row): (&'static str, usize),
    expect: u16,
    make: impl Fn(usize) -> (&'static str, Vec<u8>, bool, usize),
) -> Result<Row> {
    // Bodies are made before the clock starts; signing is the sender's work.
    let bodies: Arc<Vec<_>> = Arc::new((0..args.deliveries).map(&make).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, bodies, next) = (client.clone(), url.to_string(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() || Instant::now() > deadline {
                    return Ok::<_, anyhow::Error>(out);
                }
                let (event, body, signed, n) = &bodies[i];
                let guid = format!("bench-{row}-{n}");
                out.push(send(&client, &url, event, &guid, body.clone(), *signed).await?);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut ok: Vec<f64> = all.iter().filter(|(s, _)| *s == expect).map(|(_, ms)| *ms).collect();
    ok.sort_by(f64::total_cmp);
    let pct = |p: f64| ok.get(((ok.len() as f64 * p) as usize).min(ok.len().saturating_sub(1))).copied().unwrap_or(0.0);
    Ok(Row { what, sent: all.len(), ok: ok.len(), seconds, p50_ms: pct(0.50), p99_ms: pct(0.99) })
}
