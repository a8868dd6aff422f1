//! sha256 digests as lowercase hex, the only digest form Karpa writes.

use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Read;
use std::path::Path;

/// A sha256 digest in lowercase hex (64 characters).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sha256Hex {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(s))
        } else {
            Err(format!("not a lowercase hex sha256: {s:?}"))
        }
    }
}

impl From<Sha256Hex> for String {
    fn from(d: Sha256Hex) -> String {
        d.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

pub fn sha256_bytes(bytes: &[u8]) -> Sha256Hex {
    Sha256Hex(hex::encode(Sha256::digest(bytes)))
}

/// Streams a file through sha256 without loading it whole (shards and
/// checkpoints can be gigabytes).
pub fn sha256_file(path: &Path) -> std::io::Result<Sha256Hex> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Sha256Hex(hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // FIPS 180-2 example "abc".
        assert_eq!(sha256_bytes(b"abc").as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn file_and_bytes_agree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        assert_eq!(sha256_file(&p).unwrap(), sha256_bytes(&data));
    }

    #[test]
    fn rejects_malformed_hex() {
        assert!(Sha256Hex::try_from("ABC".to_string()).is_err());
        assert!(Sha256Hex::try_from("g".repeat(64)).is_err());
        assert!(Sha256Hex::try_from("a".repeat(64)).is_ok());
    }
}
