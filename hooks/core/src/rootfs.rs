//! The container's root filesystem as a handle: every path is resolved inside it with
//! openat2(RESOLVE_IN_ROOT) through `pathrs`, so image symlinks can never lead the hook
//! out of the rootfs. Paths given here are container paths (`/usr/lib/...`).

use std::fs::{File, Permissions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use pathrs::error::ErrorKind;
use pathrs::flags::OpenFlags;
use pathrs::{Handle, Root};

/// Longest symlink chain followed when collecting names (the kernel allows 40).
pub const MAX_LINK_CHAIN: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot open the container rootfs {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("container path {path} (in rootfs {rootfs}): {message}")]
    Path {
        rootfs: PathBuf,
        path: PathBuf,
        message: String,
    },
    #[error("container file {path} (in rootfs {rootfs}) is larger than {max} bytes")]
    TooLarge {
        rootfs: PathBuf,
        path: PathBuf,
        max: u64,
    },
}

/// Directories of a root known to exist: a run of mount points or links in one directory
/// then costs one `mkdir -p` (a pathrs resolution with its procfs checks) instead of one
/// each. Valid only while nothing is mounted over a directory of the root: [`Self::clear`]
/// after such a mount (a directory created before it may be hidden by it).
#[derive(Debug, Default)]
pub struct KnownDirs(Vec<PathBuf>);

impl KnownDirs {
    /// Forgets every directory (after a directory was mounted over).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Handle on a container rootfs.
pub struct Rootfs {
    root: Root,
    host_path: PathBuf,
    /// Where the root handle really is (symlinks resolved), to map handles back to
    /// container paths.
    real_root: PathBuf,
}

impl std::fmt::Debug for Rootfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rootfs({})", self.host_path.display())
    }
}

impl Rootfs {
    pub fn open(host_path: &Path) -> Result<Self, RootfsError> {
        let root = Root::open(host_path).map_err(|e| RootfsError::Open {
            path: host_path.to_owned(),
            message: e.to_string(),
        })?;
        let real_root = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsFd::as_fd(&root).as_raw_fd()
        ))
        .map_err(|e| RootfsError::Open {
            path: host_path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Rootfs {
            root,
            host_path: host_path.to_owned(),
            real_root,
        })
    }

    pub fn host_path(&self) -> &Path {
        &self.host_path
    }

    /// The `pathrs` root itself, for in-root operations this type does not wrap
    /// (no-follow lookups, readlink, removal, node creation).
    pub fn root(&self) -> &Root {
        &self.root
    }

    fn err(&self, path: &Path, message: impl std::fmt::Display) -> RootfsError {
        RootfsError::Path {
            rootfs: self.host_path.clone(),
            path: path.to_owned(),
            message: message.to_string(),
        }
    }

    /// O_PATH handle of `path`, following symlinks inside the root.
    pub fn resolve(&self, path: &Path) -> Result<Handle, RootfsError> {
        self.root.resolve(path).map_err(|e| self.err(path, e))
    }

    /// Like [`Self::resolve`] but `None` when the path does not exist.
    pub fn try_resolve(&self, path: &Path) -> Result<Option<Handle>, RootfsError> {
        match self.root.resolve(path) {
            Ok(h) => Ok(Some(h)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.err(path, e)),
        }
    }

    /// Opens `path` read-only (symlinks followed in-root, O_NOCTTY, never blocking on FIFOs).
    pub fn open_read(&self, path: &Path) -> Result<File, RootfsError> {
        let f = self
            .root
            .open_subpath(
                path,
                OpenFlags::O_RDONLY | OpenFlags::O_NOCTTY | OpenFlags::O_NONBLOCK,
            )
            .map_err(|e| self.err(path, e))?;
        let md = f.metadata().map_err(|e| self.err(path, e))?;
        if !md.is_file() {
            return Err(self.err(path, "not a regular file"));
        }
        Ok(f)
    }

    /// Reads a regular file of at most `max` bytes.
    pub fn read_file(&self, path: &Path, max: u64) -> Result<Vec<u8>, RootfsError> {
        let f = self.open_read(path)?;
        let mut buf = Vec::new();
        f.take(max + 1)
            .read_to_end(&mut buf)
            .map_err(|e| self.err(path, e))?;
        if buf.len() as u64 > max {
            return Err(RootfsError::TooLarge {
                rootfs: self.host_path.clone(),
                path: path.to_owned(),
                max,
            });
        }
        Ok(buf)
    }

    /// The in-root absolute path that `path` resolves to (symlinks followed inside the root).
    pub fn real_path(&self, path: &Path) -> Result<PathBuf, RootfsError> {
        let h = self.resolve(path)?;
        self.handle_path(&h, path)
    }

    /// Container path of an already-resolved handle.
    pub fn handle_path(&self, h: &Handle, what: &Path) -> Result<PathBuf, RootfsError> {
        let fd_path = format!("/proc/self/fd/{}", std::os::fd::AsFd::as_fd(h).as_raw_fd());
        let host = std::fs::read_link(&fd_path).map_err(|e| self.err(what, e))?;
        match host.strip_prefix(&self.real_root) {
            Ok(rel) => Ok(Path::new("/").join(rel)),
            Err(_) => Err(self.err(
                what,
                format!("resolved outside the rootfs ({})", host.display()),
            )),
        }
    }

    /// The chain of names `path` goes through (the path itself, then each symlink target,
    /// each made absolute in the container), ending at the real file. Bounded by
    /// [`MAX_LINK_CHAIN`]; a loop is an error.
    pub fn link_chain(&self, path: &Path) -> Result<Vec<PathBuf>, RootfsError> {
        let mut chain = vec![normalize(path)];
        loop {
            let cur = chain.last().cloned().unwrap_or_default();
            let h = self
                .root
                .resolve_nofollow(&cur)
                .map_err(|e| self.err(&cur, e))?;
            let md = stat_handle(&h).map_err(|e| self.err(&cur, e))?;
            if !md.file_type().is_symlink() {
                return Ok(chain);
            }
            if chain.len() > MAX_LINK_CHAIN {
                return Err(self.err(path, "too many levels of symbolic links"));
            }
            let target = self.root.readlink(&cur).map_err(|e| self.err(&cur, e))?;
            let next = if target.is_absolute() {
                normalize(&target)
            } else {
                normalize(&cur.parent().unwrap_or(Path::new("/")).join(target))
            };
            chain.push(next);
        }
    }

    /// `mkdir -p` inside the root (mode 0755 for created components).
    pub fn mkdir_all(&self, path: &Path) -> Result<Handle, RootfsError> {
        self.root
            .mkdir_all(path, &Permissions::from_mode(0o755))
            .map_err(|e| self.err(path, e))
    }

    /// `mkdir -p` inside the root, skipped for a directory `known` already holds.
    pub fn ensure_dir(&self, path: &Path, known: &mut KnownDirs) -> Result<(), RootfsError> {
        if known.0.iter().any(|d| d == path) {
            return Ok(());
        }
        self.mkdir_all(path)?;
        known.0.push(path.to_path_buf());
        Ok(())
    }

    /// Makes sure an (empty) regular file exists at `path` to serve as a mount point and
    /// returns its handle. Existing regular files are reused; anything else is an error.
    pub fn ensure_file(&self, path: &Path) -> Result<Handle, RootfsError> {
        self.ensure_file_known(path, &mut KnownDirs::default())
    }

    /// [`Self::ensure_file`], creating the parent directory unless `known` holds it.
    pub fn ensure_file_known(
        &self,
        path: &Path,
        known: &mut KnownDirs,
    ) -> Result<Handle, RootfsError> {
        if let Some(h) = self.try_resolve(path)? {
            let md = stat_handle(&h).map_err(|e| self.err(path, e))?;
            if md.is_file() {
                return Ok(h);
            }
            return Err(self.err(path, "exists and is not a regular file"));
        }
        self.create_mount_file(path, known)
    }

    /// Creates an empty regular file at `path`, which was just found missing (a file
    /// created meanwhile is reused), and returns its handle.
    pub fn create_mount_file(
        &self,
        path: &Path,
        known: &mut KnownDirs,
    ) -> Result<Handle, RootfsError> {
        if let Some(parent) = path.parent() {
            self.ensure_dir(parent, known)?;
        }
        match self.root.create_file(
            path,
            OpenFlags::O_WRONLY | OpenFlags::O_CREAT | OpenFlags::O_EXCL,
            &Permissions::from_mode(0o644),
        ) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::OsError(Some(libc::EEXIST)) => {}
            Err(e) => return Err(self.err(path, e)),
        }
        self.resolve(path)
    }

    /// Writes a new file inside the root (must not exist).
    pub fn write_new_file(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), RootfsError> {
        use std::io::Write;
        let mut f = self
            .root
            .create_file(
                path,
                OpenFlags::O_WRONLY | OpenFlags::O_CREAT | OpenFlags::O_TRUNC,
                &Permissions::from_mode(mode),
            )
            .map_err(|e| self.err(path, e))?;
        f.write_all(bytes).map_err(|e| self.err(path, e))
    }
}

fn is_not_found(e: &pathrs::error::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::OsError(Some(libc::ENOENT)) | ErrorKind::OsError(Some(libc::ENOTDIR))
    )
}

/// `fstat` of a handle (works on O_PATH descriptors; does not follow a final symlink).
pub fn stat_handle(h: &Handle) -> std::io::Result<std::fs::Metadata> {
    use std::os::fd::AsFd;
    File::from(h.as_fd().try_clone_to_owned()?).metadata()
}

/// Lexical normalisation of an absolute container path (`..` cannot climb above `/`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dirs_are_created_once_and_forgotten_on_clear() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = Rootfs::open(t.path()).unwrap();
        let mut known = KnownDirs::default();
        rootfs
            .create_mount_file(Path::new("/usr/lib/a.so"), &mut known)
            .unwrap();
        assert!(t.path().join("usr/lib/a.so").is_file());
        // A directory it knows is not looked at again: removed behind its back, the next
        // file fails instead of silently recreating it ...
        std::fs::remove_dir_all(t.path().join("usr/lib")).unwrap();
        let e = rootfs
            .create_mount_file(Path::new("/usr/lib/b.so"), &mut known)
            .unwrap_err();
        assert!(e.to_string().contains("/usr/lib/b.so"), "{e}");
        // ... and after `clear` (what a directory mount does) it is made again.
        known.clear();
        rootfs
            .create_mount_file(Path::new("/usr/lib/b.so"), &mut known)
            .unwrap();
        assert!(t.path().join("usr/lib/b.so").is_file());
        // ensure_file keeps its contract: an existing non-file is refused.
        let e = rootfs.ensure_file(Path::new("/usr/lib")).unwrap_err();
        assert!(
            e.to_string().contains("exists and is not a regular file"),
            "{e}"
        );
    }
}
