//! The JSON API under /api/v1, described by the OpenAPI document at
//! /api/openapi.json (derived from the handlers' own types, so it cannot drift).
//! Every error is JSON `{"error": "..."}` with a 4xx that says what was wrong.

use super::query::{self, SearchParams};
use super::SubmissionId;
use crate::server::{AppState, Reply};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Karpa corpus",
        version = "1",
        description = "Every submission a Karpa validator judged, failures included: search it, read one, cite it."
    ),
    paths(list_submissions, get_submission, cite, list_kings, list_miners),
    components(schemas(ApiError))
)]
pub struct ApiDoc;

/// Every error the API returns.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    pub error: String,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/submissions", get(list_submissions))
        .route("/api/v1/submissions/{id}", get(get_submission))
        .route("/api/v1/submissions/{id}/cite", get(cite))
        .route("/api/v1/kings", get(list_kings))
        .route("/api/v1/miners", get(list_miners))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

pub(crate) fn unavailable(e: sqlx::Error) -> Reply {
    tracing::error!("corpus query failed: {e}");
    Reply::error(StatusCode::SERVICE_UNAVAILABLE, "the corpus database is unavailable; try again shortly")
}

/// A submission id from the path, or the 400 that says what one looks like.
pub(crate) fn parse_id(id: &str) -> Result<SubmissionId, Reply> {
    SubmissionId::parse(id)
        .ok_or_else(|| Reply::error(StatusCode::BAD_REQUEST, "a submission id is ks- followed by 16 hex digits"))
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_value(value) {
        Ok(v) => Reply(StatusCode::OK, v).into_response(),
        Err(e) => Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Search the corpus: full text, filters and pages, newest first by default.
#[utoipa::path(
    get, path = "/api/v1/submissions", tag = "submissions", params(SearchParams),
    responses(
        (status = 200, body = query::SubmissionPage),
        (status = 400, description = "A parameter is malformed or the page is too deep", body = ApiError),
    )
)]
async fn list_submissions(
    State(state): State<AppState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return Reply::error(StatusCode::BAD_REQUEST, "the query string is malformed").into_response();
    };
    let search = match params.check() {
        Ok(s) => s,
        Err(e) => return Reply::error(StatusCode::BAD_REQUEST, e).into_response(),
    };
    match query::search(&state.pool, &search).await {
        Ok(page) => json(&page),
        Err(e) => unavailable(e).into_response(),
    }
}

/// One submission: its rationale, diff, bundle and every verdict it got.
#[utoipa::path(
    get, path = "/api/v1/submissions/{id}", tag = "submissions",
    params(("id" = String, Path, description = "ks- and 16 hex digits")),
    responses(
        (status = 200, body = query::Submission),
        (status = 400, body = ApiError),
        (status = 404, body = ApiError),
    )
)]
async fn get_submission(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match load(&state, &id).await {
        Ok(s) => json(&s),
        Err(r) => r.into_response(),
    }
}

pub(crate) async fn load(state: &AppState, id: &str) -> Result<query::Submission, Reply> {
    let id = parse_id(id)?;
    match query::submission(&state.pool, &id).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Reply::error(StatusCode::NOT_FOUND, format!("no submission {id}"))),
        Err(e) => Err(unavailable(e)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CiteParams {
    /// `bibtex` (default) or `cff`.
    pub format: Option<String>,
}

/// A citation for one submission, as BibTeX or CITATION.cff.
#[utoipa::path(
    get, path = "/api/v1/submissions/{id}/cite", tag = "submissions",
    params(("id" = String, Path, description = "ks- and 16 hex digits"), CiteParams),
    responses(
        (status = 200, description = "BibTeX or CITATION.cff text", content_type = "text/plain"),
        (status = 400, body = ApiError),
        (status = 404, body = ApiError),
    )
)]
async fn cite(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Result<Query<CiteParams>, QueryRejection>,
) -> Response {
    let format = params.ok().and_then(|Query(p)| p.format).unwrap_or_else(|| "bibtex".into());
    if format != "bibtex" && format != "cff" {
        return Reply::error(StatusCode::BAD_REQUEST, "format is bibtex or cff").into_response();
    }
    let s = match load(&state, &id).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let base = public_base(&state, &headers);
    let (text, kind) = match format.as_str() {
        "cff" => (super::cite::cff(&s, &base), "application/yaml; charset=utf-8"),
        _ => (super::cite::bibtex(&s, &base), "application/x-bibtex; charset=utf-8"),
    };
    ([("content-type", kind)], text).into_response()
}

/// Where links in citations point: the configured public URL, else this host.
pub(crate) fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)));
    host.map(|h| format!("http://{h}")).unwrap_or_default()
}

/// Every king, oldest first per repository.
#[utoipa::path(get, path = "/api/v1/kings", tag = "kings", responses((status = 200, body = Vec<query::King>)))]
async fn list_kings(State(state): State<AppState>) -> Response {
    match query::kings(&state.pool).await {
        Ok(k) => json(&k),
        Err(e) => unavailable(e).into_response(),
    }
}

/// The miners' leaderboard: crowns, then best gain.
#[utoipa::path(get, path = "/api/v1/miners", tag = "miners", responses((status = 200, body = Vec<query::Miner>)))]
async fn list_miners(State(state): State<AppState>) -> Response {
    match query::leaderboard(&state.pool, 100).await {
        Ok(m) => json(&m),
        Err(e) => unavailable(e).into_response(),
    }
}
