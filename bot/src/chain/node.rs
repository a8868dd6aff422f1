//! A subtensor node over RPC (subxt's online client): the subnet's rules, the
//! metagraph's uids, and weight calls signed, submitted and watched to
//! finality. No node is reachable from the test machines, so this is the one
//! part of the chain path the tests do not run; everything it feeds (plans,
//! calls, signatures, the outbox) is tested offline.

use super::extrinsic::{Runtime, WeightsCall, PALLET};
use anyhow::{bail, Context, Result};
use subxt::config::SubstrateConfig;
use subxt::dynamic::{storage, Value};
use subxt::OnlineClient;

pub struct Node {
    api: OnlineClient<SubstrateConfig>,
}

/// The subnet's rules at the current block.
#[derive(Debug, Clone)]
pub struct Rules {
    pub block: u64,
    pub tempo: u16,
    pub commit_reveal: bool,
    /// Epochs between a commit and its reveal.
    pub reveal_period: u64,
    pub max_weight_limit: u16,
    pub version_key: u64,
}

impl Rules {
    /// Subtensor's epochs: every tempo + 1 blocks.
    pub fn epoch(&self) -> u64 {
        self.block / (u64::from(self.tempo) + 1)
    }
}

impl Node {
    pub async fn connect(url: &str) -> Result<Node> {
        let api = if url.starts_with("ws://") || url.starts_with("http://") {
            OnlineClient::<SubstrateConfig>::from_insecure_url(url).await
        } else {
            OnlineClient::<SubstrateConfig>::from_url(url).await
        };
        Ok(Node { api: api.with_context(|| format!("cannot reach the subtensor node at {url}"))? })
    }

    /// The node's metadata and versions, for signing.
    pub async fn runtime(&self) -> Result<Runtime> {
        let at = self.api.at_current_block().await?;
        Ok(Runtime {
            metadata: at.metadata(),
            genesis_hash: self.api.genesis_hash().0,
            spec_version: at.spec_version(),
            transaction_version: at.transaction_version(),
        })
    }

    async fn value<K>(&self, entry: &str, keys: K) -> Result<Option<Value>>
    where
        K: subxt::ext::frame_decode::storage::IntoEncodableValues
            + subxt::ext::frame_decode::storage::IntoDecodableValues,
    {
        let at = self.api.at_current_block().await?;
        let addr = storage::<K, Value>(PALLET, entry);
        match at.storage().try_fetch(addr, keys).await? {
            Some(v) => Ok(Some(v.decode()?)),
            None => Ok(None),
        }
    }

    async fn number(&self, entry: &str, netuid: u16) -> Result<u128> {
        let v = self.value(entry, (netuid,)).await?.with_context(|| format!("{PALLET}::{entry} is unset"))?;
        v.as_u128().with_context(|| format!("{PALLET}::{entry} is not a number"))
    }

    pub async fn rules(&self, netuid: u16) -> Result<Rules> {
        let block = self.api.at_current_block().await?.block_number();
        let commit_reveal = match self.value("CommitRevealWeightsEnabled", (netuid,)).await? {
            Some(v) => v.as_bool().unwrap_or(false),
            None => false,
        };
        Ok(Rules {
            block,
            tempo: self.number("Tempo", netuid).await? as u16,
            commit_reveal,
            reveal_period: self.number("RevealPeriodEpochs", netuid).await.unwrap_or(1) as u64,
            max_weight_limit: self.number("MaxWeightsLimit", netuid).await.unwrap_or(u128::from(u16::MAX)) as u16,
            version_key: self.number("WeightsVersionKey", netuid).await.unwrap_or(0) as u64,
        })
    }

    /// A hotkey's uid on the subnet, if registered.
    pub async fn uid(&self, netuid: u16, hotkey: &str) -> Result<Option<u16>> {
        let account = account(hotkey)?;
        let v = self.value("Uids", (netuid, account)).await?;
        Ok(v.and_then(|v| v.as_u128()).map(|u| u as u16))
    }

    /// The first block at which `hotkey` may set weights again on the subnet:
    /// its last update plus the subnet's weights rate limit.
    pub async fn next_allowed_block(&self, netuid: u16, hotkey: &str) -> Result<u64> {
        let limit = self.number("WeightsSetRateLimit", netuid).await.unwrap_or(0) as u64;
        let Some(uid) = self.uid(netuid, hotkey).await? else {
            bail!("the validator's hotkey {hotkey} is not registered on subnet {netuid}")
        };
        let last = match self.value("LastUpdate", (netuid,)).await? {
            Some(v) => last_update(&v, uid),
            None => 0,
        };
        Ok(last + limit)
    }

    /// Signs and submits; the transaction's hash, and its progress to watch.
    pub async fn submit(&self, call: &WeightsCall, signer: &subxt_signer::sr25519::Keypair) -> Result<Submitted> {
        let at = self.api.at_current_block().await?;
        let payload = subxt::dynamic::tx(PALLET, call.name(), call.fields());
        let progress = at.tx().sign_and_submit_then_watch_default(&payload, signer).await?;
        Ok(Submitted { tx_hash: format!("0x{}", hex::encode(progress.extrinsic_hash())), progress })
    }
}

/// A call in the pool: watch it to finality with [`Submitted::finalized`].
pub struct Submitted {
    pub tx_hash: String,
    progress: subxt::transactions::TransactionProgress<
        SubstrateConfig,
        subxt::client::OnlineClientAtBlockImpl<SubstrateConfig>,
    >,
}

impl Submitted {
    /// The hash of the finalized block holding the call, once it succeeded there.
    pub async fn finalized(self) -> Result<String> {
        let done = self.progress.wait_for_finalized().await?;
        let block_hash = format!("0x{}", hex::encode(done.block_hash()));
        done.wait_for_success().await.context("the call failed in its block")?;
        Ok(block_hash)
    }
}

/// Entry `uid` of a LastUpdate vector (block numbers by uid).
fn last_update(v: &Value, uid: u16) -> u64 {
    use subxt::ext::scale_value::{Composite, ValueDef};
    match &v.value {
        ValueDef::Composite(Composite::Unnamed(blocks)) => {
            blocks.get(usize::from(uid)).and_then(|b| b.as_u128()).unwrap_or(0) as u64
        }
        _ => 0,
    }
}

/// An SS58 address's 32 bytes.
pub fn account(ss58: &str) -> Result<[u8; 32]> {
    use std::str::FromStr;
    let id = subxt::utils::AccountId32::from_str(ss58)
        .map_err(|e| anyhow::anyhow!("{ss58:?} is not an SS58 address: {e}"))?;
    Ok(id.0)
}
