//! The device self-test through the real sandbox: the built harness calibrates
//! inside it and reports the device it ran on; a calibration of another device
//! than the one configured is refused; and a GPU that is configured but absent
//! fails the first model run closed instead of running it on the CPU.

use karpa_bot::judge::evaluate::{build, run_harness};
use karpa_bot::judge::gpu_check::{calibrate_in_sandbox, expect};
use karpa_bot::judge_cmd::{public_setup, SandboxPaths};
use karpa_bot::sandbox::gpu::{Device, DeviceChoice};
use karpa_bot::sandbox::Sandbox;

#[test]
fn the_harness_calibrates_in_the_sandbox_and_a_missing_gpu_fails_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = karpa_tests::recipe_repo(tmp.path());
    let data = karpa_tests::micro_data(tmp.path());
    let target = karpa_tests::workspace_root().join("target/recipes");
    let paths = SandboxPaths { data: &data.join("public"), target_dir: &target, libtorch: None };
    let mut setup = public_setup(&repo, &paths, DeviceChoice::Cpu).unwrap();
    let sandbox = Sandbox::new().unwrap();
    let recipe = karpa_bot::repo::RecipeRepo::open(&repo).unwrap();
    let tree = recipe.king(None).unwrap().tree;
    let bin = build(&sandbox, &setup, &recipe, tree, &tmp.path().join("work")).unwrap().unwrap();

    // On the CPU: a real calibration, of the CPU, inside the sandbox.
    let c = calibrate_in_sandbox(&sandbox, &setup, &bin).unwrap();
    assert_eq!(c.device.kind, "cpu", "{c:?}");
    assert!(c.matmul_2048_fp32_ms > 0.0 && c.matmul_peak_tflops > 0.0, "{c:?}");
    expect(Device::Cpu, &c).unwrap();
    // The same numbers do not pass for a GPU: a job configured for one refuses them.
    let err = expect(Device::Cuda(0), &c).unwrap_err().to_string();
    assert!(err.contains("not usable in the sandbox"), "{err}");

    // A GPU configured where there is none: the first model run fails, nothing runs on the CPU.
    setup.device = Device::Cuda(0);
    let err = run_harness(&sandbox, &setup, &bin, vec![], vec![], vec!["--version".into()]).unwrap_err();
    assert!(format!("{err:#}").contains("nvidia"), "{err:#}");
}
