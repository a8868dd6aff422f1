//! The chain path offline: weights and commit hashes against vectors made by
//! other implementations (the Bittensor SDK, hashlib + scalecodec), weight calls
//! encoded and signed against subtensor's real metadata (finney.scale), decoded
//! back, and the outbox's state machine in a real PostgreSQL.

use karpa_bot::chain::commit::Commit;
use karpa_bot::chain::epoch::{facts, plan, Subnet};
use karpa_bot::chain::extrinsic::{Runtime, WeightsCall};
use karpa_bot::chain::outbox::{self, EpochKey, Mode};
use karpa_bot::chain::path::Path;
use karpa_bot::chain::weights::{clip_to_max_weight, to_u16};
use serde_json::Value;

const KEY: EpochKey = EpochKey { netuid: 64, epoch: 1200 };

use karpa_tests::FINNEY_GENESIS;

fn vectors() -> Value {
    serde_json::from_slice(&std::fs::read(karpa_tests::fixture("chain/vectors.json")).unwrap()).unwrap()
}

fn u16s(v: &Value) -> Vec<u16> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u16).collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn weights_match_the_bittensor_sdk() {
    for case in vectors()["weights"].as_array().unwrap() {
        let weights = f64s(&case["weights"]);
        let clipped = match case["limit"].as_f64() {
            Some(limit) => clip_to_max_weight(&weights, limit).unwrap(),
            None => weights.clone(),
        };
        for (ours, theirs) in clipped.iter().zip(f64s(&case["clipped"])) {
            assert!((ours - theirs).abs() < 1e-12, "{case}: {clipped:?}");
        }
        let (uids, values) = to_u16(&u16s(&case["uids"]), &clipped).unwrap();
        assert_eq!((uids, values), (u16s(&case["emit_uids"]), u16s(&case["emit_values"])), "{case}");
    }
}

#[test]
fn commit_hashes_match_hashlib_over_scalecodec() {
    for case in vectors()["commits"].as_array().unwrap() {
        let account: [u8; 32] = hex::decode(case["account"].as_str().unwrap()).unwrap().try_into().unwrap();
        let (uids, values, salt) = (u16s(&case["uids"]), u16s(&case["values"]), u16s(&case["salt"]));
        let commit = Commit {
            account: &account,
            netuid: case["netuid"].as_u64().unwrap() as u16,
            uids: &uids,
            values: &values,
            salt: &salt,
            version_key: case["version_key"].as_u64().unwrap(),
        };
        assert_eq!(hex::encode(commit.preimage()), case["scale"].as_str().unwrap(), "{case}");
        assert_eq!(hex::encode(commit.hash()), case["hash"].as_str().unwrap(), "{case}");
    }
}

fn finney() -> Runtime {
    let bytes = std::fs::read(karpa_tests::fixture("chain/finney.scale")).unwrap();
    let genesis: [u8; 32] = hex::decode(FINNEY_GENESIS).unwrap().try_into().unwrap();
    Runtime::from_metadata(&bytes, genesis).expect("finney's metadata has the weight calls")
}

/// SCALE by hand: what each call's bytes must be after its two indices.
fn compact_len(n: usize) -> Vec<u8> {
    assert!(n < 64);
    vec![(n as u8) << 2]
}

fn list(xs: &[u16]) -> Vec<u8> {
    let mut out = compact_len(xs.len());
    xs.iter().for_each(|x| out.extend(x.to_le_bytes()));
    out
}

#[tokio::test]
async fn weight_calls_encode_sign_and_decode_against_finney_metadata() {
    let rt = finney();
    assert!(rt.spec_version > 200 && rt.transaction_version >= 1, "{} {}", rt.spec_version, rt.transaction_version);
    let pallet = rt.metadata.pallet_by_name("SubtensorModule").unwrap();
    let index = |call: &str| (pallet.call_index(), pallet.call_variant_by_name(call).unwrap().index);
    // What the metadata says (and what docs/REFERENCE noted for this snapshot).
    assert_eq!(index("set_weights"), (7, 0));

    let set = WeightsCall::SetWeights { netuid: 64, uids: vec![0, 7], values: vec![65535, 7282], version_key: 1000 };
    let commit = WeightsCall::CommitWeights { netuid: 64, commit_hash: [0xab; 32] };
    let reveal = WeightsCall::RevealWeights {
        netuid: 64,
        uids: vec![0, 7],
        values: vec![65535, 7282],
        salt: vec![1, 2, 3, 4, 5, 6, 7, 8],
        version_key: 1000,
    };
    let mut args = 64u16.to_le_bytes().to_vec();
    args.extend(list(&[0, 7]));
    args.extend(list(&[65535, 7282]));
    let mut set_bytes = vec![index("set_weights").0, index("set_weights").1];
    set_bytes.extend(&args);
    set_bytes.extend(1000u64.to_le_bytes());
    assert_eq!(rt.call_data(&set).unwrap(), set_bytes);
    let mut commit_bytes = vec![index("commit_weights").0, index("commit_weights").1];
    commit_bytes.extend(64u16.to_le_bytes());
    commit_bytes.extend([0xab; 32]);
    assert_eq!(rt.call_data(&commit).unwrap(), commit_bytes);
    let mut reveal_bytes = vec![index("reveal_weights").0, index("reveal_weights").1];
    reveal_bytes.extend(&args);
    reveal_bytes.extend(list(&[1, 2, 3, 4, 5, 6, 7, 8]));
    reveal_bytes.extend(1000u64.to_le_bytes());
    assert_eq!(rt.call_data(&reveal).unwrap(), reveal_bytes);

    // Signed by //Alice with nonce 5, then read back field by field.
    let alice = proof::hotkey::keypair_from_uri("//Alice").unwrap();
    for call in [&set, &commit, &reveal] {
        let (bytes, signed_payload) = rt.sign(call, &alice, 5, None).unwrap();
        let x = rt.decode(&bytes).await.unwrap();
        assert_eq!((x.pallet.as_str(), x.call.as_str()), ("SubtensorModule", call.name()));
        assert_eq!((x.pallet_index, x.call_index), index(call.name()));
        let mut address = vec![0u8]; // MultiAddress::Id
        address.extend(alice.public_key().0);
        assert_eq!(x.address.as_deref(), Some(&address[..]));
        let sig = x.signature.unwrap();
        assert_eq!((sig.len(), sig[0]), (65, 1), "MultiSignature::Sr25519");
        let sig = subxt_signer::sr25519::Signature(sig[1..].try_into().unwrap());
        assert!(subxt_signer::sr25519::verify(&sig, &signed_payload, &alice.public_key()), "the signature verifies");
        assert_eq!((x.nonce, x.tip), (Some(5), Some(0)));
        let fields = x.fields.to_string();
        assert!(fields.contains("netuid: 64"), "{fields}");
        if !matches!(call, WeightsCall::CommitWeights { .. }) {
            for part in ["(0, 7)", "(65535, 7282)", "version_key: 1000"] {
                assert!(fields.contains(part), "{part} not in {fields}");
            }
        }
        let call_data = rt.call_data(call).unwrap();
        assert!(bytes.windows(call_data.len()).any(|w| w == call_data), "the extrinsic carries the call's bytes");
    }
}

#[tokio::test]
async fn an_epoch_is_planned_once_and_its_outbox_row_survives_restarts() {
    let pool = karpa_tests::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let seeded = karpa_tests::corpus_seed::seed(&pool, dir.path()).await;
    // A near miss by another miner (Bob), judged after the crown.
    let bob = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    sqlx::query("UPDATE submissions SET hotkey = $2, class = 'meaningful-failure' WHERE id = $1")
        .bind(seeded.failure.as_str())
        .bind(bob)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE verdicts SET class = 'meaningful-failure', judged_at = now() + interval '1 second' WHERE submission_id = $1")
        .bind(seeded.failure.as_str())
        .execute(&pool)
        .await
        .unwrap();
    let f = facts(&pool, karpa_tests::corpus_seed::REPO, 64).await.unwrap();
    let alice = proof::hotkey::ss58(&proof::hotkey::keypair_from_uri("//Alice").unwrap());
    assert_eq!(f.king_tag.as_deref(), Some("recipe-v0.1.1"));
    assert_eq!(f.king_hotkey.as_deref(), Some(alice.as_str()));
    assert_eq!(f.meaningful, [bob]);

    let uid_of = |h: &str| [(alice.as_str(), 3), (bob, 9)].iter().find(|(k, _)| *k == h).map(|(_, u)| *u);
    let account = karpa_bot::chain::node::account(&alice).unwrap();
    let subnet = Subnet {
        netuid: 64,
        epoch: 1200,
        max_weight_limit: u16::MAX,
        version_key: 1000,
        path: Path::Legacy { reveal_after: 1 },
        preflight: None,
        burn_uid: Some(0),
        uid_of: &uid_of,
        account,
    };
    let p = plan(karpa_tests::corpus_seed::REPO, &f, &subnet).unwrap();
    assert_eq!((p.uids.clone(), p.weights.clone()), (vec![3, 9], vec![65535, 7282]));
    assert_eq!((p.mode, p.reveal_epoch), (Mode::Commit, Some(1201)));
    let salt = p.salt.clone().unwrap();
    let commit =
        Commit { account: &account, netuid: 64, uids: &[3, 9], values: &[65535, 7282], salt: &salt, version_key: 1000 };
    assert_eq!(p.commit_hash, Some(commit.hash()));
    // A miner missing from the metagraph stops the plan with a clear error.
    let only_alice = |h: &str| (h == alice).then_some(3);
    let err = plan(karpa_tests::corpus_seed::REPO, &f, &Subnet { uid_of: &only_alice, ..subnet }).unwrap_err();
    assert!(err.to_string().contains(&format!("hotkey {bob} is not in the subnet's metagraph")), "{err}");
    // What the chain would refuse is refused at planning: here, no validator permit.
    let chain = karpa_bot::chain::preflight::Subnet {
        netuid: 64,
        neurons: 256,
        min_allowed_weights: 1,
        max_weight_limit: u16::MAX,
        weights_version_key: 0,
        uid: Some(3),
        permit: false,
        stake_upper_bound: 10,
        stake_threshold: 0,
    };
    let err = plan(karpa_tests::corpus_seed::REPO, &f, &Subnet { preflight: Some(chain), ..subnet }).unwrap_err();
    assert!(err.to_string().contains("pre-flight: uid 3 holds no validator permit on subnet 64"), "{err}");

    assert!(outbox::plan(&pool, &p).await.unwrap(), "recorded");
    let mut again = p.clone();
    again.weights = vec![1, 1];
    assert!(!outbox::plan(&pool, &again).await.unwrap(), "an epoch is planned once");
    assert!(outbox::advance(&pool, KEY, "pending", "committed", Some("0xc0"), Some("0xb1")).await.unwrap());
    assert!(!outbox::advance(&pool, KEY, "pending", "committed", None, None).await.unwrap(), "a repeated step");
    outbox::failed_attempt(&pool, KEY, "rate limited", std::time::Duration::from_secs(60)).await.unwrap();
    assert!(outbox::due(&pool).await.unwrap().is_empty(), "backing off");

    // A restarted validator (a new pool) sees the same row: its salt, its state.
    let url = sqlx::ConnectOptions::to_url_lossy(&*pool.connect_options()).to_string();
    pool.close().await;
    let pool = karpa_bot::db::connect(&url).await.unwrap();
    let rows = outbox::recent(&pool, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r.state.as_str(), r.attempts, r.tx_hash.as_deref()), ("committed", 1, Some("0xc0")));
    assert_eq!(r.weights, serde_json::json!([65535, 7282]));
    assert_eq!(r.salt, Some(serde_json::to_value(&salt).unwrap()), "the salt outlives the process");
    assert_eq!(r.last_error.as_deref(), Some("rate limited"));
    for _ in 1..outbox::MAX_ATTEMPTS {
        outbox::failed_attempt(&pool, KEY, "node unreachable", std::time::Duration::ZERO).await.unwrap();
    }
    let r = &outbox::recent(&pool, 10).await.unwrap()[0];
    assert_eq!((r.state.as_str(), r.attempts), ("failed", outbox::MAX_ATTEMPTS), "kept, not lost");
}

#[tokio::test]
async fn the_cli_dry_runs_offline_and_shows_the_outbox() {
    let chain = karpa_tests::OfflineChain::new().await;
    let alice = proof::hotkey::ss58(&proof::hotkey::keypair_from_uri("//Alice").unwrap());
    let out = chain.dry_run(&[]).ok();
    assert!(out.stdout.contains("king recipe-v0.1.1") && out.stdout.contains("weights [65535]"), "{}", out.stdout);
    // set_weights(64, [3], [65535], 0) after pallet 7, call 0.
    assert!(out.stdout.contains("set_weights: 0x07004000040300"), "{}", out.stdout);
    assert!(out.stdout.contains("nothing submitted, nothing recorded"));

    // A king's miner who is not registered: a clear error, nothing planned.
    std::fs::write(&chain.metagraph, "{}").unwrap();
    let missing = chain.dry_run(&[]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains(&format!("hotkey {alice} is not in the subnet's metagraph")), "{}", missing.stderr);
    let status =
        karpa_tests::run(&karpa_tests::binary("karpa"), &[&"chain", &"status", &"--database-url", &chain.url]).ok();
    assert!(status.stdout.starts_with("no epoch planned yet"), "{}", status.stdout);
}

#[tokio::test]
async fn an_unplannable_epoch_is_kept_blocked_then_planned_and_a_rate_limit_waits_without_failing() {
    let pool = karpa_tests::fresh_database().await;
    let key = EpochKey { netuid: 3, epoch: 77 };
    let why = "hotkey 5Abc is not in the subnet's metagraph";
    outbox::blocked(&pool, key, "o/r", Some("recipe-v0.1.4"), why).await.unwrap();
    outbox::blocked(&pool, key, "o/r", Some("recipe-v0.1.4"), why).await.unwrap();
    let r = &outbox::recent(&pool, 5).await.unwrap()[0];
    assert_eq!((r.state.as_str(), r.attempts, r.last_error.as_deref()), ("blocked", 2, Some(why)));
    assert!(outbox::due(&pool).await.unwrap().is_empty(), "nothing to send for a blocked epoch");

    let p = outbox::Plan {
        netuid: 3,
        epoch: 77,
        repo: "o/r".into(),
        king_tag: Some("recipe-v0.1.4".into()),
        scores: [(karpa_bot::chain::weights::Target::Burn, 1.0)].into(),
        uids: vec![0],
        weights: vec![65535],
        version_key: 7,
        mode: Mode::Set,
        salt: None,
        commit_hash: None,
        reveal_epoch: None,
    };
    assert!(outbox::plan(&pool, &p).await.unwrap(), "a blocked epoch is planned on the next run");
    assert!(!outbox::plan(&pool, &p).await.unwrap(), "and only once");
    let due = outbox::due(&pool).await.unwrap();
    assert_eq!((due.len(), due[0].state.as_str(), due[0].weights.clone()), (1, "pending", serde_json::json!([65535])));

    outbox::defer(
        &pool,
        key,
        "rate limited: weights may be set again at block 900",
        std::time::Duration::from_secs(120),
    )
    .await
    .unwrap();
    assert!(outbox::due(&pool).await.unwrap().is_empty(), "waiting out the rate limit");
    let r = &outbox::recent(&pool, 5).await.unwrap()[0];
    assert_eq!((r.state.as_str(), r.attempts), ("pending", 2), "a wait is not a failed attempt");
    assert!(r.last_error.as_deref().unwrap().starts_with("rate limited"));
}
