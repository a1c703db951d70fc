//! The CDI spec model: every field of CDI 0.3.0 to 1.1.0 with its exact JSON key.
//! Unknown keys are rejected everywhere (engines load specs strictly); empty and absent
//! fields are not serialized, so the output matches what Go's `omitempty` writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Hook stages a CDI hook may name (`hookName`).
pub const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A whole CDI spec file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `cdiVersion`: the CDI version the file declares (kept as text so an unknown
    /// version can be reported instead of failing to parse).
    #[serde(rename = "cdiVersion", default)]
    pub cdi_version: String,
    /// `kind`: `vendor/class`.
    #[serde(default)]
    pub kind: String,
    /// `annotations` (>= 0.6.0).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// `devices`: at least one.
    #[serde(default, deserialize_with = "null_as_default")]
    pub devices: Vec<Device>,
    /// `containerEdits`: edits applied once per spec, with its first requested device.
    #[serde(
        rename = "containerEdits",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "ContainerEdits::is_empty"
    )]
    pub container_edits: ContainerEdits,
}

/// One device of a spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// `name`: the part after `=` in `vendor/class=name`.
    #[serde(default)]
    pub name: String,
    /// `annotations` (>= 0.6.0).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// `containerEdits`: required and not empty.
    #[serde(
        rename = "containerEdits",
        default,
        deserialize_with = "null_as_default"
    )]
    pub container_edits: ContainerEdits,
}

/// `containerEdits`: what a device (or the spec as a whole) changes in a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerEdits {
    /// `env`: `KEY=VALUE` entries.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    /// `deviceNodes`.
    #[serde(
        rename = "deviceNodes",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub device_nodes: Vec<DeviceNode>,
    /// `netDevices` (>= 1.1.0).
    #[serde(
        rename = "netDevices",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub net_devices: Vec<NetDevice>,
    /// `hooks`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hooks: Vec<Hook>,
    /// `mounts`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mounts: Vec<Mount>,
    /// `intelRdt` (>= 0.7.0).
    #[serde(rename = "intelRdt", default, skip_serializing_if = "Option::is_none")]
    pub intel_rdt: Option<IntelRdt>,
    /// `additionalGids` (>= 0.7.0 when not empty).
    #[serde(
        rename = "additionalGids",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_gids: Vec<u32>,
}

impl ContainerEdits {
    /// True when the edits change nothing (what CDI calls "empty device edits").
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.device_nodes.is_empty()
            && self.net_devices.is_empty()
            && self.hooks.is_empty()
            && self.mounts.is_empty()
            && self.intel_rdt.is_none()
            && self.additional_gids.is_empty()
    }

    /// Appends `other` the way engines merge the edits of several devices: lists are
    /// concatenated and a present `intelRdt` replaces the current one.
    pub fn append(&mut self, other: &ContainerEdits) {
        self.env.extend(other.env.iter().cloned());
        self.device_nodes.extend(other.device_nodes.iter().cloned());
        self.net_devices.extend(other.net_devices.iter().cloned());
        self.hooks.extend(other.hooks.iter().cloned());
        self.mounts.extend(other.mounts.iter().cloned());
        if other.intel_rdt.is_some() {
            self.intel_rdt.clone_from(&other.intel_rdt);
        }
        self.additional_gids
            .extend(other.additional_gids.iter().copied());
    }

    /// [`append`](Self::append) taking `other` by value: its entries are moved, not copied.
    pub fn append_owned(&mut self, other: ContainerEdits) {
        self.env.extend(other.env);
        self.device_nodes.extend(other.device_nodes);
        self.net_devices.extend(other.net_devices);
        self.hooks.extend(other.hooks);
        self.mounts.extend(other.mounts);
        if other.intel_rdt.is_some() {
            self.intel_rdt = other.intel_rdt;
        }
        self.additional_gids.extend(other.additional_gids);
    }
}

/// `deviceNodes[]`: a device node to create in the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceNode {
    /// `path` in the container (required).
    #[serde(default)]
    pub path: String,
    /// `hostPath` (>= 0.5.0); empty means the same as `path`.
    #[serde(rename = "hostPath", default, skip_serializing_if = "String::is_empty")]
    pub host_path: String,
    /// `type`: `b`, `c`, `u`, `p` or empty (then taken from the host node).
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub typ: String,
    /// `major`; absent or 0 means "from the host node".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    /// `minor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    /// `fileMode`, a decimal integer (438 = 0o666).
    #[serde(rename = "fileMode", default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    /// `permissions`: a subset of `rwm`, or `none`; empty means `rwm`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub permissions: String,
    /// `uid` of the node in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// `gid` of the node in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// `mounts[]`: a bind (or other) mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// `hostPath` (required).
    #[serde(rename = "hostPath", default)]
    pub host_path: String,
    /// `containerPath` (required).
    #[serde(rename = "containerPath", default)]
    pub container_path: String,
    /// `options`, e.g. `ro`, `nosuid`, `nodev`, `bind`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub options: Vec<String>,
    /// `type` (>= 0.4.0), e.g. `bind`.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub typ: String,
}

/// `hooks[]`: an OCI hook the engine adds to the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// `hookName`: one of [`HOOK_NAMES`].
    #[serde(rename = "hookName", default)]
    pub hook_name: String,
    /// `path` of the executable (required).
    #[serde(default)]
    pub path: String,
    /// `args`, including `argv[0]`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<String>,
    /// `env`: `KEY=VALUE` entries.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    /// `timeout` in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// `intelRdt` (>= 0.7.0): the container's Intel RDT class of service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntelRdt {
    /// `closID`.
    #[serde(rename = "closID", default, skip_serializing_if = "String::is_empty")]
    pub clos_id: String,
    /// `l3CacheSchema`.
    #[serde(
        rename = "l3CacheSchema",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub l3_cache_schema: String,
    /// `memBwSchema`.
    #[serde(
        rename = "memBwSchema",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub mem_bw_schema: String,
    /// `schemata` (>= 1.1.0).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub schemata: Vec<String>,
    /// `enableMonitoring` (>= 1.1.0).
    #[serde(rename = "enableMonitoring", default, skip_serializing_if = "is_false")]
    pub enable_monitoring: bool,
    /// `enableCMT` (0.7.0 to 1.0.0; removed in 1.1.0).
    #[serde(rename = "enableCMT", default, skip_serializing_if = "is_false")]
    pub enable_cmt: bool,
    /// `enableMBM` (0.7.0 to 1.0.0; removed in 1.1.0).
    #[serde(rename = "enableMBM", default, skip_serializing_if = "is_false")]
    pub enable_mbm: bool,
}

/// `netDevices[]` (>= 1.1.0): a host network interface moved into the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetDevice {
    /// `hostInterfaceName`.
    #[serde(rename = "hostInterfaceName", default)]
    pub host_interface_name: String,
    /// `name` inside the container.
    #[serde(default)]
    pub name: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Reads an explicit `null` (e.g. a YAML key with no value) as the default value.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// What a host device node is, read from its metadata (an `fstat` of the handle the caller
/// opened): the one place type letters, numbers and mode come from for every engine and
/// for cdi-gen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostNode {
    /// `c`, `b` or `p`.
    pub typ: &'static str,
    /// Major number (0 for a FIFO).
    pub major: i64,
    /// Minor number (0 for a FIFO).
    pub minor: i64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
}

impl HostNode {
    /// The node `md` describes, or `None` when it is not a character or block device or
    /// a FIFO.
    pub fn from_metadata(md: &std::fs::Metadata) -> Option<HostNode> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let ft = md.file_type();
        let typ = if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else if ft.is_fifo() {
            "p"
        } else {
            return None;
        };
        let (major, minor) = if typ == "p" {
            (0, 0)
        } else {
            dev_major_minor(md.rdev())
        };
        Some(HostNode {
            typ,
            major,
            minor,
            mode: md.mode() & 0o7777,
        })
    }

    /// True for a character or block device (what a cgroup rule can name).
    pub fn is_device(&self) -> bool {
        self.typ != "p"
    }
}

/// Linux `dev_t` decoding (glibc's `gnu_dev_major`/`gnu_dev_minor`).
pub fn dev_major_minor(rdev: u64) -> (i64, i64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as i64, minor as i64)
}
