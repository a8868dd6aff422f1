//! Bits per byte with exact byte accounting (autoresearch's evaluate_bpb):
//! bpb = Σ nats over target tokens that stand for bytes / (ln 2 · Σ their UTF-8 bytes).
//! Special tokens stand for no bytes and are left out of both sums.

use crate::data::dataset::Windows;
use recipe::Recipe;
use serde::Serialize;
use tch::{Device, Kind, Reduction, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BpbResult {
    /// Mean next-token loss over every target, in nats.
    pub loss: f64,
    pub bpb: f64,
    pub tokens: u64,
    pub bytes: u64,
}

/// Accumulates nats and bytes over batches, in f64.
#[derive(Debug, Default)]
pub struct BpbMeter {
    nats_all: f64,
    nats_counted: f64,
    tokens: u64,
    bytes: u64,
}

impl BpbMeter {
    /// Adds one batch: `logits` `[B, T, V]`, `targets` `[B, T]`, `token_bytes` `[V]`
    /// (int64). Returns each target's nats, row after row.
    pub fn add(&mut self, logits: &Tensor, targets: &Tensor, token_bytes: &Tensor) -> Vec<f32> {
        let token_nats = token_nats(logits, targets);
        let nats = token_nats.to_kind(Kind::Double);
        let bytes = token_bytes.index_select(0, &targets.view([-1]));
        let counted = bytes.gt(0);
        self.nats_all += nats.sum(Kind::Double).double_value(&[]);
        self.nats_counted += nats.masked_select(&counted).sum(Kind::Double).double_value(&[]);
        self.tokens += targets.numel() as u64;
        self.bytes += bytes.sum(Kind::Int64).int64_value(&[]) as u64;
        Vec::<f32>::try_from(token_nats.to_device(Device::Cpu)).expect("f32 nats")
    }

    pub fn result(&self) -> BpbResult {
        BpbResult {
            loss: self.nats_all / self.tokens.max(1) as f64,
            bpb: self.nats_counted / (std::f64::consts::LN_2 * self.bytes.max(1) as f64),
            tokens: self.tokens,
            bytes: self.bytes,
        }
    }
}

/// Each target's next-token cross-entropy in nats, `[B·T]` f32 (the numbers the
/// causality check compares, computed the same way in both passes).
pub fn token_nats(logits: &Tensor, targets: &Tensor) -> Tensor {
    let v = logits.size()[2];
    logits.to_kind(Kind::Float).view([-1, v]).cross_entropy_loss::<Tensor>(
        &targets.view([-1]),
        None,
        Reduction::None,
        -100,
        0.0,
    )
}

/// The split's window that evaluated window `i` is: every other one, so that no
/// row of a batch holds another row's targets (neighbouring windows share a
/// token: window w's last target is window w+1's first input).
pub fn evaluated_window(i: usize) -> usize {
    2 * i
}

/// What the scoring pass returns: the score and every scored token's nats.
pub struct Scored {
    pub result: BpbResult,
    /// `windows × seq_len` nats, window after window.
    pub nats: Vec<f32>,
}

/// Evaluates `tokens / seq_len` windows of a split (every other one, in stream order).
pub fn evaluate(
    recipe: &dyn Recipe,
    windows: &Windows,
    tokens: u64,
    seq_len: i64,
    token_bytes: &[i64],
    device: Device,
) -> anyhow::Result<Scored> {
    let n = (tokens / seq_len as u64) as usize;
    if n > 0 && evaluated_window(n - 1) >= windows.len() {
        anyhow::bail!(
            "the split holds {} windows of {seq_len} tokens; {} are needed (every other one of the first {})",
            windows.len(),
            n,
            evaluated_window(n - 1) + 1
        );
    }
    let table = Tensor::from_slice(token_bytes).to_device(device);
    let rows = recipe.batch_rows().max(1) as usize;
    let mut meter = BpbMeter::default();
    let mut nats = Vec::with_capacity(n * seq_len as usize);
    for start in (0..n).step_by(rows) {
        let idx: Vec<usize> = (start..(start + rows).min(n)).map(evaluated_window).collect();
        let (x, y) = windows.batch(&idx, device);
        let logits = recipe.logits(&x);
        nats.extend(meter.add(&logits, &y, &table));
    }
    Ok(Scored { result: meter.result(), nats })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_case() {
        // Uniform logits over 4 tokens: every target costs ln 4 nats = 2 bits.
        // Targets 1, 2, 0, 3 stand for 1, 2, 0 (special) and 3 bytes: the special
        // token is left out, so bpb = 3 targets · 2 bits / 6 bytes = 1.0.
        let logits = Tensor::zeros([1, 4, 4], (Kind::Float, Device::Cpu));
        let targets = Tensor::from_slice(&[1i64, 2, 0, 3]).view([1, 4]);
        let table = Tensor::from_slice(&[0i64, 1, 2, 3]);
        let mut m = BpbMeter::default();
        m.add(&logits, &targets, &table);
        let r = m.result();
        // Per-token nats come out of an f32 softmax; the sums are f64.
        assert!((r.bpb - 1.0).abs() < 1e-6, "{r:?}");
        assert!((r.loss - 4f64.ln()).abs() < 1e-6);
        assert_eq!((r.tokens, r.bytes), (4, 6));
    }

    #[test]
    fn confident_correct_predictions_cost_almost_nothing() {
        // A peaked distribution on the right token: e^-20 mass elsewhere.
        let logits = Tensor::zeros([1, 2, 3], (Kind::Float, Device::Cpu));
        let _ = logits.get(0).get(0).get(2).fill_(20.0);
        let _ = logits.get(0).get(1).get(1).fill_(20.0);
        let targets = Tensor::from_slice(&[2i64, 1]).view([1, 2]);
        let table = Tensor::from_slice(&[0i64, 4, 4]);
        let mut m = BpbMeter::default();
        m.add(&logits, &targets, &table);
        let expected = 2.0 * (1.0 + 2.0 * (-20f64).exp()).ln() / (std::f64::consts::LN_2 * 8.0);
        assert!((m.result().bpb - expected).abs() < 1e-6, "{:?} vs {expected}", m.result());
    }
}
