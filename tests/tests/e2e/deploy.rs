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

/// The GitHub App manifest asks for exactly what the bot uses: it writes checks,
/// contents (merges, tags, CHANGELOG) and pull requests (comments), reads
/// metadata, and subscribes to the events the webhook acts on.
#[test]
fn the_app_manifest_matches_what_the_bot_uses() {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(workspace_root().join(".github/karpa-app-manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        m["default_permissions"],
        serde_json::json!({"checks": "write", "contents": "write", "pull_requests": "write", "metadata": "read"})
    );
    let events: Vec<&str> = m["default_events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    for e in &events {
        let payload = std::fs::read(workspace_root().join(format!(
            "tests/fixtures/webhooks/{e}.{}.json",
            match *e {
                "pull_request" => "opened",
                "check_run" => "rerequested",
                _ => "created",
            }
        )))
        .unwrap();
        let parsed = karpa_bot::server::events::classify(e, &payload, karpa_tests::TEST_APP_ID as i64);
        assert!(parsed.is_ok(), "the bot cannot read the {e} events it subscribes to: {parsed:?}");
    }
    assert_eq!(events, ["pull_request", "check_run", "issue_comment"]);
}
