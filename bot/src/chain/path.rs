//! Which way an epoch's weights go to the chain, decided by what the node's
//! metadata has and how the subnet is configured, never assumed:
//!
//! - commit-reveal off: `set_weights`;
//! - commit-reveal on, and the chain says `CommitRevealWeightsVersion` 4 and
//!   has a timelocked call: a timelocked commit (the mechanism variant for
//!   mechanism 0 where the runtime has it, as the SDK sends), revealed by the
//!   chain;
//! - commit-reveal on without a version in storage (runtimes before timelocked
//!   commits): the legacy `commit_weights` / `reveal_weights`;
//! - anything else is refused with the reason (a version Karpa does not speak).

use super::extrinsic::{Calls, SET, TIMELOCKED, TIMELOCKED_MECHANISM};

/// The commit-reveal version whose payload and encryption `tlock` makes.
pub const TIMELOCK_VERSION: u16 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Set,
    /// Commit a hash now, reveal the weights `reveal_after` epochs later.
    Legacy {
        reveal_after: u64,
    },
    /// Commit the encrypted weights now; the chain reveals them `reveal_after`
    /// epochs later. `mechanism`: send the mechanism variant (mechanism 0).
    Timelocked {
        reveal_after: u64,
        mechanism: bool,
        version: u16,
    },
}

/// The path and why, for `karpa chain dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub path: Path,
    pub why: String,
}

/// What the subnet's storage says about commit-reveal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitReveal {
    pub enabled: bool,
    /// `CommitRevealWeightsVersion`, where the runtime has it.
    pub version: Option<u16>,
    /// `RevealPeriodEpochs`.
    pub reveal_period: u64,
}

pub fn choose(calls: &Calls, netuid: u16, cr: CommitReveal) -> Result<Choice, String> {
    let reveal_after = cr.reveal_period;
    if !cr.enabled {
        if !calls.set {
            return Err(format!("commit-reveal is off on subnet {netuid} but the runtime has no {SET}"));
        }
        return Ok(Choice { path: Path::Set, why: format!("commit-reveal is off on subnet {netuid}: {SET}") });
    }
    match cr.version {
        Some(TIMELOCK_VERSION) if calls.timelocked_mechanism || calls.timelocked => {
            let mechanism = calls.timelocked_mechanism;
            let call = if mechanism { format!("{TIMELOCKED_MECHANISM} (mechanism 0)") } else { TIMELOCKED.into() };
            Ok(Choice {
                path: Path::Timelocked { reveal_after, mechanism, version: TIMELOCK_VERSION },
                why: format!(
                    "commit-reveal is on on subnet {netuid} (CommitRevealWeightsVersion {TIMELOCK_VERSION}): {call}, \
                     encrypted to drand quicknet and revealed by the chain {reveal_after} epoch(s) later"
                ),
            })
        }
        Some(TIMELOCK_VERSION) => Err(format!(
            "subnet {netuid} takes timelocked commits (version {TIMELOCK_VERSION}) but the runtime has neither \
             {TIMELOCKED} nor {TIMELOCKED_MECHANISM}"
        )),
        Some(v) => Err(format!(
            "subnet {netuid} wants commit-reveal version {v}; Karpa makes version {TIMELOCK_VERSION} commits only"
        )),
        None if calls.legacy => Ok(Choice {
            path: Path::Legacy { reveal_after },
            why: format!(
                "commit-reveal is on on subnet {netuid} and the runtime has no CommitRevealWeightsVersion: \
                 commit_weights now, reveal_weights {reveal_after} epoch(s) later"
            ),
        }),
        None => Err(format!("commit-reveal is on on subnet {netuid} but the runtime has no commit call Karpa knows")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Calls = Calls { set: true, legacy: true, timelocked: true, timelocked_mechanism: true };

    fn cr(enabled: bool, version: Option<u16>) -> CommitReveal {
        CommitReveal { enabled, version, reveal_period: 1 }
    }

    #[test]
    fn the_path_follows_the_metadata_and_the_subnet() {
        assert_eq!(choose(&ALL, 64, cr(false, Some(4))).unwrap().path, Path::Set);
        let tl = choose(&ALL, 64, cr(true, Some(4))).unwrap();
        assert_eq!(tl.path, Path::Timelocked { reveal_after: 1, mechanism: true, version: 4 });
        assert!(tl.why.contains("commit_timelocked_mechanism_weights (mechanism 0)"), "{}", tl.why);
        let no_mech = Calls { timelocked_mechanism: false, ..ALL };
        assert_eq!(
            choose(&no_mech, 64, cr(true, Some(4))).unwrap().path,
            Path::Timelocked { reveal_after: 1, mechanism: false, version: 4 }
        );
        assert_eq!(choose(&ALL, 64, cr(true, None)).unwrap().path, Path::Legacy { reveal_after: 1 });
        // Refusals name what is missing.
        assert!(choose(&ALL, 64, cr(true, Some(3))).unwrap_err().contains("version 3"));
        let old = Calls { timelocked: false, timelocked_mechanism: false, ..ALL };
        assert!(choose(&old, 64, cr(true, Some(4))).unwrap_err().contains("neither"));
        let none = Calls { legacy: false, ..old };
        assert!(choose(&none, 64, cr(true, None)).unwrap_err().contains("no commit call"));
        assert!(choose(&Calls { set: false, ..ALL }, 64, cr(false, None)).unwrap_err().contains("no set_weights"));
    }
}
