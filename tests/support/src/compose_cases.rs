//! The composition cases of issue 10's one table: CDI container edits whose merge,
//! conflicts, ordering, permissions and node types `cdi_specs::compose`, the config.json
//! engine, the reference crate (cdi-specs' `compose_table`) and the live engine
//! (hooks-core's `engine_table`) must agree on. One definition, used by both tests.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use cdi_specs::apply::dev_major_minor;
use cdi_specs::{ContainerEdits, DeviceNode, Hook, IntelRdt, Mount, NetDevice};

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

/// The cases: (name, the edits in engine order: a spec's spec-wide edits, then its
/// devices'). Nodes with a type name a fictional host node (`/nonexistent/...`), nodes
/// without one a real one (`/dev/null`); mount host paths (`/h/...`) are fictional, so an
/// engine that opens them maps them into a fixture. Tests index the list: append only.
pub fn compose_cases() -> Vec<(&'static str, Vec<ContainerEdits>)> {
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

/// The edits with type and numbers of untyped nodes taken from their host node (a char
/// device): what an engine does before composing, as `compose` needs completed nodes.
pub fn completed(edits: &[ContainerEdits]) -> Vec<ContainerEdits> {
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
