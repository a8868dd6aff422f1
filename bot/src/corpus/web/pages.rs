//! The pages: home (kings, lineage chart, leaderboard, latest), the searchable
//! list, one submission, the kings, the published models.

use super::layout::{error, page};
use super::render::{badge, bpb, diff, markdown, safe_link, short, signed};
use crate::corpus::api::{load, public_base};
use crate::corpus::query::{self, King, Search, SearchParams, SubmissionSummary, CLASSES};
use crate::forge::loss_curve::{self, Curve};
use crate::server::{AppState, Reply};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped};

fn outage(e: sqlx::Error) -> Response {
    tracing::error!("corpus page: {e}");
    error(StatusCode::SERVICE_UNAVAILABLE, "The corpus database is unavailable; try again shortly.")
}

pub async fn home(State(state): State<AppState>) -> Response {
    let recent = Search { page: 1, per_page: 10, ..Search::default() };
    let (kings, miners, latest) = match tokio::try_join!(
        query::kings(&state.pool),
        query::leaderboard(&state.pool, 10),
        query::search(&state.pool, &recent),
    ) {
        Ok(all) => all,
        Err(e) => return outage(e),
    };
    let mut repos: Vec<&str> = kings.iter().map(|k| k.repo.as_str()).collect();
    repos.dedup();
    let body = html! {
        h1 { "The record of every experiment" }
        p.muted { "Each submission to the recipe, judged on a hidden split and kept here, failures included." }
        @if repos.is_empty() { div.card { p { "No king yet: nothing has been judged." } } }
        @for repo in &repos {
            @let line: Vec<&King> = kings.iter().filter(|k| k.repo == *repo).collect();
            @let king = line.last().expect("a repo listed has a king");
            div.grid {
                div.card.king {
                    div.muted { "Current king of " code { (repo) } }
                    h2 { (king.tag) }
                    div.bpb { (bpb(king.mean_bpb.or(king.hidden_bpb))) span.muted { " bpb" } }
                    div.muted {
                        @if let (Some(s), Some(n)) = (king.sigma, king.runs) { "σ " (format!("{s:.4}")) " over " (n) " runs · " }
                        "commit " code { (short(&king.commit_sha)) }
                        @if let Some(by) = &king.crowned_by { " · crowned by " (by) }
                    }
                    @if let Some(id) = &king.submission_id { p { a href={ "/submissions/" (id) } { "The submission that crowned it" } } }
                }
                div.card.chart {
                    div.muted { "Lineage: hidden val bpb per king" }
                    (lineage_chart(&line))
                }
            }
        }
        h2 { "Leaderboard" }
        table {
            thead { tr { th { "Miner" } th { "Hotkey" } th.num { "Submissions" } th.num { "Crowns" } th.num { "Best gain" } th { "Last seen" } } }
            tbody {
                @for m in &miners {
                    tr {
                        td { a href={ "/submissions?miner=" (encode(&m.hotkey)) } { (m.github_login.as_deref().unwrap_or("—")) } }
                        td.mono { (short(&m.hotkey)) "…" }
                        td.num { (m.submissions) } td.num { (m.crowns) } td.num { (signed(m.best_gain)) }
                        td { (&m.last_seen[..10]) }
                    }
                }
            }
        }
        h2 { "Latest submissions" }
        (table_of(&latest.items))
        p { a href="/submissions" { "All submissions →" } }
    };
    page(StatusCode::OK, "Home", body)
}

fn lineage_chart(line: &[&King]) -> Markup {
    match super::chart::lineage(line) {
        Ok(svg) => PreEscaped(svg),
        Err(e) => html! { p.muted { (e.to_string()) } },
    }
}

fn table_of(items: &[SubmissionSummary]) -> Markup {
    html! {
        table.submissions {
            thead { tr { th { "Submission" } th { "Verdict" } th { "Miner" } th { "King" } th.num { "bpb" } th.num { "Gain" } th { "Judged" } } }
            tbody {
                @for s in items {
                    tr {
                        td { a href={ "/submissions/" (s.id) } { (s.title) } div.muted.mono { (s.id) " · " (s.repo) " #" (s.pr) } }
                        td { (badge(&s.class)) }
                        td { (s.github_login.as_deref().unwrap_or("—")) }
                        td { (s.king_tag.as_deref().unwrap_or("—")) }
                        td.num { (bpb(s.challenger_bpb)) }
                        td.num { (signed(s.gain)) }
                        td { (&s.judged_at[..10]) }
                    }
                }
            }
        }
    }
}

/// A query-string value, percent-encoded.
fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn page_link(s: &Search, page: u64) -> String {
    let mut q = vec![format!("page={page}")];
    let fields = [
        ("q", &s.q),
        ("class", &s.class),
        ("miner", &s.miner),
        ("king", &s.king),
        ("since", &s.since),
        ("until", &s.until),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            q.push(format!("{k}={}", encode(v)));
        }
    }
    if s.relevance {
        q.push("sort=relevance".into());
    }
    if s.per_page != 20 {
        q.push(format!("per_page={}", s.per_page));
    }
    format!("/submissions?{}", q.join("&"))
}

pub async fn submissions(
    State(state): State<AppState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return error(StatusCode::BAD_REQUEST, "The query string is malformed.");
    };
    let search = match params.check() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("That search cannot run: {e}.")),
    };
    let found = match query::search(&state.pool, &search).await {
        Ok(p) => p,
        Err(e) => return outage(e),
    };
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let body = html! {
        h1 { "Submissions" }
        form.filters action="/submissions" method="get" role="search" {
            label { "Search" input type="search" name="q" value=(v(&search.q)) placeholder="e.g. warmup -embedding"; }
            label { "Verdict" select name="class" {
                option value="" { "any" }
                @for c in CLASSES { option value=(c) selected[search.class.as_deref() == Some(c)] { (c) } }
            } }
            label { "Miner" input name="miner" value=(v(&search.miner)) placeholder="login or hotkey"; }
            label { "King" input name="king" value=(v(&search.king)) placeholder="recipe-v0.1.0"; }
            label { "Since" input type="date" name="since" value=(v(&search.since)); }
            label { "Until" input type="date" name="until" value=(v(&search.until)); }
            label { "Order" select name="sort" {
                option value="recent" { "newest" }
                option value="relevance" selected[search.relevance] { "relevance" }
            } }
            button type="submit" { "Search" }
        }
        p.muted.count {
            @if found.total_is_lower_bound { "At least " (found.total) } @else { (found.total) }
            @if found.total == 1 && !found.total_is_lower_bound { " submission" } @else { " submissions" }
            @if let Some(q) = &search.q { " matching “" (q) "”" }
        }
        @if found.items.is_empty() { div.card { p { "Nothing matches. Try fewer words or fewer filters." } } }
        @else { (table_of(&found.items)) }
        div.pager {
            @if search.page > 1 { a rel="prev" href=(page_link(&search, search.page - 1)) { "← Newer" } }
            span.muted { "Page " (search.page) }
            @if found.has_more && search.page * search.per_page < query::MAX_OFFSET {
                a rel="next" href=(page_link(&search, search.page + 1)) { "Older →" }
            }
        }
    };
    page(StatusCode::OK, "Submissions", body)
}

pub async fn submission(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let s = match load(&state, &id).await {
        Ok(s) => s,
        Err(Reply(status, v)) => {
            let msg = v["error"].as_str().unwrap_or("no such submission").to_string();
            return error(status, &format!("{}.", capitalise(&msg)));
        }
    };
    let t = &s.summary;
    let king_curve = match &t.king_tag {
        Some(tag) => query::king_curves(&state.pool, &t.repo, tag).await.unwrap_or(None),
        None => None,
    };
    let base = public_base(&state, &headers);
    let github = t.forge == "github";
    let body = html! {
        div.muted.mono { (t.id) }
        h1 { (t.title) " " (badge(&t.class)) }
        div.grid {
            div.card {
                dl.meta {
                    dt { "Repository" } dd { code { (t.repo) } }
                    dt { "Pull request" } dd {
                        @if github { a href={ "https://github.com/" (t.repo) "/pull/" (t.pr) } { "#" (t.pr) } } @else { "pull/" (t.pr) " (local forge)" }
                    }
                    dt { "Head" } dd { code { (short(&t.head_sha)) } }
                    dt { "Built on" } dd { (t.king_tag.as_deref().unwrap_or("—")) @if let Some(c) = &s.king_commit { " " code { (short(c)) } } }
                    dt { "Miner" } dd { (t.github_login.as_deref().unwrap_or("—")) @if let Some(h) = &t.hotkey { div.mono.muted { (h) } } }
                    dt { "Config" } dd { (t.config.as_deref().unwrap_or("—")) }
                    @if let Some(tag) = &s.released_as {
                        dt { "Released as" } dd {
                            @if github { a href={ "https://github.com/" (t.repo) "/releases/tag/" (tag) } { (tag) } } @else { (tag) }
                        }
                    }
                    @if let Some(b) = &s.bundle {
                        dt { "Bundle" } dd {
                            @match b.locator.as_deref().and_then(safe_link) {
                                Some(url) => a href=(url) rel="nofollow noopener" { code { (short(&b.digest)) "…" } },
                                None => code { (short(&b.digest)) "…" },
                            }
                            @if let Some(size) = b.size_bytes { span.muted { " " (format!("{:.1} MB", size as f64 / 1e6)) } }
                            div.muted { "seed " (b.seed) @if let Some(tier) = &b.tier { " · " (tier) " attestation" } @if let Some(at) = &b.sealed_at { " · sealed " (at) } }
                        }
                    }
                    dt { "Judged" } dd { (t.judged_at) }
                }
            }
            div.card.chart {
                div.muted { "Loss: this submission against its king" }
                (curves(&s, king_curve))
            }
        }
        h2 { "Verdicts" }
        table.verdicts {
            thead { tr { th { "Against" } th { "Verdict" } th.num { "Challenger" } th.num { "King mean" } th.num { "σ (n)" } th.num { "Gain" } th.num { "Threshold" } th.num { "Guard mean" } } }
            tbody {
                @for v in &s.verdicts {
                    tr {
                        td { (if v.judged_king.is_empty() { "—" } else { v.judged_king.as_str() }) }
                        td {
                            (badge(&v.class)) div.muted { (v.summary) }
                            @if let Some(c) = v.causality.clone().and_then(|c| serde_json::from_value::<proof::causality::CausalityReport>(c).ok()) {
                                div.muted { "causality check: " (c.summary()) }
                            }
                            div.muted { (signature_line(v)) }
                        }
                        td.num { (bpb(v.challenger_bpb)) } td.num { (bpb(v.king_mean)) }
                        td.num { (bpb(v.sigma)) @if let Some(n) = v.n { " (" (n) ")" } }
                        td.num { (signed(v.gain)) } td.num { (bpb(v.threshold)) } td.num { (bpb(v.confirmation_mean)) }
                    }
                }
            }
        }
        @if let Some(latest) = s.verdicts.first() {
            @if let Some(findings) = latest.findings.as_array().filter(|f| !f.is_empty()) {
                h2 { "Findings" }
                ul.findings {
                    @for f in findings {
                        li class=(f["severity"].as_str().unwrap_or("info")) {
                            code { (f["code"].as_str().unwrap_or("?")) } " "
                            (f["message"].as_str().unwrap_or(""))
                            @if let Some(p) = f["path"].as_str() { span.muted { " — " (p) @if let Some(l) = f["line"].as_u64() { ":" (l) } } }
                        }
                    }
                }
            }
        }
        h2 { "Rationale" }
        div.card.rationale { (markdown(&s.rationale)) }
        h2 { "Patch" }
        @if s.diff.is_empty() { p.muted { "No patch was taken in." } } @else { (diff(&s.diff)) }
        h2 { "Cite this submission" }
        div.card.citation {
            pre.cite { (crate::corpus::cite::bibtex(&s, &base)) }
            a href={ "/api/v1/submissions/" (t.id) "/cite?format=bibtex" } { "BibTeX" } " · "
            a href={ "/api/v1/submissions/" (t.id) "/cite?format=cff" } { "CITATION.cff" } " · "
            a href={ "/api/v1/submissions/" (t.id) } { "JSON" }
        }
    };
    page(StatusCode::OK, &t.title, body)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn as_points(v: &serde_json::Value) -> Vec<(f64, f64)> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn curves(s: &query::Submission, king: Option<(serde_json::Value, serde_json::Value)>) -> Markup {
    let mut all = Vec::new();
    if let Some(b) = &s.bundle {
        all.push(Curve { label: "this".into(), train: as_points(&b.train_curve), val: as_points(&b.val_curve) });
    }
    if let (Some((train, val)), Some(tag)) = (king, &s.summary.king_tag) {
        all.push(Curve {
            label: tag.trim_start_matches("recipe-").into(),
            train: as_points(&train),
            val: as_points(&val),
        });
    }
    match loss_curve::draw(&all, "", (560, 340)) {
        Ok(svg) => PreEscaped(svg),
        Err(_) => html! { p.muted { "No training log to draw." } },
    }
}

pub async fn kings(State(state): State<AppState>) -> Response {
    let kings = match query::kings(&state.pool).await {
        Ok(k) => k,
        Err(e) => return outage(e),
    };
    let body = html! {
        h1 { "Kings" }
        p.muted { "Every release of the recipe: the genesis, then each challenger that decisively beat its king." }
        table.kings {
            thead { tr { th { "Repository" } th { "Release" } th { "Commit" } th.num { "Mean bpb" } th.num { "σ" } th.num { "Runs" } th { "Crowned by" } th { "Crowned" } } }
            tbody {
                @for k in &kings {
                    tr {
                        td { code { (k.repo) } } td { (k.tag) } td { code { (short(&k.commit_sha)) } }
                        td.num { (bpb(k.mean_bpb.or(k.hidden_bpb))) } td.num { (bpb(k.sigma)) }
                        td.num { (k.runs.map(|r| r.to_string()).unwrap_or_else(|| "—".into())) }
                        td {
                            @match (&k.crowned_by, &k.submission_id) {
                                (Some(by), Some(id)) => a href={ "/submissions/" (id) } { (by) },
                                (Some(by), None) => (by),
                                _ => span.muted { "genesis" },
                            }
                        }
                        td { (&k.crowned_at[..10]) }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, "Kings", body)
}

/// The published models: each a release's weights, its numbers and a download.
pub async fn models(State(state): State<AppState>) -> Response {
    let models = match query::models(&state.pool).await {
        Ok(m) => m,
        Err(e) => return outage(e),
    };
    let body = html! {
        h1 { "Models" }
        p.muted { "Releases of the recipe as model folders: the crowned checkpoint's weights (or a re-training of the tag by " code { "karpa reference" } "), its tokenizer, config and card, each verified against its crown note (" code { "karpa model verify" } "). The bpb columns are the crown's." }
        @if models.is_empty() { div.card { p { "No model is published yet." } } }
        @else {
            table.models {
                thead { tr { th { "Model" } th { "Release" } th { "Config" } th.num { "Parameters" } th.num { "Hidden bpb" } th.num { "σ (n)" } th.num { "Val bpb" } th { "Weights" } th { "Download" } } }
                tbody {
                    @for m in &models {
                        tr {
                            td { a href={ "/models/" (m.id) } { (m.name) } div.muted { (weights_of(m)) } div.muted.mono { (m.repo) } }
                            td { (m.tag) } td { (m.config) } td.num { (m.params) }
                            td.num { (bpb(Some(m.hidden_bpb))) } td.num { (bpb(Some(m.sigma))) " (" (m.floor_n) ")" }
                            td.num { (bpb(Some(m.val_bpb))) } td.mono { (short(&m.weights_sha256)) }
                            td { (download(m)) }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, "Models", body)
}

/// One model: its numbers and its card.
pub async fn model(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else { return error(StatusCode::NOT_FOUND, "There is no such model.") };
    let (m, card) = match query::model(&state.pool, id).await {
        Ok(Some(found)) => found,
        Ok(None) => return error(StatusCode::NOT_FOUND, "There is no such model."),
        Err(e) => return outage(e),
    };
    // The card's front matter is for the Hugging Face hub; the page shows its body.
    let body_text = card.strip_prefix("---\n").and_then(|c| c.split_once("\n---\n")).map_or(card.as_str(), |(_, b)| b);
    let body = html! {
        p.muted { a href="/models" { "Models" } " · " code { (m.repo) } " · " (m.tag) }
        div.card {
            div.muted { "hidden bpb" } div.bpb { (bpb(Some(m.hidden_bpb))) span.muted { " ± " (bpb(Some(m.sigma))) } }
            p { "Weights " code { (m.weights_sha256) } " · " (weights_of(&m)) " · " (download(&m)) }
        }
        div.card.rationale { (markdown(body_text)) }
    };
    page(StatusCode::OK, &m.name, body)
}

/// Whose run a model's weights are, in words.
fn weights_of(m: &query::Model) -> &'static str {
    if m.provenance == "reference" {
        "re-trained by karpa reference"
    } else {
        "the crowned bundle's weights"
    }
}

fn download(m: &query::Model) -> Markup {
    match m.download_url.as_deref().and_then(safe_link) {
        Some(url) => html! { a href=(url) { "download" } },
        None => html! { span.muted { "no link" } },
    }
}

/// Unknown paths under the corpus get the friendly page too.
pub async fn not_found() -> impl IntoResponse {
    error(StatusCode::NOT_FOUND, "There is no page here.")
}

/// Who signed a verdict, checked here against the verdict as stored.
fn signature_line(v: &query::VerdictRecord) -> String {
    let (Some(validator), Some(signature)) = (&v.validator, &v.signature) else { return "unsigned".into() };
    let sig = crate::judge::verdict::ValidatorSignature { validator: validator.clone(), signature: signature.clone() };
    match crate::judge::verdict::verify_signature(&v.verdict, &sig) {
        Ok(()) => format!("signed by validator {validator}"),
        Err(_) => format!("the signature by {validator} does not verify"),
    }
}
