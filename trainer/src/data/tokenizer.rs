//! The byte-level BPE tokenizer (HF `tokenizers`), trained on the train split.
//! Byte-level means every UTF-8 byte has a token, so no text is ever unknown, and
//! every ordinary token stands for an exact number of bytes — what bpb needs.

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, Tokenizer};

/// The one special token: it begins every document.
pub const BOS: &str = "<|bos|>";

pub struct Bpe {
    inner: Tokenizer,
    pub bos_id: u32,
}

impl Bpe {
    /// Trains a tokenizer of `vocab_size` tokens on `docs`. Deterministic: the same
    /// documents give a byte-identical tokenizer.json.
    pub fn train<'a>(docs: impl Iterator<Item = &'a str> + Send, vocab_size: u32) -> Result<Self> {
        let byte_level = || ByteLevel::default().add_prefix_space(false);
        let mut builder = tokenizers::TokenizerBuilder::<
            BPE,
            NormalizerWrapper,
            PreTokenizerWrapper,
            PostProcessorWrapper,
            DecoderWrapper,
        >::new()
        .with_model(BPE::default())
        .with_pre_tokenizer(Some(byte_level().into()))
        .with_decoder(Some(byte_level().into()))
        .build()
        .map_err(|e| anyhow!("cannot build tokenizer: {e}"))?;
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size as usize)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(vec![AddedToken::from(BOS, true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        builder.train(&mut trainer, docs).map_err(|e| anyhow!("tokenizer training failed: {e}"))?;
        Self::from_tokenizer(builder.into())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path).map_err(|e| anyhow!("{}: not a tokenizer: {e}", path.display()))?;
        Self::from_tokenizer(inner)
    }

    fn from_tokenizer(inner: Tokenizer) -> Result<Self> {
        let bos_id = inner.token_to_id(BOS).ok_or_else(|| anyhow!("tokenizer has no {BOS} token"))?;
        Ok(Bpe { inner, bos_id })
    }

    pub fn vocab_size(&self) -> u32 {
        self.inner.get_vocab_size(true) as u32
    }

    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| anyhow!("cannot serialise tokenizer: {e}"))
    }

    /// Token ids of each document, each prefixed with BOS.
    pub fn encode_docs(&self, docs: &[String]) -> Result<Vec<Vec<u32>>> {
        let encs = self
            .inner
            .encode_batch_fast(docs.iter().map(|d| d.as_str()).collect::<Vec<_>>(), false)
            .map_err(|e| anyhow!("tokenization failed: {e}"))?;
        Ok(encs
            .into_iter()
            .map(|e| std::iter::once(self.bos_id).chain(e.get_ids().iter().copied()).collect())
            .collect())
    }

    /// UTF-8 bytes each token stands for, by id; special tokens stand for 0 bytes.
    pub fn token_bytes(&self) -> Result<Vec<i64>> {
        let alphabet = ByteLevel::alphabet();
        let mut bytes = vec![-1i64; self.vocab_size() as usize];
        let specials: std::collections::HashSet<u32> =
            self.inner.get_added_tokens_decoder().iter().filter(|(_, t)| t.special).map(|(id, _)| *id).collect();
        for (token, id) in self.inner.get_vocab(true) {
            let slot = bytes.get_mut(id as usize).ok_or_else(|| anyhow!("token id {id} beyond the vocabulary"))?;
            *slot = if specials.contains(&id) {
                0
            } else {
                if let Some(c) = token.chars().find(|c| !alphabet.contains(c)) {
                    bail!("token {token:?} has a character {c:?} outside the byte-level alphabet");
                }
                token.chars().count() as i64
            };
        }
        if let Some(id) = bytes.iter().position(|b| *b < 0) {
            bail!("token id {id} is missing from the vocabulary");
        }
        Ok(bytes)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| anyhow!("cannot decode: {e}")).context("decode")
    }
}
