//! The local forge and `karpa lineage verify`: pull requests as refs plus bundle
//! paths in a bare repository, crowns released exactly as on GitHub (squash,
//! CHANGELOG.md, signed annotated tag, crown note), and the chain re-verified
//! offline from a plain clone (and its tags by git itself) — then broken on
//! purpose, one way at a time; and the trusted set handed on by a crown.
//!
//! The bundles here are real (assembled, attested and hotkey-signed by `proof`)
//! but their training files are placeholders: the verdicts are given, since the
//! judge has its own tests. What is under test is the record.

use karpa_bot::db::kings::Bump;
use karpa_bot::forge::crown::CrownOutcome;
use karpa_bot::forge::local::{LocalForge, PullState};
use karpa_bot::judge::decision::{Decision, Outcome};
use karpa_bot::judge::verdict::{StageReport, Verdict, VerdictClass};
use karpa_bot::lineage::keys::{ValidatorKeys, DEFAULT_TAGGER};
use karpa_bot::lineage::note::{self, NOTES_REF};
use karpa_bot::lineage::verify::{verify, verify_from, Report};
use karpa_tests::{binary, git, run};
use proof::bundle::BundleManifest;
use std::path::{Path, PathBuf};

/// A bare recipe repository at recipe-v0.1.0 and a working clone to make PRs in.
fn forge(dir: &Path) -> (PathBuf, PathBuf) {
    let seed = dir.join("seed");
    for (path, text) in [
        ("recipe/recipe.toml", "[tiny]\nlr = 2e-3\nbatch_rows = 16\n"),
        ("recipe/src/lib.rs", "pub fn model() {}\n"),
        ("trainer/src/lib.rs", "pub fn train() {}\n"),
        ("Cargo.lock", "# lock\n"),
        ("validators.toml", karpa_tests::TEST_TRUSTED_SET),
    ] {
        std::fs::create_dir_all(seed.join(path).parent().unwrap()).unwrap();
        std::fs::write(seed.join(path), text).unwrap();
    }
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "recipe v0.1.0"]);
    git(&seed, &["tag", "-a", "recipe-v0.1.0", "-m", "recipe v0.1.0"]);
    let bare = dir.join("recipe.git");
    git(dir, &["clone", "-q", "--bare", seed.to_str().unwrap(), bare.to_str().unwrap()]);
    let work = dir.join("work");
    git(dir, &["clone", "-q", bare.to_str().unwrap(), work.to_str().unwrap()]);
    (bare, work)
}

/// Commits `from` → `to` in recipe.toml on a new branch off `base`, pushes it,
/// and seals a bundle for it trained (on paper) against `king`.
fn pull_request(work: &Path, branch: &str, base: &str, king: &str, from: &str, to: &str) -> PathBuf {
    git(work, &["fetch", "-q", "--tags", "origin"]);
    git(work, &["checkout", "-q", "-b", branch, base]);
    let toml = work.join("recipe/recipe.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains(from));
    std::fs::write(&toml, text.replacen(from, to, 1)).unwrap();
    git(work, &["commit", "-q", "-am", branch]);
    git(work, &["push", "-q", "origin", branch]);
    let bundle = work.parent().unwrap().join(format!("bundle-{branch}"));
    std::fs::create_dir_all(bundle.join("checkpoints")).unwrap();
    std::fs::write(bundle.join("patch.diff"), git(work, &["diff", &format!("{king}^{{commit}}"), "HEAD"])).unwrap();
    let why = format!("Change {from} to {to}.\n\nIt trains faster at this scale.\n");
    std::fs::write(bundle.join("rationale.md"), why).unwrap();
    for f in ["log.jsonl", "calibration.json"] {
        std::fs::write(bundle.join(f), format!("placeholder {f} of {branch}")).unwrap();
    }
    karpa_tests::fake_run(&bundle, "tiny", "checkpoints/step-1.safetensors", branch.as_bytes());
    let repo = karpa_bot::repo::RecipeRepo::open(work).unwrap();
    let king_release = repo.king(Some(king)).unwrap();
    let claims = proof::bundle::RunClaims {
        king_tag: king.into(),
        king_commit: king_release.commit.to_string(),
        patched_tree: git(work, &["rev-parse", "HEAD^{tree}"]).trim().into(),
        config: "tiny".into(),
        seed: 1337,
        harness_digest: repo.harness_digest(king_release.tree).unwrap(),
        miner_hotkey: "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY".into(),
        github_login: "miner".into(),
        calibration: proof::intoto::CalibrationSummary {
            device: "cpu".into(),
            matmul_2048_fp32_ms: 60.0,
            h100_equivalence: 0.0085,
        },
        started_at: "2026-11-26T05:00:00Z".into(),
        finished_at: "2026-11-26T05:01:00Z".into(),
        log_chain: vec![proof::sha256_bytes(b"log")],
        tier: "software".into(),
    };
    let nonce: [u8; 32] = proof::sha256_bytes(branch.as_bytes()).as_str().as_bytes()[..32].try_into().unwrap();
    let m = proof::bundle::assemble(&bundle, &claims, &proof::dsse::generate_key().unwrap(), nonce).unwrap();
    proof::bundle::sign_as_miner(&bundle, &m, &proof::hotkey::keypair_from_uri("//Alice").unwrap()).unwrap();
    git(work, &["checkout", "-q", "--detach"]);
    bundle
}

/// A crowned verdict on `bundle` against `king`: the challenger `gain` below its mean.
fn crowned(bundle: &Path, king: &str, king_mean: f64, gain: f64) -> Verdict {
    let m: BundleManifest = serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    Verdict {
        class: VerdictClass::Crowned,
        summary: format!("crowned: {gain:.3} bpb better than {king}"),
        bundle_digest: Some(m.digest().to_string()),
        king: Some(king.into()),
        findings: vec![],
        stages: vec![StageReport { stage: "decision".into(), passed: true, seconds: 0.1 }],
        eval: None,
        decision: Some(Decision {
            outcome: Outcome::Crowned,
            king_mean,
            sigma: 0.01,
            n: 10,
            challenger: king_mean - gain,
            gain,
            threshold: 0.04,
        }),
        confirmation: None,
        judge_version: "test".into(),
    }
}

fn alice() -> ValidatorKeys {
    karpa_tests::test_validator()
}

fn bob() -> ValidatorKeys {
    ValidatorKeys::load("//Bob", "//Bob", DEFAULT_TAGGER).unwrap()
}

/// Rewrites the crown note of `tag` in the clone `c`.
fn rewrite_note(c: &Path, tag: &str, edit: &dyn Fn(&mut note::CrownNote)) {
    let repo = git2::Repository::open(c).unwrap();
    let commit = repo.revparse_single(&format!("{tag}^{{commit}}")).unwrap().id();
    let mut n = note::read(&repo, commit).unwrap().unwrap();
    edit(&mut n);
    note::write(&repo, &[commit], &n).unwrap();
}

/// `git tag -v <tag>` in `clone`, trusting `keys` (OpenSSH public key lines) as git's allowed signers.
fn git_tag_verify(clone: &Path, tag: &str, keys: &[String]) -> karpa_tests::Run {
    let allowed = clone.join(".git/allowed_signers");
    let lines: String = keys.iter().map(|k| format!("karpa@localhost namespaces=\"git\" {k}\n")).collect();
    std::fs::write(&allowed, lines).unwrap();
    let config = format!("gpg.ssh.allowedSignersFile={}", allowed.display());
    run(Path::new("git"), &[&"-C", &clone, &"-c", &"gpg.format=ssh", &"-c", &config, &"tag", &"-v", &tag])
}

fn codes(report: &Report) -> Vec<&'static str> {
    report.links.iter().flat_map(|l| l.problems.iter().map(|p| p.code)).collect()
}

/// The problem codes `verify` finds in a fresh clone of `bare` at `to` after `edit`.
fn tampered(bare: &Path, to: &Path, edit: &dyn Fn(&Path)) -> Vec<&'static str> {
    let c = clone_with_notes(bare, to);
    edit(&c);
    let mut found = codes(&verify(&c).unwrap());
    found.dedup();
    found
}

/// A plain clone with the crown notes fetched, as a reproducer would make it.
fn clone_with_notes(bare: &Path, to: &Path) -> PathBuf {
    git(to.parent().unwrap(), &["clone", "-q", bare.to_str().unwrap(), to.to_str().unwrap()]);
    git(to, &["fetch", "-q", "origin", &format!("{NOTES_REF}:{NOTES_REF}")]);
    to.to_path_buf()
}

#[test]
fn crowns_on_the_local_forge_verify_from_a_clone_and_tampering_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let (bare, work) = forge(tmp.path());
    let forge = LocalForge::open(&bare).unwrap();

    // Two PRs against the genesis king; the first is crowned.
    let b1 = pull_request(&work, "lr", "origin/main", "recipe-v0.1.0", "lr = 2e-3", "lr = 3e-3");
    let b2 = pull_request(&work, "rows", "origin/main", "recipe-v0.1.0", "batch_rows = 16", "batch_rows = 8");
    let mut p1 = forge.open_pull("refs/heads/lr", &b1, "main").unwrap();
    let mut p2 = forge.open_pull("refs/heads/rows", &b2, "main").unwrap();
    assert_eq!((p1.number, p2.number), (1, 2));
    let head1 = forge.head(&p1).unwrap();
    let v1 = crowned(&b1, "recipe-v0.1.0", 2.50, 0.10);
    let out = forge.crown(&mut p1, head1, &v1, Bump::Patch, &alice(), None).unwrap();
    let CrownOutcome::Crowned { tag, commit } = out.clone() else { panic!("{out:?}") };
    assert_eq!(tag, "recipe-v0.1.1");
    assert_eq!(forge.pull(1).unwrap().state, PullState::Merged);
    // Again: the same release, nothing new.
    assert_eq!(forge.crown(&mut p1, head1, &v1, Bump::Patch, &alice(), None).unwrap(), out);
    assert_eq!(git(&bare, &["tag", "-l", "recipe-v*"]).lines().count(), 2);

    // The release as git shows it: main at the tagged commit, the changelog entry,
    // the tag message naming the head, the note on both the head and the release.
    assert_eq!(git(&bare, &["rev-parse", "main"]).trim(), commit.as_str());
    assert_eq!(git(&bare, &["rev-parse", "recipe-v0.1.1^{commit}"]).trim(), commit.as_str());
    let changelog = git(&bare, &["show", "recipe-v0.1.1:CHANGELOG.md"]);
    assert!(changelog.contains("## recipe-v0.1.1\n\n- pull/1: "), "{changelog}");
    assert!(git(&bare, &["show", "recipe-v0.1.1:recipe/recipe.toml"]).contains("lr = 3e-3"));
    assert!(git(&bare, &["cat-file", "tag", "recipe-v0.1.1"]).contains(&format!("head: {head1}")));
    for on in [head1.to_string(), commit.as_str().to_string()] {
        let n = git(&bare, &["notes", "--ref=karpa", "show", &on]);
        assert!(n.contains("\"format\": \"karpa-crown/v1\"") && n.contains("\"tag\": \"recipe-v0.1.1\""), "{n}");
    }

    // The other PR was judged against the old king: stale, and nothing moves.
    let v2 = crowned(&b2, "recipe-v0.1.0", 2.50, 0.20);
    let head2 = forge.head(&p2).unwrap();
    let stale = forge.crown(&mut p2, head2, &v2, Bump::Patch, &alice(), None).unwrap();
    assert_eq!(stale, CrownOutcome::Stale { king: "recipe-v0.1.1".into() });
    assert_eq!(git(&bare, &["rev-parse", "main"]).trim(), commit.as_str());

    // Re-proved on the new king, it is crowned as recipe-v0.2.0 (a minor bump).
    let b3 = pull_request(&work, "rows2", "origin/main", "recipe-v0.1.1", "batch_rows = 16", "batch_rows = 8");
    let mut p3 = forge.open_pull("rows2", &b3, "main").unwrap();
    let v3 = crowned(&b3, "recipe-v0.1.1", 2.41, 0.06);
    let head3 = forge.head(&p3).unwrap();
    // A maintainer asked for a minor bump: the next line of kings starts here.
    let out = forge.crown(&mut p3, head3, &v3, Bump::Minor, &alice(), None).unwrap();
    assert!(matches!(&out, CrownOutcome::Crowned { tag, .. } if tag == "recipe-v0.2.0"), "{out:?}");
    let changelog = git(&bare, &["show", "recipe-v0.2.0:CHANGELOG.md"]);
    assert!(changelog.find("recipe-v0.2.0").unwrap() < changelog.find("recipe-v0.1.1").unwrap(), "{changelog}");

    // From a plain clone: holds, three releases, the numbers of each crown.
    let clone = clone_with_notes(&bare, &tmp.path().join("clone"));
    let report = verify(&clone).unwrap();
    assert!(report.holds(), "{report:#?}");
    let tags: Vec<_> = report.links.iter().map(|l| l.tag.as_str()).collect();
    assert_eq!(tags, ["recipe-v0.1.0", "recipe-v0.1.1", "recipe-v0.2.0"]);
    assert_eq!(report.links[1].hidden_bpb, Some(2.40));
    assert_eq!(report.links[2].king_bpb, Some(2.41));
    assert_eq!(report.links[1].signers, ["dev validator (//Alice)"]);
    assert_eq!(report.links[2].tag_signer.as_deref(), Some("dev validator (//Alice)"));
    // git itself verifies the release tags with the set's tag key, and refuses another key.
    let good = git_tag_verify(&clone, "recipe-v0.1.1", &[alice().tags.public_key()]);
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
    assert!(good.stderr.contains("Good \"git\" signature for karpa@localhost"), "{}", good.stderr);
    assert_ne!(git_tag_verify(&clone, "recipe-v0.2.0", &[bob().tags.public_key()]).code, 0);
    // The CLI says the same, and exits 0.
    let cli = run(&binary("karpa"), &[&"lineage", &"verify", &clone]).ok();
    assert!(cli.stdout.contains("lineage holds: 3 releases"), "{}", cli.stdout);
    // Its signers are the public dev keys: a warning by default, a failure when denied.
    assert!(
        report.links[1..].iter().all(|l| l.dev_keys.contains(&"dev validator (//Alice)".to_string())),
        "{report:#?}"
    );
    assert!(
        cli.stdout.contains("lineage.dev-key") && cli.stdout.contains("never for a real network"),
        "{}",
        cli.stdout
    );
    let strict = run(&binary("karpa"), &[&"lineage", &"verify", &clone, &"--deny-dev-keys"]);
    assert_eq!(strict.code, 1, "{}{}", strict.stdout, strict.stderr);
    assert!(strict.stdout.contains("--deny-dev-keys fails it"), "{}", strict.stdout);
    // Pinned to its genesis it holds; pinned to another (a clone served with another
    // history and another trusted set) it does not.
    let genesis = git(&clone, &["rev-parse", "recipe-v0.1.0^{commit}"]).trim().to_string();
    assert!(cli.stdout.contains(&format!("pin it: --genesis {genesis}")), "{}", cli.stdout);
    assert!(verify_from(&clone, Some(&genesis[..12])).unwrap().holds());
    let other = verify_from(&clone, Some(&"ab".repeat(20))).unwrap();
    assert_eq!(codes(&other), ["lineage.genesis"]);
    assert!(verify_from(&clone, Some("abc")).is_err(), "a pin too short to mean anything");
    let pinned = run(&binary("karpa"), &[&"lineage", &"verify", &clone, &"--genesis", &"ab".repeat(20)]);
    assert!(pinned.code == 1 && pinned.stdout.contains("not the pinned"), "{}", pinned.stdout);
    assert_eq!(git(&bare, &["for-each-ref", "--format=%(refname)", "refs/pull"]).lines().count(), 3);

    // Without the notes fetched, it says how to get them.
    let bare_clone = tmp.path().join("no-notes");
    git(tmp.path(), &["clone", "-q", bare.to_str().unwrap(), bare_clone.to_str().unwrap()]);
    let r = verify(&bare_clone).unwrap();
    assert_eq!(codes(&r), ["lineage.note-missing", "lineage.note-missing"]);
    assert!(r.links[1].problems[0].message.contains("git fetch origin"), "{r:#?}");
    let cli = run(&binary("karpa"), &[&"lineage", &"verify", &bare_clone]);
    assert_eq!(cli.code, 1, "{}", cli.stdout);

    // Tampering, one way at a time, each on its own clone.
    let tamper = |name: &str, edit: &dyn Fn(&Path)| tampered(&bare, &tmp.path().join(name), edit);
    // A better number written into the verdict after the fact.
    let found = tamper("inflated", &|c| {
        rewrite_note(c, "recipe-v0.1.1", &|n| n.verdict["decision"]["challenger"] = 2.2.into());
    });
    assert_eq!(found, ["lineage.verdict", "lineage.signature", "lineage.unsigned"]);
    // The same, with every number kept consistent: only the validator's signature tells.
    let found = tamper("consistent", &|c| {
        rewrite_note(c, "recipe-v0.1.1", &|n| {
            n.verdict["decision"]["challenger"] = 2.30.into();
            n.verdict["decision"]["gain"] = (2.50 - 2.30).into();
        });
    });
    assert_eq!(found, ["lineage.signature", "lineage.unsigned"]);
    // Re-signed by a key the trusted set does not name.
    let found = tamper("other-key", &|c| {
        rewrite_note(c, "recipe-v0.1.1", &|n| {
            n.verdict["decision"]["challenger"] = 2.30.into();
            n.verdict["decision"]["gain"] = (2.50 - 2.30).into();
            n.signatures.clear();
            n.sign(&bob().hotkey);
        });
    });
    assert_eq!(found, ["lineage.signer-unknown", "lineage.unsigned"]);
    let r = verify(&tmp.path().join("other-key")).unwrap();
    assert!(r.links[1].problems[0].message.contains("recipe-v0.1.1 is signed by 5FHneW46"), "{r:#?}");
    // The signature removed.
    assert_eq!(
        tamper("unsigned", &|c| rewrite_note(c, "recipe-v0.1.1", &|n| n.signatures.clear())),
        ["lineage.unsigned"]
    );
    // A signed note copied onto another release: its signature holds, for the other release.
    let found = tamper("copied", &|c| {
        let repo = git2::Repository::open(c).unwrap();
        let from = repo.revparse_single("recipe-v0.1.1^{commit}").unwrap().id();
        let to = repo.revparse_single("recipe-v0.2.0^{commit}").unwrap().id();
        note::write(&repo, &[to], &note::read(&repo, from).unwrap().unwrap()).unwrap();
    });
    assert!(found.contains(&"lineage.note-tags") && !found.contains(&"lineage.signature"), "{found:?}");
    // A crown whose own numbers do not clear its threshold.
    let found = tamper("weak", &|c| {
        rewrite_note(c, "recipe-v0.2.0", &|n| {
            n.verdict["decision"]["challenger"] = 2.40.into();
            n.verdict["decision"]["gain"] = (2.41 - 2.40).into();
        });
    });
    assert_eq!(found, ["lineage.verdict", "lineage.signature", "lineage.unsigned"]);
    // A different patch than the one attested.
    let found = tamper("patch", &|c| {
        rewrite_note(c, "recipe-v0.1.1", &|n| n.patch = n.patch.replace("3e-3", "4e-3"));
    });
    assert_eq!(found, ["lineage.file-digest", "lineage.patch", "lineage.signature", "lineage.unsigned"]);
    // Someone else's bundle claimed for this release.
    let found = tamper("swapped", &|c| {
        let b3_manifest: BundleManifest =
            serde_json::from_slice(&std::fs::read(b3.join("manifest.json")).unwrap()).unwrap();
        rewrite_note(c, "recipe-v0.1.1", &|n| n.manifest = b3_manifest.clone());
    });
    assert!(found.contains(&"lineage.bundle-digest") && found.contains(&"lineage.base"), "{found:?}");
    // A forged signature on the attestation.
    let found = tamper("forged", &|c| {
        rewrite_note(c, "recipe-v0.2.0", &|n| {
            let mut env: serde_json::Value = serde_json::from_str(&n.attestation).unwrap();
            env["signatures"][0]["sig"] = base64_of_zeroes().into();
            n.attestation = serde_json::to_string(&env).unwrap();
        });
    });
    assert!(found.contains(&"lineage.attestation"), "{found:?}");
    // A release tag on a blob: a finding, not an error, and the next release is
    // still checked against the last one that is a commit.
    let found = tamper("blob-tag", &|c| {
        let blob = git(c, &["hash-object", "-w", "--stdin"]);
        git(c, &["tag", "recipe-v0.1.5", blob.trim()]);
    });
    assert_eq!(found, ["lineage.tag-target"]);
    // The release tag moved onto a commit with more in it than the crowned patch.
    let found = tamper("retagged", &|c| {
        git(c, &["checkout", "-q", "recipe-v0.1.1"]);
        std::fs::write(c.join("recipe/src/lib.rs"), "pub fn model() { /* unproven */ }\n").unwrap();
        git(c, &["commit", "-q", "-am", "sneak"]);
        let n = git(c, &["notes", "--ref=karpa", "show", "recipe-v0.1.1^{commit}"]);
        git(c, &["tag", "-f", "-a", "recipe-v0.1.1", "-m", "moved"]);
        git(c, &["notes", "--ref=karpa", "add", "-f", "-m", n.trim_end(), "HEAD"]);
    });
    assert!(found.contains(&"lineage.release-tree") && found.contains(&"lineage.tag-unsigned"), "{found:?}");
    // The release tag moved to another commit, as a lightweight tag: nothing signs it.
    let found = tamper("lightweight", &|c| {
        git(c, &["tag", "-f", "recipe-v0.1.1", "recipe-v0.2.0^{commit}"]);
    });
    assert!(found.contains(&"lineage.tag-unsigned"), "{found:?}");
    // Another release's signed tag object put under this release's name.
    let found = tamper("renamed", &|c| {
        let other = git(c, &["rev-parse", "recipe-v0.2.0"]);
        git(c, &["update-ref", "refs/tags/recipe-v0.1.1", other.trim()]);
    });
    assert!(found.contains(&"lineage.tag-name"), "{found:?}");
    // The signed tag object with one word of its message changed (a new object id).
    let found = tamper("edited-tag", &|c| {
        let repo = git2::Repository::open(c).unwrap();
        let id = repo.refname_to_id("refs/tags/recipe-v0.1.1").unwrap();
        let raw = repo.odb().unwrap().read(id).unwrap().data().to_vec();
        let edited = String::from_utf8(raw).unwrap().replacen("crowned:", "CROWNED:", 1);
        let forged = repo.odb().unwrap().write(git2::ObjectType::Tag, edited.as_bytes()).unwrap();
        repo.reference("refs/tags/recipe-v0.1.1", forged, true, "forged").unwrap();
    });
    assert_eq!(found, ["lineage.tag-signature"]);
    // A tag re-made and signed by a key the trusted set does not name.
    let found = tamper("bobs-tag", &|c| {
        let repo = git2::Repository::open(c).unwrap();
        let commit = repo.revparse_single("recipe-v0.1.1^{commit}").unwrap().id();
        let tag = bob().tags.sign(commit, "recipe-v0.1.1", "recipe-v0.1.1\n", 1).unwrap();
        repo.find_reference("refs/tags/recipe-v0.1.1").unwrap().delete().unwrap();
        tag.write(&repo, "recipe-v0.1.1").unwrap();
    });
    assert_eq!(found, ["lineage.tag-signature"]);
    let r = verify(&tmp.path().join("bobs-tag")).unwrap();
    assert!(r.links[1].problems[0].message.contains("the tag recipe-v0.1.1 is signed by SHA256:"), "{r:#?}");
    // A release with no crown behind it.
    let found = tamper("unproven", &|c| {
        git(c, &["checkout", "-q", "recipe-v0.2.0"]);
        std::fs::write(c.join("recipe/src/lib.rs"), "pub fn model() { /* better, trust me */ }\n").unwrap();
        git(c, &["commit", "-q", "-am", "trust me"]);
        git(c, &["tag", "-a", "recipe-v0.2.1", "-m", "trust me"]);
    });
    assert_eq!(found, ["lineage.note-missing"]);
}

fn base64_of_zeroes() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([0u8; 64])
}

#[test]
fn local_pull_requests_need_a_real_head_base_and_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let (bare, work) = forge(tmp.path());
    let forge = LocalForge::open(&bare).unwrap();
    let bundle = pull_request(&work, "lr", "origin/main", "recipe-v0.1.0", "lr = 2e-3", "lr = 3e-3");
    let err = |r: anyhow::Result<karpa_bot::forge::local::LocalPull>| format!("{:#}", r.unwrap_err());
    assert!(err(forge.open_pull("no-such-branch", &bundle, "main")).contains("no-such-branch"));
    assert!(err(forge.open_pull("lr", &bundle, "trunk")).contains("no branch \"trunk\""));
    assert!(err(forge.open_pull("lr", &tmp.path().join("nothing"), "main")).contains("no bundle"));
    assert!(format!("{:#}", forge.pull(1).unwrap_err()).contains("no pull request #1"));
    // Nothing was half-created by the refusals.
    assert!(forge.pulls().unwrap().is_empty());
    assert_eq!(git(&bare, &["for-each-ref", "refs/pull"]), "");

    // Only a crowned verdict crowns.
    let mut p = forge.open_pull("lr", &bundle, "main").unwrap();
    let judged = forge.head(&p).unwrap();
    let mut v = crowned(&bundle, "recipe-v0.1.0", 2.5, 0.1);
    v.class = VerdictClass::MeaningfulFailure;
    assert!(forge.crown(&mut p, judged, &v, Bump::Patch, &alice(), None).is_err());
    // A verdict on another bundle is not this PR's crown.
    let mut v = crowned(&bundle, "recipe-v0.1.0", 2.5, 0.1);
    v.bundle_digest = Some("0".repeat(64));
    assert!(format!("{:#}", forge.crown(&mut p, judged, &v, Bump::Patch, &alice(), None).unwrap_err())
        .contains("is about bundle"));
    // The head moved after the judgment: nothing released.
    git(&work, &["checkout", "-q", "lr"]);
    std::fs::write(work.join("recipe/src/lib.rs"), "pub fn model() { }\n").unwrap();
    git(&work, &["commit", "-q", "-am", "more"]);
    git(&work, &["push", "-q", "origin", "lr"]);
    git(&bare, &["update-ref", "refs/pull/1/head", "refs/heads/lr"]);
    let out =
        forge.crown(&mut p, judged, &crowned(&bundle, "recipe-v0.1.0", 2.5, 0.1), Bump::Patch, &alice(), None).unwrap();
    assert_eq!(out, CrownOutcome::HeadMoved);
    assert_eq!(git(&bare, &["tag", "-l"]).trim(), "recipe-v0.1.0");
}

#[test]
fn the_trusted_set_changes_only_by_a_crown_the_set_in_force_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let (bare, work) = forge(tmp.path());
    let forge = LocalForge::open(&bare).unwrap();
    let bobs_set = format!("# Bob alone, from recipe-v0.1.1 on.\nsignatures_needed = 1\n\n{}", bob().entry("bob"));

    // Bob is not in the genesis set: his crown is refused before anything moves.
    let b1 = pull_request(&work, "lr", "origin/main", "recipe-v0.1.0", "lr = 2e-3", "lr = 3e-3");
    let mut p1 = forge.open_pull("lr", &b1, "main").unwrap();
    let (head1, v1) = (forge.head(&p1).unwrap(), crowned(&b1, "recipe-v0.1.0", 2.50, 0.10));
    let err = format!("{:#}", forge.crown(&mut p1, head1, &v1, Bump::Patch, &bob(), None).unwrap_err());
    assert!(err.contains("does not name this validator's hotkey"), "{err}");
    assert_eq!(git(&bare, &["tag", "-l"]).trim(), "recipe-v0.1.0");
    // A set that does not parse is refused the same way.
    let broken = bobs_set.replace("signatures_needed = 1", "signatures_needed = 2");
    assert!(forge.crown(&mut p1, head1, &v1, Bump::Patch, &alice(), Some(&broken)).is_err());
    assert_eq!(git(&bare, &["tag", "-l"]).trim(), "recipe-v0.1.0");

    // Alice's crown hands the set to Bob; from then on Bob crowns, Alice cannot.
    forge.crown(&mut p1, head1, &v1, Bump::Patch, &alice(), Some(&bobs_set)).unwrap();
    assert_eq!(git(&bare, &["show", "recipe-v0.1.1:validators.toml"]), bobs_set);
    let b2 = pull_request(&work, "rows", "origin/main", "recipe-v0.1.1", "batch_rows = 16", "batch_rows = 8");
    let mut p2 = forge.open_pull("rows", &b2, "main").unwrap();
    let (head2, v2) = (forge.head(&p2).unwrap(), crowned(&b2, "recipe-v0.1.1", 2.40, 0.06));
    assert!(forge.crown(&mut p2, head2, &v2, Bump::Patch, &alice(), None).is_err());
    forge.crown(&mut p2, head2, &v2, Bump::Patch, &bob(), None).unwrap();

    let clone = clone_with_notes(&bare, &tmp.path().join("clone"));
    let report = verify(&clone).unwrap();
    assert!(report.holds(), "{report:#?}");
    assert!(report.links[1].trusted_set_changed && !report.links[2].trusted_set_changed);
    assert_eq!(report.links[1].signers, ["dev validator (//Alice)"]);
    assert_eq!(
        (report.links[2].signers.as_slice(), report.links[2].tag_signer.as_deref()),
        (&["bob".to_string()][..], Some("bob"))
    );
    let cli = run(&binary("karpa"), &[&"lineage", &"verify", &clone]).ok();
    assert!(
        cli.stdout.contains("dev validator (//Alice); tag: dev validator (//Alice); new trusted set"),
        "{}",
        cli.stdout
    );
    // The entry `karpa lineage keys` prints is the one the set holds.
    let keys = run(
        &binary("karpa"),
        &[&"lineage", &"keys", &"--validator-hotkey", &"//Bob", &"--validator-tag-key", &"//Bob", &"--name", &"bob"],
    )
    .ok();
    assert!(bobs_set.ends_with(&keys.stdout), "{}", keys.stdout);

    let tamper = |name: &str, edit: &dyn Fn(&Path)| tampered(&bare, &tmp.path().join(name), edit);
    // The change signed by the set it puts in force, not by the one it replaces.
    let found = tamper("self-signed", &|c| {
        rewrite_note(c, "recipe-v0.1.1", &|n| {
            n.signatures.clear();
            n.sign(&bob().hotkey);
        })
    });
    assert_eq!(found, ["lineage.trusted-set-change", "lineage.signer-unknown", "lineage.unsigned"]);
    // The set in the release's tree without the note carrying it (even re-signed by Alice).
    let found = tamper("silent", &|c| {
        rewrite_note(c, "recipe-v0.1.1", &|n| {
            n.trusted_set = None;
            n.sign(&alice().hotkey);
        })
    });
    assert_eq!(found, ["lineage.release-tree"]);
    // A note that carries another set than the tree holds.
    let found = tamper("mismatch", &|c| {
        rewrite_note(c, "recipe-v0.1.1", &|n| {
            n.trusted_set = Some(karpa_tests::TEST_TRUSTED_SET.to_string());
            n.sign(&alice().hotkey);
        })
    });
    assert_eq!(found, ["lineage.trusted-set-change"]);
}
