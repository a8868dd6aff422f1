//! `karpa corpus search|serve|export`: the corpus from a terminal.

use crate::corpus::export::{export, Format};
use crate::corpus::query::{self, SearchParams};
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum CorpusCommand {
    /// Full-text search (web-search syntax: "exact phrase", -excluded, a or b); newest first.
    Search {
        query: String,
        #[command(flatten)]
        db: Db,
        /// Only this verdict class (crowned, meaningful-failure, failure, rejected, stale, error).
        #[arg(long)]
        class: Option<String>,
        /// A miner: part of a GitHub login or hotkey.
        #[arg(long)]
        miner: Option<String>,
        /// Order by relevance instead of recency.
        #[arg(long)]
        relevance: bool,
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Print the page as JSON (the API's shape).
        #[arg(long)]
        json: bool,
    },
    /// Serve the corpus alone (pages and /api/v1), read-only: no GitHub App, and
    /// the webhook refuses every delivery.
    Serve {
        #[command(flatten)]
        db: Db,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where the corpus is reachable from outside (links in citations).
        #[arg(long)]
        public_url: Option<String>,
    },
    /// Write the whole corpus, negative results included, as a dataset.
    Export {
        #[command(flatten)]
        db: Db,
        #[arg(long, value_enum)]
        format: Format,
        /// The file to write (replaced only once complete).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct Db {
    #[arg(long, env = "KARPA_DATABASE_URL")]
    pub database_url: String,
}

pub fn run(cmd: CorpusCommand) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match cmd {
            CorpusCommand::Search { query: q, db, class, miner, relevance, limit, json } => {
                let params = SearchParams {
                    q: Some(q),
                    class,
                    miner,
                    sort: relevance.then(|| "relevance".into()),
                    per_page: Some(limit.to_string()),
                    ..SearchParams::default()
                };
                let search = match params.check() {
                    Ok(s) => s,
                    Err(e) => bail!("{e}"),
                };
                let pool = crate::db::connect(&db.database_url).await?;
                let page = query::search(&pool, &search).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&page)?);
                    return Ok(true);
                }
                let more = if page.total_is_lower_bound { "at least " } else { "" };
                let noun = if page.total == 1 && !page.total_is_lower_bound {
                    "submission matches"
                } else {
                    "submissions match"
                };
                println!("{more}{} {noun}", page.total);
                for s in &page.items {
                    let bpb = s.challenger_bpb.map(|b| format!("{b:.4}")).unwrap_or_else(|| "-".into());
                    println!(
                        "{}  {:<18} {:>7}  {:<14} {}",
                        s.id,
                        s.class,
                        bpb,
                        s.github_login.as_deref().unwrap_or("-"),
                        s.title
                    );
                }
                Ok(true)
            }
            CorpusCommand::Serve { db, listen, public_url } => {
                let pool = crate::db::connect(&db.database_url).await?;
                let state = crate::server::AppState::new(pool, Vec::new(), 0, crate::server::DEFAULT_MAX_BODY)
                    .with_public_url(public_url);
                crate::server::serve(state, listen).await?;
                Ok(true)
            }
            CorpusCommand::Export { db, format, out } => {
                let pool = crate::db::connect(&db.database_url).await?;
                let n = export(&pool, format, &out).await?;
                println!("{} submissions and {} verdicts → {}", n.submissions, n.verdicts, out.display());
                Ok(true)
            }
        }
    })
}
