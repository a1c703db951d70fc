//! One table of composition cases run through three engines: `cdi_specs::compose`,
//! `cdi_specs::apply::apply_edits` (the config.json engine) and the reference
//! `container-device-interface` crate, which must agree on device nodes (in order), device
//! cgroup rules, mounts (in order), env, hooks, additional gids, intelRdt and netDevices.
//!
//! The reference crate does not sort mounts; the reference Go implementation does (a
//! stable sort by the number of `/` in the cleaned destination, `orderedMounts`), so its
//! mounts are sorted that way here, with a key computed independently of ours.
//!
//! The table is `test_support::compose_cases`, which hooks-core's `engine_table` test also
//! runs through the live engine.

use std::path::{Component, Path};

use cdi_specs::apply::apply_edits;
use cdi_specs::compose::{compose, Composed};
use cdi_specs::ContainerEdits;
use container_device_interface::container_edits::ContainerEdits as RefEdits;
use container_device_interface::specs::config::ContainerEdits as RefRawEdits;
use oci_spec::runtime::{LinuxDeviceType, Spec as OciSpec};
use test_support::{completed, compose_cases};

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

#[test]
fn compose_config_json_engine_and_reference_agree() {
    for (name, edits) in compose_cases() {
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
    let all = compose_cases();
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
