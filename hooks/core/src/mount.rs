//! Mounting through file descriptors: host files are bind-mounted onto targets already
//! resolved inside the rootfs, so no path string is re-resolved between check and mount.
//!
//! Uses the new mount API (open_tree, mount_setattr, move_mount; Linux >= 5.12) and falls
//! back to bind + remount through `/proc/self/fd` on older kernels. The path-based
//! functions at the end serve a launcher (hpc-rank) that sets up its own private mount
//! namespace: the workspace's mount syscalls all live in this crate.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot {op} for {what}: {source}{}", errno_meaning(.source))]
    Sys {
        op: &'static str,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A path-based mount call failed: names the call, the path and the way out.
    #[error("cannot {op} {}: {source}; {hint}", path.display())]
    AtPath {
        op: &'static str,
        path: PathBuf,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// An overlay directory that overlayfs' comma/colon-separated options cannot express.
    #[error(
        "overlay {role} {} contains ',', ':' or '\\', which overlayfs options cannot \
         express; use a path without them",
        path.display()
    )]
    OverlayPath { role: &'static str, path: PathBuf },
}

/// What an errno of a mount, node or host-path call means for a hook, to append to its
/// error (empty for other errors): the errno's name and the likely cause, which differs in
/// a user namespace (a rootless container) and as the host's root.
pub fn errno_meaning(e: &std::io::Error) -> String {
    let userns = crate::engine::in_user_namespace();
    let why = match e.raw_os_error() {
        Some(libc::EPERM) if userns => "EPERM: the hook runs in a user namespace (a rootless container), where the kernel does not permit this (no mknod, no mount over what the user's namespace does not own)",
        Some(libc::EPERM) => "EPERM: the hook lacks the privilege (CAP_SYS_ADMIN or CAP_MKNOD in the initial user namespace); register it in the runtime's hooks so that it runs as root",
        Some(libc::EACCES) if userns => "EACCES: the user who started the rootless container may not read this host path; an admin must make it readable by ordinary users (or leave it out of the configuration)",
        Some(libc::EACCES) => "EACCES: permission denied on the host path",
        Some(libc::EROFS) => "EROFS: the file system is read-only",
        Some(libc::EINVAL) if userns => "EINVAL: the kernel refused these mount flags in a user namespace (a locked flag of the source mount cannot be cleared there)",
        _ => return String::new(),
    };
    format!(" ({why})")
}

/// Per-mount flags applied to a bind mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindFlags {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl BindFlags {
    /// Libraries, binaries, config files: `ro,nosuid,nodev`.
    pub const FILE_RO: BindFlags = BindFlags {
        read_only: true,
        nosuid: true,
        nodev: true,
        noexec: false,
    };
    /// Directories from the container's environment (PMIx): `ro,nosuid,nodev,noexec`.
    pub const DIR_UNTRUSTED: BindFlags = BindFlags {
        read_only: true,
        nosuid: true,
        nodev: true,
        noexec: true,
    };
    /// Device nodes: usable (`dev`), writable, `nosuid,noexec`.
    pub const DEVICE: BindFlags = BindFlags {
        read_only: false,
        nosuid: true,
        nodev: false,
        noexec: true,
    };

    fn attr(self) -> u64 {
        let mut a = 0;
        if self.read_only {
            a |= MOUNT_ATTR_RDONLY;
        }
        if self.nosuid {
            a |= MOUNT_ATTR_NOSUID;
        }
        if self.nodev {
            a |= MOUNT_ATTR_NODEV;
        }
        if self.noexec {
            a |= MOUNT_ATTR_NOEXEC;
        }
        a
    }

    fn ms_flags(self) -> MsFlags {
        let mut f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
        if self.read_only {
            f |= MsFlags::MS_RDONLY;
        }
        if self.nosuid {
            f |= MsFlags::MS_NOSUID;
        }
        if self.nodev {
            f |= MsFlags::MS_NODEV;
        }
        if self.noexec {
            f |= MsFlags::MS_NOEXEC;
        }
        f
    }
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn sys_err(op: &'static str, what: &str) -> MountError {
    MountError::Sys {
        op,
        what: what.to_string(),
        source: std::io::Error::last_os_error(),
    }
}

fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Bind-mounts `source` (an fd on a host file or directory) onto `target` (an O_PATH fd
/// on the mount point inside the rootfs) with `flags`. `what` names the mount in errors.
/// `reresolve` returns a fresh handle on the target path; it is needed only by the
/// fallback for kernels without the new mount API.
pub fn bind(
    source: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    flags: BindFlags,
    what: &str,
    reresolve: &dyn Fn() -> Option<OwnedFd>,
) -> Result<(), MountError> {
    let empty = c"";
    // SAFETY: open_tree with a valid fd, an empty NUL-terminated path and documented flags;
    // the returned value is checked before use and then owned.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            source.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_EMPTY_PATH,
        )
    };
    if tree < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOSYS) {
            return bind_classic(source, target, flags, what, reresolve);
        }
        return Err(MountError::Sys {
            op: "clone the host mount (open_tree)",
            what: what.to_string(),
            source: err,
        });
    }
    // SAFETY: `tree` is a new file descriptor returned by the kernel and owned by nobody else.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    if let Err(err) = mount_setattr(tree.as_fd(), flags.attr(), 0, libc::MS_PRIVATE) {
        if err.raw_os_error() == Some(libc::ENOSYS) {
            return bind_classic(source, target, flags, what, reresolve);
        }
        return Err(MountError::Sys {
            op: "set mount flags (mount_setattr)",
            what: what.to_string(),
            source: err,
        });
    }
    // SAFETY: move_mount between two valid fds with empty paths, as documented.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(sys_err("attach the mount (move_mount)", what));
    }
    Ok(())
}

fn bind_classic(
    source: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    flags: BindFlags,
    what: &str,
    reresolve: &dyn Fn() -> Option<OwnedFd>,
) -> Result<(), MountError> {
    let src = fd_path(source);
    let dst = fd_path(target);
    nix::mount::mount(
        Some(src.as_str()),
        dst.as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| MountError::Sys {
        op: "bind-mount",
        what: what.to_string(),
        source: e.into(),
    })?;
    let fresh = reresolve().ok_or_else(|| MountError::Sys {
        op: "re-open the new mount",
        what: what.to_string(),
        source: std::io::Error::from_raw_os_error(libc::ENOENT),
    })?;
    remount(fresh.as_fd(), flags, what)
}

/// Changes the flags of the mount whose root `mount_root` refers to: the four flags of
/// [`BindFlags`] are set or cleared as given (like the `MS_REMOUNT` fallback), so a
/// read-only mount can be made writable again.
pub fn remount(mount_root: BorrowedFd<'_>, flags: BindFlags, what: &str) -> Result<(), MountError> {
    const ALL: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    let Err(err) = mount_setattr(mount_root, flags.attr(), ALL & !flags.attr(), 0) else {
        return Ok(());
    };
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(MountError::Sys {
            op: "set mount flags (mount_setattr)",
            what: what.to_string(),
            source: err,
        });
    }
    let p = fd_path(mount_root);
    nix::mount::mount(
        None::<&str>,
        p.as_str(),
        None::<&str>,
        flags.ms_flags(),
        None::<&str>,
    )
    .map_err(|e| MountError::Sys {
        op: "remount",
        what: what.to_string(),
        source: e.into(),
    })
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH)`: sets the `set` attributes, clears the `clear`
/// ones (and sets `propagation` when non-zero) on the mount `fd` refers to.
fn mount_setattr(
    fd: BorrowedFd<'_>,
    set: u64,
    clear: u64,
    propagation: u64,
) -> std::io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: mount_setattr with a valid fd, an empty NUL-terminated path and a properly
    // sized struct that lives across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Mounts a fresh tmpfs (`nosuid,nodev`, mode 0755, size-limited) on the directory `target`.
pub fn mount_tmpfs(target: BorrowedFd<'_>, size: &str, what: &str) -> Result<(), MountError> {
    let dst = fd_path(target);
    let data = format!("mode=0755,size={size}");
    nix::mount::mount(
        Some("tmpfs"),
        dst.as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| MountError::Sys {
        op: "mount a tmpfs",
        what: what.to_string(),
        source: e.into(),
    })
}

/// Detaches the mount at `target` (lazy unmount).
pub fn unmount(target: BorrowedFd<'_>, what: &str) -> Result<(), MountError> {
    let p = CString::new(fd_path(target)).map_err(|_| MountError::Sys {
        op: "unmount",
        what: what.to_string(),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    // SAFETY: umount2 on a NUL-terminated path we built.
    let rc = unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
    if rc < 0 {
        return Err(sys_err("unmount", what));
    }
    Ok(())
}

/// `statfs` magic of the filesystem `fd` lives on.
pub fn fs_magic(fd: BorrowedFd<'_>) -> std::io::Result<i64> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes into a properly sized, zero-initialised struct.
    let rc = unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstatfs succeeded and initialised the struct.
    #[allow(clippy::unnecessary_cast)]
    let t = unsafe { st.assume_init() }.f_type as i64;
    Ok(t)
}

pub const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The way out printed when a namespace-level mount call is refused.
const NEEDS_ADMIN: &str = "it needs CAP_SYS_ADMIN over the mount namespace (run as the real \
                           root, in a mount namespace of its own) and an existing directory";

fn at_path(op: &'static str, path: &Path, hint: &'static str, e: nix::Error) -> MountError {
    MountError::AtPath {
        op,
        path: path.to_path_buf(),
        hint,
        source: e.into(),
    }
}

/// Makes the mount at `path` and every mount below it slaves (`MS_REC | MS_SLAVE`): the
/// host's mounts still propagate in, nothing mounted here propagates out. Call it right
/// after `unshare(CLONE_NEWNS)`, on `/`.
pub fn make_rslave(path: &Path) -> Result<(), MountError> {
    nix::mount::mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| at_path("make a slave mount of", path, NEEDS_ADMIN, e))
}

/// Mounts a fresh tmpfs named `source` on the directory `target` with `nosuid,nodev` and
/// the tmpfs `options` (e.g. `mode=0700`).
pub fn mount_tmpfs_at(target: &Path, source: &str, options: &str) -> Result<(), MountError> {
    nix::mount::mount(
        Some(source),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options),
    )
    .map_err(|e| at_path("mount a tmpfs on", target, NEEDS_ADMIN, e))
}

/// Bind-mounts (not recursively, flags unchanged) the file or directory `source` refers to
/// onto `target`, through `/proc/self/fd`: what is bound is what the descriptor was opened
/// on, even if its path was swapped since.
pub fn bind_fd_at(source: BorrowedFd<'_>, target: &Path) -> Result<(), MountError> {
    let src = fd_path(source);
    nix::mount::mount(
        Some(src.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| at_path("bind-mount onto", target, NEEDS_ADMIN, e))
}

/// The `lowerdir=..,upperdir=..,workdir=..` options of an overlay, or the directory that
/// overlayfs' option syntax cannot express.
pub fn overlay_options(lower: &Path, upper: &Path, work: &Path) -> Result<String, MountError> {
    for (role, p) in [("lowerdir", lower), ("upperdir", upper), ("workdir", work)] {
        if p.to_string_lossy().contains([',', ':', '\\']) {
            return Err(MountError::OverlayPath {
                role,
                path: p.to_path_buf(),
            });
        }
    }
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    ))
}

/// Mounts an overlay of the read-only `lower` directory on `target`; writes go to `upper`
/// (with overlayfs' scratch `work`, on the same filesystem as `upper`).
pub fn mount_overlay(
    lower: &Path,
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), MountError> {
    let opts = overlay_options(lower, upper, work)?;
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| {
        at_path(
            "mount an overlay on",
            target,
            "it needs CAP_SYS_ADMIN over the mount namespace, a kernel with overlayfs, \
             and upper and work directories on one filesystem that is not itself an overlay",
            e,
        )
    })
}

/// Unmounts the mount at `path`; `detach` makes it lazy (`MNT_DETACH`): gone from the
/// namespace now, freed when no longer busy.
pub fn unmount_path(path: &Path, detach: bool) -> Result<(), MountError> {
    let flags = if detach {
        nix::mount::MntFlags::MNT_DETACH
    } else {
        nix::mount::MntFlags::empty()
    };
    nix::mount::umount2(path, flags).map_err(|e| {
        at_path(
            "unmount",
            path,
            "it must be a mount point of this mount namespace and the caller needs \
             CAP_SYS_ADMIN over it",
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_errno_and_its_meaning() {
        let e = MountError::Sys {
            op: "bind-mount",
            what: "/dev/nvidia0 -> /dev/nvidia0 (device node)".into(),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        }
        .to_string();
        let (userns, rootful) = (
            "(EPERM: the hook runs in a user namespace (a rootless container)",
            "(EPERM: the hook lacks the privilege (CAP_SYS_ADMIN or CAP_MKNOD",
        );
        let want = if crate::engine::in_user_namespace() {
            userns
        } else {
            rootful
        };
        assert!(
            e.starts_with("cannot bind-mount for /dev/nvidia0 -> /dev/nvidia0 (device node): Operation not permitted (os error 1) ")
                && e.contains(want),
            "{e}"
        );
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert!(errno_meaning(&e).starts_with(" (EACCES: "), "{e}");
        // Errors whose text says it all get nothing added.
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(errno_meaning(&e), "");
    }

    #[test]
    fn overlay_options_name_the_three_directories() {
        let o = overlay_options(
            Path::new("/srv/rootfs"),
            Path::new("/s/upper"),
            Path::new("/s/work"),
        )
        .unwrap();
        assert_eq!(o, "lowerdir=/srv/rootfs,upperdir=/s/upper,workdir=/s/work");
    }

    #[test]
    fn an_overlay_path_with_a_separator_is_refused_before_any_mount() {
        for (lower, upper, role, bad) in [
            ("/srv/a,b", "/s/upper", "lowerdir", "/srv/a,b"),
            ("/srv/a", "/s/up:per", "upperdir", "/s/up:per"),
            ("/srv/a", "/s/up\\per", "upperdir", "/s/up\\per"),
        ] {
            let e = mount_overlay(
                Path::new(lower),
                Path::new(upper),
                Path::new("/s/work"),
                Path::new("/nonexistent-hpc-hooks-target"),
            )
            .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "overlay {role} {bad} contains ',', ':' or '\\', which overlayfs options \
                     cannot express; use a path without them"
                )
            );
        }
    }

    #[test]
    fn a_failed_tmpfs_mount_names_the_path_and_the_way_out() {
        // A missing directory: refused (ENOENT as root, EPERM otherwise), never mounted.
        let p = Path::new("/nonexistent-hpc-hooks-dir/scratch");
        let e = mount_tmpfs_at(p, "hpc-rank", "mode=0700").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("cannot mount a tmpfs on /nonexistent-hpc-hooks-dir/scratch: "),
            "{text}"
        );
        assert!(text.ends_with(NEEDS_ADMIN), "{text}");
        let MountError::AtPath { source, .. } = e else {
            panic!("not an AtPath error: {e:?}")
        };
        assert!(
            matches!(source.raw_os_error(), Some(libc::ENOENT | libc::EPERM)),
            "{source}"
        );
    }

    #[test]
    fn unmounting_a_directory_that_is_no_mount_point_fails_and_names_it() {
        let d = std::env::temp_dir().join(format!("hpc-hooks-unmount-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let r = unmount_path(&d, true);
        let _ = std::fs::remove_dir(&d);
        let text = r.unwrap_err().to_string();
        assert!(
            text.starts_with(&format!("cannot unmount {}: ", d.display())),
            "{text}"
        );
        assert!(text.contains("must be a mount point"), "{text}");
    }

    #[test]
    fn make_rslave_of_a_missing_path_fails_and_names_it() {
        let text = make_rslave(Path::new("/nonexistent-hpc-hooks-dir"))
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with("cannot make a slave mount of /nonexistent-hpc-hooks-dir: "),
            "{text}"
        );
    }
}
