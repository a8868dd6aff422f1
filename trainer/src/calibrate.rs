//! `karpa-train calibrate`: a fixed micro-benchmark of the training machine
//! (matmul, attention, memory bandwidth) plus device facts. It normalises cost to
//! H100-hours and bounds what throughput a log may plausibly claim.

use proof::calibration::{Calibration, DeviceFacts, H100_MATMUL_2048_FP32_MS};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

pub const CALIBRATION_FORMAT: &str = "karpa-calibration/v1";

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Milliseconds of `f` after one warm-up call, over at least 3 runs and at least
/// `budget_s` seconds, sorted.
fn sample_ms(device: Device, budget_s: f64, mut f: impl FnMut() -> Tensor) -> Vec<f64> {
    let _ = f();
    sync(device);
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (start.elapsed().as_secs_f64() < budget_s && times.len() < 50) {
        let t = Instant::now();
        let _out = f();
        sync(device);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times
}

fn median_ms(device: Device, budget_s: f64, f: impl FnMut() -> Tensor) -> f64 {
    let times = sample_ms(device, budget_s, f);
    times[times.len() / 2]
}

/// The fastest run: a peak is what the hardware can do, and another process busy
/// during a few of the runs makes those slower, never faster.
fn fastest_ms(device: Device, budget_s: f64, f: impl FnMut() -> Tensor) -> f64 {
    sample_ms(device, budget_s, f)[0]
}

pub fn calibrate(device: Device) -> Calibration {
    tch::manual_seed(0);
    let budget_s = if device.is_cuda() { 1.0 } else { 0.5 };
    let a = Tensor::randn([2048, 2048], (Kind::Float, device));
    let b = Tensor::randn([2048, 2048], (Kind::Float, device));
    let matmul_ms = median_ms(device, budget_s, || a.matmul(&b));

    // Peak at the training precision: bf16 on CUDA, fp32 on CPU.
    let (n, kind) = if device.is_cuda() { (8192, Kind::BFloat16) } else { (2048, Kind::Float) };
    let p = Tensor::randn([n, n], (kind, device));
    let q = Tensor::randn([n, n], (kind, device));
    let peak_ms = fastest_ms(device, budget_s, || p.matmul(&q));
    let matmul_peak_tflops = 2.0 * (n as f64).powi(3) / (peak_ms * 1e-3) / 1e12;

    let shape = if device.is_cuda() { [4, 16, 1024, 64] } else { [1, 4, 1024, 64] };
    let qkv_kind = if device.is_cuda() { Kind::BFloat16 } else { Kind::Float };
    let qh = Tensor::randn(shape, (qkv_kind, device));
    let sdpa_ms = median_ms(device, budget_s, || {
        Tensor::scaled_dot_product_attention(&qh, &qh, &qh, None::<Tensor>, 0.0, true, None, false)
    });

    let big = Tensor::randn([16 << 20], (Kind::Float, device));
    let mut dst = big.zeros_like();
    let copy_ms = median_ms(device, budget_s, || {
        dst.copy_(&big);
        dst.shallow_clone()
    });
    let memory_gbps = 2.0 * (16u64 << 20) as f64 * 4.0 / (copy_ms * 1e-3) / 1e9;

    Calibration {
        format: CALIBRATION_FORMAT.into(),
        device: device_facts(device),
        matmul_2048_fp32_ms: matmul_ms,
        matmul_peak_tflops,
        sdpa_ms,
        sdpa_shape: shape,
        memory_gbps,
        h100_equivalence: H100_MATMUL_2048_FP32_MS / matmul_ms,
    }
}

fn device_facts(device: Device) -> DeviceFacts {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    DeviceFacts {
        kind: if device.is_cuda() { "cuda".into() } else { "cpu".into() },
        name: if device.is_cuda() { format!("CUDA device (host {cpu})") } else { cpu },
        threads: tch::get_num_threads() as i64,
        cuda_devices: tch::Cuda::device_count(),
        // tch 0.24 refuses at build time to link any libtorch but 2.11.0.
        torch_version: "2.11.0".into(),
    }
}
