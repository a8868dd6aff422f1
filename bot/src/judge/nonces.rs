//! The nonces this validator has seen, each with the bundle it came in. A nonce
//! arriving in a different bundle is a replay; the same bundle judged again is not.
//! A JSON-lines file, appended and synced per entry (the database takes over once
//! the bot runs as a service).

use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;

pub struct NonceLedger {
    path: PathBuf,
}

#[derive(Debug, PartialEq)]
pub enum NonceCheck {
    Fresh,
    SameBundle,
    /// Seen before in this other bundle.
    Reused(String),
}

impl NonceLedger {
    pub fn open(path: PathBuf) -> Self {
        NonceLedger { path }
    }

    /// Checks `nonce` and records it for `bundle_digest` when fresh.
    pub fn check_and_record(&self, nonce: &str, bundle_digest: &str) -> Result<NonceCheck> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.path.display())),
        };
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("{} is damaged", self.path.display()))?;
            if v["nonce"] == nonce {
                return Ok(if v["bundle"] == bundle_digest {
                    NonceCheck::SameBundle
                } else {
                    NonceCheck::Reused(v["bundle"].to_string())
                });
            }
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        writeln!(f, "{}", serde_json::json!({"nonce": nonce, "bundle": bundle_digest}))?;
        f.sync_all()?;
        Ok(NonceCheck::Fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_then_same_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let l = NonceLedger::open(dir.path().join("n/nonces.jsonl"));
        assert_eq!(l.check_and_record("n1", "b1").unwrap(), NonceCheck::Fresh);
        assert_eq!(l.check_and_record("n1", "b1").unwrap(), NonceCheck::SameBundle);
        assert!(matches!(l.check_and_record("n1", "b2").unwrap(), NonceCheck::Reused(_)));
        assert_eq!(l.check_and_record("n2", "b2").unwrap(), NonceCheck::Fresh);
    }
}
