//! The GPU self-test: before the first model this process runs on a GPU, the
//! built harness calibrates inside the sandbox, with the job's device nodes and
//! environment, and must report that GPU, alone and working. A GPU that is
//! configured but unusable there fails the job closed: no model silently runs
//! on the CPU in its place, and no number from a broken device is recorded.

use super::evaluate::{run_sandboxed, tail_of, EvalSetup};
use crate::sandbox::gpu::Device;
use crate::sandbox::Sandbox;
use anyhow::{bail, Context, Result};
use proof::calibration::Calibration;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Mutex;

/// GPUs this process has proven usable in the sandbox.
static PROVEN: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// GPUs proven so far (for /healthz).
pub fn proven() -> Vec<u32> {
    PROVEN.lock().map(|p| p.iter().copied().collect()).unwrap_or_default()
}

/// Runs the self-test once per GPU per process; nothing to prove on the CPU.
pub fn ensure_usable(sandbox: &Sandbox, setup: &EvalSetup, bin: &Path) -> Result<()> {
    let Device::Cuda(n) = setup.device else { return Ok(()) };
    if proven().contains(&n) {
        return Ok(());
    }
    let c = calibrate_in_sandbox(sandbox, setup, bin)?;
    expect(setup.device, &c)?;
    tracing::info!(gpu = n, device = c.device.name, tflops = c.matmul_peak_tflops, "the GPU works in the sandbox");
    PROVEN.lock().map_err(|_| anyhow::anyhow!("the self-test's record is poisoned"))?.insert(n);
    Ok(())
}

/// `karpa-train calibrate` on the setup's device, in the sandbox: what it measured.
pub fn calibrate_in_sandbox(sandbox: &Sandbox, setup: &EvalSetup, bin: &Path) -> Result<Calibration> {
    let scratch = tempfile::tempdir()?;
    let out = scratch.path().join("calibration.json");
    let args: Vec<OsString> = ["calibrate", "--device", setup.device.harness_arg(), "--out"]
        .iter()
        .map(OsString::from)
        .chain([out.clone().into()])
        .collect();
    let (done, json) = run_sandboxed(sandbox, setup, bin, (vec![], vec![scratch.path().to_path_buf()]), args)?;
    if !done.output.status.success() {
        bail!(
            "the device self-test failed in the sandbox ({} on {}): {}",
            done.output.status,
            setup.device.harness_arg(),
            tail_of(&done.output.stderr)
        );
    }
    serde_json::from_value(json).context("the device self-test printed no calibration")
}

/// The calibration must be of the device asked for: on a GPU, CUDA with exactly
/// the one device the job may see, and measured numbers.
pub fn expect(device: Device, c: &Calibration) -> Result<()> {
    let measured = c.matmul_2048_fp32_ms.is_finite() && c.matmul_2048_fp32_ms > 0.0 && c.matmul_peak_tflops > 0.0;
    match device {
        Device::Cpu if c.device.kind == "cpu" && measured => Ok(()),
        Device::Cuda(_) if c.device.kind == "cuda" && c.device.cuda_devices == 1 && measured => Ok(()),
        _ => bail!(
            "the device self-test asked for {} and measured {} with {} CUDA device(s) visible ({:.3} ms a matmul): \
             the GPU is not usable in the sandbox",
            device.harness_arg(),
            c.device.kind,
            c.device.cuda_devices,
            c.matmul_2048_fp32_ms
        ),
    }
}
