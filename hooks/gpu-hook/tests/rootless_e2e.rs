//! Rootless: gpu-hook run by rootless podman (4.3, runc, cgroupfs) for an unprivileged user
//! the test creates (e2e_tests::RootlessUser), on a fake machine: `NVIDIA_VISIBLE_DEVICES=0`
//! and a MIG device through a hooks.d file (the nodes are bound from the host, as mknod is
//! not permitted in the user namespace; the device cgroup step is skipped and said once),
//! and a cdi-gen spec through `podman --device`, whose createContainer hooks run gpu-hook
//! in the user namespace.
//!
//! Needs root (to create the user), podman, uidmap: fails, never skips.

#[allow(dead_code)] // hook_json: this file builds its hook object from copies
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e_tests::{
    copy_for_user, e2e_lock, make_reachable, require_command, run_cmd, unique_id, RootlessUser,
    RunOutput, Scratch,
};
use serde_json::json;
use support::*;
use test_support::*;

const T: Duration = Duration::from_secs(180);

/// gpu-hook and cdi-gen copied where the rootless user can run them (the originals may
/// be in a checkout in root's home).
struct Bins {
    gpu_hook: PathBuf,
    cdi_gen: PathBuf,
}

fn bins(scratch: &Scratch) -> Bins {
    let dir = scratch.path().join("bin");
    Bins {
        gpu_hook: copy_for_user(&gpu_hook_bin(), &dir),
        cdi_gen: copy_for_user(&cdi_gen_bin(), &dir),
    }
}

/// The hooks.d file of the packaging template for a fake machine (live discovery).
fn write_hooks_d(dir: &Path, m: &FakeMachine, log: &Path, b: &Bins) {
    std::fs::create_dir_all(dir).unwrap();
    let mut args = hook_args(m, "/nonexistent", &["--source", "discover"]);
    args.extend(["--env-requests".to_string(), "always".to_string()]);
    let original = cdi_gen_bin().display().to_string();
    for a in args.iter_mut().filter(|a| **a == original) {
        *a = b.cdi_gen.display().to_string();
    }
    let doc = json!({
        "version": "1.0.0",
        "hook": hook_object(&b.gpu_hook, args, hook_env(log)),
        "when": { "always": true },
        "stages": ["createRuntime"],
    });
    std::fs::write(
        dir.join("50-hpc-hooks-gpu.json"),
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
}

/// A copy of the small cached rootfs owned by the user (as an image in its rootless
/// storage is: owned by its namespace's root), where the hooks may make mount points.
fn user_rootfs(user: &RootlessUser, scratch: &Scratch) -> PathBuf {
    let dst = scratch.path().join("rootfs");
    let out = e2e_tests::sh(&format!(
        "cp -a '{}' '{}' && chown -R {}:{} '{}' && echo copied",
        cached_rootfs().display(),
        dst.display(),
        user.uid,
        user.gid,
        dst.display()
    ));
    assert!(out.contains("copied"), "copy of the rootfs: {out}");
    dst
}

/// `podman run` as the user on a rootless overlay of its copy of the rootfs.
fn podman(
    user: &RootlessUser,
    rootfs: &Path,
    hooks_d: &Path,
    env: &[&str],
    device: Option<&str>,
    script: &str,
) -> RunOutput {
    let mut c = user.command(&require_command("podman"), &[]);
    c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
        .arg("--hooks-dir")
        .arg(hooks_d)
        .args(["run", "--rm", "--name", &unique_id("hpcrootless-gpu")])
        .args(["--network", "none"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
    for e in env {
        c.arg("--env").arg(e);
    }
    if let Some(d) = device {
        c.arg("--device").arg(d);
    }
    c.arg("--rootfs")
        .arg(format!("{}:O", rootfs.display()))
        .args(["/bin/sh", "-c", script]);
    let mut out = run_cmd(c, T);
    out.attach_file("hook log (fallback)", &user.hook_log());
    out
}

/// Fake machines are built under a root-owned directory that is not world-writable (not
/// /tmp): in the user namespace every host user shows as the overflow uid, so the hooks
/// cannot tell root's files from others' under a world-writable directory, and refuse
/// them (real driver files are in /usr and /dev). Removed on drop.
struct MachineDir(PathBuf);

impl MachineDir {
    fn new() -> MachineDir {
        let d = PathBuf::from(format!(
            "/var/lib/hpc-hooks-rootless-e2e.{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        // FakeMachine::build makes its directory with tempfile, in TMPDIR.
        std::env::set_var("TMPDIR", &d);
        MachineDir(d)
    }
}

impl Drop for MachineDir {
    fn drop(&mut self) {
        std::env::remove_var("TMPDIR");
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binaries the user runs and the fake machine must be reachable by it.
fn reachable(m: &FakeMachine) {
    for p in [&m.root, &m.sys, &m.proc] {
        make_reachable(p);
    }
}

const SCRIPT: &str = "for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -e \"$f\" ] && [ ! -d \"$f\" ] && stat -c 'NODE %n %F %t %T %a' \"$f\"; done; gpu-dlopen libcuda.so.1 libnvidia-ml.so.1; true";

fn check_gpu0(
    out: &RunOutput,
    what: &str,
) -> std::collections::BTreeMap<String, (String, u32, u32, String)> {
    out.assert_success(what);
    let nodes = parse_stat(&out.stdout);
    assert!(
        nodes.contains_key("/dev/nvidia0") && nodes.contains_key("/dev/nvidiactl"),
        "{what}: {out}"
    );
    assert!(!nodes.contains_key("/dev/nvidia1"), "{what}: {out}");
    assert_eq!(
        (nodes["/dev/nvidia0"].1, nodes["/dev/nvidia0"].2),
        (195, 0),
        "{what}"
    );
    assert!(
        out.stdout.contains("ok libcuda.so.1 cuInit"),
        "{what}: {out}"
    );
    nodes
}

/// One test: the fake machines' stub libraries are built once per process in TMPDIR
/// (the machine directory), which is removed at its end.
#[test]
fn rootless_gpu_hook_and_cdi_spec() {
    require_command("podman");
    let _l = e2e_lock();
    let _machines = MachineDir::new();
    gpu0_and_mig_through_hooks_d();
    cdi_spec_with_device();
}

fn gpu0_and_mig_through_hooks_d() {
    let scratch = Scratch::new("rootless-gpu");
    make_reachable(scratch.path());
    let user = RootlessUser::create();
    let rootfs = user_rootfs(&user, &scratch);
    let b = bins(&scratch);

    let m = build_machine(&MachineSpec::nvidia(2));
    reachable(&m);
    let hooks = scratch.subdir("hooks");
    let log = scratch.path().join("hook.log");
    write_hooks_d(&hooks, &m, &log, &b);
    let out = podman(
        &user,
        &rootfs,
        &hooks,
        &["NVIDIA_VISIBLE_DEVICES=0"],
        None,
        SCRIPT,
    );
    check_gpu0(&out, "rootless, NVIDIA_VISIBLE_DEVICES=0");
    let text = std::fs::read_to_string(user.hook_log()).unwrap_or_default();
    assert!(
        text.contains("bound host node") && !text.contains("created /dev/nvidia0"),
        "nodes bound, not created: {text}"
    );
    assert_eq!(
        text.matches("device cgroup not edited for").count(),
        1,
        "the skipped cgroup step is said once: {text}"
    );
    assert!(
        text.contains("the hook runs in a user namespace (a rootless container), where the runtime sets up no device cgroup to edit"),
        "{text}"
    );

    // A MIG device: GPU 0's second MIG device, by index.
    let m = build_machine(&MachineSpec::mig(2, 1, 2));
    reachable(&m);
    let hooks = scratch.subdir("hooks-mig");
    write_hooks_d(&hooks, &m, &log, &b);
    let mig = &m.spec.gpus[0].migs[1];
    let gi = test_support::mig_minor(0, mig.gi, None);
    let ci = test_support::mig_minor(0, mig.gi, Some(mig.ci));
    let out = podman(
        &user,
        &rootfs,
        &hooks,
        &["NVIDIA_VISIBLE_DEVICES=0:1"],
        None,
        SCRIPT,
    );
    let nodes = check_gpu0(&out, "rootless, MIG 0:1");
    let gi_node = &nodes[&format!("/dev/nvidia-caps/nvidia-cap{gi}")];
    let ci_node = &nodes[&format!("/dev/nvidia-caps/nvidia-cap{ci}")];
    assert_eq!((gi_node.1, gi_node.2), (test_support::CAPS_MAJOR, gi));
    assert_eq!((ci_node.1, ci_node.2), (test_support::CAPS_MAJOR, ci));
}

/// Removes an installed spec even when an assertion fails.
struct Installed(PathBuf);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sets each device node's container path to its host path.
fn nodes_at_host_paths(edits: &mut serde_json::Value) {
    if let Some(nodes) = edits["deviceNodes"].as_array_mut() {
        for n in nodes {
            if let Some(h) = n["hostPath"].as_str().map(str::to_string) {
                n["path"] = json!(h);
            }
        }
    }
}

/// A cdi-gen spec in /etc/cdi (rootless podman reads the same spec directories): podman
/// binds the nodes itself and runs the spec's createContainer hooks (gpu-hook
/// create-symlinks, update-ldcache) in the user namespace. Rootless runc binds each node
/// from the host at its container path, so on the fake machine the spec's nodes keep
/// their host paths (on a real node, cdi-gen's `path` and `hostPath` are the same).
fn cdi_spec_with_device() {
    let scratch = Scratch::new("rootless-cdi");
    make_reachable(scratch.path());
    let user = RootlessUser::create();
    let rootfs = user_rootfs(&user, &scratch);
    let b = bins(&scratch);
    let m = build_machine(&MachineSpec::nvidia(2));
    reachable(&m);
    let class = format!("hpcrootless{}", std::process::id());
    let o = m
        .command(&cdi_gen_bin())
        .args([
            "--class",
            &class,
            "--format",
            "json",
            "--discovery",
            "procfs",
        ])
        .args(["--hook-path", &b.gpu_hook.display().to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "cdi-gen: {}", stderr(&o));
    let mut spec: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let text = spec.to_string();
    assert!(
        text.contains("create-symlinks") && text.contains("update-ldcache"),
        "{text}"
    );
    nodes_at_host_paths(&mut spec["containerEdits"]);
    if let Some(devs) = spec["devices"].as_array_mut() {
        for d in devs {
            nodes_at_host_paths(&mut d["containerEdits"]);
        }
    }
    std::fs::create_dir_all("/etc/cdi").unwrap();
    let installed = Installed(PathBuf::from(format!("/etc/cdi/{class}.json")));
    std::fs::write(&installed.0, spec.to_string()).unwrap();
    let nohooks = scratch.subdir("nohooks");
    let device = format!("nvidia.com/{class}=0");
    let dev = m.root.join("dev");
    let out = podman(
        &user,
        &rootfs,
        &nohooks,
        &[],
        Some(&device),
        &format!(
            "for f in {}/nvidia*; do stat -c 'NODE %n %F %t %T %a' \"$f\"; done; gpu-dlopen libcuda.so.1 libnvidia-ml.so.1; echo CACHE $(grep -c -a libnvidia-ptxjitcompiler.so.1 /etc/ld.so.cache); readlink /usr/lib/x86_64-linux-gnu/libcuda.so",
            dev.display()
        ),
    );
    out.assert_success("rootless podman --device (CDI spec hooks)");
    let nodes = parse_stat(&out.stdout);
    let gpu0 = dev.join("nvidia0").display().to_string();
    assert_eq!(
        nodes.get(&gpu0).map(|n| (n.1, n.2)),
        Some((195, 0)),
        "GPU 0's node: {out}"
    );
    assert!(
        !nodes.contains_key(&dev.join("nvidia1").display().to_string()),
        "{out}"
    );
    assert!(out.stdout.contains("ok libcuda.so.1 cuInit"), "{out}");
    assert!(
        !out.stdout.contains("CACHE 0"),
        "update-ldcache ran in the user namespace: {out}"
    );
    assert!(
        out.stdout.contains("\nlibcuda.so.1\n"),
        "create-symlinks ran in the user namespace: {out}"
    );
    drop(installed);
}
