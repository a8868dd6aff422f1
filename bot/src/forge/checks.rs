//! A verdict as a GitHub check run: conclusion, title, a markdown summary a miner
//! reads at a glance (challenger against king, gain, threshold, σ, n; each stage
//! ✔/✘; findings), the full verdict as JSON in the details, and annotations on
//! the PR's lines. GitHub caps summary and text at 65,535 bytes — an oversize
//! update fails and leaves the check pending forever — so both are cut on a
//! character boundary first; annotations go at most 50 per request.

use crate::judge::verdict::{Verdict, VerdictClass};
use crate::judge::Finding;
use serde::Serialize;
use std::fmt::Write;

/// GitHub's cap on a check run's `summary` and `text`, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 65_535;
/// GitHub's cap on annotations in one create or update request.
pub const MAX_ANNOTATIONS_PER_REQUEST: usize = 50;
/// The check run's name on every PR.
pub const CHECK_NAME: &str = "karpa";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    /// Crowned.
    Success,
    /// A meaningful failure, or stale (rebase and re-prove).
    Neutral,
    /// A failure or a rejection.
    Failure,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Annotation {
    pub path: String,
    pub start_line: usize,
    pub end_line: usize,
    pub annotation_level: &'static str,
    pub title: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckOutput {
    pub title: String,
    pub summary: String,
    pub text: String,
    /// Every annotation; send them with [`annotation_batches`].
    #[serde(skip)]
    pub annotations: Vec<Annotation>,
    pub images: Vec<Image>,
}

/// An image GitHub shows under the check's summary.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub alt: String,
    pub image_url: String,
    pub caption: String,
}

/// Where the check links to (absent ones are left out).
#[derive(Debug, Clone, Default)]
pub struct Links {
    pub bundle_url: Option<String>,
    pub corpus_url: Option<String>,
    pub loss_curve_url: Option<String>,
    /// The validator's signature of the verdict shown in the details.
    pub signature: Option<crate::judge::verdict::ValidatorSignature>,
}

/// The conclusion for a final verdict; `None` for `error`, which is retried and
/// never shown to the miner as their failure.
pub fn conclusion(class: VerdictClass) -> Option<Conclusion> {
    match class {
        VerdictClass::Crowned => Some(Conclusion::Success),
        VerdictClass::MeaningfulFailure | VerdictClass::Stale => Some(Conclusion::Neutral),
        VerdictClass::Failure | VerdictClass::Rejected => Some(Conclusion::Failure),
        VerdictClass::Error | VerdictClass::Waiting => None,
    }
}

pub fn render(v: &Verdict, links: &Links) -> CheckOutput {
    let class = serde_json::to_value(v.class).ok().and_then(|c| c.as_str().map(str::to_string)).unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(s, "**{class}** — {}\n", escape(&v.summary));
    if let Some(d) = &v.decision {
        let _ = writeln!(s, "| | hidden bpb |\n| --- | ---: |");
        let _ = writeln!(s, "| challenger (bundle) | {:.4} |", d.challenger);
        if let Some(c) = &v.confirmation {
            let runs: Vec<String> = c.hidden_bpb.iter().map(|b| format!("{b:.4}")).collect();
            let _ = writeln!(s, "| challenger (validator seeds: {}) | {:.4} |", runs.join(", "), c.mean);
        }
        let _ = writeln!(
            s,
            "| king {} (mean of n = {}) | {:.4} ± {:.4} |",
            v.king.as_deref().unwrap_or("?"),
            d.n,
            d.king_mean,
            d.sigma
        );
        let threshold = v.confirmation.as_ref().map_or(d.threshold, |c| c.threshold);
        let _ = writeln!(s, "| gain / threshold | {:+.4} / {threshold:.4} |\n", d.gain);
    }
    let _ = writeln!(s, "| stage | | seconds |\n| --- | :---: | ---: |");
    for st in &v.stages {
        let _ = writeln!(s, "| {} | {} | {:.2} |", st.stage, if st.passed { "✔" } else { "✘" }, st.seconds);
    }
    if let Some(e) = &v.eval {
        let replay = format!("replay from step {}", e.replay_from_step);
        let check = match &e.causality {
            Some(c) => format!("causality check: {}", c.summary()),
            None => "causality check".into(),
        };
        let parts = [
            ("build", e.build_s),
            ("probe", e.probe_s),
            ("hidden eval", e.eval_s),
            (check.as_str(), e.causality_s),
            (replay.as_str(), e.replay_s),
        ];
        for (part, seconds) in parts {
            let _ = writeln!(s, "| ↳ {part} | | {seconds:.2} |");
        }
        // What the judgment cost in model work, as the harness timed it (docs/PROTOCOL.md).
        let _ = writeln!(s, "| ↳ of which model compute | | {:.2} |", e.compute_s);
    }
    if !v.findings.is_empty() {
        let _ = writeln!(s, "\n**Findings**\n");
        for f in &v.findings {
            let at = match (&f.path, f.line) {
                (Some(p), Some(l)) => format!(" `{}:{l}`", escape(p)),
                (Some(p), None) => format!(" `{}`", escape(p)),
                _ => String::new(),
            };
            let _ = writeln!(s, "- `{}`{at}: {}", f.code, escape(&f.message));
        }
    }
    let mut link_lines = Vec::new();
    if let Some(u) = &links.loss_curve_url {
        link_lines.push(format!("![loss curve]({u})"));
    }
    if let Some(u) = &links.bundle_url {
        link_lines.push(format!("[bundle]({u})"));
    }
    if let Some(u) = &links.corpus_url {
        link_lines.push(format!("[in the corpus]({u})"));
    }
    if !link_lines.is_empty() {
        let _ = writeln!(s, "\n{}", link_lines.join(" · "));
    }
    let json = serde_json::to_string_pretty(v).unwrap_or_default();
    let images = links
        .loss_curve_url
        .iter()
        .map(|u| Image {
            alt: "loss curve".into(),
            image_url: u.clone(),
            caption: "training and public-val loss".into(),
        })
        .collect();
    CheckOutput {
        images,
        title: truncate(&format!("{class}: {}", v.summary), 1000),
        summary: truncate(&s, MAX_OUTPUT_BYTES),
        text: truncate(&format!("```json\n{json}\n```\n{}", signature_text(links)), MAX_OUTPUT_BYTES),
        annotations: v.findings.iter().filter_map(annotation).collect(),
    }
}

/// Who signed the verdict above, and how to check it.
fn signature_text(links: &Links) -> String {
    match &links.signature {
        Some(sig) => format!(
            "\nSigned by validator `{}`: sr25519 over `karpa-verdict:v1:` + the sha256 of the RFC 8785 form \
             of the JSON above:\n\n`{}`\n",
            sig.validator, sig.signature
        ),
        None => String::new(),
    }
}

/// Findings that point at a line of the PR become annotations.
fn annotation(f: &Finding) -> Option<Annotation> {
    let (path, line) = (f.path.as_ref()?, f.line?);
    let level = match f.severity {
        crate::judge::finding::Severity::Reject => "failure",
        crate::judge::finding::Severity::Info => "notice",
    };
    Some(Annotation {
        path: path.clone(),
        start_line: line,
        end_line: line,
        annotation_level: level,
        title: f.code.to_string(),
        message: truncate(&f.message, 4000),
    })
}

/// Annotations in request-sized groups: the first with the completing update,
/// the rest in updates that append.
pub fn annotation_batches(all: &[Annotation]) -> impl Iterator<Item = &[Annotation]> {
    all.chunks(MAX_ANNOTATIONS_PER_REQUEST)
}

/// `s` cut to at most `max` bytes on a character boundary, saying so when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    const NOTE: &str = "\n\n… (truncated)";
    let mut end = max.saturating_sub(NOTE.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{NOTE}", &s[..end])
}

/// Miner-supplied text goes into markdown: neutralise what could forge structure
/// or ping people (tables, HTML, mentions).
fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('<', "&lt;").replace('>', "&gt;").replace('@', "@\u{200b}").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::verdict::StageReport;

    fn verdict(findings: Vec<Finding>) -> Verdict {
        Verdict {
            class: VerdictClass::Rejected,
            summary: "the patch breaks the rules".into(),
            bundle_digest: Some("ab".repeat(32)),
            king: Some("recipe-v0.1.0".into()),
            findings,
            stages: vec![StageReport { stage: "diff-scan".into(), passed: false, seconds: 0.01 }],
            eval: None,
            decision: None,
            confirmation: None,
            judge_version: "0.1.0".into(),
        }
    }

    #[test]
    fn conclusions_follow_the_verdict() {
        assert_eq!(conclusion(VerdictClass::Crowned), Some(Conclusion::Success));
        assert_eq!(conclusion(VerdictClass::Stale), Some(Conclusion::Neutral));
        assert_eq!(conclusion(VerdictClass::MeaningfulFailure), Some(Conclusion::Neutral));
        assert_eq!(conclusion(VerdictClass::Rejected), Some(Conclusion::Failure));
        assert_eq!(conclusion(VerdictClass::Error), None, "our fault is retried, not concluded");
        assert_eq!(conclusion(VerdictClass::Waiting), None);
    }

    #[test]
    fn huge_outputs_are_cut_on_a_char_boundary_and_annotations_batched() {
        // 120 findings with lines, each message multibyte and long: far over 65,535 bytes.
        let findings: Vec<Finding> = (0..120)
            .map(|i| Finding::reject("scan.fs", "recipe/src/model.rs", Some(i + 1), "é—文".repeat(400)))
            .chain([Finding::reject("diff.mismatch", "patch.diff", None, "not the bundle's tree")])
            .collect();
        let out = render(&verdict(findings), &Links::default());
        assert!(out.summary.len() <= MAX_OUTPUT_BYTES && out.text.len() <= MAX_OUTPUT_BYTES);
        assert!(out.summary.ends_with("(truncated)") && out.text.ends_with("(truncated)"));
        assert_eq!(out.annotations.len(), 120, "only findings with a line");
        let sizes: Vec<usize> = annotation_batches(&out.annotations).map(<[_]>::len).collect();
        assert_eq!(sizes, vec![50, 50, 20]);
        assert_eq!((out.annotations[7].start_line, out.annotations[7].annotation_level), (8, "failure"));
        assert_eq!(truncate("ééé", 6), "ééé", "within the cap: untouched");
        let cut = truncate(&"é".repeat(40_000), MAX_OUTPUT_BYTES);
        assert!(cut.len() <= MAX_OUTPUT_BYTES && cut.is_char_boundary(cut.len()));
    }

    #[test]
    fn the_details_carry_the_verdict_and_its_validators_signature() {
        let v = verdict(vec![]);
        let alice = proof::hotkey::keypair_from_uri("//Alice").unwrap();
        let out = render(&v, &Links { signature: Some(v.sign(&alice)), ..Links::default() });
        // What a reader holds: the JSON block and the hex signature under it.
        let (json, rest) = out.text.strip_prefix("```json\n").unwrap().split_once("\n```\n").unwrap();
        let hex = rest.rsplit('`').nth(1).unwrap();
        let sig = crate::judge::verdict::ValidatorSignature {
            validator: "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY".into(),
            signature: hex.into(),
        };
        assert!(rest.contains(&sig.validator), "{rest}");
        let shown: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(crate::judge::verdict::verify_signature(&shown, &sig), Ok(()));
        let mut changed = shown.clone();
        changed["summary"] = "crowned".into();
        assert!(crate::judge::verdict::verify_signature(&changed, &sig).is_err());
        assert!(!render(&v, &Links::default()).text.contains("Signed by"), "no key, no claim");
    }

    #[test]
    fn miner_text_cannot_forge_markdown_or_ping() {
        let f = Finding::reject("scan.fs", "recipe/src/a|b.rs", Some(3), "| fake | row |\n<img src=x> @maintainers");
        let out = render(&verdict(vec![f]), &Links { bundle_url: Some("https://x/b.tar".into()), ..Links::default() });
        assert!(
            !out.summary.contains("| fake |")
                && !out.summary.contains("<img")
                && !out.summary.contains(" @maintainers")
        );
        assert!(out.summary.contains("✘") && out.summary.contains("[bundle](https://x/b.tar)"));
        assert!(out.text.starts_with("```json\n{"));
    }

    #[test]
    fn the_hidden_eval_is_broken_down_with_its_model_compute() {
        let mut v = verdict(vec![]);
        v.eval = Some(crate::judge::evaluate::EvalResult {
            hidden_bpb: 2.3,
            replay_from_step: 192,
            replay_max_abs_diff: 0.0,
            build_s: 5.6,
            probe_s: 0.3,
            eval_s: 0.45,
            causality: Some(proof::causality::CausalityReport {
                passed: true,
                pairs: 190,
                positions: 12_160,
                violations: 0,
                max_abs_diff: 2.4e-7,
                worst: None,
                cut_mean_diff: 0.0,
                tolerance: proof::causality::Tolerance::for_device(false),
                aimed: 48,
            }),
            causality_s: 0.61,
            replay_s: 0.59,
            compute_s: 0.51,
        });
        let out = render(&v, &Links::default());
        for row in [
            "| ↳ build | | 5.60 |",
            "| ↳ replay from step 192 | | 0.59 |",
            "| ↳ of which model compute | | 0.51 |",
            "| ↳ causality check: 190 secret pairs (48 aimed), 12160 positions, largest difference 2.4e-7 nats | | 0.61 |",
        ] {
            assert!(out.summary.contains(row), "{row} in {}", out.summary);
        }
        assert!(!render(&verdict(vec![]), &Links::default()).summary.contains("↳"), "no eval, no breakdown");
    }
}
