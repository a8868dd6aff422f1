//! The frame every page shares, its stylesheet, and the HTML response with the
//! headers that keep hostile text inert.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// No scripts, no outside loads, no framing; styles and images from here only.
const POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                      base-uri 'none'; frame-ancestors 'none'";

pub fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Karpa corpus" }
                link rel="stylesheet" href="/static/corpus.css";
            }
            body {
                header.top {
                    a.brand href="/" { "Karpa" span { "corpus" } }
                    nav {
                        a href="/submissions" { "Submissions" }
                        a href="/kings" { "Kings" }
                        a href="/models" { "Models" }
                        a href="/api/openapi.json" { "API" }
                    }
                    form.quick action="/submissions" method="get" role="search" {
                        input type="search" name="q" placeholder="Search rationales, findings, diffs" aria-label="Search";
                    }
                }
                main { (body) }
                footer { "Every submission, failures included. Data: " a href="/api/v1/submissions" { "JSON" } }
            }
        }
    };
    (
        status,
        [
            ("content-security-policy", POLICY),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
        ],
        Html(doc.into_string()),
    )
        .into_response()
}

/// A friendly page for a bad request, a missing submission or a database outage.
pub fn error(status: StatusCode, message: &str) -> Response {
    let body = html! {
        section.error {
            h1 { (status.canonical_reason().unwrap_or("Error")) }
            p { (message) }
            p { a href="/submissions" { "Back to the submissions" } }
        }
    };
    page(status, status.canonical_reason().unwrap_or("Error"), body)
}

pub async fn stylesheet() -> impl IntoResponse {
    ([("content-type", "text/css; charset=utf-8"), ("cache-control", "public, max-age=3600")], CSS)
}

const CSS: &str = r#"
:root { --ink:#1d2330; --mute:#5b6475; --line:#e3e6ec; --bg:#f7f8fa; --accent:#1f77b4;
        --good:#1a7f37; --warn:#9a6700; --bad:#cf222e; --mono: ui-monospace, SFMono-Regular, Menlo, monospace; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--ink); background:var(--bg); }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
header.top { display:flex; gap:24px; align-items:center; padding:12px 32px; background:#fff; border-bottom:1px solid var(--line); }
.brand { font-weight:700; font-size:20px; color:var(--ink); } .brand span { font-weight:400; color:var(--mute); margin-left:6px; }
nav a { margin-right:16px; color:var(--ink); }
form.quick { margin-left:auto; } form.quick input { width:320px; }
input, select, button { font:inherit; padding:6px 10px; border:1px solid var(--line); border-radius:6px; background:#fff; }
button { background:var(--accent); color:#fff; border-color:var(--accent); cursor:pointer; }
main { max-width:1120px; margin:24px auto; padding:0 24px; }
footer { text-align:center; color:var(--mute); padding:24px; font-size:13px; }
h1 { font-size:24px; margin:0 0 8px; } h2 { font-size:18px; margin:28px 0 10px; }
.card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:18px 20px; margin-bottom:18px; }
.grid { display:grid; grid-template-columns: 1fr 1fr; gap:18px; }
.king .bpb { font-size:34px; font-weight:700; } .muted { color:var(--mute); }
table { width:100%; border-collapse:collapse; background:#fff; }
th, td { text-align:left; padding:8px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--mute); }
td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
code, .mono { font-family:var(--mono); font-size:13px; }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600; border:1px solid; white-space:nowrap; }
.badge.crowned { color:var(--good); border-color:var(--good); background:#e9f6ec; }
.badge.meaningful-failure { color:var(--warn); border-color:#d4a72c; background:#fff8e1; }
.badge.failure, .badge.stale, .badge.error { color:var(--mute); border-color:#c5cad3; background:#f2f3f5; }
.badge.rejected { color:var(--bad); border-color:var(--bad); background:#fdecee; }
form.filters { display:flex; flex-wrap:wrap; gap:8px; align-items:end; margin-bottom:14px; }
form.filters label { display:flex; flex-direction:column; font-size:12px; color:var(--mute); }
form.filters input[name=q] { width:300px; }
.pager { display:flex; gap:12px; align-items:center; margin:14px 0; }
.rationale { line-height:1.6; } .rationale pre { background:var(--bg); padding:10px; overflow:auto; }
pre.diff { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 0; overflow:auto; font:13px/1.45 var(--mono); }
pre.diff span { display:block; padding:0 12px; white-space:pre; }
pre.diff .add { background:#e6ffec; } pre.diff .del { background:#ffebe9; }
pre.diff .hunk { background:#ddf4ff; color:#0550ae; } pre.diff .meta { color:var(--mute); font-weight:600; }
ul.findings { padding-left:18px; } ul.findings li.reject { color:var(--bad); }
.chart svg { width:100%; height:auto; }
pre.cite { background:var(--bg); padding:12px; overflow:auto; font:12px/1.5 var(--mono); }
dl.meta { display:grid; grid-template-columns: 140px 1fr; gap:4px 12px; margin:0; } dl.meta dt { color:var(--mute); }
.error h1 { color:var(--bad); }
@media (max-width: 800px) { .grid { grid-template-columns: 1fr; } form.quick input { width:160px; } }
"#;
