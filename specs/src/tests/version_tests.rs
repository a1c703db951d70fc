use super::{base_spec, device};
use crate::types::{IntelRdt, Mount, NetDevice};
use crate::version::{
    check_version, engine_max_version, minimum_version, parse_version, requirements, Version,
    VersionError, KNOWN_VERSIONS,
};

fn min(s: &crate::Spec) -> (Version, Option<String>) {
    let m = minimum_version(s);
    (m.version, m.needed_by.map(|r| r.to_string()))
}

#[test]
fn known_versions_parse_and_order() {
    let strs: Vec<&str> = KNOWN_VERSIONS.iter().map(|v| v.as_str()).collect();
    assert_eq!(
        strs,
        [
            "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0",
            "1.1.0"
        ]
    );
    for w in KNOWN_VERSIONS.windows(2) {
        assert!(w[0] < w[1]);
    }
    for v in KNOWN_VERSIONS {
        assert_eq!(parse_version(v.as_str()).unwrap(), v);
    }
    assert!(Version::V0_2_0.is_legacy());
    assert!(!Version::V0_3_0.is_legacy());
    for bad in ["", "v0.5.0", "0.5", "0.9.0", "1.1.0 ", "2.0.0"] {
        assert!(
            matches!(parse_version(bad), Err(VersionError::Unknown { .. })),
            "{bad}"
        );
    }
}

#[test]
fn table_0_3_0_otherwise() {
    assert_eq!(min(&base_spec()), (Version::V0_3_0, None));
}

#[test]
fn table_0_4_0_mount_type() {
    let mut s = base_spec();
    s.container_edits.mounts.push(Mount {
        host_path: "/a".into(),
        container_path: "/a".into(),
        typ: "bind".into(),
        ..Default::default()
    });
    assert_eq!(
        min(&s),
        (
            Version::V0_4_0,
            Some("containerEdits.mounts[0].type".into())
        )
    );
    s.container_edits.mounts[0].typ.clear();
    assert_eq!(min(&s).0, Version::V0_3_0);
}

#[test]
fn table_0_5_0_digit_name_and_host_path() {
    let mut s = base_spec();
    s.devices.push(device("0", "/dev/x"));
    assert_eq!(
        min(&s),
        (
            Version::V0_5_0,
            Some("devices[1].name (starts with a digit) of device \"0\"".into())
        )
    );
    let mut s = base_spec();
    s.devices[0].container_edits.device_nodes[0].host_path = "/dev/y".into();
    assert_eq!(
        min(&s),
        (
            Version::V0_5_0,
            Some("devices[0].containerEdits.deviceNodes[0].hostPath of device \"gpu0\"".into())
        )
    );
}

#[test]
fn table_0_6_0_annotations_and_dotted_class() {
    let mut s = base_spec();
    s.annotations.insert("a".into(), "b".into());
    assert_eq!(min(&s), (Version::V0_6_0, Some("annotations".into())));
    let mut s = base_spec();
    s.devices[0].annotations.insert("a".into(), "b".into());
    assert_eq!(min(&s).0, Version::V0_6_0);
    let mut s = base_spec();
    s.kind = "vendor.com/gpu.mig".into();
    assert_eq!(
        min(&s),
        (Version::V0_6_0, Some("kind (a '.' in the class)".into()))
    );
    // A '.' in the vendor is fine at 0.3.0.
    assert_eq!(min(&base_spec()).0, Version::V0_3_0);
}

#[test]
fn table_0_7_0_intel_rdt_and_gids() {
    let mut s = base_spec();
    s.container_edits.intel_rdt = Some(IntelRdt {
        clos_id: "c".into(),
        ..Default::default()
    });
    assert_eq!(
        min(&s),
        (Version::V0_7_0, Some("containerEdits.intelRdt".into()))
    );
    let mut s = base_spec();
    s.devices[0].container_edits.additional_gids = vec![44];
    assert_eq!(
        min(&s),
        (
            Version::V0_7_0,
            Some("devices[0].containerEdits.additionalGids of device \"gpu0\"".into())
        )
    );
}

#[test]
fn table_1_1_0_schemata_monitoring_net_devices() {
    let mut s = base_spec();
    s.container_edits.intel_rdt = Some(IntelRdt {
        schemata: vec!["L3:0=f".into()],
        ..Default::default()
    });
    assert_eq!(
        min(&s),
        (
            Version::V1_1_0,
            Some("containerEdits.intelRdt.schemata".into())
        )
    );
    let mut s = base_spec();
    s.container_edits.intel_rdt = Some(IntelRdt {
        enable_monitoring: true,
        ..Default::default()
    });
    assert_eq!(min(&s).0, Version::V1_1_0);
    let mut s = base_spec();
    s.devices[0].container_edits.net_devices = vec![NetDevice {
        host_interface_name: "eth0".into(),
        name: "eth0".into(),
    }];
    assert_eq!(min(&s).0, Version::V1_1_0);
}

#[test]
fn newest_feature_wins_and_first_field_is_reported() {
    let mut s = base_spec();
    s.devices.push(device("1", "/dev/1"));
    s.devices[0].container_edits.additional_gids = vec![1];
    s.container_edits.additional_gids = vec![2];
    assert_eq!(
        min(&s),
        (
            Version::V0_7_0,
            Some("devices[0].containerEdits.additionalGids of device \"gpu0\"".into())
        )
    );
    assert_eq!(requirements(&s).len(), 3);
}

#[test]
fn check_version_messages() {
    let mut s = base_spec();
    s.container_edits.mounts.push(Mount {
        host_path: "/a".into(),
        container_path: "/a".into(),
        typ: "bind".into(),
        ..Default::default()
    });
    assert_eq!(
        check_version(&s).unwrap_err().to_string(),
        "needs cdiVersion 0.4.0, declares 0.3.0: containerEdits.mounts[0].type needs it; declare cdiVersion 0.4.0 or remove that field"
    );
    s.cdi_version = "0.2.0".into();
    s.container_edits.mounts[0].typ.clear();
    assert_eq!(
        check_version(&s).unwrap_err().to_string(),
        "needs cdiVersion 0.3.0, declares 0.2.0: cdiVersion (0.1.0 and 0.2.0 are legacy) needs it; declare cdiVersion 0.3.0 or remove that field"
    );
    s.cdi_version = "1.1.0".into();
    assert_eq!(check_version(&s).unwrap(), Version::V1_1_0);
}

#[test]
fn removed_fields_in_1_1_0() {
    let mut s = base_spec();
    s.cdi_version = "1.1.0".into();
    s.devices[0].container_edits.intel_rdt = Some(IntelRdt {
        enable_cmt: true,
        ..Default::default()
    });
    assert_eq!(
        check_version(&s).unwrap_err().to_string(),
        "devices[0].containerEdits.intelRdt.enableCMT of device \"gpu0\" was removed in cdiVersion 1.1.0, declares 1.1.0; use enableMonitoring with 1.1.0 or declare an older cdiVersion"
    );
    s.cdi_version = "1.0.0".into();
    assert_eq!(check_version(&s).unwrap(), Version::V1_0_0);
}

#[test]
fn engine_limits() {
    assert_eq!(engine_max_version(Version::V0_5_0), None);
    assert_eq!(engine_max_version(Version::V0_3_0), None);
    assert_eq!(
        engine_max_version(Version::V0_6_0).as_deref(),
        Some("podman 4.x accepts at most 0.5.0")
    );
    assert_eq!(
        engine_max_version(Version::V1_1_0).as_deref(),
        Some("podman 4.x accepts at most 0.5.0")
    );
}
