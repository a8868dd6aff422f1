//! A release's weights: the bundle's last checkpoint without the optimizer's
//! state. The bot never links libtorch, so this is safetensors bytes in and
//! bytes out, and the same checkpoint always gives the same file: its digest is
//! what a crown note records and what `karpa model verify` checks offline.

use anyhow::{bail, Context, Result};
use proof::Sha256Hex;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Names of the recipe's weights in its state; the rest (`optim.*`) is the
/// optimizer's, which generation never reads.
pub const WEIGHTS_PREFIX: &str = "model.";

/// What a crown note says of the release's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsDigest {
    /// The checkpoint they come from, as the bundle's final state names it.
    pub checkpoint: String,
    /// sha256 of the weights-only safetensors file.
    pub sha256: Sha256Hex,
    /// Numbers in all the weight tensors.
    pub params: u64,
}

/// The weights-only file and its digest.
pub struct Weights {
    pub bytes: Vec<u8>,
    pub digest: WeightsDigest,
}

/// The weights of a checkpoint's bytes: every `model.` tensor, with the
/// checkpoint's metadata (config, step, data), so `karpa-train` loads the file
/// like a checkpoint.
pub fn weights_of(checkpoint: &str, bytes: &[u8]) -> Result<Weights> {
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| anyhow::anyhow!("{checkpoint}: not safetensors: {e}"))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow::anyhow!("{checkpoint}: damaged safetensors: {e}"))?;
    let mut tensors: Vec<_> = st.tensors().into_iter().filter(|(n, _)| n.starts_with(WEIGHTS_PREFIX)).collect();
    if tensors.is_empty() {
        bail!("{checkpoint} holds no {WEIGHTS_PREFIX}* tensor");
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let params = tensors.iter().map(|(_, t)| t.shape().iter().product::<usize>() as u64).sum();
    let metadata = header.metadata().clone();
    if metadata.as_ref().is_none_or(|m| m.len() != 1) {
        // One key: a hash map of several would serialise in any order.
        bail!("{checkpoint}: its metadata is not a Karpa checkpoint's");
    }
    let out = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), metadata)
        .with_context(|| format!("cannot write the weights of {checkpoint}"))?;
    let sha256 = proof::sha256_bytes(&out);
    Ok(Weights { bytes: out, digest: WeightsDigest { checkpoint: checkpoint.into(), sha256, params } })
}

/// The bundle's last checkpoint (the one the judge scored): its path in the
/// bundle and its bytes, from a folder or a packed file.
pub fn last_checkpoint(bundle: &Path, final_state: &proof::state::FinalState) -> Result<(String, Vec<u8>)> {
    let last = final_state.checkpoints.last().context("the bundle's final state names no checkpoint")?;
    if !proof::bundle::safe_relative(&last.path) {
        bail!("checkpoint path {:?} leaves the bundle", last.path);
    }
    let mut files = crate::archive::read_bundle_files(bundle, &[&last.path], 64 << 30)?;
    let bytes = files.remove(&last.path).with_context(|| format!("{} holds no {}", bundle.display(), last.path))?;
    Ok((last.path.clone(), bytes))
}

/// The weights of a bundle's last checkpoint.
pub fn of_bundle(bundle: &Path, final_state: &proof::state::FinalState) -> Result<Weights> {
    let (path, bytes) = last_checkpoint(bundle, final_state)?;
    weights_of(&path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::{tensor::TensorView, Dtype};
    use std::collections::HashMap;

    fn checkpoint(w: &[f32]) -> Vec<u8> {
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (a, b, m) = (bytes(w), bytes(&[9.0, 9.0]), bytes(&[0.5; 4]));
        let views = [
            ("model.w", TensorView::new(Dtype::F32, vec![2, 2], &a).unwrap()),
            ("model.b", TensorView::new(Dtype::F32, vec![2], &b).unwrap()),
            ("optim.m.w", TensorView::new(Dtype::F32, vec![2, 2], &m).unwrap()),
        ];
        let meta = HashMap::from([("karpa".to_string(), r#"{"config":"micro"}"#.to_string())]);
        safetensors::serialize(views.iter().map(|(n, v)| (*n, v)), Some(meta)).unwrap()
    }

    #[test]
    fn weights_drop_the_optimizer_and_are_the_same_bytes_every_time() {
        let ck = checkpoint(&[1.0, 2.0, 3.0, 4.0]);
        let w = weights_of("checkpoints/step-4.safetensors", &ck).unwrap();
        let st = SafeTensors::deserialize(&w.bytes).unwrap();
        let mut names = st.names();
        names.sort();
        assert_eq!(names, ["model.b", "model.w"]);
        assert_eq!(w.digest.params, 6);
        assert_eq!(weights_of("x", &ck).unwrap().digest.sha256, w.digest.sha256);
        let (_, header) = SafeTensors::read_metadata(&w.bytes).unwrap();
        assert_eq!(header.metadata().as_ref().unwrap()["karpa"], r#"{"config":"micro"}"#);
        // One changed weight, another digest.
        assert_ne!(weights_of("x", &checkpoint(&[1.0, 2.0, 3.0, 4.5])).unwrap().digest.sha256, w.digest.sha256);
        assert!(weights_of("x", b"not a checkpoint").is_err());
    }
}
