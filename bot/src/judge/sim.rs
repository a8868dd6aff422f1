//! How good is the decision rule? From real sandboxed runs — the king's noise
//! floor, more king runs that differ only in their seed ("null patches") and runs
//! of a real improvement — count how often the rule crowns each, and, because a
//! few dozen runs cannot resolve a 1 % rate, also simulate the rule under a
//! normal model with the measured σ. Both go through [`decide`] and [`confirm`].

use super::decision::{confirm, decide, DecisionRule, NoiseFloor, Outcome};
use serde::Serialize;

/// The measured runs: hidden bpb of each.
#[derive(Debug, Clone, Serialize)]
pub struct SimRuns {
    pub floor: NoiseFloor,
    pub nulls: Vec<f64>,
    pub improved: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub what: String,
    /// "crowned/trials" from real runs, when there are enough of them.
    pub empirical: Option<String>,
    /// The rate under the normal model.
    pub model: f64,
}

const NO_RATIONALE: &str = "";

/// One submission under `rule`: the bundle's run `first`, and (if the guard
/// asks) confirmation runs drawn from `fresh`.
fn crowned(rule: &DecisionRule, floor: &NoiseFloor, first: f64, fresh: &mut impl FnMut() -> f64) -> bool {
    if rule.confirmation_runs == 0 {
        return decide(rule, floor, first, NO_RATIONALE).outcome == Outcome::Crowned;
    }
    if !rule.gate(floor, first) && decide(rule, floor, first, NO_RATIONALE).outcome != Outcome::Crowned {
        return false;
    }
    let runs: Vec<f64> = (0..rule.confirmation_runs).map(|_| fresh()).collect();
    confirm(rule, floor, &runs, NO_RATIONALE) == Outcome::Crowned
}

/// The table: rates with and without the guard, for a null patch, for a miner
/// who searches `tries` seeds and submits the best, and for a gain of 3σ.
pub fn report(rule: &DecisionRule, runs: &SimRuns, tries: usize, trials: usize) -> Vec<Row> {
    let off = DecisionRule { confirmation_runs: 0, ..rule.clone() };
    let on = DecisionRule { confirmation_runs: rule.confirmation_runs.max(1), ..rule.clone() };
    let floor = &runs.floor;
    let sigma = floor.sigma();

    // Empirical: each run used once, in order.
    let count = |rule: &DecisionRule, values: &[f64]| -> Option<String> {
        let per = 1 + rule.confirmation_runs as usize;
        let chunks: Vec<&[f64]> = values.chunks_exact(per).collect();
        if chunks.is_empty() {
            return None;
        }
        let hits = chunks
            .iter()
            .filter(|c| {
                let mut rest = c[1..].iter().copied();
                crowned(rule, floor, c[0], &mut || rest.next().unwrap_or(f64::NAN))
            })
            .count();
        Some(format!("{hits}/{}", chunks.len()))
    };

    // Model: a fresh floor of n runs per trial, challenger runs around mean + shift.
    let mut rng = Normal::new(0x4b61_7270_61);
    let n = floor.n();
    let mut rate = |rule: &DecisionRule, shift: f64, tries: usize| -> f64 {
        let mut hits = 0;
        for _ in 0..trials {
            let values = (0..n).map(|_| rng.sample() * sigma).collect();
            let f = NoiseFloor { values, ..floor.clone() };
            let best = (0..tries).map(|_| rng.sample() * sigma - shift).fold(f64::INFINITY, f64::min);
            if crowned(rule, &f, best, &mut || rng.sample() * sigma - shift) {
                hits += 1;
            }
        }
        hits as f64 / trials as f64
    };
    let three_sigma = 3.0 * sigma;
    let gain_sigmas = (floor.mean() - mean(&runs.improved)) / sigma;
    vec![
        Row {
            what: "false crown, one null patch, no guard".into(),
            empirical: count(&off, &runs.nulls),
            model: rate(&off, 0.0, 1),
        },
        Row {
            what: format!("false crown, best of {tries} seeds, no guard"),
            empirical: None,
            model: rate(&off, 0.0, tries),
        },
        Row { what: "power at a 3σ gain, no guard".into(), empirical: None, model: rate(&off, three_sigma, 1) },
        Row {
            what: format!("crowned, the real improvement ({gain_sigmas:.1}σ), no guard"),
            empirical: count(&off, &runs.improved),
            model: rate(&off, gain_sigmas * sigma, 1),
        },
        Row {
            what: "false crown, one null patch, guard".into(),
            empirical: count(&on, &runs.nulls),
            model: rate(&on, 0.0, 1),
        },
        Row {
            what: format!("false crown, best of {tries} seeds, guard"),
            empirical: None,
            model: rate(&on, 0.0, tries),
        },
        Row { what: "power at a 3σ gain, guard".into(), empirical: None, model: rate(&on, three_sigma, 1) },
        Row {
            what: format!("crowned, the real improvement ({gain_sigmas:.1}σ), guard"),
            empirical: count(&on, &runs.improved),
            model: rate(&on, gain_sigmas * sigma, 1),
        },
    ]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Standard normal draws: SplitMix64 and Box–Muller, seeded, so a report repeats.
struct Normal(u64);

impl Normal {
    fn new(seed: u64) -> Self {
        Normal(seed)
    }
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn sample(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_matches_the_rules_arithmetic() {
        // σ = 0.01, n = 10, α = 1 %: a null crowns 1 % of the time with or without
        // the guard, but 20 seeds buy a crown only without it; at a 3σ gain one
        // run has ~50 % power, the guard's three-run mean (t·√(1/3 + 1/10)) ~90 %.
        let values: Vec<f64> = (0..10).map(|i| 2.0 + 0.01 * (i as f64 - 4.5) / 3.0277).collect();
        let floor = NoiseFloor { king: "k".into(), config: "c".into(), values, reference: None };
        assert!((floor.sigma() - 0.01).abs() < 1e-4, "{}", floor.sigma());
        let runs = SimRuns { floor, nulls: vec![2.0; 6], improved: vec![1.97; 6] };
        let rows = report(&DecisionRule::default(), &runs, 20, 40_000);
        let model = |i: usize| rows[i].model;
        assert!((0.007..0.013).contains(&model(0)), "{rows:#?}");
        assert!(model(1) > 0.1, "seed search beats the bare rule: {rows:#?}");
        assert!((0.4..0.6).contains(&model(2)), "{rows:#?}");
        assert!(model(4) < 0.01 && model(5) < 0.013, "{rows:#?}");
        assert!(model(6) > 0.85, "{rows:#?}");
        assert_eq!(rows[0].empirical.as_deref(), Some("0/6"));
        assert_eq!(rows[4].empirical.as_deref(), Some("0/1"));
    }
}
