//! Release tags signed the way git signs them with `gpg.format=ssh`: the
//! annotated tag object's bytes (object, type, tag, tagger, blank line, message),
//! then an SSH signature over exactly those bytes (namespace `git`, SHA-512)
//! appended to the message in its PEM armour. So `git tag -v` verifies a release
//! with an allowed-signers file, the forge can show "Verified", and `karpa
//! lineage verify` checks the signature against the tag keys of the trusted set
//! in force. The bytes are built here, not by git or the forge, so the same
//! signed object is written to a local repository or sent to GitHub's API, and a
//! forge that stored anything else is caught by the object id it answers with.

use anyhow::{bail, Context, Result};
use git2::{ObjectType, Oid};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};
use std::path::Path;

/// The namespace git signs tags and commits in (`ssh-keygen -Y sign -n git`).
pub const NAMESPACE: &str = "git";
const ARMOR: &str = "-----BEGIN SSH SIGNATURE-----";
/// Lines git takes for the start of a signature (`gpg-interface.c`); the last
/// such line of a tag object starts its signature.
const SIGNATURE_STARTS: [&str; 4] =
    [ARMOR, "-----BEGIN PGP SIGNATURE-----", "-----BEGIN PGP MESSAGE-----", "-----BEGIN SIGNED MESSAGE-----"];

/// The validator's tag-signing identity: an ed25519 key and the tagger it writes.
pub struct TagSigner {
    key: PrivateKey,
    pub name: String,
    pub email: String,
}

impl TagSigner {
    /// `spec` is an OpenSSH private key file (ed25519, unencrypted: what
    /// `ssh-keygen -t ed25519 -N ''` writes), or `//Name` for a public dev key;
    /// `tagger` is `Name <email>`.
    pub fn load(spec: &str, tagger: &str) -> Result<Self> {
        let key = match spec.strip_prefix("//") {
            Some(name) => dev_key(name),
            None => {
                let text = std::fs::read_to_string(Path::new(spec))
                    .with_context(|| format!("cannot read the tag key {spec}"))?;
                let key =
                    PrivateKey::from_openssh(&text).with_context(|| format!("{spec} is not an OpenSSH private key"))?;
                if key.is_encrypted() {
                    bail!("{spec} is encrypted; the validator signs unattended, give it an unencrypted key file");
                }
                key
            }
        };
        if key.algorithm() != ssh_key::Algorithm::Ed25519 {
            bail!("the tag key must be ed25519, not {}", key.algorithm());
        }
        let (name, email) = parse_tagger(tagger)?;
        Ok(TagSigner { key, name, email })
    }

    /// The public key as validators.toml and an allowed-signers file name it
    /// (without the key file's comment).
    pub fn public_key(&self) -> String {
        let mut public = self.key.public_key().clone();
        public.set_comment("");
        public.to_openssh().expect("an ed25519 key always encodes")
    }

    /// The signed tag object for `tag` on the commit `object`, tagged at `time`
    /// (seconds since the epoch, UTC).
    pub fn sign(&self, object: Oid, tag: &str, message: &str, time: i64) -> Result<SignedTag> {
        let message = if message.ends_with('\n') { message.to_string() } else { format!("{message}\n") };
        let tagger = format!("{} <{}> {time} +0000", self.name, self.email);
        let payload = tag_bytes(object, tag, &tagger, &message);
        let sig = self.key.sign(NAMESPACE, HashAlg::Sha512, &payload).context("cannot sign the tag")?;
        let message = message + &sig.to_pem(LineEnding::LF).context("cannot armour the tag signature")?;
        let bytes = tag_bytes(object, tag, &tagger, &message);
        let id = Oid::hash_object(ObjectType::Tag, &bytes)?;
        Ok(SignedTag { id, bytes, message, time })
    }
}

/// A signed annotated tag object: its id, its bytes, and its message with the
/// signature (what a forge's API takes).
pub struct SignedTag {
    pub id: Oid,
    pub bytes: Vec<u8>,
    pub message: String,
    pub time: i64,
}

impl SignedTag {
    /// Writes the object into `repo` and creates `refs/tags/<tag>` on it; an
    /// existing tag of that name is an error (it is the crown's claim).
    pub fn write(&self, repo: &git2::Repository, tag: &str) -> Result<()> {
        let id = repo.odb()?.write(ObjectType::Tag, &self.bytes)?;
        debug_assert_eq!(id, self.id);
        repo.reference(&format!("refs/tags/{tag}"), id, false, &format!("karpa: {tag}"))
            .with_context(|| format!("{tag} exists already: another crown took it"))?;
        Ok(())
    }
}

/// The public half of the dev tag key `//name`.
pub fn dev_public_key(name: &str) -> PublicKey {
    dev_key(name).public_key().clone()
}

/// A dev key, derived from its name: public, so for tests and the demo only.
fn dev_key(name: &str) -> PrivateKey {
    let seed = proof::sha256_bytes(format!("karpa-dev-tag-key://{name}").as_bytes());
    let seed: [u8; 32] = hex::decode(seed.as_str()).expect("hex").try_into().expect("32 bytes");
    PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&seed))
}

fn parse_tagger(tagger: &str) -> Result<(String, String)> {
    let parsed = tagger.trim().strip_suffix('>').and_then(|t| t.split_once(" <"));
    let Some((name, email)) = parsed.filter(|(n, e)| !n.trim().is_empty() && !e.is_empty()) else {
        bail!("the tagger must read `Name <email>`, got {tagger:?}");
    };
    if [name, email].iter().any(|s| s.contains(['<', '>', '\n'])) {
        bail!("the tagger's name and email cannot hold <, > or a line break: {tagger:?}");
    }
    Ok((name.trim().to_string(), email.to_string()))
}

/// The bytes of an annotated tag object on a commit, as git writes them;
/// `tagger` is `Name <email> <seconds> <zone>`.
pub fn tag_bytes(object: Oid, tag: &str, tagger: &str, message: &str) -> Vec<u8> {
    format!("object {object}\ntype commit\ntag {tag}\ntagger {tagger}\n\n{message}").into_bytes()
}

/// Splits a tag object into what was signed and its signature, as git does: at
/// the last line that starts a signature. None when it carries none.
fn split_signature(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut start = None;
    let mut at = 0;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if SIGNATURE_STARTS.iter().any(|s| line.starts_with(s.as_bytes())) {
            start = Some(at);
        }
        at += line.len();
    }
    start.map(|s| raw.split_at(s))
}

/// Why a tag does not verify, for a finding.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TagSigError {
    #[error("is not signed")]
    Unsigned,
    #[error("carries a signature that is not an SSH signature ({0})")]
    Malformed(String),
    #[error("is signed by {0}, which is not a tag key of the trusted set")]
    UnknownKey(String),
    #[error("has a signature by {0} that is not over this tag")]
    BadSignature(String),
}

/// The raw tag object `raw` against the trusted tag keys (name, OpenSSH public
/// key): the name of the key whose valid signature it carries.
pub fn verify(raw: &[u8], keys: &[(&str, &str)]) -> Result<String, TagSigError> {
    let (payload, armour) = split_signature(raw).ok_or(TagSigError::Unsigned)?;
    let text = std::str::from_utf8(armour).map_err(|_| TagSigError::Malformed("not UTF-8".into()))?;
    let sig = SshSig::from_pem(text.trim_end()).map_err(|e| TagSigError::Malformed(e.to_string()))?;
    let signer = PublicKey::from(sig.public_key().clone());
    let fingerprint = signer.fingerprint(HashAlg::Sha256).to_string();
    let trusted =
        keys.iter().find(|(_, k)| PublicKey::from_openssh(k).is_ok_and(|k| k.key_data() == signer.key_data()));
    let Some((name, _)) = trusted else { return Err(TagSigError::UnknownKey(fingerprint)) };
    if sig.namespace() != NAMESPACE {
        return Err(TagSigError::BadSignature(format!("{name} (namespace {:?}, not git)", sig.namespace())));
    }
    signer.verify(NAMESPACE, payload, &sig).map_err(|_| TagSigError::BadSignature(name.to_string()))?;
    Ok(name.to_string())
}

/// Checks an OpenSSH public key line names an ed25519 key.
pub fn parse_public_key(line: &str) -> Result<PublicKey> {
    let key = PublicKey::from_openssh(line).with_context(|| format!("{line:?} is not an OpenSSH public key"))?;
    if key.algorithm() != ssh_key::Algorithm::Ed25519 {
        bail!("{line:?} is a {} key; tag keys are ed25519", key.algorithm());
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(message: &str) -> (TagSigner, SignedTag) {
        let signer = TagSigner::load("//Alice", "karpa <karpa@localhost>").unwrap();
        let tag =
            signer.sign(Oid::from_str(&"ab".repeat(20)).unwrap(), "recipe-v0.1.1", message, 1_796_170_080).unwrap();
        (signer, tag)
    }

    #[test]
    fn a_signed_tag_verifies_and_any_changed_byte_breaks_it() {
        let (alice, tag) = signed("recipe-v0.1.1\n\ncrowned");
        let keys = [("alice", alice.public_key())];
        let keys: Vec<(&str, &str)> = keys.iter().map(|(n, k)| (*n, k.as_str())).collect();
        assert_eq!(verify(&tag.bytes, &keys), Ok("alice".into()));
        let text = String::from_utf8(tag.bytes.clone()).unwrap();
        assert!(text.starts_with(&format!("object {}\ntype commit\ntag recipe-v0.1.1\n", "ab".repeat(20))));
        assert!(
            text.contains("tagger karpa <karpa@localhost> 1796170080 +0000\n\nrecipe-v0.1.1\n\ncrowned\n-----BEGIN")
        );
        for (from, to) in
            [("crowned", "crowneD"), ("recipe-v0.1.1\n\n", "recipe-v0.1.2\n\n"), ("1796170080", "1796170081")]
        {
            let forged = text.replacen(from, to, 1);
            assert!(matches!(verify(forged.as_bytes(), &keys), Err(TagSigError::BadSignature(_))), "{from}");
        }
        let unsigned = &text[..text.find(ARMOR).unwrap()];
        assert_eq!(verify(unsigned.as_bytes(), &keys), Err(TagSigError::Unsigned));
        let bob = TagSigner::load("//Bob", "karpa <karpa@localhost>").unwrap();
        let bobs = bob.public_key();
        assert!(
            matches!(verify(&tag.bytes, &[("bob", &bobs)]), Err(TagSigError::UnknownKey(f)) if f.starts_with("SHA256:"))
        );
    }

    #[test]
    fn the_signature_is_the_last_armour_and_other_namespaces_do_not_count() {
        let (alice, tag) = signed("a message quoting\n-----BEGIN SSH SIGNATURE-----\nnot one\n");
        let key = alice.public_key();
        assert_eq!(verify(&tag.bytes, &[("alice", &key)]), Ok("alice".into()));
        // A signature by the right key in another namespace (e.g. a file signature) is not a tag's.
        let payload = tag_bytes(tag.id, "recipe-v0.1.1", "karpa <karpa@localhost> 1 +0000", "m\n");
        let file_sig = alice.key.sign("file", HashAlg::Sha512, &payload).unwrap().to_pem(LineEnding::LF).unwrap();
        let raw = [payload.clone(), file_sig.into_bytes()].concat();
        assert!(matches!(verify(&raw, &[("alice", &key)]), Err(TagSigError::BadSignature(_))));
    }

    #[test]
    fn the_dev_set_names_the_dev_tag_key_and_bad_keys_and_taggers_are_refused() {
        let set = super::super::trust::TrustedSet::parse(include_str!("../../../deploy/validators.dev.toml")).unwrap();
        let alice = TagSigner::load("//Alice", "karpa <karpa@localhost>").unwrap();
        assert_eq!(set.validators[0].tag_key, alice.public_key());
        for tagger in ["karpa", "<a@b>", "a <b", "a <b>\n <c>"] {
            assert!(TagSigner::load("//Alice", tagger).is_err(), "{tagger}");
        }
        assert!(parse_public_key("ssh-rsa AAAA").is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "not a key").unwrap();
        assert!(format!("{:#}", TagSigner::load(file.to_str().unwrap(), "k <k@l>").err().unwrap()).contains("OpenSSH"));
        std::fs::write(&file, alice.key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
        assert_eq!(TagSigner::load(file.to_str().unwrap(), "k <k@l>").unwrap().public_key(), alice.public_key());
    }
}
