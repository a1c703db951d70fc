//! From facts to CDI edits: device nodes (type/major/minor from the host node, or from
//! procfs facts when the node is missing), bind mounts, gpu-hook hooks, and assembly of
//! named devices into a spec (the `all` device, deterministic order, minimum version).

use std::collections::HashSet;

use cdi_specs::types::{ContainerEdits, Device, DeviceNode, Hook, Mount, Spec};
use cdi_specs::version::{minimum_version, Version};
use thiserror::Error;

use crate::roots::Roots;

/// Default path of gpu-hook, the program the spec's hooks run.
pub const DEFAULT_HOOK_PATH: &str = "/usr/libexec/hpc-hooks/gpu-hook";

/// Mount options of read-only files (libraries, binaries, firmware, config files).
pub const RO_OPTIONS: [&str; 4] = ["ro", "nosuid", "nodev", "bind"];

/// Mount options of IPC sockets and the MPS pipe directory.
///
/// Read-only like every other mount cdi-gen writes: connect() on a unix socket and
/// writing into a FIFO work through a read-only mount (only creating, removing,
/// renaming and writing regular files are refused), so clients need nothing writable,
/// and a read-only bind never lets a container change host files. `bind`, not `rbind`:
/// nothing mounted below a socket directory is shared.
pub const SOCKET_OPTIONS: [&str; 5] = ["ro", "nosuid", "nodev", "bind", "noexec"];

/// The hooks a spec may reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookKind {
    /// `gpu-hook create-symlinks --link TARGET::LINK`.
    CreateSymlinks,
    /// `gpu-hook update-ldcache --folder DIR`.
    UpdateLdcache,
    /// `gpu-hook enable-cuda-compat --host-driver-version V` (after update-ldcache: the
    /// image's newer CUDA compat libraries then take precedence in the loader cache).
    EnableCudaCompat,
}

/// How hooks are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    /// gpu-hook's path on the host.
    pub path: String,
    /// Hooks left out (`--disable-hook`).
    pub disabled: HashSet<HookKind>,
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            path: DEFAULT_HOOK_PATH.to_string(),
            disabled: HashSet::new(),
        }
    }
}

/// The whole environment of the hooks a spec declares (see [`HookConfig::hook`]).
pub const HOOK_ENV_PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

impl HookConfig {
    /// True unless `kind` is disabled.
    pub fn enabled(&self, kind: HookKind) -> bool {
        !self.disabled.contains(&kind)
    }

    /// A createContainer hook running `gpu-hook <args...>`.
    ///
    /// The hook always carries an explicit `env`: with none, runc runs createContainer
    /// hooks with the CONTAINER's environment (and the rootfs as working directory), so
    /// an image's `LD_PRELOAD=usr/lib/evil.so` would be loaded into the root-run hook by
    /// the dynamic loader (tests/e2e/tests/preload.rs shows it).
    pub fn hook(&self, args: Vec<String>) -> Hook {
        let mut all = vec!["gpu-hook".to_string()];
        all.extend(args);
        Hook {
            hook_name: "createContainer".to_string(),
            path: self.path.clone(),
            args: all,
            env: vec![HOOK_ENV_PATH.to_string()],
            ..Hook::default()
        }
    }

    /// `create-symlinks --link T::L ...` for `links` (target, link), or `None` when there
    /// is nothing to link or the hook is disabled.
    pub fn create_symlinks(&self, links: &[(String, String)]) -> Option<Hook> {
        if links.is_empty() || !self.enabled(HookKind::CreateSymlinks) {
            return None;
        }
        let mut args = vec!["create-symlinks".to_string()];
        for (t, l) in links {
            args.push("--link".to_string());
            args.push(format!("{t}::{l}"));
        }
        Some(self.hook(args))
    }
}

/// A device node as discovered: its container path and the numbers procfs gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFact {
    /// Path in the container and, under the dev root, on the host (`/dev/nvidia0`).
    pub path: String,
    /// Major from procfs facts, if known.
    pub major: Option<u32>,
    /// Minor from procfs facts.
    pub minor: u32,
}

/// Result of looking a node up on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeLookup {
    /// The host has the node; with the warning when ordinary users cannot open it
    /// ([`rootless_warning`]).
    Present(DeviceNode, Option<String>),
    /// The host lacks it, but its numbers are known: the engine creates it from these.
    FromFacts(DeviceNode),
    /// The host lacks it and its major is unknown.
    Missing,
}

/// Turns a node fact into a CDI device node: type/major/minor from the host node under
/// the dev root when it exists (a character device), else from the facts.
pub fn device_node(roots: &Roots, fact: &NodeFact) -> NodeLookup {
    let host = roots.dev(&fact.path);
    let host_path = if roots.dev_root_is_host() {
        String::new()
    } else {
        host.to_string_lossy().into_owned()
    };
    let make = |major: u32, minor: u32| DeviceNode {
        path: fact.path.clone(),
        host_path: host_path.clone(),
        typ: "c".to_string(),
        major: Some(i64::from(major)),
        minor: Some(i64::from(minor)),
        ..DeviceNode::default()
    };
    let md = std::fs::metadata(&host).ok();
    let host_node = md.as_ref().and_then(cdi_specs::HostNode::from_metadata);
    match (host_node, md) {
        (Some(h), Some(md)) if h.typ == "c" => NodeLookup::Present(
            make(h.major as u32, h.minor as u32),
            rootless_warning(&host, &md),
        ),
        _ => match fact.major {
            Some(major) => NodeLookup::FromFacts(make(major, fact.minor)),
            None => NodeLookup::Missing,
        },
    }
}

/// The warning for a host device node that ordinary users cannot read: a rootless
/// container (rootless podman `--device`) gets the node bound in but cannot open it.
/// Taken from the `stat` that fills the node, so checking costs nothing more.
pub fn rootless_warning(host: &std::path::Path, md: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = md.mode() & 0o7777;
    (mode & 0o004 == 0).then(|| {
        format!(
            "device node {} (mode {mode:04o}, uid {} gid {}) is not accessible to ordinary users: rootless containers (rootless podman --device) bind it but cannot open it; give users access (the NVIDIA driver's default is 0666: NVreg_DeviceFileMode, NVreg_DeviceFileGID) if rootless containers should use it",
            host.display(),
            md.uid(),
            md.gid()
        )
    })
}

/// Adds `w` to `warnings` unless it is there (a node shared by devices is met again).
pub fn warn_once(warnings: &mut Vec<String>, w: Option<String>) {
    if let Some(w) = w {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
}

/// A read-only bind mount of `host` (in-root path under `root`) at `container`.
pub fn ro_mount(root: &std::path::Path, host: &str, container: &str) -> Mount {
    mount(root, host, container, &RO_OPTIONS)
}

/// A bind mount with `options`.
pub fn mount(root: &std::path::Path, host: &str, container: &str, options: &[&str]) -> Mount {
    Mount {
        host_path: crate::roots::join(root, host)
            .to_string_lossy()
            .into_owned(),
        container_path: container.to_string(),
        options: options.iter().map(|s| s.to_string()).collect(),
        typ: String::new(),
    }
}

/// A device before naming: its names (one per naming strategy) and edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedDevice {
    /// CDI device names.
    pub names: Vec<String>,
    /// The device's edits.
    pub edits: ContainerEdits,
}

/// Errors assembling the spec.
#[derive(Debug, Error)]
pub enum AssembleError {
    /// `--spec-version` is older than the content needs.
    #[error("--spec-version {requested} cannot hold this spec: {field} needs cdiVersion {needed}; drop --spec-version (cdi-gen writes the minimum) or ask for {needed} or newer")]
    VersionTooOld {
        /// What was asked for.
        requested: Version,
        /// What the content needs.
        needed: Version,
        /// The field that needs it.
        field: String,
    },
    /// No device was found at all.
    #[error("no devices found: {why}")]
    NoDevices {
        /// Why, and what to check.
        why: String,
    },
    /// The assembled spec breaks a CDI rule (a cdi-gen bug or an odd --vendor/--class).
    #[error("the generated spec is not valid: {0}; check --vendor and --class")]
    Invalid(#[from] Box<cdi_specs::ValidateError>),
}

/// Options of assembly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembleOptions {
    /// `vendor/class`.
    pub kind: String,
    /// Add the `all` device.
    pub all_device: bool,
    /// Explicit `cdiVersion`.
    pub spec_version: Option<Version>,
}

/// Builds the spec: one CDI device per name, `all` (every device's edits, nodes
/// deduplicated), spec-wide `global` edits, deterministic order, minimum cdiVersion.
pub fn assemble(
    devices: Vec<NamedDevice>,
    global: ContainerEdits,
    opts: &AssembleOptions,
) -> Result<Spec, AssembleError> {
    let mut spec = Spec {
        kind: opts.kind.clone(),
        container_edits: global,
        ..Spec::default()
    };
    let mut all = ContainerEdits::default();
    let mut all_nodes = HashSet::new();
    let mut all_mounts = HashSet::new();
    for d in &devices {
        for n in &d.edits.device_nodes {
            if all_nodes.insert(n.path.clone()) {
                all.device_nodes.push(n.clone());
            }
        }
        for m in &d.edits.mounts {
            if all_mounts.insert(m.container_path.clone()) {
                all.mounts.push(m.clone());
            }
        }
        for h in &d.edits.hooks {
            if !all.hooks.contains(h) {
                all.hooks.push(h.clone());
            }
        }
        for e in &d.edits.env {
            if !all.env.contains(e) {
                all.env.push(e.clone());
            }
        }
    }
    for d in devices {
        for name in d.names {
            spec.devices.push(Device {
                name,
                annotations: Default::default(),
                container_edits: d.edits.clone(),
            });
        }
    }
    if opts.all_device && !all.is_empty() {
        spec.devices.push(Device {
            name: "all".to_string(),
            annotations: Default::default(),
            container_edits: all,
        });
    }
    cdi_specs::normalize::canonicalize(&mut spec);
    let min = minimum_version(&spec);
    let version = match opts.spec_version {
        Some(v) if v < min.version => {
            return Err(AssembleError::VersionTooOld {
                requested: v,
                needed: min.version,
                field: min
                    .needed_by
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "the spec".to_string()),
            })
        }
        Some(v) => v,
        None => min.version,
    };
    spec.cdi_version = version.to_string();
    cdi_specs::validate(&spec, None).map_err(Box::new)?;
    Ok(spec)
}
