//! The one currency between planning and applying. Every tool plans a [`Plan`]: CDI
//! container edits plus the three things CDI cannot say, and nothing else. cdi-gen writes
//! the CDI part as a spec; the hooks' live engine (`hooks_core::engine`) applies all of it.
//!
//! The extensions, each a plain list:
//! - [`Replace`]: a host file bound read-only over a file the image already has (its real,
//!   symlink-free container path), which must exist and be a regular file: the image's MPI
//!   or glibc replaced by the host's. A CDI mount would create the target instead.
//! - [`Library`]: a host library the image lacks, bound into the hooks' private tmpfs
//!   (`/run/hpc-hooks/lib`) and added to a regenerated `/etc/ld.so.cache` bound over the
//!   image's; the image itself is never written.
//! - [`DeviceRule`]: a device cgroup grant for device nodes reached through a directory
//!   mount (`BIND_MOUNTS=/dev/infiniband`), which CDI can only grant with a node.
//!
//! gpu-hook's `create-symlinks`, `update-ldcache` and `enable-cuda-compat` stay CDI hooks
//! in [`Plan::edits`]; the live engine carries them out itself instead of running them.

use serde::{Deserialize, Serialize};

use crate::types::ContainerEdits;

/// Everything one tool wants done to a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The CDI part: device nodes, mounts, hooks, env.
    #[serde(
        rename = "containerEdits",
        default,
        skip_serializing_if = "ContainerEdits::is_empty"
    )]
    pub edits: ContainerEdits,
    /// Host files bound over existing image files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<Replace>,
    /// Host libraries added under the private tmpfs and to the loader cache.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub libraries: Vec<Library>,
    /// Device cgroup grants for nodes inside mounted directories.
    #[serde(rename = "deviceRules", default, skip_serializing_if = "Vec::is_empty")]
    pub device_rules: Vec<DeviceRule>,
}

/// A host file bound read-only over an existing regular file of the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replace {
    /// The host file (its real path).
    #[serde(rename = "hostPath")]
    pub host_path: String,
    /// The image's file: its real (symlink-free) container path.
    #[serde(rename = "containerPath")]
    pub container_path: String,
}

/// A host library added to the container under the private tmpfs and its loader cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Library {
    /// The host file (its real path).
    #[serde(rename = "hostPath")]
    pub host_path: String,
    /// Its SONAME: the file name under `/run/hpc-hooks/lib` and the cache key.
    pub soname: String,
    /// The ld.so.cache flags of its ELF class and machine.
    #[serde(rename = "cacheFlags")]
    pub cache_flags: i32,
}

/// A device cgroup grant (`c 231:* rw` style, with an exact minor).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRule {
    /// `c` or `b`.
    #[serde(rename = "type")]
    pub typ: String,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Cgroup access, a subset of `rwm`.
    pub access: String,
}

impl Plan {
    /// True when the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
            && self.replace.is_empty()
            && self.libraries.is_empty()
            && self.device_rules.is_empty()
    }

    /// Appends `other` (edits as engines merge them, extension lists concatenated).
    pub fn append(&mut self, other: &Plan) {
        self.edits.append(&other.edits);
        self.replace.extend(other.replace.iter().cloned());
        self.libraries.extend(other.libraries.iter().cloned());
        self.device_rules.extend(other.device_rules.iter().cloned());
    }

    /// The plan as YAML (golden files, `--dry-run` output).
    pub fn to_yaml(&self) -> Result<String, crate::ParseError> {
        let mut s = serde_saphyr::to_string(self).map_err(|e| crate::ParseError::Serialize {
            format: crate::Format::Yaml,
            message: e.to_string(),
        })?;
        if !s.ends_with('\n') {
            s.push('\n');
        }
        Ok(s)
    }
}
