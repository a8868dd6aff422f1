//! `micro` end to end through the real `karpa-train` binary on the real corpus:
//! prepare → train → eval (hidden) → probe → replay, and the bad inputs around them.

use karpa_tests::{binary, corpus, demo_salt_file, run};
use proof::log::{parse_log, steps, LogLine};
use std::path::{Path, PathBuf};

fn karpa_train() -> PathBuf {
    binary("karpa-train")
}

fn prepare(dir: &Path) -> PathBuf {
    let out = dir.join("data");
    let r = run(
        &karpa_train(),
        &[&"prepare", &"--config", &"micro", &"--input", &corpus(), &"--salt-file", &demo_salt_file(), &"--out", &out],
    )
    .ok();
    assert_eq!(r.json()["matches_config_pin"], true, "prepare no longer reproduces the micro pin:\n{}", r.stdout);
    out
}

fn train(data: &Path, out: &Path) -> Vec<LogLine> {
    run(
        &karpa_train(),
        &[
            &"train",
            &"--config",
            &"micro",
            &"--device",
            &"cpu",
            &"--quiet",
            &"--data",
            &data.join("public"),
            &"--out",
            &out,
        ],
    )
    .ok();
    parse_log(&std::fs::read_to_string(out.join("log.jsonl")).unwrap()).unwrap()
}

fn hidden_bpb(data: &Path, ckpt: &Path) -> f64 {
    let r = run(
        &karpa_train(),
        &[
            &"eval",
            &"--config",
            &"micro",
            &"--split",
            &"hidden",
            &"--data",
            &data.join("public"),
            &"--hidden",
            &data.join("hidden"),
            &"--checkpoint",
            &ckpt,
        ],
    )
    .ok();
    r.json()["val_bpb"].as_f64().unwrap()
}

#[test]
fn micro_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let run_dir = tmp.path().join("run");
    let log = train(&data, &run_dir);

    // The budget is exact and the steps are contiguous.
    let step_lines: Vec<_> = steps(&log).collect();
    assert_eq!(step_lines.last().unwrap().tokens_seen, 20_480);
    assert!(step_lines.iter().enumerate().all(|(i, s)| s.step == i as u64 + 1));
    assert!(
        (step_lines[0].loss - (512f64).ln()).abs() < 0.3,
        "initial loss {} is not near ln(vocab)",
        step_lines[0].loss
    );

    // Checkpoints at 25/50/75/100 %, each file matching the digest the log recorded.
    let ckpts: Vec<_> =
        log.iter().filter_map(|l| if let LogLine::Checkpoint(c) = l { Some(c.clone()) } else { None }).collect();
    assert_eq!(ckpts.iter().map(|c| c.tokens_seen).collect::<Vec<_>>(), vec![5120, 10240, 15360, 20480]);
    for c in &ckpts {
        assert_eq!(proof::sha256_file(&run_dir.join(&c.path)).unwrap(), c.sha256);
    }
    let state: proof::state::FinalState =
        serde_json::from_slice(&std::fs::read(run_dir.join("final_state.json")).unwrap()).unwrap();
    assert_eq!(state.log_sha256, proof::sha256_file(&run_dir.join("log.jsonl")).unwrap());
    let check = run(&binary("karpa"), &[&"check-run", &run_dir]).ok();
    assert!(check.stdout.contains("consistent"), "{}", check.stdout);

    // Hidden bpb falls as training goes on.
    let first = hidden_bpb(&data, &run_dir.join(&ckpts[0].path));
    let last = hidden_bpb(&data, &run_dir.join(&ckpts[3].path));
    assert!(last < first - 0.05, "hidden bpb did not fall: {first} -> {last}");

    // The causality probe passes on the trained model.
    let probe = run(
        &karpa_train(),
        &[
            &"probe",
            &"--config",
            &"micro",
            &"--data",
            &data.join("public"),
            &"--checkpoint",
            &run_dir.join(&ckpts[3].path),
        ],
    )
    .ok();
    assert_eq!(probe.json()["passed"], true);

    // Replay from the 50 % checkpoint reproduces the logged losses exactly on CPU.
    let replay = run(
        &karpa_train(),
        &[
            &"replay",
            &"--config",
            &"micro",
            &"--data",
            &data.join("public"),
            &"--run",
            &run_dir,
            &"--from-step",
            &"20",
            &"--steps",
            &"5",
            &"--tolerance",
            &"0",
        ],
    )
    .ok();
    let report = replay.json();
    assert_eq!(report["report"]["steps"].as_array().unwrap().len(), 5);
    assert_eq!(report["report"]["max_abs_diff"].as_f64().unwrap(), 0.0, "{}", replay.stdout);

    // Same seed, same machine: the same log, timing fields aside.
    let again = train(&data, &tmp.path().join("run2"));
    let losses = |l: &[LogLine]| {
        steps(l).map(|s| (s.step, s.loss.to_bits(), s.grad_norm.to_bits(), s.lr.to_bits())).collect::<Vec<_>>()
    };
    assert_eq!(losses(&log), losses(&again));
    let ck = |l: &[LogLine]| {
        l.iter()
            .filter_map(|x| if let LogLine::Checkpoint(c) = x { Some(c.sha256.clone()) } else { None })
            .collect::<Vec<_>>()
    };
    assert_eq!(ck(&log), ck(&again), "checkpoints differ between identical runs");

    generate_from(&data, &run_dir.join(&ckpts[3].path));
}

/// `karpa-train generate` on micro's trained checkpoint: the same seed gives the
/// same text, greedy is top-k 1, and bad input is named.
fn generate_from(data: &Path, ckpt: &Path) {
    let public = data.join("public");
    let generate_with = |ckpt: &Path, extra: &[&str]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"generate", &"--config", &"micro", &"--data", &public, &"--checkpoint", &ckpt];
        args.extend(extra.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        run(&karpa_train(), &args)
    };
    let generate = |extra: &[&str]| generate_with(ckpt, extra);
    let text = |seed: &str, extra: &[&str]| {
        let args = [&["--prompt", "KING HENRY:", "--tokens", "48", "--seed", seed][..], extra].concat();
        generate(&args).ok().stdout
    };
    let a = text("1", &["--top-k", "20"]);
    assert!(a.starts_with("KING HENRY:") && a.len() > "KING HENRY:".len() + 20, "{a:?}");
    assert_eq!(a, text("1", &["--top-k", "20"]), "the same seed, the same text");
    assert_ne!(a, text("2", &["--top-k", "20"]), "another seed, another text");
    let greedy = text("1", &["--temperature", "0"]);
    assert_eq!(greedy, text("9", &["--top-k", "1"]), "top-k 1 is greedy, whatever the seed");
    // Bad input: an empty prompt, a token the tokenizer does not have, another config's checkpoint.
    let r = generate(&["--prompt", ""]);
    assert!(r.code == 2 && r.stderr.contains("the prompt is empty"), "{}", r.stderr);
    let r = generate(&["--prompt-tokens", "1,5,999999"]);
    assert!(r.code == 2 && r.stderr.contains("token 999999 is not in the tokenizer's vocabulary"), "{}", r.stderr);
    let r = generate(&["--prompt", "x", "--top-p", "0"]);
    assert!(r.code == 2 && r.stderr.contains("--top-p"), "{}", r.stderr);
    let mut header = std::fs::read(ckpt).unwrap();
    // The config inside the header's metadata, a JSON string in JSON: \"micro\".
    let at = header.windows(9).position(|w| w == br#"\"micro\""#).expect("the config in the header");
    header[at + 2..at + 7].copy_from_slice(b"tiny_");
    let other = ckpt.with_extension("other");
    std::fs::write(&other, header).unwrap();
    let r = generate_with(&other, &["--prompt", "x"]);
    assert!(r.code == 2 && r.stderr.contains("a checkpoint of config tiny_, not micro"), "{}", r.stderr);
}

#[test]
fn a_tampered_log_fails_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let run_dir = tmp.path().join("run");
    train(&data, &run_dir);
    let log_path = run_dir.join("log.jsonl");
    let text = std::fs::read_to_string(&log_path).unwrap();
    // Claim a better loss at step 22 than the run really had.
    let forged: String = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["kind"] == "step" && v["step"] == 22 {
                v["loss"] = serde_json::json!(v["loss"].as_f64().unwrap() - 0.05);
            }
            format!("{v}\n")
        })
        .collect();
    std::fs::write(&log_path, forged).unwrap();
    let r = run(
        &karpa_train(),
        &[
            &"replay",
            &"--config",
            &"micro",
            &"--data",
            &data.join("public"),
            &"--run",
            &run_dir,
            &"--from-step",
            &"20",
            &"--steps",
            &"3",
        ],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["passed"], false);
    // The validator's offline check sees the log no longer matches the final state.
    let r = run(&binary("karpa"), &[&"check-run", &run_dir]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("log.digest"), "{}", r.stdout);
}

#[test]
fn bad_inputs_fail_clearly_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let k = karpa_train();

    let r = run(&k, &[&"train", &"--config", &"huge", &"--data", &tmp.path(), &"--out", &tmp.path().join("x")]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown config \"huge\""), "{}", r.stderr);

    // An unreadable corpus: the error names the file and no output folder appears.
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("a.txt"), b"fine text").unwrap();
    std::fs::write(bad.join("b.txt"), [0xffu8, 0xfe, 0x00]).unwrap();
    let out = tmp.path().join("bad-data");
    let r = run(
        &k,
        &[&"prepare", &"--config", &"micro", &"--input", &bad, &"--salt-file", &demo_salt_file(), &"--out", &out],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("b.txt") && r.stderr.contains("UTF-8"), "{}", r.stderr);
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "prepare left partial output behind");

    // A corrupt shard: named in the error, and no run folder is left behind.
    let data = prepare(tmp.path());
    let shard = data.join("public/train-00000.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&shard, &bytes).unwrap();
    let out = tmp.path().join("run");
    let r = run(&k, &[&"train", &"--config", &"micro", &"--quiet", &"--data", &data.join("public"), &"--out", &out]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("train-00000.bin is corrupt"), "{}", r.stderr);
    assert!(!out.exists());

    // Data that is not the pinned data is refused.
    let manifest = data.join("public/manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"documents\"", " \"documents\"")).unwrap();
    let r = run(&k, &[&"train", &"--config", &"micro", &"--quiet", &"--data", &data.join("public"), &"--out", &out]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not the one config micro pins"), "{}", r.stderr);
}

#[test]
fn truncated_checkpoint_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let run_dir = tmp.path().join("run");
    train(&data, &run_dir);
    let ckpt = run_dir.join("checkpoints/step-40.safetensors");
    let bytes = std::fs::read(&ckpt).unwrap();
    let cut = tmp.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r =
        run(&karpa_train(), &[&"eval", &"--config", &"micro", &"--data", &data.join("public"), &"--checkpoint", &cut]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cut.safetensors"), "{}", r.stderr);
}

#[test]
fn calibrate_writes_a_plausible_calibration() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("calibration.json");
    run(&karpa_train(), &[&"calibrate", &"--device", &"cpu", &"--out", &out]).ok();
    let c: proof::calibration::Calibration = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(c.device.kind, "cpu");
    assert!(c.matmul_2048_fp32_ms > 0.0 && c.sdpa_ms > 0.0 && c.memory_gbps > 0.0 && c.matmul_peak_tflops > 0.0);
    // A 2-core CPU is far slower than an H100 at a 2048² fp32 matmul.
    assert!(c.h100_equivalence < 0.5, "{c:?}");
    assert!((c.h100_equivalence - 0.51 / c.matmul_2048_fp32_ms).abs() < 1e-12);
    assert!((c.h100_hours(3600.0) - c.h100_equivalence).abs() < 1e-12);
}

/// A miner's machine is not idle for the validator's convenience: calibrated once
/// while other processes spin on every core and once more after (as `prove` does,
/// before and after training), the calibration keeps the machine's best.
#[test]
fn a_calibration_taken_under_load_is_kept_at_the_machines_best() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("calibration.json");
    let read = || -> proof::calibration::Calibration { serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap() };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let mut busy: Vec<std::process::Child> = (0..cores)
        .map(|_| std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap())
        .collect();
    run(&karpa_train(), &[&"calibrate", &"--device", &"cpu", &"--out", &out]).ok();
    for b in &mut busy {
        let _ = b.kill();
        let _ = b.wait();
    }
    let loaded = read();
    run(&karpa_train(), &[&"calibrate", &"--device", &"cpu", &"--keep-best", &"--out", &out]).ok();
    let best = read();
    assert!(best.matmul_peak_tflops >= loaded.matmul_peak_tflops, "{best:?} vs {loaded:?}");
    assert!(best.matmul_2048_fp32_ms <= loaded.matmul_2048_fp32_ms);
    assert!((best.h100_equivalence - 0.51 / best.matmul_2048_fp32_ms).abs() < 1e-12);
    eprintln!(
        "peak under load {:.1} GFLOP/s, kept {:.1} GFLOP/s",
        loaded.matmul_peak_tflops * 1e3,
        best.matmul_peak_tflops * 1e3
    );
    // The earlier calibration is really merged, not replaced: a peak no fresh
    // measurement reaches survives a --keep-best run.
    let mut record = best.clone();
    record.matmul_peak_tflops *= 1000.0;
    std::fs::write(&out, serde_json::to_vec(&record).unwrap()).unwrap();
    run(&karpa_train(), &[&"calibrate", &"--device", &"cpu", &"--keep-best", &"--out", &out]).ok();
    assert_eq!(read().matmul_peak_tflops, record.matmul_peak_tflops);
    // Another machine's calibration is not merged.
    let mut other = best.clone();
    other.device.name = "another CPU".into();
    std::fs::write(&out, serde_json::to_vec(&other).unwrap()).unwrap();
    let r = run(&karpa_train(), &[&"calibrate", &"--device", &"cpu", &"--keep-best", &"--out", &out]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("calibrates another device"), "{}", r.stderr);
}
