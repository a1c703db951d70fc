//! Attack tests for host paths cdi-gen puts into specs (issue 18 item 2): a symlink, or
//! another user's file, under a world-writable directory of the driver root (the MPS
//! pipe directory `/tmp/nvidia-mps` above all) never becomes a bind mount; the MPS
//! directory is shared only when root owns it (or the admin names it) and always read-only.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use cdi_specs::types::Mount;
use common::bin;
use test_support::{FakeMachine, MachineSpec};

/// Runs cdi-gen; asserts success; returns (spec-wide mounts, stderr, spec text).
fn generate(m: &FakeMachine, args: &[&str]) -> (Vec<Mount>, String, String) {
    let o = m.command(&bin()).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "cdi-gen {args:?} failed: {stderr}");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let spec = cdi_specs::parse::from_str(&text, cdi_specs::Format::Yaml, None)
        .expect("generated spec parses");
    (spec.container_edits.mounts, stderr, text)
}

fn mount_at<'a>(mounts: &'a [Mount], container: &str) -> Option<&'a Mount> {
    mounts.iter().find(|m| m.container_path == container)
}

/// A host directory with a file an attacker wants to read or change.
fn secret_dir(m: &FakeMachine) -> PathBuf {
    let d = m.root.parent().unwrap().join("secret-host-dir");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("shadow"), "root:SECRET-HASH\n").unwrap();
    d
}

fn mkdir(p: &Path, mode: u32, uid: u32) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
}

#[test]
fn planted_mps_symlink_is_not_followed() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    let secret = secret_dir(&m);
    mkdir(&m.root.join("tmp"), 0o1777, 0);
    // What any local user can do when the driver root is `/`.
    symlink(&secret, m.root.join("tmp/nvidia-mps")).unwrap();
    let (mounts, stderr, text) = generate(&m, &[]);
    assert!(mount_at(&mounts, "/tmp/nvidia-mps").is_none(), "{text}");
    assert!(!text.contains("secret-host-dir"), "{text}");
    assert!(
        stderr.contains("MPS pipe directory /tmp/nvidia-mps left out of the spec: /tmp/nvidia-mps is a symlink under the world-writable directory /tmp"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--mps-pipe-dir"),
        "the warning says what to change: {stderr}"
    );
    // A relative symlink to an in-root directory is refused the same way.
    std::fs::remove_file(m.root.join("tmp/nvidia-mps")).unwrap();
    mkdir(&m.root.join("etc/secret"), 0o755, 0);
    symlink("../etc/secret", m.root.join("tmp/nvidia-mps")).unwrap();
    let (mounts, _, text) = generate(&m, &[]);
    assert!(mount_at(&mounts, "/tmp/nvidia-mps").is_none(), "{text}");
    assert!(!text.contains("/etc/secret"), "{text}");
}

#[test]
fn user_owned_or_writable_mps_dir_is_not_shared() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    mkdir(&m.root.join("tmp"), 0o1777, 0);
    let mps = m.root.join("tmp/nvidia-mps");
    mkdir(&mps, 0o755, 1000);
    let (mounts, stderr, text) = generate(&m, &[]);
    assert!(mount_at(&mounts, "/tmp/nvidia-mps").is_none(), "{text}");
    assert!(
        stderr.contains("/tmp/nvidia-mps is owned by uid 1000, not root"),
        "{stderr}"
    );
    // Root's, but anyone may write into it.
    mkdir(&mps, 0o777, 0);
    let (mounts, stderr, text) = generate(&m, &[]);
    assert!(mount_at(&mounts, "/tmp/nvidia-mps").is_none(), "{text}");
    assert!(
        stderr.contains("/tmp/nvidia-mps (mode 777) is group- or world-writable"),
        "{stderr}"
    );
    // Not a directory.
    std::fs::remove_dir(&mps).unwrap();
    std::fs::write(&mps, "").unwrap();
    let (mounts, stderr, _) = generate(&m, &[]);
    assert!(mount_at(&mounts, "/tmp/nvidia-mps").is_none());
    assert!(stderr.contains("is not a directory"), "{stderr}");
}

#[test]
fn root_owned_mps_dir_is_shared_read_only() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    mkdir(&m.root.join("tmp"), 0o1777, 0);
    mkdir(&m.root.join("tmp/nvidia-mps"), 0o755, 0);
    let (mounts, stderr, text) = generate(&m, &[]);
    let mps = mount_at(&mounts, "/tmp/nvidia-mps").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        mps.host_path,
        m.root.join("tmp/nvidia-mps").display().to_string()
    );
    assert_eq!(mps.options, ["ro", "nosuid", "nodev", "bind", "noexec"]);
    assert!(!stderr.contains("MPS"), "{stderr}");
    // Every mount the spec has is read-only.
    for mt in &mounts {
        assert!(mt.options.iter().any(|o| o == "ro"), "{mt:?} is not ro");
    }
}

#[test]
fn mps_pipe_dir_flag_names_the_directory() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    // A dedicated MPS user's directory outside world-writable directories, through a
    // symlink the admin made (/var/run -> /run): shared, read-only, at the named path.
    mkdir(&m.root.join("run/nvidia-mps"), 0o755, 1000);
    symlink("../run", m.root.join("var/run")).unwrap_or_else(|_| {
        std::fs::create_dir_all(m.root.join("var")).unwrap();
        symlink("../run", m.root.join("var/run")).unwrap();
    });
    let (mounts, stderr, text) = generate(&m, &["--mps-pipe-dir", "/var/run/nvidia-mps"]);
    let mps =
        mount_at(&mounts, "/var/run/nvidia-mps").unwrap_or_else(|| panic!("{text}\n{stderr}"));
    assert_eq!(
        mps.host_path,
        m.root.join("run/nvidia-mps").display().to_string()
    );
    assert!(mps.options.iter().any(|o| o == "ro"));
    // The default is not looked at when a directory is named.
    mkdir(&m.root.join("tmp/nvidia-mps"), 0o755, 0);
    let (mounts, _, _) = generate(&m, &["--mps-pipe-dir", "/run/nvidia-mps"]);
    assert!(mount_at(&mounts, "/tmp/nvidia-mps").is_none());
    assert!(mount_at(&mounts, "/run/nvidia-mps").is_some());
    // Named but writable by others, or missing: left out, with the reason.
    std::fs::set_permissions(
        m.root.join("run/nvidia-mps"),
        std::fs::Permissions::from_mode(0o775),
    )
    .unwrap();
    let (mounts, stderr, _) = generate(&m, &["--mps-pipe-dir", "/run/nvidia-mps"]);
    assert!(mount_at(&mounts, "/run/nvidia-mps").is_none());
    assert!(
        stderr.contains("(mode 775) is group- or world-writable"),
        "{stderr}"
    );
    let (_, stderr, _) = generate(&m, &["--mps-pipe-dir", "/run/missing-mps"]);
    assert!(
        stderr.contains("MPS pipe directory /run/missing-mps left out of the spec: it does not exist in the driver root"),
        "{stderr}"
    );
    // Named under /tmp, another user's: still refused (no opt-in past the owner check there).
    mkdir(&m.root.join("tmp/user-mps"), 0o755, 1000);
    let (mounts, stderr, _) = generate(&m, &["--mps-pipe-dir", "/tmp/user-mps"]);
    assert!(mount_at(&mounts, "/tmp/user-mps").is_none());
    assert!(stderr.contains("owned by uid 1000, not root"), "{stderr}");
}

#[test]
fn socket_symlink_into_a_world_writable_dir_is_not_followed() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    let sock = m.root.join("run/nvidia-persistenced/socket");
    std::fs::remove_file(&sock).unwrap();
    mkdir(&m.root.join("tmp"), 0o1777, 0);
    // A root-made link into /tmp, where a user then put their own file.
    symlink("/tmp/persistenced.sock", &sock).unwrap();
    std::fs::write(m.root.join("tmp/persistenced.sock"), "").unwrap();
    std::os::unix::fs::chown(m.root.join("tmp/persistenced.sock"), Some(1000), Some(1000)).unwrap();
    let (mounts, stderr, text) = generate(&m, &[]);
    assert!(
        mount_at(&mounts, "/run/nvidia-persistenced/socket").is_none(),
        "{text}"
    );
    assert!(
        stderr.contains("/run/nvidia-persistenced/socket: not used: /tmp/persistenced.sock is owned by uid 1000, not root, under the world-writable directory /tmp"),
        "{stderr}"
    );
}
