//! Landlock as `karpa-train` applies it: `examples/confine_probe.rs` opens what a
//! command opens, confines itself, and tries what a hostile recipe would (see
//! there); here its verdict is checked, and the kernel check a validator's
//! commands start with.

use std::process::Command;
use trainer::confine::{self, Strictness};

/// The example binary cargo builds beside this test (`cargo test` builds examples).
fn probe_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|d| d.parent()).unwrap().join("examples/confine_probe");
    assert!(bin.exists(), "{} is not built (cargo test builds the crate's examples)", bin.display());
    bin
}

#[test]
fn a_confined_process_cannot_open_files_but_still_computes() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(probe_binary()).arg(root.path()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("CONFINED-OK"), "the probe failed:\n{stdout}\n{stderr}");
    assert!(!stderr.contains("Error in cpuinfo"), "libtorch's lazy set-up failed:\n{stderr}");
    // A recipe's print cannot pass for a result: it lands on stderr.
    assert!(!stdout.contains("forged") && stderr.contains("forged"), "stdout:\n{stdout}\nstderr:\n{stderr}");
}

#[test]
fn the_kernel_is_checked_before_anything_opens() {
    // This machine has Landlock; a validator's commands pass the check here.
    assert!(confine::abi() >= confine::MIN_ABI, "Landlock ABI {} on the test machine", confine::abi());
    confine::check(Strictness::Required).unwrap();
    confine::check(Strictness::BestEffort).unwrap();
}
