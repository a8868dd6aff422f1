//! The data manifest: every file of a prepared dataset with its sha256, size and
//! token count. The public manifest (train, val, tokenizer) is what miners get and
//! what protocol configs pin; the hidden manifest stays with the validator.

use proof::Sha256Hex;
use serde::{Deserialize, Serialize};

pub const DATA_FORMAT: &str = "karpa-data/v1";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const HIDDEN_MANIFEST_FILE: &str = "hidden-manifest.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    U16,
    U32,
}

impl TokenDtype {
    pub fn for_vocab(vocab_size: u32) -> Self {
        if vocab_size <= 1 << 16 {
            TokenDtype::U16
        } else {
            TokenDtype::U32
        }
    }

    pub fn width(self) -> usize {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::U32 => 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub sha256: Sha256Hex,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub path: String,
    pub sha256: Sha256Hex,
    pub bytes: u64,
    pub tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub documents: u64,
    pub tokens: u64,
    /// UTF-8 bytes of the documents' text.
    pub text_bytes: u64,
    pub shards: Vec<Shard>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataManifest {
    pub format: String,
    /// The protocol config it was prepared for.
    pub config: String,
    pub vocab_size: u32,
    pub dtype: TokenDtype,
    pub bos_id: u32,
    pub tokenizer: FileEntry,
    pub train: Split,
    pub val: Split,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HiddenManifest {
    pub format: String,
    pub config: String,
    /// sha256 of the public manifest this hidden split belongs to.
    pub public_manifest: Sha256Hex,
    pub dtype: TokenDtype,
    pub hidden: Split,
}
