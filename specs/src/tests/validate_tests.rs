use std::path::Path;

use super::{base_spec, device};
use crate::types::{ContainerEdits, DeviceNode, Hook, IntelRdt, Mount, NetDevice};
use crate::validate::{problems, validate, ValidateError};
use crate::version::Version;

const FILE: &str = "/etc/cdi/v.yaml";

fn err(spec: &crate::Spec) -> String {
    validate(spec, Some(Path::new(FILE)))
        .expect_err("spec should be invalid")
        .to_string()
}

#[test]
fn base_is_valid() {
    assert_eq!(validate(&base_spec(), None).unwrap(), Version::V0_3_0);
    assert!(problems(&base_spec(), None).is_empty());
}

#[test]
fn missing_version() {
    let mut s = base_spec();
    s.cdi_version.clear();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: cdiVersion: required field is missing or empty; declare the minimum version the content needs, e.g. cdiVersion: 0.5.0"
    );
}

#[test]
fn unknown_version() {
    let mut s = base_spec();
    s.cdi_version = "0.9.0".into();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: cdiVersion: cdiVersion \"0.9.0\" is not a known CDI version (known: 0.3.0 0.4.0 0.5.0 0.6.0 0.7.0 0.8.0 1.0.0 1.1.0); declare the minimum the content needs"
    );
}

#[test]
fn version_too_old_names_field_and_device() {
    let mut s = base_spec();
    s.devices[0].container_edits.device_nodes[0].host_path = "/dev/x".into();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: cdiVersion: needs cdiVersion 0.5.0, declares 0.3.0: devices[0].containerEdits.deviceNodes[0].hostPath of device \"gpu0\" needs it; declare cdiVersion 0.5.0 or remove that field"
    );
}

#[test]
fn missing_and_bad_kind() {
    let mut s = base_spec();
    s.kind.clear();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: kind: required field is missing or empty; set kind to vendor/class, e.g. nvidia.com/gpu"
    );
    s.kind = "vendor.com".into();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: kind: invalid kind \"vendor.com\": expected vendor/class, e.g. nvidia.com/gpu"
    );
    s.kind = "1vendor/gpu".into();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: kind: invalid vendor \"1vendor\": it starts with '1', not a letter; a vendor starts with a letter, ends with a letter or digit and otherwise holds only letters, digits, '_', '.' and '-' (e.g. nvidia.com)"
    );
    s.kind = "vendor/gpu-".into();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: kind: invalid class \"gpu-\": it ends with '-', not a letter or digit; a class starts with a letter, ends with a letter or digit and otherwise holds only letters, digits, '_', '.' and '-' (e.g. gpu)"
    );
}

#[test]
fn no_devices() {
    let mut s = base_spec();
    s.devices.clear();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: devices: the spec has no devices; a spec needs at least one device"
    );
}

#[test]
fn device_name_rules() {
    let mut s = base_spec();
    s.devices[0].name.clear();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: devices[0].name: required field is missing or empty; name the device, e.g. 0, gpu0 or all"
    );
    s.devices[0].name = "gpu 0".into();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu 0\": devices[0].name: invalid device name \"gpu 0\": it contains ' '; a device name starts and ends with a letter or digit and otherwise holds only letters, digits, '_', '.', ':' and '-' (e.g. 0, gpu0, 0:1)"
    );
}

#[test]
fn duplicate_device() {
    let mut s = base_spec();
    s.devices.push(device("gpu0", "/dev/gpu1"));
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu0\": devices[1].name: device name \"gpu0\" is already used by devices[0]; device names must be unique within a spec"
    );
}

#[test]
fn empty_device_edits() {
    let mut s = base_spec();
    s.devices[0].container_edits = ContainerEdits::default();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu0\": devices[0].containerEdits: the device's edits are empty; give it at least one env entry, device node, mount, hook, netDevice, intelRdt or additionalGids"
    );
}

#[test]
fn env_rules() {
    let mut s = base_spec();
    s.devices[0].container_edits.env = vec!["A=1".into(), "NOEQUALS".into()];
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu0\": devices[0].containerEdits.env[1]: invalid environment entry \"NOEQUALS\": it has no '='; write it as KEY=VALUE with a non-empty KEY"
    );
    s.devices[0].container_edits.env = vec!["=1".into()];
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu0\": devices[0].containerEdits.env[0]: invalid environment entry \"=1\": the key before '=' is empty; write it as KEY=VALUE with a non-empty KEY"
    );
    // Spec-wide env names no device.
    let mut s = base_spec();
    s.container_edits.env = vec!["X".into()];
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: containerEdits.env[0]: invalid environment entry \"X\": it has no '='; write it as KEY=VALUE with a non-empty KEY"
    );
    // An empty value is fine.
    let mut s = base_spec();
    s.container_edits.env = vec!["X=".into()];
    assert!(validate(&s, None).is_ok());
}

#[test]
fn device_node_rules() {
    let mut s = base_spec();
    s.devices[0].container_edits.device_nodes[0].path.clear();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu0\": devices[0].containerEdits.deviceNodes[0].path: required field is missing or empty; set path to the node's path in the container, e.g. /dev/nvidia0"
    );
    let mut s = base_spec();
    s.devices[0].container_edits.device_nodes[0].typ = "x".into();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu0\": devices[0].containerEdits.deviceNodes[0].type: invalid device node type \"x\"; use b, c, u or p, or leave it out to take the host node's type"
    );
    for t in ["b", "c", "u", "p", ""] {
        s.devices[0].container_edits.device_nodes[0].typ = t.into();
        assert!(validate(&s, None).is_ok(), "type {t:?}");
    }
    s.devices[0].container_edits.device_nodes[0].permissions = "rwx".into();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu0\": devices[0].containerEdits.deviceNodes[0].permissions: invalid device node permissions \"rwx\"; use letters from r, w and m (e.g. rw), or none"
    );
    for p in ["r", "rw", "rwm", "m", "none", ""] {
        s.devices[0].container_edits.device_nodes[0].permissions = p.into();
        assert!(validate(&s, None).is_ok(), "permissions {p:?}");
    }
}

#[test]
fn hook_rules() {
    let mut s = base_spec();
    s.devices[0].container_edits.hooks = vec![Hook {
        hook_name: "preStart".into(),
        path: "/bin/true".into(),
        ..Default::default()
    }];
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu0\": devices[0].containerEdits.hooks[0].hookName: invalid hook name \"preStart\"; use one of prestart, createRuntime, createContainer, startContainer, poststart, poststop"
    );
    s.devices[0].container_edits.hooks[0].hook_name = "createContainer".into();
    s.devices[0].container_edits.hooks[0].path.clear();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu0\": devices[0].containerEdits.hooks[0].path: required field is missing or empty; set path to the hook executable on the host"
    );
    s.devices[0].container_edits.hooks[0].path = "/bin/true".into();
    s.devices[0].container_edits.hooks[0].env = vec!["BAD".into()];
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu0\": devices[0].containerEdits.hooks[0].env[0]: invalid environment entry \"BAD\": it has no '='; write it as KEY=VALUE with a non-empty KEY"
    );
    for name in crate::types::HOOK_NAMES {
        s.devices[0].container_edits.hooks[0].hook_name = name.into();
        s.devices[0].container_edits.hooks[0].env.clear();
        assert!(validate(&s, None).is_ok(), "{name}");
    }
}

#[test]
fn mount_rules() {
    let mut s = base_spec();
    s.container_edits.mounts = vec![Mount {
        host_path: "".into(),
        container_path: "/x".into(),
        ..Default::default()
    }];
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: containerEdits.mounts[0].hostPath: required field is missing or empty; set hostPath to the path to mount from the host"
    );
    s.container_edits.mounts[0].host_path = "/x".into();
    s.container_edits.mounts[0].container_path.clear();
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: containerEdits.mounts[0].containerPath: required field is missing or empty; set containerPath to the mount point in the container"
    );
}

#[test]
fn intel_rdt_and_net_devices() {
    let mut s = base_spec();
    s.cdi_version = "1.1.0".into();
    s.container_edits.intel_rdt = Some(IntelRdt {
        clos_id: "a/b".into(),
        ..Default::default()
    });
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: containerEdits.intelRdt.closID: invalid closID \"a/b\": it must be a plain resctrl group name (no '/', newline, '.' or '..')"
    );
    s.container_edits.intel_rdt = None;
    s.container_edits.net_devices = vec![
        NetDevice {
            host_interface_name: "eth1".into(),
            name: "net1".into(),
        },
        NetDevice {
            host_interface_name: "eth1".into(),
            name: "net2".into(),
        },
    ];
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: containerEdits.netDevices[1].hostInterfaceName: host interface \"eth1\" is already moved by another netDevices entry; each host interface can be moved once"
    );
    s.container_edits.net_devices[1] = NetDevice {
        host_interface_name: "eth2".into(),
        name: "".into(),
    };
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: containerEdits.netDevices[1].name: required field is missing or empty; set name to the interface name in the container, e.g. eth1"
    );
}

#[test]
fn annotation_keys() {
    let mut s = base_spec();
    s.cdi_version = "0.6.0".into();
    s.annotations.insert("example.com/ok".into(), "v".into());
    s.annotations.insert("plain".into(), "v".into());
    assert!(validate(&s, None).is_ok());
    s.devices[0]
        .annotations
        .insert("Bad_Prefix/x".into(), "v".into());
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: device \"gpu0\": devices[0].annotations[\"Bad_Prefix/x\"]: invalid annotation key \"Bad_Prefix/x\": prefix \"Bad_Prefix\" is not a lowercase DNS subdomain (e.g. example.com) of at most 253 characters"
    );
    s.devices[0].annotations.clear();
    s.annotations.insert("-x".into(), "v".into());
    assert_eq!(
        err(&s),
        "/etc/cdi/v.yaml: annotations[\"-x\"]: invalid annotation key \"-x\": name \"-x\" must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    );
}

#[test]
fn problems_lists_everything_and_no_file_says_spec() {
    let mut s = base_spec();
    s.kind = "bad".into();
    s.devices[0].container_edits.env = vec!["X".into()];
    s.devices.push(device("gpu0", "/dev/g"));
    let all = problems(&s, None);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(all[0].to_string().starts_with("spec: kind: "));
    assert!(matches!(all[1], ValidateError::Env { .. }));
    assert!(matches!(all[2], ValidateError::DuplicateDevice { .. }));
    assert_eq!(all[2].location().device.as_deref(), Some("gpu0"));
    assert_eq!(all[2].location().field, "devices[1].name");
}

#[test]
fn device_node_minimal_fields() {
    let mut s = base_spec();
    s.devices[0].container_edits.device_nodes = vec![DeviceNode {
        path: "/dev/a".into(),
        typ: "c".into(),
        major: Some(1),
        minor: Some(3),
        file_mode: Some(0o666),
        uid: Some(0),
        gid: Some(0),
        permissions: "rw".into(),
        ..Default::default()
    }];
    assert!(validate(&s, None).is_ok());
}
