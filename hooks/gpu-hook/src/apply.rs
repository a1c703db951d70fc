//! Applying container edits to a live container from a hook: device nodes (mknod in the
//! container's `/dev` with the right type, numbers and mode, then the device cgroup
//! allow rules), read-only bind mounts of libraries, binaries and firmware, the symlinks
//! and loader-cache updates that specs express as gpu-hook hooks, and a warning for what
//! a hook cannot do (env edits, other hooks). Every container path goes through the
//! in-root handles; every host path is opened once without following symlinks under
//! world-writable directories ([`open_host`]), checked on that handle and bound from it.

use std::ffi::CString;
use std::fs::{File, Permissions};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cdi_specs::types::{ContainerEdits, DeviceNode, Hook, Mount};
use hooks_core::devices::{self, DevType};
use hooks_core::mount::{self, BindFlags};
use hooks_core::rootfs::{normalize, stat_handle, Rootfs};
use pathrs::{InodeType, Root};

use crate::caps::Caps;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Rootfs(#[from] hooks_core::rootfs::RootfsError),
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    #[error(transparent)]
    Device(#[from] devices::DeviceError),
    #[error(transparent)]
    Cache(#[from] hooks_core::ldcache_update::LdCacheUpdateError),
    #[error("cannot read the mount table: {0}")]
    MountInfo(std::io::Error),
    #[error("device node {path}: {message}; fix or regenerate the CDI spec")]
    Node { path: String, message: String },
    #[error("mount {host} -> {container}: cannot open the host path: {source}; the driver file is missing: regenerate the CDI spec (cdi-gen) or fix --driver-root")]
    HostOpen {
        host: String,
        container: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mount {host} -> {container}: the container path is {what}, the host path is not; refusing to mount over it")]
    Kind {
        host: String,
        container: String,
        what: &'static str,
    },
    #[error("link {link:?}: {message}")]
    Link { link: String, message: String },
}

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
        let (parent, parent_path) = stack.last().expect("the stack always holds /");
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
                return Err(unsafe_path(format!(
                    "{here} is owned by uid {}, not root, under the world-writable directory {ww}; another user's file there could impersonate the driver's",
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
    Ok(stack.pop().expect("the stack always holds /").0)
}

/// What a bind source may be: device nodes and FIFOs never (nodes are created with mknod
/// and granted explicitly); files the spec names as libraries, binaries, firmware or
/// config must be regular files, `.../socket` a socket.
fn kind_ok(container: &str, md: &std::fs::Metadata) -> Result<(), &'static str> {
    let ft = md.file_type();
    if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        return Err("a device node or FIFO, which gpu-hook never bind-mounts");
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

/// A symlink to create: `link` (absolute container path) pointing at `target` (as given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    pub link: String,
}

/// Parses `TARGET::LINK`.
pub fn parse_link(s: &str) -> Result<Link, ApplyError> {
    let (target, link) = s.split_once("::").ok_or_else(|| ApplyError::Link {
        link: s.to_string(),
        message: "expected TARGET::LINK".into(),
    })?;
    if target.is_empty() || !link.starts_with('/') || link.contains('\0') || target.contains('\0') {
        return Err(ApplyError::Link {
            link: s.to_string(),
            message: "TARGET must be non-empty and LINK an absolute container path".into(),
        });
    }
    Ok(Link {
        target: target.to_string(),
        link: link.to_string(),
    })
}

/// A gpu-hook (or nvidia-cdi-hook / `nvidia-ctk hook`) hook a spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownHook {
    CreateSymlinks(Vec<String>),
    UpdateLdcache(Vec<String>),
    EnableCudaCompat,
}

/// Recognises the hooks gpu-hook implements, by subcommand name in the args.
pub fn known_hook(h: &Hook) -> Option<KnownHook> {
    let pos = h.args.iter().skip(1).position(|a| {
        matches!(
            a.as_str(),
            "create-symlinks" | "update-ldcache" | "enable-cuda-compat"
        )
    })? + 1;
    let rest = &h.args[pos + 1..];
    let values = |flag: &str| -> Vec<String> {
        let mut v = Vec::new();
        let mut it = rest.iter();
        while let Some(a) = it.next() {
            if a == flag {
                if let Some(x) = it.next() {
                    v.push(x.clone());
                }
            } else if let Some(x) = a.strip_prefix(&format!("{flag}=")) {
                v.push(x.to_string());
            }
        }
        v
    };
    Some(match h.args[pos].as_str() {
        "create-symlinks" => KnownHook::CreateSymlinks(values("--link")),
        "update-ldcache" => KnownHook::UpdateLdcache(values("--folder")),
        _ => KnownHook::EnableCudaCompat,
    })
}

/// All requested edits merged (first occurrence of a path wins) and filtered.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    pub nodes: Vec<DeviceNode>,
    pub mounts: Vec<Mount>,
    pub links: Vec<Link>,
    pub ldcache_dirs: Vec<String>,
    pub compat_hook: bool,
    /// Env edits (cannot be applied by a hook).
    pub env: Vec<String>,
    /// Hooks gpu-hook cannot run (path and args).
    pub other_hooks: Vec<String>,
    /// Files left out by the capabilities.
    pub filtered: usize,
}

/// Merges labelled edits, keeping what `caps` allows.
pub fn merge(edits: &[(String, ContainerEdits)], caps: &Caps) -> Result<Merged, ApplyError> {
    let mut m = Merged::default();
    for (_, e) in edits {
        for n in &e.device_nodes {
            if !m.nodes.iter().any(|x| x.path == n.path) {
                m.nodes.push(n.clone());
            }
        }
        for mt in &e.mounts {
            if !caps.allows_path(&mt.container_path) {
                m.filtered += 1;
                continue;
            }
            if !m
                .mounts
                .iter()
                .any(|x| x.container_path == mt.container_path)
            {
                m.mounts.push(mt.clone());
            }
        }
        for env in &e.env {
            if !m.env.contains(env) {
                m.env.push(env.clone());
            }
        }
        for h in &e.hooks {
            match known_hook(h) {
                Some(KnownHook::CreateSymlinks(links)) => {
                    for l in links {
                        let l = parse_link(&l)?;
                        if !caps.allows_path(&l.link) || !caps.allows_path(&l.target) {
                            m.filtered += 1;
                            continue;
                        }
                        if !m.links.contains(&l) {
                            m.links.push(l);
                        }
                    }
                }
                Some(KnownHook::UpdateLdcache(dirs)) => {
                    for d in dirs {
                        // 32-bit directories only with compat32.
                        if !caps.allows_path(&format!("{}/", d.trim_end_matches('/'))) {
                            continue;
                        }
                        if !m.ldcache_dirs.contains(&d) {
                            m.ldcache_dirs.push(d);
                        }
                    }
                }
                Some(KnownHook::EnableCudaCompat) => m.compat_hook = true,
                None => {
                    let s = format!("{} {}", h.path, h.args.join(" "));
                    if !m.other_hooks.contains(&s) {
                        m.other_hooks.push(s);
                    }
                }
            }
        }
    }
    // Mounts in depth order, as engines sort them.
    m.mounts
        .sort_by_key(|x| x.container_path.matches('/').count());
    Ok(m)
}

/// A device node ready to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFacts {
    pub dev_type: DevType,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub allow: bool,
}

/// Type, numbers and mode of a spec node: from the spec, completed from the host node.
pub fn node_facts(n: &DeviceNode) -> Result<NodeFacts, ApplyError> {
    let host = if n.host_path.is_empty() {
        &n.path
    } else {
        &n.host_path
    };
    let err = |message: String| ApplyError::Node {
        path: n.path.clone(),
        message,
    };
    // The host node through one no-follow-under-world-writable handle (see open_host).
    let md = match open_host(host) {
        Ok(f) => f.metadata().ok(),
        Err(HostPathError::Unsafe(why)) => return Err(err(why)),
        Err(HostPathError::Io(_)) => None,
    };
    let from_host = md.as_ref().and_then(|m| {
        let ft = m.file_type();
        let t = if ft.is_char_device() {
            DevType::Char
        } else if ft.is_block_device() {
            DevType::Block
        } else {
            return None;
        };
        Some((
            t,
            libc::major(m.rdev()) as u64,
            libc::minor(m.rdev()) as u64,
            m.mode() & 0o7777,
        ))
    });
    let dev_type = match n.typ.as_str() {
        "c" | "u" => DevType::Char,
        "b" => DevType::Block,
        "" => match from_host {
            Some((t, ..)) => t,
            None => {
                return Err(err(format!(
                    "no type given and host node {host} is not a device"
                )))
            }
        },
        other => {
            return Err(err(format!(
                "type {other:?} is not supported by gpu-hook (only c, u, b)"
            )))
        }
    };
    let major = match (n.major, from_host) {
        (Some(m), _) if m >= 0 => m as u64,
        (_, Some((_, m, _, _))) => m,
        _ => {
            return Err(err(format!(
                "no major given and host node {host} cannot be read"
            )))
        }
    };
    let minor = match (n.minor, from_host) {
        (Some(m), _) if m >= 0 => m as u64,
        (_, Some((_, _, m, _))) => m,
        _ => {
            return Err(err(format!(
                "no minor given and host node {host} cannot be read"
            )))
        }
    };
    let mode = n
        .file_mode
        .map(|m| m & 0o7777)
        .or(from_host.map(|h| h.3))
        .unwrap_or(0o666);
    Ok(NodeFacts {
        dev_type,
        major,
        minor,
        mode,
        uid: n.uid,
        gid: n.gid,
        allow: n.permissions != "none",
    })
}

fn root_err(rootfs: &Rootfs, path: &Path, e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Rootfs(hooks_core::rootfs::RootfsError::Path {
        rootfs: rootfs.host_path().to_owned(),
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Creates (or keeps, when identical) the device node `path` inside the root.
pub fn make_node(
    root: &Root,
    rootfs: &Rootfs,
    path: &str,
    f: &NodeFacts,
) -> Result<bool, ApplyError> {
    let p = normalize(Path::new(path));
    if !p.starts_with("/dev") {
        return Err(ApplyError::Node {
            path: path.to_string(),
            message: "device nodes must be under /dev".into(),
        });
    }
    if let Some(parent) = p.parent() {
        rootfs.mkdir_all(parent)?;
    }
    let rdev = libc::makedev(f.major as u32, f.minor as u32);
    if let Ok(h) = root.resolve_nofollow(&p) {
        let md = stat_handle(&h).map_err(|e| root_err(rootfs, &p, e))?;
        let ft = md.file_type();
        let same_type = match f.dev_type {
            DevType::Char => ft.is_char_device(),
            DevType::Block => ft.is_block_device(),
        };
        if same_type && md.rdev() == rdev && md.mode() & 0o7777 == f.mode {
            return Ok(false);
        }
        if ft.is_dir() {
            return Err(ApplyError::Node {
                path: path.to_string(),
                message: "a directory is in the way in the container".into(),
            });
        }
        root.remove_file(&p).map_err(|e| root_err(rootfs, &p, e))?;
    }
    let perm = Permissions::from_mode(f.mode);
    let it = match f.dev_type {
        DevType::Char => InodeType::CharacterDevice(perm, rdev),
        DevType::Block => InodeType::BlockDevice(perm, rdev),
    };
    root.create(&p, &it).map_err(|e| root_err(rootfs, &p, e))?;
    let h = root
        .resolve_nofollow(&p)
        .map_err(|e| root_err(rootfs, &p, e))?;
    // mknod applies the umask: set the exact mode (through the O_PATH handle's fd path,
    // which names the node just created in-root), and the owner when the spec gives one.
    let fd_path = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&h.as_fd())
    );
    std::fs::set_permissions(&fd_path, Permissions::from_mode(f.mode))
        .map_err(|e| root_err(rootfs, &p, e))?;
    if f.uid.is_some() || f.gid.is_some() {
        std::os::unix::fs::chown(&fd_path, f.uid, f.gid).map_err(|e| root_err(rootfs, &p, e))?;
    }
    Ok(true)
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

/// Bind-mounts one spec mount from the handle [`open_host`] gives. Returns false when it
/// was already in place, or when the host path is unsafe (a symlink or another user's
/// entry under a world-writable directory, or a device node): that mount is left out with
/// a warning and the container starts without it.
pub fn bind_mount(rootfs: &Rootfs, m: &Mount) -> Result<bool, ApplyError> {
    let host_err = |source| ApplyError::HostOpen {
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
            None => rootfs.ensure_file(&cpath)?,
        }
    };
    let tmd = stat_handle(&target).map_err(|e| root_err(rootfs, &cpath, e))?;
    if tmd.dev() == smd.dev() && tmd.ino() == smd.ino() {
        return Ok(false);
    }
    if tmd.is_dir() != smd.is_dir() {
        return Err(ApplyError::Kind {
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
    mount::bind(src.as_fd(), target.as_fd(), flags, &what, &re)?;
    Ok(true)
}

/// Creates `link` in-root: an identical link is left alone, a conflicting file or link
/// replaced, a directory refused. Parent directories are created inside the root.
pub fn create_link(root: &Root, rootfs: &Rootfs, l: &Link) -> Result<bool, ApplyError> {
    let p = normalize(Path::new(&l.link));
    if p == Path::new("/") {
        return Err(ApplyError::Link {
            link: l.link.clone(),
            message: "cannot replace /".into(),
        });
    }
    if let Some(parent) = p.parent() {
        rootfs.mkdir_all(parent)?;
    }
    let target = PathBuf::from(&l.target);
    if let Ok(h) = root.resolve_nofollow(&p) {
        let md = stat_handle(&h).map_err(|e| root_err(rootfs, &p, e))?;
        if md.file_type().is_symlink() {
            if root.readlink(&p).ok().as_ref() == Some(&target) {
                return Ok(false);
            }
        } else if md.is_dir() {
            return Err(ApplyError::Link {
                link: l.link.clone(),
                message: "a directory is in the way in the container; not replacing it".into(),
            });
        }
        root.remove_file(&p).map_err(|e| root_err(rootfs, &p, e))?;
    }
    root.create(&p, &InodeType::Symlink(target))
        .map_err(|e| root_err(rootfs, &p, e))?;
    Ok(true)
}

/// Creates every link; returns log lines.
pub fn create_links(
    root: &Root,
    rootfs: &Rootfs,
    links: &[Link],
) -> Result<Vec<String>, ApplyError> {
    let mut n = 0;
    for l in links {
        if create_link(root, rootfs, l)? {
            n += 1;
        }
    }
    Ok(vec![format!(
        "create-symlinks: {n} of {} links created ({} already in place)",
        links.len(),
        links.len() - n
    )])
}

/// Directories of mounted libraries (for the cache when no update-ldcache hook is given).
pub fn library_dirs(mounts: &[Mount]) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    for m in mounts {
        let name = m.container_path.rsplit('/').next().unwrap_or("");
        if name.starts_with("lib") && name.contains(".so") {
            if let Some((d, _)) = m.container_path.rsplit_once('/') {
                if !d.is_empty() && !dirs.iter().any(|x| x == d) {
                    dirs.push(d.to_string());
                }
            }
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(args: &[&str]) -> Hook {
        Hook {
            hook_name: "createContainer".into(),
            path: "/usr/libexec/hpc-hooks/gpu-hook".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Hook::default()
        }
    }

    #[test]
    fn hooks_and_links() {
        let h = hook(&[
            "gpu-hook",
            "create-symlinks",
            "--link",
            "libcuda.so.1::/usr/lib/libcuda.so",
            "--link=a::/b",
        ]);
        assert_eq!(
            known_hook(&h),
            Some(KnownHook::CreateSymlinks(vec![
                "libcuda.so.1::/usr/lib/libcuda.so".into(),
                "a::/b".into()
            ]))
        );
        let h = hook(&[
            "nvidia-ctk",
            "hook",
            "update-ldcache",
            "--folder",
            "/usr/lib64",
        ]);
        assert_eq!(
            known_hook(&h),
            Some(KnownHook::UpdateLdcache(vec!["/usr/lib64".into()]))
        );
        assert_eq!(known_hook(&hook(&["x", "other"])), None);
        assert!(parse_link("a::b").is_err());
        assert!(parse_link("nolink").is_err());
        assert_eq!(parse_link("../x::/dev/y").unwrap().target, "../x");
    }

    #[test]
    fn merge_filters_by_caps() {
        let mut e = ContainerEdits::default();
        for p in [
            "/usr/lib/libcuda.so.1.2",
            "/usr/lib/libEGL_nvidia.so.1.2",
            "/fw/gsp.bin",
        ] {
            e.mounts.push(Mount {
                host_path: p.into(),
                container_path: p.into(),
                options: vec!["ro".into()],
                typ: String::new(),
            });
        }
        e.hooks.push(hook(&[
            "gpu-hook",
            "create-symlinks",
            "--link",
            "libEGL_nvidia.so.1.2::/usr/lib/libEGL_nvidia.so.0",
            "--link",
            "libcuda.so.1::/usr/lib/libcuda.so",
        ]));
        e.env.push("NVIDIA_VISIBLE_DEVICES=void".into());
        let m = merge(&[("x".into(), e)], &Caps::default_env()).unwrap();
        assert_eq!(m.mounts.len(), 2);
        assert_eq!(m.links.len(), 1);
        assert_eq!(m.env, ["NVIDIA_VISIBLE_DEVICES=void"]);
        assert_eq!(library_dirs(&m.mounts), ["/usr/lib"]);
    }

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
            .prefix("gpu-hook-test")
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
            .prefix("gpu-hook-ww")
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

    #[test]
    fn device_nodes_are_never_bind_sources() {
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
    }
}
