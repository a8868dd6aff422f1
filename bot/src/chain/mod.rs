//! The chain: Karpa's scores mirrored to a Bittensor subnet.
//!
//! - [`weights`]: an epoch's scores and the u16 vectors the chain takes.
//! - [`commit`]: the commit-reveal hash, as subtensor computes it.
//! - [`extrinsic`]: set_weights / commit_weights / reveal_weights built and
//!   signed from runtime metadata (subxt, dynamic API).
//! - [`epoch`]: an epoch's plan from the corpus and the subnet's rules.
//! - [`node`]: a subtensor node over RPC (subxt): metagraph, rules, submission.
//! - [`outbox`]: one row per epoch in PostgreSQL, a state machine that is
//!   idempotent across restarts.

pub mod commit;
pub mod epoch;
pub mod extrinsic;
pub mod node;
pub mod outbox;
pub mod weights;
