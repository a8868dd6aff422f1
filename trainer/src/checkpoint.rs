//! Checkpoints in safetensors: the recipe's whole state (weights and optimizer
//! moments) plus metadata that ties it to a config, a step and a dataset.

use anyhow::{bail, Context, Result};
use proof::{sha256_file, Sha256Hex};
use safetensors::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub const CHECKPOINT_FORMAT: &str = "karpa-checkpoint/v1";

#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointMeta {
    pub config: String,
    pub step: u64,
    pub tokens_seen: u64,
    pub data_manifest: String,
}

/// The metadata travels as one JSON value under one key: safetensors stores its
/// metadata as a hash map, whose order would make identical runs write different bytes.
const META_KEY: &str = "karpa";

impl CheckpointMeta {
    fn to_map(&self) -> HashMap<String, String> {
        let value = serde_json::json!({
            "format": CHECKPOINT_FORMAT,
            "config": self.config,
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "data_manifest": self.data_manifest,
        });
        HashMap::from([(META_KEY.to_string(), value.to_string())])
    }

    fn from_map(m: &HashMap<String, String>) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_str(m.get(META_KEY).with_context(|| format!("metadata has no {META_KEY:?} entry"))?)?;
        if v["format"] != CHECKPOINT_FORMAT {
            bail!("metadata format is {}, expected {CHECKPOINT_FORMAT}", v["format"]);
        }
        let text = |k: &str| v[k].as_str().map(str::to_string).with_context(|| format!("metadata has no {k:?}"));
        let num = |k: &str| v[k].as_u64().with_context(|| format!("metadata has no {k:?}"));
        Ok(CheckpointMeta {
            config: text("config")?,
            step: num("step")?,
            tokens_seen: num("tokens_seen")?,
            data_manifest: text("data_manifest")?,
        })
    }
}

/// A tensor copied to host memory, in the form safetensors writes.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        other => bail!("cannot checkpoint a tensor of kind {other:?}"),
    })
}

fn kind_of(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        other => bail!("unsupported tensor dtype {other:?}"),
    })
}

/// Writes the state atomically and returns the file's sha256.
pub fn save(path: &Path, state: &[(String, Tensor)], meta: &CheckpointMeta) -> Result<Sha256Hex> {
    let host: Vec<(String, HostTensor)> = state
        .iter()
        .map(|(name, t)| {
            let t = t.to_device(Device::Cpu).contiguous();
            let numel = t.numel();
            let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
            t.copy_data_u8(&mut bytes, numel);
            let shape = t.size().iter().map(|&d| d as usize).collect();
            Ok((name.clone(), HostTensor { dtype: dtype_of(t.kind())?, shape, bytes }))
        })
        .collect::<Result<_>>()?;
    let tmp = proof::fsio::temp_sibling(path);
    safetensors::serialize_to_file(host.iter().map(|(n, t)| (n.as_str(), t)), Some(meta.to_map()), &tmp)
        .with_context(|| format!("cannot write checkpoint {}", path.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(sha256_file(path)?)
}

/// Reads a checkpoint written for `config`, with its tensors on `device`.
pub fn load(path: &Path, config: &str, device: Device) -> Result<(CheckpointMeta, Vec<(String, Tensor)>)> {
    let ctx = || format!("checkpoint {}", path.display());
    let bytes = std::fs::read(path).with_context(ctx)?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("not a safetensors file: {e}"))
        .with_context(ctx)?;
    let meta =
        header.metadata().as_ref().context("no Karpa metadata").and_then(CheckpointMeta::from_map).with_context(ctx)?;
    if meta.config != config {
        bail!("{}: a checkpoint of config {}, not {config}", ctx(), meta.config);
    }
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("damaged safetensors data: {e}"))
        .with_context(ctx)?;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind_of(view.dtype())?).with_context(ctx)?;
        tensors.push((name, t.to_device(device)));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((meta, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(config: &str) -> CheckpointMeta {
        CheckpointMeta { config: config.into(), step: 7, tokens_seen: 448, data_manifest: "ab".repeat(32) }
    }

    fn state() -> Vec<(String, Tensor)> {
        vec![
            ("model.w".into(), Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.0]).view([2, 2])),
            ("optim.steps".into(), Tensor::from_slice(&[7i64]).view([])),
        ]
    }

    #[test]
    fn round_trip_is_exact_and_bytes_are_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
        let da = save(&a, &state(), &meta("micro")).unwrap();
        let db = save(&b, &state(), &meta("micro")).unwrap();
        assert_eq!(da, db, "the same state must give the same bytes");
        let (m, loaded) = load(&a, "micro", Device::Cpu).unwrap();
        assert_eq!(m, meta("micro"));
        for ((n1, t1), (n2, t2)) in state().iter().zip(&loaded) {
            assert_eq!(n1, n2);
            assert!(t1.equal(t2), "{n1} differs after a round trip");
        }
    }

    #[test]
    fn another_configs_checkpoint_and_a_truncated_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.safetensors");
        save(&p, &state(), &meta("tiny")).unwrap();
        let err = format!("{:#}", load(&p, "micro", Device::Cpu).unwrap_err());
        assert!(err.contains("c.safetensors") && err.contains("config tiny, not micro"), "{err}");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let err = format!("{:#}", load(&p, "tiny", Device::Cpu).unwrap_err());
        assert!(err.contains("c.safetensors"), "{err}");
    }
}
