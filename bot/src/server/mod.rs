//! `karpa serve`: the GitHub App's HTTP face — POST /webhook, GET /healthz,
//! GET /metrics, GET /curves/{digest}.svg (check-run images) — and the corpus
//! (web pages and /api/v1), over the durable state in PostgreSQL.

pub mod events;
pub mod metrics;
pub mod webhook;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sqlx::PgPool;
use std::sync::Arc;

/// GitHub caps webhook payloads at 25 MB.
pub const DEFAULT_MAX_BODY: usize = 25 << 20;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub pool: PgPool,
    /// Webhook secrets; more than one while rotating.
    pub secrets: Vec<Vec<u8>>,
    pub app_id: i64,
    pub max_body: usize,
    pub metrics: metrics::Metrics,
    /// Where this server is reachable from outside (links in citations).
    pub public_url: Option<String>,
    /// The device its in-process workers run models on, when they run any:
    /// /healthz then self-tests the sandbox and the device's nodes.
    pub device: Option<crate::sandbox::gpu::Device>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(pool: PgPool, secrets: Vec<Vec<u8>>, app_id: i64, max_body: usize) -> Self {
        let metrics = metrics::Metrics::new();
        AppState(Arc::new(Inner { pool, secrets, app_id, max_body, metrics, public_url: None, device: None }))
    }

    /// The device the workers judge on, before the state is shared.
    pub fn with_device(mut self, device: Option<crate::sandbox::gpu::Device>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.device = device;
        }
        self
    }

    /// The public URL, before the state is shared.
    pub fn with_public_url(mut self, url: Option<String>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.public_url = url.map(|u| u.trim_end_matches('/').to_string());
        }
        self
    }
}

/// A status and a JSON body.
pub struct Reply(pub StatusCode, pub serde_json::Value);

impl Reply {
    pub fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Reply(status, serde_json::json!({"error": message.into()}))
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

pub fn router(state: AppState) -> Router {
    let limit = state.max_body;
    Router::new()
        .route("/webhook", post(webhook::receive))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/curves/{file}", get(curve))
        .merge(crate::corpus::api::routes())
        .merge(crate::corpus::web::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The database, and where this server judges: the sandbox's self-test and the
/// device's nodes (a judging server that cannot judge is not healthy).
async fn healthz(State(state): State<AppState>) -> Reply {
    if let Err(e) = sqlx::query("SELECT 1").execute(&state.pool).await {
        return Reply::error(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"));
    }
    let Some(device) = state.device else { return Reply(StatusCode::OK, serde_json::json!({"status": "ok"})) };
    let checked = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        crate::sandbox::Sandbox::new()?;
        device.nodes()?;
        Ok(())
    })
    .await;
    match checked {
        Ok(Ok(())) => {
            // The GPU itself is proven by the sandboxed calibration before the first model runs on it.
            let gpu = match device {
                crate::sandbox::gpu::Device::Cuda(n) if crate::judge::gpu_check::proven().contains(&n) => "passed",
                crate::sandbox::gpu::Device::Cuda(_) => "pending: runs before the first model on the GPU",
                crate::sandbox::gpu::Device::Cpu => "not needed",
            };
            let body =
                serde_json::json!({"status": "ok", "sandbox": "ok", "device": device.class(), "gpu_self_test": gpu});
            Reply(StatusCode::OK, body)
        }
        Ok(Err(e)) => Reply::error(StatusCode::SERVICE_UNAVAILABLE, format!("judging: {e:#}")),
        Err(e) => Reply::error(StatusCode::SERVICE_UNAVAILABLE, format!("judging: {e}")),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match queue_metrics(&state.pool).await {
        Ok(extra) => (
            [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            state.metrics.render(&extra),
        )
            .into_response(),
        Err(e) => Reply::error(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e:#}")).into_response(),
    }
}

/// The queue as gauges: jobs by state, queued jobs by kind, runs in flight by
/// worker (a runner's workers are named host-pid-i), floors being measured.
async fn queue_metrics(pool: &sqlx::PgPool) -> anyhow::Result<String> {
    use std::fmt::Write;
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', " ");
    let mut extra = String::from("# HELP karpa_jobs Jobs by state.\n# TYPE karpa_jobs gauge\n");
    for (s, n) in crate::db::jobs::counts(pool).await? {
        let _ = writeln!(extra, "karpa_jobs{{state=\"{}\"}} {n}", label(&s));
    }
    let (queued, running) = crate::db::jobs::depth(pool).await?;
    extra.push_str("# HELP karpa_jobs_queued Queued jobs by kind.\n# TYPE karpa_jobs_queued gauge\n");
    for (kind, n) in queued {
        let _ = writeln!(extra, "karpa_jobs_queued{{kind=\"{}\"}} {n}", label(&kind));
    }
    extra.push_str("# HELP karpa_jobs_running Jobs in flight by worker.\n# TYPE karpa_jobs_running gauge\n");
    for (worker, n) in running {
        let _ = writeln!(extra, "karpa_jobs_running{{worker=\"{}\"}} {n}", label(&worker));
    }
    let pending = crate::db::floors::pending(pool).await?;
    let _ = writeln!(
        extra,
        "# HELP karpa_floors_pending Noise floors being measured.\n# TYPE karpa_floors_pending gauge\nkarpa_floors_pending {pending}"
    );
    Ok(extra)
}

/// A judged bundle's loss curve. The SVG is ours (numbers only), and is served
/// with a policy that forbids scripts and outside loads all the same.
async fn curve(State(state): State<AppState>, axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let digest = file.strip_suffix(".svg").unwrap_or_default();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Reply::error(StatusCode::BAD_REQUEST, "expected /curves/<bundle digest: 64 hex>.svg").into_response();
    }
    match crate::db::curves::get(&state.pool, digest).await {
        Ok(Some(svg)) => (
            [
                ("content-type", "image/svg+xml"),
                ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'"),
                ("x-content-type-options", "nosniff"),
                ("cache-control", "public, max-age=31536000, immutable"),
            ],
            svg,
        )
            .into_response(),
        Ok(None) => Reply::error(StatusCode::NOT_FOUND, "no loss curve for this bundle").into_response(),
        Err(e) => Reply::error(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")).into_response(),
    }
}

/// Serves until the process is stopped.
pub async fn serve(state: AppState, listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!("karpa serve: listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router(state)).await?;
    Ok(())
}
