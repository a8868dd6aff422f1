//! Keep or discard, honestly: the validator's own two steps, on the public
//! split. The validator gives a bundle's run confirmation runs only past its
//! gate, max(min_delta, gate_z·σ·√(1 + 1/n)), and crowns only when the mean of
//! the runs it trains itself clears max(min_delta, t·σ·√(1/runs + 1/n)), with σ
//! from its floor of n seeds. A miner that kept what one lucky seed showed would
//! submit noise; one that asked the full threshold of a single run would throw
//! away real gains (on tiny it discarded `batch_rows = 8`, a 4.5σ gain, at 2.7σ
//! measured). So the first run of a change must pass the gate (σ measured here,
//! n = the rule's floor seeds), a second seed must beat the best on its own, and
//! the mean of both must clear the two-means threshold for two runs.

use super::record::mean;
use crate::judge::decision::DecisionRule;

/// What the first run of a change decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Screen {
    /// Not better by the margin: discarded after one run.
    Discard,
    /// Promising: believe it only after a second seed.
    Confirm,
}

pub fn screen(rule: &DecisionRule, best: f64, sigma: f64, first: f64) -> Screen {
    if sigma.is_finite() && best - first >= gate(rule, sigma) {
        Screen::Confirm
    } else {
        Screen::Discard
    }
}

/// Whether two or more runs of a change make it the new best.
pub fn confirmed(rule: &DecisionRule, best: f64, sigma: f64, runs: &[f64]) -> bool {
    runs.len() >= 2 && runs[1..].iter().all(|&r| r < best) && best - mean(runs) >= margin(rule, sigma, runs.len())
}

/// Whether the best clears the rule's threshold against the king with room to
/// spare (`spare` × the threshold of the validator's confirmation runs).
pub fn worth_submitting(rule: &DecisionRule, king: f64, best: &[f64], sigma: f64, spare: f64) -> bool {
    best.len() >= 2 && king - mean(best) >= spare * margin(rule, sigma, rule.confirmation_runs.max(1) as usize)
}

/// The validator's gate for one run, from the spread σ seen here.
pub fn gate(rule: &DecisionRule, sigma: f64) -> f64 {
    rule.gate_for(sigma, rule.floor_seeds as usize)
}

/// The validator's threshold for a mean of `runs`, from the spread σ seen here
/// (no spread measured yet: nothing passes).
pub fn margin(rule: &DecisionRule, sigma: f64, runs: usize) -> f64 {
    if !sigma.is_finite() {
        return f64::INFINITY;
    }
    rule.threshold_for(sigma, rule.floor_seeds as usize, runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lucky_run_is_never_kept() {
        let rule = DecisionRule::default();
        let sigma = 0.01;
        let g = gate(&rule, sigma);
        assert!((g - 0.01 * 1.1f64.sqrt()).abs() < 1e-12, "gate_z·σ·√(1 + 1/10), got {g}");
        assert_eq!(screen(&rule, 2.0, sigma, 2.0 - g * 0.9), Screen::Discard);
        assert_eq!(screen(&rule, 2.0, sigma, 2.0 - g * 1.1), Screen::Confirm);
        let m2 = margin(&rule, sigma, 2);
        assert!(m2 > 0.02 && m2 < 0.025, "t(9)·σ·√(1/2 + 1/10) ≈ 0.0218, got {m2}");
        let lucky = 2.0 - 3.0 * m2;
        assert!(!confirmed(&rule, 2.0, sigma, &[lucky, 2.001]), "the second seed shows no gain");
        assert!(!confirmed(&rule, 2.0, sigma, &[lucky]), "one run is never believed");
        assert!(!confirmed(&rule, 2.0, sigma, &[2.0 - g * 1.1, 2.0 - g * 1.1]), "past the gate twice is not enough");
        assert!(confirmed(&rule, 2.0, sigma, &[2.0 - m2, 2.0 - m2]));
        assert!(!confirmed(&rule, 2.0, f64::NAN, &[1.0, 1.0]), "no measured spread, no keep");
        assert_eq!(screen(&rule, 2.0, f64::NAN, 1.0), Screen::Discard);
    }

    #[test]
    fn a_submission_needs_room_past_the_validators_threshold() {
        let rule = DecisionRule::default();
        let t = margin(&rule, 0.01, rule.confirmation_runs as usize);
        assert!(!worth_submitting(&rule, 2.0, &[2.0 - t, 2.0 - t], 0.01, 1.5));
        assert!(worth_submitting(&rule, 2.0, &[2.0 - 2.0 * t, 2.0 - 2.0 * t], 0.01, 1.5));
    }
}
