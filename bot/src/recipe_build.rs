//! Recipe builds share one cargo target folder, so libtorch's bindings compile
//! once for every tree; but then they also share its output path
//! `debug/karpa-train`. Each build holds an exclusive lock on the folder from
//! cargo's start until its binary is copied to a path of its own, so a build of
//! another tree (another worker, `karpa prove` beside `karpa judge`) can never
//! swap the binary under a run.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Runs `build` (cargo building `karpa-train` into `target_dir`) under the
/// folder's lock, then copies the binary to `out`. Ok(Err(why)) when it does not build.
pub fn build_locked<E>(
    target_dir: &Path,
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
    if let Err(why) = build()? {
        return Ok(Err(why));
    }
    let built = target_dir.join("debug/karpa-train");
    let _ = std::fs::remove_file(out);
    std::fs::copy(&built, out).with_context(|| format!("cannot copy {} to {}", built.display(), out.display()))?;
    Ok(Ok(out.to_path_buf()))
}
