//! The four roots every lookup goes through: the driver root (libraries, binaries,
//! firmware, config files), the device root (`/dev`), and the sysfs and procfs roots.
//! No other module builds a host path; tests point the roots at fake trees.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Largest number of symlinks followed while resolving one path (as the kernel's 40).
const MAX_SYMLINKS: usize = 40;

/// Where cdi-gen looks for the host's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// Root of the driver installation (`/`, or e.g. `/run/nvidia/driver`).
    pub driver_root: PathBuf,
    /// Root under which `/dev` is looked up.
    pub dev_root: PathBuf,
    /// Where sysfs is mounted (`/sys`).
    pub sys_root: PathBuf,
    /// Where procfs is mounted (`/proc`).
    pub proc_root: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            driver_root: PathBuf::from("/"),
            dev_root: PathBuf::from("/"),
            sys_root: PathBuf::from("/sys"),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Joins an absolute in-root path (`/usr/lib/x`) to a root directory.
pub fn join(root: &Path, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

impl Roots {
    /// `path` (absolute, as seen inside the driver root) on the host.
    pub fn driver(&self, path: &str) -> PathBuf {
        join(&self.driver_root, path)
    }

    /// `path` (e.g. `/dev/nvidia0`) on the host.
    pub fn dev(&self, path: &str) -> PathBuf {
        join(&self.dev_root, path)
    }

    /// `path` relative to the sysfs root (e.g. `bus/pci/devices`).
    pub fn sys(&self, path: &str) -> PathBuf {
        join(&self.sys_root, path)
    }

    /// `path` relative to the procfs root (e.g. `devices`).
    pub fn proc(&self, path: &str) -> PathBuf {
        join(&self.proc_root, path)
    }

    /// True when the device root is the host's `/` (then `hostPath` is left out).
    pub fn dev_root_is_host(&self) -> bool {
        self.dev_root == Path::new("/")
    }

    /// Resolves `path` inside the driver root: symlinks are followed at every component,
    /// absolute targets stay inside the root, `..` never leaves it. Returns the canonical
    /// in-root path (`/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14`), or `None` when a
    /// component does not exist or the symlinks loop.
    pub fn resolve_in_driver_root(&self, path: &str) -> Option<String> {
        resolve_in_root(&self.driver_root, path)
    }
}

/// See [`Roots::resolve_in_driver_root`].
pub fn resolve_in_root(root: &Path, path: &str) -> Option<String> {
    // Components still to walk, last first (so pop() yields the next one).
    let mut todo: Vec<Vec<u8>> = split(path.as_bytes()).rev().collect();
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut hops = 0usize;
    while let Some(c) = todo.pop() {
        match c.as_slice() {
            b"." => continue,
            b".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        done.push(c);
        let host = host_path(root, &done);
        let meta = std::fs::symlink_metadata(&host).ok()?;
        if !meta.file_type().is_symlink() {
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINKS {
            return None;
        }
        let target = std::fs::read_link(&host).ok()?;
        let target = target.as_os_str().as_bytes();
        done.pop();
        if target.starts_with(b"/") {
            done.clear();
        }
        todo.extend(split(target).rev());
    }
    let mut out = String::new();
    for c in &done {
        out.push('/');
        out.push_str(std::str::from_utf8(c).ok()?);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

fn split(p: &[u8]) -> impl DoubleEndedIterator<Item = Vec<u8>> + '_ {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
}

fn host_path(root: &Path, comps: &[Vec<u8>]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in comps {
        p.push(OsStr::from_bytes(c));
    }
    p
}

/// Normalizes a path lexically (no `.`/`..`/double slashes), for display and dedup.
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolves_absolute_and_relative_links_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        std::fs::write(r.join("usr/lib/x86_64-linux-gnu/libcuda.so.1.2"), b"").unwrap();
        symlink(
            "/lib/x86_64-linux-gnu/libcuda.so.1.2",
            r.join("usr/lib/x86_64-linux-gnu/libcuda.so.1"),
        )
        .unwrap();
        assert_eq!(
            resolve_in_root(r, "/lib/x86_64-linux-gnu/libcuda.so.1").as_deref(),
            Some("/usr/lib/x86_64-linux-gnu/libcuda.so.1.2")
        );
        assert_eq!(resolve_in_root(r, "/../../lib/missing"), None);
        symlink("loop", r.join("loop")).unwrap();
        assert_eq!(resolve_in_root(r, "/loop"), None);
        assert_eq!(resolve_in_root(r, "/").as_deref(), Some("/"));
    }

    #[test]
    fn joins() {
        assert_eq!(join(Path::new("/"), "/dev/x"), PathBuf::from("/dev/x"));
        assert_eq!(join(Path::new("/r"), "/dev/x"), PathBuf::from("/r/dev/x"));
    }
}
