//! A finding: what a judge stage found, where, and how much it matters.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Shapes the verdict without rejecting the proof (e.g. a duplicate idea).
    Info,
    /// The submission is rejected.
    Reject,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable machine-readable code, e.g. `scan.unsafe`.
    pub code: Cow<'static, str>,
    pub severity: Severity,
    pub message: String,
    /// Repository path the finding concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 1-based line in `path`, so the check can annotate the diff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl Finding {
    pub fn reject(code: &'static str, path: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Finding {
            code: Cow::Borrowed(code),
            severity: Severity::Reject,
            message: message.into(),
            path: Some(path.to_string()),
            line,
        }
    }

    pub fn info(code: &'static str, path: &str, message: impl Into<String>) -> Self {
        Finding {
            code: Cow::Borrowed(code),
            severity: Severity::Info,
            message: message.into(),
            path: Some(path.to_string()),
            line: None,
        }
    }
}
