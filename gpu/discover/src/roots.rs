//! The four roots every lookup goes through: the driver root (libraries, binaries,
//! firmware, config files), the device root (`/dev`), and the sysfs and procfs roots.
//! No other module builds a host path; tests point the roots at fake trees. Under a
//! world-writable directory no symlink is followed and only root's entries are used.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Largest number of symlinks followed while resolving one path (as the kernel's 40).
const MAX_SYMLINKS: usize = 40;

/// In-root directories treated as world-writable whatever their mode (in a driver root
/// that is not `/` they may be plain directories, but on the host they are 1777).
pub const WORLD_WRITABLE_DIRS: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];

/// Why a path inside a root was not used although it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsafe {
    /// The in-root path as asked for.
    pub path: String,
    /// What is wrong and what the admin can change.
    pub reason: String,
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: not used: {}", self.path, self.reason)
    }
}

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
    ///
    /// Under a world-writable directory ([`WORLD_WRITABLE_DIRS`], or any in-root directory
    /// with the o+w bit) nothing is followed or trusted that a local user could have
    /// planted: such a path is left out with a warning (see [`resolve_in_root_checked`]).
    pub fn resolve_in_driver_root(&self, path: &str) -> Option<String> {
        match resolve_in_root_checked(&self.driver_root, path) {
            Ok(found) => found,
            Err(u) => {
                tracing::warn!("{u}");
                None
            }
        }
    }

    /// [`Roots::resolve_in_driver_root`] that returns the refusal instead of logging it.
    pub fn resolve_in_driver_root_checked(&self, path: &str) -> Result<Option<String>, Unsafe> {
        resolve_in_root_checked(&self.driver_root, path)
    }
}

/// See [`Roots::resolve_in_driver_root`]; unsafe paths are `None` (not logged).
pub fn resolve_in_root(root: &Path, path: &str) -> Option<String> {
    resolve_in_root_checked(root, path).ok().flatten()
}

/// True when the in-root directory `dir` (host path `host`) is world-writable: one of
/// [`WORLD_WRITABLE_DIRS`] by name, or a directory with the o+w bit. `known` is the
/// `symlink_metadata` of `host` when the caller has it (saves a second `statx`).
fn world_writable(dir: &str, host: &Path, known: Option<&std::fs::Metadata>) -> bool {
    let o_w = |m: &std::fs::Metadata| m.is_dir() && m.permissions().mode() & 0o002 != 0;
    WORLD_WRITABLE_DIRS.contains(&dir)
        || match known {
            Some(m) => o_w(m),
            None => std::fs::symlink_metadata(host)
                .map(|m| o_w(&m))
                .unwrap_or(false),
        }
}

fn in_root(comps: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for c in comps {
        out.push('/');
        out.push_str(&String::from_utf8_lossy(c));
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Resolves `path` inside `root` like [`Roots::resolve_in_driver_root`]: `Ok(Some(path))`
/// canonical in-root path, `Ok(None)` missing (or a symlink loop), `Err` when the path
/// exists but crosses a world-writable directory unsafely. Below the first world-writable
/// directory on the walk, every entry must be a real entry (no symlink is followed: any
/// local user can plant `/tmp/x -> /etc`), owned by root (another user's entry there can
/// impersonate a driver socket or directory), and the final entry, when a directory or a
/// regular file, must not be group- or world-writable (a root-owned sticky directory on
/// the way is fine: what lies below it must be root's too). The root itself is the
/// admin's choice and not checked.
pub fn resolve_in_root_checked(root: &Path, path: &str) -> Result<Option<String>, Unsafe> {
    let refuse = |reason: String| Unsafe {
        path: path.to_string(),
        reason,
    };
    // Components still to walk, last first (so pop() yields the next one).
    let mut todo: Vec<Vec<u8>> = split(path.as_bytes()).rev().collect();
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut hops = 0usize;
    // The first world-writable directory walked through (in-root path); stays set.
    let mut tainted: Option<String> = None;
    // The symlink_metadata of the entry `done` names, when it was just read (the next
    // component's parent: its world-writable check needs no second statx).
    let mut last: Option<std::fs::Metadata> = None;
    while let Some(c) = todo.pop() {
        match c.as_slice() {
            b"." => continue,
            b".." => {
                done.pop();
                last = None;
                continue;
            }
            _ => {}
        }
        if tainted.is_none() {
            let parent = in_root(&done);
            if world_writable(&parent, &host_path(root, &done), last.as_ref()) {
                tainted = Some(parent);
            }
        }
        done.push(c);
        let host = host_path(root, &done);
        let meta = match std::fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(_) => return Ok(None),
        };
        last = None;
        if let Some(ww) = &tainted {
            let here = in_root(&done);
            if meta.file_type().is_symlink() {
                return Err(refuse(format!(
                    "{here} is a symlink under the world-writable directory {ww}, where any local user can plant one (e.g. pointing at /etc); cdi-gen does not follow it. Remove it, or let the service put its files outside world-writable directories (for MPS: CUDA_MPS_PIPE_DIRECTORY=/run/nvidia-mps and --mps-pipe-dir /run/nvidia-mps)"
                )));
            }
            if meta.uid() != 0 {
                return Err(refuse(format!(
                    "{here} is owned by uid {}, not root, under the world-writable directory {ww}: another user's file there could impersonate the driver's. Have root own it, or move the service's files outside world-writable directories",
                    meta.uid()
                )));
            }
            let kind = meta.file_type();
            if (kind.is_dir() || kind.is_file())
                && meta.permissions().mode() & 0o022 != 0
                && todo.is_empty()
            {
                return Err(refuse(format!(
                    "{here} (mode {:o}) is group- or world-writable under the world-writable directory {ww}: other users could put their own files into it. Make it 0755 (chmod go-w)",
                    meta.permissions().mode() & 0o7777
                )));
            }
        }
        if !meta.file_type().is_symlink() {
            last = Some(meta);
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINKS {
            return Ok(None);
        }
        let target = match std::fs::read_link(&host) {
            Ok(t) => t,
            Err(_) => return Ok(None),
        };
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
        match std::str::from_utf8(c) {
            Ok(s) => out.push_str(s),
            Err(_) => return Ok(None),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(Some(out))
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
    fn nothing_planted_under_world_writable_dirs_is_used() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        // An o+w directory that is not one of the named ones.
        std::fs::create_dir_all(r.join("srv/drop")).unwrap();
        std::fs::set_permissions(r.join("srv/drop"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        symlink("/etc", r.join("srv/drop/sock")).unwrap();
        let e = resolve_in_root_checked(r, "/srv/drop/sock").unwrap_err();
        assert!(
            e.reason.starts_with(
                "/srv/drop/sock is a symlink under the world-writable directory /srv/drop"
            ),
            "{e}"
        );
        assert_eq!(resolve_in_root(r, "/srv/drop/sock"), None);
        // Missing stays missing (no warning), and symlinks elsewhere are still followed.
        assert_eq!(resolve_in_root_checked(r, "/tmp/nvidia-mps"), Ok(None));
        symlink("srv", r.join("opt")).unwrap();
        assert_eq!(
            resolve_in_root_checked(r, "/opt/drop").unwrap().as_deref(),
            Some("/srv/drop")
        );
        // Another user's file there.
        std::fs::write(r.join("srv/drop/f"), "").unwrap();
        std::os::unix::fs::chown(r.join("srv/drop/f"), Some(1000), None).unwrap();
        let e = resolve_in_root_checked(r, "/srv/drop/f").unwrap_err();
        assert!(e.reason.contains("is owned by uid 1000, not root"), "{e}");
    }

    #[test]
    fn joins() {
        assert_eq!(join(Path::new("/"), "/dev/x"), PathBuf::from("/dev/x"));
        assert_eq!(join(Path::new("/r"), "/dev/x"), PathBuf::from("/r/dev/x"));
    }
}
