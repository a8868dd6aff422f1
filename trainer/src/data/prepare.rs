//! `karpa-train prepare`: corpus → split → tokenizer → shards → manifests.
//!
//! Output layout (nothing appears until everything is written; the folder is
//! built under a temporary name and renamed at the end):
//! ```text
//! OUT/public/manifest.json   tokenizer.json   train-00000.bin …   val-00000.bin …
//! OUT/hidden/hidden-manifest.json   hidden-00000.bin …   (the validator keeps this)
//! ```

use super::corpus;
use super::manifest::*;
use super::shards::SplitWriter;
use super::split::{SplitKind, Splitter};
use super::tokenizer::Bpe;
use crate::config::ProtocolConfig;
use anyhow::{bail, Context, Result};
use proof::{fsio, sha256_bytes, sha256_file, Sha256Hex};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Prepared {
    pub manifest_sha256: Sha256Hex,
    pub tokenizer_sha256: Sha256Hex,
    pub manifest: DataManifest,
    pub hidden: HiddenManifest,
}

/// Documents are tokenized in batches of this many (in parallel, order kept).
const ENCODE_BATCH: usize = 256;

pub fn prepare(cfg: &ProtocolConfig, inputs: &[PathBuf], salt: &[u8], out: &Path) -> Result<Prepared> {
    if salt.is_empty() {
        bail!("the split salt is empty: the hidden split would be predictable");
    }
    if out.exists() {
        bail!("{} already exists: remove it or choose another output folder", out.display());
    }
    let files = corpus::list_files(inputs)?;
    let splitter = Splitter::new(salt, cfg.data.val_fraction, cfg.data.hidden_fraction);

    // Pass 1: the tokenizer learns from the train split only.
    let mut sample: Vec<String> = Vec::new();
    let mut sample_bytes = 0u64;
    corpus::for_each_document(&files, |text| {
        if sample_bytes < cfg.data.tokenizer_train_bytes && splitter.assign(text) == SplitKind::Train {
            sample_bytes += text.len() as u64;
            sample.push(text.to_string());
        }
        Ok(())
    })?;
    if sample.is_empty() {
        bail!("no document fell into the train split");
    }
    let bpe = Bpe::train(sample.iter().map(String::as_str), cfg.data.vocab_size)?;
    drop(sample);
    if bpe.vocab_size() > cfg.data.vocab_size {
        bail!("tokenizer has {} tokens, the config allows {}", bpe.vocab_size(), cfg.data.vocab_size);
    }

    let staging = out.with_file_name(format!(
        ".{}.partial-{}",
        out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let result = write_outputs(cfg, &files, &splitter, &bpe, &staging).and_then(|p| {
        std::fs::rename(&staging, out)
            .with_context(|| format!("cannot move the prepared data to {}", out.display()))?;
        Ok(p)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn write_outputs(
    cfg: &ProtocolConfig,
    files: &[PathBuf],
    splitter: &Splitter,
    bpe: &Bpe,
    dir: &Path,
) -> Result<Prepared> {
    let (public, hidden) = (dir.join("public"), dir.join("hidden"));
    std::fs::create_dir_all(&public).with_context(|| format!("cannot create {}", public.display()))?;
    std::fs::create_dir_all(&hidden)?;

    let tokenizer_json = bpe.to_json()?;
    fsio::write_atomic(&public.join(TOKENIZER_FILE), tokenizer_json.as_bytes())?;
    let tokenizer = FileEntry {
        path: TOKENIZER_FILE.into(),
        sha256: sha256_bytes(tokenizer_json.as_bytes()),
        bytes: tokenizer_json.len() as u64,
    };

    // Pass 2: tokenize every document into its split's shards.
    let dtype = TokenDtype::for_vocab(cfg.data.vocab_size);
    let shard_tokens = cfg.data.shard_tokens;
    let mut writers = [
        SplitWriter::new(&public, "train", dtype, shard_tokens),
        SplitWriter::new(&public, "val", dtype, shard_tokens),
        SplitWriter::new(&hidden, "hidden", dtype, shard_tokens),
    ];
    let mut batch: Vec<(String, SplitKind)> = Vec::with_capacity(ENCODE_BATCH);
    let mut flush = |batch: &mut Vec<(String, SplitKind)>| -> Result<()> {
        let texts: Vec<String> = batch.iter().map(|(t, _)| t.clone()).collect();
        for ((text, kind), ids) in batch.drain(..).zip(bpe.encode_docs(&texts)?) {
            let w = match kind {
                SplitKind::Train => 0,
                SplitKind::Val => 1,
                SplitKind::Hidden => 2,
            };
            writers[w].push(&ids, text.len() as u64)?;
        }
        Ok(())
    };
    corpus::for_each_document(files, |text| {
        batch.push((text.to_string(), splitter.assign(text)));
        if batch.len() == ENCODE_BATCH {
            flush(&mut batch)?;
        }
        Ok(())
    })?;
    flush(&mut batch)?;
    let [train, val, hidden_split] = writers;

    let manifest = DataManifest {
        format: DATA_FORMAT.into(),
        config: cfg.name.clone(),
        vocab_size: cfg.data.vocab_size,
        dtype,
        bos_id: bpe.bos_id,
        tokenizer,
        train: train.finish()?,
        val: val.finish()?,
    };
    let manifest_sha256 = write_manifest(&public.join(MANIFEST_FILE), &manifest)?;
    let hidden_manifest = HiddenManifest {
        format: DATA_FORMAT.into(),
        config: cfg.name.clone(),
        public_manifest: manifest_sha256.clone(),
        dtype,
        hidden: hidden_split.finish()?,
    };
    write_manifest(&hidden.join(HIDDEN_MANIFEST_FILE), &hidden_manifest)?;
    Ok(Prepared {
        manifest_sha256,
        tokenizer_sha256: manifest.tokenizer.sha256.clone(),
        manifest,
        hidden: hidden_manifest,
    })
}

fn write_manifest<T: serde::Serialize>(path: &Path, value: &T) -> Result<Sha256Hex> {
    fsio::write_json_atomic(path, value).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(sha256_file(path)?)
}
