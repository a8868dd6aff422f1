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

    /// The UTF-8 bytes of every token, by id (special tokens: none): what a
    /// stream of generated tokens prints, a token at a time.
    pub fn token_byte_strings(&self) -> Result<Vec<Vec<u8>>> {
        let byte_of: std::collections::HashMap<char, u8> = byte_level_chars().map(|(b, c)| (c, b)).collect();
        let specials: std::collections::HashSet<u32> =
            self.inner.get_added_tokens_decoder().iter().filter(|(_, t)| t.special).map(|(id, _)| *id).collect();
        let mut out = vec![Vec::new(); self.vocab_size() as usize];
        for (token, id) in self.inner.get_vocab(true) {
            if specials.contains(&id) {
                continue;
            }
            let bytes = token
                .chars()
                .map(|c| byte_of.get(&c).copied().ok_or_else(|| anyhow!("token {token:?}: {c:?} is no byte")))
                .collect::<Result<Vec<u8>>>()?;
            *out.get_mut(id as usize).ok_or_else(|| anyhow!("token id {id} beyond the vocabulary"))? = bytes;
        }
        Ok(out)
    }

    /// A prompt as a document begins: BOS, then its tokens.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        if text.is_empty() {
            bail!("the prompt is empty: give some text to continue");
        }
        Ok(self.encode_docs(&[text.to_string()])?.remove(0))
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| anyhow!("cannot decode: {e}")).context("decode")
    }
}

/// GPT-2's byte-level alphabet: each byte and the character that stands for it
/// (printable Latin-1 bytes stand for themselves, the rest for U+0100 onwards).
fn byte_level_chars() -> impl Iterator<Item = (u8, char)> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 256u32;
    (0..=255u8).map(move |b| {
        if printable(b) {
            (b, char::from(b))
        } else {
            next += 1;
            (b, char::from_u32(next - 1).expect("below the surrogates"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_is_the_one_the_tokenizer_uses() {
        let ours: std::collections::HashSet<char> = byte_level_chars().map(|(_, c)| c).collect();
        let theirs: std::collections::HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        assert_eq!(ours, theirs);
        assert_eq!(byte_level_chars().filter(|&(b, c)| c == char::from(b)).count(), 188);
    }

    #[test]
    fn token_bytes_concatenate_to_the_decoded_text() {
        let docs = ["Où est la café? Ça coûte 3 €, naïve façade.", "The café is open; the façade is old. €€"];
        let bpe = Bpe::train(docs.iter().copied(), 300).unwrap();
        let text = "Un café à 2 € — façade";
        let ids = bpe.encode_prompt(text).unwrap();
        assert_eq!(ids[0], bpe.bos_id);
        let table = bpe.token_byte_strings().unwrap();
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| table[i as usize].clone()).collect();
        assert_eq!(String::from_utf8(bytes).unwrap(), text);
        assert_eq!(bpe.decode(&ids).unwrap(), text);
        assert!(bpe.encode_prompt("").unwrap_err().to_string().contains("empty"));
    }
}
