//! The legacy commit-reveal hash, exactly as subtensor computes it:
//! `BlakeTwo256::hash_of(&(who, netuid, uids, values, salt, version_key))`,
//! i.e. blake2b-256 over the SCALE encoding of that tuple. (Checked against
//! vectors from Python's hashlib and scalecodec in tests/fixtures/chain.)

use parity_scale_codec::Encode;

/// What a commit binds: the validator, the subnet, the weights, a salt.
pub struct Commit<'a> {
    pub account: &'a [u8; 32],
    pub netuid: u16,
    pub uids: &'a [u16],
    pub values: &'a [u16],
    pub salt: &'a [u16],
    pub version_key: u64,
}

impl Commit<'_> {
    /// The bytes hashed: the SCALE encoding of the tuple.
    pub fn preimage(&self) -> Vec<u8> {
        (self.account, self.netuid, self.uids, self.values, self.salt, self.version_key).encode()
    }

    pub fn hash(&self) -> [u8; 32] {
        sp_crypto_hashing::blake2_256(&self.preimage())
    }
}

/// A fresh salt for one commit: 8 random u16s, kept until the reveal.
pub fn new_salt() -> Result<Vec<u16>, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
}
