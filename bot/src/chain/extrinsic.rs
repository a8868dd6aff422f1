//! Subtensor's weight calls, built from runtime metadata with subxt's dynamic
//! API: the pallet and call indices and the argument types come from the
//! metadata (the node's in production, a snapshot in tests), never from us.

use anyhow::{bail, Context, Result};
use subxt::client::OfflineClient;
use subxt::config::substrate::{SpecVersionForRange, SubstrateConfig, H256};
use subxt::config::transaction_extensions::CheckMortality;
use subxt::dynamic::Value;
use subxt::ext::codec::Decode;
use subxt::Metadata;

pub const PALLET: &str = "SubtensorModule";
/// How long a signed weights call stays valid: 64 blocks (about 13 minutes),
/// so a call stuck in a pool cannot land epochs later.
pub const MORTAL_BLOCKS: u64 = 64;

/// One weights call of one epoch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum WeightsCall {
    SetWeights {
        netuid: u16,
        uids: Vec<u16>,
        values: Vec<u16>,
        version_key: u64,
    },
    CommitWeights {
        netuid: u16,
        commit_hash: [u8; 32],
    },
    RevealWeights {
        netuid: u16,
        uids: Vec<u16>,
        values: Vec<u16>,
        salt: Vec<u16>,
        version_key: u64,
    },
    /// A timelocked commit (`tlock`), revealed by the chain at `reveal_round`;
    /// with a mechanism id, the mechanism variant (the SDK sends mechanism 0).
    CommitTimelocked {
        netuid: u16,
        mechanism: Option<u8>,
        commit: Vec<u8>,
        reveal_round: u64,
        version: u16,
    },
}

/// The calls that weights can go through, by name.
pub const SET: &str = "set_weights";
pub const TIMELOCKED: &str = "commit_timelocked_weights";
pub const TIMELOCKED_MECHANISM: &str = "commit_timelocked_mechanism_weights";

/// Which weight calls the runtime has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    pub set: bool,
    /// commit_weights and reveal_weights.
    pub legacy: bool,
    pub timelocked: bool,
    pub timelocked_mechanism: bool,
}

impl WeightsCall {
    pub fn name(&self) -> &'static str {
        match self {
            WeightsCall::SetWeights { .. } => "set_weights",
            WeightsCall::CommitWeights { .. } => "commit_weights",
            WeightsCall::RevealWeights { .. } => "reveal_weights",
            WeightsCall::CommitTimelocked { mechanism: Some(_), .. } => TIMELOCKED_MECHANISM,
            WeightsCall::CommitTimelocked { mechanism: None, .. } => TIMELOCKED,
        }
    }

    pub(crate) fn fields(&self) -> Vec<Value> {
        let list = |xs: &[u16]| Value::unnamed_composite(xs.iter().map(|x| Value::u128(u128::from(*x))));
        match self {
            WeightsCall::SetWeights { netuid, uids, values, version_key } => {
                vec![Value::u128(u128::from(*netuid)), list(uids), list(values), Value::u128(u128::from(*version_key))]
            }
            WeightsCall::CommitWeights { netuid, commit_hash } => {
                vec![Value::u128(u128::from(*netuid)), Value::from_bytes(commit_hash)]
            }
            WeightsCall::RevealWeights { netuid, uids, values, salt, version_key } => vec![
                Value::u128(u128::from(*netuid)),
                list(uids),
                list(values),
                list(salt),
                Value::u128(u128::from(*version_key)),
            ],
            WeightsCall::CommitTimelocked { netuid, mechanism, commit, reveal_round, version } => {
                let mut fields = vec![Value::u128(u128::from(*netuid))];
                fields.extend(mechanism.map(|m| Value::u128(u128::from(m))));
                fields.extend([
                    Value::from_bytes(commit),
                    Value::u128(u128::from(*reveal_round)),
                    Value::u128(u128::from(*version)),
                ]);
                fields
            }
        }
    }
}

/// What signing needs from the chain: its metadata, genesis and versions.
#[derive(Clone)]
pub struct Runtime {
    pub metadata: std::sync::Arc<Metadata>,
    pub genesis_hash: [u8; 32],
    pub spec_version: u32,
    pub transaction_version: u32,
}

impl Runtime {
    /// From SCALE-encoded metadata; the versions are read from its
    /// `System::Version` constant.
    pub fn from_metadata(bytes: &[u8], genesis_hash: [u8; 32]) -> Result<Runtime> {
        let metadata = Metadata::decode(&mut &bytes[..]).context("the runtime metadata does not decode")?;
        let version = metadata
            .pallet_by_name("System")
            .and_then(|p| p.constant_by_name("Version"))
            .context("the metadata has no System::Version constant")?;
        #[derive(subxt::ext::scale_decode::DecodeAsType)]
        #[decode_as_type(crate_path = "subxt::ext::scale_decode")]
        struct RuntimeVersion {
            spec_version: u32,
            transaction_version: u32,
        }
        let v: RuntimeVersion = subxt::ext::scale_decode::DecodeAsType::decode_as_type(
            &mut &version.value()[..],
            version.ty(),
            metadata.types(),
        )
        .context("System::Version does not decode")?;
        let runtime = Runtime {
            metadata: std::sync::Arc::new(metadata),
            genesis_hash,
            spec_version: v.spec_version,
            transaction_version: v.transaction_version,
        };
        runtime.check_calls()?;
        Ok(runtime)
    }

    /// Refuses metadata without any weight call (a runtime that renamed them).
    fn check_calls(&self) -> Result<()> {
        let calls = self.calls()?;
        if !calls.set && !calls.legacy && !calls.timelocked && !calls.timelocked_mechanism {
            bail!("the runtime's {PALLET} has none of the weight calls Karpa knows ({SET}, commit/reveal, timelocked)");
        }
        Ok(())
    }

    /// The weight calls the runtime's metadata has.
    pub fn calls(&self) -> Result<Calls> {
        let pallet = self.metadata.pallet_by_name(PALLET).with_context(|| format!("the runtime has no {PALLET}"))?;
        let has = |call: &str| pallet.call_variant_by_name(call).is_some();
        Ok(Calls {
            set: has(SET),
            legacy: has("commit_weights") && has("reveal_weights"),
            timelocked: has(TIMELOCKED),
            timelocked_mechanism: has(TIMELOCKED_MECHANISM),
        })
    }

    /// Whether the metadata has storage item `entry` in the pallet (e.g. SubnetEpochIndex).
    pub fn has_storage(&self, entry: &str) -> bool {
        let pallet = self.metadata.pallet_by_name(PALLET);
        pallet.and_then(|p| p.storage()).is_some_and(|s| s.entry_by_name(entry).is_some())
    }

    fn client(
        &self,
    ) -> Result<subxt::client::ClientAtBlock<SubstrateConfig, subxt::client::OfflineClientAtBlockImpl<SubstrateConfig>>>
    {
        let config = SubstrateConfig::builder()
            .set_genesis_hash(H256(self.genesis_hash))
            .set_metadata_for_spec_versions([(self.spec_version, self.metadata.clone())])
            .set_spec_version_for_block_ranges([SpecVersionForRange {
                block_range: 0..u64::MAX,
                spec_version: self.spec_version,
                transaction_version: self.transaction_version,
            }])
            .build();
        Ok(OfflineClient::new_with_config(config).at_block(0u64)?)
    }

    /// The call's SCALE bytes (pallet index, call index, arguments).
    pub fn call_data(&self, call: &WeightsCall) -> Result<Vec<u8>> {
        let payload = subxt::dynamic::tx(PALLET, call.name(), call.fields());
        Ok(self.client()?.tx().call_data(&payload)?)
    }

    /// A signed extrinsic with this nonce, mortal from `mortal` (the block it
    /// counts from) for [`MORTAL_BLOCKS`] blocks, immortal without; and the
    /// payload its signature covers.
    pub fn sign(
        &self,
        call: &WeightsCall,
        signer: &subxt_signer::sr25519::Keypair,
        nonce: u64,
        mortal: Option<(u64, [u8; 32])>,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let payload = subxt::dynamic::tx(PALLET, call.name(), call.fields());
        let mut params = subxt::config::DefaultExtrinsicParamsBuilder::<SubstrateConfig>::new().nonce(nonce);
        if let Some((block, hash)) = mortal {
            params = params.mortal_from_unchecked(MORTAL_BLOCKS, block, H256(hash));
        }
        let params = params.build();
        let client = self.client()?;
        let mut signable = client.tx().create_v4_signable_offline(&payload, params)?;
        let signed_payload = signable.signer_payload()?;
        Ok((signable.sign(signer)?.into_encoded(), signed_payload))
    }

    /// An extrinsic read back through the metadata.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Decoded> {
        let client = self.client()?;
        let extrinsics = client.extrinsics().from_bytes(vec![bytes.to_vec()]).await;
        let x = extrinsics.iter().next().context("no extrinsic in the bytes")??;
        let ext = x.transaction_extensions();
        Ok(Decoded {
            pallet: x.pallet_name().to_string(),
            call: x.call_name().to_string(),
            pallet_index: x.pallet_index(),
            call_index: x.call_index(),
            address: x.address_bytes().map(<[u8]>::to_vec),
            signature: x.signature_bytes().map(<[u8]>::to_vec),
            nonce: ext.as_ref().and_then(|e| e.nonce()),
            tip: ext.as_ref().and_then(|e| e.tip()),
            mortal: ext
                .as_ref()
                .and_then(|e| e.find::<CheckMortality<SubstrateConfig>>())
                .and_then(|r| r.ok())
                .map(|era| era != subxt::utils::Era::Immortal),
            fields: x.decode_call_data_as::<Value>()?,
        })
    }
}

/// A decoded extrinsic: who signed what.
#[derive(Debug)]
pub struct Decoded {
    pub pallet: String,
    pub call: String,
    pub pallet_index: u8,
    pub call_index: u8,
    /// The signer's MultiAddress, SCALE-encoded.
    pub address: Option<Vec<u8>>,
    /// The MultiSignature, SCALE-encoded.
    pub signature: Option<Vec<u8>>,
    pub nonce: Option<u64>,
    pub tip: Option<u128>,
    /// Whether the transaction is mortal (None when it carries no era).
    pub mortal: Option<bool>,
    /// The call's arguments, by name.
    pub fields: Value,
}
