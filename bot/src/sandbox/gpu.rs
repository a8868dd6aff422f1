//! The device a sandboxed job runs its model on. On the CPU nothing changes. On
//! a GPU the job gets the NVIDIA device nodes CUDA needs — the control node, the
//! unified-memory nodes and the chosen GPU's own node — bound into its private
//! /dev, and nothing more: no other GPU's node, no modeset or capability nodes.
//! `CUDA_VISIBLE_DEVICES` names the same GPU, so inside the job it is `cuda:0`.

use anyhow::{bail, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What an operator asks for: `auto`, `cpu`, `cuda` (GPU 0) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    Auto,
    #[default]
    Cpu,
    Cuda(u32),
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<u32>) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => Err(format!("{s:?} is not a device: auto, cpu, cuda or cuda:N")),
            },
        }
    }
}

/// The device a job runs on, resolved against the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// The GPU whose node is /dev/nvidia<N>.
    Cuda(u32),
}

/// Nodes every CUDA process needs besides its GPU's; `nvidia-uvm-tools` only
/// where the driver made it.
const CONTROL: &[&str] = &["nvidiactl", "nvidia-uvm"];
const OPTIONAL: &[&str] = &["nvidia-uvm-tools"];

impl DeviceChoice {
    /// The device on this host (`dev` is /dev): `auto` is GPU 0 when its nodes
    /// are there, else the CPU; a GPU asked for whose nodes are missing is an
    /// error, never a silent fall back to the CPU.
    pub fn resolve(self, dev: &Path) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(match gpu_nodes(0, dev) {
                Ok(_) => Device::Cuda(0),
                Err(_) => Device::Cpu,
            }),
            DeviceChoice::Cuda(n) => {
                gpu_nodes(n, dev)?;
                Ok(Device::Cuda(n))
            }
        }
    }
}

/// The device nodes a job on GPU `index` gets, host paths under `dev`.
pub fn gpu_nodes(index: u32, dev: &Path) -> Result<Vec<PathBuf>> {
    let own = format!("nvidia{index}");
    let mut nodes = Vec::new();
    for name in CONTROL.iter().copied().chain([own.as_str()]) {
        let p = dev.join(name);
        if !p.exists() {
            bail!("cuda:{index} was asked for, but {} is missing (no NVIDIA driver, or no such GPU)", p.display());
        }
        nodes.push(p);
    }
    nodes.extend(OPTIONAL.iter().map(|n| dev.join(n)).filter(|p| p.exists()));
    Ok(nodes)
}

/// As `--device` takes it: `cpu`, `cuda:N`.
impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Device {
    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    /// `karpa-train --device`: inside the job the GPU is the only one, cuda:0.
    pub fn harness_arg(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda(_) => "cuda",
        }
    }

    /// The device nodes to bind into the job's /dev.
    pub fn nodes(self) -> Result<Vec<PathBuf>> {
        match self {
            Device::Cpu => Ok(vec![]),
            Device::Cuda(n) => gpu_nodes(n, Path::new("/dev")),
        }
    }

    /// The job's environment for this device.
    pub fn env(self) -> Vec<(&'static str, OsString)> {
        match self {
            Device::Cpu => vec![],
            Device::Cuda(n) => vec![("CUDA_VISIBLE_DEVICES", n.to_string().into())],
        }
    }

    /// The class of numbers this device makes: floors and challengers are only
    /// compared within one. CUDA's is per GPU model, read from the driver's
    /// /proc/driver/nvidia/gpus/*/information.
    pub fn class(self) -> String {
        match self {
            Device::Cpu => "cpu-f32".into(),
            Device::Cuda(n) => format!("cuda-bf16/{}", gpu_model(n, Path::new("/proc/driver/nvidia/gpus"))),
        }
    }
}

/// The model of the GPU whose device minor is `index` ("unknown" if the driver
/// does not say), with spaces as dashes.
pub fn gpu_model(index: u32, gpus: &Path) -> String {
    let infos = std::fs::read_dir(gpus).into_iter().flatten().flatten().map(|e| e.path().join("information"));
    for text in infos.filter_map(|p| std::fs::read_to_string(p).ok()) {
        let field = |name: &str| {
            text.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_string()))
        };
        if field("Device Minor").and_then(|m| m.parse::<u32>().ok()) == Some(index) {
            if let Some(model) = field("Model") {
                return model.replace(' ', "-");
            }
        }
    }
    "unknown".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_dev(nodes: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for n in nodes {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        dir
    }

    #[test]
    fn a_gpu_job_gets_its_own_node_and_the_control_nodes_only() {
        let dev = fake_dev(&[
            "nvidiactl",
            "nvidia-uvm",
            "nvidia-uvm-tools",
            "nvidia0",
            "nvidia1",
            "nvidia2",
            "nvidia-modeset",
            "nvidia-caps",
        ]);
        let names = |n: u32| -> Vec<String> {
            gpu_nodes(n, dev.path())
                .unwrap()
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(1), ["nvidiactl", "nvidia-uvm", "nvidia1", "nvidia-uvm-tools"]);
        assert_eq!(names(0), ["nvidiactl", "nvidia-uvm", "nvidia0", "nvidia-uvm-tools"]);
        let err = gpu_nodes(3, dev.path()).unwrap_err().to_string();
        assert!(err.contains("cuda:3") && err.contains("nvidia3 is missing"), "{err}");
        assert_eq!(Device::Cuda(2).env(), vec![("CUDA_VISIBLE_DEVICES", OsString::from("2"))]);
        assert_eq!((Device::Cuda(2).harness_arg(), Device::Cpu.harness_arg()), ("cuda", "cpu"));
        assert!(Device::Cpu.nodes().unwrap().is_empty() && Device::Cpu.env().is_empty());
    }

    #[test]
    fn a_gpu_asked_for_but_absent_fails_closed_and_auto_falls_back() {
        let none = fake_dev(&[]);
        let one = fake_dev(&["nvidiactl", "nvidia-uvm", "nvidia0"]);
        assert_eq!(DeviceChoice::Auto.resolve(none.path()).unwrap(), Device::Cpu);
        assert_eq!(DeviceChoice::Auto.resolve(one.path()).unwrap(), Device::Cuda(0));
        assert!(DeviceChoice::Cuda(0).resolve(none.path()).is_err());
        assert!(DeviceChoice::Cuda(1).resolve(one.path()).is_err());
        assert_eq!(DeviceChoice::Cpu.resolve(one.path()).unwrap(), Device::Cpu);
        let no_uvm = fake_dev(&["nvidiactl", "nvidia0"]);
        assert!(DeviceChoice::Cuda(0).resolve(no_uvm.path()).is_err(), "CUDA cannot run without nvidia-uvm");
        for (s, d) in [("auto", DeviceChoice::Auto), ("cpu", DeviceChoice::Cpu), ("cuda", DeviceChoice::Cuda(0))] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap(), d);
        }
        assert_eq!("cuda:3".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(3));
        assert!("cuda:x".parse::<DeviceChoice>().is_err() && "gpu".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn the_device_class_names_the_gpu_model_so_like_is_compared_with_like() {
        let gpus = tempfile::tempdir().unwrap();
        for (pci, minor, model) in [("0000:17:00.0", 0, "NVIDIA H100 80GB HBM3"), ("0000:65:00.0", 1, "NVIDIA H200")] {
            std::fs::create_dir(gpus.path().join(pci)).unwrap();
            let info = format!("Model: \t\t {model}\nIRQ:   \t\t 42\nDevice Minor: \t {minor}\n");
            std::fs::write(gpus.path().join(pci).join("information"), info).unwrap();
        }
        assert_eq!(gpu_model(1, gpus.path()), "NVIDIA-H200");
        assert_eq!(gpu_model(0, gpus.path()), "NVIDIA-H100-80GB-HBM3");
        assert_eq!(gpu_model(5, gpus.path()), "unknown");
        assert_eq!(Device::Cpu.class(), "cpu-f32");
        assert!(Device::Cuda(0).class().starts_with("cuda-bf16/"));
    }
}
