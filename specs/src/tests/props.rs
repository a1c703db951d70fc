//! Property tests: name parsing against the reference regexes, minimum-version soundness,
//! serialization round trips and no panics on arbitrary input.

use proptest::prelude::*;
use regex::Regex;

use crate::names::{parse_qualified_name, validate_class, validate_device_name, validate_vendor};
use crate::parse::{from_json, from_yaml, to_json, to_yaml};
use crate::types::{ContainerEdits, Device, DeviceNode, IntelRdt, Mount, NetDevice, Spec};
use crate::validate::validate;
use crate::version::{check_version, minimum_version, VersionError, KNOWN_VERSIONS};

const VENDOR_RE: &str = r"^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$";
const DEVICE_RE: &str = r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$";

fn vendor_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z]([A-Za-z0-9_.-]{0,8}[A-Za-z0-9])?"
}

fn device_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]([A-Za-z0-9_.:-]{0,8}[A-Za-z0-9])?"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn names_match_reference_regexes(s in "[A-Za-z0-9_.:/=, -]{0,12}") {
        let vendor = Regex::new(VENDOR_RE).unwrap();
        let device = Regex::new(DEVICE_RE).unwrap();
        prop_assert_eq!(validate_vendor(&s).is_ok(), vendor.is_match(&s));
        prop_assert_eq!(validate_class(&s).is_ok(), vendor.is_match(&s));
        prop_assert_eq!(validate_device_name(&s).is_ok(), device.is_match(&s));
    }

    #[test]
    fn valid_qualified_names_round_trip(v in vendor_strategy(), c in vendor_strategy(), n in device_strategy()) {
        let text = format!("{v}/{c}={n}");
        let q = parse_qualified_name(&text).unwrap();
        prop_assert_eq!(&q.vendor, &v);
        prop_assert_eq!(&q.class, &c);
        prop_assert_eq!(&q.name, &n);
        prop_assert_eq!(q.to_string(), text);
    }

    #[test]
    fn arbitrary_qualified_names_never_panic(s in any::<String>()) {
        if let Ok(q) = parse_qualified_name(&s) {
            prop_assert_eq!(q.to_string(), s);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = from_json(&s, None);
        let _ = from_yaml(&s, None);
    }

    #[test]
    fn declaring_the_minimum_validates(spec in spec_strategy()) {
        let min = minimum_version(&spec).version;
        let mut s = spec.clone();
        s.cdi_version = min.to_string();
        prop_assert_eq!(validate(&s, None).map_err(|e| e.to_string()), Ok(min));
        for v in KNOWN_VERSIONS {
            s.cdi_version = v.to_string();
            if v < min {
                let e = check_version(&s).unwrap_err();
                let too_old = matches!(e, VersionError::TooOld { needed, declared, .. } if needed == min && declared == v);
                prop_assert!(too_old, "{:?}", e);
                prop_assert!(validate(&s, None).is_err());
            } else {
                prop_assert!(validate(&s, None).is_ok(), "{} >= {}", v, min);
            }
        }
    }

    #[test]
    fn serialization_round_trips(spec in spec_strategy()) {
        prop_assert_eq!(from_json(&to_json(&spec).unwrap(), None).unwrap(), spec.clone());
        prop_assert_eq!(from_yaml(&to_yaml(&spec).unwrap(), None).unwrap(), spec);
    }
}

/// Valid specs (apart from the version) using a random subset of versioned features.
fn spec_strategy() -> impl Strategy<Value = Spec> {
    let device = (
        prop::sample::select(vec!["gpu", "0", "mig", "9x", "all"]),
        any::<bool>(), // hostPath
        any::<bool>(), // mount type
        any::<bool>(), // annotations
        0u8..4,        // intelRdt: none, plain, schemata, monitoring
        any::<bool>(), // additionalGids
        any::<bool>(), // netDevices
        "[ -~]{0,6}",  // env value (printable ASCII)
    );
    (
        prop::collection::vec(device, 1..4),
        any::<bool>(), // dotted class
        any::<bool>(), // spec annotations
        any::<bool>(), // spec-wide mount with type
    )
        .prop_map(|(devs, dotted, ann, spec_mount)| {
            let mut s = Spec {
                cdi_version: "1.1.0".into(),
                kind: if dotted {
                    "vendor.com/gpu.mig".into()
                } else {
                    "vendor.com/gpu".into()
                },
                ..Default::default()
            };
            if ann {
                s.annotations.insert("example.com/k".into(), "v".into());
            }
            if spec_mount {
                s.container_edits.mounts.push(Mount {
                    host_path: "/h".into(),
                    container_path: "/c".into(),
                    typ: "bind".into(),
                    options: vec!["ro".into()],
                });
            }
            for (i, (prefix, host, mtype, dann, rdt, gids, net, val)) in
                devs.into_iter().enumerate()
            {
                let mut e = ContainerEdits {
                    env: vec![format!("K{i}={val}")],
                    device_nodes: vec![DeviceNode {
                        path: format!("/dev/x{i}"),
                        host_path: if host {
                            format!("/dev/h{i}")
                        } else {
                            String::new()
                        },
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                if mtype {
                    e.mounts.push(Mount {
                        host_path: "/a".into(),
                        container_path: format!("/a/{i}"),
                        typ: "bind".into(),
                        ..Default::default()
                    });
                }
                e.intel_rdt = match rdt {
                    1 => Some(IntelRdt {
                        clos_id: "c".into(),
                        ..Default::default()
                    }),
                    2 => Some(IntelRdt {
                        schemata: vec!["L3:0=f".into()],
                        ..Default::default()
                    }),
                    3 => Some(IntelRdt {
                        enable_monitoring: true,
                        ..Default::default()
                    }),
                    _ => None,
                };
                if gids {
                    e.additional_gids = vec![44];
                }
                if net {
                    e.net_devices = vec![NetDevice {
                        host_interface_name: format!("eth{i}"),
                        name: format!("net{i}"),
                    }];
                }
                let mut d = Device {
                    name: format!("{prefix}{i}"),
                    container_edits: e,
                    ..Default::default()
                };
                if dann {
                    d.annotations.insert("k".into(), "v".into());
                }
                s.devices.push(d);
            }
            s
        })
}
