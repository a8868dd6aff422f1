//! The decision rule (DESIGN §8): crown only a decisive gain past the measured
//! noise floor. Every parameter is in [`DecisionRule`], loaded from one file.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionRule {
    /// One-sided false-crown rate of one decision. σ is estimated from the n
    /// noise-floor runs, so the critical value is Student's t with n − 1 degrees
    /// of freedom (2.82 at n = 10), not the normal 2.33: with 2.33 a null patch
    /// would crown about 2 % of the time (`cargo xtask judge-sim`).
    pub alpha: f64,
    /// Smallest gain worth a release, in bpb.
    pub min_delta: f64,
    /// A meaningful failure lies within this many margins of the king.
    pub meaningful_margins: f64,
    /// Rationale needs at least this many non-space characters and paragraphs.
    pub rationale_min_chars: usize,
    pub rationale_min_paragraphs: usize,
    /// Seed-hacking guard: when > 0, a crown is decided by the mean of this many
    /// runs of the challenger that the validator trains with seeds it picks; the
    /// bundle's own run only has to pass the gate below to earn them.
    pub confirmation_runs: u32,
    /// The gate: the bundle's run must gain max(min_delta, gate_z·σ·√(1 + 1/n)).
    pub gate_z: f64,
    /// Seeded runs of a king that make its noise floor when the bot measures it
    /// itself (one `floor-run` job each).
    pub floor_seeds: u32,
}

impl Default for DecisionRule {
    fn default() -> Self {
        DecisionRule {
            alpha: 0.01,
            min_delta: 0.002,
            meaningful_margins: 2.0,
            rationale_min_chars: 200,
            rationale_min_paragraphs: 2,
            confirmation_runs: 3,
            gate_z: 1.0,
            floor_seeds: 10,
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
    /// The king's per-token hidden nats, the mean over its floor runs: where the
    /// causality check aims half its pairs. Kept beside the JSON file (see
    /// [`NoiseFloor::reference_path`]), being one number per scored token.
    #[serde(skip)]
    pub reference: Option<std::sync::Arc<[f32]>>,
}

impl NoiseFloor {
    /// Where a floor file's per-token reference lives: `floor.json` → `floor.nats.f32`.
    pub fn reference_path(floor_file: &std::path::Path) -> std::path::PathBuf {
        floor_file.with_extension("nats.f32")
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Crowned,
    MeaningfulFailure,
    Failure,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub king_mean: f64,
    pub sigma: f64,
    pub n: usize,
    pub challenger: f64,
    /// king_mean − challenger (positive = better).
    pub gain: f64,
    /// max(min_delta, t·σ·√(1 + 1/n)).
    pub threshold: f64,
}

impl DecisionRule {
    /// Refuses rules that would make the decision meaningless.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.alpha > 0.0 && self.alpha < 0.5, "alpha must lie in (0, 0.5)"),
            (self.min_delta >= 0.0 && self.min_delta.is_finite(), "min_delta must be a finite number ≥ 0"),
            (self.gate_z >= 0.0 && self.gate_z.is_finite(), "gate_z must be a finite number ≥ 0"),
            (self.meaningful_margins >= 0.0 && self.meaningful_margins.is_finite(), "meaningful_margins must be ≥ 0"),
            (self.confirmation_runs <= 16, "confirmation_runs above 16 is a denial of service on the validator"),
            ((2..=64).contains(&self.floor_seeds), "floor_seeds must lie in 2..=64 (a spread needs two runs)"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(why.to_string()),
            None => Ok(()),
        }
    }

    /// Student's t critical value for `alpha` with n − 1 degrees of freedom
    /// (infinite below n = 2: no crown without a measured spread).
    pub fn critical(&self, n: usize) -> f64 {
        match StudentsT::new(0.0, 1.0, n.saturating_sub(1) as f64) {
            Ok(t) if n >= 2 => t.inverse_cdf(1.0 - self.alpha),
            _ => f64::INFINITY,
        }
    }

    /// The gain a mean of `runs` challenger runs must reach: max(min_delta,
    /// t·σ·√(1/runs + 1/n)), the one-sided test of two means.
    pub fn threshold(&self, floor: &NoiseFloor, runs: usize) -> f64 {
        self.threshold_for(floor.sigma(), floor.n(), runs)
    }

    /// [`Self::threshold`] for a spread σ measured over `n` runs: what a miner
    /// expects the validator's floor of n runs to demand, from its own σ.
    pub fn threshold_for(&self, sigma: f64, n: usize, runs: usize) -> f64 {
        if n < 2 {
            return f64::INFINITY;
        }
        let spread = sigma * (1.0 / runs.max(1) as f64 + 1.0 / n as f64).sqrt();
        self.min_delta.max(self.critical(n) * spread)
    }

    /// Whether the bundle's run earns the guard's confirmation runs: a gain of
    /// max(min_delta, gate_z·σ·√(1 + 1/n)).
    pub fn gate(&self, floor: &NoiseFloor, challenger: f64) -> bool {
        floor.mean() - challenger >= self.gate_for(floor.sigma(), floor.n())
    }

    /// The gain the gate asks of one run, for a spread σ measured over `n` runs.
    pub fn gate_for(&self, sigma: f64, n: usize) -> f64 {
        self.min_delta.max(self.gate_z * sigma * (1.0 + 1.0 / n.max(1) as f64).sqrt())
    }
}

/// The decision on one run of the challenger (the bundle's).
pub fn decide(rule: &DecisionRule, floor: &NoiseFloor, challenger: f64, rationale: &str) -> Decision {
    let (mean, sigma, n) = (floor.mean(), floor.sigma(), floor.n());
    let threshold = rule.threshold(floor, 1);
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

/// The guard's outcome from the validator's confirmation runs (a non-finite
/// value: a run that failed): crowned iff their mean clears the two-means
/// threshold; otherwise their mean decides between meaningful failure and failure.
pub fn confirm(rule: &DecisionRule, floor: &NoiseFloor, confirmations: &[f64], rationale: &str) -> Outcome {
    if confirmations.is_empty() || confirmations.iter().any(|b| !b.is_finite()) {
        return Outcome::Failure;
    }
    let mean = confirmations.iter().sum::<f64>() / confirmations.len() as f64;
    if floor.mean() - mean >= rule.threshold(floor, confirmations.len()) {
        Outcome::Crowned
    } else if decide(rule, floor, mean, rationale).outcome != Outcome::Failure {
        Outcome::MeaningfulFailure
    } else {
        Outcome::Failure
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
        NoiseFloor {
            king: "recipe-v0.1.0".into(),
            config: "tiny".into(),
            values: vec![1.99, 2.0, 2.01],
            reference: None,
        }
    }

    /// Student's t quantile at 0.99 with 2 degrees of freedom (tables: 6.965).
    const T99_2: f64 = 6.964_556_734_283_274;

    #[test]
    fn the_critical_value_is_students_t() {
        let rule = DecisionRule::default();
        assert!((rule.critical(3) - T99_2).abs() < 1e-6, "{}", rule.critical(3));
        assert!((rule.critical(10) - 2.821).abs() < 1e-3, "{}", rule.critical(10));
        assert!((rule.critical(100_000) - 2.326).abs() < 1e-3, "the normal limit");
        assert_eq!(rule.critical(1), f64::INFINITY);
        assert!(DecisionRule { alpha: 0.0, ..rule.clone() }.validate().is_err());
        assert!(DecisionRule { gate_z: f64::NAN, ..rule.clone() }.validate().is_err());
        assert!(rule.validate().is_ok());
    }

    #[test]
    fn crown_only_past_the_threshold() {
        let rule = DecisionRule::default();
        let t = T99_2 * 0.01 * (1.0f64 + 1.0 / 3.0).sqrt();
        let d = decide(&rule, &floor(), 2.0 - t - 1e-9, "");
        assert_eq!(d.outcome, Outcome::Crowned);
        assert!((d.threshold - t).abs() < 1e-9 && (d.sigma - 0.01).abs() < 1e-12);
        assert_eq!(decide(&rule, &floor(), 2.0 - t + 1e-6, "").outcome, Outcome::Failure);
        let one = NoiseFloor { values: vec![2.0], ..floor() };
        assert_eq!(decide(&rule, &one, 0.0, "").outcome, Outcome::Failure, "no crown without a spread");
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
    fn the_guard_decides_on_the_mean_of_the_validators_runs() {
        let rule = DecisionRule::default();
        let f = floor(); // mean 2.0, σ 0.01, n 3
        let long = format!("{}\n\n{}", "A reason. ".repeat(15), "Another reason. ".repeat(10));
        // Gate: gain ≥ 1.0·σ·√(4/3) ≈ 0.01155.
        assert!(rule.gate(&f, 1.988) && !rule.gate(&f, 1.989));
        // Three confirmations: mean gain ≥ t·σ·√(1/3 + 1/3) ≈ 0.05687.
        let t = rule.threshold(&f, 3);
        assert!((t - T99_2 * 0.01 * (2.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!(confirm(&rule, &f, &[2.0 - t, 2.0 - t + 0.001, 2.0 - t - 0.001 - 1e-9], &long), Outcome::Crowned);
        assert_eq!(confirm(&rule, &f, &[1.85, 2.0, 1.95], &long), Outcome::Crowned, "the mean, not each run");
        assert_eq!(confirm(&rule, &f, &[1.99, 1.99, 1.99], &long), Outcome::MeaningfulFailure);
        assert_eq!(confirm(&rule, &f, &[1.99, 1.99, 1.99], ""), Outcome::Failure);
        assert_eq!(confirm(&rule, &f, &[2.2, 2.2, 2.2], &long), Outcome::Failure);
        assert_eq!(confirm(&rule, &f, &[1.5, f64::NAN], &long), Outcome::Failure, "a failed run fails");
        assert_eq!(confirm(&rule, &f, &[], &long), Outcome::Failure);
    }
}
