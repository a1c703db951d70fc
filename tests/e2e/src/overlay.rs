//! Overlay mounts over a read-only lower rootfs, so that containers never modify the
//! cached rootfs: what a hook writes lands in the per-test upper dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::run_cmd;

/// An overlayfs over a (read-only, never modified) lower rootfs; modifications land in
/// `upper`. Unmounted on drop.
pub struct Overlay {
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    mounted: bool,
}

impl Overlay {
    /// Mounts an overlay of `lower` in `parent/<name>/{upper,work,merged}`.
    pub fn new(parent: &Path, name: &str, lower: &Path) -> Overlay {
        let base = parent.join(name);
        let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        let mut c = Command::new("mount");
        c.args(["-t", "overlay", "overlay", "-o"]).arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        ));
        c.arg(&merged);
        run_cmd(c, Duration::from_secs(30)).assert_success("mount overlay");
        Overlay {
            lower: lower.to_path_buf(),
            upper,
            work,
            merged,
            mounted: true,
        }
    }

    /// `merged/rel` (rel is an absolute container path).
    pub fn path(&self, container_path: &str) -> PathBuf {
        self.merged.join(container_path.trim_start_matches('/'))
    }

    pub fn unmount(&mut self) {
        if !self.mounted {
            return;
        }
        let ok = Command::new("umount")
            .arg(&self.merged)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.merged).status();
        }
        self.mounted = false;
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// What a host canary file holds: a hook must never read, write or mount over it.
pub const CANARY_TEXT: &str = "HOST CANARY: a hook must never read, write or mount over this\n";

/// Writes a host canary file at `p` (parents created).
pub fn canary_file(p: &Path) {
    fs::create_dir_all(p.parent().expect("a canary path has a parent")).unwrap();
    fs::write(p, CANARY_TEXT).unwrap();
}

/// Hostile-image setup: moves an image entry (file, symlink or dir) at `container_path` to
/// `<canary>/<name>` INSIDE the image, writes a host canary at that same host path, and
/// replaces the entry with a symlink to it (absolute target, or relative with too many
/// `..`), so a hook that follows image symlinks on the host side lands on the canary.
pub fn divert(ov: &Overlay, canary: &Path, container_path: &str, name: &str, relative: bool) {
    let src = ov.path(container_path);
    let host_target = canary.join(name);
    let image_target = ov.path(&host_target.display().to_string());
    fs::create_dir_all(image_target.parent().expect("a parent")).unwrap();
    crate::process::sh(&format!(
        "cp -a '{}' '{}' && rm -rf '{}'",
        src.display(),
        image_target.display(),
        src.display()
    ));
    // host canary with different content (a dir: canary files with the same names)
    if fs::symlink_metadata(&image_target).unwrap().is_dir() {
        for e in fs::read_dir(&image_target).unwrap().flatten() {
            canary_file(&host_target.join(e.file_name()));
        }
    } else {
        canary_file(&host_target);
    }
    let link = if relative {
        format!(
            "{}{}",
            "../".repeat(16),
            host_target.display().to_string().trim_start_matches('/')
        )
    } else {
        host_target.display().to_string()
    };
    std::os::unix::fs::symlink(&link, &src).unwrap();
}
