//! Bind mounts: CDI mounts (host path opened once with [`open_host`], checked on that
//! handle, bound from it), `replace` (a host file over an existing regular image file at
//! its real path), and directories a caller opened itself ([`bind_dir_fd`]).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use cdi_specs::plan::Replace;
use cdi_specs::types::Mount;

use super::host::{open_host, HostPathError};
use super::sys::Sys;
use super::{root_err, EngineError};
use crate::mount::BindFlags;
use crate::rootfs::{normalize, stat_handle, KnownDirs, Rootfs};

/// What a mount source may be: device nodes and FIFOs never (they are device nodes of the
/// edits, created or bound and granted explicitly); files named as libraries, firmware or
/// config must be regular files, `.../socket` a socket.
pub fn kind_ok(container: &str, md: &std::fs::Metadata) -> Result<(), &'static str> {
    let ft = md.file_type();
    if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        return Err("a device node or FIFO, which is never bind-mounted as a mount (list it as a device node)");
    }
    let name = container.rsplit('/').next().unwrap_or("");
    let file_like = name.contains(".so")
        || [".json", ".icd", ".bin", ".conf"]
            .iter()
            .any(|e| name.ends_with(e));
    if file_like && !ft.is_file() {
        return Err("not a regular file, as a library, firmware or config file must be");
    }
    if name == "socket" && !ft.is_socket() {
        return Err("not a socket");
    }
    Ok(())
}

/// Bind flags from CDI mount options.
pub fn bind_flags(options: &[String]) -> BindFlags {
    let has = |o: &str| options.iter().any(|x| x == o);
    BindFlags {
        read_only: has("ro"),
        nosuid: has("nosuid"),
        nodev: has("nodev"),
        noexec: has("noexec"),
    }
}

/// Bind-mounts one CDI mount from the handle [`open_host`] gives. `Ok(false)` when it was
/// already in place, or when the host path is unsafe (a symlink or another user's entry
/// under a world-writable directory) or a device node: that mount is left out with a
/// warning and the container starts without it.
pub fn bind_mount(
    rootfs: &Rootfs,
    sys: &dyn Sys,
    m: &Mount,
    known: &mut KnownDirs,
) -> Result<bool, EngineError> {
    let host_err = |source| EngineError::HostOpen {
        host: m.host_path.clone(),
        container: m.container_path.clone(),
        source,
    };
    let src = match open_host(&m.host_path) {
        Ok(f) => f,
        Err(HostPathError::Io(e)) => return Err(host_err(e)),
        Err(HostPathError::Unsafe(why)) => {
            tracing::warn!(
                "not mounting {} at {}: {why}",
                m.host_path,
                m.container_path
            );
            return Ok(false);
        }
    };
    let smd = src.metadata().map_err(host_err)?;
    if let Err(why) = kind_ok(&m.container_path, &smd) {
        tracing::warn!(
            "not mounting {} at {}: the host path is {why}; fix or regenerate the CDI spec",
            m.host_path,
            m.container_path
        );
        return Ok(false);
    }
    let cpath = normalize(Path::new(&m.container_path));
    let target = if smd.is_dir() {
        rootfs.mkdir_all(&cpath)?
    } else {
        match rootfs.try_resolve(&cpath)? {
            Some(h) => h,
            None => rootfs.create_mount_file(&cpath, known)?,
        }
    };
    let tmd = stat_handle(&target).map_err(|e| root_err(rootfs, &cpath, e))?;
    if tmd.dev() == smd.dev() && tmd.ino() == smd.ino() {
        return Ok(false);
    }
    if tmd.is_dir() != smd.is_dir() {
        return Err(EngineError::Kind {
            host: m.host_path.clone(),
            container: m.container_path.clone(),
            what: if tmd.is_dir() {
                "a directory"
            } else {
                "not a directory"
            },
        });
    }
    let what = format!("{} -> {}", m.host_path, m.container_path);
    let flags = bind_flags(&m.options);
    if !flags.read_only {
        // Read-write host binds are always on record (cdi-gen writes none).
        tracing::warn!(
            "read-write bind of host {} at {} (the spec's options {:?} have no \"ro\")",
            m.host_path,
            m.container_path,
            m.options
        );
    }
    let re = || rootfs.resolve(&cpath).ok().map(OwnedFd::from);
    sys.bind(src.as_fd(), target.as_fd(), flags, &what, &re)?;
    if smd.is_dir() {
        known.clear(); // directories created under it before are hidden now
    }
    Ok(true)
}

/// Opens a host file the admin configured (MPI or glibc libraries): `O_PATH`, symlinks
/// followed, as the hooks always have.
pub(crate) fn open_host_file(path: &str) -> Result<File, EngineError> {
    File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| EngineError::HostFile {
            path: path.into(),
            source,
        })
}

/// Binds the host file `host` read-only over the regular file `container`, which must
/// exist (`create` false) or is created empty (`create` true). `Ok(false)` when the same
/// file is already there.
pub(crate) fn bind_file(
    rootfs: &Rootfs,
    sys: &dyn Sys,
    host: &str,
    container: &Path,
    create: bool,
) -> Result<bool, EngineError> {
    let src = open_host_file(host)?;
    let target = if create {
        rootfs.ensure_file(container)?
    } else {
        rootfs.resolve(container)?
    };
    let tmd = stat_handle(&target).map_err(|e| root_err(rootfs, container, e))?;
    let smd = src.metadata().map_err(|source| EngineError::HostFile {
        path: host.into(),
        source,
    })?;
    if tmd.dev() == smd.dev() && tmd.ino() == smd.ino() {
        return Ok(false); // already there (another hook, or a repeated plan)
    }
    if !tmd.is_file() {
        return Err(EngineError::NotAFile {
            path: container.to_owned(),
            host: host.into(),
            what: if tmd.is_dir() {
                "a directory"
            } else {
                "a special file"
            },
        });
    }
    if !create {
        // The plan names the image file by its real path: a symlink on the way (the image
        // changed, or a wrong plan) would bind over another file than the one planned.
        let real = rootfs.handle_path(&target, container)?;
        if real != normalize(container) {
            return Err(EngineError::NotReal {
                path: container.to_owned(),
                real,
                host: host.into(),
            });
        }
    }
    let what = format!("{host} -> {}", container.display());
    let re = || rootfs.resolve(container).ok().map(OwnedFd::from);
    sys.bind(src.as_fd(), target.as_fd(), BindFlags::FILE_RO, &what, &re)?;
    Ok(true)
}

/// Applies one [`Replace`]; returns the log line, `None` when already in place.
pub fn replace(rootfs: &Rootfs, sys: &dyn Sys, r: &Replace) -> Result<Option<String>, EngineError> {
    let container = Path::new(&r.container_path);
    Ok(bind_file(rootfs, sys, &r.host_path, container, false)?
        .then(|| format!("bound {} over {}", r.host_path, r.container_path)))
}

/// Binds the host directory `src` (a descriptor the caller opened and checked, e.g. an
/// `O_PATH` fd opened without following symlinks) at the same `path` in the container,
/// read-only, `nosuid,nodev,noexec` ([`BindFlags::DIR_UNTRUSTED`]). No device is granted
/// and the host path is never looked up again. `Ok(false)` when it is already there.
pub fn bind_dir_fd(
    rootfs: &Rootfs,
    sys: &dyn Sys,
    src: BorrowedFd<'_>,
    path: &Path,
) -> Result<bool, EngineError> {
    let host_err = |source| EngineError::HostFile {
        path: path.to_owned(),
        source,
    };
    let smd = File::from(src.try_clone_to_owned().map_err(host_err)?)
        .metadata()
        .map_err(host_err)?;
    if !smd.is_dir() {
        return Err(host_err(std::io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    let target = rootfs.mkdir_all(path)?;
    if let Ok(tmd) = stat_handle(&target) {
        if tmd.dev() == smd.dev() && tmd.ino() == smd.ino() {
            return Ok(false); // already there (a repeated hook)
        }
    }
    let what = format!("{} (directory, read-only)", path.display());
    let re = || rootfs.resolve(path).ok().map(OwnedFd::from);
    sys.bind(src, target.as_fd(), BindFlags::DIR_UNTRUSTED, &what, &re)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_nodes_are_never_mount_sources() {
        let md = std::fs::metadata("/dev/null").unwrap();
        assert!(kind_ok("/dev/nvidia0", &md).is_err());
        let md = std::fs::metadata("/").unwrap();
        assert!(kind_ok("/usr/lib/libcuda.so.1", &md).is_err());
        assert!(kind_ok("/tmp/nvidia-mps", &md).is_ok());
    }

    #[test]
    fn flags() {
        let f = bind_flags(&["ro".into(), "nosuid".into(), "nodev".into(), "bind".into()]);
        assert_eq!(f, BindFlags::FILE_RO);
        let f = bind_flags(&["rw".into(), "nosuid".into(), "noexec".into()]);
        assert_eq!(f, BindFlags::DEVICE);
    }
}
