//! The chain's epochs, and when it reveals a timelocked commit.
//!
//! Two models, as the runtime has them:
//! - **stateless** (spec 365, the vendored metadata): the epoch of block b on
//!   subnet n is `(b + n + 1) / (tempo + 1)`, and a commit made in epoch e is
//!   revealed in epoch `e + RevealPeriodEpochs`, from its first block
//!   `(e + period)·(tempo + 1) − (n + 1)` (the SDK 1.x maths);
//! - **stateful** (subtensor from v3.4.8-423, where the metadata has
//!   `SubnetEpochIndex`): an epoch runs when `tempo` blocks have passed since
//!   `LastEpochBlock`, or at an owner's `PendingEpochAt`; the reveal runs
//!   before the epoch step within a block, so the first reveal block is found
//!   by stepping the state forward, as bittensor-drand 2.0 does.
//!
//! The drand round then follows from time: the reveal block's time (three
//! blocks later, so the pulse has reached the chain), as quicknet rounds.

use super::tlock::{QUICKNET_GENESIS, QUICKNET_PERIOD};
use anyhow::{bail, Result};

/// Blocks after the first reveal block whose time the round targets, so the
/// pulse is on chain by then (the SDK's `SECURITY_BLOCK_OFFSET`).
pub const PULSE_MARGIN_BLOCKS: u64 = 3;
/// The largest tempo the chain allows; epochs at least this often.
const MAX_TEMPO: u64 = 50_400;

/// The stateful model's storage, at the head block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochState {
    pub last_epoch_block: u64,
    /// An owner-triggered epoch at this block (0: none).
    pub pending_epoch_at: u64,
    pub subnet_epoch_index: u64,
    pub blocks_since_last_step: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochModel {
    Stateless,
    Stateful(EpochState),
}

/// A subnet's timing at the head block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub netuid: u16,
    pub tempo: u16,
    /// The head block; a commit sent now lands in the next one.
    pub block: u64,
    pub reveal_period: u64,
    pub model: EpochModel,
}

impl Schedule {
    /// The chain's epoch index at the head block.
    pub fn epoch(&self) -> u64 {
        match self.model {
            EpochModel::Stateless => stateless_epoch(self.block, self.netuid, self.tempo),
            EpochModel::Stateful(s) => s.subnet_epoch_index,
        }
    }

    /// The epoch a commit sent now is revealed in.
    pub fn reveal_epoch(&self) -> Result<u64> {
        Ok(self.commit_epoch()? + self.reveal_period)
    }

    /// The epoch the chain files a commit sent now under: that of the block it
    /// lands in. (The SDK 1.x used the head's, one epoch early on an epoch's
    /// last block: its ciphertext then opened an epoch before the chain revealed it.)
    fn commit_epoch(&self) -> Result<u64> {
        match self.model {
            EpochModel::Stateless => Ok(stateless_epoch(self.block + 1, self.netuid, self.tempo)),
            EpochModel::Stateful(s) => {
                let (state, landing) = self.at_landing(s)?;
                Ok(epoch_before_step(&state, landing, self.tempo))
            }
        }
    }

    /// The first block at which the chain reveals a commit sent now.
    pub fn first_reveal_block(&self) -> Result<u64> {
        if self.tempo == 0 {
            bail!("subnet {} has tempo 0: it runs no epochs, so nothing is revealed", self.netuid);
        }
        let tempo = u64::from(self.tempo) + 1;
        match self.model {
            EpochModel::Stateless => Ok(self.reveal_epoch()? * tempo - (u64::from(self.netuid) + 1)),
            EpochModel::Stateful(s) => {
                let (mut state, landing) = self.at_landing(s)?;
                let target = epoch_before_step(&state, landing, self.tempo) + self.reveal_period;
                let budget = (self.reveal_period + 1) * MAX_TEMPO;
                for block in landing..=landing + budget {
                    if epoch_before_step(&state, block, self.tempo) == target {
                        return Ok(block);
                    }
                    state = step(&state, block, self.tempo);
                }
                bail!("no reveal block within {budget} blocks of {landing}: the epoch schedule does not advance")
            }
        }
    }

    /// The state just before the block a commit sent now lands in (head + 1).
    fn at_landing(&self, s: EpochState) -> Result<(EpochState, u64)> {
        if self.tempo == 0 {
            bail!("subnet {} has tempo 0: it runs no epochs", self.netuid);
        }
        Ok((s, self.block + 1))
    }

    /// The drand round the chain will reveal a commit sent now with, at wall
    /// time `now` (seconds since the epoch) and `block_time` seconds a block.
    pub fn reveal_round(&self, now: f64, block_time: f64) -> Result<u64> {
        let target = self.first_reveal_block()? + PULSE_MARGIN_BLOCKS;
        let seconds = now + (target.saturating_sub(self.block)) as f64 * block_time;
        Ok((((seconds - QUICKNET_GENESIS as f64) / QUICKNET_PERIOD as f64).floor() as u64).max(1))
    }
}

/// Subtensor's epoch of `block` on `netuid` before stateful epochs.
pub fn stateless_epoch(block: u64, netuid: u16, tempo: u16) -> u64 {
    (block + u64::from(netuid) + 1) / (u64::from(tempo) + 1)
}

/// Whether the epoch step runs at `block` (the chain's `should_run_epoch`).
fn runs_epoch(s: &EpochState, block: u64, tempo: u16) -> bool {
    if tempo == 0 {
        return false;
    }
    (s.pending_epoch_at > 0 && block >= s.pending_epoch_at)
        || s.blocks_since_last_step > MAX_TEMPO
        || block.saturating_sub(s.last_epoch_block) >= u64::from(tempo)
}

/// The epoch index commits and reveals see at `block`: they run before that
/// block's epoch step, which has already counted the epoch starting there.
fn epoch_before_step(s: &EpochState, block: u64, tempo: u16) -> u64 {
    s.subnet_epoch_index + u64::from(runs_epoch(s, block, tempo))
}

/// The state after `block`'s epoch step.
fn step(s: &EpochState, block: u64, tempo: u16) -> EpochState {
    let mut next = EpochState { blocks_since_last_step: s.blocks_since_last_step + 1, ..*s };
    if runs_epoch(&next, block, tempo) {
        next = EpochState {
            last_epoch_block: block,
            pending_epoch_at: 0,
            subnet_epoch_index: next.subnet_epoch_index + 1,
            blocks_since_last_step: 0,
        };
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stateless(block: u64) -> Schedule {
        Schedule { netuid: 64, tempo: 360, block, reveal_period: 1, model: EpochModel::Stateless }
    }

    #[test]
    fn stateless_epochs_are_offset_by_the_netuid() {
        // Block 296 on subnet 64 is the first of epoch 1: (296 + 65) / 361.
        assert_eq!(stateless(295).epoch(), 0);
        assert_eq!(stateless(296).epoch(), 1);
        let s = stateless(1000);
        assert_eq!((s.epoch(), s.reveal_epoch().unwrap()), (2, 3));
        // Epoch 3 starts at 3·361 − 65 = 1018, which is indeed epoch 3's first block.
        assert_eq!(s.first_reveal_block().unwrap(), 1018);
        assert_eq!((stateless(1017).epoch(), stateless(1018).epoch()), (2, 3));
        // Sent from epoch 2's last block, a commit lands in epoch 3: revealed in 4, from block 1379.
        let last = stateless(1017);
        assert_eq!((last.reveal_epoch().unwrap(), last.first_reveal_block().unwrap()), (4, 1379));
        // 21 blocks of 12 s (to 1021) past a time at round r's start.
        let now = (QUICKNET_GENESIS + 3 * 1_000_000) as f64;
        assert_eq!(s.reveal_round(now, 12.0).unwrap(), 1_000_000 + 21 * 12 / 3);
    }

    #[test]
    fn stateful_reveals_wait_for_the_epoch_step_and_follow_an_owner_trigger() {
        let state = EpochState {
            last_epoch_block: 100,
            pending_epoch_at: 0,
            subnet_epoch_index: 5,
            blocks_since_last_step: 20,
        };
        let s = Schedule { netuid: 1, tempo: 50, block: 120, reveal_period: 1, model: EpochModel::Stateful(state) };
        // Epoch 6 begins at block 150; the commit lands at 121, in epoch 5; revealed in 6.
        assert_eq!((s.epoch(), s.reveal_epoch().unwrap(), s.first_reveal_block().unwrap()), (5, 6, 150));
        // Landing on the epoch's own block: the reveal pass there already sees the new epoch.
        let edge = Schedule { block: 149, ..s };
        assert_eq!((edge.reveal_epoch().unwrap(), edge.first_reveal_block().unwrap()), (7, 200));
        // An owner-triggered epoch at 130 moves everything earlier.
        let owner = EpochState { pending_epoch_at: 130, ..state };
        let s = Schedule { model: EpochModel::Stateful(owner), ..s };
        assert_eq!(s.first_reveal_block().unwrap(), 130);
        let two = Schedule { reveal_period: 2, ..s };
        assert_eq!(two.first_reveal_block().unwrap(), 180);
        assert!(Schedule { tempo: 0, ..s }.first_reveal_block().is_err());
    }
}
