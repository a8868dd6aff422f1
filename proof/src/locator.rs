//! The bundle locator a miner puts in the PR body: a fenced `karpa-bundle` block
//! (TOML inside) saying where the bundle file is and what it must hash to. Where it
//! is hosted is the miner's choice (a release asset of their fork, any HTTPS URL).
//!
//! ````text
//! ```karpa-bundle
//! url = "https://github.com/miner/recipe/releases/download/v1/bundle.tar"
//! sha256 = "…"          # of the file at url
//! bundle_digest = "…"   # of its manifest (what the hotkey signed)
//! ```
//! ````

use crate::Sha256Hex;
use serde::{Deserialize, Serialize};

pub const FENCE_INFO: &str = "karpa-bundle";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locator {
    pub url: String,
    pub sha256: Sha256Hex,
    pub bundle_digest: Sha256Hex,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LocatorError {
    #[error("the PR body has no ```{FENCE_INFO} block")]
    Missing,
    #[error("the PR body has more than one ```{FENCE_INFO} block")]
    Ambiguous,
    #[error("the {FENCE_INFO} block does not parse: {0}")]
    Malformed(String),
    #[error("the bundle URL must be https://, got {0:?}")]
    NotHttps(String),
}

impl Locator {
    pub fn render(&self) -> String {
        let body = toml::to_string(self).expect("a locator serialises");
        format!("```{FENCE_INFO}\n{body}```\n")
    }

    /// Finds exactly one locator block in a PR body.
    pub fn parse_from_body(body: &str) -> Result<Self, LocatorError> {
        let mut blocks = Vec::new();
        let mut lines = body.lines();
        while let Some(line) = lines.next() {
            if line.trim() == format!("```{FENCE_INFO}") {
                let inner: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
                blocks.push(inner.join("\n"));
            }
        }
        let block = match blocks.len() {
            0 => return Err(LocatorError::Missing),
            1 => &blocks[0],
            _ => return Err(LocatorError::Ambiguous),
        };
        let loc: Locator = toml::from_str(block).map_err(|e| LocatorError::Malformed(e.message().to_string()))?;
        if !loc.url.starts_with("https://") {
            return Err(LocatorError::NotHttps(loc.url));
        }
        Ok(loc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> Locator {
        Locator {
            url: "https://example.org/b.tar".into(),
            sha256: crate::sha256_bytes(b"file"),
            bundle_digest: crate::sha256_bytes(b"manifest"),
        }
    }

    #[test]
    fn round_trips_through_a_pr_body() {
        let body = format!("My change.\n\n{}\nThanks!", loc().render());
        assert_eq!(Locator::parse_from_body(&body), Ok(loc()));
    }

    #[test]
    fn bad_bodies_get_specific_errors() {
        assert_eq!(Locator::parse_from_body("no block"), Err(LocatorError::Missing));
        let two = format!("{}{}", loc().render(), loc().render());
        assert_eq!(Locator::parse_from_body(&two), Err(LocatorError::Ambiguous));
        let http = loc().render().replace("https://", "http://");
        assert!(matches!(Locator::parse_from_body(&http), Err(LocatorError::NotHttps(_))));
        let junk = "```karpa-bundle\nurl = 3\n```\n";
        assert!(matches!(Locator::parse_from_body(junk), Err(LocatorError::Malformed(_))));
        let extra = loc().render().replace("url =", "evil = 1\nurl =");
        assert!(matches!(Locator::parse_from_body(&extra), Err(LocatorError::Malformed(_))));
    }
}
