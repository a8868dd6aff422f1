//! Keep or discard, honestly. The validator crowns a gain past
//! max(min_delta, t·σ·√(1/runs + 1/n)) with σ from its floor of n seeds and
//! seeds it picks itself; a miner that keeps what one lucky seed showed would
//! submit noise. So a change is kept only when its first run already beats the
//! best by the margin the validator's rule would need (σ measured here, on the
//! public split, n = the rule's floor seeds), and the mean of that run and a
//! second with another seed still does, with the second run better than the
//! best's mean on its own.

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
    if best - first >= margin(rule, sigma, 1) {
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
        let m1 = margin(&rule, sigma, 1);
        assert!(m1 > 0.02 && m1 < 0.04, "t(9)·σ·√1.1 ≈ 0.0296, got {m1}");
        assert_eq!(screen(&rule, 2.0, sigma, 2.0 - m1 * 0.9), Screen::Discard);
        assert_eq!(screen(&rule, 2.0, sigma, 2.0 - m1 * 1.1), Screen::Confirm);
        let lucky = 2.0 - m1 * 1.5;
        assert!(!confirmed(&rule, 2.0, sigma, &[lucky, 2.001]), "the second seed shows no gain");
        assert!(!confirmed(&rule, 2.0, sigma, &[lucky]), "one run is never believed");
        assert!(confirmed(&rule, 2.0, sigma, &[lucky, 2.0 - m1]));
        assert!(!confirmed(&rule, 2.0, f64::NAN, &[1.0, 1.0]), "no measured spread, no keep");
    }

    #[test]
    fn a_submission_needs_room_past_the_validators_threshold() {
        let rule = DecisionRule::default();
        let t = margin(&rule, 0.01, rule.confirmation_runs as usize);
        assert!(!worth_submitting(&rule, 2.0, &[2.0 - t, 2.0 - t], 0.01, 1.5));
        assert!(worth_submitting(&rule, 2.0, &[2.0 - 2.0 * t, 2.0 - 2.0 * t], 0.01, 1.5));
    }
}
