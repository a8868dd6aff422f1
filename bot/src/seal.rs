//! Sealed bundles: everything but the manifest and the hotkey signature is packed
//! into one tar and encrypted to the validator's age X25519 recipient, so nobody
//! can copy a patch from a pending PR (front-running). The manifest stays in plain
//! text: the digest, the claims and the signature can be checked before opening.
//! `age` is the format the supply-chain world already uses (`age -d` opens it too).

use anyhow::{bail, Context, Result};
use proof::bundle::{safe_relative, MANIFEST, MINER_SIG};
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

pub const SEALED_PAYLOAD: &str = "payload.tar.age";
/// Refuse to unpack more than this (a sealed bundle is untrusted input).
const MAX_UNPACKED_BYTES: u64 = 64 << 30;
const MAX_ENTRIES: usize = 10_000;

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
    unpack(reader, staging.path())?;
    for plain in [MANIFEST, MINER_SIG] {
        std::fs::copy(sealed.join(plain), staging.path().join(plain))
            .with_context(|| format!("sealed bundle lacks {plain}"))?;
    }
    std::fs::rename(staging.keep(), out)?;
    Ok(())
}

/// Unpacks only regular files at safe relative paths, within size and count caps.
fn unpack(reader: impl Read, dir: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    let (mut total, mut count) = (0u64, 0usize);
    for entry in archive.entries()? {
        let mut entry = entry?;
        count += 1;
        let path = entry.path()?.to_string_lossy().into_owned();
        if count > MAX_ENTRIES {
            bail!("the sealed payload holds more than {MAX_ENTRIES} entries");
        }
        if !entry.header().entry_type().is_file() || !safe_relative(&path) || path == MANIFEST || path == MINER_SIG {
            bail!("the sealed payload holds {path:?}, which is not a plain bundle file");
        }
        let size = entry.size();
        total += size;
        if total > MAX_UNPACKED_BYTES {
            bail!("the sealed payload unpacks to more than {MAX_UNPACKED_BYTES} bytes");
        }
        let dst = dir.join(&path);
        std::fs::create_dir_all(dst.parent().expect("inside dir"))?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dst)
            .with_context(|| format!("{path}: duplicate or unwritable"))?;
        let copied = std::io::copy(&mut (&mut entry).take(size), &mut out)?;
        if copied != size {
            bail!("{path}: truncated in the sealed payload");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with one entry whose raw name and type we choose (bypassing the
    /// builder's own path checks, as an attacker would).
    fn tar_with(name: &[u8], kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&header, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn unpack_refuses_traversal_links_and_plain_file_overrides() {
        for (name, kind) in [
            (&b"../evil"[..], tar::EntryType::Regular),
            (b"/etc/evil", tar::EntryType::Regular),
            (b"checkpoints/link", tar::EntryType::Symlink),
            (b"manifest.json", tar::EntryType::Regular),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let err = unpack(&tar_with(name, kind, b"x")[..], dir.path()).unwrap_err().to_string();
            assert!(err.contains("not a plain bundle file"), "{name:?}: {err}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
        let dir = tempfile::tempdir().unwrap();
        unpack(&tar_with(b"checkpoints/step-1.safetensors", tar::EntryType::Regular, b"w")[..], dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("checkpoints/step-1.safetensors")).unwrap(), b"w");
    }
}
