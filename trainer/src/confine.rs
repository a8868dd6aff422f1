//! Landlock for `karpa-train`: once a command has opened and mapped everything it
//! needs (config, tokenizer, shards, checkpoint, hidden split, log file), the
//! process gives up opening files before any recipe code runs. After
//! [`restrict`], a path can be opened for reading only in the library folders
//! libtorch and CUDA load lazily (code, no data), for writing only inside the
//! command's output folders; TCP bind/connect, signals to processes outside and
//! abstract unix sockets outside are denied too. Memory maps and descriptors
//! opened before stay usable: that is how the harness keeps its data while the
//! recipe cannot reach it (or anything else) by path.
//!
//! The harness's results travel on stdout. Recipe code may print (`println!` is
//! no I/O the scan refuses), so before it runs, stdout is pointed at stderr and
//! the harness keeps the real stdout for its JSON ([`write_result`]): a recipe
//! that prints a forged result and then crashes leaves the judge nothing to parse.
//!
//! Landlock is per thread and inherited by threads created later. Threads that
//! already exist are not covered on kernels before ABI 8 (no TSYNC), so the harness
//! restricts while it is still single-threaded and [`restrict`] refuses otherwise.

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use tch::{Device, Kind, Tensor};

/// The newest ABI this module asks for (Linux 6.15); newer kernels enforce the same.
const TARGET: ABI = ABI::V7;
/// The least a `required` confinement accepts: from ABI 3 on, reading, writing,
/// creating, removing, renaming and truncating files are all handled.
pub const MIN_ABI: i32 = 3;

/// What happens when the kernel cannot confine the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Strictness {
    /// Refuse to run (the validator's commands: a number made unconfined is worthless).
    Required,
    /// Warn on stderr and run unconfined (a miner's own machine may lack Landlock).
    BestEffort,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error(
        "Landlock is {0} on this kernel (ABI {MIN_ABI} or newer is required to confine recipe code); \
         a validator cannot run here, a miner may pass --confine best-effort"
    )]
    Unsupported(String),
    #[error("Landlock was not enforced ({0:?})")]
    NotEnforced(RulesetStatus),
    #[error(
        "{} other thread(s) exist before confinement ({}); Landlock ABI {abi} cannot restrict threads that \
         already run, so recipe code could use them",
        .names.len(), .names.join(", ")
    )]
    Threads { abi: i32, names: Vec<String> },
    #[error("cannot open {} for a Landlock rule: {source}", .path.display())]
    Path { path: PathBuf, source: landlock::PathFdError },
    #[error("cannot find the loaded libtorch in /proc/self/maps: {0}")]
    Libtorch(String),
    #[error("cannot write {}: {source}", .path.display())]
    Output { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Ruleset(#[from] landlock::RulesetError),
}

/// What [`restrict`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confined {
    /// The kernel's Landlock ABI (0: none).
    pub abi: i32,
    /// False only under [`Strictness::BestEffort`], when the kernel could not confine.
    pub enforced: bool,
    /// Every right this module asks for is handled (false on kernels before ABI 7,
    /// which still handle every file access from ABI 3 on).
    pub full: bool,
    /// Folders left readable (code and device nodes only).
    pub readable: Vec<PathBuf>,
    pub writable: Vec<PathBuf>,
}

impl Confined {
    /// One line on stderr, so every run's output says whether it was confined.
    pub fn report(&self) {
        eprintln!("karpa-train: {self}");
    }
}

impl std::fmt::Display for Confined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.enforced {
            return write!(f, "NOT confined (Landlock ABI {})", self.abi);
        }
        let w: Vec<_> = self.writable.iter().map(|p| p.display().to_string()).collect();
        write!(
            f,
            "{} confined by Landlock ABI {}: {} library folders readable, writable: {}",
            if self.full { "fully" } else { "partially" },
            self.abi,
            self.readable.len(),
            if w.is_empty() { "nothing".into() } else { w.join(", ") }
        )
    }
}

/// The running kernel's Landlock ABI version; 0 when Landlock is missing or disabled.
pub fn abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: with a null attribute and size 0 this syscall only reports the ABI version.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    v.max(0) as i32
}

/// Checked at start, before any data is opened, so a validator without Landlock
/// fails at once with a clear error.
pub fn check(strictness: Strictness) -> Result<(), ConfineError> {
    match (abi(), strictness) {
        (a, _) if a >= MIN_ABI => Ok(()),
        (_, Strictness::BestEffort) => Ok(()),
        (a, Strictness::Required) => Err(ConfineError::Unsupported(unsupported(a))),
    }
}

fn unsupported(abi: i32) -> String {
    match abi {
        0 => "missing or disabled".into(),
        a => format!("too old (ABI {a})"),
    }
}

/// Where a command may write after confinement.
#[derive(Debug, Clone, Default)]
pub struct Writable {
    /// Folders whose contents may be created, written, read back and removed.
    pub dirs: Vec<PathBuf>,
    /// Folders in which only subfolders may be made or renamed (a run folder's
    /// parent: `train` renames `<out>.partial` to `<out>` when it completes).
    pub rename_in: Vec<PathBuf>,
}

impl Writable {
    pub fn nothing() -> Self {
        Self::default()
    }
}

/// An output file opened before confinement and written after it: once
/// confined, no path can be opened for writing. Not atomic (a rename would need
/// rights on the folder): readers take it only after the process exits 0.
pub struct Output {
    file: std::fs::File,
    path: PathBuf,
}

impl Output {
    pub fn create(path: &Path) -> Result<Self, ConfineError> {
        let err = |source| ConfineError::Output { path: path.to_path_buf(), source };
        Ok(Output { file: std::fs::File::create(path).map_err(err)?, path: path.to_path_buf() })
    }

    pub fn finish(mut self, bytes: &[u8]) -> Result<(), ConfineError> {
        let err = |source| ConfineError::Output { path: self.path.clone(), source };
        self.file.write_all(bytes).map_err(err)?;
        self.file.sync_all().map_err(err)
    }
}

/// The real stdout, once [`divert_stdout`] has pointed fd 1 at stderr.
static RESULTS: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Keeps the process's stdout for the harness's results and points fd 1 at
/// stderr, so whatever recipe code prints lands in the log, never in a result.
fn divert_stdout() -> std::io::Result<()> {
    use std::os::fd::FromRawFd;
    if RESULTS.get().is_some() {
        return Ok(());
    }
    std::io::stdout().flush()?;
    // SAFETY: dup and dup2 on the process's own standard descriptors; the
    // duplicate is owned by the File from here on.
    let kept = unsafe {
        let kept = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if kept < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::fs::File::from_raw_fd(kept)
    };
    let _ = RESULTS.set(Mutex::new(kept));
    Ok(())
}

/// Writes one result (a line of JSON) where the judge reads it: the real stdout.
pub fn write_result(text: &str) -> std::io::Result<()> {
    write_text(&format!("{text}\n"))
}

/// Writes text to the real stdout as it is (generated text, as it streams).
pub fn write_text(text: &str) -> std::io::Result<()> {
    match RESULTS.get() {
        Some(out) => {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            out.write_all(text.as_bytes())?;
            out.flush()
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()
        }
    }
}

/// libtorch's intra-op workers as set before [`hold_threads`].
static THREADS: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// Keeps libtorch on the calling thread until [`restrict`]: loading a
/// checkpoint or a batch big enough for a parallel copy would otherwise start
/// OpenMP's workers before the confinement, and Landlock cannot reach threads
/// that already run. Call it first thing in a command that confines.
pub fn hold_threads() {
    let _ = THREADS.set(tch::get_num_threads());
    tch::set_num_threads(1);
}

/// Gives libtorch its workers back: they start from now on, confined.
fn release_threads() {
    if let Some(&n) = THREADS.get() {
        tch::set_num_threads(n);
    }
}

/// Restricts the calling thread (and every thread it creates later) for good.
/// Call it after everything is open and before the recipe is built; `device` is
/// the one the command computes on (its lazy set-up is done first).
pub fn restrict(device: Device, writable: &Writable, strictness: Strictness) -> Result<Confined, ConfineError> {
    let abi = abi();
    divert_stdout().map_err(|source| ConfineError::Output { path: "stdout".into(), source })?;
    warm_up(device);
    let confined = match confine(abi, writable) {
        Ok(c) => Ok(c),
        Err(e) if strictness == Strictness::BestEffort => {
            eprintln!("karpa-train: warning: recipe code runs UNCONFINED: {e}");
            Ok(Confined { abi, enforced: false, full: false, readable: vec![], writable: vec![] })
        }
        Err(e) => Err(e),
    };
    release_threads();
    confined
}

fn confine(abi: i32, writable: &Writable) -> Result<Confined, ConfineError> {
    if abi < MIN_ABI {
        return Err(ConfineError::Unsupported(unsupported(abi)));
    }
    let others = other_threads();
    if !others.is_empty() {
        return Err(ConfineError::Threads { abi, names: others });
    }
    let libs = library_dirs()?;
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    // Everything but executing: a run folder is the recipe's own output.
    let write = AccessFs::from_all(TARGET) & !AccessFs::Execute;
    let mut rules: Vec<(PathBuf, BitFlags<AccessFs>)> = libs.iter().map(|d| (d.clone(), read)).collect();
    // Device nodes: /dev/null for libraries that write to it, /dev/urandom that
    // libtorch reads for a fresh generator's seed, and the GPU's nodes, which CUDA
    // drives through ioctl after the context exists.
    rules.push(("/dev/null".into(), AccessFs::ReadFile | AccessFs::WriteFile));
    rules.push(("/dev/urandom".into(), AccessFs::ReadFile.into()));
    for gpu in nvidia_devices() {
        rules.push((gpu, AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::IoctlDev));
    }
    rules.extend(writable.dirs.iter().map(|d| (d.clone(), write)));
    rules.extend(writable.rename_in.iter().map(|d| (d.clone(), AccessFs::MakeDir | AccessFs::RemoveDir)));

    let mut created = Ruleset::default()
        // Rights up to ABI 3 must all be handled; newer ones (network, ioctl, scopes) where the kernel has them.
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V3))?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TARGET))?
        .handle_access(AccessNet::from_all(TARGET))?
        .scope(Scope::from_all(TARGET))?
        .create()?;
    for (path, access) in &rules {
        // A rule on a file takes file rights only (the kernel refuses folder rights there).
        let access = if path.is_dir() { *access } else { *access & AccessFs::from_file(TARGET) };
        let fd = PathFd::new(path).map_err(|source| ConfineError::Path { path: path.clone(), source })?;
        created = created.add_rule(PathBeneath::new(fd, access))?;
    }
    let status = created.restrict_self()?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(ConfineError::NotEnforced(status.ruleset));
    }
    let full = status.ruleset == RulesetStatus::FullyEnforced;
    Ok(Confined { abi, enforced: true, full, readable: libs, writable: writable.dirs.clone() })
}

/// Runs what libtorch sets up lazily on its first operations while the files it
/// reads can still be opened: cpuinfo reads /proc/cpuinfo and
/// /sys/devices/system/cpu (and picks the CPU kernels from them: a confined run
/// must compute what an unconfined one does), MKL reads /proc/self/environ and
/// /proc/cpuinfo, CUDA creates its context and cuBLAS its handle. On one thread,
/// so that no intra-op worker starts before the confinement covers it.
fn warm_up(device: Device) {
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let a = Tensor::ones([64, 64], (Kind::Float, Device::Cpu));
    let _ = a.matmul(&a).relu().log_softmax(-1, Kind::Float).sum(Kind::Float).double_value(&[]);
    if let Device::Cuda(i) = device {
        let g = a.to_device(device);
        let _ =
            g.matmul(&g).to_kind(Kind::BFloat16).matmul(&g.to_kind(Kind::BFloat16)).sum(Kind::Float).double_value(&[]);
        tch::Cuda::synchronize(i as i64);
    }
    tch::set_num_threads(threads);
}

/// Threads the CUDA driver starts with its context (named `cuda-EvtHandlr` and
/// the like): they run driver code only, never a recipe's.
const DRIVER_THREADS: &[&str] = &["cuda"];

/// Threads of this process other than the caller, by name (the CUDA driver's aside).
fn other_threads() -> Vec<String> {
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() }.to_string();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return vec![] };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| t.file_name().to_string_lossy() != me)
        .map(|t| std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string())
        .filter(|name| !DRIVER_THREADS.iter().any(|d| name.starts_with(d)))
        .collect()
}

/// The folders shared libraries may be loaded from lazily: libtorch's own folder
/// (found from the loaded libtorch), the CUDA libraries pip installs beside torch,
/// and the system's library folders. None holds data.
fn library_dirs() -> Result<Vec<PathBuf>, ConfineError> {
    let torch_lib = loaded_libtorch_dir()?;
    let mut dirs = vec![torch_lib.clone()];
    if let Some(site) = torch_lib.parent().and_then(Path::parent) {
        if let Ok(entries) = std::fs::read_dir(site.join("nvidia")) {
            let mut nv: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path().join("lib"))).collect();
            nv.retain(|d| d.is_dir());
            nv.sort();
            dirs.extend(nv);
        }
    }
    for sys in ["/usr/lib", "/lib", "/lib64", "/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/etc/ld.so.cache"] {
        let p = PathBuf::from(sys);
        if p.exists() {
            dirs.push(p);
        }
    }
    Ok(dirs)
}

fn loaded_libtorch_dir() -> Result<PathBuf, ConfineError> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| ConfineError::Libtorch(e.to_string()))?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(Path::new)
        .find(|p| p.file_name().is_some_and(|n| n == "libtorch_cpu.so"))
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| ConfineError::Libtorch("libtorch_cpu.so is not mapped".into()))
}

fn nvidia_devices() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/dev") else { return vec![] };
    let mut devs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("nvidia"))
        .map(|e| e.path())
        .collect();
    devs.sort();
    devs
}
