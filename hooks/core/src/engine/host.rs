//! Opening host paths for the engine: once, one component at a time without following
//! symlinks under world-writable directories, so what is checked (an `fstat` of the
//! handle) is what gets bound or read.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// Directories treated as world-writable whatever their mode bits (as cdi-gen does).
pub const WORLD_WRITABLE_DIRS: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];

/// Largest number of symlinks followed in one host path (the kernel's 40).
const MAX_SYMLINKS: usize = 40;

/// Why a host path could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum HostPathError {
    /// It does not exist, or cannot be opened.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// It exists but a local user could have planted it (see [`open_host`]).
    #[error("{0}")]
    Unsafe(String),
}

fn openat(dir: &File, name: &[u8], flags: libc::c_int) -> std::io::Result<File> {
    let c = CString::new(name)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `dir` is an open descriptor, `c` a NUL-terminated name; the result is checked
    // and then owned by the returned File.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor the kernel returned; nobody else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The target of the symlink `link` (an `O_PATH|O_NOFOLLOW` handle on it).
fn readlink_fd(link: &File) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat on an O_PATH symlink handle with an empty path (Linux >= 2.6.39)
    // writes at most buf.len() bytes into buf; the result is checked.
    let n = unsafe {
        libc::readlinkat(
            link.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Opens the host path `path` once for checking and binding: `O_PATH|O_NOFOLLOW|O_CLOEXEC`
/// one component at a time from `/`, each opened relative to its parent's handle (so
/// nothing is looked up twice, and `..` goes back to the handle already held).
///
/// Outside world-writable directories symlinks are followed (driver roots have legitimate
/// ones, e.g. `libcuda.so.1 -> libcuda.so.<version>`); the returned handle is the resolved
/// file. Once the walk has passed a world-writable directory ([`WORLD_WRITABLE_DIRS`] or
/// any directory with o+w), as `openat2(RESOLVE_NO_SYMLINKS)` would, a symlink is refused,
/// every entry must be owned by root, and the final one, when a directory or regular file,
/// must not be group- or world-writable: any local user can create
/// `/tmp/nvidia-mps -> /etc` or their own `/tmp/nvidia-mps` there.
pub fn open_host(path: &str) -> Result<File, HostPathError> {
    let unsafe_path = |why: String| HostPathError::Unsafe(format!("host path {path}: {why}"));
    if !path.starts_with('/') {
        return Err(unsafe_path("not an absolute path".into()));
    }
    let dir_flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let root = File::options()
        .read(true)
        .custom_flags(dir_flags)
        .open("/")?;
    // Handles walked so far with their lexical host paths; [0] is `/`.
    let mut stack: Vec<(File, String)> = vec![(root, "/".to_string())];
    let mut todo: Vec<Vec<u8>> = path
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .rev()
        .collect();
    let mut tainted: Option<String> = None;
    let mut hops = 0usize;
    while let Some(c) = todo.pop() {
        match c.as_slice() {
            b"." => continue,
            b".." => {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            _ => {}
        }
        let Some((parent, parent_path)) = stack.last() else {
            return Err(unsafe_path("empty walk".into()));
        };
        if tainted.is_none() {
            let pmd = parent.metadata()?;
            if WORLD_WRITABLE_DIRS.contains(&parent_path.as_str()) || pmd.mode() & 0o002 != 0 {
                tainted = Some(parent_path.clone());
            }
        }
        let here = if parent_path == "/" {
            format!("/{}", String::from_utf8_lossy(&c))
        } else {
            format!("{parent_path}/{}", String::from_utf8_lossy(&c))
        };
        let f = openat(parent, &c, flags)?;
        let md = f.metadata()?;
        if md.file_type().is_symlink() {
            if let Some(ww) = &tainted {
                return Err(unsafe_path(format!(
                    "{here} is a symlink under the world-writable directory {ww}; not following it (any local user can plant one). Remove it and regenerate the CDI spec"
                )));
            }
            hops += 1;
            if hops > MAX_SYMLINKS {
                return Err(std::io::Error::from_raw_os_error(libc::ELOOP).into());
            }
            let target = readlink_fd(&f)?;
            if target.starts_with(b"/") {
                stack.truncate(1);
            }
            todo.extend(
                target
                    .split(|&b| b == b'/')
                    .filter(|c| !c.is_empty())
                    .map(<[u8]>::to_vec)
                    .rev(),
            );
            continue;
        }
        if let Some(ww) = &tainted {
            if md.uid() != 0 {
                let rootless = if super::sys::in_user_namespace() {
                    " (the hook runs in a user namespace, a rootless container, where every host user outside it, root included, shows as the overflow uid: keep driver files out of world-writable directories)"
                } else {
                    ""
                };
                return Err(unsafe_path(format!(
                    "{here} is owned by uid {}, not root, under the world-writable directory {ww}; another user's file there could impersonate the driver's{rootless}",
                    md.uid()
                )));
            }
            // The final entry only: an intermediate root-owned sticky directory (a driver
            // root under /tmp, /tmp/.X11-unix) is fine, as everything below it is checked.
            if todo.is_empty() && (md.is_dir() || md.is_file()) && md.mode() & 0o022 != 0 {
                return Err(unsafe_path(format!(
                    "{here} (mode {:o}) is group- or world-writable under the world-writable directory {ww}; other users could replace its contents (chmod go-w)",
                    md.mode() & 0o7777
                )));
            }
        }
        if !todo.is_empty() && !md.is_dir() {
            return Err(std::io::Error::from_raw_os_error(libc::ENOTDIR).into());
        }
        stack.push((f, here));
    }
    stack
        .pop()
        .map(|(f, _)| f)
        .ok_or_else(|| unsafe_path("empty walk".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// A scratch directory outside world-writable directories: the workspace's target/
    /// when no directory above it is world-writable (a checkout under /tmp is), else
    /// /run or /var/lib (root-owned on every Debian machine).
    fn trusted_tmp() -> tempfile::TempDir {
        let trusted = |p: &Path| {
            p.canonicalize().is_ok_and(|c| {
                c.ancestors().all(|a| {
                    std::fs::symlink_metadata(a).is_ok_and(|m| m.permissions().mode() & 0o002 == 0)
                })
            })
        };
        let target = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target"));
        let base = [target, Path::new("/run"), Path::new("/var/lib")]
            .into_iter()
            .find(|b| trusted(b))
            .expect(
                "no scratch directory outside world-writable directories (target/, /run, /var/lib)",
            );
        tempfile::Builder::new()
            .prefix("engine-host-test")
            .tempdir_in(base)
            .unwrap()
    }

    fn unsafe_reason(path: &Path) -> String {
        match open_host(path.to_str().unwrap()) {
            Err(HostPathError::Unsafe(why)) => why,
            Ok(_) => panic!("{} was opened", path.display()),
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }

    #[test]
    fn open_host_follows_driver_links_outside_world_writable_dirs() {
        use std::os::unix::fs::symlink;
        let t = trusted_tmp();
        std::fs::create_dir_all(t.path().join("lib")).unwrap();
        std::fs::write(t.path().join("lib/libcuda.so.550.1"), b"x").unwrap();
        symlink("libcuda.so.550.1", t.path().join("lib/libcuda.so.1")).unwrap();
        symlink(t.path().join("lib"), t.path().join("lib64")).unwrap();
        let f = open_host(
            t.path()
                .join("lib64/../lib64/libcuda.so.1")
                .to_str()
                .unwrap(),
        )
        .unwrap();
        let want = std::fs::metadata(t.path().join("lib/libcuda.so.550.1")).unwrap();
        let got = f.metadata().unwrap();
        assert_eq!((got.dev(), got.ino()), (want.dev(), want.ino()));
        assert!(matches!(
            open_host(t.path().join("lib/missing").to_str().unwrap()),
            Err(HostPathError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn open_host_refuses_what_users_can_plant_under_world_writable_dirs() {
        use std::os::unix::fs::symlink;
        let secret = trusted_tmp();
        // Under /tmp (world-writable by name and mode): a planted symlink.
        let t = tempfile::Builder::new()
            .prefix("engine-host-ww")
            .tempdir_in("/tmp")
            .unwrap();
        symlink(secret.path(), t.path().join("nvidia-mps")).unwrap();
        let why = unsafe_reason(&t.path().join("nvidia-mps"));
        assert!(
            why.contains("is a symlink under the world-writable directory /tmp"),
            "{why}"
        );
        // Another user's real directory there.
        let d = t.path().join("user-dir");
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
        let why = unsafe_reason(&d);
        assert!(why.contains("is owned by uid 65534, not root"), "{why}");
        // Root's directory, but writable by others.
        let w = t.path().join("open-dir");
        std::fs::create_dir(&w).unwrap();
        std::fs::set_permissions(&w, Permissions::from_mode(0o775)).unwrap();
        assert!(unsafe_reason(&w).contains("mode 775) is group- or world-writable"));
        // Root's 0755 directory: fine.
        let ok = t.path().join("root-dir");
        std::fs::create_dir(&ok).unwrap();
        std::fs::set_permissions(&ok, Permissions::from_mode(0o755)).unwrap();
        assert!(open_host(ok.to_str().unwrap())
            .unwrap()
            .metadata()
            .unwrap()
            .is_dir());
        // Any o+w directory taints what is below it, wherever it is.
        let open = trusted_tmp();
        std::fs::set_permissions(open.path(), Permissions::from_mode(0o777)).unwrap();
        symlink(secret.path(), open.path().join("link")).unwrap();
        assert!(unsafe_reason(&open.path().join("link/x")).contains("is a symlink under"));
    }
}
