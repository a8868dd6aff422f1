//! A prepared dataset opened for a protocol config: pins checked, shards verified,
//! and the harness's data order (the recipe never chooses its own data).

use super::manifest::*;
use super::shards::SplitTokens;
use super::tokenizer::Bpe;
use crate::config::{ProtocolConfig, UNPINNED};
use anyhow::{bail, Context, Result};
use proof::{sha256_bytes, Sha256Hex};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

pub struct Dataset {
    pub dir: PathBuf,
    pub manifest: DataManifest,
    pub manifest_sha256: Sha256Hex,
    pub tokenizer: Bpe,
}

impl Dataset {
    /// Opens `dir` (the `public/` folder of `prepare`'s output) for `cfg`. A config
    /// whose data is pinned accepts only the exact pinned files; an unpinned one
    /// only when the caller says so.
    pub fn open(dir: &Path, cfg: &ProtocolConfig, allow_unpinned: bool) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read data manifest {}", path.display()))?;
        let manifest_sha256 = sha256_bytes(&bytes);
        let manifest: DataManifest =
            serde_json::from_slice(&bytes).with_context(|| format!("{} is not a data manifest", path.display()))?;
        if manifest.format != DATA_FORMAT {
            bail!("{}: format {:?}, this harness reads {DATA_FORMAT}", path.display(), manifest.format);
        }
        if manifest.config != cfg.name || manifest.vocab_size != cfg.data.vocab_size {
            bail!(
                "{} was prepared for config {} (vocab {}), not {} (vocab {})",
                path.display(),
                manifest.config,
                manifest.vocab_size,
                cfg.name,
                cfg.data.vocab_size
            );
        }
        check_pin("data manifest", &manifest_sha256, &cfg.data.manifest_sha256, &cfg.name, allow_unpinned)?;
        let tok_path = dir.join(&manifest.tokenizer.path);
        let tok_bytes = std::fs::read(&tok_path).with_context(|| format!("cannot read {}", tok_path.display()))?;
        let tok_sha = sha256_bytes(&tok_bytes);
        if tok_sha != manifest.tokenizer.sha256 {
            bail!("{} is corrupt: sha256 {tok_sha} differs from the manifest's", tok_path.display());
        }
        check_pin("tokenizer", &tok_sha, &cfg.data.tokenizer_sha256, &cfg.name, allow_unpinned)?;
        let tokenizer = Bpe::load(&tok_path)?;
        Ok(Dataset { dir: dir.to_path_buf(), manifest, manifest_sha256, tokenizer })
    }

    pub fn train(&self) -> Result<SplitTokens> {
        SplitTokens::open(&self.dir, &self.manifest.train, self.manifest.dtype, self.manifest.vocab_size)
    }

    pub fn val(&self) -> Result<SplitTokens> {
        SplitTokens::open(&self.dir, &self.manifest.val, self.manifest.dtype, self.manifest.vocab_size)
    }

    /// The hidden split from the validator's `hidden/` folder, which must belong to this dataset.
    pub fn hidden(&self, hidden_dir: &Path) -> Result<SplitTokens> {
        let path = hidden_dir.join(HIDDEN_MANIFEST_FILE);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let hidden: HiddenManifest =
            serde_json::from_slice(&bytes).with_context(|| format!("{} is not a hidden manifest", path.display()))?;
        if hidden.public_manifest != self.manifest_sha256 {
            bail!("{} belongs to another dataset (public manifest {})", path.display(), hidden.public_manifest);
        }
        SplitTokens::open(hidden_dir, &hidden.hidden, hidden.dtype, self.manifest.vocab_size)
    }

    /// Bytes per token id, padded with zeros up to the config's vocabulary size.
    pub fn token_bytes(&self) -> Result<Vec<i64>> {
        let mut bytes = self.tokenizer.token_bytes()?;
        bytes.resize(self.manifest.vocab_size as usize, 0);
        Ok(bytes)
    }
}

fn check_pin(what: &str, actual: &Sha256Hex, pinned: &str, config: &str, allow_unpinned: bool) -> Result<()> {
    if pinned == UNPINNED {
        if !allow_unpinned {
            bail!("config {config} has no pinned {what}; pass --allow-unpinned-data to use data prepared locally");
        }
    } else if actual.as_str() != pinned {
        bail!("{what} sha256 {actual} is not the one config {config} pins ({pinned})");
    }
    Ok(())
}

/// Cuts a split into windows of `seq_len + 1` tokens (inputs plus the shifted
/// targets; neighbours share one token so every token is a target once) and
/// serves them in the harness's order.
pub struct Windows<'a> {
    tokens: &'a SplitTokens,
    seq_len: i64,
    /// (shard, offset) of every window.
    starts: Vec<(usize, u64)>,
}

impl<'a> Windows<'a> {
    pub fn new(tokens: &'a SplitTokens, seq_len: i64) -> Result<Self> {
        let t = seq_len as u64;
        let starts: Vec<(usize, u64)> = tokens
            .shard_lens()
            .into_iter()
            .enumerate()
            .flat_map(|(s, len)| (0..len.saturating_sub(1) / t).map(move |i| (s, i * t)))
            .collect();
        if starts.is_empty() {
            bail!("the split is shorter than one sequence of {seq_len} tokens");
        }
        Ok(Windows { tokens, seq_len, starts })
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Inputs and targets `[rows, seq_len]` for the given window indices, each in
    /// storage of its own: a recipe handed the inputs cannot reach the targets
    /// through a strided view of a shared buffer.
    pub fn batch(&self, indices: &[usize], device: Device) -> (Tensor, Tensor) {
        let t = self.seq_len as usize;
        let mut flat = Vec::with_capacity(indices.len() * (t + 1));
        for &i in indices {
            let (shard, offset) = self.starts[i];
            flat.extend(self.tokens.window(shard, offset, t + 1));
        }
        let all = Tensor::from_slice(&flat).view([indices.len() as i64, t as i64 + 1]).to_device(device);
        (all.narrow(1, 0, t as i64).copy(), all.narrow(1, 1, t as i64).copy())
    }
}

/// The training data order: epoch after epoch, a fresh permutation of all windows
/// seeded by (seed, epoch). Row r of the run is always the same window, whatever
/// the recipe's batch size, which is what makes replay from any checkpoint exact.
pub struct TrainOrder {
    seed: u64,
    n: usize,
    epoch: Option<(u64, Vec<u32>)>,
}

impl TrainOrder {
    pub fn new(seed: u64, windows: usize) -> Self {
        TrainOrder { seed, n: windows, epoch: None }
    }

    /// Window indices of rows `first..first + count`.
    pub fn rows(&mut self, first: u64, count: usize) -> Vec<usize> {
        (first..first + count as u64).map(|r| self.row(r)).collect()
    }

    fn row(&mut self, r: u64) -> usize {
        let (epoch, pos) = (r / self.n as u64, (r % self.n as u64) as usize);
        if self.epoch.as_ref().map(|(e, _)| *e) != Some(epoch) {
            self.epoch = Some((epoch, permutation(self.n, self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15))));
        }
        self.epoch.as_ref().expect("set above").1[pos] as usize
    }
}

/// SplitMix64: a tiny, fully specified generator, so the data order is part of the
/// protocol and never changes with a library version.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Fisher–Yates shuffle of 0..n driven by SplitMix64.
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64(seed);
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference_vector() {
        // First outputs of SplitMix64 seeded with 1234567 (Vigna's reference code).
        let mut r = SplitMix64(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn order_is_a_permutation_per_epoch_and_independent_of_batching() {
        let mut a = TrainOrder::new(7, 100);
        let epoch0 = a.rows(0, 100);
        let mut sorted = epoch0.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(epoch0, a.rows(100, 100), "epochs reshuffle");
        let mut b = TrainOrder::new(7, 100);
        let pieces: Vec<usize> = [b.rows(0, 30), b.rows(30, 45), b.rows(75, 25)].concat();
        assert_eq!(pieces, epoch0);
    }
}
