//! CDI versions: the known list, the minimum version a spec's content needs (the table in
//! the CDI reference) and the check that a spec declares at least that. Generators write
//! the minimum because older engines (podman 4.x) reject newer versions.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::types::{ContainerEdits, Spec};

/// A known CDI specification version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// 0.1.0 (legacy: no longer accepted).
    V0_1_0,
    /// 0.2.0 (legacy: no longer accepted).
    V0_2_0,
    /// 0.3.0.
    V0_3_0,
    /// 0.4.0: `mounts[].type`.
    V0_4_0,
    /// 0.5.0: `deviceNodes[].hostPath`, device names starting with a digit.
    V0_5_0,
    /// 0.6.0: annotations, `.` in the class.
    V0_6_0,
    /// 0.7.0: `intelRdt`, `additionalGids`.
    V0_7_0,
    /// 0.8.0.
    V0_8_0,
    /// 1.0.0.
    V1_0_0,
    /// 1.1.0: `netDevices`, `intelRdt.schemata`, `intelRdt.enableMonitoring`.
    V1_1_0,
}

/// Every known version, oldest first.
pub const KNOWN_VERSIONS: [Version; 10] = [
    Version::V0_1_0,
    Version::V0_2_0,
    Version::V0_3_0,
    Version::V0_4_0,
    Version::V0_5_0,
    Version::V0_6_0,
    Version::V0_7_0,
    Version::V0_8_0,
    Version::V1_0_0,
    Version::V1_1_0,
];

/// The newest version this crate knows.
pub const LATEST: Version = Version::V1_1_0;

/// The oldest version a spec may declare (0.1.0 and 0.2.0 are legacy).
pub const OLDEST_SUPPORTED: Version = Version::V0_3_0;

impl Version {
    /// The version as written in `cdiVersion`, e.g. `0.5.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_1_0 => "0.1.0",
            Version::V0_2_0 => "0.2.0",
            Version::V0_3_0 => "0.3.0",
            Version::V0_4_0 => "0.4.0",
            Version::V0_5_0 => "0.5.0",
            Version::V0_6_0 => "0.6.0",
            Version::V0_7_0 => "0.7.0",
            Version::V0_8_0 => "0.8.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// True for 0.1.0 and 0.2.0, which no engine accepts any more.
    pub fn is_legacy(self) -> bool {
        self < OLDEST_SUPPORTED
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KNOWN_VERSIONS
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| VersionError::Unknown {
                declared: s.to_string(),
            })
    }
}

/// Why a spec needs a version: the field (JSON path) and, for device fields, the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The version the field needs.
    pub version: Version,
    /// The device whose field needs it; `None` for top-level and spec-wide fields.
    pub device: Option<String>,
    /// JSON path of the field, e.g. `devices[0].containerEdits.deviceNodes[1].hostPath`.
    pub field: String,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.device {
            Some(d) => write!(f, "{} of device {d:?}", self.field),
            None => f.write_str(&self.field),
        }
    }
}

/// The minimum version and the first field (in document order) that needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinimumVersion {
    /// The newest version whose feature the spec uses (0.3.0 at least).
    pub version: Version,
    /// The field that needs `version`; `None` when it is 0.3.0.
    pub needed_by: Option<Requirement>,
}

/// Errors about `cdiVersion`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VersionError {
    /// `cdiVersion` is not one of [`KNOWN_VERSIONS`].
    #[error(
        "cdiVersion {declared:?} is not a known CDI version (known: 0.3.0 0.4.0 0.5.0 0.6.0 \
         0.7.0 0.8.0 1.0.0 1.1.0); declare the minimum the content needs"
    )]
    Unknown {
        /// What the spec declares.
        declared: String,
    },
    /// The declared version is older than the content needs.
    #[error(
        "needs cdiVersion {needed}, declares {declared}: {field} needs it; \
         declare cdiVersion {needed} or remove that field"
    )]
    TooOld {
        /// The minimum the content needs.
        needed: Version,
        /// What the spec declares.
        declared: Version,
        /// The field that needs `needed`.
        field: Requirement,
    },
    /// A field that the declared version no longer has (`enableCMT`/`enableMBM` in 1.1.0).
    #[error(
        "{field} was removed in cdiVersion 1.1.0, declares {declared}; \
         use enableMonitoring with 1.1.0 or declare an older cdiVersion"
    )]
    Removed {
        /// What the spec declares.
        declared: Version,
        /// The removed field.
        field: Requirement,
    },
}

/// Parses a declared `cdiVersion`.
pub fn parse_version(s: &str) -> Result<Version, VersionError> {
    s.parse()
}

/// Computes the minimum version the spec's content needs, per the CDI reference table
/// (the newest version whose feature it uses), and the first field that needs it.
pub fn minimum_version(spec: &Spec) -> MinimumVersion {
    let mut best = MinimumVersion {
        version: OLDEST_SUPPORTED,
        needed_by: None,
    };
    for req in requirements(spec) {
        if req.version > best.version {
            best = MinimumVersion {
                version: req.version,
                needed_by: Some(req),
            };
        }
    }
    best
}

/// Every field of `spec` that needs more than 0.3.0, in document order.
pub fn requirements(spec: &Spec) -> Vec<Requirement> {
    let mut out = Vec::new();
    let top = |version: Version, field: String| Requirement {
        version,
        device: None,
        field,
    };
    if let Some((_, class)) = spec.kind.split_once('/') {
        if class.contains('.') {
            out.push(top(
                Version::V0_6_0,
                "kind (a '.' in the class)".to_string(),
            ));
        }
    }
    if !spec.annotations.is_empty() {
        out.push(top(Version::V0_6_0, "annotations".to_string()));
    }
    for (i, dev) in spec.devices.iter().enumerate() {
        let device = Some(dev.name.clone());
        let at = |version: Version, field: String| Requirement {
            version,
            device: device.clone(),
            field,
        };
        if dev.name.starts_with(|c: char| c.is_ascii_digit()) {
            out.push(at(
                Version::V0_5_0,
                format!("devices[{i}].name (starts with a digit)"),
            ));
        }
        if !dev.annotations.is_empty() {
            out.push(at(Version::V0_6_0, format!("devices[{i}].annotations")));
        }
        edit_requirements(
            &dev.container_edits,
            &format!("devices[{i}].containerEdits"),
            &device,
            &mut out,
        );
    }
    edit_requirements(&spec.container_edits, "containerEdits", &None, &mut out);
    out
}

fn edit_requirements(
    edits: &ContainerEdits,
    prefix: &str,
    device: &Option<String>,
    out: &mut Vec<Requirement>,
) {
    let mut push = |version: Version, field: String| {
        out.push(Requirement {
            version,
            device: device.clone(),
            field,
        })
    };
    for (j, node) in edits.device_nodes.iter().enumerate() {
        if !node.host_path.is_empty() {
            push(
                Version::V0_5_0,
                format!("{prefix}.deviceNodes[{j}].hostPath"),
            );
        }
    }
    for (j, m) in edits.mounts.iter().enumerate() {
        if !m.typ.is_empty() {
            push(Version::V0_4_0, format!("{prefix}.mounts[{j}].type"));
        }
    }
    if let Some(rdt) = &edits.intel_rdt {
        push(Version::V0_7_0, format!("{prefix}.intelRdt"));
        if !rdt.schemata.is_empty() {
            push(Version::V1_1_0, format!("{prefix}.intelRdt.schemata"));
        }
        if rdt.enable_monitoring {
            push(
                Version::V1_1_0,
                format!("{prefix}.intelRdt.enableMonitoring"),
            );
        }
    }
    if !edits.additional_gids.is_empty() {
        push(Version::V0_7_0, format!("{prefix}.additionalGids"));
    }
    if !edits.net_devices.is_empty() {
        push(Version::V1_1_0, format!("{prefix}.netDevices"));
    }
}

/// Checks that `spec.cdi_version` is known, not legacy, at least the minimum the content
/// needs, and that no field removed in the declared version is used.
pub fn check_version(spec: &Spec) -> Result<Version, VersionError> {
    let declared = parse_version(&spec.cdi_version)?;
    let min = minimum_version(spec);
    if declared < min.version {
        return Err(VersionError::TooOld {
            needed: min.version,
            declared,
            field: min.needed_by.unwrap_or(Requirement {
                version: OLDEST_SUPPORTED,
                device: None,
                field: "cdiVersion (0.1.0 and 0.2.0 are legacy)".to_string(),
            }),
        });
    }
    if declared >= Version::V1_1_0 {
        if let Some(field) = removed_fields(spec).into_iter().next() {
            return Err(VersionError::Removed { declared, field });
        }
    }
    Ok(declared)
}

/// Fields removed in 1.1.0 (`intelRdt.enableCMT`, `intelRdt.enableMBM`) that the spec uses.
fn removed_fields(spec: &Spec) -> Vec<Requirement> {
    let mut out = Vec::new();
    let mut scan = |edits: &ContainerEdits, prefix: String, device: Option<String>| {
        if let Some(rdt) = &edits.intel_rdt {
            if rdt.enable_cmt {
                out.push(Requirement {
                    version: Version::V1_0_0,
                    device: device.clone(),
                    field: format!("{prefix}.intelRdt.enableCMT"),
                });
            }
            if rdt.enable_mbm {
                out.push(Requirement {
                    version: Version::V1_0_0,
                    device,
                    field: format!("{prefix}.intelRdt.enableMBM"),
                });
            }
        }
    };
    for (i, dev) in spec.devices.iter().enumerate() {
        scan(
            &dev.container_edits,
            format!("devices[{i}].containerEdits"),
            Some(dev.name.clone()),
        );
    }
    scan(&spec.container_edits, "containerEdits".to_string(), None);
    out
}

/// An engine that accepts CDI only up to some version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimit {
    /// The engine, as users know it.
    pub engine: &'static str,
    /// The newest `cdiVersion` it loads.
    pub max: Version,
}

/// Engines with a known ceiling: podman 4.x vendors CDI 0.5.x.
pub const ENGINE_LIMITS: [EngineLimit; 1] = [EngineLimit {
    engine: "podman 4.x",
    max: Version::V0_5_0,
}];

/// A note for users of older engines when `version` is newer than they accept, e.g.
/// `podman 4.x accepts at most 0.5.0`; `None` when every engine in [`ENGINE_LIMITS`] loads it.
pub fn engine_max_version(version: Version) -> Option<String> {
    let notes: Vec<String> = ENGINE_LIMITS
        .iter()
        .filter(|l| version > l.max)
        .map(|l| format!("{} accepts at most {}", l.engine, l.max))
        .collect();
    if notes.is_empty() {
        None
    } else {
        Some(notes.join("; "))
    }
}
