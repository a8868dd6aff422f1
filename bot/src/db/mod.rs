//! PostgreSQL: the bot's durable state (migrations/ at the workspace root).
//! Queries are checked at run time, so building needs no database.

pub mod confirmations;
pub mod curves;
pub mod deliveries;
pub mod floors;
pub mod jobs;
pub mod judgments;
pub mod kings;
pub mod ledger;

use anyhow::{Context, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};

/// Connects and brings the schema up to date.
pub async fn connect(url: &str) -> Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .context("cannot connect to PostgreSQL")?;
    sqlx::migrate!("../migrations").run(&pool).await.context("cannot migrate the database")?;
    Ok(pool)
}
