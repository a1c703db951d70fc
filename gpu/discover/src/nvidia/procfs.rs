//! NVIDIA facts from procfs: the driver version (`/proc/driver/nvidia/version`), GPUs
//! (`/proc/driver/nvidia/gpus/*/information`), MIG instances
//! (`/proc/driver/nvidia/capabilities/gpuN/mig/`), device majors (`/proc/devices`) and
//! MIG capability minors (`/proc/driver/nvidia-caps/mig-minors`, read once).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::facts::{normalize_bus_id, Gpu, GpuFacts, Mig, Source};
use crate::roots::Roots;

/// Largest procfs file read.
const MAX_PROC_FILE: u64 = 4 * 1024 * 1024;

/// Errors reading NVIDIA procfs files.
#[derive(Debug, Error)]
pub enum ProcfsError {
    /// A file or directory cannot be read.
    #[error("{path}: cannot read: {source}; is the NVIDIA kernel module loaded (or --procfs-root right)?", path = .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file does not have the expected content.
    #[error("{path}: {what}; the file is corrupt or from an unsupported driver; reload the NVIDIA driver or report the file's content", path = .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// Reads a small text file.
pub fn read_text(path: &Path) -> Result<String, ProcfsError> {
    use std::io::Read;
    let read = |source| ProcfsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    f.take(MAX_PROC_FILE)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    String::from_utf8(bytes).map_err(|_| ProcfsError::Corrupt {
        path: path.to_path_buf(),
        what: "not UTF-8 text".to_string(),
    })
}

/// Character device majors from `/proc/devices`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Majors {
    map: HashMap<String, u32>,
}

impl Majors {
    /// Parses `/proc/devices` text (only the "Character devices" section).
    pub fn parse(text: &str) -> Majors {
        let mut map = HashMap::new();
        let mut in_char = false;
        for line in text.lines() {
            let line = line.trim();
            if line.ends_with(':') {
                in_char = line.starts_with("Character");
                continue;
            }
            if !in_char {
                continue;
            }
            if let Some((major, name)) = line.split_once(char::is_whitespace) {
                if let Ok(m) = major.parse::<u32>() {
                    map.entry(name.trim().to_string()).or_insert(m);
                }
            }
        }
        Majors { map }
    }

    /// Reads `/proc/devices`; an unreadable file gives no majors (callers warn).
    pub fn read(roots: &Roots) -> Result<Majors, ProcfsError> {
        read_text(&roots.proc("devices")).map(|t| Majors::parse(&t))
    }

    /// The driver name of character `major`, when some driver has it.
    pub fn name_of(&self, major: u32) -> Option<&str> {
        self.map
            .iter()
            .find(|(_, m)| **m == major)
            .map(|(n, _)| n.as_str())
    }

    /// The major of `name`.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.map.get(name).copied()
    }

    /// The major of the NVIDIA GPU and control nodes (`nvidia-frontend`, 195 by default).
    pub fn nvidia(&self) -> u32 {
        self.get("nvidia-frontend")
            .or_else(|| self.get("nvidia"))
            .unwrap_or(195)
    }
}

/// The driver version from `/proc/driver/nvidia/version`
/// (`NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  ...`).
pub fn driver_version(roots: &Roots) -> Result<String, ProcfsError> {
    let path = roots.proc("driver/nvidia/version");
    let text = read_text(&path)?;
    let first = text.lines().next().unwrap_or("");
    first
        .split_whitespace()
        .find(|t| is_version(t))
        .map(str::to_string)
        .ok_or(ProcfsError::Corrupt {
            path,
            what: format!("no driver version in the first line {first:?}"),
        })
}

/// True for `550.54.14`-like tokens (digits and dots, starting and ending with a digit).
pub fn is_version(t: &str) -> bool {
    t.contains('.')
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && t.starts_with(|c: char| c.is_ascii_digit())
        && t.ends_with(|c: char| c.is_ascii_digit())
        && !t.contains("..")
}

/// GPUs from `/proc/driver/nvidia/gpus/<bus id>/information`, indexed in PCI bus order,
/// with their MIG instances from the capabilities tree.
pub fn gpus(roots: &Roots) -> Result<GpuFacts, ProcfsError> {
    let dir = roots.proc("driver/nvidia/gpus");
    let read_dir = |source| ProcfsError::Read {
        path: dir.clone(),
        source,
    };
    let mut bus_ids = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        if let Some(name) = entry.file_name().to_str() {
            bus_ids.push(name.to_string());
        }
    }
    bus_ids.sort();
    let mut gpus = Vec::with_capacity(bus_ids.len());
    for (index, dir_name) in bus_ids.iter().enumerate() {
        let path = dir.join(dir_name).join("information");
        let text = read_text(&path)?;
        let mut gpu = parse_information(&text, &path)?;
        gpu.index = u32::try_from(index).unwrap_or(u32::MAX);
        gpu.migs = mig_instances(roots, gpu.minor)?;
        gpu.mig_enabled = !gpu.migs.is_empty();
        gpus.push(gpu);
    }
    let driver_version = driver_version(roots).ok();
    Ok(GpuFacts {
        source: Source::Procfs,
        driver_version,
        cuda_version: None,
        gpus,
    })
}

/// Parses one `information` file (`Model`, `GPU UUID`, `Bus Location`, `Device Minor`).
pub fn parse_information(text: &str, path: &Path) -> Result<Gpu, ProcfsError> {
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            fields.insert(k.trim(), v.trim());
        }
    }
    let corrupt = |what: String| ProcfsError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    let field = |key: &str| {
        fields
            .get(key)
            .copied()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| corrupt(format!("field {key:?} is missing or empty")))
    };
    let minor_text = field("Device Minor")?;
    let minor = minor_text
        .parse::<u32>()
        .ok()
        .filter(|m| *m < 255)
        .ok_or_else(|| {
            corrupt(format!(
                "field \"Device Minor\" is {minor_text:?}, not a number below 255"
            ))
        })?;
    let uuid = field("GPU UUID")?;
    if !uuid.starts_with("GPU-") || uuid.contains(char::is_whitespace) {
        return Err(corrupt(format!(
            "field \"GPU UUID\" is {uuid:?}, not GPU-<uuid>"
        )));
    }
    let bus_text = field("Bus Location")?;
    let bus_id = normalize_bus_id(bus_text).ok_or_else(|| {
        corrupt(format!(
            "field \"Bus Location\" is {bus_text:?}, not a PCI bus id"
        ))
    })?;
    Ok(Gpu {
        index: 0,
        minor,
        uuid: uuid.to_string(),
        name: field("Model")?.to_string(),
        bus_id,
        mig_enabled: false,
        migs: Vec::new(),
    })
}

/// MIG instances of GPU `minor` from `/proc/driver/nvidia/capabilities/gpu<minor>/mig`:
/// one `gi<N>/ci<M>` directory per compute instance, sorted by (gi, ci).
fn mig_instances(roots: &Roots, minor: u32) -> Result<Vec<Mig>, ProcfsError> {
    let dir = roots.proc(&format!("driver/nvidia/capabilities/gpu{minor}/mig"));
    let mut found = Vec::new();
    for gi in numbered_dirs(&dir, "gi")? {
        let gi_dir = dir.join(format!("gi{gi}"));
        for ci in numbered_dirs(&gi_dir, "ci")? {
            found.push((gi, ci));
        }
    }
    found.sort_unstable();
    Ok(found
        .into_iter()
        .enumerate()
        .map(|(j, (gi, ci))| Mig {
            index: u32::try_from(j).unwrap_or(u32::MAX),
            gi,
            ci,
            uuid: None,
        })
        .collect())
}

/// Numbers N of the `<prefix>N` entries of `dir`; a missing directory has none.
fn numbered_dirs(dir: &Path, prefix: &str) -> Result<Vec<u32>, ProcfsError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ProcfsError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix(prefix))
            .and_then(|s| s.parse::<u32>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// `/proc/driver/nvidia-caps/mig-minors`: capability minors of GPU and compute instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigMinors {
    /// (gpu minor, gi, ci or None for the GPU instance itself) -> minor.
    map: HashMap<(u32, u32, Option<u32>), u32>,
}

impl MigMinors {
    /// Reads the file once.
    pub fn read(roots: &Roots) -> Result<MigMinors, ProcfsError> {
        let path = roots.proc("driver/nvidia-caps/mig-minors");
        Ok(MigMinors::parse(&read_text(&path)?))
    }

    /// Parses `gpu0/gi1/access 12` and `gpu0/gi1/ci0/access 13` lines; others are ignored.
    pub fn parse(text: &str) -> MigMinors {
        let mut map = HashMap::with_capacity(text.len() / 20);
        for line in text.lines() {
            let Some((key, minor)) = line.split_once(' ') else {
                continue;
            };
            let Ok(minor) = minor.trim().parse::<u32>() else {
                continue;
            };
            let mut parts = key.split('/');
            let num = |p: Option<&str>, prefix: &str| {
                p.and_then(|s| s.strip_prefix(prefix))
                    .and_then(|s| s.parse::<u32>().ok())
            };
            let (Some(gpu), Some(gi)) = (num(parts.next(), "gpu"), num(parts.next(), "gi")) else {
                continue;
            };
            match (parts.next(), parts.next(), parts.next()) {
                (Some("access"), None, None) => {
                    map.insert((gpu, gi, None), minor);
                }
                (Some(ci), Some("access"), None) => {
                    if let Some(ci) = num(Some(ci), "ci") {
                        map.insert((gpu, gi, Some(ci)), minor);
                    }
                }
                _ => {}
            }
        }
        MigMinors { map }
    }

    /// Minor of the GPU instance `gi` of GPU `gpu_minor`.
    pub fn gpu_instance(&self, gpu_minor: u32, gi: u32) -> Option<u32> {
        self.map.get(&(gpu_minor, gi, None)).copied()
    }

    /// Minor of compute instance `ci` of GPU instance `gi`.
    pub fn compute_instance(&self, gpu_minor: u32, gi: u32, ci: u32) -> Option<u32> {
        self.map.get(&(gpu_minor, gi, Some(ci))).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_devices() {
        let m = Majors::parse(
            "Character devices:\n  1 mem\n195 nvidia-frontend\n236 nvidia-caps\n\nBlock devices:\n  8 sd\n",
        );
        assert_eq!(m.nvidia(), 195);
        assert_eq!(m.get("nvidia-caps"), Some(236));
        assert_eq!(m.get("sd"), None);
    }

    #[test]
    fn parses_information() {
        let text = "Model: \t\t NVIDIA H100\nGPU UUID: \t GPU-1234\nBus Location: \t 0000:3B:00.0\nDevice Minor: \t 3\n";
        let g = parse_information(text, Path::new("x")).unwrap();
        assert_eq!((g.minor, g.bus_id.as_str()), (3, "0000:3b:00.0"));
        let e = parse_information("Model: x\n", Path::new("info")).unwrap_err();
        assert!(e.to_string().contains("Device Minor"), "{e}");
        let e = parse_information(
            "Model: x\nGPU UUID: GPU-1\nBus Location: 0:0:0.0\nDevice Minor: many\n",
            Path::new("info"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
    }

    #[test]
    fn parses_mig_minors() {
        let m = MigMinors::parse("config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\njunk\ngpu0/gi/access x\n");
        assert_eq!(m.gpu_instance(0, 1), Some(12));
        assert_eq!(m.compute_instance(0, 1, 0), Some(13));
        assert_eq!(m.compute_instance(0, 1, 1), None);
    }

    #[test]
    fn versions() {
        assert!(is_version("550.54.14"));
        assert!(!is_version("x86_64"));
        assert!(!is_version("1..2"));
    }
}
