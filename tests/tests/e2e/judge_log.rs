//! Log plausibility on a real `micro` run: the honest log passes; every forgery
//! of the catalog gets its specific finding.

use karpa_bot::judge::plausibility::check_log;
use karpa_tests::{binary, corpus, demo_salt_file, run, workspace_root};
use proof::calibration::Calibration;
use proof::config::ProtocolConfig;
use serde_json::Value;

struct Fixture {
    log: String,
    cfg: ProtocolConfig,
    calibration: Calibration,
    _tmp: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let k = binary("karpa-train");
    let data = tmp.path().join("data");
    run(
        &k,
        &[&"prepare", &"--config", &"micro", &"--input", &corpus(), &"--salt-file", &demo_salt_file(), &"--out", &data],
    )
    .ok();
    let run_dir = tmp.path().join("run");
    run(&k, &[&"train", &"--config", &"micro", &"--quiet", &"--data", &data.join("public"), &"--out", &run_dir]).ok();
    let cal = tmp.path().join("calibration.json");
    run(&k, &[&"calibrate", &"--device", &"cpu", &"--out", &cal]).ok();
    let text = std::fs::read_to_string(workspace_root().join("trainer/configs/micro.toml")).unwrap();
    Fixture {
        log: std::fs::read_to_string(run_dir.join("log.jsonl")).unwrap(),
        cfg: ProtocolConfig::from_toml("micro", &text).unwrap(),
        calibration: serde_json::from_slice(&std::fs::read(&cal).unwrap()).unwrap(),
        _tmp: tmp,
    }
}

/// The log with `edit` applied to every parsed line.
fn edited(log: &str, mut edit: impl FnMut(&mut Value)) -> String {
    log.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            edit(&mut v);
            format!("{v}\n")
        })
        .collect()
}

fn codes(f: &Fixture, log: &str) -> Vec<String> {
    check_log(log, &f.cfg, &f.calibration).iter().map(|x| x.code.to_string()).collect()
}

#[test]
fn the_honest_log_passes_and_each_forgery_is_named() {
    let f = fixture();
    assert_eq!(codes(&f, &f.log), Vec::<&str>::new());

    // Training past the budget: one more step appended before the end line.
    let mut lines: Vec<&str> = f.log.lines().collect();
    let end = lines.pop().unwrap();
    let last_step = lines.iter().rev().find(|l| l.contains(r#""kind":"step""#)).unwrap().to_string();
    let mut extra: Value = serde_json::from_str(&last_step).unwrap();
    extra["step"] = (extra["step"].as_u64().unwrap() + 1).into();
    extra["tokens_seen"] = (extra["tokens_seen"].as_u64().unwrap() + 512).into();
    let past = format!("{}\n{extra}\n{end}\n", lines.join("\n"));
    assert!(codes(&f, &past).iter().any(|c| c == "log.budget"), "{:?}", codes(&f, &past));

    // A forged start: a pretrained model's first loss.
    let pretrained = edited(&f.log, |v| {
        if v["kind"] == "step" && v["step"] == 1 {
            v["loss"] = 2.0.into();
        }
    });
    assert_eq!(codes(&f, &pretrained), vec!["log.initial_loss"]);

    // Time running backwards, a NaN, a skipped step, another seed.
    let backwards = edited(&f.log, |v| {
        if v["kind"] == "step" && v["step"] == 10 {
            v["elapsed_s"] = 0.0.into();
        }
    });
    assert_eq!(codes(&f, &backwards), vec!["log.time"]);
    let skipped =
        f.log.lines().filter(|l| !l.contains(r#""kind":"step","step":7,"#)).collect::<Vec<_>>().join("\n") + "\n";
    assert!(codes(&f, &skipped).iter().any(|c| c == "log.steps"), "{:?}", codes(&f, &skipped));
    let reseeded = edited(&f.log, |v| {
        if v["kind"] == "start" {
            v["seed"] = 7.into();
        }
    });
    assert_eq!(codes(&f, &reseeded), vec!["log.config"]);

    // Impossible speed: the same tokens in a thousandth of the time.
    let fast = edited(&f.log, |v| {
        if let Some(t) = v.get("elapsed_s").and_then(|t| t.as_f64()) {
            v["elapsed_s"] = (t / 1e6).into();
        }
    });
    assert_eq!(codes(&f, &fast), vec!["log.throughput"]);

    // Garbage.
    assert_eq!(codes(&f, "{\"kind\":\"step\"}\n"), vec!["log.schema"]);
}
