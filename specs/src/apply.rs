//! The config.json engine: applies requested CDI devices to an OCI runtime spec the way
//! engines do (devices in request order, each spec's spec-wide edits with its first
//! device), composing them with [`mod@crate::compose`]'s rules, the same the live engine uses.
//! All or nothing: on any error the spec is left as it was.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use oci_spec::runtime::{
    Hook as OciHook, Hooks, Linux, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxIntelRdt,
    LinuxNetDevice, LinuxResources, Mount as OciMount, Process, Spec as OciSpec,
};
use thiserror::Error;

use crate::compose::{clean_path, compose, merge_env, mount_depth, ComposeError, Composed};
use crate::registry::{Registry, RegistryError};
use crate::types::{ContainerEdits, DeviceNode, Hook, HostNode, IntelRdt, Mount};

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
    /// Edits the composition rules refuse (an unvalidated spec).
    #[error("{source_label}: {source}; nothing was applied")]
    Invalid {
        /// The device (or spec-wide edits) whose edits are refused.
        source_label: String,
        /// What is wrong.
        source: ComposeError,
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

/// Applies labelled edits in order to `oci`, all or nothing: each node is completed from
/// its host node where the spec leaves type or major out, the edits are composed by
/// [`mod@crate::compose`] (the one set of rules), and the result is merged into `oci` with the
/// same rules (a composed node or mount replaces the spec's one at the same cleaned path;
/// all mounts are then stably sorted by depth).
pub fn apply_edits(oci: &mut OciSpec, edits: &[(&str, &ContainerEdits)]) -> Result<(), ApplyError> {
    let mut filled = Vec::with_capacity(edits.len());
    for (label, e) in edits {
        let mut f = (*e).clone();
        for n in &mut f.device_nodes {
            fill_missing_info(n, label)?;
        }
        filled.push(f);
    }
    let composed = compose(&filled).map_err(|source| {
        // The rules check each edits on its own: name the first that fails.
        let source_label = edits
            .iter()
            .zip(&filled)
            .find(|(_, f)| compose([*f]).is_err())
            .map_or("containerEdits", |((l, _), _)| *l)
            .to_string();
        ApplyError::Invalid {
            source_label,
            source,
        }
    })?;
    let mut work = oci.clone();
    merge_into(&mut work, &composed);
    *oci = work;
    Ok(())
}

fn empty_process() -> Process {
    serde_json::from_str(r#"{"cwd":"/","user":{"uid":0,"gid":0}}"#).unwrap_or_default()
}

fn empty_linux() -> Linux {
    serde_json::from_str("{}").unwrap_or_default()
}

fn empty_resources() -> LinuxResources {
    serde_json::from_str("{}").unwrap_or_default()
}

fn linux_of(oci: &mut OciSpec) -> &mut Linux {
    oci.linux_mut().get_or_insert_with(empty_linux)
}

fn process_of(oci: &mut OciSpec) -> &mut Process {
    oci.process_mut().get_or_insert_with(empty_process)
}

/// Merges composed edits into `oci` as the reference applies one set of edits.
fn merge_into(oci: &mut OciSpec, c: &Composed) {
    if !c.env.is_empty() {
        let p = process_of(oci);
        let mut env = p.env().clone().unwrap_or_default();
        merge_env(&mut env, &c.env);
        p.set_env(Some(env));
    }

    let (uid, gid) = oci
        .process()
        .as_ref()
        .map_or((0, 0), |p| (p.user().uid(), p.user().gid()));
    if !c.device_nodes.is_empty() {
        let linux = linux_of(oci);
        let mut devices = linux.devices().clone().unwrap_or_default();
        for n in &c.device_nodes {
            let mut dev = node_to_oci(n);
            if dev.uid().is_none() && uid > 0 {
                dev.set_uid(Some(uid));
            }
            if dev.gid().is_none() && gid > 0 {
                dev.set_gid(Some(gid));
            }
            let key = clean_path(&n.path);
            if let Some(i) = devices
                .iter()
                .position(|d| clean_path(&d.path().to_string_lossy()) == key)
            {
                devices.remove(i);
            }
            devices.push(dev);
        }
        linux.set_devices(Some(devices));
    }
    if !c.device_rules.is_empty() {
        let linux = linux_of(oci);
        let mut resources = linux.resources().clone().unwrap_or_else(empty_resources);
        let mut rules = resources.devices().clone().unwrap_or_default();
        for r in &c.device_rules {
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(device_type(&r.typ)));
            rule.set_major(Some(r.major));
            rule.set_minor(Some(r.minor));
            rule.set_access(Some(r.access.clone()));
            rules.push(rule);
        }
        resources.set_devices(Some(rules));
        linux.set_resources(Some(resources));
    }

    // netDevices: host interface -> name in the container.
    if !c.net_devices.is_empty() {
        let linux = linux_of(oci);
        let mut map: HashMap<String, LinuxNetDevice> =
            linux.net_devices().clone().unwrap_or_default();
        for n in &c.net_devices {
            let mut dev = LinuxNetDevice::default();
            dev.set_name(Some(n.name.clone()));
            map.insert(n.host_interface_name.clone(), dev);
        }
        linux.set_net_devices(Some(map));
    }

    if !c.mounts.is_empty() {
        let mut mounts = oci.mounts().clone().unwrap_or_default();
        for m in &c.mounts {
            let key = clean_path(&m.container_path);
            if let Some(i) = mounts
                .iter()
                .position(|x| clean_path(&x.destination().to_string_lossy()) == key)
            {
                mounts.remove(i);
            }
            mounts.push(mount_to_oci(m));
        }
        mounts.sort_by_key(|m| mount_depth(&m.destination().to_string_lossy()));
        oci.set_mounts(Some(mounts));
    }

    if !c.hooks.is_empty() {
        let mut hooks = oci
            .hooks()
            .clone()
            .unwrap_or_else(|| serde_json::from_str("{}").unwrap_or_default());
        for h in &c.hooks {
            add_hook(&mut hooks, h);
        }
        oci.set_hooks(Some(hooks));
    }

    if let Some(rdt) = &c.intel_rdt {
        linux_of(oci).set_intel_rdt(Some(rdt_to_oci(rdt)));
    }

    if !c.additional_gids.is_empty() {
        let user = process_of(oci).user_mut();
        let mut all = user.additional_gids().clone().unwrap_or_default();
        for &g in &c.additional_gids {
            if !all.contains(&g) {
                all.push(g);
            }
        }
        user.set_additional_gids(Some(all));
    }
}

fn device_type(t: &str) -> LinuxDeviceType {
    match t {
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        "u" => LinuxDeviceType::U,
        _ => LinuxDeviceType::P,
    }
}

fn node_to_oci(n: &DeviceNode) -> LinuxDevice {
    let mut d = LinuxDevice::default();
    d.set_path(PathBuf::from(&n.path));
    d.set_typ(device_type(&n.typ));
    d.set_major(n.major.unwrap_or(0));
    d.set_minor(n.minor.unwrap_or(0));
    d.set_file_mode(n.file_mode);
    d.set_uid(n.uid);
    d.set_gid(n.gid);
    d
}

pub use crate::types::dev_major_minor;

/// Engine rule: hostPath defaults to path; when type is missing, or major is missing (or
/// 0) for a non-FIFO, type/major/minor (and fileMode when absent) come from
/// `stat(hostPath)`.
fn fill_missing_info(n: &mut DeviceNode, label: &str) -> Result<(), ApplyError> {
    if !matches!(n.typ.as_str(), "" | "b" | "c" | "u" | "p") {
        return Err(ApplyError::BadType {
            source_label: label.to_string(),
            path: n.path.clone(),
            value: n.typ.clone(),
        });
    }
    if !n.typ.is_empty() && (n.major.unwrap_or(0) != 0 || n.typ == "p") {
        return Ok(());
    }
    let host_path = PathBuf::from(if n.host_path.is_empty() {
        &n.path
    } else {
        &n.host_path
    });
    let meta = std::fs::metadata(&host_path).map_err(|error| ApplyError::Stat {
        source_label: label.to_string(),
        path: n.path.clone(),
        host_path: host_path.clone(),
        error,
    })?;
    let Some(host) = HostNode::from_metadata(&meta) else {
        return Err(ApplyError::NotADevice {
            source_label: label.to_string(),
            path: n.path.clone(),
            host_path,
        });
    };
    let actual = host.typ;
    if n.typ.is_empty() {
        n.typ = actual.to_string();
    } else if n.typ != actual {
        return Err(ApplyError::TypeMismatch {
            source_label: label.to_string(),
            path: n.path.clone(),
            host_path,
            declared: n.typ.clone(),
            actual: actual.to_string(),
        });
    }
    if n.file_mode.is_none() {
        n.file_mode = Some(host.mode & 0o777);
    }
    if n.typ != "p" && n.major.unwrap_or(0) == 0 {
        n.major = Some(host.major);
        n.minor = Some(host.minor);
    }
    Ok(())
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
        // compose() refuses unknown stages before this point.
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
