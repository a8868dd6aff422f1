//! `karpa-train causality`: re-scores the validator's secret (window, cut) pairs
//! of the hidden evaluation with each window's tokens after the cut replaced by
//! public text, in a process that shares nothing with the scoring pass. The judge
//! compares these nats with the ones the scoring pass recorded
//! (`proof::causality::compare`); this process only computes them.
//!
//! The check must never hand the recipe what the scoring pass could have used:
//! - a row keeps its window's tokens up to the cut only;
//! - no call holds two rows of one window (the later cut's row would carry the
//!   earlier cut's future), and a call's windows rise in stream order;
//! - a window's cuts rise from call to call, so state kept from an earlier call
//!   never holds the future of a later pair;
//! - every input is built before the recipe exists, and the hidden split is
//!   closed before any recipe code runs.

use crate::data::dataset::Windows;
use crate::eval::{evaluated_window, token_nats};
use anyhow::{bail, Result};
use proof::causality::Pair;
use recipe::Recipe;
use tch::{Device, Kind, Tensor};

/// One re-scored row: its pair, the inputs (the window up to the cut, public text
/// after) and the window's true targets, `[seq_len]` each.
pub struct CheckRow {
    pair: Pair,
    inputs: Tensor,
    targets: Tensor,
}

/// Why a recipe's logits could not be re-scored: the recipe's fault, not ours.
#[derive(Debug, thiserror::Error)]
pub enum RescoreError {
    #[error(
        "logits for {rows} rows of {seq_len} came back {found:?} {kind:?}, expected [{rows}, {seq_len}, {vocab}] Float"
    )]
    Shape { rows: i64, seq_len: i64, vocab: i64, found: Vec<i64>, kind: Kind },
}

/// Checks the pairs (inside the `evaluated` windows; each window's cuts rising)
/// and builds their rows: window tokens up to the cut, then the same positions of
/// a public window (`filler`), so the row still reads as text. Runs before the
/// recipe exists.
pub fn prepare_rows(
    hidden: &Windows,
    filler: &Windows,
    pairs: &[Pair],
    evaluated: usize,
    seq_len: i64,
) -> Result<Vec<CheckRow>> {
    let mut last_cut = std::collections::HashMap::new();
    let mut rows = Vec::with_capacity(pairs.len());
    for (k, &pair) in pairs.iter().enumerate() {
        if pair.window as usize >= evaluated || pair.cut as i64 >= seq_len {
            bail!("pair {pair:?} lies outside {evaluated} windows of {seq_len} tokens");
        }
        if let Some(prev) = last_cut.insert(pair.window, pair.cut) {
            if pair.cut <= prev {
                bail!("window {}'s cuts must rise from call to call ({} after {prev})", pair.window, pair.cut);
            }
        }
        let (inputs, targets) = hidden.batch(&[evaluated_window(pair.window as usize)], Device::Cpu);
        let (other, _) = filler.batch(&[k % filler.len()], Device::Cpu);
        let keep = pair.cut as i64 + 1;
        if keep < seq_len {
            let _ = inputs.narrow(1, keep, seq_len - keep).copy_(&other.narrow(1, keep, seq_len - keep));
        }
        rows.push(CheckRow { pair, inputs: inputs.view([seq_len]), targets: targets.view([seq_len]) });
    }
    Ok(rows)
}

/// Cuts the rows into calls of at most `per_call` rows: no call holds two rows of
/// one window (the later cut's row would carry the earlier cut's future), and a
/// call's windows rise in stream order.
pub fn plan(pairs: &[Pair], per_call: usize) -> Vec<std::ops::Range<usize>> {
    let mut calls: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        match calls.last_mut() {
            Some(call) if call.len() < per_call && pairs[call.end - 1].window < p.window => call.end = i + 1,
            _ => calls.push(i..i + 1),
        }
    }
    calls
}

/// Runs the recipe over the rows, `per_call` at a time; returns each pair's nats
/// at positions 0..=cut, pair after pair.
pub fn rescore(
    recipe: &dyn Recipe,
    rows: &[CheckRow],
    per_call: usize,
    vocab: i64,
    device: Device,
) -> Result<Vec<f32>, RescoreError> {
    let pairs: Vec<Pair> = rows.iter().map(|r| r.pair).collect();
    let mut out = Vec::new();
    for call in plan(&pairs, per_call.max(1)) {
        let rows = &rows[call];
        let inputs = Tensor::stack(&rows.iter().map(|r| &r.inputs).collect::<Vec<_>>(), 0).to_device(device);
        let targets = Tensor::stack(&rows.iter().map(|r| &r.targets).collect::<Vec<_>>(), 0).to_device(device);
        let (n, t) = (rows.len() as i64, inputs.size()[1]);
        let logits = recipe.logits(&inputs);
        if logits.size() != [n, t, vocab] || logits.kind() != Kind::Float {
            return Err(RescoreError::Shape { rows: n, seq_len: t, vocab, found: logits.size(), kind: logits.kind() });
        }
        let nats = Vec::<f32>::try_from(token_nats(&logits, &targets).to_device(Device::Cpu))
            .expect("f32 nats of a Float tensor");
        for (i, r) in rows.iter().enumerate() {
            let start = i * t as usize;
            out.extend_from_slice(&nats[start..=start + r.pair.cut as usize]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(window: u32, cut: u32) -> Pair {
        Pair { window, cut }
    }

    #[test]
    fn calls_never_hold_two_rows_of_a_window_and_rise_in_stream_order() {
        let pairs = [p(0, 5), p(3, 1), p(7, 9), p(1, 2), p(3, 4), p(5, 0), p(6, 1)];
        assert_eq!(plan(&pairs, 2), vec![0..2, 2..3, 3..5, 5..7]);
        assert_eq!(plan(&pairs, 8), vec![0..3, 3..7]);
    }
}
