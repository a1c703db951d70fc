//! The facts NVIDIA discovery produces, whichever backend found them (NVML or
//! procfs/sysfs). The spec is built from these alone, so the same facts always give the
//! same spec.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the GPU facts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// NVML (`libnvidia-ml.so.1`).
    Nvml,
    /// `/proc/driver/nvidia` and sysfs.
    Procfs,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Nvml => "NVML",
            Source::Procfs => "procfs/sysfs",
        })
    }
}

/// The driver and its GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuFacts {
    /// Which backend found them.
    pub source: Source,
    /// Driver version, e.g. `550.54.14`, when the backend knows it.
    pub driver_version: Option<String>,
    /// CUDA driver API version, e.g. `12.4` (NVML only).
    pub cuda_version: Option<String>,
    /// GPUs in index order.
    pub gpus: Vec<Gpu>,
}

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// NVML index (PCI bus order).
    pub index: u32,
    /// Minor number of `/dev/nvidia<minor>` (not always the index).
    pub minor: u32,
    /// `GPU-...` UUID.
    pub uuid: String,
    /// Model name.
    pub name: String,
    /// PCI bus id in sysfs form, e.g. `0000:3b:00.0`.
    pub bus_id: String,
    /// True when MIG mode is enabled: the GPU is then offered whole (as nvidia-ctk does)
    /// and through its MIG devices.
    pub mig_enabled: bool,
    /// MIG devices, in NVML order.
    pub migs: Vec<Mig>,
}

/// One MIG device (a compute instance inside a GPU instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mig {
    /// Position among the parent's MIG devices (the `j` of the `i:j` name).
    pub index: u32,
    /// GPU instance id.
    pub gi: u32,
    /// Compute instance id.
    pub ci: u32,
    /// `MIG-...` UUID (NVML only; procfs does not expose it).
    pub uuid: Option<String>,
}

/// Normalizes a PCI bus id to the sysfs form: lower case, 4-digit domain
/// (`00000000:3B:00.0` -> `0000:3b:00.0`). Returns `None` for anything else.
pub fn normalize_bus_id(id: &str) -> Option<String> {
    let id = id.trim();
    let (domain, rest) = id.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let hex = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    if !hex(domain, 8) || !hex(bus, 2) || !hex(dev, 2) || !hex(func, 1) {
        return None;
    }
    let domain = u32::from_str_radix(domain, 16).ok()?;
    let bus = u32::from_str_radix(bus, 16).ok()?;
    let dev = u32::from_str_radix(dev, 16).ok()?;
    let func = u32::from_str_radix(func, 16).ok()?;
    Some(format!("{domain:04x}:{bus:02x}:{dev:02x}.{func:x}"))
}

/// Formats an NVML CUDA version (`12040`) as `12.4`.
pub fn cuda_version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids() {
        assert_eq!(
            normalize_bus_id("00000000:3B:00.0").as_deref(),
            Some("0000:3b:00.0")
        );
        assert_eq!(
            normalize_bus_id("0000:3b:00.0").as_deref(),
            Some("0000:3b:00.0")
        );
        assert_eq!(normalize_bus_id("garbage"), None);
        assert_eq!(normalize_bus_id("0000:3b:00.0/../x"), None);
        assert_eq!(cuda_version_string(12040), "12.4");
    }
}
