//! What this validator has seen: nonces (a nonce in a second bundle is a replay)
//! and normalised diffs (the same idea submitted again is a duplicate, never a
//! meaningful failure and never a crown bought by re-rolling seeds). The first
//! bundle to claim a key owns it; the same bundle judged again is not a repeat.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nonce,
    Diff,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Nonce => "nonces",
            Kind::Diff => "diffs",
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Claim {
    Fresh,
    SameBundle,
    /// Claimed before by this other bundle.
    Taken(String),
}

/// Where claims live: JSON lines for `karpa judge`, PostgreSQL for the bot.
pub trait Ledger: Send + Sync {
    /// Claims `key` for `bundle_digest` unless another bundle already holds it.
    fn claim(&self, kind: Kind, key: &str, bundle_digest: &str) -> Result<Claim>;
}

/// One JSON-lines file per kind in a folder, appended and synced per entry.
pub struct JsonlLedger {
    dir: PathBuf,
}

impl JsonlLedger {
    pub fn open(dir: PathBuf) -> Self {
        JsonlLedger { dir }
    }
}

impl Ledger for JsonlLedger {
    fn claim(&self, kind: Kind, key: &str, bundle_digest: &str) -> Result<Claim> {
        let path = self.dir.join(format!("{}.jsonl", kind.name()));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("{} is damaged", path.display()))?;
            if v["key"] == key {
                return Ok(match v["bundle"].as_str() {
                    Some(b) if b == bundle_digest => Claim::SameBundle,
                    other => Claim::Taken(other.unwrap_or_default().to_string()),
                });
            }
        }
        std::fs::create_dir_all(&self.dir)?;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        writeln!(f, "{}", serde_json::json!({"key": key, "bundle": bundle_digest}))?;
        f.sync_all()?;
        Ok(Claim::Fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_then_same_then_taken_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        let l = JsonlLedger::open(dir.path().join("ledger"));
        assert_eq!(l.claim(Kind::Nonce, "n1", "b1").unwrap(), Claim::Fresh);
        assert_eq!(l.claim(Kind::Nonce, "n1", "b1").unwrap(), Claim::SameBundle);
        assert_eq!(l.claim(Kind::Nonce, "n1", "b2").unwrap(), Claim::Taken("b1".into()));
        assert_eq!(l.claim(Kind::Diff, "n1", "b2").unwrap(), Claim::Fresh, "kinds are separate");
        assert_eq!(l.claim(Kind::Nonce, "n2", "b2").unwrap(), Claim::Fresh);
    }
}
