//! The path-based mounts hpc-rank sets its rank up with (hooks_core::mount), for real: a
//! child re-executes this test in a mount namespace of its own, mounts a tmpfs, binds a
//! directory from a descriptor, lays an overlay over it and unmounts, while the host's
//! mount table stays untouched. Needs root; fails, never skips, without it.

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hooks_core::mount;
use hooks_core::mountinfo;

/// Set in the re-executed child: the scratch directory it works in.
const CHILD_DIR: &str = "HPC_HOOKS_PATH_MOUNTS_CHILD_DIR";
const TEST_NAME: &str = "tmpfs_bind_overlay_and_unmount_in_a_private_mount_namespace";

fn mounted_at(p: &Path) -> Vec<mountinfo::MountEntry> {
    mountinfo::read_self()
        .expect("read /proc/self/mountinfo")
        .into_iter()
        .filter(|m| m.mount_point == p)
        .collect()
}

/// The child's half: runs in its own mount namespace (unshared before exec).
fn child(base: &Path) {
    mount::make_rslave(Path::new("/")).expect("make / a slave mount");
    let scratch = base.join("scratch");
    mount::mount_tmpfs_at(&scratch, "hpc-hooks-test", "mode=0700").expect("tmpfs");
    let m = mounted_at(&scratch);
    assert_eq!(m.len(), 1, "one mount on {}: {m:?}", scratch.display());
    assert_eq!(m[0].fs_type, "tmpfs");
    assert_eq!(m[0].source, "hpc-hooks-test");
    let mode = std::fs::metadata(&scratch).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "tmpfs root mode");

    // The rootfs, bound from a descriptor into the tmpfs, then overlaid.
    let src = base.join("rootfs");
    let fd = std::fs::File::open(&src).expect("open the lower dir");
    let (lower, upper, work, merged) = (
        scratch.join("lower"),
        scratch.join("upper"),
        scratch.join("work"),
        scratch.join("merged"),
    );
    for d in [&lower, &upper, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    mount::bind_fd_at(fd.as_fd(), &lower).expect("bind the lower dir");
    assert_eq!(
        std::fs::read_to_string(lower.join("etc-file")).unwrap(),
        "from the image\n"
    );
    mount::mount_overlay(&lower, &upper, &work, &merged).expect("overlay");
    assert_eq!(mounted_at(&merged)[0].fs_type, "overlay");
    assert_eq!(
        std::fs::read_to_string(merged.join("etc-file")).unwrap(),
        "from the image\n"
    );
    std::fs::write(merged.join("etc-file"), "written by the rank\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(upper.join("etc-file")).unwrap(),
        "written by the rank\n",
        "writes go to the upper dir"
    );
    assert_eq!(
        std::fs::read_to_string(src.join("etc-file")).unwrap(),
        "from the image\n",
        "the shared lower dir is never written"
    );

    mount::unmount_path(&merged, true).expect("lazy unmount of the overlay");
    assert!(mounted_at(&merged).is_empty());
    assert!(!merged.join("etc-file").exists());
    mount::unmount_path(&lower, false).expect("unmount the bind");
    assert!(!lower.join("etc-file").exists());
    let e = mount::unmount_path(&lower, false).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("cannot unmount {}: ", lower.display())),
        "{e}"
    );
}

#[test]
fn tmpfs_bind_overlay_and_unmount_in_a_private_mount_namespace() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root (it mounts in a mount namespace of its own)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let base: PathBuf = tmp.path().to_path_buf();
    std::fs::create_dir(base.join("scratch")).unwrap();
    std::fs::create_dir(base.join("rootfs")).unwrap();
    std::fs::write(base.join("rootfs/etc-file"), "from the image\n").unwrap();

    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, &base);
    // SAFETY: between fork and exec only unshare(2), async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd
        .output()
        .expect("re-execute the test in a new mount namespace");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "the child failed: {}\n{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing of the child's mounts reached the host's namespace.
    assert!(mounted_at(&base.join("scratch")).is_empty());
    assert!(!base.join("scratch/merged").exists());
}
