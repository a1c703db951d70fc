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

// --- minimum version against the reference table --------------------------------------
//
// An independent restatement of the table in the CDI reference (shared/reference/cdi.md,
// "Minimum required version"): each feature with the first cdiVersion that allows it,
// written as the reference writes it (strings, not this crate's `Version` constants).
// Random specs use random subsets of these features, spec-wide and per device, mixed with
// look-alikes the table does not count (a '.' in the vendor, digits inside a name, mounts
// without type, nodes without hostPath, hooks); the computed minimum must be the newest
// version over the features used, and every older declared version must be rejected with
// an error that names the version needed.

/// Features of the spec itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpecFeature {
    /// Top-level `annotations`.
    Annotations,
    /// A `.` in the class part of `kind`.
    DottedClass,
}

/// Features of a device (its name and annotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceFeature {
    /// A device name starting with a digit.
    DigitName,
    /// Device `annotations`.
    Annotations,
}

/// Features of a `containerEdits` (spec-wide or a device's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EditFeature {
    NodeHostPath,
    MountType,
    RdtClosId,
    RdtL3CacheSchema,
    RdtMemBwSchema,
    RdtSchemata,
    RdtEnableMonitoring,
    /// Removed in 1.1.0.
    RdtEnableCmt,
    /// Removed in 1.1.0.
    RdtEnableMbm,
    AdditionalGids,
    NetDevices,
}

const EDIT_FEATURES: [EditFeature; 11] = [
    EditFeature::NodeHostPath,
    EditFeature::MountType,
    EditFeature::RdtClosId,
    EditFeature::RdtL3CacheSchema,
    EditFeature::RdtMemBwSchema,
    EditFeature::RdtSchemata,
    EditFeature::RdtEnableMonitoring,
    EditFeature::RdtEnableCmt,
    EditFeature::RdtEnableMbm,
    EditFeature::AdditionalGids,
    EditFeature::NetDevices,
];

/// The reference table, verbatim: 0.3.0 "otherwise"; 0.4.0 any mounts[].type; 0.5.0 a
/// device name starting with a digit or any deviceNodes[].hostPath; 0.6.0 any annotations
/// or a '.' in the class; 0.7.0 any intelRdt or non-empty additionalGids; 1.1.0
/// intelRdt.schemata or enableMonitoring, or any netDevices.
const TABLE_OTHERWISE: &str = "0.3.0";

fn table_spec(f: SpecFeature) -> &'static str {
    match f {
        SpecFeature::Annotations | SpecFeature::DottedClass => "0.6.0",
    }
}

fn table_device(f: DeviceFeature) -> &'static str {
    match f {
        DeviceFeature::DigitName => "0.5.0",
        DeviceFeature::Annotations => "0.6.0",
    }
}

fn table_edit(f: EditFeature) -> &'static str {
    match f {
        EditFeature::MountType => "0.4.0",
        EditFeature::NodeHostPath => "0.5.0",
        // "any intelRdt": every intelRdt field needs at least 0.7.0.
        EditFeature::RdtClosId
        | EditFeature::RdtL3CacheSchema
        | EditFeature::RdtMemBwSchema
        | EditFeature::RdtEnableCmt
        | EditFeature::RdtEnableMbm
        | EditFeature::AdditionalGids => "0.7.0",
        EditFeature::RdtSchemata | EditFeature::RdtEnableMonitoring | EditFeature::NetDevices => {
            "1.1.0"
        }
    }
}

/// "1.1.0 removed enableCMT/enableMBM".
fn removed_in_1_1_0(f: EditFeature) -> bool {
    matches!(f, EditFeature::RdtEnableCmt | EditFeature::RdtEnableMbm)
}

/// A spec's features, as the strategy chose them.
#[derive(Debug, Clone)]
struct Features {
    spec: Vec<SpecFeature>,
    spec_edits: Vec<EditFeature>,
    /// Per device: its own features and its edits' features.
    devices: Vec<(Vec<DeviceFeature>, Vec<EditFeature>)>,
}

impl Features {
    /// Every table entry the spec uses.
    fn versions(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.spec.iter().map(|&f| table_spec(f)).collect();
        v.extend(self.spec_edits.iter().map(|&f| table_edit(f)));
        for (dev, edits) in &self.devices {
            v.extend(dev.iter().map(|&f| table_device(f)));
            v.extend(edits.iter().map(|&f| table_edit(f)));
        }
        v
    }

    /// The expected minimum: the newest table entry used, "0.3.0" otherwise.
    fn expected_minimum(&self) -> crate::version::Version {
        self.versions()
            .into_iter()
            .map(|s| s.parse::<crate::version::Version>().unwrap())
            .chain([TABLE_OTHERWISE.parse().unwrap()])
            .max()
            .unwrap()
    }

    fn uses_removed(&self) -> bool {
        self.spec_edits
            .iter()
            .chain(self.devices.iter().flat_map(|(_, e)| e))
            .any(|&f| removed_in_1_1_0(f))
    }
}

/// A random subset of `all` (each feature with probability 0.3).
fn subset<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = Vec<T>> {
    prop::collection::vec(prop::bool::weighted(0.3), all.len()).prop_map(move |pick| {
        all.iter()
            .zip(pick)
            .filter(|(_, p)| *p)
            .map(|(f, _)| *f)
            .collect()
    })
}

/// The features of `v` whose table entry is at most `cap`: with a random cap, every
/// minimum is as likely as 1.1.0 (which half of the features alone would make almost sure).
fn capped<T: Copy>(v: Vec<T>, table: fn(T) -> &'static str, cap: &str) -> Vec<T> {
    let cap: crate::version::Version = cap.parse().unwrap();
    v.into_iter()
        .filter(|&f| table(f).parse::<crate::version::Version>().unwrap() <= cap)
        .collect()
}

/// Edits with exactly `features` (plus look-alikes that need nothing), never empty.
fn edits_with(features: &[EditFeature], noise: u8, i: usize) -> ContainerEdits {
    let mut e = ContainerEdits {
        env: vec![format!("K{i}=v")],
        ..Default::default()
    };
    // Look-alikes: a node without hostPath, a mount without type, a hook.
    if noise & 1 != 0 {
        e.device_nodes.push(DeviceNode {
            path: format!("/dev/plain{i}"),
            ..Default::default()
        });
    }
    if noise & 2 != 0 {
        e.mounts.push(Mount {
            host_path: "/h".into(),
            container_path: format!("/plain/{i}"),
            options: vec!["ro".into()],
            ..Default::default()
        });
    }
    if noise & 4 != 0 {
        e.hooks.push(crate::types::Hook {
            hook_name: "createContainer".into(),
            path: "/usr/bin/true".into(),
            ..Default::default()
        });
    }
    let mut rdt: Option<IntelRdt> = None;
    for &f in features {
        match f {
            EditFeature::NodeHostPath => e.device_nodes.push(DeviceNode {
                path: format!("/dev/x{i}"),
                host_path: format!("/dev/h{i}"),
                ..Default::default()
            }),
            EditFeature::MountType => e.mounts.push(Mount {
                host_path: "/a".into(),
                container_path: format!("/typed/{i}"),
                typ: "bind".into(),
                ..Default::default()
            }),
            EditFeature::RdtClosId => {
                rdt.get_or_insert_with(Default::default).clos_id = "grp".into()
            }
            EditFeature::RdtL3CacheSchema => {
                rdt.get_or_insert_with(Default::default).l3_cache_schema = "L3:0=ff".into()
            }
            EditFeature::RdtMemBwSchema => {
                rdt.get_or_insert_with(Default::default).mem_bw_schema = "MB:0=70".into()
            }
            EditFeature::RdtSchemata => {
                rdt.get_or_insert_with(Default::default).schemata = vec!["L3:0=f".into()]
            }
            EditFeature::RdtEnableMonitoring => {
                rdt.get_or_insert_with(Default::default).enable_monitoring = true
            }
            EditFeature::RdtEnableCmt => rdt.get_or_insert_with(Default::default).enable_cmt = true,
            EditFeature::RdtEnableMbm => rdt.get_or_insert_with(Default::default).enable_mbm = true,
            EditFeature::AdditionalGids => e.additional_gids = vec![44, 1000],
            EditFeature::NetDevices => e.net_devices.push(NetDevice {
                host_interface_name: format!("eth{i}"),
                name: format!("net{i}"),
            }),
        }
    }
    e.intel_rdt = rdt;
    e
}

fn featured_spec_strategy() -> impl Strategy<Value = (Features, Spec)> {
    const SPEC: [SpecFeature; 2] = [SpecFeature::Annotations, SpecFeature::DottedClass];
    const DEVICE: [DeviceFeature; 2] = [DeviceFeature::DigitName, DeviceFeature::Annotations];
    let device = (subset(&DEVICE), subset(&EDIT_FEATURES), 0u8..8, 0u8..3);
    (
        subset(&SPEC),
        subset(&EDIT_FEATURES),
        0u8..8,
        prop::sample::select(vec!["vendor.com", "example", "a.b-c.org"]),
        prop::collection::vec(device, 1..4),
        prop::sample::select(vec!["0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "1.1.0"]),
    )
        .prop_map(|(spec_f, spec_edits_f, noise, vendor, devs, cap)| {
            let spec_f = capped(spec_f, table_spec, cap);
            let spec_edits_f = capped(spec_edits_f, table_edit, cap);
            let devs: Vec<_> = devs
                .into_iter()
                .map(|(d, e, n, shape)| {
                    (
                        capped(d, table_device, cap),
                        capped(e, table_edit, cap),
                        n,
                        shape,
                    )
                })
                .collect();
            let class = if spec_f.contains(&SpecFeature::DottedClass) {
                "gpu.mig"
            } else {
                "gpu-x_1"
            };
            let mut s = Spec {
                cdi_version: "1.1.0".into(),
                kind: format!("{vendor}/{class}"),
                container_edits: edits_with(&spec_edits_f, noise, 99),
                ..Default::default()
            };
            // Spec-wide edits may be empty: only the table's features and the noise.
            s.container_edits.env.clear();
            if spec_f.contains(&SpecFeature::Annotations) {
                s.annotations.insert("example.com/k".into(), "v".into());
            }
            let mut devices = Vec::new();
            for (i, (dev_f, edit_f, noise, shape)) in devs.into_iter().enumerate() {
                // Digits inside or at the end of a name need nothing; only a leading one.
                let name = match (dev_f.contains(&DeviceFeature::DigitName), shape) {
                    (true, 0) => format!("{i}"),
                    (true, 1) => format!("{i}:1"),
                    (true, _) => format!("{i}gpu"),
                    (false, 0) => format!("gpu{i}"),
                    (false, 1) => format!("mig{i}:0"),
                    (false, _) => format!("GPU-{i}a"),
                };
                let mut d = Device {
                    name,
                    container_edits: edits_with(&edit_f, noise, i),
                    ..Default::default()
                };
                if dev_f.contains(&DeviceFeature::Annotations) {
                    d.annotations.insert("k".into(), "v".into());
                }
                s.devices.push(d);
                devices.push((dev_f, edit_f));
            }
            let features = Features {
                spec: spec_f,
                spec_edits: spec_edits_f,
                devices,
            };
            (features, s)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn minimum_version_matches_reference_table((features, spec) in featured_spec_strategy()) {
        let expected = features.expected_minimum();
        let min = minimum_version(&spec);
        prop_assert_eq!(min.version, expected, "features {:?}", features);
        // The field named as needing it needs exactly that version (none at 0.3.0).
        match &min.needed_by {
            None => prop_assert_eq!(expected.as_str(), TABLE_OTHERWISE),
            Some(req) => prop_assert_eq!(req.version, expected),
        }
    }

    #[test]
    fn older_declared_versions_are_rejected_naming_the_needed_version(
        (features, spec) in featured_spec_strategy()
    ) {
        use crate::version::Version;
        let needed = features.expected_minimum();
        let field = minimum_version(&spec).needed_by.map(|r| r.field);
        let mut s = spec;
        for v in KNOWN_VERSIONS {
            s.cdi_version = v.to_string();
            let got = validate(&s, None);
            if v < needed {
                // Legacy 0.1.0/0.2.0 included: the error says which version the content needs.
                let msg = got.expect_err("a version older than the content needs validated").to_string();
                prop_assert!(msg.contains(&format!("cdiVersion {needed}")), "declared {}: {}", v, msg);
                prop_assert!(msg.contains(v.as_str()), "declared {}: {}", v, msg);
                if let Some(f) = &field {
                    prop_assert!(msg.contains(f.as_str()), "declared {}: {} (field {})", v, msg, f);
                }
            } else if features.uses_removed() && v >= Version::V1_1_0 {
                let msg = got.expect_err("enableCMT/enableMBM accepted in 1.1.0").to_string();
                prop_assert!(msg.contains("removed in cdiVersion 1.1.0"), "{}", msg);
            } else {
                prop_assert_eq!(got.map_err(|e| e.to_string()), Ok(v));
            }
        }
        // A version the reference does not know is never accepted.
        for bad in ["0.9.0", "1.2.0", "v1.0.0"] {
            s.cdi_version = bad.into();
            prop_assert!(validate(&s, None).is_err());
        }
    }
}
