//! The corpus: the public record of every submission a validator judged, failures
//! included, so that the next researcher (or agent) learns what was tried.
//!
//! - [`record`]: what a judgment writes (bundle, submission, verdict, kings, floors).
//! - [`query`]: search, filters, pages, the kings and the leaderboard.
//! - [`api`]: the JSON API under /api/v1 and its OpenAPI document.
//! - [`web`]: the server-rendered pages.
//! - [`cite`]: BibTeX and CITATION.cff for one submission.
//! - [`export`]: the whole corpus as JSONL, SQLite or Parquet.

pub mod api;
pub mod cite;
pub mod export;
pub mod query;
pub mod record;
pub mod web;

use sha2::{Digest, Sha256};

/// A submission's stable, citable id: `ks-` and 16 hex digits of a hash of
/// (repository, PR, head, bundle). Every validator derives the same id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SubmissionId(String);

impl SubmissionId {
    pub fn derive(repo: &str, pr: u64, head_sha: &str, bundle_digest: Option<&str>) -> Self {
        let key = format!("karpa-submission/v1\n{repo}\n{pr}\n{head_sha}\n{}", bundle_digest.unwrap_or(""));
        SubmissionId(format!("ks-{}", &hex::encode(Sha256::digest(key.as_bytes()))[..16]))
    }

    /// Accepts only the exact shape of an id, so anything else is a clean 4xx.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("ks-")?;
        (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| SubmissionId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SubmissionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::SubmissionId;

    #[test]
    fn ids_are_stable_and_parse_strictly() {
        let a = SubmissionId::derive("o/r", 3, &"a".repeat(40), Some(&"b".repeat(64)));
        assert_eq!(a, SubmissionId::derive("o/r", 3, &"a".repeat(40), Some(&"b".repeat(64))));
        assert_ne!(a, SubmissionId::derive("o/r", 4, &"a".repeat(40), Some(&"b".repeat(64))));
        assert_eq!(SubmissionId::parse(a.as_str()), Some(a.clone()));
        for bad in ["", "ks-", "ks-0123", "KS-0123456789abcdef", "ks-0123456789abcdeg", "ks-0123456789abcdef0"] {
            assert_eq!(SubmissionId::parse(bad), None, "{bad}");
        }
    }
}
