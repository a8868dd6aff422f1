//! `karpa bundle verify` through the real binary: a sealed bundle passes, a
//! tampered one fails with the finding named.

use karpa_tests::{binary, make_bundle, run};

#[test]
fn verify_passes_then_names_the_tampered_file() {
    let tmp = tempfile::tempdir().unwrap();
    make_bundle(tmp.path());
    let ok = run(&binary("karpa"), &[&"bundle", &"verify", &tmp.path()]).ok();
    assert!(ok.stdout.contains("ok: manifest"), "{}", ok.stdout);

    // Same size, other bytes: only the digest can tell.
    let ck = tmp.path().join("checkpoints/step-4.safetensors");
    let mut bytes = std::fs::read(&ck).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&ck, bytes).unwrap();
    let bad = run(&binary("karpa"), &[&"bundle", &"verify", &"--json", &tmp.path()]);
    assert_eq!(bad.code, 1, "{}", bad.stdout);
    let findings = bad.json()["findings"].as_array().unwrap().clone();
    assert_eq!(findings.len(), 1, "{findings:?}"); // the manifest (and so the hotkey's signature) still holds
    assert_eq!(findings[0]["code"], "file.digest");
    assert_eq!(findings[0]["file"], "checkpoints/step-4.safetensors");
}

#[test]
fn verify_of_a_missing_folder_is_an_error() {
    let r = run(&binary("karpa"), &[&"bundle", &"verify", &"/nonexistent/bundle"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not a bundle folder or file"), "{}", r.stderr);
}

#[test]
fn a_sealed_bundle_hides_its_files_and_opens_only_for_the_validator() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    make_bundle(&bundle);
    let karpa = binary("karpa");
    let keygen = |name: &str| {
        let text = run(&karpa, &[&"bundle", &"keygen"]).ok().stdout;
        let path = tmp.path().join(name);
        std::fs::write(&path, &text).unwrap();
        let recipient = text.lines().next().unwrap().trim_start_matches("# recipient: ").to_string();
        (path, recipient)
    };
    let (validator, recipient) = keygen("validator.key");
    let (stranger, _) = keygen("stranger.key");

    let sealed = tmp.path().join("sealed");
    run(&karpa, &[&"bundle", &"seal", &bundle, &"--to", &recipient, &"--out", &sealed]).ok();
    let mut names: Vec<_> =
        std::fs::read_dir(&sealed).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["manifest.json", "miner.sig.json", "payload.tar.age"]);
    let payload = std::fs::read(sealed.join("payload.tar.age")).unwrap();
    assert!(!payload.windows(10).any(|w| w == b"patch.diff"), "file names readable in the sealed payload");

    let r = run(&karpa, &[&"bundle", &"open", &sealed, &"--identity", &stranger, &"--out", &tmp.path().join("x")]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cannot decrypt"), "{}", r.stderr);
    assert!(!tmp.path().join("x").exists());

    let opened = tmp.path().join("opened");
    run(&karpa, &[&"bundle", &"open", &sealed, &"--identity", &validator, &"--out", &opened]).ok();
    let verify = run(&karpa, &[&"bundle", &"verify", &opened]).ok();
    assert!(verify.stdout.contains("all hold"), "{}", verify.stdout);
}
