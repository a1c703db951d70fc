//! NVIDIA discovery: GPU facts from NVML or, when NVML cannot be loaded or initialised,
//! from procfs/sysfs; driver files from the driver root; then the CDI devices (per GPU,
//! per MIG device, `all`) and the spec-wide edits (control nodes, libraries, hooks...).

pub mod facts;
pub mod files;
pub mod helper;
pub mod hpc;
pub mod nvml;
pub mod procfs;

use std::path::PathBuf;

use cdi_specs::types::ContainerEdits;
use thiserror::Error;

use crate::edits::{
    device_node, mount, ro_mount, HookConfig, HookKind, NamedDevice, NodeFact, NodeLookup,
    SOCKET_OPTIONS,
};
use crate::roots::Roots;
use facts::{Gpu, GpuFacts, Source};
use files::{DriverFiles, FilesError};
use nvml::NvmlBackendError;
use procfs::{Majors, MigMinors, ProcfsError};

/// Major of `/dev/dri/*` nodes.
pub const DRM_MAJOR: u32 = 226;

/// How devices are named (`--device-name-strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NameStrategy {
    /// `0`, `0:1`.
    Index,
    /// `GPU-<uuid>`, `MIG-<uuid>`.
    Uuid,
    /// `gpu0`, `mig0:1`.
    TypeIndex,
}

/// Which backend provides the GPU facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiscoveryMode {
    /// NVML, falling back to procfs/sysfs with a warning.
    #[default]
    Auto,
    /// NVML only.
    Nvml,
    /// procfs/sysfs only.
    Procfs,
}

/// Options of NVIDIA discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvidiaOptions {
    /// `--nvml-lib`.
    pub nvml_lib: Option<PathBuf>,
    /// Query NVML through this helper (`cdi-gen`, run as `nvml-facts` in a clean child
    /// process) instead of loading it into this process (see [`helper`]).
    pub nvml_helper: Option<PathBuf>,
    /// `--discovery`.
    pub mode: DiscoveryMode,
    /// Naming strategies, in order, deduplicated.
    pub strategies: Vec<NameStrategy>,
    /// `--library-search-path` directories (in-root paths).
    pub library_search_paths: Vec<PathBuf>,
    /// `--mps-pipe-dir`: the MPS pipe directory the admin vouches for (in-root path);
    /// None: `/tmp/nvidia-mps` only when root-owned and not group/world-writable.
    pub mps_pipe_dir: Option<PathBuf>,
    /// Hooks.
    pub hooks: HookConfig,
}

impl Default for NvidiaOptions {
    fn default() -> Self {
        NvidiaOptions {
            nvml_lib: None,
            nvml_helper: None,
            mode: DiscoveryMode::Auto,
            strategies: vec![NameStrategy::Index, NameStrategy::Uuid],
            library_search_paths: Vec::new(),
            mps_pipe_dir: None,
            hooks: HookConfig::default(),
        }
    }
}

/// Errors of NVIDIA discovery.
#[derive(Debug, Error)]
pub enum NvidiaError {
    /// `--discovery nvml` and NVML failed.
    #[error("{0}; use --nvml-lib to point at libnvidia-ml.so.1, or --discovery auto to fall back to procfs/sysfs")]
    Nvml(#[from] NvmlBackendError),
    /// procfs facts could not be read.
    #[error("{source}{}", .nvml.as_ref().map(|e| format!(" (NVML was not usable either: {e})")).unwrap_or_default())]
    Procfs {
        /// The procfs error.
        source: ProcfsError,
        /// Why NVML was not used, when it was tried.
        nvml: Option<NvmlBackendError>,
    },
    /// The backend found no GPU.
    #[error("no NVIDIA GPU found ({backend} reports none); check that the driver is loaded and the GPUs are visible (nvidia-smi -L)")]
    NoGpus {
        /// The backend.
        backend: Source,
    },
    /// The driver's files are missing.
    #[error(transparent)]
    Files(#[from] FilesError),
}

/// What NVIDIA discovery found, ready for assembly.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The GPU facts.
    pub facts: GpuFacts,
    /// The driver's files.
    pub files: DriverFiles,
    /// CDI devices (without `all`).
    pub devices: Vec<NamedDevice>,
    /// Spec-wide edits.
    pub global: ContainerEdits,
}

/// Runs NVIDIA discovery; problems that do not stop generation go to `warnings`.
pub fn discover(
    roots: &Roots,
    opts: &NvidiaOptions,
    warnings: &mut Vec<String>,
) -> Result<Discovered, NvidiaError> {
    let cache = match files::read_ldcache(roots) {
        Ok(c) => c,
        Err(e) => {
            warnings.push(format!(
                "{e}; searching only the standard library directories"
            ));
            None
        }
    };
    let facts = gpu_facts(roots, opts, cache.as_ref(), warnings)?;
    tracing::debug!(
        "NVIDIA facts from {}: driver {}, {} GPUs, {} MIG devices",
        facts.source,
        facts.driver_version.as_deref().unwrap_or("unknown"),
        facts.gpus.len(),
        facts.gpus.iter().map(|g| g.migs.len()).sum::<usize>()
    );
    if facts.gpus.is_empty() {
        return Err(NvidiaError::NoGpus {
            backend: facts.source,
        });
    }
    let files = files::discover(
        roots,
        facts.driver_version.as_deref(),
        &opts.library_search_paths,
        cache.as_ref(),
        opts.mps_pipe_dir.as_deref(),
    )?;
    let majors = match Majors::read(roots) {
        Ok(m) => m,
        Err(e) => {
            warnings.push(format!(
                "{e}; using major 195 for /dev/nvidia* and leaving out nodes that do not exist"
            ));
            Majors::default()
        }
    };
    let mig_minors = if facts.gpus.iter().any(|g| !g.migs.is_empty()) {
        match MigMinors::read(roots) {
            Ok(m) => Some(m),
            Err(e) => {
                warnings.push(format!("{e}; MIG devices are left out"));
                None
            }
        }
    } else {
        None
    };
    let mut devices = Vec::new();
    for gpu in &facts.gpus {
        if gpu.mig_enabled {
            if gpu.migs.is_empty() {
                warnings.push(format!(
                    "GPU {} ({}) is in MIG mode but has no MIG devices; create GPU and compute instances (nvidia-smi mig -cgi ... -C) and regenerate",
                    gpu.index, gpu.bus_id
                ));
            }
            // The whole GPU too (as nvidia-ctk): monitoring agents and "mig-strategy
            // none" device plugins ask for `0` or `GPU-<uuid>` of a MIG-enabled GPU.
            devices.push(gpu_device(roots, gpu, &majors, opts, warnings));
            if let Some(mm) = &mig_minors {
                devices.extend(mig_devices(roots, gpu, &majors, mm, opts, warnings));
            }
        } else {
            devices.push(gpu_device(roots, gpu, &majors, opts, warnings));
        }
    }
    let global = global_edits(roots, &files, &majors, &opts.hooks, warnings);
    Ok(Discovered {
        facts,
        files,
        devices,
        global,
    })
}

fn gpu_facts(
    roots: &Roots,
    opts: &NvidiaOptions,
    cache: Option<&hpc_facts::ldcache::LdCache>,
    warnings: &mut Vec<String>,
) -> Result<GpuFacts, NvidiaError> {
    let query = |lib: &std::ffi::OsString| match &opts.nvml_helper {
        Some(h) => helper::query(h, lib, helper::DEFAULT_HELPER_TIMEOUT),
        None => nvml::discover(lib),
    };
    let procfs = |nvml: Option<NvmlBackendError>| {
        procfs::gpus(roots).map_err(|source| NvidiaError::Procfs { source, nvml })
    };
    match opts.mode {
        DiscoveryMode::Procfs => procfs(None),
        DiscoveryMode::Nvml => {
            let lib = nvml::library_path(roots, opts.nvml_lib.as_ref(), cache);
            Ok(query(&lib)?)
        }
        DiscoveryMode::Auto => {
            let lib = nvml::library_path(roots, opts.nvml_lib.as_ref(), cache);
            match query(&lib) {
                Ok(f) => Ok(f),
                Err(e) => {
                    warnings.push(format!(
                        "NVML is not usable ({e}); reading GPU facts from procfs/sysfs ({}) instead",
                        roots.proc("driver/nvidia").display()
                    ));
                    procfs(Some(e))
                }
            }
        }
    }
}

/// Adds the node for `fact` to `edits`, warning when the host lacks it. Returns false when
/// the node could not be written at all.
pub(crate) fn push_node(
    roots: &Roots,
    fact: NodeFact,
    what: &str,
    edits: &mut ContainerEdits,
    warnings: &mut Vec<String>,
) -> bool {
    match device_node(roots, &fact) {
        NodeLookup::Present(n, w) => {
            crate::edits::warn_once(warnings, w);
            edits.device_nodes.push(n);
            true
        }
        NodeLookup::FromFacts(n) => {
            warnings.push(format!(
                "{what} {} does not exist on the host; written with {}:{} from /proc/devices so engines create it (create it with nvidia-modprobe, or let cdi-gen-refresh regenerate the spec)",
                roots.dev(&fact.path).display(),
                n.major.unwrap_or_default(),
                n.minor.unwrap_or_default()
            ));
            edits.device_nodes.push(n);
            true
        }
        NodeLookup::Missing => {
            warnings.push(format!(
                "{what} {} does not exist and its driver is not loaded (no major in /proc/devices); left out: load the module (nvidia-modprobe) and regenerate",
                roots.dev(&fact.path).display()
            ));
            false
        }
    }
}

fn names(
    strategies: &[NameStrategy],
    index: &str,
    uuid: Option<&str>,
    type_index: String,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for s in strategies {
        match s {
            NameStrategy::Index => out.push(index.to_string()),
            NameStrategy::Uuid => match uuid {
                Some(u) => out.push(u.to_string()),
                None => warnings.push(format!(
                    "no UUID known for device {index} (procfs does not expose MIG UUIDs); it is named by index only"
                )),
            },
            NameStrategy::TypeIndex => out.push(type_index.clone()),
        }
    }
    out
}

fn gpu_device(
    roots: &Roots,
    gpu: &Gpu,
    majors: &Majors,
    opts: &NvidiaOptions,
    warnings: &mut Vec<String>,
) -> NamedDevice {
    let mut edits = ContainerEdits::default();
    push_node(
        roots,
        NodeFact {
            path: format!("/dev/nvidia{}", gpu.minor),
            major: Some(majors.nvidia()),
            minor: gpu.minor,
        },
        &format!("GPU {} node", gpu.index),
        &mut edits,
        warnings,
    );
    let mut links = Vec::new();
    for (node, minor) in drm_nodes(roots, &gpu.bus_id) {
        let kind = if node.starts_with("card") {
            "card"
        } else {
            "render"
        };
        let fact = NodeFact {
            path: format!("/dev/dri/{node}"),
            major: Some(DRM_MAJOR),
            minor,
        };
        if push_node(roots, fact, "DRM node", &mut edits, warnings) {
            links.push((
                format!("../{node}"),
                format!("/dev/dri/by-path/pci-{}-{kind}", gpu.bus_id),
            ));
        }
    }
    if let Some(h) = opts.hooks.create_symlinks(&links) {
        edits.hooks.push(h);
    }
    let i = gpu.index.to_string();
    NamedDevice {
        names: names(
            &opts.strategies,
            &i,
            Some(&gpu.uuid),
            format!("gpu{i}"),
            warnings,
        ),
        edits,
    }
}

/// `cardN` / `renderDN` entries of `<sys>/bus/pci/devices/<bus id>/drm`, with their minors.
pub fn drm_nodes(roots: &Roots, bus_id: &str) -> Vec<(String, u32)> {
    let dir = roots.sys(&format!("bus/pci/devices/{bus_id}/drm"));
    let mut out: Vec<(String, u32)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.to_string();
                let minor = n
                    .strip_prefix("card")
                    .or_else(|| n.strip_prefix("renderD"))?
                    .parse::<u32>()
                    .ok()?;
                Some((n, minor))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn mig_devices(
    roots: &Roots,
    gpu: &Gpu,
    majors: &Majors,
    minors: &MigMinors,
    opts: &NvidiaOptions,
    warnings: &mut Vec<String>,
) -> Vec<NamedDevice> {
    let caps_major = majors.get("nvidia-caps");
    let mut out = Vec::new();
    // The parent GPU node is looked up once for all its MIG devices.
    let mut parent = ContainerEdits::default();
    let parent_ok = push_node(
        roots,
        NodeFact {
            path: format!("/dev/nvidia{}", gpu.minor),
            major: Some(majors.nvidia()),
            minor: gpu.minor,
        },
        &format!("MIG devices of GPU {}: parent node", gpu.index),
        &mut parent,
        warnings,
    );
    for mig in &gpu.migs {
        let label = format!("MIG device {}:{}", gpu.index, mig.index);
        let (Some(gi_minor), Some(ci_minor)) = (
            minors.gpu_instance(gpu.minor, mig.gi),
            minors.compute_instance(gpu.minor, mig.gi, mig.ci),
        ) else {
            warnings.push(format!(
                "{label} (gpu{}/gi{}/ci{}) has no capability minor in {}; left out: reload the driver (the file is written by nvidia-caps)",
                gpu.minor,
                mig.gi,
                mig.ci,
                roots.proc("driver/nvidia-caps/mig-minors").display()
            ));
            continue;
        };
        let mut edits = ContainerEdits {
            device_nodes: parent.device_nodes.clone(),
            ..ContainerEdits::default()
        };
        let mut ok = parent_ok;
        for m in [gi_minor, ci_minor] {
            ok &= push_node(
                roots,
                NodeFact {
                    path: format!("/dev/nvidia-caps/nvidia-cap{m}"),
                    major: caps_major,
                    minor: m,
                },
                &format!("{label} capability node"),
                &mut edits,
                warnings,
            );
        }
        if !ok {
            continue;
        }
        let ij = format!("{}:{}", gpu.index, mig.index);
        out.push(NamedDevice {
            names: names(
                &opts.strategies,
                &ij,
                mig.uuid.as_deref(),
                format!("mig{ij}"),
                warnings,
            ),
            edits,
        });
    }
    out
}

fn global_edits(
    roots: &Roots,
    files: &DriverFiles,
    majors: &Majors,
    hooks: &HookConfig,
    warnings: &mut Vec<String>,
) -> ContainerEdits {
    let mut edits = ContainerEdits {
        env: vec!["NVIDIA_VISIBLE_DEVICES=void".to_string()],
        ..ContainerEdits::default()
    };
    let uvm = majors.get("nvidia-uvm");
    let control = [
        ("/dev/nvidiactl", Some(majors.nvidia()), 255),
        ("/dev/nvidia-uvm", uvm, 0),
        ("/dev/nvidia-uvm-tools", uvm, 1),
        ("/dev/nvidia-modeset", None, 254),
    ];
    for (path, major, minor) in control {
        push_node(
            roots,
            NodeFact {
                path: path.to_string(),
                major,
                minor,
            },
            "control node",
            &mut edits,
            warnings,
        );
    }
    hpc::nvswitch_nodes(roots, majors, &mut edits, warnings);
    let root = &roots.driver_root;
    let symlinks = hooks.enabled(HookKind::CreateSymlinks);
    let mut links = Vec::new();
    for lib in &files.libraries {
        edits.mounts.push(ro_mount(root, &lib.path, &lib.path));
        let file = lib.path.rsplit('/').next().unwrap_or(&lib.path);
        for l in &lib.links {
            let link = format!("{}/{l}", lib.dir());
            if symlinks {
                // libcuda.so points at the SONAME link, the others at the file.
                let target = if l == "libcuda.so" {
                    lib.links
                        .iter()
                        .find(|x| *x != "libcuda.so")
                        .cloned()
                        .unwrap_or_else(|| file.to_string())
                } else {
                    file.to_string()
                };
                links.push((target, link));
            } else {
                // Without the hook, the SONAME paths are bind mounts of the library.
                edits.mounts.push(ro_mount(root, &lib.path, &link));
            }
        }
    }
    for f in files
        .binaries
        .iter()
        .chain(&files.firmware)
        .chain(&files.configs)
        .chain(&files.xorg)
    {
        edits.mounts.push(ro_mount(root, &f.host, &f.container));
    }
    for f in &files.sockets {
        edits
            .mounts
            .push(mount(root, &f.host, &f.container, &SOCKET_OPTIONS));
    }
    if symlinks {
        links.extend(files.xorg_links());
    } else {
        for (target, link) in files.xorg_links() {
            let dir = link.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            edits
                .mounts
                .push(ro_mount(root, &format!("{dir}/{target}"), &link));
        }
    }
    if let Some(h) = hooks.create_symlinks(&links) {
        edits.hooks.push(h);
    }
    if hooks.enabled(HookKind::UpdateLdcache) {
        let dirs = files.library_dirs();
        if !dirs.is_empty() {
            let mut args = vec!["update-ldcache".to_string()];
            for d in dirs {
                args.push("--folder".to_string());
                args.push(d);
            }
            edits.hooks.push(hooks.hook(args));
        }
    }
    let has_libcuda = files.libraries.iter().any(|l| {
        l.path
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("libcuda.so."))
    });
    if hooks.enabled(HookKind::EnableCudaCompat) && has_libcuda && !files.version.is_empty() {
        edits.hooks.push(hooks.hook(vec![
            "enable-cuda-compat".to_string(),
            "--host-driver-version".to_string(),
            files.version.clone(),
        ]));
    }
    edits
}
