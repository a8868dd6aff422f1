//! `calibration.json`: a fixed micro-benchmark of the machine that trained, used to
//! normalise cost to H100-hours and to judge whether logged throughput is plausible.

use serde::{Deserialize, Serialize};

/// Karpa's reference: a 2048×2048 fp32 matmul takes 0.51 ms on an H100 PCIe.
pub const H100_MATMUL_2048_FP32_MS: f64 = 0.51;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub format: String,
    pub device: DeviceFacts,
    /// Median ms of one 2048×2048 fp32 matmul.
    pub matmul_2048_fp32_ms: f64,
    /// Measured dense matmul throughput at the training precision (bf16 on CUDA, fp32 on CPU).
    pub matmul_peak_tflops: f64,
    /// Median ms of causal SDPA at B·H·T·D = 4·16·1024·64 (scaled down on CPU, see `sdpa_shape`).
    pub sdpa_ms: f64,
    pub sdpa_shape: [i64; 4],
    /// Read+write bandwidth of a large elementwise copy, GB/s.
    pub memory_gbps: f64,
    /// H100-seconds per wall second on this machine: 0.51 ms / measured matmul ms.
    pub h100_equivalence: f64,
}

impl Calibration {
    /// Cost of `wall_s` seconds on this machine, in H100-hours.
    pub fn h100_hours(&self, wall_s: f64) -> f64 {
        wall_s / 3600.0 * self.h100_equivalence
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFacts {
    pub kind: String,
    pub name: String,
    pub threads: i64,
    pub cuda_devices: i64,
    pub torch_version: String,
}
