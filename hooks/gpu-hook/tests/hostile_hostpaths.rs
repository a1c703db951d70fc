//! Attack tests (issue 18 item 2): a local user plants `/tmp/nvidia-mps -> <secret host
//! directory>` (or their own directory) where the MPS pipe directory goes. Neither a spec
//! cdi-gen generated before the swap, nor live discovery, nor cdi-gen's fresh spec may make
//! gpu-hook bind it: the container never sees the secret directory, and the hook log says
//! why. Real runc, fake driver root with the mock NVML; fails (never skips) without runc.

mod support;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use e2e_tests::{e2e_lock, Bundle, Overlay, RunOutput, Scratch};
use support::*;
use test_support::*;

const TOKEN: &str = "SECRET-HOST-HASH-9f2c";

/// The container lists the MPS directory, reads the secret through it, and loads libcuda
/// (the control: the rest of the spec was applied).
const SCRIPT: &str = "echo MPS-LIST:; ls /tmp/nvidia-mps 2>&1; cat /tmp/nvidia-mps/shadow 2>&1; echo; gpu-dlopen libcuda.so.1; true";

fn mkdir(p: &Path, mode: u32, uid: u32) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
}

/// One runc container with gpu-hook (spec files from `spec_dir`); returns output and log.
fn run(
    m: &FakeMachine,
    scratch: &Scratch,
    name: &str,
    spec_dir: &Path,
) -> (RunOutput, String, Overlay) {
    let ov = Overlay::new(scratch.path(), name, &cached_rootfs());
    let mut b = Bundle::new(
        scratch.path(),
        &format!("{name}-bundle"),
        &ov.merged,
        &["sh", "-c", SCRIPT],
    );
    b.add_env("NVIDIA_VISIBLE_DEVICES=all");
    let args = hook_args(
        m,
        &spec_dir.display().to_string(),
        &["--env-requests", "always"],
    );
    let env = hook_env(b.hook_log());
    add_raw_hook(&mut b, "createRuntime", hook_json(args, env));
    let out = b.run_runc();
    let log = std::fs::read_to_string(b.hook_log()).unwrap_or_default();
    (out, log, ov)
}

/// cdi-gen's spec for the machine, written into `dir`.
fn generate_spec(m: &FakeMachine, dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("nvidia.yaml");
    let o = m
        .command(&cdi_gen_bin())
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cdi-gen failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_not_seen(out: &RunOutput, what: &str) {
    assert!(out.success(), "{what}: the container must still run\n{out}");
    assert!(
        !out.stdout.contains(TOKEN),
        "{what}: the container read the secret\n{out}"
    );
    assert!(
        !out.stdout.contains("\nshadow\n"),
        "{what}: the container sees the secret directory\n{out}"
    );
    assert!(
        out.stdout.contains("ok libcuda.so.1 cuInit"),
        "{what}: control failed, the driver was not injected\n{out}"
    );
}

#[test]
fn runc_planted_mps_symlink_is_never_bound() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-hostpaths");
    let m = build_machine(&MachineSpec::nvidia(1));
    let secret: PathBuf = m.root.parent().unwrap().join("secret-host-dir");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("shadow"), format!("root:{TOKEN}\n")).unwrap();
    mkdir(&m.root.join("tmp"), 0o1777, 0);
    let mps = m.root.join("tmp/nvidia-mps");

    // 1. Root's MPS directory at generation time: in the spec, read-only, and bound.
    mkdir(&mps, 0o755, 0);
    std::fs::write(mps.join("control"), "").unwrap();
    let stale = scratch.subdir("stale-specs");
    generate_spec(&m, &stale);
    let spec = std::fs::read_to_string(stale.join("nvidia.yaml")).unwrap();
    assert!(
        spec.contains("containerPath: /tmp/nvidia-mps\n    options:\n    - ro\n"),
        "the root-owned MPS directory is shared read-only:\n{spec}"
    );
    let (out, log, _ov) = run(&m, &scratch, "mps-root", &stale);
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("MPS-LIST:\ncontrol\n"),
        "control: the root-owned MPS directory is bound\n{out}\n{log}"
    );

    // 2. The daemon's directory is gone and a user planted a symlink in its place; the
    //    stale spec still names it. gpu-hook opens the host path without following it.
    std::fs::remove_dir_all(&mps).unwrap();
    symlink(&secret, &mps).unwrap();
    let (out, log, _ov) = run(&m, &scratch, "mps-stale", &stale);
    assert_not_seen(&out, "stale spec");
    assert!(
        log.contains(&format!(
            "not mounting {} at /tmp/nvidia-mps: host path {}: {} is a symlink under the world-writable directory /tmp",
            mps.display(),
            mps.display(),
            mps.display()
        )),
        "the hook log says why:\n{log}"
    );

    // 3. Live discovery (no spec files): cdi-gen's resolver leaves it out.
    let none = scratch.subdir("no-specs");
    let (out, log, _ov) = run(&m, &scratch, "mps-live", &none);
    assert_not_seen(&out, "live discovery");
    assert!(
        log.contains("MPS pipe directory /tmp/nvidia-mps left out of the spec: /tmp/nvidia-mps is a symlink under the world-writable directory /tmp"),
        "{log}"
    );

    // 4. A spec generated now: no such mount at all.
    let fresh = scratch.subdir("fresh-specs");
    let stderr = generate_spec(&m, &fresh);
    let spec = std::fs::read_to_string(fresh.join("nvidia.yaml")).unwrap();
    assert!(
        !spec.contains("nvidia-mps") && !spec.contains("secret-host-dir"),
        "{spec}"
    );
    assert!(
        stderr.contains("is a symlink under the world-writable directory /tmp"),
        "{stderr}"
    );
    let (out, _log, _ov) = run(&m, &scratch, "mps-fresh", &fresh);
    assert_not_seen(&out, "fresh spec");

    // 5. A user's own directory (MPS server impersonation) with the stale spec: not bound.
    std::fs::remove_file(&mps).unwrap();
    mkdir(&mps, 0o755, 1000);
    std::fs::write(mps.join("shadow"), format!("fake-server {TOKEN}\n")).unwrap();
    let (out, log, _ov) = run(&m, &scratch, "mps-user", &stale);
    assert_not_seen(&out, "user-owned directory");
    assert!(log.contains("is owned by uid 1000, not root"), "{log}");
}
