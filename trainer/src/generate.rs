//! `karpa-train generate`: text from a checkpoint, through the [`Recipe`] trait
//! alone, so it works for any recipe a tag holds.
//!
//! The trait gives logits for whole windows of the config's `seq_len`, so every
//! new token costs one forward pass over a window: the last `seq_len` tokens of
//! the text, padded on the right when the text is shorter. Padding after the last
//! real token cannot change its logits because the recipe is causal (the judge
//! probes exactly that), so the model sees what it was trained on.
//!
//! Sampling runs on the CPU in f64 from the f32 logits with the harness's own
//! generator (SplitMix64), so the same seed and checkpoint give the same text.

use crate::data::dataset::SplitMix64;
use anyhow::{bail, Result};
use recipe::Recipe;
use tch::{Device, Kind, Tensor};

/// How the next token is drawn from the model's distribution.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// 0 is greedy (the most likely token, ties to the lowest id).
    pub temperature: f64,
    /// Keep only the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: all).
    pub top_p: f64,
    pub seed: u64,
}

impl Sampling {
    pub fn check(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            bail!("--temperature must be a number ≥ 0, not {}", self.temperature);
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bail!("--top-p must be in (0, 1], not {}", self.top_p);
        }
        Ok(())
    }
}

/// Draws one token id from `logits` (one position, over the vocabulary).
pub fn sample(logits: &[f32], s: &Sampling, rng: &mut SplitMix64) -> Result<u32> {
    if let Some(i) = logits.iter().position(|l| l.is_nan()) {
        bail!("the model gave a NaN logit (token {i})");
    }
    // Most likely first; equal logits in id order, so the order is total and fixed.
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    if s.temperature == 0.0 || s.top_k == 1 {
        return Ok(order[0]);
    }
    if s.top_k > 0 {
        order.truncate(s.top_k);
    }
    let top = f64::from(logits[order[0] as usize]);
    let mut probs: Vec<f64> =
        order.iter().map(|&i| ((f64::from(logits[i as usize]) - top) / s.temperature).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    let mut kept = 0;
    let mut mass = 0.0;
    while kept < probs.len() && (kept == 0 || mass < s.top_p) {
        mass += probs[kept];
        kept += 1;
    }
    // A uniform draw in [0, mass) from the top 53 bits.
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * mass;
    let mut acc = 0.0;
    for (&id, &p) in order.iter().zip(&probs).take(kept) {
        acc += p;
        if u < acc {
            return Ok(id);
        }
    }
    Ok(order[kept - 1])
}

/// Appends `new_tokens` tokens to `prompt`, calling `emit` with each as it comes.
pub fn generate(
    recipe: &dyn Recipe,
    prompt: &[u32],
    new_tokens: usize,
    seq_len: usize,
    sampling: &Sampling,
    device: Device,
    mut emit: impl FnMut(u32) -> Result<()>,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        bail!("the prompt has no tokens");
    }
    let mut rng = SplitMix64(sampling.seed);
    let mut text = prompt.to_vec();
    for _ in 0..new_tokens {
        let start = text.len().saturating_sub(seq_len);
        let context = &text[start..];
        let mut window: Vec<i64> = context.iter().map(|&t| i64::from(t)).collect();
        window.resize(seq_len, i64::from(context[context.len() - 1]));
        let input = Tensor::from_slice(&window).view([1, seq_len as i64]).to_device(device);
        let logits = recipe.logits(&input);
        let last = logits.get(0).get(context.len() as i64 - 1).to_kind(Kind::Float).to_device(Device::Cpu);
        let row: Vec<f32> = Vec::<f32>::try_from(&last.contiguous())?;
        let next = sample(&row, sampling, &mut rng)?;
        text.push(next);
        emit(next)?;
    }
    Ok(text)
}

/// The recipe with a checkpoint's tensors in place of its seeded ones. A
/// weights-only export lacks the optimizer's state, which generation never
/// reads, so the recipe keeps its own fresh state for those names.
pub fn with_weights(mut recipe: Box<dyn Recipe>, weights: Vec<(String, Tensor)>) -> Result<Box<dyn Recipe>> {
    let mut state: Vec<(String, Tensor)> = recipe.state();
    let mut given: std::collections::BTreeMap<String, Tensor> = weights.into_iter().collect();
    for (name, tensor) in state.iter_mut() {
        if let Some(t) = given.remove(name) {
            *tensor = t;
        }
    }
    if let Some(name) = given.keys().next() {
        bail!("tensor {name:?} is not part of this recipe's state");
    }
    recipe.load_state(&state)?;
    Ok(recipe)
}

/// Turns token bytes into text as it streams: holds back the bytes of a
/// character that is not complete yet, and replaces invalid bytes with U+FFFD.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).expect("valid prefix"));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end: an incomplete character is replaced.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(temperature: f64, top_k: usize, top_p: f64) -> Sampling {
        Sampling { temperature, top_k, top_p, seed: 7 }
    }

    #[test]
    fn greedy_takes_the_most_likely_and_ties_go_to_the_lowest_id() {
        let mut rng = SplitMix64(1);
        assert_eq!(sample(&[0.1, 3.0, 3.0, -1.0], &s(0.0, 0, 1.0), &mut rng).unwrap(), 1);
        assert_eq!(sample(&[0.1, 3.0, 2.0, 5.0], &s(1.0, 1, 1.0), &mut rng).unwrap(), 3);
    }

    #[test]
    fn top_k_and_top_p_never_draw_outside_their_set() {
        let logits = [2.0f32, 1.9, 1.8, 0.0, -1.0, 1.7];
        let mut rng = SplitMix64(3);
        let draws: Vec<u32> = (0..2000).map(|_| sample(&logits, &s(1.0, 3, 1.0), &mut rng).unwrap()).collect();
        assert!(draws.iter().all(|d| [0, 1, 2].contains(d)), "top-k 3 keeps tokens 0, 1, 2");
        assert!([0, 1, 2].iter().all(|t| draws.contains(t)), "and draws each of them");
        // p = 0.5 of softmax([2, 1.9, 1.8, 1.7, 0, -1]) is reached by the two most likely.
        let draws: Vec<u32> = (0..2000).map(|_| sample(&logits, &s(1.0, 0, 0.5), &mut rng).unwrap()).collect();
        assert!(draws.iter().all(|d| [0, 1].contains(d)), "top-p 0.5 keeps tokens 0 and 1");
        let draws: Vec<u32> = (0..4000).map(|_| sample(&logits, &s(1.0, 0, 1.0), &mut rng).unwrap()).collect();
        assert!(draws.contains(&4), "with no cut, an unlikely token is drawn sometimes");
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut rng = SplitMix64(seed);
            (0..64).map(|_| sample(&logits, &s(0.8, 20, 0.9), &mut rng).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn bad_sampling_settings_and_nan_logits_are_named() {
        assert!(s(-1.0, 0, 1.0).check().unwrap_err().to_string().contains("--temperature"));
        assert!(s(1.0, 0, 0.0).check().unwrap_err().to_string().contains("--top-p"));
        let err = sample(&[0.0, f32::NAN], &s(1.0, 0, 1.0), &mut SplitMix64(0)).unwrap_err();
        assert!(err.to_string().contains("NaN"), "{err}");
    }

    #[test]
    fn a_character_split_across_tokens_streams_whole() {
        let mut out = Utf8Stream::default();
        let bytes = "né€".as_bytes();
        let pieces: Vec<String> = [&bytes[..2], &bytes[2..4], &bytes[4..]].iter().map(|b| out.push(b)).collect();
        assert_eq!(pieces, ["n", "é", "€"]);
        assert_eq!(out.push(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(out.push(&[0xe2]), "");
        assert_eq!(out.finish(), "\u{fffd}");
    }
}
