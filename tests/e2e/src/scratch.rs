//! Per-test isolation: the machine-wide e2e lock every test takes first, ids unique on the
//! machine for containers, and scratch dirs that unmount what is left below them on drop.

use std::fs;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::mounts::mount_table;

/// Held for the whole duration of an e2e test; see [`e2e_lock`].
pub struct E2eLock {
    _file: fs::File,
}

/// Takes the machine-wide e2e lock (flock on `/run/lock/hpc-hooks-e2e.lock`, or the
/// temp dir). Blocks until free. Works across threads of one test binary and across
/// test binaries.
pub fn e2e_lock() -> E2eLock {
    let dir = if Path::new("/run/lock").is_dir() {
        PathBuf::from("/run/lock")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join("hpc-hooks-e2e.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    loop {
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            panic!("flock {}: {err}", path.display());
        }
    }
    E2eLock { _file: file }
}

/// A container id / name unique on this machine.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "e2e-{prefix}-{}-{}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A per-test scratch directory (under the temp dir, on a disk filesystem so that it
/// can hold overlay upper/work dirs and device nodes). On drop, anything still mounted
/// below it is unmounted; if that fails, the directory is left in place rather than
/// removed through a mount.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let base = std::env::var_os("E2E_SCRATCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp"));
        fs::create_dir_all(&base).expect("create scratch base");
        let dir = tempfile::Builder::new()
            .prefix(&format!("hpc-hooks-e2e-{tag}-"))
            .tempdir_in(&base)
            .expect("create scratch dir");
        Scratch { dir: Some(dir) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("scratch").path()
    }

    /// `path()/rel`, created as a directory.
    pub fn subdir(&self, rel: &str) -> PathBuf {
        let p = self.path().join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let root = dir.path().to_path_buf();
        let mut left: Vec<String> = mount_table()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|mp| Path::new(mp).starts_with(&root))
            .collect();
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mp in &left {
            let _ = Command::new("umount").arg("-l").arg(mp).status();
        }
        let still = mount_table()
            .into_iter()
            .any(|m| Path::new(&m.mount_point).starts_with(&root));
        if still {
            eprintln!(
                "warning: mounts remain under {}, leaving it in place",
                root.display()
            );
            let _ = dir.keep();
        }
    }
}
