//! The crown note: what a release carries to be re-verified by anyone holding a
//! clone. It embeds the bundle's manifest and the files that prove it (the DSSE
//! attestation, the miner's signature, the patch and the rationale) verbatim, so
//! every digest can be recomputed; only the checkpoints stay with the bundle.

use anyhow::{bail, Context, Result};
use git2::{Oid, Repository};
use proof::bundle::{BundleManifest, ATTESTATION, MANIFEST, MINER_SIG};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const NOTES_REF: &str = "refs/notes/karpa";
pub const NOTE_FORMAT: &str = "karpa-crown/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrownNote {
    pub format: String,
    /// The release this crown made, and the king it replaced.
    pub tag: String,
    pub king: String,
    /// The pull request (`#12` on GitHub, `pull/3` on a local forge) and the head judged.
    pub pr: String,
    pub head: String,
    pub bundle_digest: String,
    /// Where the whole bundle (with its checkpoints) can be fetched, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_url: Option<String>,
    pub manifest: BundleManifest,
    /// The bundle's files, byte for byte.
    pub attestation: String,
    pub miner_signature: String,
    pub patch: String,
    pub rationale: String,
    /// The bundle's final_state.json, byte for byte (its numbers: val bpb,
    /// tokens, time). Absent from notes written before it was carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_state: Option<String>,
    /// The weights-only file of the scored checkpoint (`karpa model export`),
    /// so an exported model verifies offline. Absent from older notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<crate::release::weights::WeightsDigest>,
    /// A new `validators.toml` this release puts in force, byte for byte. Signed
    /// like the rest, so only the set it replaces can change the set (`trust`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_set: Option<String>,
    /// The verdict, as the judge serialised it.
    pub verdict: serde_json::Value,
    /// The validators' signatures over everything above ([`CrownNote::signed_digest`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<proof::hotkey::ValidatorSignature>,
}

/// Who crowned what: the facts of a crown that are not in the bundle.
pub struct CrownFacts<'a> {
    pub tag: &'a str,
    pub king: &'a str,
    pub pr: &'a str,
    pub head: &'a str,
    pub bundle_url: Option<&'a str>,
}

impl CrownNote {
    /// The note for a crowned verdict, from the bundle (a folder or a packed file).
    pub fn from_bundle(
        bundle: &Path,
        facts: &CrownFacts<'_>,
        verdict: &crate::judge::verdict::Verdict,
    ) -> Result<Self> {
        let mut files = small_files(bundle)?;
        let mut read = |name: &str| {
            let bytes = files.remove(name).with_context(|| format!("the bundle has no {name}"))?;
            String::from_utf8(bytes).with_context(|| format!("the bundle's {name} is not UTF-8"))
        };
        let manifest: BundleManifest = serde_json::from_str(&read(MANIFEST)?).context("the bundle's manifest")?;
        let bundle_digest = manifest.digest().to_string();
        if verdict.bundle_digest.as_deref() != Some(bundle_digest.as_str()) {
            bail!("the verdict is about bundle {:?}, not {bundle_digest}", verdict.bundle_digest);
        }
        let final_state_text = read("final_state.json")?;
        let final_state: proof::state::FinalState =
            serde_json::from_str(&final_state_text).context("the bundle's final_state.json")?;
        // The weights' digest is bound to the checkpoint the manifest names.
        let (checkpoint, bytes) = crate::release::weights::last_checkpoint(bundle, &final_state)?;
        let listed = manifest.files.iter().find(|f| f.path == checkpoint).map(|f| &f.sha256);
        if listed != Some(&proof::sha256_bytes(&bytes)) {
            bail!("the bundle's {checkpoint} is not the one its manifest lists");
        }
        let weights = crate::release::weights::weights_of(&checkpoint, &bytes)?.digest;
        Ok(CrownNote {
            format: NOTE_FORMAT.into(),
            tag: facts.tag.into(),
            king: facts.king.into(),
            pr: facts.pr.into(),
            head: facts.head.into(),
            bundle_digest,
            bundle_url: facts.bundle_url.map(str::to_string),
            attestation: read(ATTESTATION)?,
            miner_signature: read(MINER_SIG)?,
            patch: read("patch.diff")?,
            rationale: read("rationale.md")?,
            manifest,
            final_state: Some(final_state_text),
            weights: Some(weights),
            trusted_set: None,
            verdict: serde_json::to_value(verdict)?,
            signatures: vec![],
        })
    }

    /// The bundle's final state the note carries (None in notes older than that).
    pub fn final_state(&self) -> Result<Option<proof::state::FinalState>> {
        let Some(text) = self.final_state.as_deref() else { return Ok(None) };
        Ok(Some(serde_json::from_str(text).context("the crown note's final_state.json")?))
    }

    /// sha256 of the note's RFC 8785 form without its signatures: what validators sign.
    pub fn signed_digest(&self) -> proof::Sha256Hex {
        let unsigned = CrownNote { signatures: vec![], ..self.clone() };
        proof::sha256_bytes(&proof::canonical::to_canonical_bytes(&unsigned).expect("a crown note always serialises"))
    }

    /// Adds (or renews) `key`'s signature; any other signatures stay.
    pub fn sign(&mut self, key: &subxt_signer::sr25519::Keypair) {
        let signed = proof::hotkey::ValidatorSignature::sign(key, &proof::hotkey::crown_message(&self.signed_digest()));
        self.signatures.retain(|s| s.validator != signed.validator);
        self.signatures.push(signed);
    }
}

/// The bundle files a note embeds, from a bundle folder or packed file.
fn small_files(bundle: &Path) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    const NAMES: [&str; 6] = [MANIFEST, ATTESTATION, MINER_SIG, "patch.diff", "rationale.md", "final_state.json"];
    crate::archive::read_bundle_files(bundle, &NAMES, 16 << 20)
}

/// Attaches `note` to each of `commits` under [`NOTES_REF`] in one notes commit.
/// Writing the same note again changes nothing.
pub fn write(repo: &Repository, commits: &[Oid], note: &CrownNote) -> Result<()> {
    let text = serde_json::to_string_pretty(note)? + "\n";
    let sig = git2::Signature::now("karpa", "karpa@localhost")?;
    for &commit in commits {
        if read_text(repo, commit)?.as_deref() == Some(text.as_str()) {
            continue;
        }
        repo.note(&sig, &sig, Some(NOTES_REF), commit, &text, true)
            .with_context(|| format!("cannot write the crown note on {commit}"))?;
    }
    Ok(())
}

/// The crown note on `commit`, if any; an unreadable note is an error, not absence.
pub fn read(repo: &Repository, commit: Oid) -> Result<Option<CrownNote>> {
    match read_text(repo, commit)? {
        None => Ok(None),
        Some(text) => {
            let note: CrownNote =
                serde_json::from_str(&text).with_context(|| format!("the note on {commit} is not a crown note"))?;
            if note.format != NOTE_FORMAT {
                bail!("the note on {commit} has format {:?}, expected {NOTE_FORMAT}", note.format);
            }
            Ok(Some(note))
        }
    }
}

fn read_text(repo: &Repository, commit: Oid) -> Result<Option<String>> {
    match repo.find_note(Some(NOTES_REF), commit) {
        Ok(n) => Ok(Some(n.message().context("a crown note is UTF-8")?.to_string())),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
