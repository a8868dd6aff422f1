//! The validator's signing identity: its Bittensor hotkey (sr25519) signs crown
//! notes and verdicts, its tag key (ed25519, OpenSSH) signs release tags. Both
//! must be named in the trusted set in force for a crown to verify, so the
//! validator checks that before it moves any ref.

use super::signed_tag::TagSigner;
use super::trust::{TrustedSet, TRUST_FILE};
use anyhow::{bail, Context, Result};

/// The tagger a validator writes unless told otherwise.
pub const DEFAULT_TAGGER: &str = "karpa <karpa@localhost>";

pub struct ValidatorKeys {
    pub hotkey: subxt_signer::sr25519::Keypair,
    pub tags: TagSigner,
}

/// The flags that load a validator's keys, shared by `serve`, `runner` and `judge`.
#[derive(clap::Args, Debug, Clone)]
pub struct ValidatorKeyArgs {
    /// The validator's hotkey, which signs its crown notes and verdicts: a
    /// Bittensor hotkey file, a seed phrase or a secret URI (`//Alice` for tests).
    /// Its SS58 must be in the repository's validators.toml.
    #[arg(long, env = "KARPA_VALIDATOR_HOTKEY", hide_env_values = true)]
    pub validator_hotkey: Option<String>,
    /// The ed25519 key that signs release tags (an unencrypted OpenSSH private key
    /// file, or `//Alice`-style dev keys). Its public key is the validator's
    /// `tag_key` in validators.toml (`karpa lineage keys` prints the entry).
    #[arg(long, env = "KARPA_VALIDATOR_TAG_KEY", hide_env_values = true)]
    pub validator_tag_key: Option<String>,
    /// The tagger of release tags, `Name <email>` (on GitHub, an email of the
    /// account that holds the tag key as a signing key, for "Verified").
    #[arg(long, env = "KARPA_TAGGER", default_value = DEFAULT_TAGGER)]
    pub tagger: String,
}

impl ValidatorKeyArgs {
    /// Both keys, or a clear refusal naming the missing flag.
    pub fn load(&self, why: &str) -> Result<ValidatorKeys> {
        let (Some(hotkey), Some(tag_key)) = (&self.validator_hotkey, &self.validator_tag_key) else {
            bail!("{why} needs --validator-hotkey and --validator-tag-key: the validator signs what it publishes");
        };
        ValidatorKeys::load(hotkey, tag_key, &self.tagger)
    }
}

impl ValidatorKeys {
    pub fn load(hotkey: &str, tag_key: &str, tagger: &str) -> Result<Self> {
        let hotkey = crate::miner::prove::load_hotkey(hotkey).context("--validator-hotkey")?;
        let tags = TagSigner::load(tag_key, tagger).context("--validator-tag-key")?;
        Ok(ValidatorKeys { hotkey, tags })
    }

    /// The hotkey's SS58 address.
    pub fn ss58(&self) -> String {
        proof::hotkey::ss58(&self.hotkey)
    }

    /// This validator's entry for validators.toml.
    pub fn entry(&self, name: &str) -> String {
        let quoted = |s: String| toml::Value::String(s).to_string();
        let (name, ss58, tag_key) = (quoted(name.into()), quoted(self.ss58()), quoted(self.tags.public_key()));
        format!("[[validator]]\nname = {name}\nss58 = {ss58}\ntag_key = {tag_key}\n")
    }

    /// Fails unless the set in force at `king` names both keys: a crown signed
    /// by keys it does not trust would be released and then fail every clone's check.
    pub fn check_trusted(&self, set: Option<&TrustedSet>, king: &str) -> Result<()> {
        let Some(set) = set else { bail!("{king} carries no {TRUST_FILE}: nobody may crown over it") };
        let ss58 = self.ss58();
        let Some(me) = set.validators.iter().find(|v| v.ss58 == ss58) else {
            bail!("{king}'s {TRUST_FILE} does not name this validator's hotkey {ss58}: its crown would not verify");
        };
        let ours = self.tags.public_key();
        let theirs = super::signed_tag::parse_public_key(&me.tag_key)?;
        if ssh_key::PublicKey::from_openssh(&ours)?.key_data() != theirs.key_data() {
            bail!("{king}'s {TRUST_FILE} names another tag key for {} than --validator-tag-key", me.name);
        }
        Ok(())
    }

    /// Before a crown over `king`, whose tree carries `current` (its
    /// validators.toml, if any): these keys must be trusted there, and the new
    /// trusted set the crown carries is `proposed` when it changes the set.
    pub fn crown_over(&self, king: &str, current: Option<&[u8]>, proposed: Option<&str>) -> Result<Option<String>> {
        let set = current.map(TrustedSet::from_bytes).transpose()?;
        self.check_trusted(set.as_ref(), king)?;
        trusted_set_change(current, proposed)
    }
}

/// The new trusted set a crown over `current` (the king's validators.toml)
/// should carry: `proposed` when it parses and differs, None when it is the set
/// already in force.
fn trusted_set_change(current: Option<&[u8]>, proposed: Option<&str>) -> Result<Option<String>> {
    let Some(proposed) = proposed else { return Ok(None) };
    TrustedSet::parse(proposed).context("the proposed trusted set")?;
    Ok((current != Some(proposed.as_bytes())).then(|| proposed.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validator_refuses_to_crown_where_it_is_not_trusted() {
        let dev = TrustedSet::parse(include_str!("../../../deploy/validators.dev.toml")).unwrap();
        let alice = ValidatorKeys::load("//Alice", "//Alice", DEFAULT_TAGGER).unwrap();
        alice.check_trusted(Some(&dev), "recipe-v0.1.0").unwrap();
        assert!(TrustedSet::parse(&format!("signatures_needed = 1\n{}", alice.entry("a \"quoted\" name"))).is_ok());
        for (hot, tag, why) in [("//Bob", "//Alice", "hotkey"), ("//Alice", "//Bob", "another tag key")] {
            let keys = ValidatorKeys::load(hot, tag, DEFAULT_TAGGER).unwrap();
            let err = keys.check_trusted(Some(&dev), "recipe-v0.1.0").unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        assert!(alice.check_trusted(None, "recipe-v0.1.0").is_err());
        let args = ValidatorKeyArgs {
            validator_hotkey: Some("//Alice".into()),
            validator_tag_key: None,
            tagger: "k <k@l>".into(),
        };
        assert!(args.load("--crown").err().unwrap().to_string().contains("--validator-tag-key"));
    }

    #[test]
    fn a_trusted_set_change_is_carried_only_when_it_changes_the_set() {
        let dev = include_str!("../../../deploy/validators.dev.toml");
        assert_eq!(trusted_set_change(Some(dev.as_bytes()), None).unwrap(), None);
        assert_eq!(trusted_set_change(Some(dev.as_bytes()), Some(dev)).unwrap(), None);
        let two = dev.replace("signatures_needed = 1", "signatures_needed = 1\n# two");
        assert_eq!(trusted_set_change(Some(dev.as_bytes()), Some(&two)).unwrap(), Some(two.clone()));
        assert!(trusted_set_change(Some(dev.as_bytes()), Some("signatures_needed = 0")).is_err());
        let alice = ValidatorKeys::load("//Alice", "//Alice", DEFAULT_TAGGER).unwrap();
        assert_eq!(alice.crown_over("recipe-v0.1.0", Some(dev.as_bytes()), Some(&two)).unwrap(), Some(two));
    }
}
