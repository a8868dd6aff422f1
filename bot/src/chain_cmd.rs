//! `karpa chain status|dry-run|run`: the chain outbox from a terminal.
//!
//! No subtensor node is reachable from the machines the tests run on; `dry-run`
//! therefore also works offline, from a metagraph file (`{"<ss58>": uid}`) and a
//! metadata file (SCALE, e.g. `subxt metadata --url … > finney.scale`).

use crate::chain::epoch::{facts, plan, Subnet, Unplannable};
use crate::chain::extrinsic::{Runtime, WeightsCall, MORTAL_BLOCKS};
use crate::chain::node::{Node, Rules};
use crate::chain::outbox::{self, EpochKey, Plan};
use crate::chain::path::{choose, Choice, CommitReveal, Path};
use crate::chain::schedule::{EpochModel, Schedule};
use crate::chain::tlock::{self, WeightsPayload};
use crate::chain::weights::Target;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const FINNEY: &str = "wss://entrypoint-finney.opentensor.ai:443";
/// Seconds per block on finney (the drand round of a reveal is a time).
pub const BLOCK_SECONDS: f64 = 12.0;

#[derive(clap::Subcommand, Debug)]
pub enum ChainCommand {
    /// The outbox: each epoch's weights and where their submission stands.
    Status {
        #[command(flatten)]
        db: crate::corpus_cmd::Db,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// What would be submitted for the current epoch; submits and records nothing.
    DryRun {
        #[command(flatten)]
        target: ChainTarget,
        /// Offline: hotkey → uid as JSON instead of the node's metagraph
        /// (then --metadata, --genesis and --epoch are needed too).
        #[arg(long, requires_all = ["metadata", "genesis", "epoch"])]
        metagraph: Option<PathBuf>,
        /// Offline: the runtime metadata (SCALE).
        #[arg(long)]
        metadata: Option<PathBuf>,
        /// Offline: the chain's genesis hash (hex).
        #[arg(long)]
        genesis: Option<String>,
        #[arg(long)]
        epoch: Option<u64>,
        /// Offline: the subnet's max_weight_limit (u16; 65535 = none).
        #[arg(long, default_value_t = u16::MAX)]
        max_weight_limit: u16,
        /// Offline: the subnet's weights version key.
        #[arg(long, default_value_t = 0)]
        version_key: u64,
        /// Offline: commit-reveal on, revealing this many epochs later
        /// (RevealPeriodEpochs; legacy commit/reveal unless --commit-reveal-version).
        #[arg(long)]
        commit_reveal: Option<u64>,
        /// Offline: the chain's CommitRevealWeightsVersion (4: timelocked commits).
        #[arg(long, requires = "commit_reveal")]
        commit_reveal_version: Option<u16>,
        /// Offline: the subnet's tempo (for the reveal block and round).
        #[arg(long, default_value_t = 360)]
        tempo: u16,
        /// Offline: the head block (default: the first block of --epoch).
        #[arg(long)]
        block: Option<u64>,
    },
    /// Plans the current epoch (once) and drives every due epoch: set, or commit
    /// then reveal; retried with backoff, idempotent across restarts.
    Run {
        #[command(flatten)]
        target: ChainTarget,
    },
}

/// Which subnet, which recipe, and who signs.
#[derive(clap::Args, Debug)]
pub struct ChainTarget {
    #[command(flatten)]
    pub db: crate::corpus_cmd::Db,
    /// The recipe repository whose kings are scored (owner/name as in the corpus).
    #[arg(long)]
    pub repo: String,
    #[arg(long)]
    pub netuid: u16,
    /// The subtensor node.
    #[arg(long, default_value = FINNEY)]
    pub endpoint: String,
    /// Where the king's share goes when no miner crowned the king.
    #[arg(long)]
    pub burn_uid: Option<u16>,
    /// The validator's hotkey: a Bittensor keyfile (JSON with secretPhrase or secretSeed) …
    #[arg(long, conflicts_with = "hotkey_uri")]
    pub hotkey_file: Option<PathBuf>,
    /// … or a secret URI (seed phrase, `//Alice` for a dev chain), e.g. from the environment.
    #[arg(long, env = "KARPA_HOTKEY_URI", hide_env_values = true)]
    pub hotkey_uri: Option<String>,
}

impl ChainTarget {
    fn signer(&self) -> Result<Option<subxt_signer::sr25519::Keypair>> {
        match (&self.hotkey_file, &self.hotkey_uri) {
            (Some(f), _) => {
                let json = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
                Ok(Some(proof::hotkey::keypair_from_bittensor_keyfile(&json)?))
            }
            (None, Some(uri)) => Ok(Some(proof::hotkey::keypair_from_uri(uri)?)),
            (None, None) => Ok(None),
        }
    }
}

pub fn run(cmd: ChainCommand) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match cmd {
            ChainCommand::Status { db, limit, json } => status(&db.database_url, limit, json).await,
            ChainCommand::DryRun {
                target,
                metagraph,
                metadata,
                genesis,
                epoch,
                max_weight_limit,
                version_key,
                commit_reveal,
                commit_reveal_version,
                tempo,
                block,
            } => {
                let offline = match metagraph {
                    Some(m) => Some(Offline {
                        metagraph: serde_json::from_slice(&std::fs::read(&m)?)
                            .with_context(|| format!("{} is not a JSON object of hotkey → uid", m.display()))?,
                        metadata: metadata.context("--metadata is required offline")?,
                        genesis: genesis.context("--genesis is required offline")?,
                        epoch: epoch.context("--epoch is required offline")?,
                        max_weight_limit,
                        version_key,
                        commit_reveal: CommitReveal {
                            enabled: commit_reveal.is_some(),
                            version: commit_reveal_version,
                            reveal_period: commit_reveal.unwrap_or(1),
                        },
                        tempo,
                        block,
                    }),
                    None => None,
                };
                dry_run(&target, offline).await
            }
            ChainCommand::Run { target } => run_epochs(&target).await,
        }
    })
}

async fn status(url: &str, limit: i64, json: bool) -> Result<bool> {
    let pool = crate::db::connect(url).await?;
    let rows = outbox::recent(&pool, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(true);
    }
    if rows.is_empty() {
        println!("no epoch planned yet");
    }
    println!(
        "{:<7} {:>8}  {:<7} {:<10} {:>8}  {:<14} weights / last error",
        "netuid", "epoch", "mode", "state", "attempts", "king"
    );
    for r in &rows {
        let what = r.last_error.clone().unwrap_or_else(|| format!("uids {} → {}", r.uids, r.weights));
        println!(
            "{:<7} {:>8}  {:<7} {:<10} {:>8}  {:<14} {what}",
            r.netuid,
            r.epoch,
            r.mode,
            r.state,
            r.attempts,
            r.king_tag.as_deref().unwrap_or("-")
        );
    }
    Ok(true)
}

struct Offline {
    metagraph: BTreeMap<String, u16>,
    metadata: PathBuf,
    genesis: String,
    epoch: u64,
    max_weight_limit: u16,
    version_key: u64,
    commit_reveal: CommitReveal,
    tempo: u16,
    block: Option<u64>,
}

/// An epoch's plan and how it goes to the chain.
struct Planned {
    plan: Plan,
    runtime: Runtime,
    choice: Choice,
    schedule: Schedule,
}

/// The subnet as the node (or the offline files) describes it, the runtime,
/// the path the weights take, and the epoch's plan (pre-flight checked online).
/// Where the subnet's facts come from: the offline files, or a node already
/// connected and read (so a run reads the chain once).
enum Source<'a> {
    Offline(&'a Offline),
    Node { node: &'a Node, runtime: &'a Runtime, rules: &'a Rules },
}

/// A node, its runtime, and the subnet's rules for this validator's `hotkey`.
async fn online(t: &ChainTarget, hotkey: &str) -> Result<(Node, Runtime, Rules)> {
    let node = Node::connect(&t.endpoint).await?;
    let runtime = node.runtime().await?;
    let rules = node.rules(t.netuid, hotkey, &runtime).await?;
    Ok((node, runtime, rules))
}

async fn subnet_plan(t: &ChainTarget, source: Source<'_>, pool: &sqlx::PgPool) -> Result<Planned> {
    let signer = t.signer()?;
    let me = signer.as_ref().map(|k| k.public_key().0).unwrap_or([0; 32]);
    let f = facts(pool, &t.repo, t.netuid).await?;
    let hotkeys: Vec<String> = f.king_hotkey.iter().chain(&f.meaningful).cloned().collect();
    let (uids, runtime, schedule, limit, version_key, commit_reveal, chain) = match source {
        Source::Offline(o) => {
            let bytes = std::fs::read(&o.metadata).with_context(|| format!("cannot read {}", o.metadata.display()))?;
            let genesis: [u8; 32] = hex::decode(o.genesis.trim_start_matches("0x"))
                .ok()
                .and_then(|g| g.try_into().ok())
                .context("--genesis must be 32 bytes of hex")?;
            let first_block = (o.epoch * (u64::from(o.tempo) + 1)).saturating_sub(u64::from(t.netuid) + 1);
            let schedule = Schedule {
                netuid: t.netuid,
                tempo: o.tempo,
                block: o.block.unwrap_or(first_block),
                reveal_period: o.commit_reveal.reveal_period,
                model: EpochModel::Stateless,
            };
            if schedule.epoch() != o.epoch {
                bail!(
                    "block {} is in epoch {} of subnet {}, not --epoch {}",
                    schedule.block,
                    schedule.epoch(),
                    t.netuid,
                    o.epoch
                );
            }
            let runtime = Runtime::from_metadata(&bytes, genesis)?;
            (o.metagraph.clone(), runtime, schedule, o.max_weight_limit, o.version_key, o.commit_reveal, None)
        }
        Source::Node { node, runtime, rules } => {
            let mut uids = BTreeMap::new();
            for h in &hotkeys {
                if let Some(uid) = node.uid(t.netuid, h).await? {
                    uids.insert(h.clone(), uid);
                }
            }
            let schedule = rules.schedule(t.netuid);
            (
                uids,
                runtime.clone(),
                schedule,
                rules.max_weight_limit,
                rules.version_key,
                rules.commit_reveal,
                Some(rules.preflight),
            )
        }
    };
    let choice = choose(&runtime.calls()?, t.netuid, commit_reveal).map_err(Unplannable)?;
    let uid_of = |h: &str| uids.get(h).copied();
    let subnet = Subnet {
        netuid: t.netuid,
        epoch: schedule.epoch(),
        max_weight_limit: limit,
        version_key,
        path: choice.path,
        preflight: chain,
        burn_uid: t.burn_uid,
        uid_of: &uid_of,
        account: me,
    };
    Ok(Planned { plan: plan(&t.repo, &f, &subnet)?, runtime, choice, schedule })
}

/// What an epoch owes, as its plan or its outbox row has it.
struct Owed {
    netuid: u16,
    uids: Vec<u16>,
    values: Vec<u16>,
    version_key: u64,
}

/// A timelocked commit's drand round and reveal epoch.
struct Reveal {
    round: u64,
    epoch: u64,
}

/// The call that sends an epoch's weights first: set, the legacy commit (its
/// hash given), or the timelocked commit, encrypted now to the round the chain
/// will reveal it at (so a retry never sends a round that has passed).
fn first_call(
    w: Owed,
    path: Path,
    hash: Option<[u8; 32]>,
    schedule: &Schedule,
    me: [u8; 32],
) -> Result<(WeightsCall, Option<Reveal>)> {
    Ok(match (path, hash) {
        (Path::Legacy { .. }, Some(commit_hash)) => {
            (WeightsCall::CommitWeights { netuid: w.netuid, commit_hash }, None)
        }
        (Path::Legacy { .. }, None) => bail!("a legacy commit without its hash"),
        (Path::Timelocked { mechanism, version, .. }, _) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
            let round = schedule.reveal_round(now, BLOCK_SECONDS)?;
            let payload =
                WeightsPayload { hotkey: me.to_vec(), uids: w.uids, values: w.values, version_key: w.version_key };
            let commit = tlock::encrypt(&payload, round)?;
            let mechanism = mechanism.then_some(0);
            let call =
                WeightsCall::CommitTimelocked { netuid: w.netuid, mechanism, commit, reveal_round: round, version };
            (call, Some(Reveal { round, epoch: schedule.reveal_epoch()? }))
        }
        (Path::Set, _) => (
            WeightsCall::SetWeights { netuid: w.netuid, uids: w.uids, values: w.values, version_key: w.version_key },
            None,
        ),
    })
}

/// Whether the chain's weights for us are the ones a row committed (the
/// chain may reorder them; values within 1 of ours, for its rounding).
fn weights_seen(on_chain: &[(u16, u16)], uids: &[u16], values: &[u16]) -> bool {
    let ours: BTreeMap<u16, u16> = uids.iter().copied().zip(values.iter().copied()).collect();
    let theirs: BTreeMap<u16, u16> = on_chain.iter().copied().collect();
    ours.len() == theirs.len() && ours.iter().all(|(u, w)| theirs.get(u).is_some_and(|t| t.abs_diff(*w) <= 1))
}

async fn dry_run(t: &ChainTarget, offline: Option<Offline>) -> Result<bool> {
    let pool = crate::db::connect(&t.db.database_url).await?;
    let planned = match &offline {
        Some(o) => subnet_plan(t, Source::Offline(o), &pool).await?,
        None => {
            let signer = t.signer()?.context("a dry run on a node needs the validator's hotkey")?;
            let (node, runtime, rules) = online(t, &proof::hotkey::ss58(&signer)).await?;
            subnet_plan(t, Source::Node { node: &node, runtime: &runtime, rules: &rules }, &pool).await?
        }
    };
    let Planned { plan: p, runtime, choice, schedule } = planned;
    println!("netuid {} epoch {} — king {} — {:?}", p.netuid, p.epoch, p.king_tag.as_deref().unwrap_or("none"), p.mode);
    println!("  path: {}", choice.why);
    println!("\n  {:<50} {:>7}", "to", "share");
    for (target, share) in &p.scores {
        let who = match target {
            Target::Hotkey(h) => h.clone(),
            Target::Burn => "burn uid".to_string(),
        };
        println!("  {who:<50} {share:>7.4}");
    }
    println!("\n  uids    {:?}\n  weights {:?}  (u16, max-upscaled)", p.uids, p.weights);
    let signer = t.signer()?;
    let me = signer.as_ref().map(|k| k.public_key().0).unwrap_or([0; 32]);
    let owed = Owed { netuid: p.netuid, uids: p.uids.clone(), values: p.weights.clone(), version_key: p.version_key };
    let (call, reveal) = first_call(owed, choice.path, p.commit_hash, &schedule, me)?;
    if let Some(r) = reveal {
        let block = schedule.first_reveal_block()?;
        println!(
            "\n  revealed by the chain in epoch {} (from block {block}), with drand quicknet round {}",
            r.epoch, r.round
        );
    }
    let data = runtime.call_data(&call)?;
    match &call {
        WeightsCall::CommitTimelocked { commit, .. } => {
            println!(
                "  {}: {} bytes, a {}-byte ciphertext (fresh each run): 0x{}…",
                call.name(),
                data.len(),
                commit.len(),
                hex::encode(&data[..16])
            )
        }
        _ => println!("\n  {}: 0x{}", call.name(), hex::encode(&data)),
    }
    if let Some(k) = &signer {
        let (signed, _) = runtime.sign(&call, k, 0, None)?;
        let shown = if signed.len() > 96 { format!("{}…", hex::encode(&signed[..96])) } else { hex::encode(&signed) };
        println!("  signed by {} (nonce 0, immortal offline): 0x{shown}", proof::hotkey::ss58(k));
    }
    println!("\n  (dry run: nothing submitted, nothing recorded)");
    Ok(true)
}

/// What driving the due epochs needs, read once per run.
struct Run<'a> {
    pool: &'a sqlx::PgPool,
    node: &'a Node,
    runtime: &'a Runtime,
    rules: Rules,
    signer: &'a subxt_signer::sr25519::Keypair,
    me: String,
    path: Path,
    epoch_now: u64,
}

async fn run_epochs(t: &ChainTarget) -> Result<bool> {
    let Some(signer) = t.signer()? else { bail!("karpa chain run needs --hotkey-file or --hotkey-uri") };
    let pool = crate::db::connect(&t.db.database_url).await?;
    // One run at a time on this outbox: two would send an epoch twice.
    let mut lock = pool.acquire().await?;
    let held: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('karpa chain run'))").fetch_one(&mut *lock).await?;
    if !held {
        bail!("another karpa chain run is driving this outbox; this one stops");
    }
    let me = proof::hotkey::ss58(&signer);
    let (node, runtime, rules) = online(t, &me).await?;
    let epoch_now = rules.epoch(t.netuid);
    match subnet_plan(t, Source::Node { node: &node, runtime: &runtime, rules: &rules }, &pool).await {
        Ok(planned) => {
            if outbox::plan(&pool, &planned.plan).await? {
                tracing::info!(netuid = planned.plan.netuid, epoch = planned.plan.epoch, "planned");
            }
        }
        Err(e) if e.downcast_ref::<Unplannable>().is_some() => {
            // Not plannable, or refused by the pre-flight: kept with the reason.
            let king = facts(&pool, &t.repo, t.netuid).await?.king_tag;
            let key = EpochKey { netuid: t.netuid, epoch: epoch_now };
            tracing::warn!(netuid = t.netuid, epoch = epoch_now, "not planned: {e}");
            outbox::blocked(&pool, key, &t.repo, king.as_deref(), &e.to_string()).await?;
        }
        Err(e) => return Err(e),
    }
    let path = choose(&runtime.calls()?, t.netuid, rules.commit_reveal).map_err(Unplannable)?.path;
    let run = Run { pool: &pool, node: &node, runtime: &runtime, rules, signer: &signer, me, path, epoch_now };
    for row in outbox::due(&pool).await? {
        let key = EpochKey { netuid: row.netuid as u16, epoch: row.epoch as u64 };
        // Each row on its own: one that fails counts an attempt and waits; the others go on.
        if let Err(e) = drive(&run, &row).await {
            let why = format!("{e:#}");
            tracing::warn!(netuid = key.netuid, epoch = key.epoch, "{why}");
            outbox::failed_attempt(&pool, key, &why, std::time::Duration::from_secs(30)).await?;
        }
    }
    sqlx::query("SELECT pg_advisory_unlock(hashtext('karpa chain run'))").execute(&mut *lock).await?;
    Ok(true)
}

/// One due epoch, one step.
async fn drive(run: &Run<'_>, row: &outbox::Row) -> Result<()> {
    let (netuid, epoch) = (row.netuid as u16, row.epoch as u64);
    let key = EpochKey { netuid, epoch };
    let uids: Vec<u16> = serde_json::from_value(row.uids.clone())?;
    let values: Vec<u16> = serde_json::from_value(row.weights.clone())?;
    let version_key = row.version_key as u64;
    let owed = Owed { netuid, uids: uids.clone(), values: values.clone(), version_key };
    let (call, flight, done) = match (row.mode.as_str(), row.state.as_str()) {
        ("timelocked", "committed" | "revealed") => return watch_reveal(run, row, (&uids, &values)).await,
        ("timelocked", "submitted") => return settle_unwatched(run, row).await,
        ("timelocked", "pending") if epoch < run.epoch_now => {
            let why =
                format!("epoch {epoch} passed before its commit was sent: superseded by epoch {}'s", run.epoch_now);
            outbox::dropped(run.pool, key, &why).await?;
            return Ok(());
        }
        ("timelocked", "pending") => return send_timelocked(run, key, owed).await,
        ("set", "pending" | "submitted") => {
            let (call, _) = first_call(owed, Path::Set, None, &run.rules.schedule(netuid), [0; 32])?;
            (call, "submitted", "finalized")
        }
        ("commit", "pending" | "submitted") => {
            let hash = commit_of(run.pool, key).await?;
            (WeightsCall::CommitWeights { netuid, commit_hash: hash }, "submitted", "committed")
        }
        ("commit", "committed" | "revealing") if row.reveal_epoch.is_some_and(|r| run.epoch_now >= r as u64) => {
            let salt: Vec<u16> = serde_json::from_value(row.salt.clone().context("a commit without its salt")?)?;
            (WeightsCall::RevealWeights { netuid, uids, values, salt, version_key }, "revealing", "finalized")
        }
        _ => return Ok(()),
    };
    if rate_limited(run, key).await? {
        return Ok(());
    }
    let sent = run.node.submit(&call, run.signer).await.with_context(|| call.name().to_string())?;
    let tx = sent.tx_hash.clone();
    outbox::advance(run.pool, key, &row.state, flight, Some(&tx), None).await?;
    let block = sent.finalized().await.with_context(|| call.name().to_string())?;
    outbox::advance(run.pool, key, flight, done, None, Some(&block)).await?;
    println!("netuid {netuid} epoch {epoch}: {} final in {block} (tx {tx})", call.name());
    Ok(())
}

/// Defers the epoch while the subnet's weights rate limit holds; true when it does.
async fn rate_limited(run: &Run<'_>, key: EpochKey) -> Result<bool> {
    let allowed = run.node.next_allowed_block(key.netuid, &run.me).await?;
    if run.rules.block >= allowed {
        return Ok(false);
    }
    let why = format!("rate limited: weights may be set again at block {allowed}");
    outbox::defer(run.pool, key, &why, std::time::Duration::from_secs(12 * (allowed - run.rules.block))).await?;
    Ok(true)
}

/// A timelocked commit, encrypted now against a fresh read of the chain (so
/// its round is this moment's), recorded once the pool accepts it.
async fn send_timelocked(run: &Run<'_>, key: EpochKey, owed: Owed) -> Result<()> {
    let Path::Timelocked { version, .. } = run.path else {
        bail!("subnet {} no longer takes timelocked commits; the current epoch is planned anew", key.netuid)
    };
    if rate_limited(run, key).await? {
        return Ok(());
    }
    let fresh = run.node.rules(key.netuid, &run.me, run.runtime).await?;
    let schedule = fresh.schedule(key.netuid);
    let (call, reveal) = first_call(owed, run.path, None, &schedule, run.signer.public_key().0)?;
    let (WeightsCall::CommitTimelocked { commit, .. }, Some(r)) = (&call, reveal) else {
        bail!("a timelocked path made another call")
    };
    let submitted = run.node.submit(&call, run.signer).await.context(call.name())?;
    let sent = outbox::Sent {
        commit,
        reveal_round: r.round,
        reveal_epoch: r.epoch,
        reveal_block: schedule.first_reveal_block()?,
        version,
        tx_hash: &submitted.tx_hash,
        block: fresh.block,
    };
    if !outbox::timelocked_sent(run.pool, key, &sent).await? {
        bail!("epoch {} was sent by another run meanwhile", key.epoch);
    }
    let block = submitted.finalized().await.context(call.name())?;
    outbox::advance(run.pool, key, "submitted", "committed", None, Some(&block)).await?;
    println!(
        "netuid {} epoch {}: {} final in {block}, revealed at round {}",
        key.netuid,
        key.epoch,
        call.name(),
        r.round
    );
    Ok(())
}

/// A timelocked commit the pool accepted but whose finalization was not seen
/// (the watch failed): never sent again; once its mortality is over it either
/// landed or never will, and the reveal watch tells which.
async fn settle_unwatched(run: &Run<'_>, row: &outbox::Row) -> Result<()> {
    let key = EpochKey { netuid: row.netuid as u16, epoch: row.epoch as u64 };
    let sent = row.sent_block.context("a submitted timelocked commit without its block")? as u64;
    if run.rules.block > sent + MORTAL_BLOCKS {
        outbox::advance(run.pool, key, "submitted", "committed", None, None).await?;
    }
    Ok(())
}

/// A committed timelocked epoch: from its reveal epoch on, are its weights on
/// chain, set at or after its reveal block? Revealed when so, finalized once that
/// epoch is over, dropped when it ended without (the chain reports nothing; the
/// current epoch commits again). The same weights from an earlier epoch, set
/// before the reveal block, do not count.
async fn watch_reveal(run: &Run<'_>, row: &outbox::Row, (uids, values): (&[u16], &[u16])) -> Result<()> {
    let key = EpochKey { netuid: row.netuid as u16, epoch: row.epoch as u64 };
    let Some(reveal_epoch) = row.reveal_epoch.map(|e| e as u64) else {
        bail!("a timelocked commit without its reveal epoch")
    };
    if run.epoch_now < reveal_epoch {
        return Ok(());
    }
    let reveal_block = row.reveal_block.context("a timelocked commit without its reveal block")? as u64;
    let seen = match run.rules.preflight.uid {
        Some(uid) => {
            run.node.last_update(key.netuid, uid).await? >= reveal_block
                && weights_seen(&run.node.weights(key.netuid, uid).await?, uids, values)
        }
        None => false,
    };
    match outbox::timelocked_next(&row.state, reveal_epoch, run.epoch_now, seen) {
        Some("dropped") => {
            let round = row.reveal_round.unwrap_or_default();
            let why = format!("the chain did not apply the commit (drand round {round}) by the end of epoch {reveal_epoch}: dropped; the current epoch commits again");
            tracing::warn!(netuid = key.netuid, epoch = key.epoch, "{why}");
            outbox::dropped(run.pool, key, &why).await?;
        }
        Some(next) => {
            outbox::advance(run.pool, key, &row.state, next, None, None).await?;
        }
        None => {}
    }
    Ok(())
}

async fn commit_of(pool: &sqlx::PgPool, key: EpochKey) -> Result<[u8; 32]> {
    let (hash,): (Option<String>,) =
        sqlx::query_as("SELECT commit_hash FROM chain_epochs WHERE netuid = $1 AND epoch = $2")
            .bind(i32::from(key.netuid))
            .bind(key.epoch as i64)
            .fetch_one(pool)
            .await?;
    hex::decode(hash.context("a commit epoch without its hash")?)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("a stored commit hash is not 32 bytes"))
}
