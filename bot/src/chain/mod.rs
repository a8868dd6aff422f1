//! The chain: Karpa's scores mirrored to a Bittensor subnet.
//!
//! - [`weights`]: an epoch's scores and the u16 vectors the chain takes.
//! - [`commit`]: the commit-reveal hash, as subtensor computes it.
//! - [`extrinsic`]: set_weights / commit_weights / reveal_weights / timelocked
//!   commits built and signed from runtime metadata (subxt, dynamic API).
//! - [`tlock`]: timelocked commits (v4), encrypted to a drand quicknet round.
//! - [`schedule`]: the chain's epochs and the round a commit is revealed at.
//! - [`path`]: set, legacy commit-reveal or timelocked, from the metadata.
//! - [`preflight`]: the chain's checks on weights, made before any call.
//! - [`epoch`]: an epoch's plan from the corpus and the subnet's rules.
//! - [`node`]: a subtensor node over RPC (subxt): metagraph, rules, submission.
//! - [`outbox`]: one row per epoch in PostgreSQL, a state machine that is
//!   idempotent across restarts.

pub mod commit;
pub mod epoch;
pub mod extrinsic;
pub mod node;
pub mod outbox;
pub mod path;
pub mod preflight;
pub mod schedule;
pub mod tlock;
pub mod weights;
