//! Which split a document belongs to. Decided per document from a hash of its
//! text, so duplicates always land together (no train/hidden leakage through
//! copies) and the result does not depend on file order. The hidden split is
//! chosen with a secret salt: without it nobody can tell which documents are hidden.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitKind {
    Train,
    Val,
    Hidden,
}

pub struct Splitter {
    salt: Vec<u8>,
    val_fraction: f64,
    hidden_fraction: f64,
}

impl Splitter {
    pub fn new(salt: &[u8], val_fraction: f64, hidden_fraction: f64) -> Self {
        Splitter { salt: salt.to_vec(), val_fraction, hidden_fraction }
    }

    pub fn assign(&self, text: &str) -> SplitKind {
        let doc = Sha256::digest(text.as_bytes());
        let salted =
            Sha256::new().chain_update(b"karpa-hidden\0").chain_update(&self.salt).chain_update(doc).finalize();
        if unit(&salted) < self.hidden_fraction {
            return SplitKind::Hidden;
        }
        let public = Sha256::new().chain_update(b"karpa-val\0").chain_update(doc).finalize();
        // Conditional on not hidden, so the val share of the corpus is val_fraction.
        if unit(&public) < self.val_fraction / (1.0 - self.hidden_fraction) {
            SplitKind::Val
        } else {
            SplitKind::Train
        }
    }
}

/// The first 8 bytes of a digest as a number in [0, 1).
fn unit(digest: &[u8]) -> f64 {
    let n = u64::from_be_bytes(digest[..8].try_into().expect("digest has 8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<String> {
        (0..4000).map(|i| format!("document number {i} with some text")).collect()
    }

    #[test]
    fn fractions_are_respected_and_splits_disjoint() {
        let s = Splitter::new(b"salt", 0.1, 0.2);
        let kinds: Vec<_> = docs().iter().map(|d| s.assign(d)).collect();
        let share = |k| kinds.iter().filter(|x| **x == k).count() as f64 / kinds.len() as f64;
        assert!((share(SplitKind::Hidden) - 0.2).abs() < 0.03, "{}", share(SplitKind::Hidden));
        assert!((share(SplitKind::Val) - 0.1).abs() < 0.03, "{}", share(SplitKind::Val));
        // Every document gets exactly one split, and the same one every time.
        for d in docs().iter().take(200) {
            assert_eq!(s.assign(d), s.assign(d));
        }
    }

    #[test]
    fn hidden_depends_on_the_salt_and_duplicates_stay_together() {
        let a = Splitter::new(b"salt-a", 0.1, 0.2);
        let b = Splitter::new(b"salt-b", 0.1, 0.2);
        let ds = docs();
        let hidden = |s: &Splitter| ds.iter().filter(|d| s.assign(d) == SplitKind::Hidden).cloned().collect::<Vec<_>>();
        assert_ne!(hidden(&a), hidden(&b));
        let copy = ds[7].clone();
        assert_eq!(a.assign(&ds[7]), a.assign(&copy));
    }
}
