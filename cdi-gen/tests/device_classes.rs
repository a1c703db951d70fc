//! nvidia-ctk's graphics/display files and the HPC device classes on a fake machine that
//! has them (`MachineSpec::with_extras`: EGL GBM/Wayland libraries, X server modules and
//! configs, nvoptix.bin; IMEX channels, NVSwitches, nvidia-fs, gdrdrv, uverbs and
//! rdma_cm made with mknod and their majors in /proc/devices). Runs as root.

mod common;

use cdi_specs::parse::{from_str, Format};
use cdi_specs::types::{DeviceNode, Spec};
use common::bin;
use test_support::{
    stderr, stdout, FakeMachine, MachineSpec, DRIVER, GDRDRV_MAJOR, IMEX_MAJOR, MISC_MAJOR,
    NVIDIA_FS_MAJOR, NVSWITCH_MAJOR, RDMA_CM_MINOR, VERBS_MAJOR,
};

fn generate(m: &FakeMachine, args: &[&str]) -> Spec {
    let o = m.command(&bin()).args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    assert!(!stderr(&o).contains("WARN"), "{args:?}: {}", stderr(&o));
    from_str(&stdout(&o), Format::Yaml, None).unwrap()
}

fn node(n: &DeviceNode) -> (String, i64, i64) {
    (n.path.clone(), n.major.unwrap(), n.minor.unwrap())
}

fn device_nodes(spec: &Spec, name: &str) -> Vec<(String, i64, i64)> {
    let d = spec
        .devices
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no device {name} in {spec:?}"));
    d.container_edits.device_nodes.iter().map(node).collect()
}

fn names(spec: &Spec) -> Vec<&str> {
    spec.devices.iter().map(|d| d.name.as_str()).collect()
}

#[test]
fn graphics_display_files_and_nvswitch_nodes_in_the_gpu_spec() {
    let m = FakeMachine::build(&MachineSpec::nvidia(2).with_extras());
    let spec = generate(&m, &[]);
    let g = &spec.container_edits;
    let lib = "/usr/lib/x86_64-linux-gnu";
    let mounted: Vec<&str> = g.mounts.iter().map(|x| x.container_path.as_str()).collect();
    for want in [
        format!("{lib}/libnvidia-egl-gbm.so.1.1.1"),
        format!("{lib}/libnvidia-egl-wayland.so.1.1.13"),
        "/usr/lib/xorg/modules/drivers/nvidia_drv.so".to_string(),
        format!("/usr/lib/xorg/modules/extensions/libglxserver_nvidia.so.{DRIVER}"),
        "/usr/share/X11/xorg.conf.d/nvidia-drm-outputclass.conf".to_string(),
        "/usr/share/nvidia/nvoptix.bin".to_string(),
    ] {
        assert!(
            mounted.contains(&want.as_str()),
            "{want} not in {mounted:?}"
        );
    }
    let links: Vec<&String> = g
        .hooks
        .iter()
        .filter(|h| h.args.get(1).map(String::as_str) == Some("create-symlinks"))
        .flat_map(|h| h.args.iter())
        .collect();
    for want in [
        format!("libnvidia-egl-gbm.so.1.1.1::{lib}/libnvidia-egl-gbm.so.1"),
        format!("libnvidia-egl-wayland.so.1.1.13::{lib}/libnvidia-egl-wayland.so.1"),
        format!(
            "libglxserver_nvidia.so.{DRIVER}::/usr/lib/xorg/modules/extensions/libglxserver_nvidia.so"
        ),
    ] {
        assert!(links.contains(&&want), "{want} not in {links:?}");
    }
    // The X modules are not library folders of the loader cache.
    let ldcache = g
        .hooks
        .iter()
        .find(|h| h.args.get(1).map(String::as_str) == Some("update-ldcache"))
        .unwrap();
    assert!(
        !ldcache.args.iter().any(|a| a.contains("xorg")),
        "{ldcache:?}"
    );
    // NVSwitch nodes, spec-wide, with the numbers of the host nodes.
    let nodes: Vec<_> = g.device_nodes.iter().map(node).collect();
    let sw = i64::from(NVSWITCH_MAJOR);
    for want in [
        ("/dev/nvidia-nvswitchctl".to_string(), sw, 255),
        ("/dev/nvidia-nvswitch0".to_string(), sw, 0),
        ("/dev/nvidia-nvswitch1".to_string(), sw, 1),
    ] {
        assert!(nodes.contains(&want), "{want:?} not in {nodes:?}");
    }
    // A machine without them has none of it.
    let plain = FakeMachine::build(&MachineSpec::nvidia(2));
    let text = stdout(&plain.command(&bin()).output().unwrap());
    for absent in ["nvswitch", "egl-gbm", "xorg", "nvoptix"] {
        assert!(
            !text.contains(absent),
            "{absent} on a plain machine: {text}"
        );
    }
}

#[test]
fn hpc_device_classes() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1).with_extras());
    let imex = generate(&m, &["--device-class", "imex-channel"]);
    assert_eq!(imex.kind, "nvidia.com/imex-channel");
    assert_eq!(names(&imex), ["0", "1", "all"]);
    assert_eq!(
        device_nodes(&imex, "1"),
        [(
            "/dev/nvidia-caps-imex-channels/channel1".to_string(),
            i64::from(IMEX_MAJOR),
            1
        )]
    );
    let gds = generate(&m, &["--device-class", "gds"]);
    assert_eq!(gds.kind, "nvidia.com/gds");
    assert_eq!(names(&gds), ["all"]);
    let fs = i64::from(NVIDIA_FS_MAJOR);
    assert_eq!(
        device_nodes(&gds, "all"),
        [
            ("/dev/nvidia-fs0".to_string(), fs, 0),
            ("/dev/nvidia-fs1".to_string(), fs, 1)
        ]
    );
    let gdr = generate(&m, &["--device-class", "gdrcopy"]);
    assert_eq!(gdr.kind, "nvidia.com/gdrcopy");
    assert_eq!(
        device_nodes(&gdr, "all"),
        [("/dev/gdrdrv".to_string(), i64::from(GDRDRV_MAJOR), 0)]
    );
    let rdma = generate(&m, &["--device-class", "mofed"]);
    assert_eq!(rdma.kind, "nvidia.com/mofed");
    assert_eq!(names(&rdma), ["all", "uverbs0", "uverbs1"]);
    let cm = (
        "/dev/infiniband/rdma_cm".to_string(),
        i64::from(MISC_MAJOR),
        i64::from(RDMA_CM_MINOR),
    );
    let v = i64::from(VERBS_MAJOR);
    assert_eq!(
        device_nodes(&rdma, "uverbs1"),
        [cm.clone(), ("/dev/infiniband/uverbs1".to_string(), v, 193)]
    );
    assert_eq!(device_nodes(&rdma, "all").len(), 3);
    // --class still names the kind.
    let custom = generate(&m, &["--device-class", "gdrcopy", "--class", "gdr"]);
    assert_eq!(custom.kind, "nvidia.com/gdr");
}

#[test]
fn a_class_the_node_lacks_is_exit_3_with_what_was_looked_for() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    for (class, want) in [
        ("imex-channel", "no IMEX channel in"),
        ("gds", "nvidia-fsN (load the nvidia-fs module"),
        ("gdrcopy", "gdrdrv (load the gdrdrv module"),
        ("mofed", "uverbsN (load ib_uverbs"),
    ] {
        let o = m
            .command(&bin())
            .args(["--device-class", class])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{class}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("no devices found") && err.contains(want),
            "{class}: {err}"
        );
    }
    // nvidia-ctk's modes point at the device class.
    let o = m.command(&bin()).args(["--mode", "imex"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--device-class imex-channel"),
        "{}",
        stderr(&o)
    );
}
