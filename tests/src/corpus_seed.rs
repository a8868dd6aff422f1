//! A small corpus recorded through the real write path: sealed bundles (with
//! rationales, patches and logs in the trainer's format) and verdicts of every
//! kind, for the API, web and browser tests.

use karpa_bot::corpus::record::{record, BundleFacts, Forge, Judged};
use karpa_bot::corpus::SubmissionId;
use karpa_bot::judge::verdict::Verdict;
use serde_json::json;
use std::path::Path;

pub const REPO: &str = "karpa-ai/recipe";
pub const KING: &str = "recipe-v0.1.0";
pub const HOSTILE_RATIONALE: &str = "<script>alert('xss')</script>\n\n# Sneaky <b onmouseover=alert(1)>title</b>\n\n\
     [click](javascript:alert(2)) <img src=x onerror=alert(3)>\n";

pub struct Seeded {
    /// batch_rows 8: crowned, released as recipe-v0.1.1.
    pub crowned: SubmissionId,
    /// Tied embeddings: evaluated, worse than the king.
    pub failure: SubmissionId,
    /// A PR whose bundle could not be taken in.
    pub rejected: SubmissionId,
    /// A rationale full of script.
    pub hostile: SubmissionId,
}

/// A training log in the trainer's format, its loss falling towards `end`.
pub fn log(end: f64) -> String {
    let mut log = String::from(
        r#"{"kind":"start","format":"karpa-log/v1","config":"tiny","seed":1,"device":"cpu","threads":2,"params":1800000,"token_budget":2000000,"seq_len":128,"batch_rows":8,"data_manifest":"0000000000000000000000000000000000000000000000000000000000000000","harness_version":"0.1.0"}"#,
    );
    log.push('\n');
    for step in 1..=60u64 {
        let loss = end + 3.0 * (-(step as f64) / 15.0).exp();
        let tokens = step * 32_768;
        log.push_str(&format!(
            r#"{{"kind":"step","step":{step},"tokens_seen":{tokens},"loss":{loss},"lr":0.003,"grad_norm":1.0,"elapsed_s":{step}.0,"tokens_per_s":30000.0}}"#
        ));
        log.push('\n');
        if step % 20 == 0 {
            log.push_str(&format!(
                r#"{{"kind":"val","step":{step},"tokens_seen":{tokens},"val_loss":{},"val_bpb":2.4,"eval_tokens":65536}}"#,
                loss + 0.05
            ));
            log.push('\n');
        }
    }
    log
}

fn verdict(v: serde_json::Value) -> Verdict {
    serde_json::from_value(v).expect("a verdict")
}

pub fn decided(class: &str, digest: &str, challenger: f64) -> Verdict {
    let (king_mean, sigma, n) = (2.4214, 0.0186, 4);
    let threshold = 0.0379;
    verdict(json!({
        "class": class,
        "summary": format!("hidden-eval {challenger:.4} against {KING} {king_mean:.4}"),
        "bundle_digest": digest,
        "king": KING,
        "findings": [],
        "stages": [{"stage": "integrity", "passed": true, "seconds": 0.2}, {"stage": "evaluate", "passed": true, "seconds": 55.0}],
        "eval": {"hidden_bpb": challenger, "replay_from_step": 0, "replay_max_abs_diff": 0.0, "build_s": 20.0,
                 "probe_s": 1.0, "eval_s": 5.0, "replay_s": 9.0},
        "decision": {"outcome": class, "king_mean": king_mean, "sigma": sigma, "n": n, "challenger": challenger,
                     "gain": king_mean - challenger, "threshold": threshold},
        "judge_version": "0.1.0"
    }))
}

pub async fn one(
    pool: &sqlx::PgPool,
    dir: &Path,
    pr: u64,
    files: &[(&str, &str)],
    verdict: impl FnOnce(&str) -> Verdict,
    released: Option<(&str, &str)>,
) -> SubmissionId {
    let bundle = dir.join(format!("bundle-{pr}"));
    let manifest = crate::make_bundle_with(&bundle, files);
    let digest = manifest.digest().to_string();
    let facts = BundleFacts::read(&bundle, Some(&format!("https://bundles.example/{digest}.tar"))).expect("facts");
    let v = verdict(&digest);
    let head = format!("{pr:0>40}");
    let judged = Judged {
        repo: REPO,
        forge: Forge::GitHub,
        pr,
        head_sha: &head,
        bundle: Some(&facts),
        author: None,
        verdict: &v,
        released,
        signer: Some(&proof::hotkey::keypair_from_uri(crate::TEST_VALIDATOR).expect("the dev key")),
    };
    record(pool, &judged).await.expect("recorded")
}

pub async fn seed(pool: &sqlx::PgPool, dir: &Path) -> Seeded {
    let crowned = one(
        pool,
        dir,
        2,
        &[
            ("rationale.md", "# Twice the steps: batch_rows 8\n\nHalving the batch doubles the optimizer steps for the same tokens; the **warmup** stays at 2%.\n"),
            ("patch.diff", "--- a/recipe/recipe.toml\n+++ b/recipe/recipe.toml\n@@ -3 +3 @@\n-batch_rows = 16\n+batch_rows = 8\n"),
            ("log.jsonl", &log(2.34)),
        ],
        |d| decided("crowned", d, 2.3381),
        Some(("recipe-v0.1.1", &"e".repeat(40))),
    )
    .await;
    let failure = one(
        pool,
        dir,
        1,
        &[
            ("rationale.md", "# Tie the embeddings\n\nSharing the input and output embedding saves parameters.\n"),
            ("patch.diff", "--- a/recipe/recipe.toml\n+++ b/recipe/recipe.toml\n@@ -5 +5 @@\n-tie_embeddings = false\n+tie_embeddings = true\n"),
            ("log.jsonl", &log(2.49)),
        ],
        |d| decided("failure", d, 2.4921),
        None,
    )
    .await;
    let hostile = one(
        pool,
        dir,
        4,
        &[("rationale.md", HOSTILE_RATIONALE), ("patch.diff", "+<script>alert(5)</script>\n"), ("log.jsonl", &log(2.6))],
        |d| {
            verdict(json!({
                "class": "rejected", "summary": "the patch does not apply", "bundle_digest": d, "king": KING,
                "findings": [{"code": "patch.apply", "severity": "reject", "message": "<script>alert(6)</script> does not apply"}],
                "stages": [{"stage": "integrity", "passed": false, "seconds": 0.1}], "judge_version": "0.1.0"
            }))
        },
        None,
    )
    .await;
    let rejected_verdict = verdict(json!({
        "class": "rejected", "summary": "the bundle could not be taken in", "bundle_digest": null, "king": null,
        "findings": [{"code": "intake.locator", "severity": "reject", "message": "the PR body names no bundle"}],
        "stages": [{"stage": "intake", "passed": false, "seconds": 0.0}], "judge_version": "0.1.0"
    }));
    let head = "3".repeat(40);
    let judged = Judged {
        repo: REPO,
        forge: Forge::GitHub,
        pr: 3,
        head_sha: &head,
        bundle: None,
        author: Some("drive-by"),
        verdict: &rejected_verdict,
        released: None,
        // Recorded before verdicts were signed.
        signer: None,
    };
    let rejected = record(pool, &judged).await.expect("recorded");
    publish_a_model(pool).await;
    Seeded { crowned, failure, rejected, hostile }
}

/// recipe-v0.1.1 published as a model, with the card `karpa model export`
/// renders, and its re-training by `karpa reference` (without a download link).
async fn publish_a_model(pool: &sqlx::PgPool) {
    let hex = |c: char| c.to_string().repeat(64);
    let m: karpa_bot::release::model::ModelConfig = serde_json::from_value(json!({
        "format": "karpa-model/v1", "name": "karpa-tiny-v0.1.1", "tag": "recipe-v0.1.1", "commit": "e".repeat(40),
        "config": "tiny", "protocol_config_sha256": hex('1'), "hparams": {"lr": 0.003, "batch_rows": 8},
        "vocab_size": 4096, "seq_len": 128, "params": 1_812_480, "harness_digest": hex('2'),
        "dataset": "Shakespeare's complete works", "data_manifest_sha256": hex('3'), "tokenizer_sha256": hex('4'),
        "bundle_digest": hex('5'), "crown_note_sha256": hex('6'),
        "weights": {"checkpoint": "checkpoints/step-384.safetensors", "sha256": hex('7'), "params": 1_812_480},
        "scores": {"hidden_bpb": 2.3381, "sigma": 0.0123, "floor_n": 10, "king": KING, "king_bpb": 2.41,
                   "gain": 0.0719, "confirmation_bpb": [2.3402, 2.3377, 2.3391], "val_bpb": 2.3455},
        "training": {"seed": 1337, "steps": 384, "tokens": 786_432, "flops": 8.55e12, "elapsed_s": 136.2,
                     "device": "cpu", "h100_equivalence": 0.006, "started_at": "2026-11-30T10:00:00Z",
                     "finished_at": "2026-11-30T10:02:16Z"},
        "lineage": [{"tag": "recipe-v0.1.0"}, {"tag": "recipe-v0.1.1", "hidden_bpb": 2.3381, "gain": 0.0719, "bundle_digest": hex('5')}],
        "signed_by": ["5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"]
    }))
    .expect("a model config");
    let card = karpa_bot::release::card::render(&m);
    let url = Some("https://models.example/karpa-tiny-v0.1.1.tar");
    karpa_bot::corpus::record::publish_model(pool, REPO, &m, &card, url).await.expect("published");
    let reference = karpa_bot::release::model::ModelConfig {
        name: "karpa-tiny-v0.1.1-reference".into(),
        provenance: karpa_bot::release::model::Provenance::Reference { val_bpb: 2.3461, hidden_bpb: Some(2.3387) },
        ..m
    };
    let card = karpa_bot::release::card::render(&reference);
    karpa_bot::corpus::record::publish_model(pool, REPO, &reference, &card, None).await.expect("published");
}
