//! The one set of composition rules for CDI container edits (merge, conflicts, ordering,
//! cgroup access, node types), as the CDI reference implementation applies them. Both the
//! config.json engine ([`crate::apply`]) and the hooks' live engine compose through here.
//!
//! The rules, per edits in order (the reference's `ContainerEdits.Apply`):
//! - env: an entry whose key (text before the first `=`) is already there replaces it in
//!   place, otherwise it is appended;
//! - device nodes: a node whose cleaned `path` repeats removes the earlier one and takes
//!   the later position (Go's `RemoveDevice` + `AddDevice`); every `b`/`c` node entry adds
//!   a cgroup rule, in order, even when a later node replaces it (as the reference does);
//!   [`cgroup_access`] gives its access; `p` (FIFO) and `u` nodes get no rule;
//! - netDevices: keyed by host interface name, the later one wins;
//! - mounts: a mount whose cleaned `containerPath` repeats removes the earlier one; then
//!   all mounts are stably sorted by [`mount_depth`];
//! - hooks are appended in order; the last present `intelRdt` wins; additionalGids are
//!   appended without 0 and without duplicates.
//!
//! Composition needs no host access: an engine completes a node's type, major and minor
//! from the host node before composing (a `b`, `c` or `u` node without a major, or a node
//! without a type, is refused here).

use thiserror::Error;

use crate::plan::DeviceRule;
use crate::types::{ContainerEdits, DeviceNode, Hook, IntelRdt, Mount, NetDevice, HOOK_NAMES};

/// The edits of several sources composed into one, in the order an engine applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Composed {
    /// `KEY=VALUE` entries, one per key.
    pub env: Vec<String>,
    /// Device nodes, one per cleaned path.
    pub device_nodes: Vec<DeviceNode>,
    /// Mounts, one per cleaned container path, stably sorted by depth.
    pub mounts: Vec<Mount>,
    /// Hooks in order (all stages together).
    pub hooks: Vec<Hook>,
    /// Cgroup rules, one per `b`/`c` node entry, in order.
    pub device_rules: Vec<DeviceRule>,
    /// Network devices, one per host interface name.
    pub net_devices: Vec<NetDevice>,
    /// The last `intelRdt` given.
    pub intel_rdt: Option<IntelRdt>,
    /// Additional groups, without 0 and duplicates.
    pub additional_gids: Vec<u32>,
}

/// Edits that cannot be composed. Each names the entry and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ComposeError {
    /// A device node without a path.
    #[error(
        "deviceNodes: a node has an empty path; set path to the node's absolute container path"
    )]
    EmptyNodePath,
    /// A device node whose container path is relative.
    #[error("deviceNodes {path}: path is not absolute; use the node's absolute container path")]
    RelativeNodePath {
        /// The node's path.
        path: String,
    },
    /// A device node type other than b, c, u, p.
    #[error("deviceNodes {path}: invalid type {value:?}; use b, c, u or p")]
    InvalidType {
        /// The node's path.
        path: String,
        /// The type.
        value: String,
    },
    /// A node whose type or major has not been completed from the host node.
    #[error("deviceNodes {path}: type {typ:?} without a major number; complete the node from its host node (type, major, minor) before composing")]
    Unfilled {
        /// The node's path.
        path: String,
        /// The type (maybe empty).
        typ: String,
    },
    /// A negative major or minor (-1 is a cgroup wildcard).
    #[error("deviceNodes {path}: negative device number {major}:{minor}; use the node's real major and minor")]
    NegativeNumber {
        /// The node's path.
        path: String,
        /// Major.
        major: i64,
        /// Minor.
        minor: i64,
    },
    /// Permissions other than a subset of rwm or `none`.
    #[error("deviceNodes {path}: invalid permissions {value:?}; use a subset of \"rwm\", \"none\" or leave it empty for rwm")]
    InvalidPermissions {
        /// The node's path.
        path: String,
        /// The permissions.
        value: String,
    },
    /// A mount without a host path.
    #[error("mounts {container_path}: empty hostPath; set hostPath to what is mounted")]
    EmptyHostPath {
        /// The mount's container path.
        container_path: String,
    },
    /// A mount whose container path is empty or relative.
    #[error("mounts {container_path:?} (hostPath {host_path}): containerPath is not absolute; use an absolute container path")]
    RelativeMountPath {
        /// The container path.
        container_path: String,
        /// The host path.
        host_path: String,
    },
    /// An env entry that is not `KEY=VALUE`.
    #[error("env {entry:?}: not KEY=VALUE with a non-empty KEY; fix the entry")]
    InvalidEnv {
        /// The entry.
        entry: String,
    },
    /// A hook with an unknown stage.
    #[error("hooks {path}: unknown hookName {name:?}; use one of prestart, createRuntime, createContainer, startContainer, poststart, poststop")]
    UnknownHook {
        /// The stage named.
        name: String,
        /// The hook's path.
        path: String,
    },
    /// A hook without a path.
    #[error("hooks {name}: a hook has an empty path; set path to the hook executable")]
    EmptyHookPath {
        /// The stage.
        name: String,
    },
}

/// Composes `edits` in order (see the module rules). Nothing host-specific is looked at.
pub fn compose<'a>(
    edits: impl IntoIterator<Item = &'a ContainerEdits>,
) -> Result<Composed, ComposeError> {
    let mut c = Composed::default();
    for e in edits {
        check(e)?;
        merge_env(&mut c.env, &e.env);
        for n in &e.device_nodes {
            let key = clean_path(&n.path);
            if let Some(i) = c
                .device_nodes
                .iter()
                .position(|d| clean_path(&d.path) == key)
            {
                c.device_nodes.remove(i);
            }
            c.device_nodes.push(n.clone());
            if let Some(access) = cgroup_access(n) {
                c.device_rules.push(DeviceRule {
                    typ: n.typ.clone(),
                    major: n.major.unwrap_or(0),
                    minor: n.minor.unwrap_or(0),
                    access,
                });
            }
        }
        for n in &e.net_devices {
            match c
                .net_devices
                .iter_mut()
                .find(|x| x.host_interface_name == n.host_interface_name)
            {
                Some(x) => x.clone_from(n),
                None => c.net_devices.push(n.clone()),
            }
        }
        for m in &e.mounts {
            let key = clean_path(&m.container_path);
            if let Some(i) = c
                .mounts
                .iter()
                .position(|x| clean_path(&x.container_path) == key)
            {
                c.mounts.remove(i);
            }
            c.mounts.push(m.clone());
        }
        c.hooks.extend(e.hooks.iter().cloned());
        if e.intel_rdt.is_some() {
            c.intel_rdt.clone_from(&e.intel_rdt);
        }
        for &g in &e.additional_gids {
            if g != 0 && !c.additional_gids.contains(&g) {
                c.additional_gids.push(g);
            }
        }
    }
    // `sort_by_key` is stable: equal depths keep their order.
    c.mounts.sort_by_key(|m| mount_depth(&m.container_path));
    Ok(c)
}

/// The cgroup access a node gets: its permissions, `""` meaning `rwm` and `none` meaning
/// an empty access (a rule granting nothing, as the reference writes it). `None` (no rule)
/// for every type but `b` and `c`: FIFOs (`p`) need none and the reference gives `u`
/// nodes none either.
pub fn cgroup_access(node: &DeviceNode) -> Option<String> {
    if !matches!(node.typ.as_str(), "b" | "c") {
        return None;
    }
    Some(match node.permissions.as_str() {
        "" => "rwm".to_string(),
        "none" => String::new(),
        p => p.to_string(),
    })
}

/// The mount sort key: the number of `/` in the cleaned path, as the reference's
/// `orderedMounts` counts (the number of components for every absolute path but `/`,
/// which counts 1 like `/a`).
pub fn mount_depth(container_path: &str) -> usize {
    // The `/`s of `clean_path(container_path)`, counted without building it (sorting
    // thousands of nodes and mounts calls this in every comparison). The cleaned path is
    // `ups` leading `..` (relative paths only) then `names` names.
    let rooted = container_path.starts_with('/');
    let (mut names, mut ups) = (0usize, 0usize);
    for part in container_path.split('/') {
        match part {
            "" | "." => {}
            ".." if names > 0 => names -= 1,
            ".." if !rooted => ups += 1,
            ".." => {}
            _ => names += 1,
        }
    }
    let comps = names + ups;
    if rooted {
        comps.max(1)
    } else {
        comps.saturating_sub(1)
    }
}

/// Lexical path cleaning like Go's `filepath.Clean`: repeated and trailing `/`, `.` and
/// resolvable `..` removed; `""` gives `"."`.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|q| *q != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            q => parts.push(q),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The env rule: an entry whose key (text before the first `=`) is already in `env`
/// replaces it in place (the last entry with that key, as Go's generator indexes them),
/// otherwise it is appended.
pub fn merge_env(env: &mut Vec<String>, add: &[String]) {
    fn key(s: &str) -> &str {
        s.split_once('=').map_or(s, |(k, _)| k)
    }
    for e in add {
        match env.iter().rposition(|x| key(x) == key(e)) {
            Some(i) => env[i].clone_from(e),
            None => env.push(e.clone()),
        }
    }
}

/// What the reference validates before applying, plus absolute container paths and
/// completed nodes (which composition needs).
fn check(e: &ContainerEdits) -> Result<(), ComposeError> {
    check_env(&e.env)?;
    for n in &e.device_nodes {
        check_node(n)?;
    }
    for m in &e.mounts {
        if m.host_path.is_empty() {
            return Err(ComposeError::EmptyHostPath {
                container_path: m.container_path.clone(),
            });
        }
        if !m.container_path.starts_with('/') {
            return Err(ComposeError::RelativeMountPath {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
            });
        }
    }
    for h in &e.hooks {
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            return Err(ComposeError::UnknownHook {
                name: h.hook_name.clone(),
                path: h.path.clone(),
            });
        }
        if h.path.is_empty() {
            return Err(ComposeError::EmptyHookPath {
                name: h.hook_name.clone(),
            });
        }
        check_env(&h.env)?;
    }
    Ok(())
}

fn check_env(env: &[String]) -> Result<(), ComposeError> {
    match env.iter().find(|v| v.find('=').unwrap_or(0) == 0) {
        Some(v) => Err(ComposeError::InvalidEnv { entry: v.clone() }),
        None => Ok(()),
    }
}

fn check_node(n: &DeviceNode) -> Result<(), ComposeError> {
    let path = || n.path.clone();
    if n.path.is_empty() {
        return Err(ComposeError::EmptyNodePath);
    }
    if !n.path.starts_with('/') {
        return Err(ComposeError::RelativeNodePath { path: path() });
    }
    match n.typ.as_str() {
        "p" => {}
        "b" | "c" | "u" if n.major.is_some() => {}
        "" | "b" | "c" | "u" => {
            return Err(ComposeError::Unfilled {
                path: path(),
                typ: n.typ.clone(),
            })
        }
        _ => {
            return Err(ComposeError::InvalidType {
                path: path(),
                value: n.typ.clone(),
            })
        }
    }
    let (major, minor) = (n.major.unwrap_or(0), n.minor.unwrap_or(0));
    if major < 0 || minor < 0 {
        return Err(ComposeError::NegativeNumber {
            path: path(),
            major,
            minor,
        });
    }
    let p = n.permissions.as_str();
    if p != "none" && !p.chars().all(|ch| matches!(ch, 'r' | 'w' | 'm')) {
        return Err(ComposeError::InvalidPermissions {
            path: path(),
            value: n.permissions.clone(),
        });
    }
    Ok(())
}
