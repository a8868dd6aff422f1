//! Bundles as one file: a plain tar of the bundle folder (what a miner uploads
//! and a PR's locator points at), and the safe unpacking every untrusted archive
//! goes through — no traversal, no links, no devices, no bombs.

use anyhow::{bail, Context, Result};
use proof::bundle::safe_relative;
use std::io::Read;
use std::path::Path;

/// What an untrusted archive may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: usize,
}

impl Limits {
    /// For bundles: karpa-1 checkpoints with optimizer state are a few GB each.
    pub const BUNDLE: Limits = Limits { max_bytes: 64 << 30, max_entries: 10_000 };
}

/// Packs every file of a bundle folder (plain or sealed) into one tar file.
pub fn pack(dir: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{} already exists", out.display());
    }
    let tmp = proof::fsio::temp_sibling(out);
    let result = (|| -> Result<()> {
        let mut tar = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(&tmp)?));
        tar.follow_symlinks(false);
        tar.mode(tar::HeaderMode::Deterministic);
        let mut files = Vec::new();
        collect(dir, "", &mut files)?;
        files.sort();
        for rel in files {
            tar.append_path_with_name(dir.join(&rel), &rel)?;
        }
        tar.into_inner()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, out)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let rel = format!("{prefix}{}", e.file_name().to_string_lossy());
        let t = e.file_type()?;
        if t.is_dir() {
            collect(&e.path(), &format!("{rel}/"), out)?;
        } else if t.is_file() {
            out.push(rel);
        } else {
            bail!("{rel} is not a plain file");
        }
    }
    Ok(())
}

/// Unpacks only regular files at safe relative paths into `dir`, within the
/// bundle limits; names in `forbidden` may not appear inside.
pub fn unpack(reader: impl Read, dir: &Path, forbidden: &[&str]) -> Result<()> {
    unpack_within(reader, dir, forbidden, Limits::BUNDLE)
}

pub fn unpack_within(reader: impl Read, dir: &Path, forbidden: &[&str], limits: Limits) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    let (mut total, mut count) = (0u64, 0usize);
    for entry in archive.entries()? {
        let mut entry = entry?;
        count += 1;
        let path = entry.path()?.to_string_lossy().into_owned();
        if count > limits.max_entries {
            bail!("the archive holds more than {} entries", limits.max_entries);
        }
        if !entry.header().entry_type().is_file() || !safe_relative(&path) || forbidden.contains(&path.as_str()) {
            bail!("the archive holds {path:?}, which is not a plain bundle file");
        }
        let size = entry.size();
        total += size;
        if total > limits.max_bytes {
            bail!("the archive unpacks to more than {} bytes", limits.max_bytes);
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
            bail!("{path}: truncated in the archive");
        }
    }
    Ok(())
}

/// The named files of a bundle, whether a folder or a packed file (read as
/// [`read_files`] does). Absent files are not in the map.
pub fn read_bundle_files(
    bundle: &std::path::Path,
    names: &[&str],
    max_bytes: u64,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    if bundle.is_file() {
        let file = std::fs::File::open(bundle).with_context(|| format!("cannot open {}", bundle.display()))?;
        return read_files(std::io::BufReader::new(file), names, max_bytes);
    }
    let mut out = std::collections::BTreeMap::new();
    for name in names {
        if let Ok(bytes) = std::fs::read(bundle.join(name)) {
            out.insert(name.to_string(), bytes);
        }
    }
    Ok(out)
}

/// The named files of a packed bundle, read without unpacking the rest (the
/// checkpoints stream past). A named file over `max_bytes` is an error; one that
/// is absent is simply not in the map.
pub fn read_files(
    reader: impl Read,
    names: &[&str],
    max_bytes: u64,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in tar::Archive::new(reader).entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if !entry.header().entry_type().is_file() || !names.contains(&path.as_str()) {
            continue;
        }
        if entry.size() > max_bytes {
            bail!("{path} in the archive is over {max_bytes} bytes");
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes)?;
        if out.insert(path.clone(), bytes).is_some() {
            bail!("{path} is in the archive twice");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_stops_at_the_size_and_count_caps() {
        let many = {
            let mut b = tar::Builder::new(Vec::new());
            for i in 0..5 {
                let mut h = tar::Header::new_gnu();
                h.set_size(4);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, format!("f{i}"), &b"data"[..]).unwrap();
            }
            b.into_inner().unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_within(&many[..], dir.path(), &[], Limits { max_bytes: 1 << 20, max_entries: 4 }).unwrap_err();
        assert!(err.to_string().contains("more than 4 entries"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_within(&many[..], dir.path(), &[], Limits { max_bytes: 10, max_entries: 100 }).unwrap_err();
        assert!(err.to_string().contains("more than 10 bytes"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        unpack_within(&many[..], dir.path(), &[], Limits { max_bytes: 20, max_entries: 5 }).unwrap();
    }

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
            (b"checkpoints/hard", tar::EntryType::Link),
            (b"dev/null", tar::EntryType::Char),
            (b"fifo", tar::EntryType::Fifo),
            (b"manifest.json", tar::EntryType::Regular),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let err = unpack(&tar_with(name, kind, b"x")[..], dir.path(), &["manifest.json"]).unwrap_err().to_string();
            assert!(err.contains("not a plain bundle file"), "{name:?}: {err}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
        let dir = tempfile::tempdir().unwrap();
        unpack(&tar_with(b"checkpoints/step-1.safetensors", tar::EntryType::Regular, b"w")[..], dir.path(), &[])
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("checkpoints/step-1.safetensors")).unwrap(), b"w");
    }
}
