//! The causality check of the hidden score: the contract between the harness,
//! which records and re-scores, and the judge, which compares.
//!
//! The scoring pass (`karpa-train eval --nats-out`) records the nats of every
//! scored token. A second process (`karpa-train causality`) that shares no state
//! with it re-scores secret (window, cut) pairs with the window's tokens after the
//! cut replaced by unrelated public text. For an honest next-token predictor the
//! nats at every position ≤ cut are the same in both passes: they depend on the
//! window's tokens up to that position only. A recipe whose scored probability of
//! the token at the cut used anything else — the token itself (the next input),
//! later tokens, other rows of the call, state from earlier calls — had that
//! information in the scoring pass and not in the check, so the numbers differ.
//!
//! The judge (never the recipe's process) compares with [`compare`].

pub mod aim;

use serde::{Deserialize, Serialize};
use std::path::Path;

/// One re-scored pair: `window` indexes the evaluated windows (in stream order),
/// `cut` is the last position whose true input is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pair {
    pub window: u32,
    pub cut: u32,
}

/// How far the two passes may differ for an honest recipe, in nats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Largest |Δ| at any compared position.
    pub per_token: f64,
    /// Largest mean Δ over the cut positions (the scored pass lower), a bias no
    /// single position shows.
    pub bias: f64,
}

impl Tolerance {
    /// CPU: the same binary, same kernels and batch shape up to the last partial
    /// call; honest runs differ by float order only (measured ≤ 1e-5 nats, see
    /// docs/PROTOCOL.md). CUDA with bf16 autocast: kernels are chosen per shape
    /// and round to 8 bits of mantissa, a few hundredths of a nat at worst.
    pub fn for_device(cuda: bool) -> Self {
        if cuda {
            Tolerance { per_token: 0.05, bias: 5e-3 }
        } else {
            Tolerance { per_token: 1e-3, bias: 1e-4 }
        }
    }
}

/// The position where the two passes differ most.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Worst {
    pub window: u32,
    pub position: u32,
    pub cut: u32,
    /// Nats the scoring pass recorded.
    pub scored: f64,
    /// Nats with the window's future after the cut replaced.
    pub reference: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CausalityReport {
    pub passed: bool,
    pub pairs: usize,
    /// Positions compared (every position ≤ cut of every pair).
    pub positions: usize,
    /// Positions whose |Δ| exceeds the per-token tolerance.
    pub violations: usize,
    pub max_abs_diff: f64,
    pub worst: Option<Worst>,
    /// Mean of (reference − scored) over the cut positions: what looking at the
    /// cut's own target bought per checked token, in nats.
    pub cut_mean_diff: f64,
    pub tolerance: Tolerance,
    /// How many of the pairs were aimed where the recipe beat the king's
    /// per-token nats the most ([`aim`]); the rest are uniform.
    #[serde(default)]
    pub aimed: usize,
}

impl CausalityReport {
    /// What was checked, for a check run's row or a corpus page.
    pub fn summary(&self) -> String {
        let aimed = if self.aimed > 0 { format!(" ({} aimed)", self.aimed) } else { String::new() };
        format!(
            "{} secret pairs{aimed}, {} positions, largest difference {:.1e} nats",
            self.pairs, self.positions, self.max_abs_diff
        )
    }

    /// One sentence for the miner.
    pub fn explain(&self) -> String {
        match (self.passed, self.worst) {
            (true, _) => format!(
                "{} positions of {} secret (window, cut) pairs{} scored the same with each window's future replaced \
                 (largest difference {:.1e} nats)",
                self.positions,
                self.pairs,
                match self.aimed {
                    0 => String::new(),
                    n => format!(" ({n} aimed where the recipe beats the king most)"),
                },
                self.max_abs_diff
            ),
            (false, Some(w)) if self.violations > 0 => format!(
                "the recipe's score depends on tokens it must not see: at hidden window {} position {} it scored \
                 {:.4} nats, but {:.4} with the tokens after position {} replaced ({} of {} checked positions differ \
                 by more than {:.0e})",
                w.window,
                w.position,
                w.scored,
                w.reference,
                w.cut,
                self.violations,
                self.positions,
                self.tolerance.per_token
            ),
            _ => format!(
                "the recipe's score is biased by tokens it must not see: at the {} secret cuts it scored {:.2e} nats \
                 per token lower than with each window's future replaced (tolerance {:.0e})",
                self.pairs, self.cut_mean_diff, self.tolerance.bias
            ),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CompareError {
    #[error("the scoring pass recorded {found} nats, expected {expected} ({windows} windows of {seq_len})")]
    ScoredLength { found: usize, expected: usize, windows: usize, seq_len: usize },
    #[error("the check returned {found} nats for {pairs} pairs, expected {expected}")]
    ReferenceLength { found: usize, expected: usize, pairs: usize },
    #[error("pair {0:?} lies outside the evaluated windows")]
    OutOfRange(Pair),
    #[error("non-finite nats at window {window} position {position}")]
    NotFinite { window: u32, position: u32 },
}

/// Compares the scoring pass's nats (`scored`, `windows × seq_len` in window
/// order) with the check's (`reference`: for each pair in order, positions 0..=cut).
pub fn compare(
    scored: &[f32],
    seq_len: usize,
    pairs: &[Pair],
    reference: &[f32],
    tolerance: Tolerance,
) -> Result<CausalityReport, CompareError> {
    let windows = scored.len() / seq_len.max(1);
    if seq_len == 0 || scored.len() != windows * seq_len || windows == 0 {
        return Err(CompareError::ScoredLength {
            found: scored.len(),
            expected: windows.max(1) * seq_len,
            windows,
            seq_len,
        });
    }
    let expected: usize = pairs.iter().map(|p| p.cut as usize + 1).sum();
    if reference.len() != expected {
        return Err(CompareError::ReferenceLength { found: reference.len(), expected, pairs: pairs.len() });
    }
    let (mut offset, mut violations, mut max_abs, mut worst, mut cut_sum) = (0, 0, 0.0f64, None, 0.0f64);
    for &pair in pairs {
        let (w, c) = (pair.window as usize, pair.cut as usize);
        if w >= windows || c >= seq_len {
            return Err(CompareError::OutOfRange(pair));
        }
        for t in 0..=c {
            let (s, r) = (scored[w * seq_len + t] as f64, reference[offset + t] as f64);
            if !s.is_finite() || !r.is_finite() {
                return Err(CompareError::NotFinite { window: pair.window, position: t as u32 });
            }
            let d = (r - s).abs();
            violations += usize::from(d > tolerance.per_token);
            if d > max_abs || worst.is_none() {
                max_abs = max_abs.max(d);
                worst = Some(Worst { window: pair.window, position: t as u32, cut: pair.cut, scored: s, reference: r });
            }
            if t == c {
                cut_sum += r - s;
            }
        }
        offset += c + 1;
    }
    let cut_mean_diff = if pairs.is_empty() { 0.0 } else { cut_sum / pairs.len() as f64 };
    Ok(CausalityReport {
        passed: !pairs.is_empty() && violations == 0 && cut_mean_diff <= tolerance.bias,
        pairs: pairs.len(),
        positions: expected,
        violations,
        max_abs_diff: max_abs,
        worst,
        cut_mean_diff,
        tolerance,
        aimed: 0,
    })
}

/// Probability that `pairs` uniform secret cuts hit at least one of a fraction
/// `cheated` of the scored positions (each hit is a violation: see [`compare`]).
pub fn detection_power(cheated: f64, pairs: u64) -> f64 {
    1.0 - (1.0 - cheated.clamp(0.0, 1.0)).powf(pairs as f64)
}

/// The smallest fraction of positions a cheat must touch to buy `gain_bpb`, when
/// it saves the whole loss of the positions it touches, choosing the dearest ones
/// first: `nats` the honest per-token losses, `bytes` the bytes the scored tokens
/// stand for.
pub fn least_cheated_fraction(nats: &[f32], bytes: u64, gain_bpb: f64) -> f64 {
    let needed = gain_bpb * std::f64::consts::LN_2 * bytes as f64;
    let mut sorted: Vec<f64> = nats.iter().map(|&n| n as f64).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut saved = 0.0;
    for (i, n) in sorted.iter().enumerate() {
        saved += n;
        if saved >= needed {
            return (i + 1) as f64 / sorted.len() as f64;
        }
    }
    1.0
}

/// Little-endian f32s, the format of `--nats-out` and of the check's output.
pub fn write_f32s(path: &Path, values: &[f32]) -> std::io::Result<()> {
    crate::fsio::write_atomic(path, &f32_bytes(values))
}

/// The bytes `read_f32s` reads: little-endian f32s (karpa-train writes them
/// through a file opened before it is confined).
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn read_f32s(path: &Path) -> std::io::Result<Vec<f32>> {
    let bytes = std::fs::read(path)?;
    f32s_of(&bytes).map_err(|n| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} holds {n} bytes, not whole f32s", path.display()),
        )
    })
}

/// The f32s of [`f32_bytes`]; Err(length) when the bytes are not whole f32s.
pub fn f32s_of(bytes: &[u8]) -> Result<Vec<f32>, usize> {
    if !bytes.len().is_multiple_of(4) {
        return Err(bytes.len());
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: usize = 8;

    fn scored(windows: usize) -> Vec<f32> {
        (0..windows * T).map(|i| 1.0 + (i % 7) as f32 * 0.5).collect()
    }

    fn honest_reference(scored: &[f32], pairs: &[Pair]) -> Vec<f32> {
        pairs.iter().flat_map(|p| (0..=p.cut as usize).map(|t| scored[p.window as usize * T + t])).collect()
    }

    #[test]
    fn an_honest_recipe_passes_with_float_noise() {
        let s = scored(4);
        let pairs = [Pair { window: 0, cut: 3 }, Pair { window: 2, cut: 7 }, Pair { window: 3, cut: 0 }];
        let noisy: Vec<f32> = honest_reference(&s, &pairs).iter().map(|v| v + 2e-6).collect();
        let r = compare(&s, T, &pairs, &noisy, Tolerance::for_device(false)).unwrap();
        assert!(r.passed, "{r:?}");
        assert_eq!((r.pairs, r.positions, r.violations), (3, 4 + 8 + 1, 0));
        assert!(r.explain().contains("13 positions of 3 secret"), "{}", r.explain());
    }

    #[test]
    fn a_lookahead_at_a_cut_is_a_violation_naming_the_place() {
        let mut s = scored(4);
        let pairs = [Pair { window: 1, cut: 5 }, Pair { window: 2, cut: 2 }];
        let reference = honest_reference(&s, &pairs);
        s[T + 5] -= 0.7; // the scored pass saw window 1's token at position 6
        let r = compare(&s, T, &pairs, &reference, Tolerance::for_device(false)).unwrap();
        assert!(!r.passed);
        assert_eq!(r.violations, 1);
        let w = r.worst.unwrap();
        assert_eq!((w.window, w.position, w.cut), (1, 5, 5));
        assert!((r.cut_mean_diff - 0.35).abs() < 1e-6);
        assert!(r.explain().contains("hidden window 1 position 5"), "{}", r.explain());
    }

    #[test]
    fn a_bias_below_the_per_token_tolerance_is_caught_on_the_mean() {
        let s = scored(3);
        let pairs: Vec<Pair> = (0..3).map(|w| Pair { window: w, cut: 4 }).collect();
        // Every cut's own token scored 5e-4 nats too well: under 1e-3 each, over 1e-4 on average.
        let mut reference = honest_reference(&s, &pairs);
        for i in 0..3 {
            reference[i * 5 + 4] += 5e-4;
        }
        let r = compare(&s, T, &pairs, &reference, Tolerance::for_device(false)).unwrap();
        assert_eq!(r.violations, 0);
        assert!(!r.passed && r.explain().contains("biased"), "{r:?}");
    }

    #[test]
    fn malformed_outputs_are_errors_not_passes() {
        let s = scored(2);
        let pairs = [Pair { window: 1, cut: 3 }];
        let tol = Tolerance::for_device(false);
        assert!(matches!(compare(&s, T, &pairs, &[0.0; 3], tol), Err(CompareError::ReferenceLength { .. })));
        assert!(matches!(compare(&s[..9], T, &pairs, &[0.0; 4], tol), Err(CompareError::ScoredLength { .. })));
        let far = [Pair { window: 2, cut: 0 }];
        assert_eq!(compare(&s, T, &far, &[0.0], tol), Err(CompareError::OutOfRange(far[0])));
        let mut nan = honest_reference(&s, &pairs);
        nan[2] = f32::NAN;
        assert!(matches!(compare(&s, T, &pairs, &nan, tol), Err(CompareError::NotFinite { .. })));
        // No pairs checked is never a pass.
        assert!(!compare(&s, T, &[], &[], tol).unwrap().passed);
    }

    #[test]
    fn power_and_the_least_fraction_a_cheat_needs() {
        // 192 uniform cuts catch a cheat on 2.4 % of positions with 99 % probability.
        assert!(detection_power(0.024, 192) > 0.99);
        assert!(detection_power(0.01, 192) < 0.86);
        assert_eq!(detection_power(0.0, 192), 0.0);
        // Losses 10, 1, 1, 1 over 13 bytes: 1 bpb needs 9.01 nats, the dearest token alone.
        let nats = [1.0, 10.0, 1.0, 1.0];
        assert_eq!(least_cheated_fraction(&nats, 13, 1.0), 0.25);
        assert_eq!(least_cheated_fraction(&nats, 13, 1.2), 0.5);
        assert_eq!(least_cheated_fraction(&nats, 13, 100.0), 1.0);
    }

    #[test]
    fn f32_files_round_trip_and_refuse_torn_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nats.f32");
        write_f32s(&p, &[1.5, -0.25, 3.0]).unwrap();
        assert_eq!(read_f32s(&p).unwrap(), vec![1.5, -0.25, 3.0]);
        std::fs::write(&p, [0u8; 5]).unwrap();
        assert!(read_f32s(&p).is_err());
    }
}
