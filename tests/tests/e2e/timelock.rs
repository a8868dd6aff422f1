//! Timelocked weight commits (commit-reveal v4) against the reference: the
//! ciphertexts `bittensor-drand` makes open with Karpa's code given a past
//! quicknet round's published signature, and Karpa's open with
//! `bittensor-drand` (run live, from the package `cargo xtask` installs); the
//! reveal rounds bracket the SDK's; the calls encode, sign and decode against
//! finney's metadata; the outbox goes committed → revealed → finalized, or
//! dropped; `karpa chain dry-run` says which path it takes and why.

use karpa_bot::chain::extrinsic::{Runtime, WeightsCall};
use karpa_bot::chain::outbox::{self, EpochKey, Mode};
use karpa_bot::chain::schedule::{stateless_epoch, EpochModel, EpochState, Schedule};
use karpa_bot::chain::tlock::{self, WeightsPayload};
use parity_scale_codec::Encode;
use serde_json::Value;
use std::io::Write;

use karpa_tests::FINNEY_GENESIS;

fn vectors() -> Value {
    serde_json::from_slice(&std::fs::read(karpa_tests::fixture("chain/tlock_vectors.json")).unwrap()).unwrap()
}

fn u16s(v: &Value) -> Vec<u16> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u16).collect()
}

fn payload_of(case: &Value) -> WeightsPayload {
    WeightsPayload {
        hotkey: case["hotkey"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect(),
        uids: u16s(&case["uids"]),
        values: u16s(&case["values"]),
        version_key: case["version_key"].as_u64().unwrap(),
    }
}

/// `bittensor_drand.decrypt_with_signature` on a ciphertext, in the project's
/// Python (SCALE-wrapped as its `UserData`, the form it reads).
fn sdk_decrypt(ciphertext: &[u8], round: u64, signature: &str) -> Vec<u8> {
    let python = std::env::var("KARPA_PYTHON").expect("KARPA_PYTHON: run the tests with cargo xtask test");
    let script = "import sys, bittensor_drand as d\n\
                  blob, sig = bytes.fromhex(sys.stdin.readline().strip()), sys.stdin.readline().strip()\n\
                  sys.stdout.write(d.decrypt_with_signature(blob, sig).hex())\n";
    let wrapped = (ciphertext.to_vec(), round).encode();
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}\n{signature}", hex::encode(wrapped)).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "bittensor-drand: {}", String::from_utf8_lossy(&out.stderr));
    hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
}

#[test]
fn commits_open_both_ways_with_bittensor_drand() {
    let v = vectors();
    let (round, signature) = (v["round"].as_u64().unwrap(), v["signature"].as_str().unwrap());
    let sig = hex::decode(signature).unwrap();
    for case in v["sdk_ciphertexts"].as_array().unwrap() {
        let want = payload_of(case);
        // The payload's SCALE bytes are the ones the SDK encrypted…
        assert_eq!(hex::encode(want.encode()), case["payload"].as_str().unwrap());
        // …its ciphertext opens with ours…
        let theirs = hex::decode(case["ciphertext"].as_str().unwrap()).unwrap();
        assert_eq!(tlock::open(&theirs, &sig).unwrap(), want);
        // …and ours with its.
        let ours = tlock::encrypt(&want, round).unwrap();
        assert_eq!(sdk_decrypt(&ours, round, signature), want.encode());
    }
    // The signature of another round opens nothing.
    let ours = tlock::encrypt(&payload_of(&v["sdk_ciphertexts"][0]), round + 1).unwrap();
    assert!(tlock::open(&ours, &sig).is_err());
}

/// Our round at the wall times just before and after the SDK's call brackets
/// its, `shift` rounds later where we knowingly differ.
fn assert_brackets(schedule: &Schedule, r: &Value, sig: &[u8], shift: u64) {
    let t = |k: &str| r[k].as_f64().unwrap();
    let round = r["round"].as_u64().unwrap() + shift;
    let early = schedule.reveal_round(t("now_before"), t("block_time")).unwrap();
    let late = schedule.reveal_round(t("now_after"), t("block_time")).unwrap();
    assert!(early <= round && round <= late, "{early}..{late} vs the SDK's {round}: {r}");
    // The SDK's commit is a timelocked ciphertext (of another round: it does not open).
    let commit = hex::decode(r["commit"].as_str().unwrap()).unwrap();
    let err = tlock::decrypt(&commit, sig).unwrap_err().to_string();
    assert!(err.contains("does not decrypt"), "{err}");
}

#[test]
fn reveal_rounds_bracket_the_sdks_stateful_and_stateless_and_its_commits_parse() {
    let v = vectors();
    let sig = hex::decode(v["signature"].as_str().unwrap()).unwrap();
    for r in v["reveal_rounds"].as_array().unwrap() {
        let n = |k: &str| r[k].as_u64().unwrap();
        let schedule = Schedule {
            netuid: 1,
            tempo: n("tempo") as u16,
            block: n("current_block"),
            reveal_period: n("reveal_period"),
            model: EpochModel::Stateful(EpochState {
                last_epoch_block: n("last_epoch_block"),
                pending_epoch_at: n("pending_epoch_at"),
                subnet_epoch_index: n("subnet_epoch_index"),
                blocks_since_last_step: n("blocks_since_last_step"),
            }),
        };
        assert_brackets(&schedule, r, &sig, 0);
    }
    // The stateless maths (spec 365), from bittensor-drand 1.3.0.
    let path = karpa_tests::fixture("chain/tlock_stateless_vectors.json");
    let stateless: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for r in stateless["reveal_rounds"].as_array().unwrap() {
        let n = |k: &str| r[k].as_u64().unwrap();
        let schedule = Schedule {
            netuid: n("netuid") as u16,
            tempo: n("tempo") as u16,
            block: n("current_block"),
            reveal_period: n("reveal_period"),
            model: EpochModel::Stateless,
        };
        // Sent on an epoch's last block, the commit lands in the next epoch: the SDK 1.x
        // targeted the head's epoch (a round an epoch early); we target the chain's, one
        // epoch of rounds later (tempo + 1 blocks of 12 s, 3 s a round).
        let (block, netuid, tempo) = (schedule.block, schedule.netuid, schedule.tempo);
        let crosses = stateless_epoch(block + 1, netuid, tempo) != stateless_epoch(block, netuid, tempo);
        let shift = if crosses { (u64::from(tempo) + 1) * 4 } else { 0 };
        assert_brackets(&schedule, r, &sig, shift);
    }
}

fn finney() -> Runtime {
    let bytes = std::fs::read(karpa_tests::fixture("chain/finney.scale")).unwrap();
    let genesis: [u8; 32] = hex::decode(FINNEY_GENESIS).unwrap().try_into().unwrap();
    Runtime::from_metadata(&bytes, genesis).unwrap()
}

#[tokio::test]
async fn timelocked_calls_encode_sign_and_decode_against_finney_metadata() {
    let rt = finney();
    let calls = rt.calls().unwrap();
    assert!(calls.set && calls.legacy && calls.timelocked && calls.timelocked_mechanism, "{calls:?}");
    assert!(rt.has_storage("CommitRevealWeightsVersion") && !rt.has_storage("SubnetEpochIndex"), "spec 365");
    let pallet = rt.metadata.pallet_by_name("SubtensorModule").unwrap();
    let index = |call: &str| (pallet.call_index(), pallet.call_variant_by_name(call).unwrap().index);
    assert_eq!(index("commit_timelocked_weights"), (7, 113));
    assert_eq!(index("commit_timelocked_mechanism_weights"), (7, 118));
    let commit = tlock::encrypt(
        &WeightsPayload { hotkey: vec![1; 32], uids: vec![3], values: vec![65535], version_key: 9 },
        657_413,
    )
    .unwrap();
    let alice = proof::hotkey::keypair_from_uri("//Alice").unwrap();
    for mechanism in [Some(0u8), None] {
        let call = WeightsCall::CommitTimelocked {
            netuid: 64,
            mechanism,
            commit: commit.clone(),
            reveal_round: 657_413,
            version: 4,
        };
        // By hand: indices, netuid, the mechanism id, the commit (compact length), round, version.
        let mut want = vec![7, if mechanism.is_some() { 118 } else { 113 }];
        want.extend(64u16.to_le_bytes());
        want.extend(mechanism);
        want.extend(parity_scale_codec::Compact(commit.len() as u32).encode());
        want.extend(&commit);
        want.extend(657_413u64.to_le_bytes());
        want.extend(4u16.to_le_bytes());
        assert_eq!(rt.call_data(&call).unwrap(), want);
        // Signed mortal from block 1000 (its hash), read back field by field.
        let (bytes, payload) = rt.sign(&call, &alice, 11, Some((1000, [9; 32]))).unwrap();
        let x = rt.decode(&bytes).await.unwrap();
        assert_eq!((x.call.as_str(), x.nonce, x.mortal), (call.name(), Some(11), Some(true)));
        let sig = subxt_signer::sr25519::Signature(x.signature.unwrap()[1..].try_into().unwrap());
        assert!(subxt_signer::sr25519::verify(&sig, &payload, &alice.public_key()));
        let fields = x.fields.to_string();
        for part in ["netuid: 64", "reveal_round: 657413", "commit_reveal_version: 4"] {
            assert!(fields.contains(part), "{part} not in {fields}");
        }
        let (immortal, _) = rt.sign(&call, &alice, 11, None).unwrap();
        assert_eq!(rt.decode(&immortal).await.unwrap().mortal, Some(false));
    }
}

#[tokio::test]
async fn a_timelocked_epoch_is_committed_revealed_and_finalized_or_found_dropped() {
    let pool = karpa_tests::fresh_database().await;
    let plan = |epoch: u64| outbox::Plan {
        netuid: 64,
        epoch,
        repo: "o/r".into(),
        king_tag: Some("recipe-v0.1.1".into()),
        scores: [(karpa_bot::chain::weights::Target::Burn, 1.0)].into(),
        uids: vec![0],
        weights: vec![65535],
        version_key: 7,
        mode: Mode::Timelocked,
        salt: None,
        commit_hash: None,
        reveal_epoch: Some(epoch + 1),
    };
    let (a, b) = (EpochKey { netuid: 64, epoch: 20 }, EpochKey { netuid: 64, epoch: 21 });
    for key in [a, b] {
        assert!(outbox::plan(&pool, &plan(key.epoch)).await.unwrap());
        // Recorded once the pool accepts it; a second run cannot record (or send) it again.
        let sent = outbox::Sent {
            commit: b"ciphertext",
            reveal_round: 104,
            reveal_epoch: key.epoch + 1,
            reveal_block: 5000,
            version: 4,
            tx_hash: "0xt",
            block: 4000,
        };
        assert!(outbox::timelocked_sent(&pool, key, &sent).await.unwrap());
        assert!(!outbox::timelocked_sent(&pool, key, &sent).await.unwrap(), "an epoch is sent once");
        assert!(outbox::advance(&pool, key, "submitted", "committed", None, Some("0xb")).await.unwrap());
    }
    let r = row(&pool, a).await;
    assert_eq!(
        (r.reveal_round, r.reveal_epoch, r.reveal_block, r.sent_block),
        (Some(104), Some(21), Some(5000), Some(4000))
    );
    assert_eq!((r.tx_hash.as_deref(), r.block_hash.as_deref()), (Some("0xt"), Some("0xb")));

    // Epoch 20's weights show up in its reveal epoch, 21; then 21 ends.
    assert_eq!(outbox::timelocked_next("committed", 21, 20, false), None, "not yet");
    assert_eq!(outbox::timelocked_next("committed", 21, 21, false), None, "the chain retries through the epoch");
    let next = outbox::timelocked_next("committed", 21, 21, true).unwrap();
    assert!(outbox::advance(&pool, a, "committed", next, None, None).await.unwrap());
    assert_eq!(outbox::timelocked_next("revealed", 21, 21, true), None);
    let next = outbox::timelocked_next("revealed", 21, 22, true).unwrap();
    assert!(outbox::advance(&pool, a, "revealed", next, None, None).await.unwrap());
    assert_eq!(row(&pool, a).await.state, "finalized");

    // Epoch 21's never show up by the end of 22: dropped, kept with the reason, not retried.
    assert_eq!(outbox::timelocked_next("committed", 22, 23, false), Some("dropped"));
    let why = "the chain did not apply the commit (drand round 104) by the end of epoch 22";
    assert!(outbox::dropped(&pool, b, why).await.unwrap());
    let r = row(&pool, b).await;
    assert_eq!((r.state.as_str(), r.last_error.as_deref()), ("dropped", Some(why)));
    assert!(outbox::due(&pool).await.unwrap().is_empty(), "neither is worked on again");
    // An epoch whose commit was never sent before its epoch passed is superseded, not sent late.
    let late = EpochKey { netuid: 64, epoch: 22 };
    assert!(outbox::plan(&pool, &plan(22)).await.unwrap());
    assert!(outbox::dropped(&pool, late, "epoch 22 passed before its commit was sent").await.unwrap());
    assert_eq!(row(&pool, late).await.state, "dropped");
    // The current epoch is planned afresh: the weights are committed again, never silently lost.
    assert!(outbox::plan(&pool, &plan(23)).await.unwrap());
    assert_eq!(outbox::due(&pool).await.unwrap()[0].epoch, 23);
}

async fn row(pool: &sqlx::PgPool, key: EpochKey) -> outbox::Row {
    outbox::recent(pool, 10).await.unwrap().into_iter().find(|r| r.epoch == key.epoch as i64).unwrap()
}

#[tokio::test]
async fn the_dry_run_names_its_path_and_a_failed_preflight_blocks_the_epoch() {
    let chain = karpa_tests::OfflineChain::new().await;
    let dry = |extra: &[&str]| chain.dry_run(extra);
    let out = dry(&["--commit-reveal", "1", "--commit-reveal-version", "4"]).ok();
    let want = "path: commit-reveal is on on subnet 64 (CommitRevealWeightsVersion 4): commit_timelocked_mechanism_weights (mechanism 0)";
    assert!(out.stdout.contains(want), "{}", out.stdout);
    // Epoch 7 of subnet 64 starts at block 7·361 − 65 = 2462; revealed in epoch 8, from block 2823.
    assert!(
        out.stdout.contains("revealed by the chain in epoch 8 (from block 2823), with drand quicknet round"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("commit_timelocked_mechanism_weights: ") && out.stdout.contains("nothing submitted"),
        "{}",
        out.stdout
    );
    let legacy = dry(&["--commit-reveal", "1"]).ok();
    assert!(legacy.stdout.contains("no CommitRevealWeightsVersion: commit_weights now"), "{}", legacy.stdout);
    let off = dry(&[]).ok();
    assert!(off.stdout.contains("path: commit-reveal is off on subnet 64: set_weights"), "{}", off.stdout);
    let v3 = dry(&["--commit-reveal", "1", "--commit-reveal-version", "3"]);
    assert!(v3.code != 0 && v3.stderr.contains("Karpa makes version 4 commits only"), "{}", v3.stderr);
    let wrong = dry(&["--block", "100"]);
    assert!(wrong.code != 0 && wrong.stderr.contains("not --epoch 7"), "{}", wrong.stderr);

    // A pre-flight refusal is an unplannable epoch: kept as blocked with its reason, shown by status.
    let refused = karpa_bot::chain::preflight::check(
        &karpa_bot::chain::preflight::Subnet {
            netuid: 64,
            neurons: 256,
            min_allowed_weights: 8,
            max_weight_limit: u16::MAX,
            weights_version_key: 0,
            uid: Some(5),
            permit: true,
            stake_upper_bound: 1,
            stake_threshold: 0,
        },
        0,
        &[3],
        &[65535],
        None,
    )
    .unwrap_err()
    .to_string();
    let key = EpochKey { netuid: 64, epoch: 7 };
    outbox::blocked(&chain.pool, key, karpa_tests::corpus_seed::REPO, Some("recipe-v0.1.1"), &refused).await.unwrap();
    let karpa = karpa_tests::binary("karpa");
    let status = karpa_tests::run(&karpa, &[&"chain", &"status", &"--database-url", &chain.url]).ok();
    assert!(
        status.stdout.contains("blocked") && status.stdout.contains("pre-flight: subnet 64 needs at least 8 weights"),
        "{}",
        status.stdout
    );
}
