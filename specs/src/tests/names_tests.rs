use std::collections::BTreeMap;

use crate::names::{
    annotation_key, annotation_value, is_qualified_name, parse_annotations, parse_kind,
    parse_qualified_name, update_annotations, validate_class, validate_device_name,
    validate_vendor, NameError, QualifiedName,
};

#[test]
fn qualified_names() {
    let q = parse_qualified_name("nvidia.com/gpu=0").unwrap();
    assert_eq!(
        q,
        QualifiedName {
            vendor: "nvidia.com".into(),
            class: "gpu".into(),
            name: "0".into()
        }
    );
    assert_eq!(q.kind(), "nvidia.com/gpu");
    assert_eq!(q.to_string(), "nvidia.com/gpu=0");
    assert_eq!(
        "nvidia.com/gpu=0:1".parse::<QualifiedName>().unwrap().name,
        "0:1"
    );
    assert!(is_qualified_name("nvidia.com/gpu=MIG-1234-abcd"));
    assert!(is_qualified_name("a/b=c"));
    for bad in [
        "",
        "nvidia.com/gpu",
        "nvidia.com=0",
        "/gpu=0",
        "nvidia.com/=0",
        "nvidia.com/gpu=",
        "a/b/c=0",
        "nvidia.com/gpu=0=1",
        "nvidia.com/gpu=-0",
        "1a/b=c",
        "a/b=c d",
        "/dev/nvidia0",
    ] {
        assert!(parse_qualified_name(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        parse_qualified_name("nvidia.com/gpu").unwrap_err().to_string(),
        "invalid qualified device name \"nvidia.com/gpu\": expected vendor/class=name, e.g. nvidia.com/gpu=0"
    );
    assert_eq!(
        parse_qualified_name("a/b/c=0").unwrap_err().to_string(),
        "invalid class \"b/c\": it contains '/'; a class starts with a letter, ends with a letter or digit and otherwise holds only letters, digits, '_', '.' and '-' (e.g. gpu)"
    );
}

#[test]
fn name_rules() {
    for ok in ["a", "nvidia.com", "amd_com", "x-y.z9", "A"] {
        assert!(validate_vendor(ok).is_ok(), "{ok}");
        assert!(validate_class(ok).is_ok(), "{ok}");
    }
    for bad in ["", "1a", "a.", "a-", "_a", "a b", "a/b", "é"] {
        assert!(validate_vendor(bad).is_err(), "{bad}");
        assert!(validate_class(bad).is_err(), "{bad}");
    }
    for ok in ["0", "gpu0", "0:1", "MIG-abc", "all", "a_b.c:d-e", "9"] {
        assert!(validate_device_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", ":0", "0:", "a=b", "a/b", "a b", "-a", "a."] {
        assert!(validate_device_name(bad).is_err(), "{bad}");
    }
    assert_eq!(
        validate_vendor("").unwrap_err(),
        NameError::Vendor {
            name: "".into(),
            why: "it is empty".into()
        }
    );
    assert_eq!(parse_kind("nvidia.com/gpu").unwrap(), ("nvidia.com", "gpu"));
}

#[test]
fn annotation_keys_and_values() {
    assert_eq!(
        annotation_key("my-plugin", "dev/1").unwrap(),
        "cdi.k8s.io/my-plugin_dev_1"
    );
    assert_eq!(
        annotation_key("", "x").unwrap_err().to_string(),
        "invalid CDI annotation key \"\": the plugin name is empty; pass the name of the plugin that requests the devices"
    );
    assert!(annotation_key("p", "").is_err());
    assert!(annotation_key("-p", "x").is_err());
    assert!(annotation_key("p", "x-").is_err());
    assert!(annotation_key("p", "a b").is_err());
    let long = "x".repeat(70);
    assert!(annotation_key("p", &long)
        .unwrap_err()
        .to_string()
        .contains("more than 63"));
    assert_eq!(
        annotation_value(&["nvidia.com/gpu=0", "nvidia.com/gpu=1"]).unwrap(),
        "nvidia.com/gpu=0,nvidia.com/gpu=1"
    );
    assert!(annotation_value(&["nope"]).is_err());
}

#[test]
fn annotations_round_trip_and_errors() {
    let mut ann = BTreeMap::new();
    ann.insert("other".to_string(), "x".to_string());
    update_annotations(&mut ann, "plugin", "b", &["vendor.com/c=1"]).unwrap();
    update_annotations(
        &mut ann,
        "plugin",
        "a",
        &["vendor.com/c=0", "vendor.com/c=2"],
    )
    .unwrap();
    let parsed = parse_annotations(&ann).unwrap();
    assert_eq!(parsed.keys, ["cdi.k8s.io/plugin_a", "cdi.k8s.io/plugin_b"]);
    assert_eq!(
        parsed.devices,
        ["vendor.com/c=0", "vendor.com/c=2", "vendor.com/c=1"]
    );
    ann.insert("cdi.k8s.io/bad".into(), "vendor.com/c=0,,x".into());
    assert_eq!(
        parse_annotations(&ann).unwrap_err().to_string(),
        "invalid CDI annotation \"cdi.k8s.io/bad\": \"\" is not a qualified device name (vendor/class=name); the value is a comma-separated list of them"
    );
}
