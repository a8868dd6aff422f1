//! Two crowns in a row through the App, with no operator between them. The
//! fake GitHub's git side is real (its merges, CHANGELOG commits and signed
//! tags land in the bare remote the bot mirrors), so the first crown makes
//! recipe-v0.1.1 the king a fresh clone sees. Each PR's judgment waits for its
//! king's noise floor, the runner jobs measure it into PostgreSQL, and the
//! judgment resumes by itself and is decided against it. The remote's lineage
//! then verifies from a clone.

use crate::prove::{run_prove, validator};
use karpa_tests::fake_github::{FakeGitHub, RepoState};
use karpa_tests::{binary, git, micro_data, recipe_repo, run};
use std::path::{Path, PathBuf};

const REPO: &str = "karpa-net/recipe";
const SEEDS: usize = 3;

/// Each PR's change to micro's table of recipe.toml: (from, to). Both are real
/// gains: micro trains for 40 steps, and halving the rows doubles them (public
/// val bpb 4.06 → 3.86 → 3.68 here, where micro's seed σ is about 0.05).
const CHANGES: [(&str, &str); 2] = [("batch_rows = 8", "batch_rows = 4"), ("batch_rows = 4", "batch_rows = 2")];

const RATIONALE: &str = "Micro trains for forty optimizer steps, far too few for the canonical schedule to \
    reach a good minimum; the change lets the same token budget buy more progress per token.\n\n\
    It touches one hyperparameter of micro's table and nothing else, so the gain, if any, is that \
    hyperparameter's alone, and the validator's floor tells whether it is more than a seed's luck.\n";

/// A miner's PR number `n`: a clone of the remote (its newest tag is the king),
/// `CHANGES[n - 1]` proved against it, the head pushed as GitHub keeps PR heads,
/// the packed bundle hosted, the PR opened with its locator. Its head sha.
fn open_pr(gh: &FakeGitHub, remote: &Path, data: &Path, tmp: &Path, n: usize) -> String {
    let clone = tmp.join(format!("miner-{n}"));
    git(tmp, &["clone", "-q", remote.to_str().unwrap(), clone.to_str().unwrap()]);
    let toml = clone.join("recipe/recipe.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let (from, to) = CHANGES[n - 1];
    assert!(text.contains(from), "{from} not in recipe.toml");
    std::fs::write(&toml, text.replacen(from, to, 1)).unwrap();
    let patch = tmp.join(format!("pr-{n}.diff"));
    std::fs::write(&patch, git(&clone, &["diff"])).unwrap();
    git(&clone, &["commit", "-q", "-am", &format!("micro: {to}")]);
    let head = git(&clone, &["rev-parse", "HEAD"]).trim().to_string();
    git(&clone, &["push", "-q", "origin", &format!("HEAD:refs/pull/{n}/head")]);
    git(&clone, &["checkout", "-q", "HEAD~1"]);

    let why = tmp.join(format!("why-{n}.md"));
    std::fs::write(&why, RATIONALE).unwrap();
    let bundle = tmp.join(format!("bundle-{n}"));
    run_prove(&clone, &patch, &data.join("public"), &why, &bundle).ok();
    let file = tmp.join(format!("bundle-{n}.tar"));
    run(&binary("karpa"), &[&"bundle", &"pack", &bundle, &"--out", &file]).ok();
    let manifest: proof::bundle::BundleManifest =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    gh.add_file(&format!("bundle-{n}.tar"), std::fs::read(&file).unwrap());
    let locator = proof::locator::Locator {
        url: format!("https://bundles.example/bundle-{n}.tar"),
        sha256: proof::sha256_file(&file).unwrap(),
        bundle_digest: manifest.digest(),
    };
    gh.add_pull(
        REPO,
        serde_json::json!({"number": n, "state": "open", "body": format!("micro: {to}\n\n{}", locator.render()),
                           "head": {"sha": head}, "base": {"ref": "main"}}),
    );
    head
}

/// The webhook's judge job for PR `n` at `head`, queued.
async fn queue_judgment(pool: &sqlx::PgPool, n: usize, head: &str) {
    use karpa_bot::db::jobs::{self, NewJob};
    let payload = serde_json::json!({"repo": REPO, "installation": 1, "pr": n, "head_sha": head});
    let job = NewJob { kind: "judge".into(), dedupe_key: format!("judge:{REPO}#{n}@{head}"), payload };
    jobs::enqueue(pool, &job).await.unwrap();
}

/// The state of PR `n`'s judge job.
async fn judge_state(pool: &sqlx::PgPool, n: usize) -> (String, Option<String>) {
    sqlx::query_as("SELECT state, last_error FROM jobs WHERE kind = 'judge' AND payload->>'pr' = $1")
        .bind(n.to_string())
        .fetch_one(pool)
        .await
        .unwrap()
}

/// One runner's claims, as `karpa runner` makes them, until PR `n` is judged.
async fn drain_until_judged(services: &karpa_bot::jobs::Services, n: usize) {
    for _ in 0..2000 {
        karpa_bot::jobs::run_one(services, "runner-1").await.unwrap();
        if judge_state(&services.pool, n).await.0 != "queued" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (state, err) = judge_state(&services.pool, n).await;
    assert_eq!(state, "done", "PR {n}: {err:?}");
}

/// The floor runs of `king` in PostgreSQL (one per seed, by the runner): their mean hidden bpb.
async fn floor_mean(pool: &sqlx::PgPool, king: &str) -> f64 {
    let runs: Vec<(i64, f64, String, i32)> = sqlx::query_as(
        "SELECT seed, hidden_bpb, runner, length(nats) FROM floor_runs WHERE king_tag = $1 ORDER BY seed",
    )
    .bind(king)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), (0..SEEDS as i64).collect::<Vec<_>>(), "{runs:?}");
    // Each run's per-token nats (micro's 8192 f32s) aim the next judgment's pairs.
    assert!(runs.iter().all(|r| r.2 == "runner-1" && r.3 == 8192 * 4), "{runs:?}");
    runs.iter().map(|r| r.1).sum::<f64>() / SEEDS as f64
}

/// The title PR `n`'s check run shows now.
fn check_title(gh: &FakeGitHub, n: usize) -> String {
    let runs = gh.check_runs();
    assert!(runs.len() >= n, "no check run for PR {n}");
    runs[n - 1].state["output"]["title"].as_str().unwrap_or_default().to_string()
}

/// PR `n`'s finished check run: a success released as `tag`, decided against
/// the floor mean `floor`. Its summary and its verdict's text.
fn crowned(gh: &FakeGitHub, n: usize, tag: &str, floor: f64) -> (String, String) {
    let done = gh.check_runs()[n - 1].state.clone();
    assert_eq!(done["conclusion"], "success", "{done:#}");
    let summary = done["output"]["summary"].as_str().unwrap().to_string();
    assert!(summary.contains(&format!("released as {tag}")) && summary.contains(&format!("{floor:.4}")), "{summary}");
    (summary, done["output"]["text"].as_str().unwrap_or_default().to_string())
}

#[test]
fn two_crowns_in_a_row_through_the_app_each_decided_against_its_kings_floor_measured_by_runner_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = recipe_repo(tmp.path());
    let data = micro_data(tmp.path());
    // GitHub's side of git: a bare repository the API writes to for real.
    let remote: PathBuf = tmp.path().join("github.git");
    git(tmp.path(), &["clone", "-q", "--bare", repo.to_str().unwrap(), remote.to_str().unwrap()]);
    let genesis = git(&repo, &["rev-parse", "recipe-v0.1.0^{commit}"]).trim().to_string();
    let gh = karpa_tests::fake_github_for_app(REPO, 1);
    let state =
        RepoState { main: genesis.clone(), commits: vec![genesis], git: Some(remote.clone()), ..Default::default() };
    gh.ledger.lock().unwrap().repos.insert(REPO.into(), state);

    // A validator with no floor files; a rule for micro's short runs: few floor
    // seeds, no confirmation runs, a one-sided 10 % false-crown rate.
    let rule = tmp.path().join("rule.toml");
    std::fs::write(&rule, format!("floor_seeds = {SEEDS}\nconfirmation_runs = 0\nalpha = 0.1\n")).unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "a validator secret of some length").unwrap();
    let (eval, _, rule) = validator(&data, &secret, None, &rule);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = karpa_tests::fresh_database().await;
        let mut settings = karpa_tests::judge_settings(&tmp.path().join("bot-state"), &remote.to_string_lossy(), &gh);
        settings.eval = Some(eval);
        settings.rule = rule;
        let services = karpa_tests::services(pool.clone(), &gh, settings);

        // PR 1 against the genesis king: waits for its floor, then is crowned.
        let head1 = open_pr(&gh, &remote, &data, tmp.path(), 1);
        queue_judgment(&pool, 1, &head1).await;
        assert!(karpa_bot::jobs::run_one(&services, "runner-1").await.unwrap());
        assert_eq!(check_title(&gh, 1), format!("waiting for recipe-v0.1.0's noise floor on micro: 0 of {SEEDS} runs"));
        drain_until_judged(&services, 1).await;
        let floor0 = floor_mean(&pool, "recipe-v0.1.0").await;
        let (summary, _) = crowned(&gh, 1, "recipe-v0.1.1", floor0);
        assert!(summary.contains("(64 aimed)"), "pairs aimed by the floor's nats: {summary}");

        // PR 2, proved against the new king a fresh clone of the remote sees. It
        // comes in while the runners are still busy: the new king's floor jobs
        // (queued by the crown) are not claimable for a few seconds yet.
        let head2 = open_pr(&gh, &remote, &data, tmp.path(), 2);
        let busy =
            "UPDATE jobs SET run_after = now() + interval '3 seconds' WHERE kind = 'floor-run' AND state = 'queued'";
        assert_eq!(sqlx::query(busy).execute(&pool).await.unwrap().rows_affected(), SEEDS as u64);
        queue_judgment(&pool, 2, &head2).await;
        assert!(karpa_bot::jobs::run_one(&services, "runner-1").await.unwrap());
        assert_eq!(check_title(&gh, 2), format!("waiting for recipe-v0.1.1's noise floor on micro: 0 of {SEEDS} runs"));
        drain_until_judged(&services, 2).await;
        let floor1 = floor_mean(&pool, "recipe-v0.1.1").await;
        assert!(floor1 < floor0, "the first crown's king is better: {floor1} vs {floor0}");
        let (summary, verdict) = crowned(&gh, 2, "recipe-v0.1.2", floor1);
        // Against the new king and its floor, not the old one's.
        assert!(!summary.contains(&format!("{floor0:.4}")), "{summary}");
        assert!(verdict.contains("\"king\": \"recipe-v0.1.1\""), "{verdict}");
        let kings: Vec<(String,)> =
            sqlx::query_as("SELECT tag FROM kings ORDER BY crowned_at").fetch_all(&pool).await.unwrap();
        let kings: Vec<&str> = kings.iter().map(|k| k.0.as_str()).collect();
        assert_eq!(kings, ["recipe-v0.1.0", "recipe-v0.1.1", "recipe-v0.1.2"]);
        eprintln!("floors: recipe-v0.1.0 {floor0:.4}, recipe-v0.1.1 {floor1:.4}");
    });
    gh.assert_clean();

    // The record, from a plain clone of the remote: two signed crowns, the last
    // change on main, verified from the pinned genesis.
    let clone = tmp.path().join("reader");
    git(tmp.path(), &["clone", "-q", remote.to_str().unwrap(), clone.to_str().unwrap()]);
    git(&clone, &["fetch", "-q", "origin", "refs/notes/*:refs/notes/*"]);
    let toml = std::fs::read_to_string(clone.join("recipe/recipe.toml")).unwrap();
    assert!(toml.contains(CHANGES[1].1) && !toml.contains(CHANGES[0].0), "main holds both changes: {toml}");
    let genesis = git(&clone, &["rev-parse", "recipe-v0.1.0^{commit}"]).trim().to_string();
    let r = run(&binary("karpa"), &[&"lineage", &"verify", &clone, &"--genesis", &genesis]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("recipe-v0.1.2"), "{}", r.stdout);
}
