//! Applying a plan to the live container: host files bound over container files, new
//! libraries in a private tmpfs at [`INJECT_ROOT`], `BIND_MOUNTS`, device cgroup rules,
//! and a regenerated ld.so.cache bound over `/etc/ld.so.cache`.
//!
//! The image itself is never written: the only things a hook may leave in a directory
//! rootfs are empty mount points (files or directories) for what it mounted.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::context::HookCtx;
use crate::devices::{self, CgroupLocator, DeviceNode};
use crate::ldcache::{self, CacheEntry, LdCache};
use crate::ldcache_write;
use crate::mount::{self, BindFlags};
use crate::mountinfo;
use crate::rootfs::{stat_handle, Rootfs};

/// Container directory of the private tmpfs holding injected libraries and the cache.
pub const INJECT_ROOT: &str = "/run/hpc-hooks";
/// Directory (inside [`INJECT_ROOT`]) with the injected libraries; in the container's cache.
pub const INJECT_LIB_DIR: &str = "/run/hpc-hooks/lib";
const MARKER: &str = ".hpc-hooks-tmpfs";
/// Largest container ld.so.cache read.
pub const MAX_CACHE_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    #[error(transparent)]
    Device(#[from] devices::DeviceError),
    #[error("cannot open host file {path}: {source}")]
    HostOpen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "container path {path} is {what}, not a regular file; refusing to mount {host} over it"
    )]
    NotAFile {
        path: PathBuf,
        host: PathBuf,
        what: &'static str,
    },
    #[error("the container's /etc/ld.so.cache cannot be read ({0}); rebuild the image with `RUN ldconfig` so that libraries can be added")]
    BadCache(String),
    #[error("cannot write the container's new ld.so.cache: {0}")]
    WriteCache(String),
    #[error("{INJECT_ROOT} in the container exists and is not the hooks' tmpfs; refusing to mount over it")]
    InjectRootTaken,
    #[error("cannot read the mount table: {0}")]
    MountInfo(std::io::Error),
}

/// Replace an existing container file with a host file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replace {
    pub host: PathBuf,
    /// Real (symlink-free) container path of the file to cover.
    pub container: PathBuf,
}

/// Add a host library under [`INJECT_LIB_DIR`] and to the loader cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddLib {
    pub host: PathBuf,
    pub soname: String,
    pub cache_flags: i32,
}

/// What a host path given in `BIND_MOUNTS` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindKind {
    File,
    Dir { devices: Vec<DeviceNode> },
    Device(DeviceNode),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBind {
    pub host: PathBuf,
    pub kind: BindKind,
}

/// Everything one hook wants done to the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub replace: Vec<Replace>,
    pub add: Vec<AddLib>,
    pub binds: Vec<HostBind>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.replace.is_empty() && self.add.is_empty() && self.binds.is_empty()
    }
}

fn open_host(path: &Path) -> Result<File, InjectError> {
    File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| InjectError::HostOpen {
            path: path.to_owned(),
            source,
        })
}

fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Binds `host` over the existing or created regular file `container`.
fn bind_file(
    rootfs: &Rootfs,
    host: &Path,
    container: &Path,
    create: bool,
    flags: BindFlags,
) -> Result<bool, InjectError> {
    let src = open_host(host)?;
    let target = if create {
        rootfs.ensure_file(container)?
    } else {
        rootfs.resolve(container)?
    };
    let tmd = stat_handle(&target).map_err(|e| crate::rootfs::RootfsError::Path {
        rootfs: rootfs.host_path().to_owned(),
        path: container.to_owned(),
        message: e.to_string(),
    })?;
    let smd = src.metadata().map_err(|source| InjectError::HostOpen {
        path: host.to_owned(),
        source,
    })?;
    if same_inode(&tmd, &smd) {
        return Ok(false); // already there (another hook, or a repeated plan)
    }
    if !tmd.is_file() {
        return Err(InjectError::NotAFile {
            path: container.to_owned(),
            host: host.to_owned(),
            what: if tmd.is_dir() {
                "a directory"
            } else {
                "a special file"
            },
        });
    }
    let what = format!("{} -> {}", host.display(), container.display());
    let re = || rootfs.resolve(container).ok().map(OwnedFd::from);
    mount::bind(src.as_fd(), target.as_fd(), flags, &what, &re)?;
    Ok(true)
}

/// Applies `plan`. Returns log lines describing what was done.
pub fn apply(ctx: &HookCtx, plan: &Plan) -> Result<Vec<String>, InjectError> {
    let rootfs = &ctx.rootfs;
    let mut log = Vec::new();
    for r in &plan.replace {
        if bind_file(rootfs, &r.host, &r.container, false, BindFlags::FILE_RO)? {
            log.push(format!(
                "bound {} over {}",
                r.host.display(),
                r.container.display()
            ));
        }
    }
    let mut devs = Vec::new();
    for b in &plan.binds {
        match &b.kind {
            BindKind::File => {
                bind_file(rootfs, &b.host, &b.host, true, BindFlags::FILE_RO)?;
            }
            BindKind::Device(d) => {
                bind_file(rootfs, &b.host, &b.host, true, BindFlags::DEVICE)?;
                tracing::warn!(
                    "read-write host bind: device node {} ({d}) bound into the container at the same path (rw,dev,nosuid,noexec)",
                    b.host.display()
                );
                devs.push(*d);
            }
            BindKind::Dir { devices } => {
                let src = open_host(&b.host)?;
                let target = rootfs.mkdir_all(&b.host)?;
                let flags = if devices.is_empty() {
                    BindFlags::FILE_RO
                } else {
                    BindFlags::DEVICE
                };
                let what = format!("{} (directory)", b.host.display());
                let re = || rootfs.resolve(&b.host).ok().map(OwnedFd::from);
                mount::bind(src.as_fd(), target.as_fd(), flags, &what, &re)?;
                if !flags.read_only {
                    let list: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
                    tracing::warn!(
                        "read-write host bind: directory {} bound into the container at the same path (rw,dev,nosuid,noexec) for its device nodes {}",
                        b.host.display(),
                        list.join(", ")
                    );
                }
                devs.extend(devices.iter().copied());
            }
        }
        log.push(format!("bind-mounted {}", b.host.display()));
    }
    if !devs.is_empty() {
        let mounts = mountinfo::read_self().map_err(InjectError::MountInfo)?;
        let loc = cgroup_locator(ctx);
        log.extend(devices::allow_devices(&devs, &loc, &mounts)?);
    }
    if !plan.add.is_empty() {
        log.extend(add_libraries(rootfs, &plan.add)?);
    }
    Ok(log)
}

/// Binds the host directory `src` (a descriptor the caller opened and checked, e.g. an
/// `O_PATH` fd opened without following symlinks) at the same `path` in the container,
/// read-only, `nosuid,nodev,noexec` ([`BindFlags::DIR_UNTRUSTED`]). No device is granted
/// and the host path is never looked up again. `Ok(false)` when it is already there.
pub fn bind_dir_fd(rootfs: &Rootfs, src: BorrowedFd<'_>, path: &Path) -> Result<bool, InjectError> {
    let host_err = |source| InjectError::HostOpen {
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
        if same_inode(&tmd, &smd) {
            return Ok(false); // already there (a repeated hook)
        }
    }
    let what = format!("{} (directory, read-only)", path.display());
    let re = || rootfs.resolve(path).ok().map(OwnedFd::from);
    mount::bind(src, target.as_fd(), BindFlags::DIR_UNTRUSTED, &what, &re)?;
    Ok(true)
}

/// Where the container's device cgroup is, as seen from this hook (by the way it
/// entered the container's mount namespace).
pub fn cgroup_locator(ctx: &HookCtx) -> CgroupLocator {
    CgroupLocator {
        proc_cgroup: match ctx.ns {
            crate::ns::NsEntry::Entered(pid) => format!("/proc/{pid}/cgroup"),
            crate::ns::NsEntry::AlreadyInside => "/proc/self/cgroup".into(),
        },
        member_pid: match ctx.ns {
            crate::ns::NsEntry::Entered(pid) => Some(pid as u32),
            // cgroup.procs lists pids as seen from the reader's pid namespace, which is
            // getpid()'s: right also when runc runs createContainer hooks inside the
            // container's pid namespace (there /proc/self, from the host's /proc, is not).
            crate::ns::NsEntry::AlreadyInside => Some(std::process::id()),
        },
        cgroups_path: ctx.config.cgroups_path(),
    }
}

/// Mounts (or reopens) the private tmpfs at [`INJECT_ROOT`] and makes it writable.
fn inject_root(rootfs: &Rootfs) -> Result<pathrs::Handle, InjectError> {
    let root = Path::new(INJECT_ROOT);
    let h = rootfs.mkdir_all(root)?;
    let is_ours = mount::fs_magic(h.as_fd()).ok() == Some(mount::TMPFS_MAGIC)
        && rootfs.try_resolve(&root.join(MARKER))?.is_some();
    if is_ours {
        mount::remount(
            h.as_fd(),
            BindFlags {
                read_only: false,
                nosuid: true,
                nodev: true,
                noexec: false,
            },
            INJECT_ROOT,
        )?;
        return Ok(h);
    }
    mount::mount_tmpfs(h.as_fd(), "64m", INJECT_ROOT)?;
    let h = rootfs.resolve(root)?;
    if mount::fs_magic(h.as_fd()).ok() != Some(mount::TMPFS_MAGIC) {
        return Err(InjectError::InjectRootTaken);
    }
    rootfs.write_new_file(&root.join(MARKER), b"", 0o644)?;
    rootfs.mkdir_all(Path::new(INJECT_LIB_DIR))?;
    Ok(h)
}

/// Reads the container's current cache (possibly one a previous hook bound there).
pub fn read_container_cache(rootfs: &Rootfs) -> Result<LdCache, InjectError> {
    let bytes = rootfs
        .read_file(Path::new("/etc/ld.so.cache"), MAX_CACHE_BYTES)
        .map_err(|e| InjectError::BadCache(e.to_string()))?;
    ldcache::parse(&bytes).map_err(|e| InjectError::BadCache(e.to_string()))
}

fn add_libraries(rootfs: &Rootfs, add: &[AddLib]) -> Result<Vec<String>, InjectError> {
    let mut log = Vec::new();
    let mut cache = read_container_cache(rootfs)?;
    let root_h = inject_root(rootfs)?;
    let mut entries: BTreeMap<(String, i32), String> = BTreeMap::new();
    for a in add {
        let target = Path::new(INJECT_LIB_DIR).join(&a.soname);
        if bind_file(rootfs, &a.host, &target, true, BindFlags::FILE_RO)? {
            log.push(format!(
                "added {} as {}",
                a.host.display(),
                target.display()
            ));
        }
        entries.insert(
            (a.soname.clone(), a.cache_flags),
            target.to_string_lossy().into_owned(),
        );
    }
    // Drop older entries for the same names (ours replace them), then add ours.
    cache
        .entries
        .retain(|e| !entries.contains_key(&(e.soname.clone(), e.flags)));
    for ((soname, flags), path) in entries {
        cache.entries.push(CacheEntry {
            soname,
            path,
            flags,
            osversion: 0,
            hwcap: 0,
        });
    }
    log.extend(bind_cache(rootfs, &root_h, &cache)?);
    Ok(log)
}

/// Writes `cache` as the container's loader cache: a new file on the hooks' tmpfs at
/// [`INJECT_ROOT`] (mounted when needed), bound read-only over `/etc/ld.so.cache` (an
/// older cache of ours is unmounted first). The image is not written.
pub fn install_cache(rootfs: &Rootfs, cache: &LdCache) -> Result<Vec<String>, InjectError> {
    let root_h = inject_root(rootfs)?;
    bind_cache(rootfs, &root_h, cache)
}

/// [`install_cache`] with the tmpfs already mounted writable (`root_h`); leaves it read-only.
fn bind_cache(
    rootfs: &Rootfs,
    root_h: &pathrs::Handle,
    cache: &LdCache,
) -> Result<Vec<String>, InjectError> {
    let mut log = Vec::new();
    let bytes = ldcache_write::write(cache, "hpc-hooks (container cache with injected libraries)")
        .map_err(|e| InjectError::WriteCache(e.to_string()))?;
    // A fresh file name per write: an earlier bind of an older cache keeps its inode.
    let mut n = 0;
    let name = loop {
        let p = Path::new(INJECT_ROOT).join(format!("ld.so.cache.{n}"));
        if rootfs.try_resolve(&p)?.is_none() {
            break p;
        }
        n += 1;
    };
    rootfs.write_new_file(&name, &bytes, 0o644)?;
    let etc_cache = Path::new("/etc/ld.so.cache");
    // Unmount an older cache of ours first so the new one is what the container sees.
    let our_dev = stat_handle(root_h).map(|m| m.dev()).ok();
    if let Some(h) = rootfs.try_resolve(etc_cache)? {
        if stat_handle(&h).map(|m| m.dev()).ok() == our_dev {
            mount::unmount(h.as_fd(), "/etc/ld.so.cache")?;
        }
    }
    let src = rootfs.resolve(&name)?;
    let target = rootfs.ensure_file(etc_cache)?;
    let re = || rootfs.resolve(etc_cache).ok().map(OwnedFd::from);
    mount::bind(
        src.as_fd(),
        target.as_fd(),
        BindFlags::FILE_RO,
        "/etc/ld.so.cache",
        &re,
    )?;
    log.push(format!(
        "regenerated the loader cache ({} entries) and bound it over /etc/ld.so.cache",
        cache.entries.len()
    ));
    mount::remount(root_h.as_fd(), BindFlags::FILE_RO, INJECT_ROOT)?;
    Ok(log)
}
