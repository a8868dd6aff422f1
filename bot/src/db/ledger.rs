//! The judge's ledger (nonces, normalised diffs) in PostgreSQL: the first bundle
//! to insert a key owns it, atomically, whichever worker gets there first.

use crate::judge::ledger::{Claim, Kind, Ledger};
use anyhow::Result;
use sqlx::PgPool;

pub struct PgLedger {
    pool: PgPool,
    rt: tokio::runtime::Handle,
}

impl PgLedger {
    /// `rt` runs the queries; call [`Ledger::claim`] from a blocking thread.
    pub fn new(pool: PgPool, rt: tokio::runtime::Handle) -> Self {
        PgLedger { pool, rt }
    }
}

impl Ledger for PgLedger {
    fn claim(&self, kind: Kind, key: &str, bundle_digest: &str) -> Result<Claim> {
        let kind = match kind {
            Kind::Nonce => "nonce",
            Kind::Diff => "diff",
        };
        self.rt.block_on(async {
            let inserted =
                sqlx::query("INSERT INTO claims (kind, key, bundle) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(kind)
                    .bind(key)
                    .bind(bundle_digest)
                    .execute(&self.pool)
                    .await?;
            if inserted.rows_affected() == 1 {
                return Ok(Claim::Fresh);
            }
            let owner: String = sqlx::query_scalar("SELECT bundle FROM claims WHERE kind = $1 AND key = $2")
                .bind(kind)
                .bind(key)
                .fetch_one(&self.pool)
                .await?;
            Ok(if owner == bundle_digest { Claim::SameBundle } else { Claim::Taken(owner) })
        })
    }
}
