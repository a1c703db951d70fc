//! Test 4: a device node listed in BIND_MOUNTS is usable inside the container although
//! the runtime's default device cgroup rules deny it (negative control included).
//!
//! The node is a fresh `mknod` of the kernel log device (char 1:11, not in runc's or
//! podman's default allow list) in a host temp dir. Writing to it appends a line to the
//! kernel log, which the test then finds on the host with `dmesg`.

use e2e_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const KMSG_MAJOR: u32 = 1;
const KMSG_MINOR: u32 = 11;

fn make_node(scratch: &Scratch) -> PathBuf {
    let dir = scratch.subdir("devices");
    let node = dir.join("e2e-kmsg");
    sh(&format!(
        "mknod -m 0620 '{}' c {KMSG_MAJOR} {KMSG_MINOR}",
        node.display()
    ));
    node
}

fn write_script(node: &Path, token: &str) -> String {
    format!("echo '{token}' > '{}' && echo WRITE-OK", node.display())
}

fn kernel_log_contains(token: &str) -> bool {
    let out = Command::new(require_command("dmesg"))
        .output()
        .expect("run dmesg");
    String::from_utf8_lossy(&out.stdout).contains(token)
}

/// Negative control: the same node bind-mounted by the runtime itself, without our
/// hook, cannot be opened for writing (device cgroup denies it).
#[test]
fn runc_device_denied_without_hook() {
    let _lock = e2e_lock();
    require_command("runc");
    let rootfs = cached_rootfs();
    let scratch = Scratch::new("dev-neg");
    let ov = Overlay::new(scratch.path(), "rootfs", &rootfs);
    let node = make_node(&scratch);
    let token = unique_id("kmsg-neg");
    let mut b = Bundle::new(
        scratch.path(),
        "bundle",
        &ov.merged,
        &["/bin/sh", "-c", &write_script(&node, &token)],
    );
    b.add_bind_mount(&node, &node.display().to_string());
    let out = b.run_runc();
    assert!(
        !out.success() && !out.stdout.contains("WRITE-OK"),
        "negative control: writing the device node must FAIL without the hook's allow rule \
         (otherwise test 4 proves nothing)\n{out}"
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "negative control: expected EPERM from the device cgroup\n{out}"
    );
    assert!(
        !kernel_log_contains(&token),
        "negative control: the token reached the kernel log"
    );
}

fn check_written(out: &RunOutput, token: &str, context: &str) {
    out.assert_success(context);
    assert!(
        out.stdout.contains("WRITE-OK"),
        "{context}: write did not report success\n{out}"
    );
    assert!(
        kernel_log_contains(token),
        "{context}: the line written to the device node is not in the host kernel log\n{out}"
    );
}

/// BIND_MOUNTS device node with mpi-hook (+ glibc-hook) under bare runc.
#[test]
fn runc_bind_mounts_device_is_writable() {
    let env = hooked_env();
    let scratch = Scratch::new("dev-runc");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let node = make_node(&scratch);
    let token = unique_id("kmsg-runc");
    let mut b = Bundle::new(
        scratch.path(),
        "bundle",
        &ov.merged,
        &["/bin/sh", "-c", &write_script(&node, &token)],
    );
    b.enable_hooks(true, true);
    let mpi = Hook::mpi(&b.log, "debug").with_env("BIND_MOUNTS", &node.display().to_string());
    let glibc = Hook::glibc(&b.log, "debug");
    b.add_hook("createRuntime", &glibc);
    b.add_hook("createRuntime", &mpi);
    let out = b.run_runc();
    check_written(&out, &token, "runc, BIND_MOUNTS device node");
}

/// The same under podman (different cgroup layout: libpod_parent/libpod-<id>).
#[test]
fn podman_bind_mounts_device_is_writable() {
    let env = hooked_env();
    require_command("podman");
    let scratch = Scratch::new("dev-podman");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let node = make_node(&scratch);
    let token = unique_id("kmsg-podman");
    let log = scratch.path().join("hooks.log");
    let hooks_d = scratch.subdir("hooks.d");
    let mpi = Hook::mpi(&log, "debug").with_env("BIND_MOUNTS", &node.display().to_string());
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[&Hook::glibc(&log, "debug"), &mpi],
    );
    let script = write_script(&node, &token);
    let out = PodmanRun::new(&hooks_d, &ov.merged, &["/bin/sh", "-c", &script])
        .enable_hooks(true, true)
        .hook_log(&log)
        .run();
    check_written(&out, &token, "podman, BIND_MOUNTS device node");
}
