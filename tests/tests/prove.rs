//! `karpa prove` end to end: a real recipe repository (a copy of this workspace,
//! tagged recipe-v0.1.0), a real patch, `karpa-train` built from the patched tree,
//! real training on `micro`, and a bundle that `karpa bundle verify` accepts.

use karpa_tests::{binary, corpus, demo_salt_file, run, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Karpa Test", "-c", "user.email=test@karpa.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A recipe repository holding this workspace's tracked files, tagged recipe-v0.1.0.
fn recipe_repo(dir: &Path) -> PathBuf {
    let root = workspace_root();
    let repo = dir.join("recipe-repo");
    for file in git(&root, &["ls-files", "-z"]).split('\0').filter(|f| !f.is_empty()) {
        let dst = repo.join(file);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(root.join(file), &dst).unwrap();
    }
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "recipe v0.1.0"]);
    git(&repo, &["tag", "-a", "recipe-v0.1.0", "-m", "recipe v0.1.0"]);
    repo
}

/// A patch that changes micro's peak learning rate, made with git itself.
fn lr_patch(repo: &Path, out: &Path) -> PathBuf {
    let toml = repo.join("recipe/recipe.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let changed = text.replacen("lr = 3e-3", "lr = 5e-3", 1);
    assert_ne!(text, changed);
    std::fs::write(&toml, changed).unwrap();
    let patch = out.join("lr.diff");
    std::fs::write(&patch, git(repo, &["diff"])).unwrap();
    git(repo, &["checkout", "--", "."]);
    patch
}

#[test]
fn prove_builds_the_patched_recipe_and_seals_a_verifiable_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = recipe_repo(tmp.path());
    let patch = lr_patch(&repo, tmp.path());
    let data = tmp.path().join("data");
    run(
        &binary("karpa-train"),
        &[&"prepare", &"--config", &"micro", &"--input", &corpus(), &"--salt-file", &demo_salt_file(), &"--out", &data],
    )
    .ok();
    let rationale = tmp.path().join("why.md");
    std::fs::write(&rationale, "A higher peak learning rate suits a model this small.\n").unwrap();
    let bundle = tmp.path().join("bundle");
    let prove = |patch: &Path, out: &Path| {
        run(
            &binary("karpa"),
            &[
                &"prove",
                &"--repo",
                &repo,
                &"--patch",
                &patch,
                &"--config",
                &"micro",
                &"--data",
                &data.join("public"),
                &"--hotkey",
                &"//Alice",
                &"--github-login",
                &"octo",
                &"--rationale",
                &rationale,
                &"--out",
                &out,
                &"--target-dir",
                &workspace_root().join("target/recipes"),
                &"--libtorch",
                &workspace_root().join(".karpa/libtorch"),
            ],
        )
    };
    prove(&patch, &bundle).ok();

    let verify = run(&binary("karpa"), &[&"bundle", &"verify", &bundle]).ok();
    assert!(verify.stdout.contains("all hold"), "{}", verify.stdout);

    let manifest: proof::bundle::BundleManifest =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.king_tag, "recipe-v0.1.0");
    assert_eq!(manifest.king_commit, git(&repo, &["rev-parse", "recipe-v0.1.0^{commit}"]).trim());
    assert_eq!(manifest.miner_hotkey, "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY");
    // git itself agrees on the patched tree.
    git(&repo, &["apply", "--cached", patch.to_str().unwrap()]);
    assert_eq!(manifest.patched_tree, git(&repo, &["write-tree"]).trim());
    git(&repo, &["reset", "-q"]);

    // The bundle was trained by the patched recipe: its peak learning rate is 5e-3.
    let log = proof::log::parse_log(&std::fs::read_to_string(bundle.join("log.jsonl")).unwrap()).unwrap();
    let peak = proof::log::steps(&log).map(|s| s.lr).fold(0.0, f64::max);
    assert!((peak - 5e-3).abs() < 1e-12, "peak lr {peak}");
    assert!(bundle.join("checkpoints/step-40.safetensors").exists());
    assert!(!tmp.path().join("bundle.partial").exists());
}

#[test]
fn prove_refuses_a_patch_to_the_harness_before_doing_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = recipe_repo(tmp.path());
    let eval = repo.join("trainer/src/eval.rs");
    std::fs::write(&eval, std::fs::read_to_string(&eval).unwrap().replace("LN_2", "LN_10")).unwrap();
    let patch = tmp.path().join("cheat.diff");
    std::fs::write(&patch, git(&repo, &["diff"])).unwrap();
    std::fs::write(tmp.path().join("why.md"), "trust me").unwrap();
    let out = tmp.path().join("bundle");
    let r = run(
        &binary("karpa"),
        &[
            &"prove",
            &"--repo",
            &repo,
            &"--patch",
            &patch,
            &"--config",
            &"micro",
            &"--data",
            &tmp.path(),
            &"--hotkey",
            &"//Alice",
            &"--github-login",
            &"octo",
            &"--rationale",
            &tmp.path().join("why.md"),
            &"--out",
            &out,
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("trainer/src/eval.rs") && r.stderr.contains("outside the patchable paths"),
        "{}",
        r.stderr
    );
    assert!(!out.exists() && !tmp.path().join("bundle.partial").exists());
}

#[test]
fn prove_refuses_recipe_code_the_judge_would_reject() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = recipe_repo(tmp.path());
    let model = repo.join("recipe/src/model.rs");
    let text = std::fs::read_to_string(&model).unwrap();
    let cheat = text.replacen(
        "    fn forward(&self, idx: &Tensor) -> Tensor {\n",
        "    fn forward(&self, idx: &Tensor) -> Tensor {\n        let _peek = std::fs::read(\"/validator/hidden/hidden-00000.bin\");\n",
        1,
    );
    assert_ne!(text, cheat);
    std::fs::write(&model, cheat).unwrap();
    let patch = tmp.path().join("peek.diff");
    std::fs::write(&patch, git(&repo, &["diff"])).unwrap();
    git(&repo, &["checkout", "--", "."]);
    std::fs::write(tmp.path().join("why.md"), "better data").unwrap();
    let out = tmp.path().join("bundle");
    let r = run(
        &binary("karpa"),
        &[
            &"prove",
            &"--repo",
            &repo,
            &"--patch",
            &patch,
            &"--config",
            &"micro",
            &"--data",
            &tmp.path(),
            &"--hotkey",
            &"//Alice",
            &"--github-login",
            &"octo",
            &"--rationale",
            &tmp.path().join("why.md"),
            &"--out",
            &out,
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("judge would reject")
            && r.stderr.contains("recipe/src/model.rs:")
            && r.stderr.contains("scan.io"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
}
