//! Log plausibility: does the training log describe a run the harness could have
//! produced for this config on the calibrated machine? Every threshold is a named
//! constant, documented with its reason in docs/PROTOCOL.md.

use super::Finding;
use proof::calibration::Calibration;
use proof::config::ProtocolConfig;
use proof::log::{parse_log, LogLine};

/// |first loss − ln(vocab)|: a freshly initialised model predicts nearly uniformly,
/// so its first loss is close to ln(vocab). Far below means the run did not start
/// from the seeded initialisation (pretrained weights, leaked data).
pub const INITIAL_LOSS_TOLERANCE: f64 = 1.0;
/// Largest believable model-FLOPs utilisation against the calibrated dense matmul
/// peak: 0.7 on GPUs (Karpa's bound for bf16), 1.0 on CPUs, whose single fp32
/// matmul probe small models nearly saturate (6·N·D also counts embeddings).
pub fn max_implied_mfu(device_kind: &str) -> f64 {
    if device_kind == "cuda" {
        0.7
    } else {
        1.0
    }
}

const FILE: &str = "log.jsonl";

/// All findings for a log (empty = plausible).
pub fn check_log(text: &str, cfg: &ProtocolConfig, calibration: &Calibration) -> Vec<Finding> {
    let reject = |code, line: Option<usize>, msg: String| Finding::reject(code, FILE, line, msg);
    let lines = match parse_log(text) {
        Ok(l) => l,
        Err(e) => return vec![reject("log.schema", Some(e.line), e.message)],
    };
    let mut out = Vec::new();
    let (Some(LogLine::Start(start)), Some(LogLine::End(end))) = (lines.first(), lines.last()) else {
        return vec![reject(
            "log.schema",
            None,
            "the log must begin with a start line and end with an end line".into(),
        )];
    };
    if lines.iter().filter(|l| matches!(l, LogLine::Start(_) | LogLine::End(_))).count() != 2 {
        out.push(reject("log.schema", None, "more than one start or end line".into()));
    }
    let claims = [
        ("config", start.config == cfg.name),
        ("seed", start.seed == cfg.seed),
        ("token_budget", start.token_budget == cfg.token_budget),
        ("seq_len", start.seq_len == cfg.seq_len),
        ("data manifest", !cfg.data_pinned() || start.data_manifest.as_str() == cfg.data.manifest_sha256),
    ];
    for (what, ok) in claims {
        if !ok {
            out.push(reject("log.config", Some(1), format!("the start line's {what} is not config {}'s", cfg.name)));
        }
    }
    if start.params > cfg.max_params || 6.0 * start.params as f64 * cfg.token_budget as f64 > cfg.max_train_flops {
        out.push(reject(
            "log.cap",
            Some(1),
            format!("{} parameters exceed the config's parameter or FLOP cap", start.params),
        ));
    }

    let t = cfg.seq_len as u64;
    let (mut expect, mut tokens, mut elapsed) = (1u64, 0u64, 0.0f64);
    let mut first_loss = None;
    for (i, line) in lines.iter().enumerate() {
        let LogLine::Step(s) = line else { continue };
        let at = Some(i + 1);
        if s.step != expect {
            out.push(reject("log.steps", at, format!("step {} where step {expect} was due", s.step)));
        }
        let grew = s.tokens_seen.saturating_sub(tokens);
        if grew == 0 || grew % t != 0 || grew > start.batch_rows.max(0) as u64 * t {
            out.push(reject("log.tokens", at, format!("step {} consumed {grew} tokens", s.step)));
        }
        if !(s.loss.is_finite() && s.grad_norm.is_finite() && s.lr.is_finite()) {
            out.push(reject(
                "log.nan",
                at,
                format!("step {}: loss {}, grad_norm {}, lr {}", s.step, s.loss, s.grad_norm, s.lr),
            ));
        }
        if s.elapsed_s < elapsed || !s.elapsed_s.is_finite() {
            out.push(reject("log.time", at, format!("step {}: elapsed_s went back to {}", s.step, s.elapsed_s)));
        }
        first_loss.get_or_insert(s.loss);
        (expect, tokens, elapsed) = (s.step + 1, s.tokens_seen, s.elapsed_s.max(elapsed));
    }
    if tokens != cfg.token_budget || end.tokens_seen != tokens || end.steps + 1 != expect {
        out.push(reject(
            "log.budget",
            Some(lines.len()),
            format!(
                "the run consumed {tokens} tokens (end line: {}); the budget is exactly {}",
                end.tokens_seen, cfg.token_budget
            ),
        ));
    }
    let ln_vocab = (cfg.data.vocab_size as f64).ln();
    if let Some(l0) = first_loss.filter(|l| (l - ln_vocab).abs() > INITIAL_LOSS_TOLERANCE) {
        out.push(reject(
            "log.initial_loss",
            Some(2),
            format!("first loss {l0:.3} is far from ln(vocab) = {ln_vocab:.3}"),
        ));
    }
    if end.elapsed_s > 0.0 {
        let flops_per_s = 6.0 * start.params as f64 * tokens as f64 / end.elapsed_s;
        let mfu = flops_per_s / (calibration.matmul_peak_tflops * 1e12);
        let limit = max_implied_mfu(&calibration.device.kind);
        if mfu > limit {
            out.push(reject(
                "log.throughput",
                Some(lines.len()),
                format!(
                    "implied MFU {mfu:.2} exceeds {limit} of the calibrated peak ({:.1} TFLOP/s)",
                    calibration.matmul_peak_tflops
                ),
            ));
        }
    } else {
        out.push(reject("log.time", Some(lines.len()), "the run claims to have taken no time".into()));
    }
    out
}
