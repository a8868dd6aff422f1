//! The end-to-end tests, one binary: each file below is one concern, through
//! the real `karpa` and `karpa-train` binaries, a real PostgreSQL, real git
//! repositories and real training on CPU. One binary: it links once, where 22
//! binaries linked 22 copies of the bot.

mod bot_judge;
mod bot_process;
mod browser;
mod bundle_verify;
mod chain;
mod checks;
mod commands;
mod corpus;
mod crown;
mod deploy;
mod floors;
mod gpu_check;
mod jobs;
mod judge_log;
mod lineage;
mod lookahead;
mod mine;
mod prove;
mod reconcile;
mod runners;
mod submit;
mod timelock;
mod trainer_confined;
mod trainer_micro;
mod two_crowns;
mod webhook;
