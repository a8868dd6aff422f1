//! `karpa serve`: flags, secrets and the runtime around [`crate::server`].

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// PostgreSQL URL.
    #[arg(long, env = "KARPA_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The GitHub App's id.
    #[arg(long, env = "KARPA_APP_ID")]
    pub app_id: i64,
    /// A file holding a webhook secret; repeat while rotating (every one is accepted).
    #[arg(long = "webhook-secret-file", required = true)]
    pub webhook_secret_files: Vec<PathBuf>,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_BODY)]
    pub max_body: usize,
}

/// Reads the webhook secrets; each must be at least 16 bytes after trimming.
pub fn read_secrets(files: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            let secret = text.trim().as_bytes().to_vec();
            if secret.len() < 16 {
                bail!("{} holds under 16 bytes; a webhook secret that short can be guessed", f.display());
            }
            Ok(secret)
        })
        .collect()
}

pub fn serve(args: &ServeArgs) -> Result<bool> {
    let secrets = read_secrets(&args.webhook_secret_files)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "karpa_bot=info".into()),
        )
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let pool = crate::db::connect(&args.database_url).await?;
        let state = crate::server::AppState::new(pool, secrets, args.app_id, args.max_body);
        crate::server::serve(state, args.listen).await
    })?;
    Ok(true)
}
