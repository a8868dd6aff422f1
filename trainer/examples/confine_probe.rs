//! A stand-in for `karpa-train` with a hostile recipe, for trainer/tests/confine.rs:
//! it opens and maps what a command would (a shard, a checkpoint), confines
//! itself exactly as the harness does, then tries what a recipe could —
//! `Tensor::from_file` and `std::fs::read` of the shard, the checkpoint,
//! /etc/passwd, /proc/1/environ and /proc/self/*, writes outside the output
//! folder — and checks that the mapped data, compute (libtorch's intra-op pool
//! starts after confinement) and writing the output folder keep working. A
//! process of its own because Landlock is for good, and a plain `main` because
//! the test harness runs each test on a second thread, which Landlock (before
//! ABI 8) would not cover and the harness therefore refuses.

use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use trainer::confine::{self, Strictness, Writable};

fn denied<T: std::fmt::Debug>(what: &str, r: std::io::Result<T>) {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
        other => panic!("{what}: expected permission denied, got {other:?}"),
    }
}

fn from_file(path: &Path) -> Result<Tensor, tch::TchError> {
    Tensor::f_from_file(path.to_str().unwrap(), false, Some(4), (Kind::Uint8, Device::Cpu))
}

fn main() {
    // As every confining command does first: libtorch stays on this thread until
    // the confinement (a parallel op now would start workers Landlock cannot reach).
    confine::hold_threads();
    let root = PathBuf::from(std::env::args_os().nth(1).expect("usage: confine_probe <empty folder>"));
    // What a command opens before confinement: a shard (mapped), a checkpoint (loaded).
    let (shard, ckpt, out, outside) =
        (root.join("hidden-00000.bin"), root.join("step-4.safetensors"), root.join("out"), root.join("outside"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(&shard, (0u8..=255).cycle().take(4096).collect::<Vec<_>>()).unwrap();
    let state = vec![("w".to_string(), Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]))];
    let meta = trainer::checkpoint::CheckpointMeta {
        config: "micro".into(),
        step: 4,
        tokens_seen: 256,
        data_manifest: "ab".repeat(32),
    };
    trainer::checkpoint::save(&ckpt, &state, &meta).unwrap();
    let file = std::fs::File::open(&shard).unwrap();
    // SAFETY: the test owns the file and nothing writes it while mapped.
    let mapped = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let (_, loaded) = trainer::checkpoint::load(&ckpt, "micro", Device::Cpu).unwrap();
    // Work big enough for libtorch's parallel_for, as loading a real checkpoint is.
    let big = Tensor::ones([4096, 1024], (Kind::Float, Device::Cpu));
    assert_eq!((&big + &big).sum(Kind::Double).double_value(&[]), 2.0 * 4096.0 * 1024.0);
    // Before: each of these works, so a failure after is the confinement's doing.
    assert!(from_file(&shard).is_ok());
    assert!(std::fs::read("/etc/passwd").is_ok());

    let confined =
        confine::restrict(Device::Cpu, &Writable { dirs: vec![out.clone()], rename_in: vec![] }, Strictness::Required)
            .expect("Landlock must be available on the test machine");
    assert!(confined.enforced && confined.abi >= confine::MIN_ABI, "{confined}");

    // A recipe's reads by path fail, through tch and through std alike.
    for path in [shard.as_path(), &ckpt, Path::new("/etc/passwd"), Path::new("/proc/1/environ")] {
        assert!(from_file(path).is_err(), "Tensor::from_file({}) read through the confinement", path.display());
        denied(&format!("std::fs::read({})", path.display()), std::fs::read(path));
    }
    for path in ["/proc/self/environ", "/proc/self/mem", "/proc/self/maps", "/proc/self/status", "/proc/cpuinfo"] {
        denied(path, std::fs::read(path));
    }
    for dir in ["/", "/proc/self/fd", "/sys/class/net", "/tmp"] {
        denied(&format!("listing {dir}"), std::fs::read_dir(dir));
    }
    assert!(trainer::checkpoint::load(&ckpt, "micro", Device::Cpu).is_err(), "the checkpoint loaded again");
    // Threads started later inherit the confinement.
    let shard2 = shard.clone();
    denied("a new thread's read", std::thread::spawn(move || std::fs::read(&shard2)).join().unwrap());

    // Writes only inside the output folder.
    std::fs::write(out.join("nats.f32"), b"ok").unwrap();
    std::fs::create_dir(out.join("checkpoints")).unwrap();
    std::fs::rename(out.join("nats.f32"), out.join("checkpoints/nats.f32")).unwrap();
    denied("a write outside", std::fs::write(outside.join("x"), b"x"));
    denied("a write to /tmp", std::fs::write(std::env::temp_dir().join("karpa-confine-escape"), b"x"));

    // What was opened before still works, and so does compute (the intra-op pool
    // of libtorch starts now, inside the confinement).
    assert_eq!(mapped[..4], [0, 1, 2, 3]);
    assert_eq!(Vec::<f32>::try_from(&loaded[0].1).unwrap(), [1.0, 2.0, 3.0, 4.0]);
    let a = Tensor::ones([512, 512], (Kind::Float, Device::Cpu));
    let s = a.matmul(&a).sum(Kind::Double).double_value(&[]);
    assert_eq!(s, 512.0 * 512.0 * 512.0);
    // What the recipe prints goes to stderr; results still reach stdout.
    println!("{{\"passed\": true, \"forged\": \"by the recipe\"}}");
    confine::write_result(&format!("CONFINED-OK threads={}", tch::get_num_threads())).unwrap();
}
