//! Deterministic ordering for generators: devices sorted by name, device nodes and mounts
//! by path depth then path. Hooks and env keep their order (it is meaningful), so the same
//! facts always serialize to byte-identical files.

use crate::compose::mount_depth;
use crate::types::{ContainerEdits, Spec};

/// Sorts devices by name (byte order).
pub fn sort_devices(spec: &mut Spec) {
    spec.devices.sort_by(|a, b| a.name.cmp(&b.name));
}

/// Sorts device nodes by (depth of `path`, `path`) and mounts by (depth of
/// `containerPath`, `containerPath`); stable, so equal keys keep their order.
pub fn sort_edits(edits: &mut ContainerEdits) {
    edits
        .device_nodes
        .sort_by(|a, b| (mount_depth(&a.path), &a.path).cmp(&(mount_depth(&b.path), &b.path)));
    edits.mounts.sort_by(|a, b| {
        (mount_depth(&a.container_path), &a.container_path)
            .cmp(&(mount_depth(&b.container_path), &b.container_path))
    });
}

/// Sorts devices and every device's and the spec-wide edits.
pub fn canonicalize(spec: &mut Spec) {
    sort_devices(spec);
    for d in &mut spec.devices {
        sort_edits(&mut d.container_edits);
    }
    sort_edits(&mut spec.container_edits);
}
