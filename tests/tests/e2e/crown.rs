//! Crowning against the strict fake GitHub and a real PostgreSQL: two winning
//! PRs at once make one crown (the other is stale), a retried crown changes
//! nothing, a PR pushed after its judgment is not merged (409), and the record
//! on GitHub is complete: squash merge, CHANGELOG entry, signed annotated tag
//! on it (the bytes GitHub stores verify), release, king row; a crown that hands
//! on the trusted set writes validators.toml before the tag; and a forge that
//! stores other tag bytes than the signed ones gets no tag ref.

use karpa_bot::db::kings::{self, MergeLock};
use karpa_bot::forge::crown::{crown, CrownOutcome, Crowning};
use karpa_bot::forge::github::{app_client, CommitSha, Installation, RepoName};
use karpa_bot::judge::decision::{Decision, Outcome};
use karpa_bot::judge::verdict::{StageReport, Verdict, VerdictClass};
use karpa_tests::fake_github::RepoState;
use serde_json::json;

const REPO: &str = "karpa-net/recipe";
const KING_COMMIT: &str = "00000000000000000000000000000000000000c0";

fn crowned(king: &str, digest: char, bpb: f64) -> Verdict {
    Verdict {
        class: VerdictClass::Crowned,
        summary: format!("crowned: {bpb:.4} bpb beats 2.4000"),
        bundle_digest: Some(digest.to_string().repeat(64)),
        king: Some(king.into()),
        findings: vec![],
        stages: vec![StageReport { stage: "decision".into(), passed: true, seconds: 0.0 }],
        eval: None,
        decision: Some(Decision {
            outcome: Outcome::Crowned,
            king_mean: 2.4,
            sigma: 0.01,
            n: 10,
            challenger: bpb,
            gain: 2.4 - bpb,
            threshold: 0.03,
        }),
        confirmation: None,
        judge_version: "test".into(),
    }
}

/// A trusted set handed on by the minor crown.
const NEW_SET: &str = "signatures_needed = 1\n\n[[validator]]\nname = \"next\"\nss58 = \"5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty\"\ntag_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIDhS/+SO9mHF9nWLnLUSBMhSvoNF7C+eIWFjWxF44H2\"\n";

fn head(n: u64) -> String {
    format!("{n:040x}")
}

#[test]
fn one_crown_from_two_winners_and_a_complete_record() {
    let gh = karpa_tests::fake_github_for_app(REPO, 1);
    {
        let mut l = gh.ledger.lock().unwrap();
        let state = RepoState { main: KING_COMMIT.into(), commits: vec![KING_COMMIT.into()], ..Default::default() };
        l.repos.insert(REPO.into(), state);
    }
    for n in [7, 8, 9] {
        gh.add_pull(REPO, json!({"number": n, "state": "open", "head": {"sha": head(n)}, "base": {"ref": "main"}}));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = karpa_tests::fresh_database().await;
        kings::seed(&pool, REPO, "recipe-v0.1.0", KING_COMMIT).await.unwrap();
        let key = std::fs::read(karpa_tests::fixture("github-app.test-key.pem")).unwrap();
        let app = app_client(karpa_tests::TEST_APP_ID, &key, &gh.url).unwrap();
        let repo = RepoName::parse(REPO).unwrap();
        let alice = karpa_tests::test_validator();
        let attempt = |n: u64, king: &'static str, digest: char, trusted_set: Option<&'static str>| {
            let (pool, app, repo, tags) = (pool.clone(), app.clone(), repo.clone(), &alice.tags);
            async move {
                let inst = Installation::new(&app, 1).unwrap();
                let verdict = crowned(king, digest, 2.35);
                let head = CommitSha::parse(&head(n)).unwrap();
                let mut lock = MergeLock::acquire(&pool).await.unwrap();
                let links = Default::default();
                let c = Crowning {
                    repo: &repo,
                    pr: n,
                    head: &head,
                    base: "main",
                    verdict: &verdict,
                    links,
                    tags,
                    trusted_set,
                };
                let out = crown(&inst, &mut lock, &c).await.unwrap();
                lock.release().await.unwrap();
                out
            }
        };
        // Two winners judged against the same king, crowned at the same time.
        let (a, b) = tokio::join!(attempt(7, "recipe-v0.1.0", 'a', None), attempt(8, "recipe-v0.1.0", 'b', None));
        let (winner, stale) = match (&a, &b) {
            (CrownOutcome::Crowned { .. }, CrownOutcome::Stale { .. }) => (7, &b),
            (CrownOutcome::Stale { .. }, CrownOutcome::Crowned { .. }) => (8, &a),
            _ => panic!("exactly one crown: {a:?} {b:?}"),
        };
        assert_eq!(stale, &CrownOutcome::Stale { king: "recipe-v0.1.1".into() });
        // The winner's job retried after crowning: nothing new happens.
        let digest = if winner == 7 { 'a' } else { 'b' };
        let again = attempt(winner, "recipe-v0.1.0", digest, None).await;
        assert!(matches!(&again, CrownOutcome::Crowned { tag, .. } if tag == "recipe-v0.1.1"), "{again:?}");
        // PR 9 was judged on the new king, then pushed again before the merge.
        gh.ledger.lock().unwrap().pulls.get_mut(REPO).unwrap()[2]["head"]["sha"] = json!(head(99));
        assert_eq!(attempt(9, "recipe-v0.1.1", 'c', None).await, CrownOutcome::HeadMoved);
        // Judged again at its old head (pushed back), after a maintainer asked for a
        // minor bump: released as recipe-v0.2.0, and the request is used up.
        gh.ledger.lock().unwrap().pulls.get_mut(REPO).unwrap()[2]["head"]["sha"] = json!(head(9));
        kings::request_minor_bump(&pool, REPO, "owner-cy").await.unwrap();
        // This crown also puts a new trusted set in force.
        let minor = attempt(9, "recipe-v0.1.1", 'c', Some(NEW_SET)).await;
        assert!(matches!(&minor, CrownOutcome::Crowned { tag, .. } if tag == "recipe-v0.2.0"), "{minor:?}");
        let pending: (i64,) = sqlx::query_as("SELECT count(*) FROM release_bumps").fetch_one(&pool).await.unwrap();
        assert_eq!(pending.0, 0);

        let kings: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT tag, pr FROM kings ORDER BY crowned_at").fetch_all(&pool).await.unwrap();
        let expected = [("recipe-v0.1.0", None), ("recipe-v0.1.1", Some(winner as i64)), ("recipe-v0.2.0", Some(9))];
        assert_eq!(kings, expected.map(|(t, pr)| (t.to_string(), pr)));

        // A forge that stores other bytes than the signed tag: no ref is made.
        gh.ledger.lock().unwrap().repos.get_mut(REPO).unwrap().trim_tag_messages = true;
        let inst = Installation::new(&app, 1).unwrap();
        let commit = CommitSha::parse(KING_COMMIT).unwrap();
        let err = inst.create_tag(&repo, "recipe-v9.9.9", "m\n", &commit, &alice.tags).await.unwrap_err();
        assert!(format!("{err:#}").contains("not the signed"), "{err:#}");
        gh.ledger.lock().unwrap().repos.get_mut(REPO).unwrap().trim_tag_messages = false;
        // A retry finds its own signed tag and counts it done; a tag someone else
        // signed in its place is not taken for it.
        let released = inst.tag_commit(&repo, "recipe-v0.1.1").await.unwrap().unwrap();
        inst.create_tag(&repo, "recipe-v0.1.1", "again\n", &released, &alice.tags).await.unwrap();
        let bob = karpa_bot::lineage::signed_tag::TagSigner::load("//Bob", "bob <bob@localhost>").unwrap();
        inst.create_tag(&repo, "recipe-v0.3.0", "first\n", &commit, &bob).await.unwrap();
        let err = inst.create_tag(&repo, "recipe-v0.3.0", "m\n", &commit, &alice.tags).await.unwrap_err();
        assert!(format!("{err:#}").contains("is not this validator's signed tag"), "{err:#}");
    });

    gh.assert_clean();
    let l = gh.ledger.lock().unwrap();
    let state = &l.repos[REPO];
    assert_eq!(state.commits.len(), 6, "the king, a squash merge and a CHANGELOG commit per crown, validators.toml");
    assert!(!state.tag_refs.contains_key("recipe-v9.9.9"));
    assert!(state.tag_refs.contains_key("recipe-v0.3.0"), "Bob's tag stays where it was");
    assert_eq!(state.files["validators.toml"], NEW_SET);
    let v2 = &state.tag_objects[&state.tag_refs["recipe-v0.2.0"]];
    assert_eq!(v2["object"]["sha"], state.commits[5], "the tag names the commit with the new set");
    // The tag objects GitHub stores verify with the validator's tag key.
    let alice = karpa_tests::test_validator().tags.public_key();
    for tag in ["recipe-v0.1.1", "recipe-v0.2.0"] {
        let bytes = &state.tag_bytes[&state.tag_refs[tag]];
        assert_eq!(karpa_bot::lineage::signed_tag::verify(bytes, &[("alice", &alice)]), Ok("alice".into()), "{tag}");
    }
    let changelog = &state.files["CHANGELOG.md"];
    assert_eq!(changelog.matches("## recipe-v0.1.1").count(), 1, "{changelog}");
    assert!(changelog.find("## recipe-v0.2.0").unwrap() < changelog.find("## recipe-v0.1.1").unwrap(), "{changelog}");
    let tag_obj = &state.tag_objects[&state.tag_refs["recipe-v0.1.1"]];
    assert_eq!(tag_obj["object"]["sha"], state.commits[2], "the tag names the commit with the CHANGELOG entry");
    let message = tag_obj["message"].as_str().unwrap();
    assert!(message.contains("bundle-digest: ") && message.contains("2.3500"), "{message}");
    assert_eq!(state.releases.len(), 2);
    let merged: Vec<u64> =
        l.pulls[REPO].iter().filter(|p| p["merged"] == true).map(|p| p["number"].as_u64().unwrap()).collect();
    assert_eq!(merged.len(), 2);
}
