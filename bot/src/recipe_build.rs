//! Recipe builds share one cargo target folder, so libtorch's bindings compile
//! once for every tree; but then they also share its output path
//! `debug/karpa-train`. Each build holds an exclusive lock on the folder from
//! cargo's start until its binary is copied to a path of its own, so a build of
//! another tree (another worker, `karpa prove` beside `karpa judge`) can never
//! swap the binary under a run.
//!
//! Cargo decides what to rebuild by mtime, and it names files outside a crate's
//! own folder (recipe.toml, which the harness includes) by absolute path in its
//! dep-info. So every tree is built from one path, `<folder>/.karpa-src`, copied
//! there under the lock; and the folder remembers the content it was last built
//! from (sha256 of every source file, by path), so that before cargo runs, every
//! file whose content differs is stamped now and every other file long ago:
//! cargo rebuilds exactly what changed (the recipe, not the harness), and never
//! hands back another tree's binary.
//!
//! A validator alternates between trees (the king's floor runs, a challenger,
//! the king again), and so does a miner (the king, a trial, the best), and each
//! switch would recompile the recipe and the harness. So every binary built is
//! also kept under the sha256 of the content it was built from (and of the
//! toolchain and libtorch it was built with): a tree built once is never built
//! again while its binary is among the last [`KEPT_BINARIES`].

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the folder was last built from; "dirty" while a build runs.
const BUILT_FROM: &str = ".karpa-built-from.json";
/// What cargo is asked for. `-p` resolves features for the harness alone: from
/// the workspace's default members, the bot's features would pull subxt, rustls
/// and ring into the harness's graph (through karpa-proof's subxt-signer), and
/// ring's build script reruns whenever the environment differs (a sandboxed
/// build after `karpa prove`'s), rebuilding that whole chain each time.
pub const CARGO_ARGS: [&str; 8] =
    ["build", "--offline", "--locked", "--quiet", "-p", "karpa-trainer", "--bin", "karpa-train"];

/// Where every tree is built from, inside the target folder.
const SOURCE: &str = ".karpa-src";
/// Binaries by content: `<folder>/.karpa-bins/<key>/karpa-train`.
const BINS: &str = ".karpa-bins";
/// How many built binaries are kept (tens of MB each); the least recently used go first.
pub const KEPT_BINARIES: usize = 16;

/// Under the folder's lock, copies the tree checked out at `source` to the
/// folder's one source path and runs `build` there (cargo building
/// `karpa-train` into `target_dir`), then copies the binary to `out`.
/// Ok(Err(why)) when it does not build. `toolchain` names what builds (cargo,
/// libtorch): a binary is reused only for the same content and toolchain.
pub fn build_locked<E>(
    target_dir: &Path,
    source: &Path,
    toolchain: &str,
    out: &Path,
    build: impl FnOnce(&Path) -> Result<std::result::Result<(), E>>,
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
    let kept = target_dir.join(BINS).join(cache_key(&sources, toolchain)).join("karpa-train");
    if kept.is_file() {
        // Its mtime is its last use: the pruning keeps the recently used.
        std::fs::File::options().write(true).open(&kept).and_then(|f| f.set_modified(std::time::SystemTime::now()))?;
        copy_binary(&kept, out)?;
        return Ok(Ok(out.to_path_buf()));
    }
    let tree = target_dir.join(SOURCE);
    copy_tree(source, &tree, &sources)?;
    stamp_by_content(&tree, &sources, &built_from)?;
    // A build that dies half-way leaves outputs of unknown content: touch everything next time.
    std::fs::write(&marker, b"\"dirty\"")?;
    if let Err(why) = build(&tree)? {
        return Ok(Err(why));
    }
    proof::fsio::write_json_atomic(&marker, &sources)?;
    let built = target_dir.join("debug/karpa-train");
    keep(&built, &kept)?;
    copy_binary(&built, out)?;
    Ok(Ok(out.to_path_buf()))
}

/// What a binary was built with: the compiler's path and libtorch's, with the
/// size and mtime of libtorch's main library (a libtorch replaced in place is
/// another toolchain; a binary linked against the old one may not load).
pub fn toolchain_id(compiler: &Path, libtorch: &Path) -> String {
    let lib = std::fs::metadata(libtorch.join("lib/libtorch_cpu.so"));
    let stamp = lib.map(|m| format!("{} {:?}", m.len(), m.modified().ok())).unwrap_or_default();
    format!("{}\n{}\n{stamp}", compiler.display(), libtorch.display())
}

/// sha256 over the toolchain and every source file's path and digest.
fn cache_key(sources: &BTreeMap<String, String>, toolchain: &str) -> String {
    let mut h = Sha256::new();
    h.update(toolchain.as_bytes());
    for (path, digest) in sources {
        h.update([0]);
        h.update(path.as_bytes());
        h.update([0]);
        h.update(digest.as_bytes());
    }
    hex::encode(h.finalize())
}

fn copy_binary(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Stores a fresh binary under its key (whole or not at all), then drops the
/// least recently used beyond [`KEPT_BINARIES`].
fn keep(built: &Path, kept: &Path) -> Result<()> {
    let dir = kept.parent().expect("<bins>/<key>/karpa-train");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".karpa-train.partial");
    std::fs::copy(built, &tmp).with_context(|| format!("cannot copy {} to {}", built.display(), tmp.display()))?;
    std::fs::rename(&tmp, kept)?;
    let bins = dir.parent().expect("<bins>");
    let mut all: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(bins)?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((std::fs::metadata(e.path().join("karpa-train")).ok()?.modified().ok()?, e.path())))
        .collect();
    all.sort_by(|a, b| b.0.cmp(&a.0));
    for (_, old) in all.into_iter().skip(KEPT_BINARIES) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}

/// Replaces `to` with a copy of the `files` of `from`.
fn copy_tree(from: &Path, to: &Path, files: &BTreeMap<String, String>) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("cannot clear {}", to.display()))?;
    }
    for rel in files.keys() {
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().expect("a file has a folder"))?;
        std::fs::copy(from.join(rel), &dst).with_context(|| format!("cannot copy {rel} to {}", to.display()))?;
    }
    Ok(())
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

/// The mtime of a file whose content the folder's outputs were built from:
/// older than any output, so cargo keeps them.
const LONG_AGO: std::time::Duration = std::time::Duration::from_secs(1_000_000_000);

/// Sets the mtime of every file whose content the folder was not built from to
/// now, and of every other file to [`LONG_AGO`].
fn stamp_by_content(root: &Path, now: &BTreeMap<String, String>, built: &BTreeMap<String, String>) -> Result<()> {
    let (fresh, old) = (std::time::SystemTime::now(), std::time::SystemTime::UNIX_EPOCH + LONG_AGO);
    for (rel, digest) in now {
        let stamp = if built.get(rel) == Some(digest) { old } else { fresh };
        let path = root.join(rel);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(stamp))
            .with_context(|| format!("cannot stamp {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_built_once_is_not_built_again_and_old_binaries_go() {
        let dir = tempfile::tempdir().unwrap();
        let (target, src, out) = (dir.path().join("target"), dir.path().join("src"), dir.path().join("out"));
        std::fs::create_dir_all(&src).unwrap();
        let builds = std::cell::Cell::new(0);
        let build = |text: &str, toolchain: &str| {
            std::fs::write(src.join("lib.rs"), text).unwrap();
            build_locked(&target, &src, toolchain, &out, |_| {
                builds.set(builds.get() + 1);
                std::fs::create_dir_all(target.join("debug")).unwrap();
                std::fs::write(target.join("debug/karpa-train"), format!("binary of {text}")).unwrap();
                Ok(Ok::<(), String>(()))
            })
            .unwrap()
            .unwrap();
            std::fs::read_to_string(&out).unwrap()
        };
        assert_eq!(build("a", "t1"), "binary of a");
        assert_eq!(build("b", "t1"), "binary of b");
        assert_eq!((build("a", "t1"), builds.get()), ("binary of a".to_string(), 2), "a again: kept, not rebuilt");
        assert_eq!((build("a", "t2"), builds.get()), ("binary of a".to_string(), 3), "another toolchain builds");
        for i in 0..KEPT_BINARIES {
            build(&format!("x{i}"), "t1");
        }
        let kept = std::fs::read_dir(target.join(BINS)).unwrap().count();
        assert_eq!(kept, KEPT_BINARIES);
        let before = builds.get();
        build("b", "t1");
        assert_eq!(builds.get(), before + 1, "b was the least recently used and went");
    }

    #[test]
    fn every_tree_builds_from_one_path_and_unchanged_files_look_old() {
        let dir = tempfile::tempdir().unwrap();
        let (target, out) = (dir.path().join("target"), dir.path().join("out"));
        let build = |checkout: &str, text: &str, toolchain: &str| {
            let src = dir.path().join(checkout);
            std::fs::create_dir_all(src.join("sub")).unwrap();
            std::fs::write(src.join("a.rs"), "fn a() {}").unwrap();
            std::fs::write(src.join("sub/b.rs"), text).unwrap();
            let mut seen = None;
            build_locked(&target, &src, toolchain, &out, |tree| {
                seen = Some(tree.to_path_buf());
                assert_eq!(std::fs::read_to_string(tree.join("sub/b.rs")).unwrap(), text, "the tree being built");
                std::fs::create_dir_all(target.join("debug")).unwrap();
                std::fs::write(target.join("debug/karpa-train"), "bin").unwrap();
                Ok(Ok::<(), String>(()))
            })
            .unwrap()
            .unwrap();
            let tree = seen.expect("built");
            let mtime = |p: &str| std::fs::metadata(tree.join(p)).unwrap().modified().unwrap();
            (tree.clone(), mtime("a.rs"), mtime("sub/b.rs"))
        };
        let long_ago = std::time::SystemTime::UNIX_EPOCH + LONG_AGO;
        let (first, a, _) = build("x", "fn b() {}", "t1");
        assert!(a > long_ago, "the first build knows nothing of the folder's outputs");
        let (second, a, b) = build("y", "fn b() { 2 }", "t1");
        assert_eq!(first, second, "another checkout, the same path");
        assert_eq!(a, long_ago, "unchanged content looks old: nothing to rebuild for it");
        assert!(b > long_ago, "changed content looks new");
    }

    #[test]
    fn only_files_the_folder_was_not_built_from_look_new() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.rs"), dir.path().join("sub/b.rs"));
        std::fs::create_dir_all(b.parent().unwrap()).unwrap();
        std::fs::write(&a, "fn a() {}").unwrap(); // a fresh checkout: mtime now
        std::fs::write(&b, "fn b() {}").unwrap();
        let mut built = content(dir.path()).unwrap();
        assert_eq!(built.keys().collect::<Vec<_>>(), ["a.rs", "sub/b.rs"]);
        built.insert("sub/b.rs".into(), "another tree's b".into());
        let before = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
        stamp_by_content(dir.path(), &content(dir.path()).unwrap(), &built).unwrap();
        let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        let long_ago = std::time::SystemTime::UNIX_EPOCH + LONG_AGO;
        assert_eq!(mtime(&a), long_ago, "content the outputs were built from looks old: no needless rebuild");
        assert!(mtime(&b) > before, "changed content is newer than any earlier build's outputs");
    }
}
