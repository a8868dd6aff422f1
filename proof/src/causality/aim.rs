//! Pairs aimed where a cheat pays. A uniform cut sees a cheat with probability
//! equal to the fraction of positions it touches, so a cheat that buys its gain
//! at a few dear positions slips past most judgments' uniform pairs. But what it
//! buys shows: at those positions the recipe scores far better than the king.
//! An aimed pair draws its position with probability proportional to the gain
//! over a reference (the king's per-token nats, the mean over its floor runs),
//! max(0, reference − scored). A cheat that saved G nats in all adds at least G
//! to that mass in expectation (E[max(0, X + g)] ≥ g for any zero-mean X), so each
//! aimed draw lands on a cheated position with probability at least
//! G / (G + the honest mass), however the cheat is spread. Aimed draws are keyed
//! like the uniform ones; a recipe cannot steer them to a position it did not
//! cheat at without scoring better there than the king, which it can do honestly
//! (and pass) or by looking ahead (and be seen).

/// Cumulative gains over the scored positions, ready to draw from.
#[derive(Debug, Clone)]
pub struct Aim {
    cumulative: Vec<f64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AimError {
    #[error("the reference holds {reference} nats, the scoring pass {scored}: not the same evaluation")]
    Length { reference: usize, scored: usize },
    #[error("the reference's nats are not finite at position {0}")]
    NotFinite(usize),
    #[error("the recipe beats the reference nowhere: nothing to aim at")]
    NoGain,
}

impl Aim {
    /// `reference` and `scored` are per-token nats of the same evaluation, in the
    /// scoring pass's order. A scored value that is not finite gains nothing here
    /// (the comparison refuses it wherever it is checked).
    pub fn new(reference: &[f32], scored: &[f32]) -> Result<Aim, AimError> {
        if reference.len() != scored.len() {
            return Err(AimError::Length { reference: reference.len(), scored: scored.len() });
        }
        let mut total = 0.0;
        let mut cumulative = Vec::with_capacity(scored.len());
        for (i, (&r, &s)) in reference.iter().zip(scored).enumerate() {
            if !r.is_finite() {
                return Err(AimError::NotFinite(i));
            }
            let gain = if s.is_finite() { (r as f64 - s as f64).max(0.0) } else { 0.0 };
            total += gain;
            cumulative.push(total);
        }
        if total <= 0.0 {
            return Err(AimError::NoGain);
        }
        Ok(Aim { cumulative })
    }

    /// The whole gain over the reference, in nats.
    pub fn total(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }

    /// The gain at position `i`.
    pub fn gain(&self, i: usize) -> f64 {
        self.cumulative[i] - if i == 0 { 0.0 } else { self.cumulative[i - 1] }
    }

    /// The position a uniform 64-bit draw `u` lands on: position i with
    /// probability gain(i) / total (never one that gains nothing).
    pub fn draw(&self, u: u64) -> usize {
        let x = (u >> 11) as f64 / (1u64 << 53) as f64 * self.total();
        self.cumulative.partition_point(|&c| c <= x).min(self.cumulative.len() - 1)
    }

    /// The share of the whole gain at `positions`: what one aimed draw sees.
    pub fn share(&self, positions: impl IntoIterator<Item = usize>) -> f64 {
        positions.into_iter().map(|i| self.gain(i)).sum::<f64>() / self.total()
    }
}

/// Probability that `uniform` uniform cuts and `aimed` aimed ones see a cheat
/// touching a fraction `touched` of the positions and holding `share` of the gain.
pub fn combined_power(touched: f64, uniform: u64, share: f64, aimed: u64) -> f64 {
    let miss = |p: f64, n: u64| (1.0 - p.clamp(0.0, 1.0)).powf(n as f64);
    1.0 - miss(touched, uniform) * miss(share, aimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_gain_and_never_land_where_nothing_was_gained() {
        // Gains 0, 3, 0, 1 (position 2 scored worse than the reference).
        let aim = Aim::new(&[2.0, 5.0, 1.0, 4.0], &[2.0, 2.0, 1.5, 3.0]).unwrap();
        assert_eq!(aim.total(), 4.0);
        let mut hits = [0usize; 4];
        for i in 0..40_000u64 {
            hits[aim.draw(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))] += 1;
        }
        assert_eq!((hits[0], hits[2]), (0, 0), "{hits:?}");
        let at_1 = hits[1] as f64 / 40_000.0;
        assert!((at_1 - 0.75).abs() < 0.01, "{hits:?}");
        assert_eq!(aim.draw(0), 1);
        assert_eq!(aim.draw(u64::MAX), 3);
        assert_eq!(aim.share([1]), 0.75);
    }

    #[test]
    fn a_reference_of_another_evaluation_or_no_gain_is_refused() {
        assert_eq!(Aim::new(&[1.0; 3], &[1.0; 4]).unwrap_err(), AimError::Length { reference: 3, scored: 4 });
        assert_eq!(Aim::new(&[1.0, f32::NAN], &[1.0, 1.0]).unwrap_err(), AimError::NotFinite(1));
        assert_eq!(Aim::new(&[1.0, 1.0], &[1.0, 2.0]).unwrap_err(), AimError::NoGain);
        // A non-finite scored value gains nothing here; compare refuses it where checked.
        assert_eq!(Aim::new(&[1.0, 3.0], &[f32::NAN, 2.0]).unwrap().total(), 1.0);
    }

    #[test]
    fn aimed_draws_see_a_concentrated_cheat_that_uniform_cuts_miss() {
        // tiny's 1 σ cheat on its 26 dearest positions (bench/causality_power.py):
        // 0.32 % of positions, 15 % of the gain over the king.
        assert!(combined_power(0.0032, 192, 0.0, 0) < 0.46);
        assert!(combined_power(0.0032, 144, 0.15, 48) > 0.999);
        // Holding only a twentieth of the gain, 48 aimed draws still see it in 9 of 10.
        assert!(combined_power(0.0, 0, 0.05, 48) > 0.9);
        assert_eq!(combined_power(0.0, 144, 0.0, 48), 0.0);
    }
}
