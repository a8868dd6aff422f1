//! The sandbox for everything that runs miner code: bubblewrap with no network,
//! a private /tmp, only the paths a job names mounted (read-only unless said
//! otherwise), rlimits through prlimit, a wall-clock kill, and the whole process
//! tree gone with it (bwrap is the init of its own pid namespace). If bubblewrap
//! is missing or fails its self-test, nothing runs: the job fails closed.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// System folders every job sees, read-only (present ones only).
const SYSTEM: &[&str] =
    &["/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/alternatives", "/etc/ld.so.cache", "/etc/ssl"];

#[derive(Debug, Clone)]
pub struct Limits {
    /// Address space (RLIMIT_AS) in bytes; None where it breaks the job (CUDA maps huge ranges).
    pub memory_bytes: Option<u64>,
    pub cpu_seconds: u64,
    /// Largest file the job may write.
    pub file_bytes: u64,
    pub wall: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Mounts {
    pub read_only: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
    /// Empty writable folders (tmpfs), mounted before the read-only-at mounts.
    pub tmpfs: Vec<PathBuf>,
    /// (host path, path inside): read-only, mounted after the others.
    pub read_only_at: Vec<(PathBuf, PathBuf)>,
}

pub struct Sandbox {
    bwrap: PathBuf,
}

#[derive(Debug)]
pub struct Finished {
    pub output: Output,
    pub timed_out: bool,
    pub seconds: f64,
}

impl Sandbox {
    /// Finds bubblewrap and proves it isolates: no network but loopback, a
    /// read-only root, an empty private /tmp, and no view of unmounted paths.
    pub fn new() -> Result<Self> {
        let bwrap = which("bwrap").context("bubblewrap (bwrap) is not installed; refusing to run miner code")?;
        let sb = Sandbox { bwrap };
        sb.self_test().context("the sandbox failed its self-test; refusing to run miner code")?;
        Ok(sb)
    }

    fn self_test(&self) -> Result<()> {
        let probe = "set -e; \
            ls /sys/class/net 2>/dev/null | grep -qvx lo && { echo network; exit 1; }; \
            touch /usr/.karpa-probe 2>/dev/null && { echo writable-root; exit 1; }; \
            [ -z \"$(ls -A /tmp)\" ] || { echo shared-tmp; exit 1; }; \
            [ ! -e /root ] && [ ! -e /home ] || { echo host-paths; exit 1; }; \
            echo isolated";
        let limits =
            Limits { memory_bytes: Some(1 << 30), cpu_seconds: 10, file_bytes: 1 << 20, wall: Duration::from_secs(20) };
        let done =
            self.run(&Mounts::default(), &limits, Path::new("/"), &[], &["sh".into(), "-c".into(), probe.into()])?;
        let said = String::from_utf8_lossy(&done.output.stdout).trim().to_string();
        if !done.output.status.success() || said != "isolated" {
            bail!(
                "self-test said {said:?} ({}; {})",
                done.output.status,
                String::from_utf8_lossy(&done.output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Runs `cmd` inside the sandbox in `workdir` with only `env` set.
    pub fn run(
        &self,
        mounts: &Mounts,
        limits: &Limits,
        workdir: &Path,
        env: &[(&str, OsString)],
        cmd: &[OsString],
    ) -> Result<Finished> {
        let mut c = Command::new(&self.bwrap);
        c.args([
            "--die-with-parent",
            "--new-session",
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]);
        c.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--clearenv"]);
        for dir in SYSTEM.iter().map(Path::new).filter(|p| p.exists()) {
            c.arg("--ro-bind").arg(dir).arg(dir);
        }
        for p in &mounts.read_only {
            let p = p.canonicalize().with_context(|| format!("sandbox mount {} does not exist", p.display()))?;
            c.arg("--ro-bind").arg(&p).arg(&p);
        }
        for p in &mounts.read_write {
            let p = p.canonicalize().with_context(|| format!("sandbox mount {} does not exist", p.display()))?;
            c.arg("--bind").arg(&p).arg(&p);
        }
        for dir in &mounts.tmpfs {
            c.arg("--tmpfs").arg(dir);
        }
        for (src, dst) in &mounts.read_only_at {
            let src = src.canonicalize().with_context(|| format!("sandbox mount {} does not exist", src.display()))?;
            c.arg("--ro-bind").arg(&src).arg(dst);
        }
        c.arg("--setenv").arg("PATH").arg("/usr/local/bin:/usr/bin:/bin");
        c.arg("--setenv").arg("HOME").arg("/tmp");
        for (k, v) in env {
            c.arg("--setenv").arg(k).arg(v);
        }
        c.arg("--chdir").arg(workdir);
        c.arg("--").arg("prlimit");
        if let Some(m) = limits.memory_bytes {
            c.arg(format!("--as={m}"));
        }
        c.arg(format!("--cpu={}", limits.cpu_seconds))
            .arg(format!("--fsize={}", limits.file_bytes))
            .arg("--core=0")
            .arg("--");
        c.args(cmd);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());

        let start = Instant::now();
        let mut child = c.spawn().context("cannot start bwrap")?;
        // Drain output on threads so a chatty job cannot block on a full pipe.
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let out_t = std::thread::spawn(move || read_capped(&mut out));
        let err_t = std::thread::spawn(move || read_capped(&mut err));
        let mut timed_out = false;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if start.elapsed() > limits.wall {
                timed_out = true;
                // bwrap is the pid namespace's init: when it dies, every process in it dies.
                let _ = child.kill();
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output =
            Output { status, stdout: out_t.join().unwrap_or_default(), stderr: err_t.join().unwrap_or_default() };
        Ok(Finished { output, timed_out, seconds: start.elapsed().as_secs_f64() })
    }
}

/// At most 4 MiB of a stream (the rest is read and dropped).
fn read_capped(r: &mut impl std::io::Read) -> Vec<u8> {
    const CAP: usize = 4 << 20;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = r.read(&mut chunk) {
        if n == 0 {
            break;
        }
        if buf.len() < CAP {
            buf.extend_from_slice(&chunk[..n.min(CAP - buf.len())]);
        }
    }
    buf
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(wall: u64) -> Limits {
        Limits { memory_bytes: Some(1 << 30), cpu_seconds: 30, file_bytes: 1 << 20, wall: Duration::from_secs(wall) }
    }

    fn sh(sb: &Sandbox, mounts: &Mounts, script: &str) -> Finished {
        sb.run(mounts, &limits(20), Path::new("/"), &[], &["sh".into(), "-c".into(), script.into()]).unwrap()
    }

    #[test]
    fn passes_its_self_test_and_isolates() {
        let sb = Sandbox::new().expect("bubblewrap must work here (cargo xtask installs it)");
        let secret = tempfile::tempdir().unwrap();
        std::fs::write(secret.path().join("hidden.bin"), "hidden").unwrap();
        // Unmounted paths do not exist inside.
        let r = sh(&sb, &Mounts::default(), &format!("cat {}/hidden.bin", secret.path().display()));
        assert!(!r.output.status.success());
        // Read-only mounts are readable, not writable; read-write ones are.
        let ro = Mounts { read_only: vec![secret.path().into()], ..Default::default() };
        let r = sh(&sb, &ro, &format!("cat {0}/hidden.bin && ! touch {0}/x", secret.path().display()));
        assert!(r.output.status.success(), "{}", String::from_utf8_lossy(&r.output.stderr));
        let rw = Mounts { read_write: vec![secret.path().into()], ..Default::default() };
        assert!(sh(&sb, &rw, &format!("echo ok > {}/out", secret.path().display())).output.status.success());
        assert_eq!(std::fs::read_to_string(secret.path().join("out")).unwrap(), "ok\n");
        // The environment is cleared.
        std::env::set_var("KARPA_SANDBOX_SECRET", "s3cret");
        let r = sh(&sb, &Mounts::default(), "env");
        assert!(!String::from_utf8_lossy(&r.output.stdout).contains("s3cret"));
    }

    #[test]
    fn the_wall_clock_kills_the_whole_tree_and_rlimits_hold() {
        let sb = Sandbox::new().unwrap();
        let marker = tempfile::tempdir().unwrap();
        let rw = Mounts { read_write: vec![marker.path().into()], ..Default::default() };
        let script = format!("(sleep 3; touch {}/survivor) & sleep 30", marker.path().display());
        let r = sb.run(&rw, &limits(1), Path::new("/"), &[], &["sh".into(), "-c".into(), script.into()]).unwrap();
        assert!(r.timed_out && r.seconds < 5.0, "{r:?}");
        std::thread::sleep(Duration::from_secs(4));
        assert!(!marker.path().join("survivor").exists(), "a child outlived the kill");
        // A file larger than the limit cannot be written.
        let big = format!("head -c 2000000 /dev/zero > {}/big", marker.path().display());
        assert!(!sh(&sb, &rw, &big).output.status.success());
    }
}
