//! Hotkey binding: the miner's sr25519 hotkey (Bittensor's, SS58) signs
//! `karpa-submission:v1:{bundle_digest}:{github_login}`, which ties the bundle, and
//! through its manifest the attestation key, to the account that gets rewarded.
//! Signatures are Substrate's: schnorrkel with the "substrate" signing context.

use crate::Sha256Hex;
use serde::{Deserialize, Serialize};
use subxt_signer::sr25519::{self, Keypair, PublicKey, Signature};
use subxt_signer::SecretUri;

pub const MINER_SIG_FORMAT: &str = "karpa-miner-sig/v1";

/// The exact bytes the hotkey signs.
pub fn submission_message(bundle_digest: &Sha256Hex, github_login: &str) -> Vec<u8> {
    format!("karpa-submission:v1:{bundle_digest}:{github_login}").into_bytes()
}

/// `miner.sig.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerSignature {
    pub format: String,
    /// SS58 address of the hotkey.
    pub hotkey: String,
    pub github_login: String,
    pub bundle_digest: Sha256Hex,
    /// 64-byte sr25519 signature, hex.
    pub signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HotkeyError {
    #[error("not a secret URI or seed phrase: {0}")]
    BadSecret(String),
    #[error("{0:?} is not an SS58 sr25519 address")]
    BadAddress(String),
    #[error("the signature is not 64 hex bytes")]
    BadSignatureEncoding,
    #[error("the hotkey signature does not verify")]
    BadSignature,
}

/// A hotkey from a secret URI: a seed phrase, `//Alice`-style dev keys, or a
/// phrase with derivation junctions (`phrase//hard/soft`).
pub fn keypair_from_uri(uri: &str) -> Result<Keypair, HotkeyError> {
    let secret: SecretUri = uri.parse().map_err(|_| HotkeyError::BadSecret("unparsable".into()))?;
    Keypair::from_uri(&secret).map_err(|e| HotkeyError::BadSecret(e.to_string()))
}

/// A hotkey from a Bittensor keyfile (the unencrypted JSON that `btcli` writes for
/// hotkeys, with `secretPhrase` or `secretSeed`).
pub fn keypair_from_bittensor_keyfile(json: &str) -> Result<Keypair, HotkeyError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| HotkeyError::BadSecret(format!("keyfile: {e}")))?;
    if let Some(phrase) = v.get("secretPhrase").and_then(|p| p.as_str()) {
        return keypair_from_uri(phrase);
    }
    let seed = v
        .get("secretSeed")
        .and_then(|s| s.as_str())
        .ok_or_else(|| HotkeyError::BadSecret("keyfile has neither secretPhrase nor secretSeed (encrypted?)".into()))?;
    let bytes: [u8; 32] = hex::decode(seed.trim_start_matches("0x"))
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| HotkeyError::BadSecret("secretSeed is not 32 hex bytes".into()))?;
    Keypair::from_secret_key(bytes).map_err(|e| HotkeyError::BadSecret(e.to_string()))
}

pub fn ss58(key: &Keypair) -> String {
    subxt_utils_accountid32::AccountId32(key.public_key().0).to_string()
}

pub fn sign(key: &Keypair, bundle_digest: &Sha256Hex, github_login: &str) -> MinerSignature {
    MinerSignature {
        format: MINER_SIG_FORMAT.into(),
        hotkey: ss58(key),
        github_login: github_login.into(),
        bundle_digest: bundle_digest.clone(),
        signature: sign_message(key, &submission_message(bundle_digest, github_login)),
    }
}

pub fn public_key_of(address: &str) -> Result<PublicKey, HotkeyError> {
    let id: subxt_utils_accountid32::AccountId32 =
        address.parse().map_err(|_| HotkeyError::BadAddress(address.into()))?;
    Ok(PublicKey(id.0))
}

/// Checks a miner signature over `bundle_digest` by `hotkey` for `github_login`.
pub fn verify(
    sig: &MinerSignature,
    bundle_digest: &Sha256Hex,
    hotkey: &str,
    github_login: &str,
) -> Result<(), HotkeyError> {
    if sig.hotkey != hotkey || sig.github_login != github_login || &sig.bundle_digest != bundle_digest {
        return Err(HotkeyError::BadSignature);
    }
    verify_message(hotkey, &submission_message(bundle_digest, github_login), &sig.signature)
}

/// The bytes a validator's hotkey signs for a crown note: the digest of the
/// note's RFC 8785 form without its signatures, domain-separated so that no
/// other signed Karpa message can be replayed as a crown.
pub fn crown_message(note_digest: &Sha256Hex) -> Vec<u8> {
    format!("karpa-crown:v1:{note_digest}").into_bytes()
}

/// The bytes a validator's hotkey signs for a verdict it publishes (check run,
/// corpus): the digest of the verdict's RFC 8785 form, domain-separated.
pub fn verdict_message(verdict_digest: &Sha256Hex) -> Vec<u8> {
    format!("karpa-verdict:v1:{verdict_digest}").into_bytes()
}

/// A validator's signature over one of its messages ([`crown_message`], [`verdict_message`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorSignature {
    /// The validator's hotkey, SS58.
    pub validator: String,
    /// sr25519 over the message, hex.
    pub signature: String,
}

impl ValidatorSignature {
    pub fn sign(key: &Keypair, message: &[u8]) -> Self {
        ValidatorSignature { validator: ss58(key), signature: sign_message(key, message) }
    }
    pub fn verify(&self, message: &[u8]) -> Result<(), HotkeyError> {
        verify_message(&self.validator, message, &self.signature)
    }
}

/// An sr25519 signature over `message`, hex.
pub fn sign_message(key: &Keypair, message: &[u8]) -> String {
    hex::encode(key.sign(message).0)
}

/// Checks a hex sr25519 signature over `message` by the SS58 `address`.
pub fn verify_message(address: &str, message: &[u8], signature_hex: &str) -> Result<(), HotkeyError> {
    let raw: [u8; 64] =
        hex::decode(signature_hex).ok().and_then(|b| b.try_into().ok()).ok_or(HotkeyError::BadSignatureEncoding)?;
    let public = public_key_of(address)?;
    if sr25519::verify(&Signature(raw), message, &public) {
        Ok(())
    } else {
        Err(HotkeyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validator_signature_holds_only_for_its_message_and_key() {
        let alice = keypair_from_uri("//Alice").unwrap();
        let digest = crate::sha256_bytes(b"a verdict");
        let sig = ValidatorSignature::sign(&alice, &verdict_message(&digest));
        assert_eq!(sig.validator, ALICE);
        assert_eq!(sig.verify(&verdict_message(&digest)), Ok(()));
        assert_eq!(sig.verify(&crown_message(&digest)), Err(HotkeyError::BadSignature), "domains are separate");
        let bob = ValidatorSignature { validator: ss58(&keypair_from_uri("//Bob").unwrap()), ..sig.clone() };
        assert_eq!(bob.verify(&verdict_message(&digest)), Err(HotkeyError::BadSignature));
        let cut = ValidatorSignature { signature: sig.signature[2..].into(), ..sig };
        assert_eq!(cut.verify(&verdict_message(&digest)), Err(HotkeyError::BadSignatureEncoding));
    }

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    #[test]
    fn dev_key_alice_has_her_well_known_address() {
        let alice = keypair_from_uri("//Alice").unwrap();
        assert_eq!(ss58(&alice), ALICE);
        assert_eq!(
            hex::encode(alice.public_key().0),
            "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
        );
    }

    #[test]
    fn bittensor_keyfile_with_a_seed_gives_the_same_key() {
        // `subkey inspect //Alice` prints this secret seed.
        let keyfile = r#"{"accountId":"0xd435…","secretSeed":"0xe5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a","ss58Address":"5Grw…"}"#;
        assert_eq!(ss58(&keypair_from_bittensor_keyfile(keyfile).unwrap()), ALICE);
        let encrypted = r#"{"ciphertext":"…"}"#;
        assert!(matches!(keypair_from_bittensor_keyfile(encrypted), Err(HotkeyError::BadSecret(_))));
    }

    /// Made by another implementation: Python `substrate-interface` 1.x (PyPI), with
    /// `Keypair.create_from_uri('//Alice').sign(b'karpa-submission:v1:' + b'0'*64 + b':octo')`.
    #[test]
    fn verifies_a_signature_made_by_python_substrate_interface() {
        let digest = Sha256Hex::try_from("0".repeat(64)).unwrap();
        let sig = MinerSignature {
            format: MINER_SIG_FORMAT.into(),
            hotkey: ALICE.into(),
            github_login: "octo".into(),
            bundle_digest: digest.clone(),
            signature: "30ce8af8f75925075eaf6a76b67884e5133f9c0209ac6ff380ebe8ea3577123df11fad9a65a55c3022387fb469930a7a8838a2866a5ebd02dc742235b5242e8a".into(),
        };
        verify(&sig, &digest, ALICE, "octo").unwrap();
        // Same library, from the dev seed phrase: the address Python derives.
        let root = keypair_from_uri("bottom drive obey lake curtain smoke basket hold race lonely fit walk").unwrap();
        assert_eq!(ss58(&root), "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV");
    }

    #[test]
    fn signature_binds_digest_login_and_key() {
        let alice = keypair_from_uri("//Alice").unwrap();
        let digest = crate::sha256_bytes(b"bundle");
        let sig = sign(&alice, &digest, "octo");
        verify(&sig, &digest, ALICE, "octo").unwrap();
        let other_digest = crate::sha256_bytes(b"other bundle");
        assert_eq!(verify(&sig, &other_digest, ALICE, "octo"), Err(HotkeyError::BadSignature));
        assert_eq!(verify(&sig, &digest, ALICE, "someone-else"), Err(HotkeyError::BadSignature));
        // Bob cannot claim Alice's bundle: her signature does not verify under his key.
        let bob = ss58(&keypair_from_uri("//Bob").unwrap());
        let mut stolen = sig.clone();
        stolen.hotkey = bob.clone();
        assert_eq!(verify(&stolen, &digest, &bob, "octo"), Err(HotkeyError::BadSignature));
        let mut flipped = sig.clone();
        flipped.signature.replace_range(0..2, if &sig.signature[0..2] == "00" { "01" } else { "00" });
        assert_eq!(verify(&flipped, &digest, ALICE, "octo"), Err(HotkeyError::BadSignature));
        assert_eq!(verify(&sig, &digest, "not-an-address", "octo").unwrap_err(), HotkeyError::BadSignature);
    }
}
