//! The composition rules, one test per rule.

use crate::compose::{
    cgroup_access, clean_path, compose, merge_env, mount_depth, ComposeError, Composed,
};
use crate::plan::DeviceRule;
use crate::types::{ContainerEdits, DeviceNode, Hook, IntelRdt, Mount, NetDevice};

fn node(path: &str, typ: &str, major: i64, minor: i64, perms: &str) -> DeviceNode {
    DeviceNode {
        path: path.into(),
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
        ..Default::default()
    }
}

fn rule(typ: &str, major: i64, minor: i64, access: &str) -> DeviceRule {
    DeviceRule {
        typ: typ.into(),
        major,
        minor,
        access: access.into(),
    }
}

fn one(e: &ContainerEdits) -> Result<Composed, ComposeError> {
    compose([e])
}

#[test]
fn clean_path_like_go() {
    for (p, c) in [
        ("/", "/"),
        ("", "."),
        ("/a/b/", "/a/b"),
        ("//a//b", "/a/b"),
        ("/a//b/", "/a/b"),
        ("/a/./b/../c", "/a/c"),
        ("/..", "/"),
        ("a/../..", ".."),
        ("a/b", "a/b"),
        ("./", "."),
    ] {
        assert_eq!(clean_path(p), c, "{p}");
    }
}

#[test]
fn mount_depth_counts_slashes_of_the_cleaned_path() {
    assert_eq!(mount_depth("/"), 1);
    assert_eq!(mount_depth("/dev"), 1);
    assert_eq!(mount_depth("/dev/pts/"), 2);
    assert_eq!(mount_depth("//a//b//"), 2);
    assert_eq!(mount_depth("/a/b/../c/d"), 3);
    // Counted without building the cleaned path: the same as counting its `/`s.
    let parts = ["", ".", "..", "a", "bb", "/"];
    let mut n = 0;
    for a in parts {
        for b in parts {
            for c in parts {
                for d in parts {
                    for lead in ["", "/"] {
                        let p = format!("{lead}{a}/{b}/{c}/{d}");
                        assert_eq!(mount_depth(&p), clean_path(&p).matches('/').count(), "{p}");
                        n += 1;
                    }
                }
            }
        }
    }
    assert_eq!(n, 2592);
}

#[test]
fn cgroup_access_by_type_and_permissions() {
    assert_eq!(
        cgroup_access(&node("/dev/x", "c", 1, 2, "")).as_deref(),
        Some("rwm")
    );
    assert_eq!(
        cgroup_access(&node("/dev/x", "c", 1, 2, "r")).as_deref(),
        Some("r")
    );
    assert_eq!(
        cgroup_access(&node("/dev/x", "b", 1, 2, "rw")).as_deref(),
        Some("rw")
    );
    assert_eq!(
        cgroup_access(&node("/dev/x", "c", 1, 2, "none")).as_deref(),
        Some("")
    );
    assert_eq!(cgroup_access(&node("/dev/x", "p", 0, 0, "")), None);
    assert_eq!(cgroup_access(&node("/dev/x", "u", 4, 4, "")), None);
    assert_eq!(cgroup_access(&node("/dev/x", "", 0, 0, "")), None);
}

#[test]
fn env_replaces_in_place_else_appends() {
    let a = ContainerEdits {
        env: vec!["A=1".into(), "B=2".into(), "A=3".into()],
        ..Default::default()
    };
    let b = ContainerEdits {
        env: vec!["C=4".into(), "B=5".into(), "A==6".into()],
        ..Default::default()
    };
    let c = compose([&a, &b]).unwrap();
    assert_eq!(c.env, ["A==6", "B=5", "C=4"]);
    let mut env = vec!["PATH=/bin".to_string(), "X".to_string()];
    merge_env(&mut env, &["X=1".into(), "PATH=/usr/bin".into()]);
    assert_eq!(env, ["PATH=/usr/bin", "X=1"]);
}

#[test]
fn repeated_node_path_last_wins_at_later_position_rules_for_every_entry() {
    let a = ContainerEdits {
        device_nodes: vec![
            node("/dev/a", "c", 1, 1, ""),
            node("/dev/b", "c", 2, 2, "r"),
        ],
        ..Default::default()
    };
    let b = ContainerEdits {
        device_nodes: vec![node("/dev//a/", "b", 3, 3, "rw")],
        ..Default::default()
    };
    let c = compose([&a, &b]).unwrap();
    let got: Vec<(&str, &str)> = c
        .device_nodes
        .iter()
        .map(|n| (n.path.as_str(), n.typ.as_str()))
        .collect();
    assert_eq!(got, [("/dev/b", "c"), ("/dev//a/", "b")]);
    assert_eq!(
        c.device_rules,
        [
            rule("c", 1, 1, "rwm"),
            rule("c", 2, 2, "r"),
            rule("b", 3, 3, "rw")
        ]
    );
}

#[test]
fn fifo_and_u_nodes_are_kept_without_rules() {
    let e = ContainerEdits {
        device_nodes: vec![
            DeviceNode {
                path: "/dev/fifo".into(),
                typ: "p".into(),
                ..Default::default()
            },
            node("/dev/u", "u", 4, 4, ""),
        ],
        ..Default::default()
    };
    let c = one(&e).unwrap();
    assert_eq!(c.device_nodes, e.device_nodes);
    assert!(c.device_rules.is_empty());
}

#[test]
fn repeated_mount_last_wins_then_stable_depth_sort() {
    let a = ContainerEdits {
        mounts: vec![
            mount("/h/deep", "/usr/lib/x/libc.so"),
            mount("/h/ab1", "/a/b"),
            mount("/h/c", "/c"),
            mount("/h/d", "/d/e"),
        ],
        ..Default::default()
    };
    let b = ContainerEdits {
        mounts: vec![mount("/h/ab2", "/a//b/"), mount("/h/root", "/")],
        ..Default::default()
    };
    let c = compose([&a, &b]).unwrap();
    let got: Vec<(&str, &str)> = c
        .mounts
        .iter()
        .map(|m| (m.container_path.as_str(), m.host_path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("/c", "/h/c"),
            ("/", "/h/root"),
            ("/d/e", "/h/d"),
            ("/a//b/", "/h/ab2"),
            ("/usr/lib/x/libc.so", "/h/deep"),
        ]
    );
}

#[test]
fn hooks_appended_in_order_rdt_last_wins_gids_deduplicated() {
    let hook = |stage: &str, path: &str| Hook {
        hook_name: stage.into(),
        path: path.into(),
        ..Default::default()
    };
    let a = ContainerEdits {
        hooks: vec![hook("createContainer", "/a"), hook("prestart", "/b")],
        intel_rdt: Some(IntelRdt {
            clos_id: "one".into(),
            ..Default::default()
        }),
        additional_gids: vec![0, 44, 45, 44],
        net_devices: vec![NetDevice {
            host_interface_name: "eth0".into(),
            name: "n0".into(),
        }],
        ..Default::default()
    };
    let b = ContainerEdits {
        hooks: vec![hook("createContainer", "/c")],
        additional_gids: vec![45, 46],
        net_devices: vec![
            NetDevice {
                host_interface_name: "eth1".into(),
                name: "n1".into(),
            },
            NetDevice {
                host_interface_name: "eth0".into(),
                name: "n2".into(),
            },
        ],
        ..Default::default()
    };
    let none = ContainerEdits::default();
    let c = compose([&a, &b, &none]).unwrap();
    let paths: Vec<&str> = c.hooks.iter().map(|h| h.path.as_str()).collect();
    assert_eq!(paths, ["/a", "/b", "/c"]);
    assert_eq!(c.intel_rdt.unwrap().clos_id, "one");
    assert_eq!(c.additional_gids, [44, 45, 46]);
    let net: Vec<(&str, &str)> = c
        .net_devices
        .iter()
        .map(|n| (n.host_interface_name.as_str(), n.name.as_str()))
        .collect();
    assert_eq!(net, [("eth0", "n2"), ("eth1", "n1")]);
    let later = ContainerEdits {
        intel_rdt: Some(IntelRdt {
            clos_id: "two".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        compose([&a, &later]).unwrap().intel_rdt.unwrap().clos_id,
        "two"
    );
}

#[test]
fn errors_name_the_entry() {
    let with_node = |n: DeviceNode| ContainerEdits {
        device_nodes: vec![n],
        ..Default::default()
    };
    let cases: Vec<(ContainerEdits, &str)> = vec![
        (
            with_node(node("dev/x", "c", 1, 1, "")),
            "deviceNodes dev/x: path is not absolute; use the node's absolute container path",
        ),
        (
            with_node(node("", "c", 1, 1, "")),
            "deviceNodes: a node has an empty path; set path to the node's absolute container path",
        ),
        (
            with_node(node("/dev/x", "x", 1, 1, "")),
            "deviceNodes /dev/x: invalid type \"x\"; use b, c, u or p",
        ),
        (
            with_node(DeviceNode {
                path: "/dev/x".into(),
                typ: "c".into(),
                ..Default::default()
            }),
            "deviceNodes /dev/x: type \"c\" without a major number; complete the node from its host node (type, major, minor) before composing",
        ),
        (
            with_node(DeviceNode {
                path: "/dev/x".into(),
                ..Default::default()
            }),
            "deviceNodes /dev/x: type \"\" without a major number; complete the node from its host node (type, major, minor) before composing",
        ),
        (
            with_node(node("/dev/x", "c", -1, 1, "")),
            "deviceNodes /dev/x: negative device number -1:1; use the node's real major and minor",
        ),
        (
            with_node(node("/dev/x", "c", 1, 1, "rx")),
            "deviceNodes /dev/x: invalid permissions \"rx\"; use a subset of \"rwm\", \"none\" or leave it empty for rwm",
        ),
        (
            ContainerEdits {
                mounts: vec![mount("/h", "c/d")],
                ..Default::default()
            },
            "mounts \"c/d\" (hostPath /h): containerPath is not absolute; use an absolute container path",
        ),
        (
            ContainerEdits {
                mounts: vec![mount("", "/c")],
                ..Default::default()
            },
            "mounts /c: empty hostPath; set hostPath to what is mounted",
        ),
        (
            ContainerEdits {
                env: vec!["=x".into()],
                ..Default::default()
            },
            "env \"=x\": not KEY=VALUE with a non-empty KEY; fix the entry",
        ),
        (
            ContainerEdits {
                env: vec!["NOVALUE".into()],
                ..Default::default()
            },
            "env \"NOVALUE\": not KEY=VALUE with a non-empty KEY; fix the entry",
        ),
        (
            ContainerEdits {
                hooks: vec![Hook {
                    hook_name: "later".into(),
                    path: "/bin/h".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            "hooks /bin/h: unknown hookName \"later\"; use one of prestart, createRuntime, createContainer, startContainer, poststart, poststop",
        ),
        (
            ContainerEdits {
                hooks: vec![Hook {
                    hook_name: "poststop".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            "hooks poststop: a hook has an empty path; set path to the hook executable",
        ),
    ];
    for (e, want) in cases {
        assert_eq!(one(&e).unwrap_err().to_string(), want);
    }
    // A FIFO needs no major.
    let fifo = with_node(DeviceNode {
        path: "/dev/p".into(),
        typ: "p".into(),
        ..Default::default()
    });
    assert!(one(&fifo).is_ok());
}
