//! One table of composition cases run through three engines: `cdi_specs::compose`,
//! `cdi_specs::apply::apply_edits` (the config.json engine) and the reference
//! `container-device-interface` crate, which must agree on device nodes (in order), device
//! cgroup rules, mounts (in order), env, hooks, additional gids, intelRdt and netDevices.
//!
//! The reference crate does not sort mounts; the reference Go implementation does (a
//! stable sort by the number of `/` in the cleaned destination, `orderedMounts`), so its
//! mounts are sorted that way here, with a key computed independently of ours.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path};

use cdi_specs::apply::{apply_edits, dev_major_minor};
use cdi_specs::compose::{compose, Composed};
use cdi_specs::{ContainerEdits, DeviceNode, Hook, IntelRdt, Mount, NetDevice};
use container_device_interface::container_edits::ContainerEdits as RefEdits;
use container_device_interface::specs::config::ContainerEdits as RefRawEdits;
use oci_spec::runtime::{LinuxDeviceType, Spec as OciSpec};

/// A device node: (path, type, major, minor, fileMode, uid, gid).
type NodeView = (
    String,
    String,
    i64,
    i64,
    Option<u32>,
    Option<u32>,
    Option<u32>,
);

/// What the three engines are compared on.
#[derive(Debug, Default, PartialEq, Eq)]
struct View {
    nodes: Vec<NodeView>,
    /// (type, major, minor, access) of allow rules
    rules: Vec<(String, i64, i64, String)>,
    /// (destination, source, type, options)
    mounts: Vec<(String, String, String, Vec<String>)>,
    env: Vec<String>,
    /// (stage, path, args) with stages in a fixed order, each in application order
    hooks: Vec<(String, String, Vec<String>)>,
    gids: Vec<u32>,
    rdt: Option<String>,
    /// (host interface, name), sorted
    net: Vec<(String, String)>,
}

const STAGES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn type_name(t: LinuxDeviceType) -> String {
    match t {
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C => "c",
        LinuxDeviceType::U => "u",
        LinuxDeviceType::P => "p",
        LinuxDeviceType::A => "a",
    }
    .to_string()
}

fn from_composed(c: &Composed) -> View {
    let mut hooks = Vec::new();
    for stage in STAGES {
        for h in c.hooks.iter().filter(|h| h.hook_name == stage) {
            hooks.push((stage.to_string(), h.path.clone(), h.args.clone()));
        }
    }
    let mut net: Vec<(String, String)> = c
        .net_devices
        .iter()
        .map(|n| (n.host_interface_name.clone(), n.name.clone()))
        .collect();
    net.sort();
    View {
        nodes: c
            .device_nodes
            .iter()
            .map(|n| {
                (
                    n.path.clone(),
                    n.typ.clone(),
                    n.major.unwrap_or(0),
                    n.minor.unwrap_or(0),
                    n.file_mode,
                    n.uid,
                    n.gid,
                )
            })
            .collect(),
        rules: c
            .device_rules
            .iter()
            .map(|r| (r.typ.clone(), r.major, r.minor, r.access.clone()))
            .collect(),
        mounts: c
            .mounts
            .iter()
            .map(|m| {
                (
                    m.container_path.clone(),
                    m.host_path.clone(),
                    m.typ.clone(),
                    m.options.clone(),
                )
            })
            .collect(),
        env: c.env.clone(),
        hooks,
        gids: c.additional_gids.clone(),
        rdt: c.intel_rdt.as_ref().map(|r| r.clos_id.clone()),
        net,
    }
}

fn from_oci(o: &OciSpec) -> View {
    let linux = o.linux().clone().unwrap_or_default();
    let nodes = linux
        .devices()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d.path().display().to_string(),
                type_name(d.typ()),
                d.major(),
                d.minor(),
                d.file_mode(),
                d.uid(),
                d.gid(),
            )
        })
        .collect();
    let rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            assert!(r.allow(), "only allow rules are written: {r:?}");
            (
                r.typ().map(type_name).unwrap_or_default(),
                r.major().unwrap_or(-1),
                r.minor().unwrap_or(-1),
                r.access().clone().unwrap_or_default(),
            )
        })
        .collect();
    let mounts = o
        .mounts()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m.destination().display().to_string(),
                m.source()
                    .as_ref()
                    .map(|s| s.display().to_string())
                    .unwrap_or_default(),
                m.typ().clone().unwrap_or_default(),
                m.options().clone().unwrap_or_default(),
            )
        })
        .collect();
    let process = o.process().clone();
    let mut hooks = Vec::new();
    if let Some(h) = o.hooks() {
        #[allow(deprecated)]
        let lists = [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ];
        for (stage, list) in STAGES.iter().zip(lists) {
            for x in list.clone().unwrap_or_default() {
                hooks.push((
                    stage.to_string(),
                    x.path().display().to_string(),
                    x.args().clone().unwrap_or_default(),
                ));
            }
        }
    }
    let mut net: Vec<(String, String)> = linux
        .net_devices()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.name().clone().unwrap_or_default()))
        .collect();
    net.sort();
    View {
        nodes,
        rules,
        mounts,
        env: process
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default(),
        hooks,
        gids: process
            .as_ref()
            .and_then(|p| p.user().additional_gids().clone())
            .unwrap_or_default(),
        rdt: linux.intel_rdt().as_ref().and_then(|r| r.clos_id().clone()),
        net,
    }
}

/// A spec with nothing the edits touch. The process and linux sections and an empty mount
/// list are present because the reference crate fills absent ones with non-empty
/// defaults (a default env, a default mount).
fn empty_oci() -> OciSpec {
    serde_json::from_str(
        r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0}},"mounts":[],"linux":{}}"#,
    )
    .unwrap()
}

/// Go's `orderedMounts` key: `/` count of the cleaned destination (computed with std's
/// `Path` components, not our `clean_path`; the table has no `..`).
fn go_parts(dest: &str) -> usize {
    let n = Path::new(dest)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    n.max(1)
}

fn reference(edits: &[ContainerEdits]) -> OciSpec {
    let mut all = RefEdits::new();
    for e in edits {
        let raw: RefRawEdits = serde_json::from_value(serde_json::to_value(e).unwrap())
            .expect("the reference crate reads our edits");
        all.append(RefEdits {
            container_edits: raw,
        })
        .unwrap();
    }
    let mut o = empty_oci();
    all.apply(&mut o)
        .expect("the reference crate applies the edits");
    if let Some(mut m) = o.mounts().clone() {
        m.sort_by_key(|m| go_parts(&m.destination().to_string_lossy()));
        o.set_mounts(Some(m));
    }
    o
}

/// `compose` needs completed nodes: what an engine does before composing.
fn completed(edits: &[ContainerEdits]) -> Vec<ContainerEdits> {
    let mut out = edits.to_vec();
    for e in &mut out {
        for n in &mut e.device_nodes {
            if n.typ.is_empty() {
                let host = if n.host_path.is_empty() {
                    &n.path
                } else {
                    &n.host_path
                };
                let meta = std::fs::metadata(host).unwrap();
                assert!(meta.file_type().is_char_device(), "{host}");
                let (major, minor) = dev_major_minor(meta.rdev());
                n.typ = "c".into();
                n.major = Some(major);
                n.minor = Some(minor);
            }
        }
    }
    out
}

fn node(path: &str, typ: &str, major: i64, minor: i64, perms: &str) -> DeviceNode {
    DeviceNode {
        path: path.into(),
        host_path: "/nonexistent/host".into(),
        typ: typ.into(),
        major: Some(major),
        minor: Some(minor),
        permissions: perms.into(),
        ..Default::default()
    }
}

fn mount(host: &str, ctr: &str) -> Mount {
    Mount {
        host_path: host.into(),
        container_path: ctr.into(),
        options: vec!["ro".into(), "bind".into()],
        ..Default::default()
    }
}

fn hook(stage: &str, path: &str) -> Hook {
    Hook {
        hook_name: stage.into(),
        path: path.into(),
        args: vec![path.into(), stage.into()],
        ..Default::default()
    }
}

fn env(v: &[&str]) -> ContainerEdits {
    ContainerEdits {
        env: v.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// (name, the edits in engine order: a spec's spec-wide edits, then its devices').
fn cases() -> Vec<(&'static str, Vec<ContainerEdits>)> {
    vec![
        (
            "duplicate nodes: last wins at the later position, a rule per entry",
            vec![
                ContainerEdits {
                    device_nodes: vec![node("/dev/a", "c", 1, 1, "")],
                    ..Default::default()
                },
                ContainerEdits {
                    device_nodes: vec![
                        node("/dev/b", "c", 2, 2, "r"),
                        node("/dev//a", "b", 3, 3, "rw"),
                        node("/dev/c", "c", 5, 5, ""),
                    ],
                    ..Default::default()
                },
            ],
        ),
        (
            "duplicate mounts with unclean paths",
            vec![
                ContainerEdits {
                    mounts: vec![
                        mount("/h/ab1", "/a/b"),
                        mount("/h/c", "/c"),
                        mount("/h/x1", "/x/y/"),
                    ],
                    ..Default::default()
                },
                ContainerEdits {
                    mounts: vec![mount("/h/ab2", "/a//b/"), mount("/h/x2", "/x//y")],
                    ..Default::default()
                },
            ],
        ),
        (
            "depth ordering with ties keeps the given order",
            vec![
                ContainerEdits {
                    mounts: vec![
                        mount("/h/1", "/usr/lib/x/libc.so.6"),
                        mount("/h/2", "/z"),
                        mount("/h/3", "/a/c"),
                        mount("/h/4", "/"),
                        mount("/h/5", "/b/a"),
                    ],
                    ..Default::default()
                },
                ContainerEdits {
                    mounts: vec![
                        mount("/h/6", "/a"),
                        mount("/h/7", "/usr/bin/smi"),
                        mount("/h/8", "/a/b/"),
                    ],
                    ..Default::default()
                },
            ],
        ),
        (
            "env replacement",
            vec![
                env(&["A=1", "B=2"]),
                env(&["A=3", "C=4", "B="]),
                env(&["A=5", "D==x"]),
            ],
        ),
        (
            "permissions",
            vec![ContainerEdits {
                device_nodes: vec![
                    node("/dev/p0", "c", 10, 0, ""),
                    node("/dev/p1", "c", 10, 1, "r"),
                    node("/dev/p2", "c", 10, 2, "rw"),
                    node("/dev/p3", "b", 10, 3, "rwm"),
                    node("/dev/p4", "c", 10, 4, "m"),
                    node("/dev/p5", "c", 10, 5, "none"),
                ],
                ..Default::default()
            }],
        ),
        (
            "FIFO and u nodes: created, no cgroup rule",
            vec![ContainerEdits {
                device_nodes: vec![
                    DeviceNode {
                        path: "/dev/fifo".into(),
                        host_path: "/nonexistent/fifo".into(),
                        typ: "p".into(),
                        file_mode: Some(0o600),
                        ..Default::default()
                    },
                    node("/dev/u", "u", 4, 4, "rw"),
                    DeviceNode {
                        uid: Some(7),
                        gid: Some(8),
                        ..node("/dev/owned", "c", 4, 5, "")
                    },
                ],
                ..Default::default()
            }],
        ),
        (
            "hooks keep their order per stage",
            vec![
                ContainerEdits {
                    hooks: vec![
                        hook("createContainer", "/bin/a"),
                        hook("prestart", "/bin/b"),
                        hook("poststop", "/bin/c"),
                    ],
                    ..Default::default()
                },
                ContainerEdits {
                    hooks: vec![
                        hook("createContainer", "/bin/d"),
                        hook("createRuntime", "/bin/e"),
                        hook("startContainer", "/bin/f"),
                        hook("poststart", "/bin/g"),
                        hook("createContainer", "/bin/a"),
                    ],
                    ..Default::default()
                },
            ],
        ),
        (
            "spec-wide plus device edits",
            vec![
                ContainerEdits {
                    env: vec!["SPEC=wide".into(), "X=spec".into()],
                    device_nodes: vec![node("/dev/ctl", "c", 195, 255, "rw")],
                    mounts: vec![mount("/h/lib", "/usr/lib/libcuda.so.1")],
                    hooks: vec![hook("createContainer", "/bin/ldcache")],
                    intel_rdt: Some(IntelRdt {
                        clos_id: "spec".into(),
                        ..Default::default()
                    }),
                    additional_gids: vec![0, 44],
                    ..Default::default()
                },
                ContainerEdits {
                    env: vec!["X=dev0".into()],
                    device_nodes: vec![node("/dev/gpu0", "c", 195, 0, "")],
                    mounts: vec![mount("/h/bin", "/usr/bin/smi")],
                    additional_gids: vec![44, 45],
                    net_devices: vec![NetDevice {
                        host_interface_name: "eth1".into(),
                        name: "net1".into(),
                    }],
                    ..Default::default()
                },
                ContainerEdits {
                    env: vec!["X=dev1".into()],
                    device_nodes: vec![node("/dev/gpu1", "c", 195, 1, "")],
                    hooks: vec![hook("createContainer", "/bin/symlinks")],
                    intel_rdt: Some(IntelRdt {
                        clos_id: "dev1".into(),
                        ..Default::default()
                    }),
                    net_devices: vec![NetDevice {
                        host_interface_name: "eth2".into(),
                        name: "net2".into(),
                    }],
                    ..Default::default()
                },
            ],
        ),
        (
            // fileMode given: the reference crate does not fill it from the host node
            // (ours does, which apply_tests checks).
            "/dev/null as the host node (type, major, minor from stat)",
            vec![ContainerEdits {
                device_nodes: vec![
                    DeviceNode {
                        path: "/dev/ctr-null".into(),
                        host_path: "/dev/null".into(),
                        file_mode: Some(0o666),
                        permissions: "r".into(),
                        ..Default::default()
                    },
                    DeviceNode {
                        path: "/dev/null".into(),
                        file_mode: Some(0o666),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        ),
    ]
}

#[test]
fn compose_config_json_engine_and_reference_agree() {
    for (name, edits) in cases() {
        let reference = from_oci(&reference(&edits));

        let composed = compose(&completed(&edits)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(from_composed(&composed), reference, "{name}: compose");

        let mut o = empty_oci();
        let labels: Vec<String> = (0..edits.len()).map(|i| format!("edits {i}")).collect();
        let labelled: Vec<(&str, &ContainerEdits)> =
            labels.iter().map(String::as_str).zip(&edits).collect();
        apply_edits(&mut o, &labelled).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(from_oci(&o), reference, "{name}: apply_edits");
    }
}

/// The table pins what the rules give, not only that the engines agree.
#[test]
fn table_outcomes() {
    let all = cases();
    let view = |i: usize| from_composed(&compose(&completed(&all[i].1)).unwrap());

    let nodes: Vec<String> = view(0).nodes.into_iter().map(|n| n.0).collect();
    assert_eq!(nodes, ["/dev/b", "/dev//a", "/dev/c"]);
    assert_eq!(view(0).rules.len(), 4, "a rule for every node entry");

    let mounts: Vec<(String, String)> = view(1).mounts.into_iter().map(|m| (m.0, m.1)).collect();
    assert_eq!(
        mounts,
        [
            ("/c".to_string(), "/h/c".to_string()),
            ("/a//b/".into(), "/h/ab2".into()),
            ("/x//y".into(), "/h/x2".into()),
        ]
    );

    let order: Vec<String> = view(2).mounts.into_iter().map(|m| m.0).collect();
    assert_eq!(
        order,
        [
            "/z",
            "/",
            "/a",
            "/a/c",
            "/b/a",
            "/a/b/",
            "/usr/bin/smi",
            "/usr/lib/x/libc.so.6"
        ]
    );

    assert_eq!(view(3).env, ["A=5", "B=", "C=4", "D==x"]);

    let access: Vec<String> = view(4).rules.into_iter().map(|r| r.3).collect();
    assert_eq!(access, ["rwm", "r", "rw", "rwm", "m", ""]);

    let v = view(5);
    assert_eq!(v.nodes.len(), 3);
    assert_eq!(v.rules, [("c".to_string(), 4, 5, "rwm".to_string())]);

    let hooks: Vec<String> = view(6).hooks.into_iter().map(|h| h.1).collect();
    assert_eq!(
        hooks,
        ["/bin/b", "/bin/e", "/bin/a", "/bin/d", "/bin/a", "/bin/f", "/bin/g", "/bin/c"]
    );

    let v = view(7);
    assert_eq!(v.env, ["SPEC=wide", "X=dev1"]);
    assert_eq!(v.gids, [44, 45]);
    assert_eq!(v.rdt.as_deref(), Some("dev1"));
    assert_eq!(v.net.len(), 2);

    let v = view(8);
    assert_eq!(v.nodes[0].1, "c");
    assert_eq!((v.nodes[0].2, v.nodes[0].3), (1, 3));
    assert_eq!(v.rules[0], ("c".to_string(), 1, 3, "r".to_string()));
}
