use std::path::Path;

use super::base_spec;
use crate::parse::{
    from_json, from_yaml, load_file, read_file, to_json, to_yaml, Format, ParseError,
};
use crate::types::{ContainerEdits, Device, DeviceNode, Hook, IntelRdt, Mount, NetDevice, Spec};

/// A spec using every field of the model.
pub(crate) fn full_spec() -> Spec {
    let edits = ContainerEdits {
        env: vec!["A=1".into(), "B=x: y".into(), "C=".into()],
        device_nodes: vec![DeviceNode {
            path: "/dev/nvidia0".into(),
            host_path: "/dev/nvidia0".into(),
            typ: "c".into(),
            major: Some(195),
            minor: Some(0),
            file_mode: Some(438),
            permissions: "rw".into(),
            uid: Some(0),
            gid: Some(44),
        }],
        net_devices: vec![NetDevice {
            host_interface_name: "eth1".into(),
            name: "net1".into(),
        }],
        hooks: vec![Hook {
            hook_name: "createContainer".into(),
            path: "/usr/bin/hook".into(),
            args: vec!["hook".into(), "update-ldcache".into()],
            env: vec!["K=V".into()],
            timeout: Some(10),
        }],
        mounts: vec![Mount {
            host_path: "/usr/lib/libcuda.so.1".into(),
            container_path: "/usr/lib/libcuda.so.1".into(),
            options: vec!["ro".into(), "nosuid".into(), "nodev".into(), "bind".into()],
            typ: "bind".into(),
        }],
        intel_rdt: Some(IntelRdt {
            clos_id: "clos".into(),
            l3_cache_schema: "L3:0=f".into(),
            mem_bw_schema: "MB:0=50".into(),
            schemata: vec!["L3:0=f".into()],
            enable_monitoring: true,
            enable_cmt: false,
            enable_mbm: false,
        }),
        additional_gids: vec![44, 45],
    };
    let mut s = Spec {
        cdi_version: "1.1.0".into(),
        kind: "nvidia.com/gpu".into(),
        devices: vec![
            Device {
                name: "0".into(),
                container_edits: edits.clone(),
                ..Default::default()
            },
            Device {
                name: "0:1".into(),
                container_edits: edits.clone(),
                ..Default::default()
            },
        ],
        container_edits: edits,
        ..Default::default()
    };
    s.annotations.insert("example.com/a".into(), "true".into());
    s.devices[0]
        .annotations
        .insert("example.com/b".into(), "1".into());
    s
}

#[test]
fn json_round_trip() {
    let s = full_spec();
    let text = to_json(&s).unwrap();
    assert!(text.ends_with("}\n"));
    assert_eq!(from_json(&text, None).unwrap(), s);
    assert_eq!(to_json(&s).unwrap(), text, "deterministic");
    // Exact keys.
    for key in [
        "\"cdiVersion\"",
        "\"kind\"",
        "\"annotations\"",
        "\"devices\"",
        "\"containerEdits\"",
        "\"env\"",
        "\"deviceNodes\"",
        "\"netDevices\"",
        "\"hooks\"",
        "\"mounts\"",
        "\"intelRdt\"",
        "\"additionalGids\"",
        "\"hostPath\"",
        "\"type\"",
        "\"major\"",
        "\"minor\"",
        "\"fileMode\"",
        "\"permissions\"",
        "\"uid\"",
        "\"gid\"",
        "\"containerPath\"",
        "\"options\"",
        "\"hookName\"",
        "\"args\"",
        "\"timeout\"",
        "\"closID\"",
        "\"l3CacheSchema\"",
        "\"memBwSchema\"",
        "\"schemata\"",
        "\"enableMonitoring\"",
        "\"hostInterfaceName\"",
    ] {
        assert!(text.contains(key), "{key} missing");
    }
}

#[test]
fn yaml_round_trip() {
    let s = full_spec();
    let text = to_yaml(&s).unwrap();
    assert_eq!(from_yaml(&text, None).unwrap(), s);
    assert_eq!(to_yaml(&s).unwrap(), text, "deterministic");
    // Names that YAML would read as numbers are quoted.
    assert!(text.contains("name: \"0\""), "{text}");
    assert!(text.contains("cdiVersion: \"1.1.0\""), "{text}");
    assert!(text.starts_with("cdiVersion: "), "{text}");
}

#[test]
fn empty_fields_are_not_written() {
    let text = to_json(&base_spec()).unwrap();
    assert_eq!(
        text,
        "{\n  \"cdiVersion\": \"0.3.0\",\n  \"kind\": \"vendor.com/gpu\",\n  \"devices\": [\n    {\n      \"name\": \"gpu0\",\n      \"containerEdits\": {\n        \"deviceNodes\": [\n          {\n            \"path\": \"/dev/gpu0\"\n          }\n        ]\n      }\n    }\n  ]\n}\n"
    );
    let yaml = to_yaml(&base_spec()).unwrap();
    assert_eq!(
        yaml,
        "cdiVersion: \"0.3.0\"\nkind: vendor.com/gpu\ndevices:\n- name: gpu0\n  containerEdits:\n    deviceNodes:\n    - path: /dev/gpu0\n"
    );
}

#[test]
fn unknown_key_json_names_key_and_file() {
    let text = r#"{"cdiVersion":"0.3.0","kind":"a/b","devices":[{"name":"x","containerEdits":{"deviceNodes":[{"path":"/dev/x","hostpath":"/y"}]}}]}"#;
    let e = from_json(text, Some(Path::new("/etc/cdi/x.json"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/cdi/x.json: not a valid CDI JSON spec: unknown field `hostpath`, expected one of `path`, `hostPath`, `type`, `major`, `minor`, `fileMode`, `permissions`, `uid`, `gid` at line 1 column 118; fix the spec (loaders are strict: unknown keys and wrong value types are errors)"
    );
    // Unknown keys at every level.
    for bad in [
        r#"{"cdiVersion":"0.3.0","kind":"a/b","devices":[],"extra":1}"#,
        r#"{"devices":[{"name":"x","containerEdits":{},"foo":1}]}"#,
        r#"{"containerEdits":{"bogus":[]}}"#,
        r#"{"containerEdits":{"mounts":[{"hostPath":"/a","containerPath":"/a","flags":[]}]}}"#,
        r#"{"containerEdits":{"hooks":[{"hookName":"poststop","path":"/a","when":{}}]}}"#,
        r#"{"containerEdits":{"intelRdt":{"closid":"x"}}}"#,
        r#"{"containerEdits":{"netDevices":[{"hostInterfaceName":"a","name":"b","mac":"c"}]}}"#,
        r#"{"containerEdits":{"additionalGIDs":[1]}}"#,
    ] {
        let e = from_json(bad, None).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{bad}: {e}");
        assert!(e.starts_with("<input>: "), "{e}");
    }
}

#[test]
fn unknown_key_yaml_names_key_and_file() {
    let text = "cdiVersion: 0.3.0\nkind: a/b\ndevices:\n- name: x\n  containerEdits:\n    additionalGIDs: [1]\n";
    let e = from_yaml(text, Some(Path::new("/etc/cdi/x.yaml"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/cdi/x.yaml: not a valid CDI YAML spec: unknown field `additionalGIDs`, expected one of env, deviceNodes, netDevices, hooks, mounts, intelRdt, additionalGids at line 6, column 5; fix the spec (loaders are strict: unknown keys and wrong value types are errors)"
    );
    match e {
        ParseError::Yaml { snippet, .. } => {
            assert!(snippet.contains("/etc/cdi/x.yaml"), "{snippet}")
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "cdiVersion: 0.3.0\nextra: 1\n",
        "devices:\n- name: x\n  bogus: 1\n",
        "containerEdits:\n  intelRdt:\n    enableCmt: true\n",
    ] {
        let e = from_yaml(bad, None).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{bad}: {e}");
    }
}

#[test]
fn yaml_strictness_and_nulls() {
    // Duplicate keys are errors.
    let e = from_yaml("kind: a/b\nkind: c/d\n", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate mapping key: kind"), "{e}");
    // Wrong types are errors.
    assert!(from_yaml("devices: 3\n", None).is_err());
    assert!(from_yaml("containerEdits:\n  additionalGids: [-1]\n", None).is_err());
    assert!(from_yaml("- a\n", None).is_err());
    assert!(from_yaml("{{{", None).is_err());
    // Keys without a value read as empty.
    let s = from_yaml(
        "cdiVersion: 0.3.0\nkind: a/b\nannotations:\ndevices:\n- name: x\n  containerEdits:\n    env:\n    deviceNodes:\n    - path: /dev/x\n      \n",
        None,
    )
    .unwrap();
    assert!(s.annotations.is_empty());
    assert!(s.devices[0].container_edits.env.is_empty());
}

#[test]
fn json_syntax_error() {
    let e = from_json("{", Some(Path::new("f.json")))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("f.json: not a valid CDI JSON spec: EOF while parsing"),
        "{e}"
    );
}

#[test]
fn format_from_extension() {
    assert_eq!(
        Format::from_path(Path::new("/a/b.json")).unwrap(),
        Format::Json
    );
    assert_eq!(
        Format::from_path(Path::new("/a/b.yaml")).unwrap(),
        Format::Yaml
    );
    assert_eq!(
        Format::from_path(Path::new("/a/b.yml")).unwrap_err().to_string(),
        "/a/b.yml: not a CDI spec file name: engines load only *.json and *.yaml (not .yml); rename it"
    );
    assert!(Format::from_path(Path::new("/a/b")).is_err());
    assert!(Format::from_path(Path::new("/a/b.JSON")).is_err());
}

#[test]
fn read_and_load_files() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("s.yaml");
    std::fs::write(&yaml, to_yaml(&full_spec()).unwrap()).unwrap();
    assert_eq!(read_file(&yaml).unwrap(), full_spec());
    let (_, v) = load_file(&yaml).unwrap();
    assert_eq!(v, crate::Version::V1_1_0);

    let json = dir.path().join("s.json");
    std::fs::write(&json, to_json(&full_spec()).unwrap()).unwrap();
    assert_eq!(read_file(&json).unwrap(), full_spec());

    let yml = dir.path().join("s.yml");
    std::fs::write(&yml, "x").unwrap();
    assert!(matches!(read_file(&yml), Err(ParseError::Extension { .. })));

    let missing = dir.path().join("none.yaml");
    let e = read_file(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: cannot read the spec: ", missing.display())),
        "{e}"
    );

    // Parses but does not validate: load_file reports the validation error with the file.
    let mut bad = full_spec();
    bad.cdi_version = "0.5.0".into();
    std::fs::write(&yaml, to_yaml(&bad).unwrap()).unwrap();
    assert!(read_file(&yaml).is_ok());
    let e = load_file(&yaml).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: cdiVersion: needs cdiVersion 1.1.0, declares 0.5.0",
            yaml.display()
        )),
        "{e}"
    );

    // Not UTF-8.
    std::fs::write(&yaml, [0xff, 0xfe, 0x00]).unwrap();
    assert!(read_file(&yaml).is_err());
}
