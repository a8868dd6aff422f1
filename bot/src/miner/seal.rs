//! Sealed bundles: everything but the manifest and the hotkey signature is packed
//! into one tar and encrypted to the validator's age X25519 recipient, so nobody
//! can copy a patch from a pending PR (front-running). The manifest stays in plain
//! text: the digest, the claims and the signature can be checked before opening.
//! `age` is the format the supply-chain world already uses (`age -d` opens it too).

use crate::archive;
use anyhow::{bail, Context, Result};
use proof::bundle::{MANIFEST, MINER_SIG};
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

pub const SEALED_PAYLOAD: &str = "payload.tar.age";

pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(text.trim())
        .map_err(|e| anyhow::anyhow!("{:?} is not an age X25519 recipient: {e}", text.trim()))
}

/// Reads an age identity file: `AGE-SECRET-KEY-1…` lines, `#` comments allowed.
pub fn read_identity(path: &Path) -> Result<age::x25519::Identity> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read identity file {}", path.display()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .with_context(|| format!("{} holds no identity", path.display()))?;
    age::x25519::Identity::from_str(line)
        .map_err(|e| anyhow::anyhow!("{}: not an age X25519 identity: {e}", path.display()))
}

/// Seals the bundle in `dir` into `out` (a new folder).
pub fn seal(dir: &Path, recipient: &age::x25519::Recipient, out: &Path) -> Result<()> {
    let (_, findings) = proof::bundle::verify_dir(dir);
    if !findings.is_empty() {
        bail!("{} is not a valid bundle ({} findings; run `karpa bundle verify`)", dir.display(), findings.len());
    }
    if out.exists() {
        bail!("{} already exists", out.display());
    }
    let staging = tempfile::Builder::new().prefix(".seal-").tempdir_in(out.parent().unwrap_or(Path::new(".")))?;
    for plain in [MANIFEST, MINER_SIG] {
        std::fs::copy(dir.join(plain), staging.path().join(plain))?;
    }
    let file = std::fs::File::create(staging.path().join(SEALED_PAYLOAD))?;
    let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
        .map_err(|e| anyhow::anyhow!("cannot encrypt: {e}"))?;
    let mut writer = encryptor.wrap_output(std::io::BufWriter::new(file))?;
    {
        let mut tar = tar::Builder::new(&mut writer);
        tar.follow_symlinks(false);
        let manifest: proof::bundle::BundleManifest = serde_json::from_slice(&std::fs::read(dir.join(MANIFEST))?)?;
        for f in &manifest.files {
            tar.append_path_with_name(dir.join(&f.path), &f.path)?;
        }
        tar.finish()?;
    }
    writer.finish()?.flush()?;
    std::fs::rename(staging.keep(), out)?;
    Ok(())
}

/// Opens a sealed bundle into `out` with the validator's identity, then it is an
/// ordinary bundle folder (verify it as usual).
pub fn open(sealed: &Path, identity: &age::x25519::Identity, out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{} already exists", out.display());
    }
    let file = std::fs::File::open(sealed.join(SEALED_PAYLOAD))
        .with_context(|| format!("{} has no {SEALED_PAYLOAD}", sealed.display()))?;
    let decryptor =
        age::Decryptor::new(std::io::BufReader::new(file)).map_err(|e| anyhow::anyhow!("not an age file: {e}"))?;
    let reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| anyhow::anyhow!("cannot decrypt {SEALED_PAYLOAD} with this identity: {e}"))?;
    let staging = tempfile::Builder::new().prefix(".open-").tempdir_in(out.parent().unwrap_or(Path::new(".")))?;
    // The manifest and signature come from the plain side, never from inside.
    archive::unpack(reader, staging.path(), &[MANIFEST, MINER_SIG])?;
    for plain in [MANIFEST, MINER_SIG] {
        std::fs::copy(sealed.join(plain), staging.path().join(plain))
            .with_context(|| format!("sealed bundle lacks {plain}"))?;
    }
    std::fs::rename(staging.keep(), out)?;
    Ok(())
}
