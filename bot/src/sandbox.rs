//! The sandbox for everything that runs miner code: bubblewrap with no network,
//! a private /tmp, only the paths a job names mounted (read-only unless said
//! otherwise), rlimits through prlimit, a wall-clock kill, and the whole process
//! tree gone with it (bwrap is the init of its own pid namespace). The job runs
//! as uid and gid 65534 in a user namespace of its own (files it writes belong
//! to the validator's user outside), with every capability dropped, no further
//! user namespaces, and the seccomp filters of [`seccomp`]. bubblewrap itself
//! starts with an empty environment: its pid 1 inside is visible in /proc, and
//! the validator's environment (a database URL) must not be. If bubblewrap is
//! missing or fails its self-test, nothing runs: the job fails closed.

pub mod gpu;
pub mod seccomp;

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The sandboxed job's user and group: `nobody`, mapped to the validator's own user.
pub const SANDBOX_ID: u32 = 65534;

/// The validator's secret files (HMAC secret, App key, webhook secrets), as
/// registered by the commands that read them: every self-test proves none is
/// readable inside, and no job may mount a folder holding one.
static SECRETS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Registers a secret file of this validator (see [`SECRETS`]).
pub fn protect_secret(path: &Path) {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if !secrets.contains(&path) {
        secrets.push(path);
    }
}

fn secrets() -> Vec<PathBuf> {
    SECRETS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

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
    /// Device nodes bound into the job's private /dev (a GPU's: [`gpu::gpu_nodes`]).
    pub devices: Vec<PathBuf>,
}

pub struct Sandbox {
    bwrap: PathBuf,
    /// The seccomp BPF programs, handed to bwrap through inherited memfds.
    seccomp: Vec<Vec<u8>>,
    secrets: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct Finished {
    pub output: Output,
    pub timed_out: bool,
    pub seconds: f64,
}

impl Sandbox {
    /// Finds bubblewrap and proves it isolates (see [`Sandbox::with_secrets`]),
    /// with the secrets registered through [`protect_secret`].
    pub fn new() -> Result<Self> {
        Self::with_secrets(&secrets())
    }

    /// Finds bubblewrap and proves it isolates: no network but loopback, a
    /// read-only root, an empty private /tmp, no view of unmounted paths, uid
    /// and gid 65534, no capabilities, seccomp on, no validator environment
    /// behind /proc/1, and none of `secrets` readable.
    pub fn with_secrets(secrets: &[PathBuf]) -> Result<Self> {
        let bwrap = which("bwrap").context("bubblewrap (bwrap) is not installed; refusing to run miner code")?;
        let seccomp = seccomp::programs().context("cannot build the seccomp filter; refusing to run miner code")?;
        let secrets = secrets.iter().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).collect();
        let sb = Sandbox { bwrap, seccomp, secrets };
        sb.self_test().context("the sandbox failed its self-test; refusing to run miner code")?;
        Ok(sb)
    }

    fn self_test(&self) -> Result<()> {
        let probe = "set -e; \
            ls /sys/class/net 2>/dev/null | grep -qvx lo && { echo network; exit 1; }; \
            touch /usr/.karpa-probe 2>/dev/null && { echo writable-root; exit 1; }; \
            [ -z \"$(ls -A /tmp)\" ] || { echo shared-tmp; exit 1; }; \
            [ ! -e /root ] && [ ! -e /home ] || { echo host-paths; exit 1; }; \
            [ \"$(id -u):$(id -g)\" = 65534:65534 ] || { echo \"uid $(id -u):$(id -g)\"; exit 1; }; \
            grep -q '^CapEff:[[:space:]]*0*$' /proc/self/status || { echo capabilities; exit 1; }; \
            grep -q '^Seccomp:[[:space:]]*2$' /proc/self/status || { echo no-seccomp; exit 1; }; \
            grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/self/status || { echo new-privileges; exit 1; }; \
            [ -z \"$(tr -d '\\000' < /proc/1/environ 2>/dev/null)\" ] || { echo validator-environment; exit 1; }; \
            for s in \"$@\"; do cat \"$s\" >/dev/null 2>&1 && { echo \"readable secret $s\"; exit 1; }; done; \
            echo isolated";
        let limits =
            Limits { memory_bytes: Some(1 << 30), cpu_seconds: 10, file_bytes: 1 << 20, wall: Duration::from_secs(20) };
        let mut cmd: Vec<OsString> = vec!["sh".into(), "-c".into(), probe.into(), "self-test".into()];
        cmd.extend(self.secrets.iter().map(|p| p.clone().into_os_string()));
        let done = self.run(&Mounts::default(), &limits, Path::new("/"), &[], &cmd)?;
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
        self.refuse_secret_mounts(mounts)?;
        let mut c = Command::new(&self.bwrap);
        // bwrap stays pid 1 inside, and /proc/1/environ is readable there.
        c.env_clear();
        let id = SANDBOX_ID.to_string();
        c.args(["--unshare-user", "--uid", &id, "--gid", &id, "--disable-userns", "--cap-drop", "ALL"]);
        let filters = self.seccomp.iter().map(|p| seccomp::memfd(p)).collect::<Result<Vec<_>>>()?;
        let fds: Vec<i32> = filters.iter().map(|f| f.as_raw_fd()).collect();
        for fd in &fds {
            c.arg("--add-seccomp-fd").arg(fd.to_string());
        }
        // SAFETY: between fork and exec, only fcntl (async-signal-safe) on fds this process owns.
        unsafe {
            c.pre_exec(move || {
                for &fd in &fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
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
        for node in &mounts.devices {
            c.arg("--dev-bind").arg(node).arg(node);
        }
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
        drop(filters); // bwrap holds its own copies now
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

impl Sandbox {
    /// A job may not mount a folder that holds one of the validator's secrets.
    fn refuse_secret_mounts(&self, mounts: &Mounts) -> Result<()> {
        let system = SYSTEM.iter().map(PathBuf::from);
        let sources =
            mounts.read_only.iter().chain(&mounts.read_write).chain(mounts.read_only_at.iter().map(|(s, _)| s));
        for mount in system.chain(sources.map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))) {
            if let Some(secret) = self.secrets.iter().find(|s| s.starts_with(&mount)) {
                bail!("refusing to mount {}: it holds the validator's secret {}", mount.display(), secret.display());
            }
        }
        Ok(())
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
    fn sandbox_jobs_run_unprivileged_under_seccomp() {
        let sb = Sandbox::with_secrets(&[]).unwrap();
        let r = sh(
            &sb,
            &Mounts::default(),
            "id -u; id -g; grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status",
        );
        let out = String::from_utf8_lossy(&r.output.stdout);
        let lines: Vec<&str> = out.lines().map(|l| l.split_whitespace().last().unwrap_or("")).collect();
        assert_eq!(lines, ["65534", "65534", "0000000000000000", "0000000000000000", "1", "2"], "{out}");
        // Each denied call fails with EPERM (clone3 with ENOSYS), as a job would see it.
        let mut calls: Vec<(String, i64, i32)> =
            seccomp::DENIED.iter().map(|&(n, nr)| (n.to_string(), nr, libc::EPERM)).collect();
        calls.push(("clone3".into(), libc::SYS_clone3, libc::ENOSYS));
        calls.push(("clone(CLONE_NEWUSER)".into(), libc::SYS_clone, libc::EPERM));
        let py = format!(
            "import ctypes, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n\
             calls = {:?}\nbad = []\n\
             for name, nr, want in calls:\n\
             \x20   arg = 0x10000000 | 17 if name.startswith('clone(') else 0\n\
             \x20   r = libc.syscall(nr, ctypes.c_ulong(arg), 0, 0, 0, 0)\n\
             \x20   if r == 0 and name.startswith('clone'): sys.exit(0)  # the child of a clone that got through\n\
             \x20   e = ctypes.get_errno()\n\
             \x20   if r != -1 or e != want: bad.append((name, r, e))\n\
             print(bad)\n",
            calls.iter().map(|(n, nr, e)| (n.as_str(), *nr, *e)).collect::<Vec<_>>()
        )
        .replace('"', "'");
        let r = sb
            .run(&Mounts::default(), &limits(20), Path::new("/"), &[], &["python3".into(), "-c".into(), py.into()])
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&r.output.stdout).trim(),
            "[]",
            "{}",
            String::from_utf8_lossy(&r.output.stderr)
        );
        // The tools a job could reach for fail too; ordinary threads and processes still work.
        let r = sh(
            &sb,
            &Mounts::default(),
            "unshare -U true || unshare -n true || strace -o /dev/null true || mount -t tmpfs none /tmp",
        );
        assert!(!r.output.status.success(), "a namespace, ptrace or mount call got through");
        let r = sh(&sb, &Mounts::default(), "(sleep 0 &) ; wait; python3 -c 'import threading; t = threading.Thread(target=print); t.start(); t.join()'");
        assert!(r.output.status.success(), "{}", String::from_utf8_lossy(&r.output.stderr));
    }

    #[test]
    fn sandbox_secrets_stay_out_of_reach() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("validator-secret");
        std::fs::write(&secret, "hmac key").unwrap();
        // bwrap is pid 1 inside: the validator's environment must not show in /proc/1/environ.
        std::env::set_var("KARPA_SANDBOX_PROBE_DB_URL", "postgres://validator:pw@db/karpa");
        let sb = Sandbox::with_secrets(std::slice::from_ref(&secret))
            .expect("a secret outside every mount passes the self-test");
        let r = sh(&sb, &Mounts::default(), "cat /proc/1/environ /proc/self/environ");
        assert!(!String::from_utf8_lossy(&r.output.stdout).contains("validator:pw"));
        // A job may not mount a folder that holds the secret.
        let err = sb.run(
            &Mounts { read_only: vec![dir.path().into()], ..Default::default() },
            &limits(5),
            Path::new("/"),
            &[],
            &["true".into()],
        );
        assert!(format!("{:#}", err.unwrap_err()).contains("validator-secret"));
        // A secret the sandbox can see fails the self-test: nothing would run.
        let err = Sandbox::with_secrets(&[PathBuf::from("/usr/bin/env")]).err().expect("a visible secret is refused");
        assert!(format!("{err:#}").contains("/usr/bin/env"), "{err:#}");
    }

    #[test]
    fn sandbox_files_written_inside_belong_to_the_invoking_user() {
        use std::os::unix::fs::MetadataExt;
        let sb = Sandbox::with_secrets(&[]).unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("mine"), "outside").unwrap();
        let rw = Mounts { read_write: vec![out.path().into()], ..Default::default() };
        // A compiler run inside writes its output into the shared folder (what the PR build does).
        let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().unwrap();
        let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout).unwrap().trim());
        std::fs::write(out.path().join("main.rs"), "fn main() { println!(\"built inside\"); }").unwrap();
        let mounts = Mounts { read_only: vec![sysroot.clone()], ..rw.clone() };
        let script = format!(
            "{}/bin/rustc -o {1}/built {1}/main.rs && {1}/built && echo ok > {1}/theirs && mkdir {1}/sub",
            sysroot.display(),
            out.path().display()
        );
        let compile = Limits { file_bytes: 256 << 20, memory_bytes: None, ..limits(120) };
        let r = sb.run(&mounts, &compile, out.path(), &[], &["sh".into(), "-c".into(), script.into()]).unwrap();
        assert!(r.output.status.success(), "{}", String::from_utf8_lossy(&r.output.stderr));
        assert_eq!(String::from_utf8_lossy(&r.output.stdout).trim(), "built inside");
        let mine = std::fs::metadata(out.path().join("mine")).unwrap();
        for name in ["built", "theirs", "sub"] {
            let theirs = std::fs::metadata(out.path().join(name)).unwrap();
            assert_eq!((theirs.uid(), theirs.gid()), (mine.uid(), mine.gid()), "{name} belongs to someone else");
        }
        // And the job can change what the invoking user wrote there (the shared target folder's old files).
        assert!(sh(&sb, &rw, &format!("echo again >> {}/mine", out.path().display())).output.status.success());
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
