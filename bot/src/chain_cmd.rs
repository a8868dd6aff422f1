//! `karpa chain status|dry-run|run`: the chain outbox from a terminal.
//!
//! No subtensor node is reachable from the machines the tests run on; `dry-run`
//! therefore also works offline, from a metagraph file (`{"<ss58>": uid}`) and a
//! metadata file (SCALE, e.g. `subxt metadata --url … > finney.scale`).

use crate::chain::epoch::{facts, plan, Subnet, Unplannable};
use crate::chain::extrinsic::{Runtime, WeightsCall};
use crate::chain::node::Node;
use crate::chain::outbox::{self, EpochKey, Mode, Plan};
use crate::chain::weights::Target;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const FINNEY: &str = "wss://entrypoint-finney.opentensor.ai:443";

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
        /// Offline: commit-reveal on, revealing this many epochs later.
        #[arg(long)]
        commit_reveal: Option<u64>,
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
                        commit_reveal,
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
    commit_reveal: Option<u64>,
}

/// The subnet as the node (or the offline files) describes it, and the runtime.
async fn subnet_plan(t: &ChainTarget, offline: Option<&Offline>, pool: &sqlx::PgPool) -> Result<(Plan, Runtime)> {
    let signer = t.signer()?;
    let me = signer.as_ref().map(|k| k.public_key().0).unwrap_or([0; 32]);
    let f = facts(pool, &t.repo, t.netuid).await?;
    let hotkeys: Vec<String> = f.king_hotkey.iter().chain(&f.meaningful).cloned().collect();
    let (uids, runtime, epoch, limit, version_key, commit_reveal) = match offline {
        Some(o) => {
            let bytes = std::fs::read(&o.metadata).with_context(|| format!("cannot read {}", o.metadata.display()))?;
            let genesis: [u8; 32] = hex::decode(o.genesis.trim_start_matches("0x"))
                .ok()
                .and_then(|g| g.try_into().ok())
                .context("--genesis must be 32 bytes of hex")?;
            (
                o.metagraph.clone(),
                Runtime::from_metadata(&bytes, genesis)?,
                o.epoch,
                o.max_weight_limit,
                o.version_key,
                o.commit_reveal,
            )
        }
        None => {
            let node = Node::connect(&t.endpoint).await?;
            let rules = node.rules(t.netuid).await?;
            let mut uids = BTreeMap::new();
            for h in &hotkeys {
                if let Some(uid) = node.uid(t.netuid, h).await? {
                    uids.insert(h.clone(), uid);
                }
            }
            let reveal = rules.commit_reveal.then_some(rules.reveal_period);
            (uids, node.runtime().await?, rules.epoch(), rules.max_weight_limit, rules.version_key, reveal)
        }
    };
    let uid_of = |h: &str| uids.get(h).copied();
    let subnet = Subnet {
        netuid: t.netuid,
        epoch,
        max_weight_limit: limit,
        version_key,
        commit_reveal,
        burn_uid: t.burn_uid,
        uid_of: &uid_of,
        account: me,
    };
    Ok((plan(&t.repo, &f, &subnet)?, runtime))
}

/// The call an epoch's row needs next, if any is due.
fn next_call(p: &Plan) -> WeightsCall {
    match (p.mode, p.commit_hash) {
        (Mode::Commit, Some(hash)) => WeightsCall::CommitWeights { netuid: p.netuid, commit_hash: hash },
        _ => WeightsCall::SetWeights {
            netuid: p.netuid,
            uids: p.uids.clone(),
            values: p.weights.clone(),
            version_key: p.version_key,
        },
    }
}

async fn dry_run(t: &ChainTarget, offline: Option<Offline>) -> Result<bool> {
    let pool = crate::db::connect(&t.db.database_url).await?;
    let (p, runtime) = subnet_plan(t, offline.as_ref(), &pool).await?;
    println!("netuid {} epoch {} — king {} — {:?}", p.netuid, p.epoch, p.king_tag.as_deref().unwrap_or("none"), p.mode);
    println!("\n  {:<50} {:>7}", "to", "share");
    for (target, share) in &p.scores {
        let who = match target {
            Target::Hotkey(h) => h.clone(),
            Target::Burn => "burn uid".to_string(),
        };
        println!("  {who:<50} {share:>7.4}");
    }
    println!("\n  uids    {:?}\n  weights {:?}  (u16, max-upscaled)", p.uids, p.weights);
    let call = next_call(&p);
    println!("\n  {}: 0x{}", call.name(), hex::encode(runtime.call_data(&call)?));
    if let Some(k) = t.signer()? {
        let (signed, _) = runtime.sign(&call, &k, 0)?;
        println!("  signed by {} (nonce 0, immortal): 0x{}", proof::hotkey::ss58(&k), hex::encode(signed));
    }
    println!("\n  (dry run: nothing submitted, nothing recorded)");
    Ok(true)
}

async fn run_epochs(t: &ChainTarget) -> Result<bool> {
    let Some(signer) = t.signer()? else { bail!("karpa chain run needs --hotkey-file or --hotkey-uri") };
    let pool = crate::db::connect(&t.db.database_url).await?;
    let node = Node::connect(&t.endpoint).await?;
    let rules = node.rules(t.netuid).await?;
    let epoch_now = rules.epoch();
    match subnet_plan(t, None, &pool).await {
        Ok((p, _)) => {
            if outbox::plan(&pool, &p).await? {
                tracing::info!(netuid = p.netuid, epoch = p.epoch, "planned");
            }
        }
        Err(e) if e.downcast_ref::<Unplannable>().is_some() => {
            let king = facts(&pool, &t.repo, t.netuid).await?.king_tag;
            let key = EpochKey { netuid: t.netuid, epoch: epoch_now };
            tracing::warn!(netuid = t.netuid, epoch = epoch_now, "not planned: {e}");
            outbox::blocked(&pool, key, &t.repo, king.as_deref(), &e.to_string()).await?;
        }
        Err(e) => return Err(e),
    }
    let me = proof::hotkey::ss58(&signer);
    for row in outbox::due(&pool).await? {
        let (netuid, epoch) = (row.netuid as u16, row.epoch as u64);
        let key = EpochKey { netuid, epoch };
        let uids: Vec<u16> = serde_json::from_value(row.uids.clone())?;
        let values: Vec<u16> = serde_json::from_value(row.weights.clone())?;
        let version_key = row.version_key as u64;
        // (the call, the state while it is in flight, the state once final)
        let step = match (row.mode.as_str(), row.state.as_str()) {
            ("set", "pending" | "submitted") => {
                Some((WeightsCall::SetWeights { netuid, uids, values, version_key }, "submitted", "finalized"))
            }
            ("commit", "pending" | "submitted") => {
                let hash = commit_of(&pool, key).await?;
                Some((WeightsCall::CommitWeights { netuid, commit_hash: hash }, "submitted", "committed"))
            }
            ("commit", "committed" | "revealing") if row.reveal_epoch.is_some_and(|r| epoch_now >= r as u64) => {
                let salt: Vec<u16> = serde_json::from_value(row.salt.clone().context("a commit without its salt")?)?;
                Some((WeightsCall::RevealWeights { netuid, uids, values, salt, version_key }, "revealing", "finalized"))
            }
            _ => None,
        };
        let Some((call, flight, done)) = step else { continue };
        let allowed = node.next_allowed_block(netuid, &me).await?;
        if rules.block < allowed {
            let why = format!("rate limited: weights may be set again at block {allowed}");
            outbox::defer(&pool, key, &why, std::time::Duration::from_secs(12 * (allowed - rules.block))).await?;
            continue;
        }
        let result = async {
            let sent = node.submit(&call, &signer).await?;
            let tx = sent.tx_hash.clone();
            outbox::advance(&pool, key, &row.state, flight, Some(&tx), None).await?;
            let block = sent.finalized().await?;
            outbox::advance(&pool, key, flight, done, None, Some(&block)).await?;
            anyhow::Ok((tx, block))
        }
        .await;
        match result {
            Ok((tx, block)) => println!("netuid {netuid} epoch {epoch}: {} final in {block} (tx {tx})", call.name()),
            Err(e) => {
                let why = format!("{}: {e:#}", call.name());
                tracing::warn!(netuid, epoch, "{why}");
                outbox::failed_attempt(&pool, key, &why, std::time::Duration::from_secs(30)).await?;
            }
        }
    }
    Ok(true)
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
