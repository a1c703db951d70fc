//! Applying requested CDI devices to an OCI runtime spec (`config.json`) the way engines
//! do: devices in request order, each spec's spec-wide edits with its first device, env
//! replace/append, device nodes with cgroup rules, mount replacement and sorting, hooks,
//! intelRdt, netDevices and additionalGids. All or nothing: on any error the spec is left as it was.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Hook as OciHook, Hooks, Linux, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxIntelRdt,
    LinuxNetDevice, LinuxResources, Mount as OciMount, Process, Spec as OciSpec,
};
use thiserror::Error;

use crate::registry::{Registry, RegistryError};
use crate::types::{ContainerEdits, DeviceNode, Hook, IntelRdt, Mount};

/// Errors applying devices to an OCI spec. Nothing is applied when one is returned.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// Some requested devices do not resolve.
    #[error("unresolvable CDI devices {}: nothing was applied: {}", .names.join(", "), .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Unresolvable {
        /// The names that do not resolve, in request order.
        names: Vec<String>,
        /// Why each does not resolve.
        errors: Vec<RegistryError>,
    },
    /// The host node of a device node cannot be examined.
    #[error("{source_label}: deviceNodes {path}: cannot stat host device {host}: {error}; nothing was applied; create the node or regenerate the spec", host = .host_path.display())]
    Stat {
        /// The device (or spec-wide edits) whose node failed.
        source_label: String,
        /// The node's container path.
        path: String,
        /// The host path examined.
        host_path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The host path exists but is not a device node or FIFO.
    #[error("{source_label}: deviceNodes {path}: host path {host} is not a device node; nothing was applied; point hostPath at a block or character device or a FIFO", host = .host_path.display())]
    NotADevice {
        /// The device (or spec-wide edits) whose node failed.
        source_label: String,
        /// The node's container path.
        path: String,
        /// The host path examined.
        host_path: PathBuf,
    },
    /// The spec's type and the host node's type differ.
    #[error("{source_label}: deviceNodes {path}: type {declared:?} but host node {host} is {actual:?}; nothing was applied; fix type or regenerate the spec", host = .host_path.display())]
    TypeMismatch {
        /// The device (or spec-wide edits) whose node failed.
        source_label: String,
        /// The node's container path.
        path: String,
        /// The host path examined.
        host_path: PathBuf,
        /// The type in the spec.
        declared: String,
        /// The host node's type.
        actual: String,
    },
    /// A device node type other than b, c, u, p (an unvalidated spec).
    #[error("{source_label}: deviceNodes {path}: invalid type {value:?}; nothing was applied; use b, c, u or p")]
    BadType {
        /// The device (or spec-wide edits) whose node failed.
        source_label: String,
        /// The node's container path.
        path: String,
        /// The type.
        value: String,
    },
}

/// Applies the edits of `devices` (qualified names, in request order) from `registry` to
/// `oci`. The first device of each spec also brings that spec's spec-wide edits. If any
/// device is unresolvable, or any edit fails, `oci` is left unchanged.
pub fn apply_devices<S: AsRef<str>>(
    oci: &mut OciSpec,
    registry: &Registry,
    devices: &[S],
) -> Result<(), ApplyError> {
    let edits = collect_edits(registry, devices)?;
    let refs: Vec<(&str, &ContainerEdits)> = edits.iter().map(|(l, e)| (l.as_str(), *e)).collect();
    apply_edits(oci, &refs)
}

/// Resolves `devices` and lists the edits to apply, in engine order, each with a label
/// naming its source (the qualified device, or a spec's spec-wide edits).
pub fn collect_edits<'r, S: AsRef<str>>(
    registry: &'r Registry,
    devices: &[S],
) -> Result<Vec<(String, &'r ContainerEdits)>, ApplyError> {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    let mut seen_specs = BTreeSet::new();
    let mut out = Vec::new();
    for name in devices {
        let name = name.as_ref();
        match registry.resolve(name) {
            Ok(r) => {
                if seen_specs.insert(r.spec_index) {
                    out.push((
                        format!(
                            "spec-wide containerEdits of {} (with device {name:?})",
                            r.spec.path.display()
                        ),
                        &r.spec.spec.container_edits,
                    ));
                }
                out.push((format!("device {name:?}"), &r.device.container_edits));
            }
            Err(e) => {
                names.push(name.to_string());
                errors.push(e);
            }
        }
    }
    if names.is_empty() {
        Ok(out)
    } else {
        Err(ApplyError::Unresolvable { names, errors })
    }
}

/// Applies labelled edits in order to `oci`, all or nothing.
pub fn apply_edits(oci: &mut OciSpec, edits: &[(&str, &ContainerEdits)]) -> Result<(), ApplyError> {
    let mut work = oci.clone();
    for (label, e) in edits {
        apply_one(&mut work, label, e)?;
    }
    *oci = work;
    Ok(())
}

fn empty_process() -> Process {
    serde_json::from_str(r#"{"cwd":"/","user":{"uid":0,"gid":0}}"#).unwrap_or_default()
}

fn empty_linux() -> Linux {
    serde_json::from_str("{}").unwrap_or_default()
}

fn apply_one(oci: &mut OciSpec, label: &str, e: &ContainerEdits) -> Result<(), ApplyError> {
    // Device nodes are resolved first so that a failure changes nothing in `oci`.
    let mut nodes = Vec::with_capacity(e.device_nodes.len());
    for n in &e.device_nodes {
        nodes.push((fill_missing_info(n, label)?, n.permissions.as_str()));
    }

    // 1. env: replace the same key in place, else append.
    if !e.env.is_empty() {
        if oci.process().is_none() {
            oci.set_process(Some(empty_process()));
        }
        if let Some(p) = oci.process_mut() {
            let mut env = p.env().clone().unwrap_or_default();
            merge_env(&mut env, &e.env);
            p.set_env(Some(env));
        }
    }

    // 2. device nodes and their cgroup rules.
    let (uid, gid) = oci
        .process()
        .as_ref()
        .map(|p| (p.user().uid(), p.user().gid()))
        .unwrap_or((0, 0));
    for (node, permissions) in nodes {
        if oci.linux().is_none() {
            oci.set_linux(Some(empty_linux()));
        }
        let Some(linux) = oci.linux_mut() else {
            continue;
        };
        let mut dev = node.to_oci();
        if dev.uid().is_none() && uid > 0 {
            dev.set_uid(Some(uid));
        }
        if dev.gid().is_none() && gid > 0 {
            dev.set_gid(Some(gid));
        }
        let mut devices = linux.devices().clone().unwrap_or_default();
        if let Some(i) = devices.iter().position(|d| d.path() == dev.path()) {
            devices.remove(i);
        }
        let typ = dev.typ();
        let (major, minor) = (dev.major(), dev.minor());
        devices.push(dev);
        linux.set_devices(Some(devices));
        if matches!(typ, LinuxDeviceType::B | LinuxDeviceType::C) && permissions != "none" {
            let access = if permissions.is_empty() {
                "rwm"
            } else {
                permissions
            };
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(typ));
            rule.set_major(Some(major));
            rule.set_minor(Some(minor));
            rule.set_access(Some(access.to_string()));
            let mut resources = linux.resources().clone().unwrap_or_else(empty_resources);
            let mut rules = resources.devices().clone().unwrap_or_default();
            rules.push(rule);
            resources.set_devices(Some(rules));
            linux.set_resources(Some(resources));
        }
    }

    // netDevices: host interface -> name in the container.
    if !e.net_devices.is_empty() {
        if oci.linux().is_none() {
            oci.set_linux(Some(empty_linux()));
        }
        if let Some(linux) = oci.linux_mut() {
            let mut map: HashMap<String, LinuxNetDevice> =
                linux.net_devices().clone().unwrap_or_default();
            for n in &e.net_devices {
                let mut dev = LinuxNetDevice::default();
                dev.set_name(Some(n.name.clone()));
                map.insert(n.host_interface_name.clone(), dev);
            }
            linux.set_net_devices(Some(map));
        }
    }

    // 3. mounts: replace the same destination, then stable sort by path depth.
    if !e.mounts.is_empty() {
        let mut mounts = oci.mounts().clone().unwrap_or_default();
        for m in &e.mounts {
            if let Some(i) = mounts
                .iter()
                .position(|x| x.destination() == Path::new(&m.container_path))
            {
                mounts.remove(i);
            }
            mounts.push(mount_to_oci(m));
        }
        mounts.sort_by_key(|m| path_depth(&m.destination().to_string_lossy()));
        oci.set_mounts(Some(mounts));
    }

    // 4. hooks appended to their stage.
    if !e.hooks.is_empty() {
        let mut hooks = oci
            .hooks()
            .clone()
            .unwrap_or_else(|| serde_json::from_str("{}").unwrap_or_default());
        for h in &e.hooks {
            add_hook(&mut hooks, h);
        }
        oci.set_hooks(Some(hooks));
    }

    // 5. intelRdt replaced.
    if let Some(rdt) = &e.intel_rdt {
        if oci.linux().is_none() {
            oci.set_linux(Some(empty_linux()));
        }
        if let Some(linux) = oci.linux_mut() {
            linux.set_intel_rdt(Some(rdt_to_oci(rdt)));
        }
    }

    // 6. additionalGids appended (0 and duplicates skipped).
    let gids: Vec<u32> = e
        .additional_gids
        .iter()
        .copied()
        .filter(|&g| g != 0)
        .collect();
    if !gids.is_empty() {
        if oci.process().is_none() {
            oci.set_process(Some(empty_process()));
        }
        if let Some(p) = oci.process_mut() {
            let user = p.user_mut();
            let mut all = user.additional_gids().clone().unwrap_or_default();
            for g in gids {
                if !all.contains(&g) {
                    all.push(g);
                }
            }
            user.set_additional_gids(Some(all));
        }
    }
    Ok(())
}

fn empty_resources() -> LinuxResources {
    serde_json::from_str("{}").unwrap_or_default()
}

/// Env merge as engines do it: an entry whose key (text before the first `=`) is already
/// present replaces it in place (the last one with that key), otherwise it is appended.
pub fn merge_env(env: &mut Vec<String>, add: &[String]) {
    let key = |s: &str| s.split_once('=').map_or(s, |(k, _)| k).to_string();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, e) in env.iter().enumerate() {
        index.insert(key(e), i);
    }
    for e in add {
        let k = key(e);
        match index.get(&k) {
            Some(&i) => env[i].clone_from(e),
            None => {
                env.push(e.clone());
                index.insert(k, env.len() - 1);
            }
        }
    }
}

/// Number of `/` in the lexically cleaned path (Go's `filepath.Clean`): the mount and
/// node sort key.
pub fn path_depth(path: &str) -> usize {
    clean_path(path).matches('/').count()
}

/// Lexical path cleaning like Go's `filepath.Clean`.
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// A device node with its host facts filled in.
struct FilledNode {
    path: String,
    typ: String,
    major: i64,
    minor: i64,
    file_mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl FilledNode {
    fn to_oci(&self) -> LinuxDevice {
        let typ = match self.typ.as_str() {
            "b" => LinuxDeviceType::B,
            "c" => LinuxDeviceType::C,
            "u" => LinuxDeviceType::U,
            _ => LinuxDeviceType::P,
        };
        let mut d = LinuxDevice::default();
        d.set_path(PathBuf::from(&self.path));
        d.set_typ(typ);
        d.set_major(self.major);
        d.set_minor(self.minor);
        d.set_file_mode(self.file_mode);
        d.set_uid(self.uid);
        d.set_gid(self.gid);
        d
    }
}

/// Linux `dev_t` decoding (glibc's `gnu_dev_major`/`gnu_dev_minor`).
pub fn dev_major_minor(rdev: u64) -> (i64, i64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as i64, minor as i64)
}

/// Engine rule: hostPath defaults to path; when type is missing, or major is missing for a
/// non-FIFO, type/major/minor/fileMode come from `stat(hostPath)`.
fn fill_missing_info(n: &DeviceNode, label: &str) -> Result<FilledNode, ApplyError> {
    if !matches!(n.typ.as_str(), "" | "b" | "c" | "u" | "p") {
        return Err(ApplyError::BadType {
            source_label: label.to_string(),
            path: n.path.clone(),
            value: n.typ.clone(),
        });
    }
    let host = if n.host_path.is_empty() {
        &n.path
    } else {
        &n.host_path
    };
    let mut out = FilledNode {
        path: n.path.clone(),
        typ: n.typ.clone(),
        major: n.major.unwrap_or(0),
        minor: n.minor.unwrap_or(0),
        file_mode: n.file_mode,
        uid: n.uid,
        gid: n.gid,
    };
    if !out.typ.is_empty() && (out.major != 0 || out.typ == "p") {
        return Ok(out);
    }
    let host_path = PathBuf::from(host);
    let meta = std::fs::metadata(&host_path).map_err(|error| ApplyError::Stat {
        source_label: label.to_string(),
        path: n.path.clone(),
        host_path: host_path.clone(),
        error,
    })?;
    let ft = meta.file_type();
    let actual = if ft.is_block_device() {
        "b"
    } else if ft.is_char_device() {
        "c"
    } else if ft.is_fifo() {
        "p"
    } else {
        return Err(ApplyError::NotADevice {
            source_label: label.to_string(),
            path: n.path.clone(),
            host_path,
        });
    };
    if out.typ.is_empty() {
        out.typ = actual.to_string();
    } else if out.typ != actual {
        return Err(ApplyError::TypeMismatch {
            source_label: label.to_string(),
            path: n.path.clone(),
            host_path,
            declared: out.typ.clone(),
            actual: actual.to_string(),
        });
    }
    if out.file_mode.is_none() {
        out.file_mode = Some(meta.mode() & 0o777);
    }
    if out.typ == "p" {
        return Ok(out);
    }
    if out.major == 0 {
        let (major, minor) = dev_major_minor(meta.rdev());
        out.major = major;
        out.minor = minor;
    }
    Ok(out)
}

fn mount_to_oci(m: &Mount) -> OciMount {
    let mut o = OciMount::default();
    o.set_destination(PathBuf::from(&m.container_path));
    o.set_source(Some(PathBuf::from(&m.host_path)));
    o.set_typ((!m.typ.is_empty()).then(|| m.typ.clone()));
    o.set_options((!m.options.is_empty()).then(|| m.options.clone()));
    o
}

fn hook_to_oci(h: &Hook) -> OciHook {
    let mut o = OciHook::default();
    o.set_path(PathBuf::from(&h.path));
    o.set_args((!h.args.is_empty()).then(|| h.args.clone()));
    o.set_env((!h.env.is_empty()).then(|| h.env.clone()));
    o.set_timeout(h.timeout);
    o
}

fn push_hook(list: &Option<Vec<OciHook>>, h: OciHook) -> Option<Vec<OciHook>> {
    let mut v = list.clone().unwrap_or_default();
    v.push(h);
    Some(v)
}

fn add_hook(hooks: &mut Hooks, h: &Hook) {
    let o = hook_to_oci(h);
    match h.hook_name.as_str() {
        "prestart" => {
            // Deprecated by the runtime spec, still honoured by engines.
            #[allow(deprecated)]
            {
                let v = push_hook(hooks.prestart(), o);
                hooks.set_prestart(v);
            }
        }
        "createRuntime" => {
            let v = push_hook(hooks.create_runtime(), o);
            hooks.set_create_runtime(v);
        }
        "createContainer" => {
            let v = push_hook(hooks.create_container(), o);
            hooks.set_create_container(v);
        }
        "startContainer" => {
            let v = push_hook(hooks.start_container(), o);
            hooks.set_start_container(v);
        }
        "poststart" => {
            let v = push_hook(hooks.poststart(), o);
            hooks.set_poststart(v);
        }
        "poststop" => {
            let v = push_hook(hooks.poststop(), o);
            hooks.set_poststop(v);
        }
        // Engines ignore unknown stages (validation rejects them before this point).
        _ => {}
    }
}

fn rdt_to_oci(r: &IntelRdt) -> LinuxIntelRdt {
    let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
    let mut o = LinuxIntelRdt::default();
    o.set_clos_id(non_empty(&r.clos_id));
    o.set_l3_cache_schema(non_empty(&r.l3_cache_schema));
    o.set_mem_bw_schema(non_empty(&r.mem_bw_schema));
    o.set_schemata((!r.schemata.is_empty()).then(|| r.schemata.clone()));
    o.set_enable_monitoring(r.enable_monitoring.then_some(true));
    // Pre-1.1.0 fields, deprecated in the runtime spec but still carried.
    #[allow(deprecated)]
    {
        o.set_enable_cmt(r.enable_cmt.then_some(true));
        o.set_enable_mbm(r.enable_mbm.then_some(true));
    }
    o
}
