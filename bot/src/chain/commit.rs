//! The legacy commit-reveal hash, exactly as subtensor computes it:
//! `BlakeTwo256::hash_of(&(who, netuid, uids, values, salt, version_key))`,
//! i.e. blake2b-256 over the SCALE encoding of that tuple. (Checked against
//! vectors from Python's hashlib and scalecodec in tests/fixtures/chain.)

use parity_scale_codec::Encode;

pub fn commit_hash(
    account: &[u8; 32],
    netuid: u16,
    uids: &[u16],
    values: &[u16],
    salt: &[u16],
    version_key: u64,
) -> [u8; 32] {
    sp_crypto_hashing::blake2_256(&preimage(account, netuid, uids, values, salt, version_key))
}

/// The bytes hashed: the SCALE encoding of the tuple.
pub fn preimage(
    account: &[u8; 32],
    netuid: u16,
    uids: &[u16],
    values: &[u16],
    salt: &[u16],
    version_key: u64,
) -> Vec<u8> {
    (account, netuid, uids, values, salt, version_key).encode()
}

/// A fresh salt for one commit: 8 random u16s, kept until the reveal.
pub fn new_salt() -> Result<Vec<u16>, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
}
