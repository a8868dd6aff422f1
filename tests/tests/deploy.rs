//! The images in deploy/ lint clean with hadolint (no Docker engine runs here, so
//! linting is the check we can make).

use karpa_tests::{run, workspace_root};

#[test]
fn dockerfiles_lint_clean() {
    let hadolint = workspace_root().join(".venv/bin/hadolint");
    assert!(hadolint.exists(), "hadolint is missing; run `cargo xtask test`");
    let files: Vec<_> = std::fs::read_dir(workspace_root().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("Dockerfile"))
        .collect();
    assert!(!files.is_empty());
    for f in files {
        let r = run(&hadolint, &[&f]);
        assert_eq!(r.code, 0, "{}:\n{}{}", f.display(), r.stdout, r.stderr);
    }
}
