//! Pre-flight: the checks subtensor's `internal_set_weights` makes (at a set,
//! or at a timelocked commit's reveal, where a failure is only a trace log), made
//! before any call, so that an epoch the chain would refuse is blocked with its
//! reason in `karpa chain status` instead of lost.

use std::collections::BTreeSet;

/// What the chain knows about the subnet and this validator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Subnet {
    pub netuid: u16,
    /// Registered neurons (`SubnetworkN`): valid uids are below it.
    pub neurons: u16,
    pub min_allowed_weights: u16,
    /// u16-scaled (65535 = no limit).
    pub max_weight_limit: u16,
    /// The subnet's `WeightsVersionKey` (0 accepts any).
    pub weights_version_key: u64,
    /// This validator's uid, and whether it holds a validator permit.
    pub uid: Option<u16>,
    pub permit: bool,
    /// An upper bound of this validator's stake weight, against `StakeThreshold`.
    pub stake_upper_bound: u128,
    pub stake_threshold: u128,
}

/// Why the epoch is blocked, in words for `karpa chain status`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("pre-flight: {0}")]
pub struct Refused(pub String);

/// Checks `uids`/`weights` as the chain will, padding a short vector with the
/// burn uid (weight 1 of 65535) where the subnet asks for more weights than
/// Karpa has hotkeys to score. Returns the vectors to send.
pub fn check(
    s: &Subnet,
    version_key: u64,
    uids: &[u16],
    weights: &[u16],
    burn_uid: Option<u16>,
) -> Result<(Vec<u16>, Vec<u16>), Refused> {
    let refuse = |why: String| Err(Refused(why));
    let Some(me) = s.uid else {
        return refuse(format!("this validator's hotkey is not registered on subnet {}", s.netuid));
    };
    if !s.permit {
        return refuse(format!("uid {me} holds no validator permit on subnet {}", s.netuid));
    }
    if s.stake_upper_bound < s.stake_threshold {
        return refuse(format!(
            "uid {me}'s stake (at most {}) is below the subnet's StakeThreshold {}",
            s.stake_upper_bound, s.stake_threshold
        ));
    }
    if s.weights_version_key > version_key {
        return refuse(format!(
            "the subnet's WeightsVersionKey is {}, above ours ({version_key}): the chain refuses older versions",
            s.weights_version_key
        ));
    }
    if uids.len() != weights.len() {
        return refuse(format!("{} uids but {} weights", uids.len(), weights.len()));
    }
    if uids.iter().collect::<BTreeSet<_>>().len() != uids.len() {
        return refuse(format!("the uids {uids:?} repeat one"));
    }
    if let Some(bad) = uids.iter().find(|u| **u >= s.neurons) {
        return refuse(format!("uid {bad} is not on subnet {} ({} neurons)", s.netuid, s.neurons));
    }
    let (mut uids, mut weights) = (uids.to_vec(), weights.to_vec());
    // A weight on oneself alone is exempt from the minimum, as on the chain.
    let self_weight = uids == [me];
    let needed = usize::from(s.min_allowed_weights.min(s.neurons));
    if !self_weight && uids.len() < needed {
        if let Some(burn) = burn_uid.filter(|b| !uids.contains(b) && *b < s.neurons) {
            uids.push(burn);
            weights.push(1);
        }
        if uids.len() < needed {
            let pad = burn_uid.map_or(" (no --burn-uid to pad with)".to_string(), |_| String::new());
            return refuse(format!(
                "subnet {} needs at least {needed} weights (MinAllowedWeights); Karpa scores {}{pad}",
                s.netuid,
                uids.len()
            ));
        }
    }
    let (max, sum) = (weights.iter().copied().max().unwrap_or(0), weights.iter().map(|w| u64::from(*w)).sum::<u64>());
    if sum > 0 && uids.len() > 1 && u64::from(max) * 65535 > u64::from(s.max_weight_limit) * sum {
        return refuse(format!(
            "the largest weight is {:.4} of the total, above the subnet's max-weight limit {:.4}",
            f64::from(max) / sum as f64,
            f64::from(s.max_weight_limit) / 65535.0
        ));
    }
    Ok((uids, weights))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet() -> Subnet {
        Subnet {
            netuid: 64,
            neurons: 256,
            min_allowed_weights: 1,
            max_weight_limit: 65535,
            weights_version_key: 0,
            uid: Some(5),
            permit: true,
            stake_upper_bound: 5_000,
            stake_threshold: 1_000,
        }
    }

    #[test]
    fn what_the_chain_would_refuse_is_refused_first_with_its_reason() {
        let ok = |s: &Subnet, u: &[u16], w: &[u16]| check(s, 7, u, w, Some(0));
        assert_eq!(ok(&subnet(), &[3, 9], &[65535, 7281]).unwrap(), (vec![3, 9], vec![65535, 7281]));
        let why = |s: Subnet, u: &[u16], w: &[u16]| ok(&s, u, w).unwrap_err().0;
        assert!(why(Subnet { uid: None, ..subnet() }, &[3], &[1]).contains("not registered"));
        assert!(why(Subnet { permit: false, ..subnet() }, &[3], &[1]).contains("no validator permit"));
        assert!(why(Subnet { stake_upper_bound: 10, ..subnet() }, &[3], &[1]).contains("StakeThreshold"));
        assert!(why(Subnet { weights_version_key: 8, ..subnet() }, &[3], &[1]).contains("WeightsVersionKey is 8"));
        assert!(why(subnet(), &[3, 3], &[1, 1]).contains("repeat"));
        assert!(why(subnet(), &[300], &[1]).contains("uid 300 is not on subnet 64"));
        let capped = Subnet { max_weight_limit: 32768, ..subnet() };
        assert!(why(capped, &[3, 9], &[65535, 7281]).contains("max-weight limit"));
    }

    #[test]
    fn a_short_vector_is_padded_with_the_burn_uid_or_refused() {
        let s = Subnet { min_allowed_weights: 2, ..subnet() };
        assert_eq!(check(&s, 0, &[3], &[65535], Some(0)).unwrap(), (vec![3, 0], vec![65535, 1]));
        let err = check(&s, 0, &[3], &[65535], None).unwrap_err().0;
        assert!(err.contains("needs at least 2 weights") && err.contains("no --burn-uid"), "{err}");
        let three = Subnet { min_allowed_weights: 3, ..subnet() };
        assert!(check(&three, 0, &[3], &[65535], Some(0)).unwrap_err().0.contains("Karpa scores 2"));
        // The minimum is capped by the subnet's size, and a self-weight is exempt.
        let tiny = Subnet { neurons: 1, min_allowed_weights: 8, uid: Some(0), ..subnet() };
        assert_eq!(check(&tiny, 0, &[0], &[65535], None).unwrap(), (vec![0], vec![65535]));
    }
}
