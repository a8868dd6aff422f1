//! `karpa submit` against the strict fake GitHub: the PR carries a locator the
//! validator can parse back to exactly the packed file; a second submit finds the
//! open PR instead of opening another; a bad token changes nothing.

use karpa_tests::fake_github::FakeGitHub;
use karpa_tests::{binary, make_bundle, run};
use proof::locator::Locator;
use std::process::Command;

const TOKEN: &str = "ghp_test_token";
const REPO: &str = "karpa/recipe";

fn submit(gh: &FakeGitHub, file: &std::path::Path, token: &str) -> karpa_tests::Run {
    let out = Command::new(binary("karpa"))
        .args([
            "submit",
            "--repo",
            REPO,
            "--head",
            "octo:faster-warmup",
            "--bundle-url",
            "https://example.org/b.tar",
            "--api-url",
            &gh.url,
        ])
        .arg("--bundle-file")
        .arg(file)
        .env("GITHUB_TOKEN", token)
        .output()
        .unwrap();
    karpa_tests::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn submit_opens_one_pr_whose_locator_names_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = make_bundle(&tmp.path().join("bundle"));
    let file = tmp.path().join("bundle.tar");
    run(&binary("karpa"), &[&"bundle", &"pack", &tmp.path().join("bundle"), &"--out", &file]).ok();
    // The packed file verifies as it is.
    run(&binary("karpa"), &[&"bundle", &"verify", &file]).ok();

    let gh = FakeGitHub::start(&[REPO], TOKEN);
    let first = submit(&gh, &file, TOKEN).ok();
    assert!(first.stdout.contains("pull request #1 opened"), "{}", first.stdout);
    let again = submit(&gh, &file, TOKEN).ok();
    assert!(again.stdout.contains("#1 already open"), "{}", again.stdout);

    let pulls = gh.pulls(REPO);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0]["head"]["label"], "octo:faster-warmup");
    assert!(pulls[0]["title"].as_str().unwrap().starts_with("[karpa] micro: Warm up for longer."));
    let loc = Locator::parse_from_body(pulls[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(loc.sha256, proof::sha256_file(&file).unwrap());
    assert_eq!(loc.bundle_digest, manifest.digest());
    gh.assert_clean();
}

#[test]
fn a_bad_token_or_a_broken_bundle_opens_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    make_bundle(&tmp.path().join("bundle"));
    let file = tmp.path().join("bundle.tar");
    run(&binary("karpa"), &[&"bundle", &"pack", &tmp.path().join("bundle"), &"--out", &file]).ok();
    let gh = FakeGitHub::start(&[REPO], TOKEN);

    let r = submit(&gh, &file, "wrong");
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(gh.pulls(REPO).is_empty());
    assert!(gh.ledger.lock().unwrap().unexpected.iter().all(|u| u.contains("without a valid token")));

    // A bundle whose log was changed after signing is refused before any request.
    std::fs::write(tmp.path().join("bundle/log.jsonl"), "log.jsonL\n").unwrap();
    let broken = tmp.path().join("broken.tar");
    run(&binary("karpa"), &[&"bundle", &"pack", &tmp.path().join("bundle"), &"--out", &broken]).ok();
    gh.ledger.lock().unwrap().unexpected.clear();
    let r = submit(&gh, &broken, TOKEN);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("does not verify"), "{}", r.stderr);
    assert!(gh.pulls(REPO).is_empty());
    gh.assert_clean();
}

/// `karpa mine`'s GitHub step on a proved change: the branch pushed to the
/// miner's fork, the packed bundle hosted by the miner's upload command, and the
/// pull request opened with the hosted file's locator; once, and nothing when
/// the upload fails.
#[test]
fn karpa_mine_opens_its_pull_request_on_github() {
    use karpa_bot::miner::mine::submit::{open_on_github, SubmitTo};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bundle = dir.join("bundle");
    let manifest = make_bundle(&bundle);
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    karpa_tests::git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("recipe.toml"), "[micro]\nlr = 1e-3\n").unwrap();
    karpa_tests::git(&repo, &["add", "-A"]);
    karpa_tests::git(&repo, &["-c", "user.name=m", "-c", "user.email=m@x", "commit", "-q", "-m", "lr"]);
    let commit = git2::Oid::from_str(karpa_tests::git(&repo, &["rev-parse", "HEAD"]).trim()).unwrap();
    let fork = dir.join("fork.git");
    karpa_tests::git(dir, &["init", "-q", "--bare", fork.to_str().unwrap()]);
    let hosted = dir.join("hosted");
    std::fs::create_dir_all(&hosted).unwrap();
    let gh = FakeGitHub::start(&[REPO], TOKEN);
    let to = |upload: &str| SubmitTo {
        github: Some(REPO.into()),
        push_to: Some(fork.to_string_lossy().into_owned()),
        bundle_upload: Some(upload.into()),
        github_api: gh.url.clone(),
        github_login: Some("octo".into()),
        ..Default::default()
    };
    let upload = format!(
        "cp \"$KARPA_BUNDLE_FILE\" {} && echo uploaded && echo https://bundles.example/b.tar",
        hosted.display()
    );

    let pr = open_on_github(&to(&upload), &repo, &bundle, (commit, "karpa-mine/trial-3"), ("octo", TOKEN)).unwrap();
    assert_eq!((pr.number, pr.existing), (1, false));
    let pushed = karpa_tests::git(&fork, &["rev-parse", "refs/heads/karpa-mine/trial-3"]);
    assert_eq!(pushed.trim(), commit.to_string(), "the fork holds the branch");
    let pulls = gh.pulls(REPO);
    assert_eq!(pulls[0]["head"]["label"], "octo:karpa-mine/trial-3");
    let loc = Locator::parse_from_body(pulls[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(loc.url, "https://bundles.example/b.tar");
    assert_eq!(
        loc.sha256,
        proof::sha256_file(&hosted.join("bundle.tar")).unwrap(),
        "the locator names the hosted file"
    );
    assert_eq!(loc.bundle_digest, manifest.digest());
    let again = open_on_github(&to(&upload), &repo, &bundle, (commit, "karpa-mine/trial-3"), ("octo", TOKEN)).unwrap();
    assert_eq!((again.number, again.existing), (1, true));

    // An upload that fails, or that names no https URL, opens nothing.
    for (upload, why) in [("exit 3", "upload command failed"), ("echo ftp://b.tar", "not the bundle's https URL")] {
        let err =
            open_on_github(&to(upload), &repo, &bundle, (commit, "karpa-mine/trial-4"), ("octo", TOKEN)).unwrap_err();
        assert!(format!("{err:#}").contains(why), "{err:#}");
    }
    assert_eq!(gh.pulls(REPO).len(), 1);
    gh.assert_clean();
}
