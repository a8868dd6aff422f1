//! Token shards: flat little-endian u16/u32 files of BOS-prefixed documents.
//! Writers hash as they write; readers check the manifest's sizes and digests
//! before a single token is used.

use super::manifest::{Shard, Split, TokenDtype};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends documents to `{name}-00000.bin`, `{name}-00001.bin`, … in `dir`,
/// starting a new shard at a document boundary once `shard_tokens` would be passed.
pub struct SplitWriter {
    dir: PathBuf,
    name: &'static str,
    dtype: TokenDtype,
    shard_tokens: u64,
    current: Option<OpenShard>,
    split: Split,
}

struct OpenShard {
    path: String,
    file: std::io::BufWriter<std::fs::File>,
    hasher: Sha256,
    tokens: u64,
}

impl SplitWriter {
    pub fn new(dir: &Path, name: &'static str, dtype: TokenDtype, shard_tokens: u64) -> Self {
        let split = Split { documents: 0, tokens: 0, text_bytes: 0, shards: Vec::new() };
        SplitWriter { dir: dir.to_path_buf(), name, dtype, shard_tokens, current: None, split }
    }

    pub fn push(&mut self, ids: &[u32], text_bytes: u64) -> Result<()> {
        let full =
            self.current.as_ref().is_some_and(|s| s.tokens > 0 && s.tokens + ids.len() as u64 > self.shard_tokens);
        if full {
            self.close_shard()?;
        }
        if self.current.is_none() {
            let path = format!("{}-{:05}.bin", self.name, self.split.shards.len());
            let file = std::fs::File::create(self.dir.join(&path)).with_context(|| format!("cannot create {path}"))?;
            self.current =
                Some(OpenShard { path, file: std::io::BufWriter::new(file), hasher: Sha256::new(), tokens: 0 });
        }
        let shard = self.current.as_mut().expect("opened above");
        let mut buf = Vec::with_capacity(ids.len() * self.dtype.width());
        for &id in ids {
            match self.dtype {
                TokenDtype::U16 => {
                    buf.extend_from_slice(&u16::try_from(id).context("token id beyond u16")?.to_le_bytes())
                }
                TokenDtype::U32 => buf.extend_from_slice(&id.to_le_bytes()),
            }
        }
        shard.hasher.update(&buf);
        shard.file.write_all(&buf)?;
        shard.tokens += ids.len() as u64;
        self.split.documents += 1;
        self.split.tokens += ids.len() as u64;
        self.split.text_bytes += text_bytes;
        Ok(())
    }

    fn close_shard(&mut self) -> Result<()> {
        if let Some(mut s) = self.current.take() {
            s.file.flush()?;
            s.file.get_ref().sync_all()?;
            let sha256 = hex::encode(s.hasher.finalize()).try_into().expect("sha256 hex");
            let bytes = s.tokens * self.dtype.width() as u64;
            self.split.shards.push(Shard { path: s.path, sha256, bytes, tokens: s.tokens });
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<Split> {
        self.close_shard()?;
        if self.split.documents == 0 {
            bail!("the {} split is empty: give more documents or larger split fractions", self.name);
        }
        Ok(self.split)
    }
}

/// The tokens of one split, memory-mapped, checked against its manifest entry.
pub struct SplitTokens {
    shards: Vec<(memmap2::Mmap, u64)>,
    dtype: TokenDtype,
}

impl SplitTokens {
    pub fn open(dir: &Path, split: &Split, dtype: TokenDtype, vocab_size: u32) -> Result<Self> {
        let mut shards = Vec::new();
        for s in &split.shards {
            let path = dir.join(&s.path);
            if s.path.contains('/') || s.path.contains("..") {
                bail!("shard path {:?} in the manifest leaves the data folder", s.path);
            }
            let file = std::fs::File::open(&path).with_context(|| format!("cannot open shard {}", path.display()))?;
            let len = file.metadata()?.len();
            if len != s.bytes || len != s.tokens * dtype.width() as u64 {
                bail!("shard {} has {len} bytes, the manifest says {} ({} tokens)", path.display(), s.bytes, s.tokens);
            }
            let digest = proof::sha256_file(&path)?;
            if digest != s.sha256 {
                bail!("shard {} is corrupt: sha256 {digest} differs from the manifest's {}", path.display(), s.sha256);
            }
            // SAFETY: a map is undefined behaviour only if the file changes while mapped;
            // shards are read-only inputs whose digest was just verified.
            let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
            let max = SplitTokens::max_token(&map, dtype);
            if let Some(bad) = max.filter(|&t| t >= vocab_size) {
                bail!("shard {} holds token id {bad}, beyond the vocabulary of {vocab_size}", path.display());
            }
            shards.push((map, s.tokens));
        }
        Ok(SplitTokens { shards, dtype })
    }

    /// The largest token id in a shard, without decoding it into memory.
    fn max_token(bytes: &[u8], dtype: TokenDtype) -> Option<u32> {
        match dtype {
            TokenDtype::U16 => bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).max(),
            TokenDtype::U32 => bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).max(),
        }
    }

    fn decode(bytes: &[u8], dtype: TokenDtype) -> Vec<u32> {
        match dtype {
            TokenDtype::U16 => bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect(),
            TokenDtype::U32 => bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        }
    }

    pub fn shard_lens(&self) -> Vec<u64> {
        self.shards.iter().map(|(_, n)| *n).collect()
    }

    /// `len` tokens of shard `shard` starting at `offset`, as i64 (what embeddings take).
    pub fn window(&self, shard: usize, offset: u64, len: usize) -> Vec<i64> {
        let w = self.dtype.width();
        let start = offset as usize * w;
        let bytes = &self.shards[shard].0[start..start + len * w];
        SplitTokens::decode(bytes, self.dtype).into_iter().map(i64::from).collect()
    }
}
