//! Data: reading corpora, splitting, the tokenizer, token shards and manifests.

pub mod corpus;
pub mod dataset;
pub mod manifest;
pub mod prepare;
pub mod shards;
pub mod split;
pub mod tokenizer;
