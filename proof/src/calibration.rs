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
    /// The better of two calibrations of one machine (taken before and after a
    /// training, say): each measurement at its best, so a machine that was busy
    /// during one of them is not held to its slower numbers. None when the two
    /// describe different devices.
    pub fn best_of(&self, other: &Calibration) -> Option<Calibration> {
        if self.device != other.device || self.format != other.format || self.sdpa_shape != other.sdpa_shape {
            return None;
        }
        let matmul_2048_fp32_ms = self.matmul_2048_fp32_ms.min(other.matmul_2048_fp32_ms);
        Some(Calibration {
            format: self.format.clone(),
            device: self.device.clone(),
            matmul_2048_fp32_ms,
            matmul_peak_tflops: self.matmul_peak_tflops.max(other.matmul_peak_tflops),
            sdpa_ms: self.sdpa_ms.min(other.sdpa_ms),
            sdpa_shape: self.sdpa_shape,
            memory_gbps: self.memory_gbps.max(other.memory_gbps),
            h100_equivalence: H100_MATMUL_2048_FP32_MS / matmul_2048_fp32_ms,
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(peak: f64, ms: f64) -> Calibration {
        Calibration {
            format: "karpa-calibration/v1".into(),
            device: DeviceFacts {
                kind: "cpu".into(),
                name: "x".into(),
                threads: 2,
                cuda_devices: 0,
                torch_version: "2.11.0".into(),
            },
            matmul_2048_fp32_ms: ms,
            matmul_peak_tflops: peak,
            sdpa_ms: ms,
            sdpa_shape: [1, 4, 1024, 64],
            memory_gbps: 10.0 / ms,
            h100_equivalence: H100_MATMUL_2048_FP32_MS / ms,
        }
    }

    #[test]
    fn the_best_of_two_calibrations_takes_each_measurement_at_its_best() {
        // Busy during the first: half the peak, twice the time.
        let (busy, idle) = (cal(0.09, 200.0), cal(0.18, 100.0));
        let best = busy.best_of(&idle).unwrap();
        assert_eq!(best, idle);
        assert_eq!(idle.best_of(&busy).unwrap(), idle);
        let mut gpu = idle.clone();
        gpu.device.kind = "cuda".into();
        assert!(busy.best_of(&gpu).is_none(), "another device is not the same machine");
    }
}
