//! A subtensor node over RPC (subxt's online client): the subnet's rules, the
//! metagraph's uids, and weight calls signed, submitted and watched to
//! finality. No node is reachable from the test machines, so this is the one
//! part of the chain path the tests do not run; everything it feeds (plans,
//! calls, signatures, the outbox) is tested offline.

use super::extrinsic::{Runtime, WeightsCall, MORTAL_BLOCKS, PALLET};
use super::path::CommitReveal;
use super::preflight;
use super::schedule::{EpochModel, EpochState, Schedule};
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
    pub commit_reveal: CommitReveal,
    pub max_weight_limit: u16,
    pub version_key: u64,
    /// Stateful epochs, where the runtime has `SubnetEpochIndex`.
    pub model: EpochModel,
    /// What the chain checks a weight vector against, for this validator.
    pub preflight: preflight::Subnet,
}

impl Rules {
    pub fn schedule(&self, netuid: u16) -> Schedule {
        Schedule {
            netuid,
            tempo: self.tempo,
            block: self.block,
            reveal_period: self.commit_reveal.reveal_period,
            model: self.model,
        }
    }

    /// The chain's epoch index now.
    pub fn epoch(&self, netuid: u16) -> u64 {
        self.schedule(netuid).epoch()
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

    /// The subnet's rules, and this validator's standing in it (`hotkey`, SS58).
    pub async fn rules(&self, netuid: u16, hotkey: &str, runtime: &Runtime) -> Result<Rules> {
        let block = self.api.at_current_block().await?.block_number();
        let flag = |v: Option<Value>| v.and_then(|v| v.as_bool()).unwrap_or(false);
        let optional = |v: Result<u128>| v.ok();
        let version = match runtime.has_storage("CommitRevealWeightsVersion") {
            true => self.value("CommitRevealWeightsVersion", ()).await?.and_then(|v| v.as_u128()).map(|v| v as u16),
            false => None,
        };
        let commit_reveal = CommitReveal {
            enabled: flag(self.value("CommitRevealWeightsEnabled", (netuid,)).await?),
            version,
            reveal_period: optional(self.number("RevealPeriodEpochs", netuid).await).unwrap_or(1) as u64,
        };
        let model = if runtime.has_storage("SubnetEpochIndex") {
            EpochModel::Stateful(EpochState {
                last_epoch_block: optional(self.number("LastEpochBlock", netuid).await).unwrap_or(0) as u64,
                pending_epoch_at: optional(self.number("PendingEpochAt", netuid).await).unwrap_or(0) as u64,
                subnet_epoch_index: self.number("SubnetEpochIndex", netuid).await? as u64,
                blocks_since_last_step: optional(self.number("BlocksSinceLastStep", netuid).await).unwrap_or(0) as u64,
            })
        } else {
            EpochModel::Stateless
        };
        let uid = self.uid(netuid, hotkey).await?;
        let permits = self.value("ValidatorPermit", (netuid,)).await?;
        let permit =
            uid.is_some_and(|u| permits.as_ref().and_then(|p| nth(p, u)).and_then(|b| b.as_bool()) == Some(true));
        // The chain weighs stake as alpha on the subnet plus root stake times TaoWeight (≤ 1):
        // their sum bounds it from above, so the check never refuses a validator the chain would take.
        let me = account(hotkey)?;
        let mut stake = 0u128;
        for on in [netuid, 0] {
            stake += self.value("TotalHotkeyAlpha", (me, on)).await?.and_then(|v| v.as_u128()).unwrap_or(0);
        }
        let max_weight_limit =
            optional(self.number("MaxWeightsLimit", netuid).await).unwrap_or(u128::from(u16::MAX)) as u16;
        let version_key = optional(self.number("WeightsVersionKey", netuid).await).unwrap_or(0) as u64;
        Ok(Rules {
            block,
            tempo: self.number("Tempo", netuid).await? as u16,
            commit_reveal,
            max_weight_limit,
            version_key,
            model,
            preflight: preflight::Subnet {
                netuid,
                neurons: self.number("SubnetworkN", netuid).await? as u16,
                min_allowed_weights: optional(self.number("MinAllowedWeights", netuid).await).unwrap_or(0) as u16,
                max_weight_limit,
                weights_version_key: version_key,
                uid,
                permit,
                stake_upper_bound: stake,
                stake_threshold: self.value("StakeThreshold", ()).await?.and_then(|v| v.as_u128()).unwrap_or(0),
            },
        })
    }

    /// The weights `uid` has set on the subnet, as (uid, value) pairs.
    pub async fn weights(&self, netuid: u16, uid: u16) -> Result<Vec<(u16, u16)>> {
        use subxt::ext::scale_value::{Composite, ValueDef};
        let Some(v) = self.value("Weights", (netuid, uid)).await? else { return Ok(vec![]) };
        let ValueDef::Composite(Composite::Unnamed(pairs)) = &v.value else { bail!("Weights is not a list") };
        pairs
            .iter()
            .map(|p| match (nth(p, 0usize).and_then(|x| x.as_u128()), nth(p, 1usize).and_then(|x| x.as_u128())) {
                (Some(u), Some(w)) => Ok((u as u16, w as u16)),
                _ => bail!("a Weights entry is not a (uid, weight) pair"),
            })
            .collect()
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
        Ok(self.last_update(netuid, uid).await? + limit)
    }

    /// The block at which `uid` last set weights on the subnet (0: never).
    pub async fn last_update(&self, netuid: u16, uid: u16) -> Result<u64> {
        Ok(match self.value("LastUpdate", (netuid,)).await? {
            Some(v) => last_update(&v, uid),
            None => 0,
        })
    }

    /// Signs and submits, mortal for [`MORTAL_BLOCKS`] from the current block
    /// and with the account's nonce from the node; the transaction's hash, and
    /// its progress to watch.
    pub async fn submit(&self, call: &WeightsCall, signer: &subxt_signer::sr25519::Keypair) -> Result<Submitted> {
        let at = self.api.at_current_block().await?;
        let payload = subxt::dynamic::tx(PALLET, call.name(), call.fields());
        let params =
            subxt::config::DefaultExtrinsicParamsBuilder::<SubstrateConfig>::new().mortal(MORTAL_BLOCKS).build();
        let progress = at.tx().sign_and_submit_then_watch(&payload, signer, params).await?;
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
    nth(v, uid).and_then(|b| b.as_u128()).unwrap_or(0) as u64
}

/// Item `i` of a list or tuple value.
fn nth(v: &Value, i: impl Into<usize>) -> Option<&Value> {
    use subxt::ext::scale_value::{Composite, ValueDef};
    match &v.value {
        ValueDef::Composite(Composite::Unnamed(items)) => items.get(i.into()),
        _ => None,
    }
}

/// An SS58 address's 32 bytes.
pub fn account(ss58: &str) -> Result<[u8; 32]> {
    use std::str::FromStr;
    let id = subxt::utils::AccountId32::from_str(ss58)
        .map_err(|e| anyhow::anyhow!("{ss58:?} is not an SS58 address: {e}"))?;
    Ok(id.0)
}
