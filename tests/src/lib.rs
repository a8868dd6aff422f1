//! Shared helpers for Karpa's end-to-end tests: locate the built binaries and the
//! demo corpus that `cargo xtask test` sets up, and run commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace").to_path_buf()
}

/// A binary of the workspace, built next to this test's own target folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let bin = dir.join(name);
    assert!(bin.exists(), "{} is not built; run `cargo xtask test` (it builds every binary first)", bin.display());
    bin
}

/// The demo corpus (Shakespeare) that `cargo xtask test` downloads and unpacks.
pub fn corpus() -> PathBuf {
    let dir = std::env::var_os("KARPA_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".karpa/corpus/shakespeare"));
    assert!(dir.join(".complete").exists(), "the demo corpus is missing at {}; run `cargo xtask test`", dir.display());
    dir
}

/// The demo salt file, the one the pinned micro and tiny digests were made with.
pub fn demo_salt_file() -> PathBuf {
    let file = std::env::var_os("KARPA_DEMO_SALT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".karpa/demo-salt"));
    assert!(file.exists(), "the demo salt file is missing at {}; run `cargo xtask test`", file.display());
    file
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed:\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

pub fn run(bin: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    let out: Output = Command::new(bin).args(args.iter().map(|a| a.as_ref())).output().expect("binary starts");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
