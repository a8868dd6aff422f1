//! The harness digest: one sha256 that names the exact training harness a bundle
//! was made with. Miners cannot patch these paths, so the digest of the king's
//! tree is the digest every honest bundle for that king carries, and the
//! validator computes it the same way from the king's commit.

use crate::Sha256Hex;
use sha2::{Digest, Sha256};

/// Whether a repository path belongs to the harness: the trainer and proof
/// crates, the workspace manifest and the lock file.
pub fn is_harness_path(path: &str) -> bool {
    path.starts_with("trainer/") || path.starts_with("proof/") || path == "Cargo.lock" || path == "Cargo.toml"
}

/// sha256 over `path NUL sha256(content) LF` for every harness file, sorted by path.
/// Files outside the harness are ignored, so a whole tree can be passed in.
pub fn harness_digest<P: AsRef<str>, C: AsRef<[u8]>>(files: impl IntoIterator<Item = (P, C)>) -> Sha256Hex {
    let mut entries: Vec<(String, Sha256Hex)> = files
        .into_iter()
        .filter(|(p, _)| is_harness_path(p.as_ref()))
        .map(|(p, c)| (p.as_ref().to_string(), crate::sha256_bytes(c.as_ref())))
        .collect();
    entries.sort();
    let mut h = Sha256::new();
    for (path, digest) in entries {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(digest.as_str().as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize()).try_into().expect("sha256 hex")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harness_files_count_and_order_does_not_matter() {
        let a = harness_digest([("trainer/src/lib.rs", "x"), ("Cargo.lock", "y"), ("recipe/src/lib.rs", "z")]);
        let b = harness_digest([("recipe/src/lib.rs", "other"), ("Cargo.lock", "y"), ("trainer/src/lib.rs", "x")]);
        assert_eq!(a, b, "recipe changes must not move the harness digest");
        let c = harness_digest([("trainer/src/lib.rs", "x!"), ("Cargo.lock", "y")]);
        assert_ne!(a, c);
        // Moving content between files changes the digest.
        let d = harness_digest([("trainer/src/main.rs", "x"), ("Cargo.lock", "y")]);
        assert_ne!(a, d);
    }
}
