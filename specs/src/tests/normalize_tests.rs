use super::{base_spec, device};
use crate::normalize::{canonicalize, sort_edits};
use crate::parse::to_yaml;
use crate::types::{ContainerEdits, DeviceNode, Mount};

#[test]
fn devices_nodes_mounts_sorted() {
    let mut s = base_spec();
    s.devices = vec![
        device("b", "/dev/b"),
        device("10", "/dev/10"),
        device("2", "/dev/2"),
        device("a", "/dev/a"),
    ];
    let node = |p: &str| DeviceNode {
        path: p.into(),
        ..Default::default()
    };
    let mount = |p: &str| Mount {
        host_path: "/h".into(),
        container_path: p.into(),
        ..Default::default()
    };
    s.container_edits = ContainerEdits {
        device_nodes: vec![
            node("/dev/nvidia-caps/nvidia-cap1"),
            node("/dev/nvidiactl"),
            node("/dev/dri/card0"),
            node("/dev/nvidia0"),
        ],
        mounts: vec![
            mount("/usr/lib/x/libcuda.so"),
            mount("/usr/bin/nvidia-smi"),
            mount("/lib/firmware/nvidia/1/gsp.bin"),
            mount("/run/x"),
        ],
        env: vec!["Z=1".into(), "A=1".into()],
        ..Default::default()
    };
    let mut t = s.clone();
    t.devices.reverse();
    t.container_edits.device_nodes.reverse();
    t.container_edits.mounts.reverse();
    canonicalize(&mut s);
    canonicalize(&mut t);
    let names: Vec<&str> = s.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["10", "2", "a", "b"]);
    let nodes: Vec<&str> = s
        .container_edits
        .device_nodes
        .iter()
        .map(|n| n.path.as_str())
        .collect();
    assert_eq!(
        nodes,
        [
            "/dev/nvidia0",
            "/dev/nvidiactl",
            "/dev/dri/card0",
            "/dev/nvidia-caps/nvidia-cap1"
        ]
    );
    let mounts: Vec<&str> = s
        .container_edits
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    assert_eq!(
        mounts,
        [
            "/run/x",
            "/usr/bin/nvidia-smi",
            "/usr/lib/x/libcuda.so",
            "/lib/firmware/nvidia/1/gsp.bin"
        ]
    );
    assert_eq!(s.container_edits.env, ["Z=1", "A=1"], "env order kept");
    // Same facts in any order -> byte-identical output.
    assert_eq!(to_yaml(&s).unwrap(), to_yaml(&t).unwrap());
}

#[test]
fn sort_is_stable_for_equal_keys() {
    let mut e = ContainerEdits {
        mounts: vec![
            Mount {
                host_path: "/1".into(),
                container_path: "/x".into(),
                ..Default::default()
            },
            Mount {
                host_path: "/2".into(),
                container_path: "/x".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    sort_edits(&mut e);
    assert_eq!(e.mounts[0].host_path, "/1");
}
