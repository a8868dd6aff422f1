//! The decision rule (DESIGN §8): crown only a decisive gain past the measured
//! noise floor. Every parameter is in [`DecisionRule`], loaded from one file.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionRule {
    /// One-sided z for the crown (2.33 ≈ 1 %).
    pub z: f64,
    /// Smallest gain worth a release, in bpb.
    pub min_delta: f64,
    /// A meaningful failure lies within this many margins of the king.
    pub meaningful_margins: f64,
    /// Rationale needs at least this many non-space characters and paragraphs.
    pub rationale_min_chars: usize,
    pub rationale_min_paragraphs: usize,
    /// Seed-hacking guard: a crown also needs one run of the challenger, trained by
    /// the validator with a seed it picks, to clear the threshold.
    pub confirmation_run: bool,
}

impl Default for DecisionRule {
    fn default() -> Self {
        DecisionRule {
            z: 2.33,
            min_delta: 0.002,
            meaningful_margins: 2.0,
            rationale_min_chars: 200,
            rationale_min_paragraphs: 2,
            confirmation_run: true,
        }
    }
}

/// The king's measured noise floor: hidden bpb over n seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseFloor {
    pub king: String,
    pub config: String,
    pub values: Vec<f64>,
}

impl NoiseFloor {
    pub fn n(&self) -> usize {
        self.values.len()
    }
    pub fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.n() as f64
    }
    /// Sample standard deviation (n − 1).
    pub fn sigma(&self) -> f64 {
        let m = self.mean();
        (self.values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (self.n().max(2) - 1) as f64).sqrt()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Crowned,
    MeaningfulFailure,
    Failure,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub king_mean: f64,
    pub sigma: f64,
    pub n: usize,
    pub challenger: f64,
    /// king_mean − challenger (positive = better).
    pub gain: f64,
    /// max(min_delta, z·σ·√(1 + 1/n)).
    pub threshold: f64,
}

pub fn decide(rule: &DecisionRule, floor: &NoiseFloor, challenger: f64, rationale: &str) -> Decision {
    let (mean, sigma, n) = (floor.mean(), floor.sigma(), floor.n());
    let threshold = rule.min_delta.max(rule.z * sigma * (1.0 + 1.0 / n as f64).sqrt());
    let gain = mean - challenger;
    let outcome = if gain >= threshold {
        Outcome::Crowned
    } else if gain > -rule.meaningful_margins * threshold && real_rationale(rule, rationale) {
        Outcome::MeaningfulFailure
    } else {
        Outcome::Failure
    };
    Decision { outcome, king_mean: mean, sigma, n, challenger, gain, threshold }
}

/// The outcome once the guard's confirmation run is in (`None`: it did not
/// train): a crown needs both runs past the threshold; otherwise the
/// confirmation decides between a meaningful failure and a failure.
pub fn confirm(
    rule: &DecisionRule,
    floor: &NoiseFloor,
    first: &Decision,
    confirmation: Option<f64>,
    rationale: &str,
) -> Outcome {
    if first.outcome != Outcome::Crowned {
        return first.outcome;
    }
    match confirmation.filter(|b| b.is_finite()) {
        Some(b) if first.king_mean - b >= first.threshold => Outcome::Crowned,
        Some(b) if decide(rule, floor, b, rationale).outcome == Outcome::MeaningfulFailure => {
            Outcome::MeaningfulFailure
        }
        _ => Outcome::Failure,
    }
}

fn real_rationale(rule: &DecisionRule, text: &str) -> bool {
    let chars = text.chars().filter(|c| !c.is_whitespace()).count();
    let paragraphs = text.split("\n\n").filter(|p| !p.trim().is_empty()).count();
    chars >= rule.rationale_min_chars && paragraphs >= rule.rationale_min_paragraphs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor() -> NoiseFloor {
        // mean 2.0, sample σ = 0.01 exactly.
        NoiseFloor { king: "recipe-v0.1.0".into(), config: "tiny".into(), values: vec![1.99, 2.0, 2.01] }
    }

    #[test]
    fn crown_only_past_the_threshold() {
        let rule = DecisionRule::default();
        let t = 2.33 * 0.01 * (1.0f64 + 1.0 / 3.0).sqrt();
        let d = decide(&rule, &floor(), 2.0 - t - 1e-9, "");
        assert_eq!(d.outcome, Outcome::Crowned);
        assert!((d.threshold - t).abs() < 1e-12 && (d.sigma - 0.01).abs() < 1e-12);
        assert_eq!(decide(&rule, &floor(), 2.0 - t + 1e-6, "").outcome, Outcome::Failure);
    }

    #[test]
    fn meaningful_failures_need_closeness_and_a_real_rationale() {
        let rule = DecisionRule::default();
        let long = format!(
            "{}\n\n{}",
            "Longer warmup stabilises early steps. ".repeat(4),
            "It did not beat the king; the schedule was too short. ".repeat(3)
        );
        assert_eq!(decide(&rule, &floor(), 2.01, &long).outcome, Outcome::MeaningfulFailure);
        assert_eq!(decide(&rule, &floor(), 2.01, "one line").outcome, Outcome::Failure);
        assert_eq!(decide(&rule, &floor(), 2.5, &long).outcome, Outcome::Failure);
    }

    #[test]
    fn the_guard_crowns_only_when_the_confirmation_clears_too() {
        let rule = DecisionRule::default();
        let long = format!("{}\n\n{}", "A reason. ".repeat(15), "Another reason. ".repeat(10));
        let first = decide(&rule, &floor(), 1.9, &long);
        assert_eq!(first.outcome, Outcome::Crowned);
        assert_eq!(confirm(&rule, &floor(), &first, Some(1.95), &long), Outcome::Crowned);
        assert_eq!(confirm(&rule, &floor(), &first, Some(1.995), &long), Outcome::MeaningfulFailure);
        assert_eq!(confirm(&rule, &floor(), &first, Some(1.995), ""), Outcome::Failure);
        assert_eq!(confirm(&rule, &floor(), &first, Some(2.2), &long), Outcome::Failure);
        assert_eq!(confirm(&rule, &floor(), &first, Some(f64::NAN), &long), Outcome::Failure);
        assert_eq!(confirm(&rule, &floor(), &first, None, &long), Outcome::Failure);
        let failed = decide(&rule, &floor(), 2.3, &long);
        assert_eq!(confirm(&rule, &floor(), &failed, Some(1.0), &long), Outcome::Failure, "no second chance");
    }
}
