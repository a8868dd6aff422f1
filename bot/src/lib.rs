//! The Karpa validator and miner tooling behind the `karpa` CLI. It never links
//! libtorch: anything that runs a model is a `karpa-train` subprocess built from
//! the recipe under test.

pub mod allowlist;
pub mod archive;
pub mod bench_corpus;
pub mod bench_webhooks;
pub mod bundle_cmd;
pub mod chain;
pub mod chain_cmd;
pub mod corpus;
pub mod corpus_cmd;
pub mod db;
pub mod forge;
pub mod jobs;
pub mod judge;
pub mod judge_cmd;
pub mod lineage;
pub mod lineage_cmd;
pub mod miner;
pub mod recipe_build;
pub mod release;
pub mod repo;
pub mod run_check;
pub mod sandbox;
pub mod serve_cmd;
pub mod server;
