//! `hpc-rank --device`: names checked before anything runs, podman gets `--device`, and
//! in runc mode the config.json handed to runc carries the CDI edits of a spec that
//! cdi-gen generated for a fake GPU machine (mock NVML): device nodes with their cgroup
//! rules, the driver's mounts, env and hooks. runc and podman are stand-in scripts here
//! (a real runc run: devices_e2e.rs). Needs root and the cdi-gen binary.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::*;
use test_support::{NVIDIA_MAJOR, UVM_MAJOR};

/// A runc stand-in: `run --bundle B` copies B/config.json to `out`; every call is
/// appended to `calls`.
fn fake_runc(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (runc, out, calls) = (dir.join("runc"), dir.join("config.json"), dir.join("calls"));
    script(
        &runc,
        &format!(
            "#!/bin/sh\necho \"$*\" >> {calls}\n[ \"$1\" = run ] || exit 0\n\
             while [ $# -gt 0 ]; do [ \"$1\" = --bundle ] && cp \"$2/config.json\" {out}; shift; done\n\
             exit 0\n",
            calls = calls.display(),
            out = out.display()
        ),
    );
    (runc, out, calls)
}

/// `hpc-rank --runc R --hooks-dir EMPTY --no-mpi --no-glibc [extra] ROOTFS /bin/true`.
fn runc_rank(runc: &Path, hooks: &Path, extra: &[&str], rootfs: &Path) -> std::process::Command {
    let mut args: Vec<String> = vec![
        "--runc".into(),
        runc.display().to_string(),
        "--hooks-dir".into(),
        hooks.display().to_string(),
        "--no-mpi".into(),
        "--no-glibc".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(rootfs.display().to_string());
    args.push("/bin/true".into());
    hpc_rank(args)
}

#[test]
fn bad_device_names_are_usage_errors() {
    let (code, out, err) = run(&mut hpc_rank([
        "--device",
        "nvidia.com/gpu",
        "/nonexistent",
        "/bin/true",
    ]));
    assert_eq!(code, 125);
    assert_eq!(out, "");
    assert!(
        err.starts_with(
            "hpc-rank: error: invalid value 'nvidia.com/gpu' for '--device <VENDOR/CLASS=NAME>': \
             invalid qualified device name \"nvidia.com/gpu\": expected vendor/class=name, e.g. \
             nvidia.com/gpu=0; --device takes vendor/class=name, e.g. nvidia.com/gpu=0 or \
             nvidia.com/gpu=all\n"
        ),
        "{err:?}"
    );
    let (code, _, err) = run(&mut hpc_rank([
        "--device",
        "nvidia.com/gpu=0",
        "--device",
        "nvidia.com/gpu=bad/name",
        "/nonexistent",
        "/bin/true",
    ]));
    assert_eq!(code, 125);
    assert!(
        err.starts_with(
            "hpc-rank: error: invalid value 'nvidia.com/gpu=bad/name' for '--device \
             <VENDOR/CLASS=NAME>': invalid device name \"bad/name\""
        ),
        "{err:?}"
    );
}

/// `--cdi-spec-dir` chooses specs whose hooks run as root: the real root's only.
#[test]
fn cdi_spec_dir_is_for_the_real_root() {
    require_root();
    use std::os::unix::process::CommandExt;
    let rootfs = busybox_rootfs();
    let (code, out, err) = run(hpc_rank([
        "--cdi-spec-dir".as_ref(),
        "/tmp".as_ref(),
        "--device".as_ref(),
        "nvidia.com/gpu=0".as_ref(),
        rootfs.path().as_os_str(),
        "/bin/true".as_ref(),
    ])
    .uid(65534)
    .gid(65534));
    assert_eq!(code, 125);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "hpc-rank: error: --cdi-spec-dir chooses what runs as root and is only accepted from \
         the real root (real uid 0, not through sudo or a wrapper; caller: unprivileged user): \
         leave it out, or ask the admin to set it in /etc/hpc-hooks/hpc-rank.conf\n"
    );
}

#[test]
fn podman_gets_the_devices_and_no_spec_dir() {
    require_root();
    let d = tempfile::tempdir().unwrap();
    let podman = d.path().join("podman");
    script(
        &podman,
        "#!/bin/sh\nfor a; do [ \"$a\" = info ] && { echo cgroupfs; exit 0; }; done\nexit 0\n",
    );
    let (code, _, err) = run(&mut hpc_rank([
        "--log-level".as_ref(),
        "debug".as_ref(),
        "--runtime".as_ref(),
        "podman".as_ref(),
        "--podman".as_ref(),
        podman.as_os_str(),
        "--device".as_ref(),
        "nvidia.com/gpu=0".as_ref(),
        "--device".as_ref(),
        "amd.com/gpu=all".as_ref(),
        "example.org/img:1".as_ref(),
        "/bin/true".as_ref(),
    ]));
    assert_eq!(code, 0, "{err}");
    let run_line = err
        .lines()
        .find(|l| l.contains(" run --rm "))
        .unwrap_or_else(|| panic!("no runtime command at debug: {err}"));
    assert!(
        run_line.contains(" --device nvidia.com/gpu=0 --device amd.com/gpu=all "),
        "{run_line}"
    );
    let (code, _, err) = run(&mut hpc_rank([
        "--runtime".as_ref(),
        "podman".as_ref(),
        "--podman".as_ref(),
        podman.as_os_str(),
        "--cdi-spec-dir".as_ref(),
        "/etc/cdi".as_ref(),
        "--device".as_ref(),
        "nvidia.com/gpu=0".as_ref(),
        "example.org/img:1".as_ref(),
        "/bin/true".as_ref(),
    ]));
    assert_eq!(code, 125);
    assert_eq!(
        err,
        "hpc-rank: error: --cdi-spec-dir is for --runtime runc: podman resolves --device from \
         its own CDI spec directories (cdi_spec_dirs in containers.conf); leave --cdi-spec-dir \
         out\n"
    );
}

fn device(c: &Value, path: &str) -> Value {
    c["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == path)
        .unwrap_or_else(|| panic!("no {path} in linux.devices: {}", c["linux"]["devices"]))
        .clone()
}

#[test]
fn runc_config_json_gets_the_mock_gpu_edits() {
    require_root();
    let d = tempfile::tempdir().unwrap();
    let (runc, out, calls) = fake_runc(d.path());
    let hooks = d.path().join("hooks.d");
    std::fs::create_dir(&hooks).unwrap();
    let hook = PathBuf::from("/usr/libexec/hpc-hooks/gpu-hook");
    let specs = GpuSpecs::new(&hook, 1);
    let spec_dir = specs.dir.path().display().to_string();
    let rootfs = busybox_rootfs();
    let (code, _, err) = run(&mut runc_rank(
        &runc,
        &hooks,
        &["--cdi-spec-dir", &spec_dir, "--device", "nvidia.com/gpu=0"],
        rootfs.path(),
    ));
    assert_eq!(code, 0, "{err}");
    let c: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let root = specs.root().display().to_string();
    // Device nodes: the GPU's, and the spec-wide control nodes, type/major/minor from the spec.
    assert_eq!(
        device(&c, "/dev/nvidia0"),
        json!({"path": "/dev/nvidia0", "type": "c", "major": NVIDIA_MAJOR, "minor": 0})
    );
    assert_eq!(device(&c, "/dev/nvidiactl")["minor"], 255);
    assert_eq!(device(&c, "/dev/nvidia-uvm")["major"], UVM_MAJOR);
    assert_eq!(device(&c, "/dev/dri/renderD128")["major"], 226);
    // One cgroup allow rule per node, rwm (the spec gives no permissions).
    let rules = c["linux"]["resources"]["devices"].as_array().unwrap();
    for (major, minor) in [
        (NVIDIA_MAJOR, 0),
        (NVIDIA_MAJOR, 255),
        (UVM_MAJOR, 0),
        (226, 128),
    ] {
        assert!(
            rules.contains(
                &json!({"allow": true, "type": "c", "major": major, "minor": minor,
                                   "access": "rwm"})
            ),
            "no rule for {major}:{minor}: {rules:?}"
        );
    }
    assert_eq!(rules.len(), c["linux"]["devices"].as_array().unwrap().len());
    // The driver's libraries are bind-mounted from the driver root, read-only.
    let lib = format!("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{DRIVER}");
    let m = c["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == lib.as_str())
        .unwrap_or_else(|| panic!("no mount of {lib}: {}", c["mounts"]));
    assert_eq!(m["source"], format!("{root}{lib}"));
    assert_eq!(m["options"], json!(["ro", "nosuid", "nodev", "bind"]));
    // hpc-rank's own mounts are kept, parents before children.
    let dests: Vec<&str> = c["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    for own in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/sys",
        "/etc/hosts",
    ] {
        assert!(dests.contains(&own), "{own} lost: {dests:?}");
    }
    let pos = |p: &str| dests.iter().position(|d| *d == p).unwrap();
    assert!(pos("/dev") < pos("/dev/pts"), "{dests:?}");
    // The spec's env and hooks.
    assert!(
        c["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("NVIDIA_VISIBLE_DEVICES=void")),
        "{}",
        c["process"]["env"]
    );
    let hooks = c["hooks"]["createContainer"].as_array().unwrap();
    let subcommands: Vec<&str> = hooks
        .iter()
        .map(|h| {
            assert_eq!(h["path"], hook.display().to_string());
            h["args"][1].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        subcommands,
        [
            "create-symlinks",
            "update-ldcache",
            "enable-cuda-compat",
            "create-symlinks"
        ],
        "spec-wide hooks, then the device's"
    );
    assert!(
        std::fs::read_to_string(&calls)
            .unwrap()
            .starts_with("run --bundle "),
        "runc was run"
    );
}

#[test]
fn runc_refuses_unknown_devices_and_untrusted_specs_before_starting() {
    require_root();
    let d = tempfile::tempdir().unwrap();
    let (runc, _, calls) = fake_runc(d.path());
    let hooks = d.path().join("hooks.d");
    std::fs::create_dir(&hooks).unwrap();
    let specs = GpuSpecs::new(Path::new("/usr/libexec/hpc-hooks/gpu-hook"), 1);
    let spec_dir = specs.dir.path().display().to_string();
    let rootfs = busybox_rootfs();
    let (code, out, err) = run(&mut runc_rank(
        &runc,
        &hooks,
        &["--cdi-spec-dir", &spec_dir, "--device", "nvidia.com/gpu=7"],
        rootfs.path(),
    ));
    assert_eq!(code, 125);
    assert_eq!(out, "");
    let uuid = &specs.machine.spec.gpus[0].uuid;
    assert_eq!(
        err,
        format!(
            "hpc-rank: error: unknown CDI device nvidia.com/gpu=7 (nvidia.com/gpu=7: no spec \
             defines it); available in {spec_dir}: nvidia.com/gpu=0, nvidia.com/gpu={uuid}, \
             nvidia.com/gpu=all; generate a spec as root with `cdi-gen --output \
             /etc/cdi/nvidia.yaml` (cdi-gen --help), or request one of the available devices\n"
        )
    );
    // A spec directory others may write is refused: its specs could add any host node.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(specs.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, _, err) = run(&mut runc_rank(
        &runc,
        &hooks,
        &["--cdi-spec-dir", &spec_dir, "--device", "nvidia.com/gpu=0"],
        rootfs.path(),
    ));
    assert_eq!(code, 125);
    assert!(
        err.starts_with(&format!(
            "hpc-rank: error: CDI spec directory {spec_dir} is not trusted: {spec_dir}: mode 777 \
             is group- or world-writable;"
        )),
        "{err}"
    );
    assert!(
        !calls.exists(),
        "runc was run: {:?}",
        std::fs::read_to_string(&calls)
    );
}
