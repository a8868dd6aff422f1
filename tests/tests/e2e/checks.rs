//! Check runs through the real GitHub client against the strict fake: the App's
//! JWT buys an installation token, the check goes queued → in_progress →
//! completed, and a verdict with 120 line findings arrives as 50 + 50 + 20
//! annotations under GitHub's byte caps.

use karpa_bot::forge::checks::{conclusion, render, Conclusion, Links};
use karpa_bot::forge::github::{app_client, CommitSha, Installation, RepoName};
use karpa_bot::judge::verdict::{StageReport, Verdict, VerdictClass};
use karpa_bot::judge::Finding;
use karpa_tests::fake_github::FakeGitHub;

const REPO: &str = "karpa-net/recipe";
const APP_ID: u64 = karpa_tests::TEST_APP_ID;
const INSTALLATION: u64 = 51234567;

fn key(name: &str) -> Vec<u8> {
    std::fs::read(karpa_tests::fixture(name)).unwrap()
}

fn fake() -> FakeGitHub {
    karpa_tests::fake_github_for_app(REPO, INSTALLATION)
}

fn rejected_with(findings: Vec<Finding>) -> Verdict {
    Verdict {
        class: VerdictClass::Rejected,
        summary: "the patch breaks the rules".into(),
        bundle_digest: Some("cd".repeat(32)),
        king: Some("recipe-v0.1.0".into()),
        findings,
        stages: vec![
            StageReport { stage: "intake".into(), passed: true, seconds: 0.02 },
            StageReport { stage: "diff-scan".into(), passed: false, seconds: 0.01 },
        ],
        eval: None,
        decision: None,
        confirmation: None,
        judge_version: "test".into(),
    }
}

#[test]
fn a_check_run_from_queued_to_completed_with_batched_annotations() {
    let gh = fake();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = app_client(APP_ID, &key("github-app.test-key.pem"), &gh.url).unwrap();
        let inst = Installation::new(&app, INSTALLATION).unwrap();
        let repo = RepoName::parse(REPO).unwrap();
        let head = CommitSha::parse(&"4c".repeat(20)).unwrap();
        let id = match inst.start_check(&repo, &head, "judge:karpa-net/recipe#7").await {
            Ok(id) => id,
            Err(e) => panic!("{e:#}: {:?}", gh.ledger.lock().unwrap().unexpected),
        };
        inst.check_progress(&repo, id, "diff-scan").await.unwrap();
        let findings = (0..120)
            .map(|i| Finding::reject("scan.fs", "recipe/src/model.rs", Some(i + 1), "reads a file ".repeat(2000)))
            .collect();
        let v = rejected_with(findings);
        let out = render(&v, &Links::default());
        inst.complete_check(&repo, id, conclusion(v.class).unwrap(), &out).await.unwrap();
    });
    gh.assert_clean();
    let runs = gh.check_runs();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.statuses, ["queued", "in_progress", "completed"]);
    assert_eq!(run.state["conclusion"], "failure");
    assert_eq!(run.state["head_sha"], "4c".repeat(20));
    assert_eq!(run.annotations.len(), 120);
    assert_eq!(run.annotations[119]["start_line"], 120);
    assert!(run.state["output"]["summary"].as_str().unwrap().len() <= 65_535);
    assert!(run.state["output"]["title"].as_str().unwrap().starts_with("rejected"));
}

#[test]
fn the_app_cannot_act_for_an_installation_it_does_not_have() {
    let gh = fake();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(async {
        let app = app_client(APP_ID, &key("github-app.test-key.pem"), &gh.url).unwrap();
        let inst = Installation::new(&app, 999).unwrap();
        let head = CommitSha::parse(&"4c".repeat(20)).unwrap();
        inst.start_check(&RepoName::parse(REPO).unwrap(), &head, "x").await.unwrap_err()
    });
    assert!(format!("{err:?}").contains("404") || format!("{err:?}").contains("Not Found"), "{err:?}");
    assert!(gh.check_runs().is_empty());
    assert_eq!(conclusion(VerdictClass::Crowned), Some(Conclusion::Success));
}
