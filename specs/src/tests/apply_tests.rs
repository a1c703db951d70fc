use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxDeviceType, Spec as OciSpec};

use super::{base_spec, device};
use crate::apply::{apply_devices, apply_edits, collect_edits, dev_major_minor, ApplyError};
use crate::compose::merge_env;
use crate::registry::Registry;
use crate::types::{ContainerEdits, DeviceNode, Hook, IntelRdt, Mount, NetDevice, Spec};

/// (allow, type, major, minor, access) of a device cgroup rule.
type Rule = (
    bool,
    Option<LinuxDeviceType>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn oci() -> OciSpec {
    serde_json::from_str(
        r#"{
        "ociVersion": "1.0.2",
        "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin", "A=old", "B=keep"]},
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs"}
        ],
        "linux": {
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
            "resources": {"devices": [{"allow": false, "access": "rwm"}]}
        }
    }"#,
    )
    .unwrap()
}

fn registry(specs: Vec<Spec>) -> Registry {
    let r = Registry::from_specs(
        specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| (PathBuf::from(format!("/etc/cdi/s{i}.yaml")), 0, s)),
    );
    assert!(r.errors().is_empty(), "{:?}", r.errors());
    r
}

/// A node that needs no stat (type and major given).
fn fixed_node(path: &str, major: i64, minor: i64) -> DeviceNode {
    DeviceNode {
        path: path.into(),
        host_path: "/nonexistent/host/node".into(),
        typ: "c".into(),
        major: Some(major),
        minor: Some(minor),
        ..Default::default()
    }
}

fn env_device(name: &str, env: &[&str]) -> crate::Device {
    let mut d = device(name, "/dev/unused");
    d.container_edits = ContainerEdits {
        env: env.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    d
}

#[test]
fn env_replace_in_place_and_append() {
    let mut s = base_spec();
    s.devices = vec![env_device("d", &["A=new", "C=1", "B=keep2"])];
    let r = registry(vec![s]);
    let mut o = oci();
    apply_devices(&mut o, &r, &["vendor.com/gpu=d"]).unwrap();
    assert_eq!(
        o.process().as_ref().unwrap().env().as_ref().unwrap(),
        &["PATH=/bin", "A=new", "B=keep2", "C=1"]
    );
}

#[test]
fn merge_env_rules() {
    let mut env = vec!["A=1".to_string(), "A=2".to_string(), "NOEQ".to_string()];
    merge_env(
        &mut env,
        &["A=3".into(), "NOEQ=x".into(), "D=".into(), "D=4".into()],
    );
    assert_eq!(env, ["A=1", "A=3", "NOEQ=x", "D=4"]);
}

#[test]
fn order_and_spec_wide_edits_once_per_spec() {
    let mut s1 = base_spec();
    s1.container_edits.env = vec!["ORDER=s1".into()];
    s1.container_edits.hooks = vec![Hook {
        hook_name: "createContainer".into(),
        path: "/bin/s1-hook".into(),
        ..Default::default()
    }];
    s1.devices = vec![env_device("a", &["ORDER=a"]), env_device("b", &["ORDER=b"])];
    let mut s2 = base_spec();
    s2.kind = "other.com/nic".into();
    s2.container_edits.env = vec!["ORDER=s2".into(), "S2=1".into()];
    s2.devices = vec![env_device("x", &["X=1"])];
    let r = registry(vec![s1, s2]);

    let labels: Vec<String> = collect_edits(
        &r,
        &["vendor.com/gpu=b", "other.com/nic=x", "vendor.com/gpu=a"],
    )
    .unwrap()
    .into_iter()
    .map(|(l, _)| l)
    .collect();
    assert_eq!(
        labels,
        [
            "spec-wide containerEdits of /etc/cdi/s0.yaml (with device \"vendor.com/gpu=b\")",
            "device \"vendor.com/gpu=b\"",
            "spec-wide containerEdits of /etc/cdi/s1.yaml (with device \"other.com/nic=x\")",
            "device \"other.com/nic=x\"",
            "device \"vendor.com/gpu=a\"",
        ]
    );
    let mut o = oci();
    apply_devices(
        &mut o,
        &r,
        &["vendor.com/gpu=b", "other.com/nic=x", "vendor.com/gpu=a"],
    )
    .unwrap();
    // ORDER is replaced in place each time: the last applied edit wins.
    assert_eq!(
        o.process().as_ref().unwrap().env().as_ref().unwrap(),
        &["PATH=/bin", "A=old", "B=keep", "ORDER=a", "S2=1", "X=1"]
    );
    let hooks = o
        .hooks()
        .as_ref()
        .unwrap()
        .create_container()
        .as_ref()
        .unwrap();
    assert_eq!(hooks.len(), 1, "spec-wide hook applied once");
}

#[test]
fn device_nodes_replace_and_cgroup_rules() {
    let mut s = base_spec();
    s.cdi_version = "0.5.0".into();
    let mut d = device("d", "/dev/unused");
    d.container_edits.device_nodes = vec![
        fixed_node("/dev/fuse", 10, 230),
        DeviceNode {
            permissions: "rw".into(),
            ..fixed_node("/dev/nvidia0", 195, 0)
        },
        DeviceNode {
            typ: "b".into(),
            ..fixed_node("/dev/sda", 8, 0)
        },
        DeviceNode {
            permissions: "none".into(),
            ..fixed_node("/dev/hidden", 1, 1)
        },
        DeviceNode {
            path: "/dev/fifo".into(),
            host_path: "/nonexistent".into(),
            typ: "p".into(),
            ..Default::default()
        },
        DeviceNode {
            typ: "u".into(),
            ..fixed_node("/dev/u", 4, 4)
        },
    ];
    s.devices = vec![d];
    let r = registry(vec![s]);
    let mut o = oci();
    apply_devices(&mut o, &r, &["vendor.com/gpu=d"]).unwrap();
    let linux = o.linux().as_ref().unwrap();
    let devs: Vec<(String, LinuxDeviceType, i64, i64)> = linux
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d.path().display().to_string(),
                d.typ(),
                d.major(),
                d.minor(),
            )
        })
        .collect();
    assert_eq!(
        devs,
        [
            ("/dev/fuse".into(), LinuxDeviceType::C, 10, 230),
            ("/dev/nvidia0".into(), LinuxDeviceType::C, 195, 0),
            ("/dev/sda".into(), LinuxDeviceType::B, 8, 0),
            ("/dev/hidden".into(), LinuxDeviceType::C, 1, 1),
            ("/dev/fifo".into(), LinuxDeviceType::P, 0, 0),
            ("/dev/u".into(), LinuxDeviceType::U, 4, 4),
        ]
    );
    let rules: Vec<Rule> = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .map(|r| (r.allow(), r.typ(), r.major(), r.minor(), r.access().clone()))
        .collect();
    assert_eq!(
        rules,
        [
            (false, None, None, None, Some("rwm".into())),
            (
                true,
                Some(LinuxDeviceType::C),
                Some(10),
                Some(230),
                Some("rwm".into())
            ),
            (
                true,
                Some(LinuxDeviceType::C),
                Some(195),
                Some(0),
                Some("rw".into())
            ),
            (
                true,
                Some(LinuxDeviceType::B),
                Some(8),
                Some(0),
                Some("rwm".into())
            ),
            // `none`: a rule with empty access, as the reference writes it.
            (
                true,
                Some(LinuxDeviceType::C),
                Some(1),
                Some(1),
                Some(String::new())
            ),
        ]
    );
}

#[test]
fn device_node_filled_from_host_stat() {
    let meta = std::fs::metadata("/dev/null").unwrap();
    let mut s = base_spec();
    s.devices = vec![device("null", "/dev/null")];
    s.devices[0].container_edits.device_nodes.push(DeviceNode {
        path: "/dev/ctr-zero".into(),
        host_path: "/dev/zero".into(),
        file_mode: Some(0o600),
        ..Default::default()
    });
    s.cdi_version = "0.5.0".into();
    let r = registry(vec![s]);
    let mut o = oci();
    // uid/gid default to the process user's when > 0.
    o.process_mut().as_mut().unwrap().user_mut().set_uid(1000);
    apply_devices(&mut o, &r, &["vendor.com/gpu=null"]).unwrap();
    let devs = o.linux().as_ref().unwrap().devices().clone().unwrap();
    let null = &devs[1];
    assert_eq!(null.path(), &PathBuf::from("/dev/null"));
    assert_eq!(null.typ(), LinuxDeviceType::C);
    assert_eq!((null.major(), null.minor()), (1, 3));
    assert_eq!(null.file_mode(), Some(meta.mode() & 0o777));
    assert_eq!(null.uid(), Some(1000));
    assert_eq!(null.gid(), None);
    let zero = &devs[2];
    assert_eq!(zero.path(), &PathBuf::from("/dev/ctr-zero"));
    assert_eq!((zero.major(), zero.minor()), (1, 5));
    assert_eq!(zero.file_mode(), Some(0o600));
}

#[test]
fn device_node_errors_apply_nothing() {
    let mut s = base_spec();
    s.cdi_version = "0.5.0".into();
    let mut ok = env_device("ok", &["APPLIED=1"]);
    ok.container_edits.mounts = vec![Mount {
        host_path: "/a".into(),
        container_path: "/a".into(),
        ..Default::default()
    }];
    let missing = device("missing", "/nonexistent/dev/thing");
    let mut mismatch = device("mismatch", "/dev/null");
    mismatch.container_edits.device_nodes[0].typ = "b".into();
    let mut not_dev = device("notdev", "/etc/cdi-x");
    not_dev.container_edits.device_nodes[0].host_path = "/".into();
    s.devices = vec![ok, missing, mismatch, not_dev];
    let r = registry(vec![s]);
    let before = oci();

    let mut o = oci();
    let e =
        apply_devices(&mut o, &r, &["vendor.com/gpu=ok", "vendor.com/gpu=missing"]).unwrap_err();
    assert_eq!(o, before);
    assert!(matches!(e, ApplyError::Stat { .. }));
    assert!(e.to_string().starts_with("device \"vendor.com/gpu=missing\": deviceNodes /nonexistent/dev/thing: cannot stat host device /nonexistent/dev/thing: "), "{e}");

    let e = apply_devices(
        &mut o,
        &r,
        &["vendor.com/gpu=ok", "vendor.com/gpu=mismatch"],
    )
    .unwrap_err();
    assert_eq!(o, before);
    assert_eq!(
        e.to_string(),
        "device \"vendor.com/gpu=mismatch\": deviceNodes /dev/null: type \"b\" but host node /dev/null is \"c\"; nothing was applied; fix type or regenerate the spec"
    );

    let e = apply_devices(&mut o, &r, &["vendor.com/gpu=notdev"]).unwrap_err();
    assert_eq!(o, before);
    assert_eq!(
        e.to_string(),
        "device \"vendor.com/gpu=notdev\": deviceNodes /etc/cdi-x: host path / is not a device node; nothing was applied; point hostPath at a block or character device or a FIFO"
    );
}

#[test]
fn unresolvable_device_applies_nothing() {
    let mut s = base_spec();
    s.devices = vec![env_device("a", &["X=1"])];
    let r = registry(vec![s]);
    let mut o = oci();
    let e = apply_devices(
        &mut o,
        &r,
        &["vendor.com/gpu=a", "vendor.com/gpu=nope", "bad"],
    )
    .unwrap_err();
    assert_eq!(o, oci());
    match &e {
        ApplyError::Unresolvable { names, errors } => {
            assert_eq!(names, &["vendor.com/gpu=nope", "bad"]);
            assert_eq!(errors.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with(
        "unresolvable CDI devices vendor.com/gpu=nope, bad: nothing was applied: unresolvable CDI device \"vendor.com/gpu=nope\": no loaded spec defines it"
    ), "{e}");
}

#[test]
fn mounts_replaced_then_sorted_by_depth() {
    let m = |host: &str, ctr: &str| Mount {
        host_path: host.into(),
        container_path: ctr.into(),
        options: vec!["ro".into(), "bind".into()],
        ..Default::default()
    };
    let mut s = base_spec();
    let mut d = device("d", "/dev/x");
    d.container_edits = ContainerEdits {
        mounts: vec![
            m(
                "/host/lib/libcuda.so.1",
                "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            ),
            m("/host/dev", "/dev"),
            m("/host/bin/nvidia-smi", "/usr/bin/nvidia-smi"),
            m("/host/a", "/a"),
            m("/host/run", "/run/nvidia-persistenced/"),
        ],
        ..Default::default()
    };
    s.devices = vec![d];
    let r = registry(vec![s]);
    let mut o = oci();
    apply_devices(&mut o, &r, &["vendor.com/gpu=d"]).unwrap();
    let got: Vec<(String, Option<String>)> = o
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m.destination().display().to_string(),
                m.source().as_ref().map(|s| s.display().to_string()),
            )
        })
        .collect();
    let want: Vec<(String, Option<String>)> = [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "/host/dev"),
        ("/a", "/host/a"),
        ("/dev/pts", "devpts"),
        ("/run/nvidia-persistenced/", "/host/run"),
        ("/usr/bin/nvidia-smi", "/host/bin/nvidia-smi"),
        (
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            "/host/lib/libcuda.so.1",
        ),
    ]
    .iter()
    .map(|(d, s)| (d.to_string(), Some(s.to_string())))
    .collect();
    assert_eq!(got, want);
    let cuda = o.mounts().as_ref().unwrap().last().unwrap();
    assert_eq!(cuda.options().as_ref().unwrap(), &["ro", "bind"]);
    assert_eq!(cuda.typ(), &None);
}

#[test]
fn hooks_intel_rdt_gids_net_devices() {
    let mut s = base_spec();
    s.cdi_version = "1.1.0".into();
    let mut d = device("d", "/dev/x");
    let hook = |stage: &str, path: &str| Hook {
        hook_name: stage.into(),
        path: path.into(),
        args: vec![path.into(), "arg".into()],
        env: vec!["E=1".into()],
        timeout: Some(5),
    };
    d.container_edits = ContainerEdits {
        hooks: crate::types::HOOK_NAMES
            .iter()
            .map(|s| hook(s, &format!("/bin/{s}")))
            .chain([hook("createContainer", "/bin/second")])
            .collect(),
        intel_rdt: Some(IntelRdt {
            clos_id: "gpu".into(),
            schemata: vec!["L3:0=ff".into()],
            ..Default::default()
        }),
        additional_gids: vec![0, 44, 44, 45],
        net_devices: vec![NetDevice {
            host_interface_name: "eth1".into(),
            name: "net0".into(),
        }],
        ..Default::default()
    };
    s.devices = vec![d];
    let r = registry(vec![s]);
    let mut o = oci();
    o.process_mut()
        .as_mut()
        .unwrap()
        .user_mut()
        .set_additional_gids(Some(vec![45]));
    apply_devices(&mut o, &r, &["vendor.com/gpu=d"]).unwrap();
    let hooks = o.hooks().as_ref().unwrap();
    #[allow(deprecated)]
    let prestart = hooks.prestart().as_ref().unwrap();
    assert_eq!(prestart.len(), 1);
    let cc = hooks.create_container().as_ref().unwrap();
    assert_eq!(cc.len(), 2);
    assert_eq!(cc[1].path(), &PathBuf::from("/bin/second"));
    assert_eq!(
        cc[0].args().as_ref().unwrap(),
        &["/bin/createContainer", "arg"]
    );
    assert_eq!(cc[0].env().as_ref().unwrap(), &["E=1"]);
    assert_eq!(cc[0].timeout(), Some(5));
    for stage in [
        hooks.create_runtime(),
        hooks.start_container(),
        hooks.poststart(),
        hooks.poststop(),
    ] {
        assert_eq!(stage.as_ref().unwrap().len(), 1);
    }
    let linux = o.linux().as_ref().unwrap();
    let rdt = linux.intel_rdt().as_ref().unwrap();
    assert_eq!(rdt.clos_id().as_deref(), Some("gpu"));
    assert_eq!(rdt.schemata().as_ref().unwrap(), &["L3:0=ff"]);
    assert_eq!(rdt.l3_cache_schema(), &None);
    let net = linux.net_devices().as_ref().unwrap();
    assert_eq!(net["eth1"].name().as_deref(), Some("net0"));
    assert_eq!(
        o.process()
            .as_ref()
            .unwrap()
            .user()
            .additional_gids()
            .as_ref()
            .unwrap(),
        &[45, 44]
    );
}

#[test]
fn intel_rdt_replaced_by_later_device() {
    let mut s = base_spec();
    s.cdi_version = "0.7.0".into();
    let rdt_dev = |name: &str, clos: &str| {
        let mut d = device(name, "/dev/x");
        d.container_edits = ContainerEdits {
            intel_rdt: Some(IntelRdt {
                clos_id: clos.into(),
                l3_cache_schema: format!("L3:{clos}"),
                ..Default::default()
            }),
            ..Default::default()
        };
        d
    };
    s.devices = vec![rdt_dev("a", "first"), rdt_dev("b", "second")];
    let r = registry(vec![s]);
    let mut o = oci();
    apply_devices(&mut o, &r, &["vendor.com/gpu=a", "vendor.com/gpu=b"]).unwrap();
    let rdt = o.linux().as_ref().unwrap().intel_rdt().clone().unwrap();
    assert_eq!(rdt.clos_id().as_deref(), Some("second"));
    assert_eq!(rdt.l3_cache_schema().as_deref(), Some("L3:second"));
}

#[test]
fn bare_oci_spec_gets_sections() {
    let mut o: OciSpec = serde_json::from_str(r#"{"ociVersion":"1.0.2"}"#).unwrap();
    let e = ContainerEdits {
        env: vec!["A=1".into()],
        device_nodes: vec![fixed_node("/dev/x", 1, 2)],
        mounts: vec![Mount {
            host_path: "/h".into(),
            container_path: "/c".into(),
            ..Default::default()
        }],
        additional_gids: vec![5],
        ..Default::default()
    };
    apply_edits(&mut o, &[("test", &e)]).unwrap();
    let p = o.process().as_ref().unwrap();
    assert_eq!(p.env().as_ref().unwrap(), &["A=1"]);
    assert_eq!(p.user().additional_gids().as_ref().unwrap(), &[5]);
    assert_eq!(
        o.linux()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(o.mounts().as_ref().unwrap().len(), 1);
}

#[test]
fn dev_major_minor_decodes_glibc_encoding() {
    assert_eq!(dev_major_minor(0x0103), (1, 3));
    // major 511 minor 1048575 round trips through glibc's encoding.
    let (ma, mi) = (511u64, 1_048_575u64);
    let rdev = ((ma & 0xfff) << 8) | ((ma & !0xfff) << 32) | (mi & 0xff) | ((mi & !0xff) << 12);
    assert_eq!(dev_major_minor(rdev), (511, 1_048_575));
}

#[test]
fn refused_edits_name_their_source_and_apply_nothing() {
    let good = ContainerEdits {
        env: vec!["A=changed".into()],
        device_nodes: vec![fixed_node("/dev/x", 1, 2)],
        ..Default::default()
    };
    let relative = ContainerEdits {
        mounts: vec![Mount {
            host_path: "/h".into(),
            container_path: "c".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let unknown_hook = ContainerEdits {
        hooks: vec![Hook {
            hook_name: "later".into(),
            path: "/bin/h".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    for (bad, want) in [
        (
            &relative,
            "device \"b\": mounts \"c\" (hostPath /h): containerPath is not absolute; use an absolute container path; nothing was applied",
        ),
        (
            &unknown_hook,
            "device \"b\": hooks /bin/h: unknown hookName \"later\"; use one of prestart, createRuntime, createContainer, startContainer, poststart, poststop; nothing was applied",
        ),
    ] {
        let mut o = oci();
        let before = o.clone();
        let e = apply_edits(&mut o, &[("device \"a\"", &good), ("device \"b\"", bad)]).unwrap_err();
        assert!(matches!(e, ApplyError::Invalid { .. }), "{e:?}");
        assert_eq!(e.to_string(), want);
        assert_eq!(o, before);
    }
}

#[test]
fn read_only_permissions_give_read_only_rule() {
    let mut o: OciSpec = serde_json::from_str(r#"{"ociVersion":"1.0.2"}"#).unwrap();
    let e = ContainerEdits {
        device_nodes: vec![DeviceNode {
            permissions: "r".into(),
            ..fixed_node("/dev/ro", 7, 8)
        }],
        ..Default::default()
    };
    apply_edits(&mut o, &[("test", &e)]).unwrap();
    let rules = o
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].access().as_deref(), Some("r"));
    assert_eq!((rules[0].major(), rules[0].minor()), (Some(7), Some(8)));
}
