//! Webhook deliveries and the repositories the App is installed on.

use anyhow::Result;
use sqlx::{PgExecutor, Postgres, Transaction};

/// Records a verified delivery; false when (app, GUID) was seen before.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    app_id: i64,
    guid: &str,
    event: &str,
    action: Option<&str>,
    repo: Option<&str>,
    outcome: &str,
) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO deliveries (app_id, guid, event, action, repo, outcome) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (app_id, guid) DO NOTHING",
    )
    .bind(app_id)
    .bind(guid)
    .bind(event)
    .bind(action)
    .bind(repo)
    .bind(outcome)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub async fn is_installed(db: impl PgExecutor<'_>, repo: &str) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT installation_id FROM installed_repos WHERE repo = $1")
        .bind(repo)
        .fetch_optional(db)
        .await?
        .is_some())
}

pub async fn install(tx: &mut Transaction<'_, Postgres>, installation: i64, repos: &[String]) -> Result<()> {
    for repo in repos {
        sqlx::query(
            "INSERT INTO installed_repos (installation_id, repo) VALUES ($1, $2)
             ON CONFLICT (repo) DO UPDATE SET installation_id = excluded.installation_id",
        )
        .bind(installation)
        .bind(repo)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Forgets repositories (`None`: the whole installation).
pub async fn uninstall(tx: &mut Transaction<'_, Postgres>, installation: i64, repos: Option<&[String]>) -> Result<()> {
    match repos {
        None => sqlx::query("DELETE FROM installed_repos WHERE installation_id = $1").bind(installation),
        Some(repos) => sqlx::query("DELETE FROM installed_repos WHERE installation_id = $1 AND repo = ANY($2)")
            .bind(installation)
            .bind(repos),
    }
    .execute(&mut **tx)
    .await?;
    Ok(())
}
