//! Recipe builds share one cargo target folder, so libtorch's bindings compile
//! once for every tree; but then they also share its output path
//! `debug/karpa-train`. Each build holds an exclusive lock on the folder from
//! cargo's start until its binary is copied to a path of its own, so a build of
//! another tree (another worker, `karpa prove` beside `karpa judge`) can never
//! swap the binary under a run.
//!
//! Cargo decides what to rebuild by mtime, and every tree is checked out at a
//! path of its own; a checkout made before another tree's build finished looks
//! older than that build's outputs, so cargo would hand back the other tree's
//! binary. So the folder remembers the content it was last built from (sha256 of
//! every source file, relative to the tree's root), and under the lock every file
//! whose content differs from it is touched before cargo runs.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the folder was last built from; "dirty" while a build runs.
const BUILT_FROM: &str = ".karpa-built-from.json";

/// Runs `build` (cargo building `karpa-train` from the tree checked out at
/// `source` into `target_dir`) under the folder's lock, then copies the binary
/// to `out`. Ok(Err(why)) when it does not build.
pub fn build_locked<E>(
    target_dir: &Path,
    source: &Path,
    out: &Path,
    build: impl FnOnce() -> Result<std::result::Result<(), E>>,
) -> Result<std::result::Result<PathBuf, E>> {
    std::fs::create_dir_all(target_dir)?;
    let lock_path = target_dir.join(".karpa-build.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let marker = target_dir.join(BUILT_FROM);
    let built_from: BTreeMap<String, String> =
        std::fs::read(&marker).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let sources = content(source)?;
    touch_changed(source, &sources, &built_from)?;
    // A build that dies half-way leaves outputs of unknown content: touch everything next time.
    std::fs::write(&marker, b"\"dirty\"")?;
    if let Err(why) = build()? {
        return Ok(Err(why));
    }
    proof::fsio::write_json_atomic(&marker, &sources)?;
    let built = target_dir.join("debug/karpa-train");
    let _ = std::fs::remove_file(out);
    std::fs::copy(&built, out).with_context(|| format!("cannot copy {} to {}", built.display(), out.display()))?;
    Ok(Ok(out.to_path_buf()))
}

/// sha256 of every file under `root` (but `.git` and `target`), by relative path.
fn content(root: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let entry = entry?;
            let (path, kind) = (entry.path(), entry.file_type()?);
            let name = entry.file_name();
            if kind.is_dir() && name != ".git" && name != "target" {
                stack.push(path);
            } else if kind.is_file() {
                let rel = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
                out.insert(rel, hex::encode(Sha256::digest(std::fs::read(&path)?)));
            }
        }
    }
    Ok(out)
}

/// Sets the mtime of every file whose content the folder was not built from to now.
fn touch_changed(root: &Path, now: &BTreeMap<String, String>, built: &BTreeMap<String, String>) -> Result<()> {
    let stamp = std::time::SystemTime::now();
    for (rel, digest) in now {
        if built.get(rel) != Some(digest) {
            let path = root.join(rel);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(stamp))
                .with_context(|| format!("cannot touch {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_the_folder_was_not_built_from_are_touched() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.rs"), dir.path().join("sub/b.rs"));
        std::fs::create_dir_all(b.parent().unwrap()).unwrap();
        std::fs::write(&a, "fn a() {}").unwrap();
        std::fs::write(&b, "fn b() {}").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for p in [&a, &b] {
            std::fs::File::options().write(true).open(p).unwrap().set_modified(old).unwrap();
        }
        let mut built = content(dir.path()).unwrap();
        assert_eq!(built.keys().collect::<Vec<_>>(), ["a.rs", "sub/b.rs"]);
        built.insert("sub/b.rs".into(), "another tree's b".into());
        touch_changed(dir.path(), &content(dir.path()).unwrap(), &built).unwrap();
        let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        assert_eq!(mtime(&a), old, "unchanged content keeps its mtime (no needless rebuild)");
        assert!(mtime(&b) > old, "changed content is newer than any earlier build's outputs");
    }
}
