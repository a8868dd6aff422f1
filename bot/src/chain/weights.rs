//! An epoch's weights: who earned what, then the u16 vectors the chain takes.
//!
//! Scores: the king's miner 0.9 and the epoch's meaningful failures share 0.1,
//! one share per miner (the king's miner takes all when there are none). With no
//! crowned miner (a genesis king), the king's share goes to the burn uid.
//! Conversion follows the Bittensor SDK exactly, checked against its own output
//! (tests/fixtures/chain/vectors.json): clip to the subnet's max_weight_limit
//! (max/sum ≤ limit), max-upscale to 65535, round half to even (Python's
//! `round`), drop zeros.

use std::collections::BTreeMap;

pub const KING_SHARE: f64 = 0.9;
pub const U16_MAX: f64 = 65535.0;

/// Who a weight is for, before the metagraph maps hotkeys to uids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Hotkey(String),
    /// The subnet's burn uid (no crowned miner to pay).
    Burn,
}

/// The epoch's scores, summing to 1. `king` is the hotkey of the miner whose
/// submission made the current king (None for a genesis king); `meaningful` the
/// hotkeys of the epoch's meaningful failures (repeats count once).
pub fn scores(king: Option<&str>, meaningful: &[String]) -> BTreeMap<Target, f64> {
    let mut out = BTreeMap::new();
    let miners: std::collections::BTreeSet<&str> = meaningful.iter().map(String::as_str).collect();
    let king_share = if miners.is_empty() { 1.0 } else { KING_SHARE };
    let king = king.map(|h| Target::Hotkey(h.to_string())).unwrap_or(Target::Burn);
    *out.entry(king).or_insert(0.0) += king_share;
    for m in &miners {
        *out.entry(Target::Hotkey(m.to_string())).or_insert(0.0) += (1.0 - KING_SHARE) / miners.len() as f64;
    }
    out
}

/// Sum-normalised weights with none above `limit` of the total, mass moved
/// from the clipped to the rest (the SDK's `clip_to_max_weight`, same epsilon).
/// When no distribution can meet the limit (n·limit ≤ 1), the uniform one.
pub fn clip_to_max_weight(weights: &[f64], limit: f64) -> Result<Vec<f64>, String> {
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    if n == 0 || total <= 0.0 {
        return Err("all weights are zero; nothing to set".into());
    }
    if n as f64 * limit <= 1.0 {
        return Ok(vec![1.0 / n as f64; n]);
    }
    let mut estimation: Vec<f64> = weights.iter().map(|w| w / total).collect();
    estimation.sort_by(f64::total_cmp);
    if estimation[n - 1] <= limit {
        return Ok(weights.iter().map(|w| w / total).collect());
    }
    const EPSILON: f64 = 1e-7;
    let cumsum: Vec<f64> = estimation
        .iter()
        .scan(0.0, |acc, e| {
            *acc += e;
            Some(*acc)
        })
        .collect();
    let n_values = estimation
        .iter()
        .enumerate()
        .filter(|(i, e)| *e / ((n - i - 1) as f64 * *e + cumsum[*i] + EPSILON) < limit)
        .count();
    let cutoff_scale = (limit * cumsum[n_values - 1] - EPSILON) / (1.0 - limit * (n - n_values) as f64);
    let cutoff = cutoff_scale * total;
    let clipped: Vec<f64> = weights.iter().map(|w| w.min(cutoff)).collect();
    let clipped_total: f64 = clipped.iter().sum();
    Ok(clipped.iter().map(|w| w / clipped_total).collect())
}

/// Max-upscaled to 65535 and rounded half to even; zeros dropped (the SDK's
/// `normalize`, formerly `convert_weights_and_uids_for_emit`).
pub fn to_u16(uids: &[u16], weights: &[f64]) -> Result<(Vec<u16>, Vec<u16>), String> {
    if uids.len() != weights.len() {
        return Err(format!("{} uids for {} weights", uids.len(), weights.len()));
    }
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err("weights must be finite and non-negative".into());
    }
    let top = weights.iter().copied().fold(0.0, f64::max);
    if top == 0.0 {
        return Ok((vec![], vec![]));
    }
    let mut out = (Vec::new(), Vec::new());
    for (uid, w) in uids.iter().zip(weights) {
        let v = ((w / top) * U16_MAX).round_ties_even();
        if v != 0.0 {
            out.0.push(*uid);
            out.1.push(v as u16);
        }
    }
    Ok(out)
}

/// Weights for the chain: targets mapped to uids (duplicates summed), clipped
/// to `max_weight_limit` (a u16 fraction; 65535 means none), then u16.
pub fn for_chain(
    scores: &BTreeMap<Target, f64>,
    uid_of: impl Fn(&Target) -> Option<u16>,
    max_weight_limit: u16,
) -> Result<(Vec<u16>, Vec<u16>), String> {
    let mut by_uid: BTreeMap<u16, f64> = BTreeMap::new();
    for (target, w) in scores {
        let uid = uid_of(target).ok_or_else(|| match target {
            Target::Hotkey(h) => format!("hotkey {h} is not in the subnet's metagraph"),
            Target::Burn => "no burn uid is configured".to_string(),
        })?;
        *by_uid.entry(uid).or_insert(0.0) += w;
    }
    let uids: Vec<u16> = by_uid.keys().copied().collect();
    let mut weights: Vec<f64> = by_uid.values().copied().collect();
    if max_weight_limit < u16::MAX && uids.len() > 1 {
        weights = clip_to_max_weight(&weights, f64::from(max_weight_limit) / U16_MAX)?;
    }
    to_u16(&uids, &weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_king_takes_nine_tenths_and_near_misses_share_the_rest() {
        let s = scores(Some("K"), &["A".into(), "B".into(), "A".into()]);
        let h = |x: &str| Target::Hotkey(x.into());
        assert_eq!(s[&h("K")], 0.9);
        assert!((s[&h("A")] - 0.05).abs() < 1e-12 && (s[&h("B")] - 0.05).abs() < 1e-12, "one share per miner");
        assert_eq!(scores(Some("K"), &[]), BTreeMap::from([(h("K"), 1.0)]));
        let genesis = scores(None, &["A".into()]);
        assert_eq!(genesis[&Target::Burn], 0.9);
        // The king's miner with a near miss too gets both.
        let both = scores(Some("K"), &["K".into()]);
        assert!((both[&h("K")] - 1.0).abs() < 1e-12);
        assert_eq!(to_u16(&[1, 2], &[0.5, 0.25]).unwrap(), (vec![1, 2], vec![65535, 32768]), "half to even");
        let missing = for_chain(&s, |t| (t == &h("K")).then_some(0), u16::MAX).unwrap_err();
        assert!(missing.contains("is not in the subnet's metagraph"), "{missing}");
    }
}
