//! Validation of a parsed spec with the rules engines apply when loading it: version,
//! names, annotations, env, device nodes, hooks, mounts, duplicates and empty edits.
//! Every error names the spec file, the device (when there is one) and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::names::{parse_kind, validate_device_name, NameError};
use crate::types::{ContainerEdits, Spec, HOOK_NAMES};
use crate::version::{check_version, Version, VersionError};

/// Where in a spec a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The spec file, when the spec came from one.
    pub file: Option<PathBuf>,
    /// The device whose field is wrong; `None` for top-level and spec-wide fields.
    pub device: Option<String>,
    /// JSON path of the field, e.g. `devices[0].containerEdits.env[1]`.
    pub field: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}", p.display())?,
            None => f.write_str("spec")?,
        }
        if let Some(d) = &self.device {
            write!(f, ": device {d:?}")?;
        }
        write!(f, ": {}", self.field)
    }
}

/// A rule a spec breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidateError {
    /// A required field is absent or empty.
    #[error("{at}: required field is missing or empty; {fix}")]
    Missing {
        /// Where.
        at: Location,
        /// What to write there.
        fix: &'static str,
    },
    /// `cdiVersion` is unknown, too old for the content, or the content uses a removed field.
    #[error("{at}: {source}")]
    Version {
        /// Where.
        at: Location,
        /// The version problem.
        source: VersionError,
    },
    /// A bad kind, vendor, class or device name.
    #[error("{at}: {source}")]
    Name {
        /// Where.
        at: Location,
        /// The name problem.
        source: NameError,
    },
    /// No device at all.
    #[error("{at}: the spec has no devices; a spec needs at least one device")]
    NoDevices {
        /// Where.
        at: Location,
    },
    /// The same device name twice in one spec.
    #[error("{at}: device name {name:?} is already used by devices[{first}]; device names must be unique within a spec")]
    DuplicateDevice {
        /// Where.
        at: Location,
        /// The repeated name.
        name: String,
        /// Index of the first device with that name.
        first: usize,
    },
    /// A device whose containerEdits change nothing.
    #[error("{at}: the device's edits are empty; give it at least one env entry, device node, mount, hook, netDevice, intelRdt or additionalGids")]
    EmptyEdits {
        /// Where.
        at: Location,
    },
    /// An env entry that is not `KEY=VALUE` with a non-empty key.
    #[error("{at}: invalid environment entry {entry:?}: {why}; write it as KEY=VALUE with a non-empty KEY")]
    Env {
        /// Where.
        at: Location,
        /// The entry.
        entry: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A device node type other than b, c, u, p or empty.
    #[error("{at}: invalid device node type {value:?}; use b, c, u or p, or leave it out to take the host node's type")]
    NodeType {
        /// Where.
        at: Location,
        /// The type.
        value: String,
    },
    /// Device node permissions that are not a subset of `rwm` (or `none`).
    #[error("{at}: invalid device node permissions {value:?}; use letters from r, w and m (e.g. rw), or none")]
    Permissions {
        /// Where.
        at: Location,
        /// The permissions.
        value: String,
    },
    /// A hook name that is not an OCI hook stage.
    #[error("{at}: invalid hook name {value:?}; use one of prestart, createRuntime, createContainer, startContainer, poststart, poststop")]
    HookName {
        /// Where.
        at: Location,
        /// The name.
        value: String,
    },
    /// A bad annotation key.
    #[error("{at}: invalid annotation key {key:?}: {why}")]
    AnnotationKey {
        /// Where.
        at: Location,
        /// The key.
        key: String,
        /// What is wrong and what to change.
        why: String,
    },
    /// Annotations larger than engines accept.
    #[error("{at}: annotations take {size} bytes, more than the 262144 allowed; shorten them")]
    AnnotationsTooLarge {
        /// Where.
        at: Location,
        /// Their size (keys plus values).
        size: usize,
    },
    /// A bad `intelRdt.closID`.
    #[error("{at}: invalid closID {value:?}: {why}")]
    ClosId {
        /// Where.
        at: Location,
        /// The closID.
        value: String,
        /// What is wrong and what to change.
        why: &'static str,
    },
    /// The same host interface moved twice.
    #[error("{at}: host interface {name:?} is already moved by another netDevices entry; each host interface can be moved once")]
    DuplicateNetDevice {
        /// Where.
        at: Location,
        /// The interface.
        name: String,
    },
}

impl ValidateError {
    /// Where the problem is.
    pub fn location(&self) -> &Location {
        match self {
            ValidateError::Missing { at, .. }
            | ValidateError::Version { at, .. }
            | ValidateError::Name { at, .. }
            | ValidateError::NoDevices { at }
            | ValidateError::DuplicateDevice { at, .. }
            | ValidateError::EmptyEdits { at }
            | ValidateError::Env { at, .. }
            | ValidateError::NodeType { at, .. }
            | ValidateError::Permissions { at, .. }
            | ValidateError::HookName { at, .. }
            | ValidateError::AnnotationKey { at, .. }
            | ValidateError::AnnotationsTooLarge { at, .. }
            | ValidateError::ClosId { at, .. }
            | ValidateError::DuplicateNetDevice { at, .. } => at,
        }
    }
}

/// Validates `spec` (read from `file`, if any); returns its declared version, or the first
/// problem found (version first, then the document in order).
// The error carries its location and cause by value: it is built once per bad spec, so
// its size does not matter and boxing would only make matching on it clumsier.
#[allow(clippy::result_large_err)]
pub fn validate(spec: &Spec, file: Option<&Path>) -> Result<Version, ValidateError> {
    let mut all = problems(spec, file);
    if all.is_empty() {
        // `problems` found no version error, so this cannot fail; stay panic-free anyway.
        check_version(spec).map_err(|source| ValidateError::Version {
            at: Location {
                file: file.map(Path::to_path_buf),
                device: None,
                field: "cdiVersion".to_string(),
            },
            source,
        })
    } else {
        Err(all.swap_remove(0))
    }
}

/// Every problem of `spec`, version first, then in document order.
pub fn problems(spec: &Spec, file: Option<&Path>) -> Vec<ValidateError> {
    let mut v = Validator {
        file: file.map(Path::to_path_buf),
        out: Vec::new(),
    };
    v.spec(spec);
    v.out
}

struct Validator {
    file: Option<PathBuf>,
    out: Vec<ValidateError>,
}

impl Validator {
    fn at(&self, device: Option<&str>, field: impl Into<String>) -> Location {
        Location {
            file: self.file.clone(),
            device: device.map(str::to_string),
            field: field.into(),
        }
    }

    fn spec(&mut self, spec: &Spec) {
        if spec.cdi_version.is_empty() {
            let at = self.at(None, "cdiVersion");
            self.out.push(ValidateError::Missing {
                at,
                fix: "declare the minimum version the content needs, e.g. cdiVersion: 0.5.0",
            });
        } else if let Err(source) = check_version(spec) {
            // The version error itself names the field (and device) that needs more.
            let at = self.at(None, "cdiVersion");
            self.out.push(ValidateError::Version { at, source });
        }
        if spec.kind.is_empty() {
            let at = self.at(None, "kind");
            self.out.push(ValidateError::Missing {
                at,
                fix: "set kind to vendor/class, e.g. nvidia.com/gpu",
            });
        } else if let Err(source) = parse_kind(&spec.kind) {
            let at = self.at(None, "kind");
            self.out.push(ValidateError::Name { at, source });
        }
        self.annotations(&spec.annotations, None, "annotations");
        if spec.devices.is_empty() {
            let at = self.at(None, "devices");
            self.out.push(ValidateError::NoDevices { at });
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, dev) in spec.devices.iter().enumerate() {
            let name = Some(dev.name.as_str());
            let field = format!("devices[{i}].name");
            if dev.name.is_empty() {
                let at = self.at(None, field);
                self.out.push(ValidateError::Missing {
                    at,
                    fix: "name the device, e.g. 0, gpu0 or all",
                });
            } else if let Err(source) = validate_device_name(&dev.name) {
                let at = self.at(name, field);
                self.out.push(ValidateError::Name { at, source });
            } else if let Some(&first) = seen.get(dev.name.as_str()) {
                let at = self.at(name, field);
                self.out.push(ValidateError::DuplicateDevice {
                    at,
                    name: dev.name.clone(),
                    first,
                });
            } else {
                seen.insert(&dev.name, i);
            }
            self.annotations(&dev.annotations, name, &format!("devices[{i}].annotations"));
            let prefix = format!("devices[{i}].containerEdits");
            if dev.container_edits.is_empty() {
                let at = self.at(name, prefix.clone());
                self.out.push(ValidateError::EmptyEdits { at });
            }
            self.edits(&dev.container_edits, name, &prefix);
        }
        self.edits(&spec.container_edits, None, "containerEdits");
    }

    fn annotations(&mut self, ann: &BTreeMap<String, String>, device: Option<&str>, field: &str) {
        let mut size = 0usize;
        for (k, v) in ann {
            size = size.saturating_add(k.len()).saturating_add(v.len());
            if let Err(why) = check_annotation_key(k) {
                let at = self.at(device, format!("{field}[{k:?}]"));
                self.out.push(ValidateError::AnnotationKey {
                    at,
                    key: k.clone(),
                    why,
                });
            }
        }
        if size > 256 * 1024 {
            let at = self.at(device, field);
            self.out
                .push(ValidateError::AnnotationsTooLarge { at, size });
        }
    }

    fn env(&mut self, env: &[String], device: Option<&str>, prefix: &str) {
        for (k, e) in env.iter().enumerate() {
            let why = match e.find('=') {
                None => Some("it has no '='"),
                Some(0) => Some("the key before '=' is empty"),
                Some(_) => None,
            };
            if let Some(why) = why {
                let at = self.at(device, format!("{prefix}[{k}]"));
                self.out.push(ValidateError::Env {
                    at,
                    entry: e.clone(),
                    why,
                });
            }
        }
    }

    fn edits(&mut self, e: &ContainerEdits, device: Option<&str>, prefix: &str) {
        self.env(&e.env, device, &format!("{prefix}.env"));
        for (j, n) in e.device_nodes.iter().enumerate() {
            let p = format!("{prefix}.deviceNodes[{j}]");
            if n.path.is_empty() {
                let at = self.at(device, format!("{p}.path"));
                self.out.push(ValidateError::Missing {
                    at,
                    fix: "set path to the node's path in the container, e.g. /dev/nvidia0",
                });
            }
            if !matches!(n.typ.as_str(), "" | "b" | "c" | "u" | "p") {
                let at = self.at(device, format!("{p}.type"));
                self.out.push(ValidateError::NodeType {
                    at,
                    value: n.typ.clone(),
                });
            }
            let perms_ok = n.permissions == "none"
                || n.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
            if !perms_ok {
                let at = self.at(device, format!("{p}.permissions"));
                self.out.push(ValidateError::Permissions {
                    at,
                    value: n.permissions.clone(),
                });
            }
        }
        for (j, h) in e.hooks.iter().enumerate() {
            let p = format!("{prefix}.hooks[{j}]");
            if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
                let at = self.at(device, format!("{p}.hookName"));
                self.out.push(ValidateError::HookName {
                    at,
                    value: h.hook_name.clone(),
                });
            }
            if h.path.is_empty() {
                let at = self.at(device, format!("{p}.path"));
                self.out.push(ValidateError::Missing {
                    at,
                    fix: "set path to the hook executable on the host",
                });
            }
            self.env(&h.env, device, &format!("{p}.env"));
        }
        for (j, m) in e.mounts.iter().enumerate() {
            let p = format!("{prefix}.mounts[{j}]");
            if m.host_path.is_empty() {
                let at = self.at(device, format!("{p}.hostPath"));
                self.out.push(ValidateError::Missing {
                    at,
                    fix: "set hostPath to the path to mount from the host",
                });
            }
            if m.container_path.is_empty() {
                let at = self.at(device, format!("{p}.containerPath"));
                self.out.push(ValidateError::Missing {
                    at,
                    fix: "set containerPath to the mount point in the container",
                });
            }
        }
        if let Some(rdt) = &e.intel_rdt {
            let id = &rdt.clos_id;
            let why = if id.len() >= 4096 {
                Some("it is 4096 bytes or longer; use a short resctrl group name")
            } else if id == "." || id == ".." || id.contains('/') || id.contains('\n') {
                Some("it must be a plain resctrl group name (no '/', newline, '.' or '..')")
            } else {
                None
            };
            if let Some(why) = why {
                let at = self.at(device, format!("{prefix}.intelRdt.closID"));
                self.out.push(ValidateError::ClosId {
                    at,
                    value: id.clone(),
                    why,
                });
            }
        }
        let mut hosts: Vec<&str> = Vec::new();
        for (j, n) in e.net_devices.iter().enumerate() {
            let p = format!("{prefix}.netDevices[{j}]");
            if n.host_interface_name.is_empty() {
                let at = self.at(device, format!("{p}.hostInterfaceName"));
                self.out.push(ValidateError::Missing {
                    at,
                    fix: "set hostInterfaceName to the host interface to move, e.g. eth1",
                });
            } else if hosts.contains(&n.host_interface_name.as_str()) {
                let at = self.at(device, format!("{p}.hostInterfaceName"));
                self.out.push(ValidateError::DuplicateNetDevice {
                    at,
                    name: n.host_interface_name.clone(),
                });
            } else {
                hosts.push(&n.host_interface_name);
            }
            if n.name.is_empty() {
                let at = self.at(device, format!("{p}.name"));
                self.out.push(ValidateError::Missing {
                    at,
                    fix: "set name to the interface name in the container, e.g. eth1",
                });
            }
        }
    }
}

/// Kubernetes-style annotation key: `[prefix/]name`, name 1-63 chars of `[A-Za-z0-9_.-]`
/// starting and ending alphanumeric, prefix a DNS subdomain of at most 253 chars.
fn check_annotation_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "prefix {p:?} is not a lowercase DNS subdomain (e.g. example.com) of at most 253 characters"
            ));
        }
    }
    let inner_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 || !inner_ok || !ends_ok {
        return Err(format!(
            "name {name:?} must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}
