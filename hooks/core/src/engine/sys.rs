//! The engine's syscall seam: every mount, node creation and cgroup grant goes through
//! [`Sys`]. [`RealSys`] makes the calls; [`testing::RecordingSys`] records them so the
//! engine is unit-tested unprivileged against a directory rootfs.

use std::fs::Permissions;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pathrs::InodeType;

use crate::devices::{self, CgroupLocator, DeviceError, Grant};
use crate::mount::{self, BindFlags, MountError};
use crate::mountinfo::MountEntry;
use crate::rootfs::{Rootfs, RootfsError};

/// Linux capability number of `CAP_MKNOD`.
pub const CAP_MKNOD: u32 = 27;

/// What kind of node a device node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// `c` (and CDI's `u`).
    Char,
    /// `b`.
    Block,
    /// `p`: a FIFO (created, never granted in the cgroup).
    Fifo,
}

impl NodeKind {
    /// The CDI letter.
    pub fn letter(self) -> char {
        match self {
            NodeKind::Char => 'c',
            NodeKind::Block => 'b',
            NodeKind::Fifo => 'p',
        }
    }
}

/// A node to create in-root: kind, device numbers, exact mode and owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSpec {
    pub kind: NodeKind,
    pub major: u64,
    pub minor: u64,
    /// Permission bits (`& 0o7777`), set exactly (no umask).
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl NodeSpec {
    /// `makedev(major, minor)`.
    pub fn rdev(&self) -> u64 {
        libc::makedev(self.major as u32, self.minor as u32)
    }
}

/// The calls the engine makes that need privilege. Handles are in-root `O_PATH`
/// descriptors the engine resolved and checked; nothing here resolves a path string again
/// (except the classic-mount fallback through `reresolve`).
pub trait Sys {
    /// True when nodes may be created with mknod: the process has `CAP_MKNOD` in the
    /// initial user namespace.
    fn can_mknod(&self) -> bool;
    /// True when the process runs in a user namespace (not the initial one's identity
    /// map): a rootless container, where the runtime sets up no device cgroup to edit.
    fn user_namespace(&self) -> bool;
    /// Bind-mounts `source` onto `target` with `flags` (see [`mount::bind`]).
    fn bind(
        &self,
        source: BorrowedFd<'_>,
        target: BorrowedFd<'_>,
        flags: BindFlags,
        what: &str,
        reresolve: &dyn Fn() -> Option<OwnedFd>,
    ) -> Result<(), MountError>;
    /// Creates the node `path` (a container path whose parent exists and which itself does
    /// not) in-root, with the exact mode and owner of `node`.
    fn mknod(&self, rootfs: &Rootfs, path: &Path, node: &NodeSpec) -> Result<(), RootfsError>;
    /// Mounts a fresh size-limited tmpfs on the directory `target`.
    fn mount_tmpfs(&self, target: BorrowedFd<'_>, size: &str, what: &str)
        -> Result<(), MountError>;
    /// Sets the flags of the mount whose root `target` is.
    fn remount(
        &self,
        target: BorrowedFd<'_>,
        flags: BindFlags,
        what: &str,
    ) -> Result<(), MountError>;
    /// Detaches the mount at `target`.
    fn unmount(&self, target: BorrowedFd<'_>, what: &str) -> Result<(), MountError>;
    /// `statfs` magic of the filesystem `fd` is on.
    fn fs_magic(&self, fd: BorrowedFd<'_>) -> std::io::Result<i64>;
    /// Allows `grants` in the container's device cgroup (found with `loc` in `mounts`).
    fn grant(
        &self,
        grants: &[Grant],
        loc: &CgroupLocator,
        mounts: &[MountEntry],
    ) -> Result<Vec<String>, DeviceError>;
}

/// The real calls: [`crate::mount`] and [`crate::devices`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RealSys;

/// True when `uid_map` (the text of `/proc/self/uid_map`) is the initial user
/// namespace's identity map.
pub fn is_identity_uid_map(uid_map: &str) -> bool {
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

/// True when the `CapEff:` line of `status` (the text of `/proc/self/status`) has `cap`.
pub fn has_effective_cap(status: &str, cap: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|bits| bits & (1u64 << cap) != 0)
}

/// True when this process runs in a user namespace other than the initial one.
pub fn in_user_namespace() -> bool {
    !is_identity_uid_map(&std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default())
}

impl Sys for RealSys {
    fn can_mknod(&self) -> bool {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        is_identity_uid_map(&read("/proc/self/uid_map"))
            && has_effective_cap(&read("/proc/self/status"), CAP_MKNOD)
    }

    fn user_namespace(&self) -> bool {
        in_user_namespace()
    }

    fn bind(
        &self,
        source: BorrowedFd<'_>,
        target: BorrowedFd<'_>,
        flags: BindFlags,
        what: &str,
        reresolve: &dyn Fn() -> Option<OwnedFd>,
    ) -> Result<(), MountError> {
        mount::bind(source, target, flags, what, reresolve)
    }

    fn mknod(&self, rootfs: &Rootfs, path: &Path, node: &NodeSpec) -> Result<(), RootfsError> {
        let err = |e: &dyn std::fmt::Display| RootfsError::Path {
            rootfs: rootfs.host_path().to_owned(),
            path: path.to_owned(),
            message: e.to_string(),
        };
        let perm = Permissions::from_mode(node.mode);
        // The kernel's errno, named with what it means for a hook (pathrs says only "create
        // failed").
        let create_err = |e: &pathrs::error::Error| {
            let (errno, meaning) = match e.kind() {
                pathrs::error::ErrorKind::OsError(Some(n)) => {
                    let io = std::io::Error::from_raw_os_error(n);
                    (format!(": {io}"), crate::mount::errno_meaning(&io))
                }
                _ => (String::new(), String::new()),
            };
            err(&format!("mknod: {e}{errno}{meaning}"))
        };
        let it = match node.kind {
            NodeKind::Char => InodeType::CharacterDevice(perm, node.rdev()),
            NodeKind::Block => InodeType::BlockDevice(perm, node.rdev()),
            NodeKind::Fifo => InodeType::Fifo(perm),
        };
        let root = rootfs.root();
        root.create(path, &it).map_err(|e| create_err(&e))?;
        let h = root.resolve_nofollow(path).map_err(|e| err(&e))?;
        // mknod applies the umask: set the exact mode through the O_PATH handle's fd path
        // (it names the node just created in-root), and the owner when one is given.
        let fd_path = format!("/proc/self/fd/{}", h.as_fd().as_raw_fd());
        std::fs::set_permissions(&fd_path, Permissions::from_mode(node.mode))
            .map_err(|e| err(&e))?;
        if node.uid.is_some() || node.gid.is_some() {
            std::os::unix::fs::chown(&fd_path, node.uid, node.gid).map_err(|e| err(&e))?;
        }
        Ok(())
    }

    fn mount_tmpfs(
        &self,
        target: BorrowedFd<'_>,
        size: &str,
        what: &str,
    ) -> Result<(), MountError> {
        mount::mount_tmpfs(target, size, what)
    }

    fn remount(
        &self,
        target: BorrowedFd<'_>,
        flags: BindFlags,
        what: &str,
    ) -> Result<(), MountError> {
        mount::remount(target, flags, what)
    }

    fn unmount(&self, target: BorrowedFd<'_>, what: &str) -> Result<(), MountError> {
        mount::unmount(target, what)
    }

    fn fs_magic(&self, fd: BorrowedFd<'_>) -> std::io::Result<i64> {
        mount::fs_magic(fd)
    }

    fn grant(
        &self,
        grants: &[Grant],
        loc: &CgroupLocator,
        mounts: &[MountEntry],
    ) -> Result<Vec<String>, DeviceError> {
        devices::allow_grants(grants, loc, mounts)
    }
}

/// A [`Sys`] that records what the engine asked for and changes nothing.
pub mod testing {
    use std::cell::RefCell;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    use super::*;

    /// One recorded call; fds are recorded as the host paths they name.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Bind {
            source: PathBuf,
            target: PathBuf,
            flags: BindFlags,
            what: String,
        },
        Mknod {
            path: PathBuf,
            node: NodeSpec,
        },
        Tmpfs {
            target: PathBuf,
        },
        Remount {
            target: PathBuf,
            flags: BindFlags,
        },
        Unmount {
            target: PathBuf,
        },
        Grant {
            grants: Vec<Grant>,
        },
    }

    /// Records calls; `privileged` is what [`Sys::can_mknod`] answers, `user_ns` what
    /// [`Sys::user_namespace`] answers (a rootless container). A directory a tmpfs
    /// was "mounted" on reports [`mount::TMPFS_MAGIC`], everything else ext4's magic.
    #[derive(Debug, Default)]
    pub struct RecordingSys {
        pub privileged: bool,
        pub user_ns: bool,
        pub calls: RefCell<Vec<Call>>,
        tmpfs: RefCell<Vec<(u64, u64)>>,
    }

    const EXT4_MAGIC: i64 = 0xEF53;

    fn fd_target(fd: BorrowedFd<'_>) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
    }

    fn dev_ino(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
        let f = std::fs::File::from(fd.try_clone_to_owned().ok()?);
        f.metadata().ok().map(|m| (m.dev(), m.ino()))
    }

    impl RecordingSys {
        pub fn new(privileged: bool) -> Self {
            RecordingSys {
                privileged,
                ..Default::default()
            }
        }

        /// A hook in a rootless container: no mknod, in a user namespace.
        pub fn rootless() -> Self {
            RecordingSys {
                user_ns: true,
                ..Default::default()
            }
        }

        /// The calls so far.
        pub fn calls(&self) -> Vec<Call> {
            self.calls.borrow().clone()
        }

        fn push(&self, c: Call) {
            self.calls.borrow_mut().push(c);
        }
    }

    impl Sys for RecordingSys {
        fn can_mknod(&self) -> bool {
            self.privileged
        }

        fn user_namespace(&self) -> bool {
            self.user_ns
        }

        fn bind(
            &self,
            source: BorrowedFd<'_>,
            target: BorrowedFd<'_>,
            flags: BindFlags,
            what: &str,
            _reresolve: &dyn Fn() -> Option<OwnedFd>,
        ) -> Result<(), MountError> {
            self.push(Call::Bind {
                source: fd_target(source),
                target: fd_target(target),
                flags,
                what: what.to_string(),
            });
            Ok(())
        }

        fn mknod(&self, _rootfs: &Rootfs, path: &Path, node: &NodeSpec) -> Result<(), RootfsError> {
            self.push(Call::Mknod {
                path: path.to_owned(),
                node: *node,
            });
            Ok(())
        }

        fn mount_tmpfs(
            &self,
            target: BorrowedFd<'_>,
            _size: &str,
            _what: &str,
        ) -> Result<(), MountError> {
            if let Some(id) = dev_ino(target) {
                self.tmpfs.borrow_mut().push(id);
            }
            self.push(Call::Tmpfs {
                target: fd_target(target),
            });
            Ok(())
        }

        fn remount(
            &self,
            target: BorrowedFd<'_>,
            flags: BindFlags,
            _what: &str,
        ) -> Result<(), MountError> {
            self.push(Call::Remount {
                target: fd_target(target),
                flags,
            });
            Ok(())
        }

        fn unmount(&self, target: BorrowedFd<'_>, _what: &str) -> Result<(), MountError> {
            self.push(Call::Unmount {
                target: fd_target(target),
            });
            Ok(())
        }

        fn fs_magic(&self, fd: BorrowedFd<'_>) -> std::io::Result<i64> {
            let id = dev_ino(fd);
            Ok(if id.is_some_and(|id| self.tmpfs.borrow().contains(&id)) {
                mount::TMPFS_MAGIC
            } else {
                EXT4_MAGIC
            })
        }

        fn grant(
            &self,
            grants: &[Grant],
            _loc: &CgroupLocator,
            _mounts: &[MountEntry],
        ) -> Result<Vec<String>, DeviceError> {
            self.push(Call::Grant {
                grants: grants.to_vec(),
            });
            Ok(grants.iter().map(|g| format!("granted {g}")).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privilege_from_proc_texts() {
        assert!(is_identity_uid_map("         0          0 4294967295\n"));
        assert!(!is_identity_uid_map("         0       1000          1\n"));
        assert!(!is_identity_uid_map(""));
        let status = |eff: &str| format!("Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t{eff}\n");
        assert!(has_effective_cap(&status("000001ffffffffff"), CAP_MKNOD));
        assert!(has_effective_cap(&status("0000000008000000"), CAP_MKNOD));
        assert!(!has_effective_cap(&status("00000000f7ffffff"), CAP_MKNOD));
        assert!(!has_effective_cap("CapInh:\tffffffff\n", CAP_MKNOD));
    }
}
