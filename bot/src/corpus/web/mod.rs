//! The corpus in a browser: server-rendered pages (maud: compile-checked,
//! escaping by default), no JavaScript at all. Miner text is hostile: the
//! rationale's markdown is sanitised by ammonia, everything else is escaped, only
//! http(s) links are made, and the policy header forbids scripts outright.

mod chart;
mod layout;
mod pages;
mod render;

use crate::server::AppState;
use axum::routing::get;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/submissions", get(pages::submissions))
        .route("/submissions/{id}", get(pages::submission))
        .route("/kings", get(pages::kings))
        .route("/models", get(pages::models))
        .route("/models/{id}", get(pages::model))
        .route("/static/corpus.css", get(layout::stylesheet))
        .fallback(pages::not_found)
}
