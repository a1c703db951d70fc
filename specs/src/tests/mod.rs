//! Unit tests of every module (one test binary).

mod apply_tests;
mod compose_tests;
mod names_tests;
mod normalize_tests;
mod parse_tests;
mod props;
mod registry_tests;
mod validate_tests;
mod version_tests;
mod write_tests;

use crate::types::{ContainerEdits, Device, DeviceNode, Spec};

/// A minimal valid 0.3.0 spec with one device `gpu0` (one device node).
pub(crate) fn base_spec() -> Spec {
    Spec {
        cdi_version: "0.3.0".into(),
        kind: "vendor.com/gpu".into(),
        devices: vec![device("gpu0", "/dev/gpu0")],
        ..Default::default()
    }
}

/// A device with one device node at `path`.
pub(crate) fn device(name: &str, path: &str) -> Device {
    Device {
        name: name.into(),
        container_edits: ContainerEdits {
            device_nodes: vec![DeviceNode {
                path: path.into(),
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
    }
}
