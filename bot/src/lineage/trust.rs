//! Who may sign crowns, as the record itself says: `validators.toml` at the
//! root of the recipe repository names the validators' hotkeys (SS58), the
//! ed25519 keys they sign release tags with, and how many of them must sign a
//! crown note. The set in force at a release is the one its king's tree carries.
//! Miners cannot change it (it is outside the allowlist); the set itself can, and
//! only so: a crown note that carries the new file (`trusted_set`) and holds the
//! signatures the old set needs puts it in force from that release on. A genesis
//! without the file trusts nobody: every crown after it fails `lineage verify`.

use super::note::CrownNote;
use super::verify::Problem;
use crate::repo::RecipeRepo;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeSet;

pub const TRUST_FILE: &str = "validators.toml";
/// The well-known dev accounts (`//Alice` …): their secrets are public.
const DEV_NAMES: [&str; 6] = ["Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie"];
/// Their hotkeys and tag keys, derived once.
static DEV_KEYS: std::sync::LazyLock<(Vec<[u8; 32]>, Vec<ssh_key::public::KeyData>)> = std::sync::LazyLock::new(|| {
    let hotkeys = DEV_NAMES
        .iter()
        .filter_map(|n| proof::hotkey::keypair_from_uri(&format!("//{n}")).ok())
        .filter_map(|k| proof::hotkey::public_key_of(&proof::hotkey::ss58(&k)).ok().map(|p| p.0))
        .collect();
    let tag_keys = DEV_NAMES.iter().map(|n| super::signed_tag::dev_public_key(n).key_data().clone()).collect();
    (hotkeys, tag_keys)
});

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedSet {
    /// Distinct trusted validators whose valid signatures a crown needs.
    pub signatures_needed: usize,
    #[serde(rename = "validator")]
    pub validators: Vec<Trusted>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trusted {
    pub name: String,
    /// The validator's hotkey, SS58.
    pub ss58: String,
    /// The ed25519 key it signs release tags with, as an OpenSSH public key line.
    pub tag_key: String,
}

impl TrustedSet {
    pub fn parse(text: &str) -> Result<Self> {
        let set: TrustedSet = toml::from_str(text).with_context(|| format!("{TRUST_FILE} does not parse"))?;
        if set.validators.is_empty() || set.signatures_needed == 0 || set.signatures_needed > set.validators.len() {
            bail!(
                "{TRUST_FILE} needs 1 ≤ signatures_needed ≤ the number of validators ({} of {})",
                set.signatures_needed,
                set.validators.len()
            );
        }
        // Each validator once: one key listed twice (an SS58 address has many
        // prefixes) would count as two signers.
        let (mut keys, mut names, mut tag_keys) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for v in &set.validators {
            let Ok(key) = proof::hotkey::public_key_of(&v.ss58) else {
                bail!("{TRUST_FILE}: {:?} ({}) is not an SS58 sr25519 address", v.ss58, v.name);
            };
            let tag_key = super::signed_tag::parse_public_key(&v.tag_key)
                .with_context(|| format!("{TRUST_FILE}: the tag key of {}", v.name))?;
            if !keys.insert(key.0) || !names.insert(v.name.clone()) || !tag_keys.insert(tag_key.key_data().clone()) {
                bail!("{TRUST_FILE}: {} ({}) repeats a validator's name, hotkey or tag key", v.name, v.ss58);
            }
        }
        Ok(set)
    }

    /// The set `tree` carries, or None when it has no [`TRUST_FILE`].
    pub fn of_tree(repo: &RecipeRepo, tree: git2::Oid) -> Result<Option<Self>> {
        repo.file(tree, TRUST_FILE)?.map(|bytes| Self::from_bytes(&bytes)).transpose()
    }

    /// The trusted validators whose hotkey or tag key is a public dev key
    /// (`//Alice` and the other well-known dev names): anyone can sign as them,
    /// so a set naming one protects nothing. Fine for tests and the demo, never
    /// for a real network.
    pub fn dev_keyed(&self) -> Vec<String> {
        let (dev_hotkeys, dev_tag_keys) = &*DEV_KEYS;
        self.validators
            .iter()
            .filter(|v| {
                let hot = proof::hotkey::public_key_of(&v.ss58).is_ok_and(|k| dev_hotkeys.contains(&k.0));
                let tag =
                    super::signed_tag::parse_public_key(&v.tag_key).is_ok_and(|k| dev_tag_keys.contains(k.key_data()));
                hot || tag
            })
            .map(|v| v.name.clone())
            .collect()
    }

    /// The set a [`TRUST_FILE`]'s bytes name.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse(std::str::from_utf8(bytes).with_context(|| format!("{TRUST_FILE} is not UTF-8"))?)
    }

    /// The note's signatures against this set: each must be by a trusted key and
    /// over this very note, and enough distinct trusted validators must have signed.
    /// Returns the signers' names and the problems, each naming the release and the key.
    pub fn check(&self, note: &CrownNote, tag: &str) -> (Vec<String>, Vec<Problem>) {
        let message = proof::hotkey::crown_message(&note.signed_digest());
        let (mut signers, mut problems) = (BTreeSet::new(), Vec::new());
        let key_of = |ss58: &str| proof::hotkey::public_key_of(ss58).ok().map(|k| k.0);
        for sig in &note.signatures {
            let signer = key_of(&sig.validator);
            let Some(trusted) = self.validators.iter().find(|v| signer.is_some() && key_of(&v.ss58) == signer) else {
                problems.push(Problem {
                    code: "lineage.signer-unknown",
                    message: format!("{tag} is signed by {}, which {TRUST_FILE} does not trust", sig.validator),
                });
                continue;
            };
            match sig.verify(&message) {
                Ok(()) => {
                    signers.insert(trusted.name.clone());
                }
                Err(e) => problems.push(Problem {
                    code: "lineage.signature",
                    message: format!(
                        "{tag}: the signature by {} ({}) is not over this note: {e}",
                        trusted.name, sig.validator
                    ),
                }),
            }
        }
        if signers.len() < self.signatures_needed {
            problems.push(Problem {
                code: "lineage.unsigned",
                message: format!(
                    "{tag} carries {} valid signature(s) of trusted validators; {} needed",
                    signers.len(),
                    self.signatures_needed
                ),
            });
        }
        (signers.into_iter().collect(), problems)
    }

    /// The release tag's raw object against this set's tag keys: the signer's
    /// name, or the problem naming the release and the key.
    pub fn check_tag(&self, raw: &[u8], tag: &str) -> Result<String, Problem> {
        let keys: Vec<(&str, &str)> = self.validators.iter().map(|v| (v.name.as_str(), v.tag_key.as_str())).collect();
        super::signed_tag::verify(raw, &keys).map_err(|e| Problem {
            code: if e == super::signed_tag::TagSigError::Unsigned {
                "lineage.tag-unsigned"
            } else {
                "lineage.tag-signature"
            },
            message: format!("the tag {tag} {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    /// //Alice's hotkey with Kusama's SS58 prefix.
    const ALICE_ON_KUSAMA: &str = "HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F";
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs";

    #[test]
    fn a_set_trusting_a_public_dev_key_is_named_and_one_of_private_keys_is_not() {
        let entry = |name: &str, hot: &str, tag: &str| {
            let ss58 = proof::hotkey::ss58(&proof::hotkey::keypair_from_uri(hot).unwrap());
            let tag = crate::lineage::signed_tag::TagSigner::load(tag, "k <k@l>").unwrap().public_key();
            format!("[[validator]]\nname = \"{name}\"\nss58 = \"{ss58}\"\ntag_key = \"{tag}\"\n")
        };
        let dev = TrustedSet::parse(include_str!("../../../deploy/validators.dev.toml")).unwrap();
        assert_eq!(dev.dev_keyed(), ["dev validator (//Alice)"]);
        // Keys no dev name derives: nothing to flag.
        let private = format!("signatures_needed = 1\n{}", entry("v", "//KarpaPrivate1", "//KarpaPrivate2"));
        assert!(TrustedSet::parse(&private).unwrap().dev_keyed().is_empty());
        // A private hotkey with a dev tag key, and a dev hotkey under another prefix, are both dev-keyed.
        let mixed = format!(
            "signatures_needed = 1\n{}{}{}",
            entry("tag", "//KarpaPrivate3", "//Bob"),
            entry("private", "//KarpaPrivate4", "//KarpaPrivate5"),
            format!("[[validator]]\nname = \"kusama\"\nss58 = \"{ALICE_ON_KUSAMA}\"\ntag_key = \"{KEY}\"\n"),
        );
        assert_eq!(TrustedSet::parse(&mixed).unwrap().dev_keyed(), ["tag", "kusama"]);
    }

    #[test]
    fn the_dev_set_parses_and_broken_sets_are_refused() {
        let set = TrustedSet::parse(include_str!("../../../deploy/validators.dev.toml")).unwrap();
        assert_eq!((set.signatures_needed, set.validators[0].ss58.as_str()), (1, ALICE));
        let one = |needed: usize, ss58: &str| {
            format!(
                "signatures_needed = {needed}\n[[validator]]\nname = \"a\"\nss58 = \"{ss58}\"\ntag_key = \"{KEY}\"\n"
            )
        };
        for (text, why) in [
            (one(0, ALICE), "signatures_needed"),
            (one(2, ALICE), "signatures_needed"),
            (one(1, "5Grw-not-an-address"), "not an SS58"),
            ("signatures_needed = 1\nvalidator = []\n".to_string(), "signatures_needed"),
            (one(1, ALICE) + "extra = 1\n", "does not parse"),
            (one(1, ALICE).replace(KEY, "ssh-ed25519 AAAA"), "tag key"),
            // Alice's key again under the generic Substrate prefix 42's sibling (Kusama's, 2): one signer, not two.
            (
                one(1, ALICE)
                    + &one(1, ALICE_ON_KUSAMA).replace("signatures_needed = 1\n", "").replace("\"a\"", "\"b\""),
                "repeats",
            ),
            (one(1, ALICE) + &one(1, ALICE).replace("signatures_needed = 1\n", ""), "repeats"),
        ] {
            let err = format!("{:#}", TrustedSet::parse(&text).unwrap_err());
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
