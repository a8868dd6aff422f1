//! Every `karpa-train` command that runs recipe code runs it confined by Landlock
//! (trainer/src/confine.rs) and still works: train, eval with --nats-out, probe,
//! replay and the causality check on `micro`, each with `--confine required`
//! and each saying so on stderr; and a validator's command refuses to run where
//! Landlock is missing instead of running unconfined.

use karpa_tests::{binary, corpus, demo_salt_file, run};
use std::ffi::{OsStr, OsString};

fn confined(r: &karpa_tests::Run, writable: &str) {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let line = r.stderr.lines().find(|l| l.contains("confined by Landlock")).unwrap_or_else(|| {
        panic!("no confinement line on stderr:\n{}", r.stderr);
    });
    assert!(line.contains("fully confined") && line.ends_with(&format!("writable: {writable}")), "{line}");
}

#[test]
fn micro_runs_every_stage_confined() {
    let k = binary("karpa-train");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let salt = demo_salt_file();
    run(&k, &[&"prepare", &"--config", &"micro", &"--input", &corpus(), &"--salt-file", &salt, &"--out", &data]).ok();
    let public = data.join("public");
    let go = |cmd: &str, extra: &[&dyn AsRef<OsStr>]| {
        let base: Vec<OsString> = [cmd, "--config", "micro", "--device", "cpu", "--confine", "required", "--data"]
            .iter()
            .map(OsString::from)
            .chain([public.clone().into_os_string()])
            .collect();
        let mut args: Vec<&dyn AsRef<OsStr>> = base.iter().map(|a| a as &dyn AsRef<OsStr>).collect();
        args.extend_from_slice(extra);
        run(&k, &args)
    };

    let run_dir = tmp.path().join("run");
    let r = go("train", &[&"--quiet", &"--out", &run_dir]);
    confined(&r, &format!("{}.partial", run_dir.display()));
    let ckpt = run_dir.join("checkpoints/step-40.safetensors");
    assert!(ckpt.exists(), "{}", r.stderr);

    let nats = tmp.path().join("nats.f32");
    let hidden = data.join("hidden");
    let r = go("eval", &[&"--split", &"hidden", &"--hidden", &hidden, &"--checkpoint", &ckpt, &"--nats-out", &nats]);
    confined(&r, "nothing");
    let scored = proof::causality::read_f32s(&nats).unwrap();
    assert!(!scored.is_empty() && scored.iter().all(|n| n.is_finite()), "{} nats", scored.len());

    let r = go("probe", &[&"--checkpoint", &ckpt]);
    confined(&r, "nothing");
    assert_eq!(r.json()["passed"], true);

    let r = go("replay", &[&"--run", &run_dir, &"--from-step", &"20", &"--steps", &"2", &"--tolerance", &"0"]);
    confined(&r, "nothing");
    assert_eq!(r.json()["passed"], true);

    let pairs = tmp.path().join("pairs.json");
    std::fs::write(&pairs, r#"[{"window": 0, "cut": 5}, {"window": 1, "cut": 9}, {"window": 0, "cut": 30}]"#).unwrap();
    let out = tmp.path().join("causality.f32");
    let r = go("causality", &[&"--checkpoint", &ckpt, &"--hidden", &hidden, &"--pairs", &pairs, &"--out", &out]);
    confined(&r, "nothing");
    assert_eq!(proof::causality::read_f32s(&out).unwrap().len() as u64, r.json()["positions"].as_u64().unwrap());
}

#[test]
fn a_validator_command_refuses_to_run_without_landlock() {
    // strace makes the kernel look Landlock-less: the ABI query fails with ENOSYS.
    let Ok(strace) = which("strace") else { panic!("strace is needed to hide Landlock from karpa-train") };
    let tmp = tempfile::tempdir().unwrap();
    let k = binary("karpa-train");
    let hide = ["-f", "-o", "/dev/null", "-e", "inject=landlock_create_ruleset:error=ENOSYS"];
    let out = std::process::Command::new(&strace)
        .args(hide)
        .arg(&k)
        .args(["probe", "--config", "micro", "--device", "cpu", "--data"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Refused before it opened anything (the data folder here does not even exist).
    assert!(stderr.contains("Landlock is missing or disabled") && !stderr.contains("manifest"), "{stderr}");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
        .ok_or(())
}
