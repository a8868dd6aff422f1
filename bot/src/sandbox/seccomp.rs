//! The sandbox's seccomp filters: system calls a training job or a cargo build
//! never needs, and that an escape or a snoop would. Every one returns EPERM,
//! except clone3, which returns ENOSYS: its flags sit in memory a filter cannot
//! read, and ENOSYS makes glibc fall back to clone, whose flags it can.

use anyhow::{Context, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use std::collections::BTreeMap;

/// Denied outright (EPERM), by name for the docs and the tests.
pub const DENIED: &[(&str, i64)] = &[
    // Other processes' memory and execution.
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    // Mounts, old and new API, and the root.
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    // Namespaces (clone with CLONE_NEW* flags is filtered below).
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    // Kernel attack surface a job has no use for.
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    // The machine itself.
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
];

/// clone's namespace flags (CLONE_NEWTIME is clone3/unshare only: in clone it is
/// the low byte, the exit signal).
const CLONE_NEW: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// The two BPF programs, in the form bubblewrap's `--add-seccomp-fd` reads
/// (struct sock_filter after struct sock_filter, native byte order).
pub fn programs() -> Result<Vec<Vec<u8>>> {
    let arch = std::env::consts::ARCH.try_into().context("no seccomp filter for this architecture")?;
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|&(_, nr)| (nr, vec![])).collect();
    // clone(flags, …) with any namespace flag: one rule per flag (rules are OR-ed).
    let clone_rules = CLONE_NEW
        .iter()
        .map(|&flag| {
            let c = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)?;
            SeccompRule::new(vec![c])
        })
        .collect::<Result<Vec<_>, _>>()?;
    eperm.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(eperm, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    [deny, clone3]
        .into_iter()
        .map(|f| {
            let prog: BpfProgram = f.try_into()?;
            Ok(prog
                .iter()
                .flat_map(|i| [&i.code.to_ne_bytes()[..], &[i.jt, i.jf], &i.k.to_ne_bytes()].concat())
                .collect())
        })
        .collect()
}

/// A memfd holding `bytes`, for a child to inherit (it is close-on-exec here;
/// the sandbox clears that flag in the child only, between fork and exec).
pub fn memfd(bytes: &[u8]) -> Result<std::fs::File> {
    use std::io::{Seek, Write};
    use std::os::fd::FromRawFd;
    // SAFETY: a fresh memfd; the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"karpa-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: fd was just created and is owned by nothing else.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(bytes)?;
    f.rewind()?;
    Ok(f)
}
