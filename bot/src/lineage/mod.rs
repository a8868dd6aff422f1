//! The recipe repository as the record: every crown leaves a note under
//! `refs/notes/karpa` (the verdict and the bundle's small proof files), and
//! `karpa lineage verify` re-checks the whole chain of releases offline from a
//! clone — no database, no GitHub, no trust in the bot that wrote it.

pub mod keys;
pub mod note;
pub mod signed_tag;
pub mod trust;
pub mod verify;
