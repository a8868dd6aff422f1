//! Timelocked weight commits (commit-reveal v4): the weights, SCALE-encoded as
//! subtensor's `WeightsTlockPayload`, encrypted to a future drand quicknet round
//! with Boneh–Franklin IBE plus AES-GCM, as the chain decrypts them when that
//! round's signature is published. The chain reveals the commit by itself.
//!
//! The crate is crates.io `timelock` 0.0.1: ideal-lab5's timelock library at the
//! version the chain pins (as crate `tle`, arkworks 0.4; 0.3.0 changed the wire
//! format: fixed 32-byte `v`/`w` instead of length-prefixed ones). Wire
//! compatibility is tested both ways against PyPI's `bittensor-drand` with a
//! past round's published signature (tests/fixtures/chain/make_tlock_vectors.py).

use anyhow::{bail, Context, Result};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use parity_scale_codec::{Decode, Encode};
use sha2::Digest;
use timelock::curves::drand::TinyBLS381;
use timelock::ibe::fullident::Identity;
use timelock::stream_ciphers::AESGCMStreamCipherProvider;
use timelock::tlock::{tld, tle, EngineBLS, TLECiphertext};

/// drand quicknet (`bls-unchained-g1-rfc9380`): its public key (G2), genesis
/// time and period, as the chain and the SDK pin them.
pub const QUICKNET_PUBLIC_KEY: &str = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";
pub const QUICKNET_GENESIS: u64 = 1_692_803_367;
pub const QUICKNET_PERIOD: u64 = 3;
/// The chain's bound on a commit (`BoundedVec<u8, ConstU32<5000>>`).
pub const MAX_COMMIT_BYTES: usize = 5000;

/// What the chain decrypts and applies as the committer's weights; it checks
/// that `hotkey` is the account that committed.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct WeightsPayload {
    /// The committer's 32-byte public key.
    pub hotkey: Vec<u8>,
    pub uids: Vec<u16>,
    pub values: Vec<u16>,
    pub version_key: u64,
}

/// The drand identity of a round: sha256 of its number, big-endian.
fn identity(round: u64) -> Identity {
    Identity::new(b"", vec![sha2::Sha256::digest(round.to_be_bytes()).to_vec()])
}

/// `payload` encrypted to quicknet `round`: the ciphertext as the chain reads it
/// (arkworks compressed `TLECiphertext`), within the chain's size bound.
pub fn encrypt(payload: &WeightsPayload, round: u64) -> Result<Vec<u8>> {
    let key_bytes = hex::decode(QUICKNET_PUBLIC_KEY).expect("a hex constant");
    let key = <TinyBLS381 as EngineBLS>::PublicKeyGroup::deserialize_compressed(&key_bytes[..])
        .map_err(|e| anyhow::anyhow!("quicknet's public key does not decode: {e}"))?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness for the commit key: {e}"))?;
    let ct = tle::<TinyBLS381, AESGCMStreamCipherProvider, _>(
        key,
        secret,
        &payload.encode(),
        identity(round),
        rand::rngs::OsRng,
    )
    .map_err(|e| anyhow::anyhow!("timelock encryption failed: {e:?}"))?;
    let mut bytes = Vec::new();
    ct.serialize_compressed(&mut bytes).context("the commit does not serialise")?;
    if bytes.len() > MAX_COMMIT_BYTES {
        bail!(
            "the timelocked commit is {} bytes; the chain takes at most {MAX_COMMIT_BYTES} ({} weights)",
            bytes.len(),
            payload.uids.len()
        );
    }
    Ok(bytes)
}

/// Opens a commit with the round's published signature (48 bytes, G1
/// compressed): what the chain does at the reveal. Used to check commits.
pub fn decrypt(commit: &[u8], signature: &[u8]) -> Result<Vec<u8>> {
    let ct = TLECiphertext::<TinyBLS381>::deserialize_compressed(commit)
        .map_err(|e| anyhow::anyhow!("not a timelocked ciphertext: {e}"))?;
    let sig = <TinyBLS381 as EngineBLS>::SignatureGroup::deserialize_compressed(signature)
        .map_err(|e| anyhow::anyhow!("not a drand signature: {e}"))?;
    tld::<TinyBLS381, AESGCMStreamCipherProvider>(ct, sig).map_err(|e| anyhow::anyhow!("does not decrypt: {e:?}"))
}

/// The weights a commit carries, opened with the round's signature.
pub fn open(commit: &[u8], signature: &[u8]) -> Result<WeightsPayload> {
    let plain = decrypt(commit, signature)?;
    WeightsPayload::decode(&mut &plain[..]).context("the decrypted commit is not a weights payload")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// quicknet round 657413 and its published signature.
    const ROUND: u64 = 657_413;
    const SIGNATURE: &str =
        "b713718a38ae728dfd477991af2822e08d2f305e47718cef9f7848ce4050e7be41076862b98fad56e91a6b85b89cd97b";

    fn payload() -> WeightsPayload {
        WeightsPayload { hotkey: vec![7; 32], uids: vec![0, 3, 9], values: vec![65535, 7281, 1], version_key: 1000 }
    }

    #[test]
    fn a_commit_opens_with_its_round_signature_only() {
        let commit = encrypt(&payload(), ROUND).unwrap();
        let sig = hex::decode(SIGNATURE).unwrap();
        assert_eq!(open(&commit, &sig).unwrap(), payload());
        // Another round's identity: the published signature does not open it.
        let other = encrypt(&payload(), ROUND + 1).unwrap();
        assert!(decrypt(&other, &sig).is_err());
        // A changed byte of the body fails AES-GCM's tag.
        let mut bad = commit.clone();
        let last = bad.len() - 20;
        bad[last] ^= 1;
        assert!(decrypt(&bad, &sig).is_err());
        // Two encryptions of the same weights differ (fresh key and IBE randomness).
        assert_ne!(encrypt(&payload(), ROUND).unwrap(), commit);
    }

    #[test]
    fn the_payload_is_scale_in_the_chains_field_order() {
        let bytes = payload().encode();
        let mut want = vec![32 << 2];
        want.extend([7; 32]);
        want.extend([3 << 2, 0, 0, 3, 0, 9, 0]);
        want.extend([3 << 2, 0xff, 0xff, 0x71, 0x1c, 1, 0]);
        want.extend(1000u64.to_le_bytes());
        assert_eq!(bytes, want);
    }

    #[test]
    fn too_many_weights_for_the_chain_are_refused() {
        let big = WeightsPayload { uids: (0..2000).collect(), values: vec![1; 2000], ..payload() };
        let err = encrypt(&big, ROUND).unwrap_err().to_string();
        assert!(err.contains("at most 5000"), "{err}");
    }
}
