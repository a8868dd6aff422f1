//! Loss-curve images by bundle digest.

use anyhow::Result;
use sqlx::PgPool;

/// Stores the curve of `bundle_digest`; storing it again changes nothing.
pub async fn put(pool: &PgPool, bundle_digest: &str, svg: &str) -> Result<()> {
    sqlx::query("INSERT INTO loss_curves (bundle_digest, svg) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(bundle_digest)
        .bind(svg)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, bundle_digest: &str) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT svg FROM loss_curves WHERE bundle_digest = $1")
        .bind(bundle_digest)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(svg,)| svg))
}
