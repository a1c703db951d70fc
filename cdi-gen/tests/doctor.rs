//! `cdi-gen doctor`: a spec generated for a fake machine matches it; then the machine
//! changes (driver upgrade, MIG layout, a removed GPU, renumbered nodes, an unloaded
//! module) or the spec files do (mode, a second file of the kind, a hook, cdiVersion vs
//! podman), and the report says which spec and device is wrong and why. Runs as root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::bin;
use test_support::{stderr, stdout, FakeMachine, MachineSpec, DRIVER, NVIDIA_MAJOR};

struct Doc {
    m: FakeMachine,
    dir: PathBuf,
    spec: PathBuf,
    hook: PathBuf,
}

/// A machine, an executable stand-in for gpu-hook, and its spec in `<tmp>/cdi`.
fn setup(spec: &MachineSpec, extra: &[&str]) -> Doc {
    let m = FakeMachine::build(spec);
    let hook = m.dir.path().join("gpu-hook");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = m.dir.path().join("cdi");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("nvidia.yaml");
    let o = m
        .command(&bin())
        .arg("--output")
        .arg(&out)
        .arg("--hook-path")
        .arg(&hook)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    Doc {
        m,
        dir,
        spec: out,
        hook,
    }
}

/// Runs the doctor on `dirs` for the machine; returns (exit code, report).
fn doctor(d: &Doc, dirs: &[&Path], extra: &[&str]) -> (i32, String) {
    let mut c = Command::new(bin());
    c.arg("doctor");
    for dir in dirs {
        c.arg("--spec-dir").arg(dir);
    }
    c.arg("--driver-root")
        .arg(&d.m.root)
        .arg("--sysfs-root")
        .arg(&d.m.sys)
        .arg("--procfs-root")
        .arg(&d.m.proc)
        .args(extra);
    if !extra.contains(&"--podman-version") {
        c.args(["--podman-version", "none"]);
    }
    c.env("MOCK_NVML_CONFIG", &d.m.nvml_config)
        .env_remove("CDI_GEN_DRIVER_ROOT");
    let o = c.output().unwrap();
    let text = format!("{}{}", stdout(&o), stderr(&o));
    (o.status.code().unwrap_or(-1), d.m.normalize(&text))
}

fn ok(d: &Doc) -> String {
    let (code, text) = doctor(d, &[&d.dir], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("/FAKE/cdi/nvidia.yaml: ok: kind nvidia.com/gpu")
            && text.contains("every spec matches the node"),
        "{text}"
    );
    text
}

fn problem(d: &Doc, want: &[&str]) -> String {
    let (code, text) = doctor(d, &[&d.dir], &[]);
    assert_eq!(code, 6, "{text}");
    for w in want {
        assert!(
            text.contains(&format!("/FAKE/cdi/nvidia.yaml: problem: {w}")),
            "missing {w:?} in:\n{text}"
        );
    }
    assert!(
        text.contains(": regenerate the stale specs (cdi-gen --output"),
        "{text}"
    );
    text
}

#[test]
fn mig_layout_change_and_removed_gpu() {
    let d = setup(&MachineSpec::mig(2, 1, 3), &[]);
    ok(&d);
    // MIG layout: the third MIG device is destroyed, the GPU 1 is removed.
    let mut now = d.m.spec.clone();
    let gone_mig = now.gpus[0].migs.pop().unwrap();
    let gone_gpu = now.gpus.pop().unwrap();
    std::fs::write(&d.m.nvml_config, now.nvml_config()).unwrap();
    std::fs::remove_file(d.m.root.join(format!("dev/nvidia{}", gone_gpu.minor))).unwrap();
    let text = problem(
        &d,
        &[
            &format!(
                "devices 0:2, 1, {}, {} are not on the node any more (GPU removed or MIG layout changed)",
                gone_gpu.uuid, gone_mig.uuid
            ),
            &format!(
                "device 1: node /FAKE/root/dev/nvidia{} does not exist on the node",
                gone_gpu.minor
            ),
        ],
    );
    assert!(!text.contains(": ok: kind"), "{text}");
    // A MIG device on another GPU instance: same name, other nodes.
    let mut moved = d.m.spec.clone();
    moved.gpus[0].migs[0].gi = 12;
    std::fs::write(&d.m.nvml_config, moved.nvml_config()).unwrap();
    let text = doctor(&d, &[&d.dir], &[]).1;
    assert!(
        text.contains("problem: device 0:0: its nodes differ from the node now (MIG layout changed, or devices renumbered)"),
        "{text}"
    );
}

#[test]
fn driver_upgrade_leaves_mounts_of_the_old_version() {
    let d = setup(&MachineSpec::nvidia(1), &[]);
    ok(&d);
    // The driver is upgraded: every file of 550.54.14 becomes 555.42.02.
    let new = "555.42.02";
    for dir in [
        "usr/lib/x86_64-linux-gnu",
        "usr/lib/i386-linux-gnu",
        "usr/lib/x86_64-linux-gnu/vdpau",
    ] {
        for e in std::fs::read_dir(d.m.root.join(dir)).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(DRIVER) {
                std::fs::rename(e.path(), e.path().with_file_name(format!("{stem}{new}"))).unwrap();
            }
        }
    }
    let mut now = d.m.spec.clone();
    now.driver = new.to_string();
    std::fs::write(&d.m.nvml_config, now.nvml_config()).unwrap();
    let v = d.m.proc.join("driver/nvidia/version");
    let text = std::fs::read_to_string(&v).unwrap().replace(DRIVER, new);
    std::fs::write(&v, text).unwrap();
    problem(
        &d,
        &[&format!(
            "spec-wide edits: mount /FAKE/root/usr/lib/x86_64-linux-gnu/libcuda.so.{DRIVER} -> /usr/lib/x86_64-linux-gnu/libcuda.so.{DRIVER}: the host path no longer exists (the driver is now {new}: the spec mounts files of another version); regenerate the spec"
        )],
    );
}

#[test]
fn renumbered_node_and_unloaded_module() {
    let d = setup(&MachineSpec::nvidia(1), &[]);
    let node = d.m.root.join("dev/nvidia0");
    std::fs::remove_file(&node).unwrap();
    let c = std::ffi::CString::new(node.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(NVIDIA_MAJOR, 7),
        )
    };
    assert_eq!(rc, 0, "mknod (run as root)");
    // nvidia-uvm unloaded: its major is gone from /proc/devices.
    let p = d.m.proc.join("devices");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("510 nvidia-uvm\n", "");
    std::fs::write(&p, text).unwrap();
    problem(
        &d,
        &[
            "device 0: node /FAKE/root/dev/nvidia0: the spec says 195:0 but the node is 195:7 (devices renumbered or the driver reloaded); regenerate the spec",
            "spec-wide edits: node /FAKE/root/dev/nvidia-uvm: no character driver has major 510 in /proc/devices",
        ],
    );
}

#[test]
fn file_mode_hook_and_shadowed_kind() {
    let d = setup(&MachineSpec::nvidia(1), &[]);
    // A second file of the kind in a lower-priority directory: never used, a note.
    let low = d.m.dir.path().join("etc-cdi");
    std::fs::create_dir_all(&low).unwrap();
    std::fs::copy(&d.spec, low.join("old.yaml")).unwrap();
    let (code, text) = doctor(&d, &[&low, &d.dir], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("/FAKE/etc-cdi/old.yaml: note: kind nvidia.com/gpu is also defined by /FAKE/cdi/nvidia.yaml, which wins for every device")
            && text.contains("engines never use this file; remove it"),
        "{text}"
    );
    assert!(text.contains("/FAKE/cdi/nvidia.yaml: note: kind nvidia.com/gpu is also defined by /FAKE/etc-cdi/old.yaml; this file serves"), "{text}");
    // World-writable spec file, hook not executable.
    std::fs::set_permissions(&d.spec, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&d.hook, std::fs::Permissions::from_mode(0o644)).unwrap();
    problem(
        &d,
        &[
            "file mode 0666 is group- or world-writable",
            "spec-wide edits: hook /FAKE/gpu-hook is not executable (mode 0644): engines fail every container using it",
        ],
    );
}

#[test]
fn cdi_version_newer_than_podman_accepts() {
    let d = setup(&MachineSpec::nvidia(1), &["--spec-version", "0.6.0"]);
    let (code, text) = doctor(&d, &[&d.dir], &["--podman-version", "4.9.3"]);
    assert_eq!(code, 6, "{text}");
    assert!(
        text.contains("/FAKE/cdi/nvidia.yaml: problem: cdiVersion 0.6.0 is newer than podman 4.9.3 on this node loads (podman 4.x accepts at most 0.5.0): podman ignores this file"),
        "{text}"
    );
    let (code, text) = doctor(&d, &[&d.dir], &["--podman-version", "5.4.2"]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn no_spec_and_unloadable_spec() {
    let d = setup(&MachineSpec::nvidia(1), &[]);
    let empty = d.m.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, text) = doctor(&d, &[&empty], &[]);
    assert_eq!(code, 6, "{text}");
    assert!(
        text.contains("problem: no CDI spec in /FAKE/empty")
            && text.contains("cdi-gen doctor: 0 spec files in /FAKE/empty: 1 problem: regenerate"),
        "{text}"
    );
    std::fs::write(
        empty.join("bad.yaml"),
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: 3\n",
    )
    .unwrap();
    let (code, text) = doctor(&d, &[&empty], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("does not load: ")
            && text.contains("bad.yaml")
            && text.contains(": 1 spec file does not load"),
        "{text}"
    );
}

#[test]
fn hpc_class_spec_checked_against_the_node() {
    let m = MachineSpec::nvidia(1).with_extras();
    let d = setup(&m, &[]);
    let o =
        d.m.command(&bin())
            .args(["--device-class", "imex-channel", "--output"])
            .arg(d.dir.join("imex.yaml"))
            .output()
            .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (code, text) = doctor(&d, &[&d.dir], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("/FAKE/cdi/imex.yaml: ok: kind nvidia.com/imex-channel"),
        "{text}"
    );
    std::fs::remove_file(d.m.root.join("dev/nvidia-caps-imex-channels/channel1")).unwrap();
    let (code, text) = doctor(&d, &[&d.dir], &[]);
    assert_eq!(code, 6, "{text}");
    assert!(
        text.contains("/FAKE/cdi/imex.yaml: problem: devices 1 are not on the node any more"),
        "{text}"
    );
}

#[test]
fn every_naming_strategy_is_compared() {
    let d = setup(
        &MachineSpec::mig(2, 1, 2),
        &["--device-name-strategy", "type-index"],
    );
    ok(&d);
    let mut now = d.m.spec.clone();
    now.gpus[0].migs.pop();
    std::fs::write(&d.m.nvml_config, now.nvml_config()).unwrap();
    problem(
        &d,
        &["devices mig0:1 are not on the node any more (GPU removed or MIG layout changed)"],
    );
}
