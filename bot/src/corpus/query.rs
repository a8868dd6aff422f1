//! Reading the corpus: search with filters and pages, one submission with its
//! verdicts, the kings and the leaderboard. Every value from a request reaches
//! SQL as a bound parameter; search text goes through `websearch_to_tsquery`,
//! which accepts any string (quotes, `-`, `or`) without a syntax error.

use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};

/// The deepest row a page may start at: deeper pages cost a scan for nothing a
/// person reads; a narrower search (or the export) is the way there.
pub const MAX_OFFSET: u64 = 10_000;
pub const MAX_PER_PAGE: u64 = 100;
/// Totals are counted up to 1,000, then reported as "more than". The count walks
/// the same newest-first order as the page, so a common word stops early
/// instead of visiting every match.
const COUNT_CAP: i64 = 1_001;
/// Words are first looked for among this many newest submissions (see
/// [`search_window`]); relevance ranks the matches found there.
pub const WINDOW: i64 = 5_000;

pub const CLASSES: [&str; 6] = ["crowned", "meaningful-failure", "failure", "rejected", "stale", "error"];

/// A timestamp as RFC 3339 in UTC, formatted by PostgreSQL. The text takes the
/// column's name, so ORDER BY must name the table's column (`s.judged_at`).
macro_rules! utc {
    ($col:literal) => {
        concat!("to_char(", $col, " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
    };
}

/// The search form and the API's query string; every field optional.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Full-text search over rationale (weighted most), findings and diff.
    /// Web-search syntax: `"exact phrase"`, `-excluded`, `a or b`.
    pub q: Option<String>,
    /// One verdict class: crowned, meaningful-failure, failure, rejected, stale, error.
    pub class: Option<String>,
    /// A miner: part of a GitHub login or hotkey.
    pub miner: Option<String>,
    /// The king (release tag) the submission was built on.
    pub king: Option<String>,
    /// Judged on or after this day (YYYY-MM-DD, UTC).
    pub since: Option<String>,
    /// Judged on or before this day (YYYY-MM-DD, UTC).
    pub until: Option<String>,
    /// `recent` (default) or `relevance` (with q: the matches among the newest 10,000, best first).
    pub sort: Option<String>,
    #[param(value_type = Option<u64>, minimum = 1)]
    pub page: Option<String>,
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100)]
    pub per_page: Option<String>,
}

/// A checked search: what [`search`] runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    pub q: Option<String>,
    pub class: Option<String>,
    pub miner: Option<String>,
    pub king: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub relevance: bool,
    pub page: u64,
    pub per_page: u64,
}

impl SearchParams {
    /// Checks every field; the message says which one is wrong and why.
    pub fn check(&self) -> Result<Search, String> {
        let text = |v: &Option<String>, name: &str, max: usize| -> Result<Option<String>, String> {
            let v = v.as_deref().map(str::trim).filter(|v| !v.is_empty());
            match v {
                Some(v) if v.chars().count() > max => Err(format!("{name} is longer than {max} characters")),
                Some(v) if v.contains('\0') => Err(format!("{name} contains a NUL character")),
                v => Ok(v.map(str::to_string)),
            }
        };
        let number = |v: &Option<String>, name: &str, default: u64| -> Result<u64, String> {
            match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("{name} must be a whole number of at least 1, not {v:?}")),
            }
        };
        let day = |v: &Option<String>, name: &str| -> Result<Option<String>, String> {
            let v = text(v, name, 10)?;
            match v {
                Some(d) if humantime::parse_rfc3339(&format!("{d}T00:00:00Z")).is_err() => {
                    Err(format!("{name} must be a day as YYYY-MM-DD, not {d:?}"))
                }
                d => Ok(d),
            }
        };
        let class = text(&self.class, "class", 32)?;
        if let Some(c) = class.as_deref().filter(|c| !CLASSES.contains(c)) {
            return Err(format!("class {c:?} is not one of {}", CLASSES.join(", ")));
        }
        let q = text(&self.q, "q", 500)?;
        let relevance = match self.sort.as_deref().map(str::trim).unwrap_or("") {
            "" | "recent" => false,
            "relevance" => true,
            other => return Err(format!("sort must be recent or relevance, not {other:?}")),
        };
        let page = number(&self.page, "page", 1)?;
        let per_page = number(&self.per_page, "per_page", 20)?;
        if per_page > MAX_PER_PAGE {
            return Err(format!("per_page is at most {MAX_PER_PAGE}"));
        }
        if (page - 1).saturating_mul(per_page) >= MAX_OFFSET {
            return Err(format!(
                "page {page} starts past result {MAX_OFFSET}, the deepest a page may go; narrow the search \
                 (q, class, miner, king, since, until) or use `karpa corpus export`"
            ));
        }
        Ok(Search {
            relevance: relevance && q.is_some(),
            q,
            class,
            miner: text(&self.miner, "miner", 100)?,
            king: text(&self.king, "king", 100)?,
            since: day(&self.since, "since")?,
            until: day(&self.until, "until")?,
            page,
            per_page,
        })
    }
}

/// One submission in a list.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct SubmissionSummary {
    /// Stable and citable: `ks-` and 16 hex digits.
    pub id: String,
    pub repo: String,
    /// `github` or `local`.
    pub forge: String,
    pub pr: i64,
    pub head_sha: String,
    pub bundle_digest: Option<String>,
    pub hotkey: Option<String>,
    pub github_login: Option<String>,
    /// The king the submission was built on.
    pub king_tag: Option<String>,
    pub config: Option<String>,
    pub title: String,
    /// The latest verdict's class.
    pub class: String,
    /// The challenger's hidden-eval bits per byte, when it got that far.
    pub challenger_bpb: Option<f64>,
    /// King mean minus challenger (positive is better).
    pub gain: Option<f64>,
    pub submitted_at: String,
    pub judged_at: String,
}

const SUMMARY_COLUMNS: &str = concat!(
    "id, repo, forge, pr, head_sha, bundle_digest, hotkey, github_login, king_tag, config, title, class, \
     challenger_bpb, gain, ",
    utc!("submitted_at"),
    " AS submitted_at, ",
    utc!("judged_at"),
    " AS judged_at"
);

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubmissionPage {
    pub items: Vec<SubmissionSummary>,
    pub page: u64,
    pub per_page: u64,
    /// Matches, counted up to 1,000 (for words: among the newest 10,000
    /// submissions when they fill the page); `total_is_lower_bound` says when
    /// there may be more.
    pub total: i64,
    pub total_is_lower_bound: bool,
    pub has_more: bool,
}

/// The WHERE clause of a search; `text` includes the full-text match.
fn filtered<'a>(qb: &mut QueryBuilder<'a, Postgres>, s: &'a Search, text: bool) {
    qb.push(" FROM submissions s WHERE true");
    if let (Some(q), true) = (&s.q, text) {
        qb.push(" AND s.search @@ websearch_to_tsquery('english', ").push_bind(q).push(")");
    }
    if let Some(c) = &s.class {
        qb.push(" AND s.class = ").push_bind(c);
    }
    match &s.miner {
        // A whole hotkey (the leaderboard's links): the exact index.
        Some(m) if is_hotkey(m) => {
            qb.push(" AND s.hotkey = ").push_bind(m);
        }
        // Part of a login or hotkey: the trigram indexes; % and _ are literal.
        Some(m) => {
            let like = format!("%{}%", m.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            qb.push(" AND (s.github_login ILIKE ").push_bind(like.clone()).push(" OR s.hotkey ILIKE ").push_bind(like);
            qb.push(")");
        }
        None => {}
    }
    if let Some(k) = &s.king {
        qb.push(" AND s.king_tag = ").push_bind(k);
    }
    if let Some(d) = &s.since {
        qb.push(" AND s.judged_at >= ").push_bind(d).push("::date");
    }
    if let Some(d) = &s.until {
        qb.push(" AND s.judged_at < ").push_bind(d).push("::date + 1");
    }
}

/// An SS58 account (what miners sign with): 47–48 base58 characters.
fn is_hotkey(m: &str) -> bool {
    (47..=48).contains(&m.len()) && m.bytes().all(|b| b.is_ascii_alphanumeric() && !b"0OIl".contains(&b))
}

const NEWEST: &str = " ORDER BY s.judged_at DESC, s.id DESC";

pub async fn search(pool: &PgPool, s: &Search) -> sqlx::Result<SubmissionPage> {
    if let Some(q) = &s.q {
        if let Some(page) = search_window(pool, s, q).await? {
            return Ok(page);
        }
    }
    // Without words, or words too rare for the window: the planner's own plan
    // (an index walk in date order, or the text index's few matches).
    let mut qb = QueryBuilder::new(format!("SELECT {SUMMARY_COLUMNS}"));
    filtered(&mut qb, s, true);
    match (&s.q, s.relevance) {
        (Some(q), true) => {
            qb.push(" ORDER BY ts_rank_cd(s.search, websearch_to_tsquery('english', ").push_bind(q);
            qb.push(")) DESC, s.judged_at DESC, s.id DESC");
        }
        _ => {
            qb.push(NEWEST);
        }
    }
    qb.push(" LIMIT ").push_bind((s.per_page + 1) as i64);
    qb.push(" OFFSET ").push_bind(((s.page - 1) * s.per_page) as i64);
    let mut items: Vec<SubmissionSummary> = qb.build_query_as().fetch_all(pool).await?;
    let has_more = items.len() as u64 > s.per_page;
    items.truncate(s.per_page as usize);
    let mut count = QueryBuilder::new("SELECT count(*) FROM (SELECT 1");
    filtered(&mut count, s, true);
    count.push(NEWEST).push(" LIMIT ").push_bind(COUNT_CAP).push(") AS hits");
    let (total,): (i64,) = count.build_query_as().fetch_one(pool).await?;
    Ok(SubmissionPage {
        items,
        page: s.page,
        per_page: s.per_page,
        total: total.min(COUNT_CAP - 1),
        total_is_lower_bound: total >= COUNT_CAP,
        has_more,
    })
}

/// Words are matched first among the newest [`WINDOW`] submissions that pass
/// the other filters, read in date order: a common word fills the page (and
/// the count) there at once, where the text index would hand back every one
/// of its matches to be sorted. None when the window holds too few matches
/// for this page and older submissions remain: then the index is the fast way.
async fn search_window(pool: &PgPool, s: &Search, q: &str) -> sqlx::Result<Option<SubmissionPage>> {
    let offset = (s.page - 1) * s.per_page;
    let need = offset + s.per_page + 1;
    let mut qb = QueryBuilder::new("SELECT count(*) FROM (SELECT 1");
    filtered(&mut qb, s, false);
    qb.push(NEWEST).push(" LIMIT ").push_bind(WINDOW).push(") AS w");
    let (window,): (i64,) = qb.build_query_as().fetch_one(pool).await?;
    let cap = (need as i64).max(COUNT_CAP);
    let mut qb = QueryBuilder::new(format!("SELECT {SUMMARY_COLUMNS} FROM (SELECT s.*"));
    filtered(&mut qb, s, false);
    qb.push(NEWEST).push(" LIMIT ").push_bind(WINDOW);
    qb.push(") AS s WHERE s.search @@ websearch_to_tsquery('english', ").push_bind(q).push(")");
    if s.relevance {
        qb.push(" ORDER BY ts_rank_cd(s.search, websearch_to_tsquery('english', ").push_bind(q);
        qb.push(")) DESC, s.judged_at DESC, s.id DESC");
    } else {
        qb.push(NEWEST);
    }
    qb.push(" LIMIT ").push_bind(cap);
    let hits: Vec<SubmissionSummary> = qb.build_query_as().fetch_all(pool).await?;
    let exhausted = window < WINDOW;
    let found = hits.len() as i64;
    if found < need as i64 && !exhausted {
        return Ok(None);
    }
    let total = found.min(COUNT_CAP - 1);
    let items = hits.into_iter().skip(offset as usize).take(s.per_page as usize).collect();
    Ok(Some(SubmissionPage {
        items,
        page: s.page,
        per_page: s.per_page,
        total_is_lower_bound: found > total || !exhausted,
        total,
        has_more: found >= need as i64,
    }))
}

/// A verdict as the corpus keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct VerdictRecord {
    /// The king this verdict judged against.
    pub judged_king: String,
    pub class: String,
    pub summary: String,
    pub challenger_bpb: Option<f64>,
    pub king_mean: Option<f64>,
    pub sigma: Option<f64>,
    pub n: Option<i32>,
    pub gain: Option<f64>,
    pub threshold: Option<f64>,
    pub confirmation_mean: Option<f64>,
    /// [{code, severity, message, path?, line?}]
    #[schema(value_type = Vec<Object>)]
    pub findings: serde_json::Value,
    /// [{stage, passed, seconds}]
    #[schema(value_type = Vec<Object>)]
    pub stages: serde_json::Value,
    /// The hidden score's causality check: pairs, positions, largest difference (null before it ran).
    #[schema(value_type = Option<Object>)]
    pub causality: Option<serde_json::Value>,
    pub judge_version: String,
    pub judged_at: String,
    /// The verdict document as its validator published it: what `signature` signs.
    #[schema(value_type = Object)]
    pub verdict: serde_json::Value,
    /// The validator's hotkey (SS58) and its sr25519 signature over
    /// `karpa-verdict:v1:<sha256 of the verdict's RFC 8785 form>`; null when unsigned.
    pub validator: Option<String>,
    pub signature: Option<String>,
}

/// The bundle a submission brought.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct BundleRecord {
    pub digest: String,
    /// Where the whole bundle (with checkpoints) can be fetched.
    pub locator: Option<String>,
    pub size_bytes: Option<i64>,
    pub config: String,
    pub seed: i64,
    pub harness_digest: String,
    pub tier: Option<String>,
    pub sealed_at: Option<String>,
    /// [[tokens seen (millions), training loss], ...], thinned.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub train_curve: serde_json::Value,
    /// [[tokens seen (millions), public-val loss], ...]
    #[schema(value_type = Vec<Vec<f64>>)]
    pub val_curve: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Submission {
    #[serde(flatten)]
    pub summary: SubmissionSummary,
    pub king_commit: Option<String>,
    /// Markdown as the miner wrote it (the web page renders it sanitised).
    pub rationale: String,
    /// The recipe patch, unified diff.
    pub diff: String,
    pub bundle: Option<BundleRecord>,
    /// Newest first.
    pub verdicts: Vec<VerdictRecord>,
    /// The release this submission's crown made, if any.
    pub released_as: Option<String>,
}

pub async fn submission(pool: &PgPool, id: &super::SubmissionId) -> sqlx::Result<Option<Submission>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        summary: SubmissionSummary,
        king_commit: Option<String>,
        rationale: String,
        diff: String,
    }
    let sql = format!("SELECT {SUMMARY_COLUMNS}, king_commit, rationale, diff FROM submissions WHERE id = $1");
    let Some(Row { summary, king_commit, rationale, diff }) =
        sqlx::query_as::<_, Row>(&sql).bind(id.as_str()).fetch_optional(pool).await?
    else {
        return Ok(None);
    };
    let bundle = sqlx::query_as::<_, BundleRecord>(concat!(
        "SELECT digest, locator, size_bytes, config, seed, harness_digest, tier, ",
        utc!("sealed_at"),
        " AS sealed_at, train_curve, val_curve FROM bundles WHERE digest = $1"
    ))
    .bind(&summary.bundle_digest)
    .fetch_optional(pool)
    .await?;
    let verdicts = sqlx::query_as::<_, VerdictRecord>(concat!(
        "SELECT judged_king, class, summary, challenger_bpb, king_mean, sigma, n, gain, threshold, confirmation_mean,
                findings, stages, verdict->'eval'->'causality' AS causality, judge_version, verdict, validator,
                signature, ",
        utc!("judged_at"),
        " AS judged_at FROM verdicts v WHERE submission_id = $1 ORDER BY v.judged_at DESC, v.id DESC"
    ))
    .bind(id.as_str())
    .fetch_all(pool)
    .await?;
    let released_as: Option<(String,)> =
        sqlx::query_as("SELECT tag FROM kings WHERE submission_id = $1").bind(id.as_str()).fetch_optional(pool).await?;
    Ok(Some(Submission {
        summary,
        king_commit,
        rationale,
        diff,
        bundle,
        verdicts,
        released_as: released_as.map(|r| r.0),
    }))
}

/// A king: a release of the recipe and what it measured.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct King {
    pub repo: String,
    pub tag: String,
    pub commit_sha: String,
    pub pr: Option<i64>,
    /// The crowning submission's own hidden-eval bits per byte.
    pub hidden_bpb: Option<f64>,
    /// Mean hidden-eval bits per byte over its runs, its spread and their number.
    pub mean_bpb: Option<f64>,
    pub sigma: Option<f64>,
    pub runs: Option<i32>,
    /// The GitHub login of the miner who crowned it (none for a genesis release).
    pub crowned_by: Option<String>,
    pub submission_id: Option<String>,
    pub crowned_at: String,
    /// Whether the release is published as a model (the Models page).
    pub has_model: bool,
}

/// Every king, oldest first per repository.
pub async fn kings(pool: &PgPool) -> sqlx::Result<Vec<King>> {
    sqlx::query_as(concat!(
        "SELECT repo, tag, commit_sha, pr, hidden_bpb, mean_bpb, sigma, runs, crowned_by, submission_id, ",
        utc!("crowned_at"),
        " AS crowned_at, EXISTS (SELECT 1 FROM models m WHERE m.repo = k.repo AND m.tag = k.tag) AS has_model",
        " FROM kings k ORDER BY k.repo, k.crowned_at, k.tag"
    ))
    .fetch_all(pool)
    .await
}

/// A published model: a release's weights with its card and numbers.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Model {
    pub id: i64,
    pub repo: String,
    pub name: String,
    pub tag: String,
    pub config: String,
    pub params: i64,
    pub hidden_bpb: f64,
    pub sigma: f64,
    pub floor_n: i32,
    pub val_bpb: f64,
    pub weights_sha256: String,
    pub download_url: Option<String>,
    /// Whose run the weights are: `bundle` (the crowned checkpoint) or
    /// `reference` (a re-training by `karpa reference`).
    pub provenance: String,
    pub published_at: String,
}

const MODEL_COLUMNS: &str =
    "id, repo, name, tag, config, params, hidden_bpb, sigma, floor_n, val_bpb, weights_sha256, \
     download_url, COALESCE(model_config->'provenance'->>'kind', 'bundle') AS provenance, ";

/// Every published model, newest release first.
pub async fn models(pool: &PgPool) -> sqlx::Result<Vec<Model>> {
    let sql = format!(
        "SELECT {MODEL_COLUMNS}{} AS published_at FROM models ORDER BY repo, tag DESC, name",
        utc!("published_at")
    );
    sqlx::query_as(&sql).fetch_all(pool).await
}

/// One model and its card.
pub async fn model(pool: &PgPool, id: i64) -> sqlx::Result<Option<(Model, String)>> {
    let sql = format!("SELECT {MODEL_COLUMNS}{} AS published_at FROM models WHERE id = $1", utc!("published_at"));
    let Some(model) = sqlx::query_as::<_, Model>(&sql).bind(id).fetch_optional(pool).await? else { return Ok(None) };
    let card: String = sqlx::query_scalar("SELECT card FROM models WHERE id = $1").bind(id).fetch_one(pool).await?;
    Ok(Some((model, card)))
}

/// A miner's standing.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Miner {
    pub hotkey: String,
    pub github_login: Option<String>,
    pub submissions: i64,
    pub crowns: i64,
    pub best_gain: Option<f64>,
    pub last_seen: String,
}

pub async fn leaderboard(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<Miner>> {
    sqlx::query_as(concat!(
        "SELECT hotkey, github_login, submissions, crowns, best_gain, ",
        utc!("last_seen"),
        " AS last_seen FROM miners ORDER BY crowns DESC, best_gain DESC NULLS LAST, hotkey LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The curves of the bundle that crowned `tag`, when it was crowned by one.
pub async fn king_curves(
    pool: &PgPool,
    repo: &str,
    tag: &str,
) -> sqlx::Result<Option<(serde_json::Value, serde_json::Value)>> {
    sqlx::query_as(
        "SELECT b.train_curve, b.val_curve FROM kings k JOIN bundles b ON b.digest = k.bundle_digest
         WHERE k.repo = $1 AND k.tag = $2",
    )
    .bind(repo)
    .bind(tag)
    .fetch_optional(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::SearchParams;

    fn params(pairs: &[(&str, &str)]) -> SearchParams {
        let mut p = SearchParams::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "q" => p.q = v,
                "class" => p.class = v,
                "since" => p.since = v,
                "sort" => p.sort = v,
                "page" => p.page = v,
                _ => p.per_page = v,
            }
        }
        p
    }

    #[test]
    fn bad_parameters_are_named() {
        for (pairs, needle) in [
            (vec![("page", "0")], "page must be"),
            (vec![("page", "99999999999999999999999")], "page must be"),
            (vec![("page", "1000000")], "deepest a page may go"),
            (vec![("per_page", "101")], "per_page is at most"),
            (vec![("class", "king")], "class \"king\" is not one of"),
            (vec![("since", "2026-13-01")], "since must be a day"),
            (vec![("sort", "random")], "sort must be"),
        ] {
            let err = params(&pairs).check().unwrap_err();
            assert!(err.contains(needle), "{pairs:?}: {err}");
        }
        let ok = params(&[("q", "warmup"), ("page", "3"), ("sort", "relevance")]).check().unwrap();
        assert_eq!((ok.page, ok.per_page, ok.relevance), (3, 20, true));
        assert!(!params(&[("sort", "relevance")]).check().unwrap().relevance, "relevance needs q");
    }
}
