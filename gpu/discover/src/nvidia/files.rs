//! The driver's user-space files inside the driver root: every `lib*.so.<version>` in the
//! driver's library directories (found through the root's ld.so.cache, the standard
//! directories and `--library-search-path`, `vdpau/` included), binaries, IPC sockets,
//! GSP firmware and Vulkan/EGL/OpenCL config files, and the MPS pipe directory when it is
//! safe to share. Paths are canonical in-root paths; nothing planted under a
//! world-writable directory is used (see [`crate::roots::resolve_in_root_checked`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hpc_facts::ldcache::LdCache;
use thiserror::Error;

use crate::roots::Roots;

/// Library directories searched in every driver root (after the ld.so.cache's).
pub const STANDARD_LIB_DIRS: [&str; 12] = [
    "/usr/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib",
    "/lib64",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/lib",
    "/usr/lib32",
    "/usr/lib/i386-linux-gnu",
    "/lib32",
    "/usr/local/nvidia/lib64",
];

/// Driver binaries mounted when present.
pub const BINARIES: [&str; 5] = [
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];

const BIN_DIRS: [&str; 5] = ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"];

/// IPC sockets mounted when present (read-only: connect() needs no writable mount).
pub const SOCKETS: [&str; 2] = [
    "/run/nvidia-persistenced/socket",
    "/run/nvidia-fabricmanager/socket",
];

/// The MPS control daemon's default pipe directory (`CUDA_MPS_PIPE_DIRECTORY`). It lies in
/// world-writable `/tmp`, so it is used only when it is a real directory owned by root and
/// not group- or world-writable; `--mps-pipe-dir` names another one.
pub const DEFAULT_MPS_PIPE_DIR: &str = "/tmp/nvidia-mps";

/// Graphics and compute config files mounted when present (the optix denoiser data
/// and the X server configs are what nvidia-ctk mounts for graphics and display).
pub const CONFIG_FILES: [&str; 13] = [
    "/etc/vulkan/icd.d/nvidia_icd.json",
    "/usr/share/vulkan/icd.d/nvidia_icd.json",
    "/etc/vulkan/implicit_layer.d/nvidia_layers.json",
    "/usr/share/vulkan/implicit_layer.d/nvidia_layers.json",
    "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
    "/etc/OpenCL/vendors/nvidia.icd",
    "/usr/share/egl/egl_external_platform.d/10_nvidia_wayland.json",
    "/usr/share/egl/egl_external_platform.d/15_nvidia_gbm.json",
    "/etc/nvidia/nvidia-application-profiles-rc.d",
    "/usr/share/nvidia/nvoptix.bin",
    "/usr/share/X11/xorg.conf.d/nvidia-drm-outputclass.conf",
    "/usr/share/X11/xorg.conf.d/10-nvidia.conf",
    "/etc/X11/xorg.conf.d/10-nvidia.conf",
];

/// Libraries of the graphics stack that carry their own version, not the driver's
/// (`libnvidia-egl-gbm.so.1.1.1`): mounted with their SONAME links, as nvidia-ctk does.
pub const GRAPHICS_LIBS: [&str; 2] = ["libnvidia-egl-gbm.so.", "libnvidia-egl-wayland.so."];

/// Directories of the X server modules: `<libcuda dir>/nvidia/xorg`, then
/// `<base>/<subdir>` for libcuda's `xorg` directory and these, in this order like
/// nvidia-ctk; the first hit of each file wins.
const XORG_ROOTS: [&str; 4] = [
    "/usr/lib/xorg",
    "/usr/lib64/xorg",
    "/usr/X11R6/lib",
    "/usr/X11R6/lib64",
];
const XORG_SUBDIRS: [&str; 4] = [
    "modules/drivers",
    "modules/extensions",
    "modules/updates/drivers",
    "modules/updates/extensions",
];

const FIRMWARE_DIRS: [&str; 2] = ["/lib/firmware/nvidia", "/usr/lib/firmware/nvidia"];

/// Errors finding the driver's files.
#[derive(Debug, Error)]
pub enum FilesError {
    /// No `libcuda.so.<version>` anywhere.
    #[error("no libcuda.so.{version} in the driver root {root} (searched {dirs}); install the NVIDIA driver there, or point --driver-root / --library-search-path at it", root = .root.display())]
    NoLibcuda {
        /// The driver root.
        root: PathBuf,
        /// The expected version, or `<version>`.
        version: String,
        /// The directories searched.
        dirs: String,
    },
    /// The driver version is unknown and cannot be read from libcuda's file name either.
    #[error("cannot tell the driver version: NVML and /proc/driver/nvidia/version gave none and no libcuda.so.<version> is in the driver root {root} (searched {dirs}); point --driver-root at the driver installation", root = .root.display())]
    NoVersion {
        /// The driver root.
        root: PathBuf,
        /// The directories searched.
        dirs: String,
    },
}

/// A driver library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// Canonical in-root path, e.g. `/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14`.
    pub path: String,
    /// Links to create next to it (`libcuda.so.1`, and `libcuda.so` for libcuda).
    pub links: Vec<String>,
}

impl Library {
    /// The directory of the library.
    pub fn dir(&self) -> &str {
        self.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("/")
    }
}

/// A file to mount: where it is inside the driver root and where it goes in the container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileMount {
    /// Canonical in-root path (host side).
    pub host: String,
    /// Path in the container.
    pub container: String,
}

/// Everything found in the driver root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverFiles {
    /// The driver version the libraries carry.
    pub version: String,
    /// Libraries, sorted by path.
    pub libraries: Vec<Library>,
    /// Binaries.
    pub binaries: Vec<FileMount>,
    /// IPC sockets, and the MPS pipe directory when it is safe to share.
    pub sockets: Vec<FileMount>,
    /// GSP firmware.
    pub firmware: Vec<FileMount>,
    /// Config files.
    pub configs: Vec<FileMount>,
    /// X server modules (`nvidia_drv.so`, `libglxserver_nvidia.so.<version>`).
    pub xorg: Vec<FileMount>,
}

impl DriverFiles {
    /// The links the X server modules need: `libglxserver_nvidia.so` next to
    /// `libglxserver_nvidia.so.<version>` (target, link), as nvidia-ctk creates it.
    pub fn xorg_links(&self) -> Vec<(String, String)> {
        self.xorg
            .iter()
            .filter_map(|f| {
                let (dir, name) = f.container.rsplit_once('/')?;
                name.starts_with("libglxserver_nvidia.so.")
                    .then(|| (name.to_string(), format!("{dir}/libglxserver_nvidia.so")))
            })
            .collect()
    }
}

impl DriverFiles {
    /// Directories holding libraries, sorted, without `vdpau/` (loaded by path, not
    /// through the cache): the update-ldcache hook's folders.
    pub fn library_dirs(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .libraries
            .iter()
            .map(Library::dir)
            .filter(|d| !d.ends_with("/vdpau"))
            .collect();
        set.into_iter().map(str::to_string).collect()
    }
}

/// Reads `<driver root>/etc/ld.so.cache`; `Ok(None)` when there is none.
pub fn read_ldcache(roots: &Roots) -> Result<Option<LdCache>, String> {
    let path = roots.driver("/etc/ld.so.cache");
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    hpc_facts::ldcache::read_file(&file).map(Some).map_err(|e| {
        format!(
            "{}: cannot parse: {e}; run ldconfig in the driver root",
            path.display()
        )
    })
}

/// Candidate library directories, canonical and deduplicated, in search order.
fn library_dirs(roots: &Roots, search: &[PathBuf], cache: Option<&LdCache>) -> Vec<String> {
    let mut raw: Vec<String> = search
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(cache) = cache {
        let mut dirs = BTreeSet::new();
        for e in &cache.entries {
            let s = e.soname.as_str();
            if s.starts_with("libcuda.so")
                || s.starts_with("libnvidia-")
                || s.starts_with("libGLX_nvidia")
                || s.starts_with("libEGL_nvidia")
            {
                if let Some((dir, _)) = e.path.rsplit_once('/') {
                    dirs.insert(dir.to_string());
                }
            }
        }
        raw.extend(dirs);
    }
    raw.extend(STANDARD_LIB_DIRS.iter().map(|s| s.to_string()));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for d in raw {
        if let Some(c) = roots.resolve_in_driver_root(&d) {
            if seen.insert(c.clone()) {
                out.push(c);
            }
        }
    }
    out
}

/// `lib*.so.<version>`.
fn is_driver_lib(name: &str, version: &str) -> bool {
    name.starts_with("lib")
        && name
            .strip_suffix(version)
            .is_some_and(|s| s.ends_with(".so.") && s.len() > 7)
}

/// `libnvidia-egl-gbm.so.X.Y[.Z]` and the like ([`GRAPHICS_LIBS`]): at least two
/// numeric components after `.so.`, so the SONAME link `.so.1` itself is not taken.
fn is_graphics_lib(name: &str) -> bool {
    GRAPHICS_LIBS.iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|v| v.contains('.') && crate::nvidia::procfs::is_version(v))
    })
}

/// The X server modules: the first `nvidia_drv.so` and `libglxserver_nvidia.so.<version>`
/// in the X module directories (next to libcuda first), canonical in-root paths. A base
/// directory that does not exist is resolved once, not once per file and subdirectory.
fn xorg_modules(roots: &Roots, libcuda_dir: Option<&str>, version: &str) -> Vec<FileMount> {
    let mut groups: Vec<(String, &[&str])> = Vec::new();
    if let Some(d) = libcuda_dir {
        groups.push((format!("{d}/nvidia/xorg"), &[""]));
        groups.push((format!("{d}/xorg"), &XORG_SUBDIRS));
    }
    groups.extend(
        XORG_ROOTS
            .iter()
            .map(|r| (r.to_string(), &XORG_SUBDIRS[..])),
    );
    let mut dirs: Vec<(String, Vec<String>)> = Vec::new();
    for (base, subs) in groups {
        let Some(real) = roots.resolve_in_driver_root(&base) else {
            continue;
        };
        for sub in subs {
            let d = if sub.is_empty() {
                real.clone()
            } else {
                match roots.resolve_in_driver_root(&format!("{real}/{sub}")) {
                    Some(d) => d,
                    None => continue,
                }
            };
            let names = list_dir(roots, &d);
            if !names.is_empty() {
                dirs.push((d, names));
            }
        }
    }
    let mut out = Vec::new();
    for file in [
        "nvidia_drv.so".to_string(),
        format!("libglxserver_nvidia.so.{version}"),
    ] {
        let found = dirs
            .iter()
            .filter(|(_, names)| names.binary_search(&file).is_ok())
            .find_map(|(d, _)| roots.resolve_in_driver_root(&format!("{d}/{file}")));
        if let Some(real) = found {
            out.push(FileMount {
                host: real.clone(),
                container: real,
            });
        }
    }
    out
}

/// The version of a `libcuda.so.<version>` file name.
fn libcuda_version(name: &str) -> Option<&str> {
    name.strip_prefix("libcuda.so.")
        .filter(|v| crate::nvidia::procfs::is_version(v) && v.matches('.').count() >= 1)
}

/// Finds the driver's files. `version` is the driver version when known; otherwise it is
/// taken from the `libcuda.so.<version>` file found. `mps_pipe_dir` is the admin's
/// `--mps-pipe-dir` (None: [`DEFAULT_MPS_PIPE_DIR`] under the strict checks).
pub fn discover(
    roots: &Roots,
    version: Option<&str>,
    search: &[PathBuf],
    cache: Option<&LdCache>,
    mps_pipe_dir: Option<&Path>,
) -> Result<DriverFiles, FilesError> {
    let dirs = library_dirs(roots, search, cache);
    let listing: Vec<(String, Vec<String>)> = dirs
        .iter()
        .map(|d| (d.clone(), list_dir(roots, d)))
        .collect();
    let searched = || {
        if dirs.is_empty() {
            "no existing library directory".to_string()
        } else {
            dirs.join(", ")
        }
    };
    let version = match version {
        Some(v) => v.to_string(),
        None => listing
            .iter()
            .flat_map(|(_, names)| names.iter())
            .find_map(|n| libcuda_version(n))
            .map(str::to_string)
            .ok_or_else(|| FilesError::NoVersion {
                root: roots.driver_root.clone(),
                dirs: searched(),
            })?,
    };
    let mut libs: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |path: String, libs: &mut Vec<String>| {
        if let Some(real) = roots.resolve_in_driver_root(&path) {
            let is_file = std::fs::metadata(roots.driver(&real))
                .map(|m| m.is_file())
                .unwrap_or(false);
            if is_file && seen.insert(real.clone()) {
                libs.push(real);
            }
        }
    };
    for (dir, names) in &listing {
        for n in names
            .iter()
            .filter(|n| is_driver_lib(n, &version) || is_graphics_lib(n))
        {
            add(format!("{dir}/{n}"), &mut libs);
        }
        let vdpau = format!("{dir}/vdpau");
        for n in list_dir(roots, &vdpau)
            .iter()
            .filter(|n| is_driver_lib(n, &version))
        {
            add(format!("{vdpau}/{n}"), &mut libs);
        }
    }
    libs.sort();
    if !libs.iter().any(|p| {
        p.rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("libcuda.so."))
    }) {
        return Err(FilesError::NoLibcuda {
            root: roots.driver_root.clone(),
            version,
            dirs: searched(),
        });
    }
    let libcuda_dir = libs
        .iter()
        .find(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("libcuda.so."))
        })
        .and_then(|p| p.rsplit_once('/').map(|(d, _)| d.to_string()));
    let xorg = xorg_modules(roots, libcuda_dir.as_deref(), &version);
    let libraries = with_links(roots, libs, cache);
    let mut sockets = existing(roots, &SOCKETS);
    sockets.extend(mps_dir(roots, mps_pipe_dir));
    Ok(DriverFiles {
        binaries: binaries(roots),
        sockets,
        firmware: firmware(roots, &version),
        configs: existing(roots, &CONFIG_FILES),
        xorg,
        version,
        libraries,
    })
}

/// Names in an in-root directory, sorted; empty when it cannot be listed.
fn list_dir(roots: &Roots, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(roots.driver(dir)) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The part of a library name before `.so`.
fn stem(name: &str) -> &str {
    name.split_once(".so").map(|(s, _)| s).unwrap_or(name)
}

/// Adds SONAME links: a cache entry `libcuda.so.1 => /usr/lib/.../libcuda.so.1` whose
/// path resolves to the library gives the link `libcuda.so.1`; libcuda also gets the
/// development link `libcuda.so` (what nvidia-ctk creates).
fn with_links(roots: &Roots, libs: Vec<String>, cache: Option<&LdCache>) -> Vec<Library> {
    let mut by_stem: HashMap<&str, Vec<usize>> = HashMap::new();
    let names: Vec<String> = libs
        .iter()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .collect();
    for (i, n) in names.iter().enumerate() {
        by_stem.entry(stem(n)).or_default().push(i);
    }
    let mut links: Vec<BTreeSet<String>> = vec![BTreeSet::new(); libs.len()];
    if let Some(cache) = cache {
        for e in &cache.entries {
            let Some(cands) = by_stem.get(stem(&e.soname)) else {
                continue;
            };
            let mut resolved: Option<Option<String>> = None;
            for &i in cands {
                if e.soname == names[i].as_str() {
                    continue;
                }
                let real = resolved.get_or_insert_with(|| roots.resolve_in_driver_root(&e.path));
                if real.as_deref() == Some(libs[i].as_str()) {
                    links[i].insert(e.soname.clone());
                }
            }
        }
    }
    libs.into_iter()
        .zip(links)
        .zip(names.iter().map(|n| stem(n) == "libcuda"))
        .map(|((path, mut l), is_cuda)| {
            if is_cuda && !l.is_empty() {
                l.insert("libcuda.so".to_string());
            }
            Library {
                path,
                links: l.into_iter().collect(),
            }
        })
        .collect()
}

fn binaries(roots: &Roots) -> Vec<FileMount> {
    let mut out = Vec::new();
    for b in BINARIES {
        for d in BIN_DIRS {
            let p = format!("{d}/{b}");
            if let Some(real) = roots.resolve_in_driver_root(&p) {
                out.push(FileMount {
                    host: real,
                    container: p,
                });
                break;
            }
        }
    }
    out
}

fn existing(roots: &Roots, paths: &[&str]) -> Vec<FileMount> {
    paths
        .iter()
        .filter_map(|p| {
            roots.resolve_in_driver_root(p).map(|real| FileMount {
                host: real,
                container: p.to_string(),
            })
        })
        .collect()
}

/// The MPS pipe directory to share, or None (with a warning saying why and what to change).
///
/// The default `/tmp/nvidia-mps` sits in world-writable `/tmp`: any local user can put a
/// symlink there (a bind of any host directory) or their own directory (impersonating the
/// MPS server to every GPU container). It is used only when it is a real directory, owned
/// by root, not group- or world-writable. A directory the admin names with
/// `--mps-pipe-dir` may have another owner (e.g. a dedicated MPS user) when it is outside
/// world-writable directories; it must be a directory and not group- or world-writable.
/// The spec mounts it read-only either way (see `SOCKET_OPTIONS`).
pub fn mps_dir(roots: &Roots, named: Option<&Path>) -> Option<FileMount> {
    let (path, default) = match named {
        Some(p) => (p.to_string_lossy().into_owned(), false),
        None => (DEFAULT_MPS_PIPE_DIR.to_string(), true),
    };
    let skip = |why: String| {
        let hint = if default {
            "; if MPS is used, run its control daemon as root with this directory 0755, or give it CUDA_MPS_PIPE_DIRECTORY=/run/nvidia-mps (a directory owned by root or the MPS user, mode 0755) and pass --mps-pipe-dir /run/nvidia-mps"
        } else {
            "; fix the directory or --mps-pipe-dir"
        };
        tracing::warn!("MPS pipe directory {path} left out of the spec: {why}{hint}");
        None
    };
    let real = match roots.resolve_in_driver_root_checked(&path) {
        Ok(Some(r)) => r,
        Ok(None) if default => return None,
        Ok(None) => return skip("it does not exist in the driver root".to_string()),
        Err(u) => return skip(u.reason),
    };
    let host = roots.driver(&real);
    let md = match std::fs::symlink_metadata(&host) {
        Ok(m) => m,
        Err(e) => return skip(format!("cannot stat {}: {e}", host.display())),
    };
    if !md.is_dir() {
        return skip(format!("{real} is not a directory"));
    }
    if default && md.uid() != 0 {
        return skip(format!(
            "{real} is owned by uid {}, not root: a user's directory there can impersonate the MPS server to every GPU container",
            md.uid()
        ));
    }
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return skip(format!(
            "{real} (mode {mode:o}) is group- or world-writable: other users could put their own sockets into it (chmod go-w)"
        ));
    }
    Some(FileMount {
        host: real,
        container: path,
    })
}

fn firmware(roots: &Roots, version: &str) -> Vec<FileMount> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for d in FIRMWARE_DIRS {
        let dir = format!("{d}/{version}");
        let Some(real_dir) = roots.resolve_in_driver_root(&dir) else {
            continue;
        };
        if !seen.insert(real_dir.clone()) {
            continue;
        }
        for n in list_dir(roots, &real_dir) {
            if n.starts_with("gsp") && n.ends_with(".bin") {
                let p = format!("{real_dir}/{n}");
                out.push(FileMount {
                    host: p.clone(),
                    container: p,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_lib_names() {
        assert!(is_driver_lib("libcuda.so.550.54.14", "550.54.14"));
        assert!(!is_driver_lib("libcuda.so.1", "550.54.14"));
        assert!(!is_driver_lib("libcuda.so.550.54.140", "550.54.14"));
        assert!(!is_driver_lib("xlibcuda.so.550.54.14", "550.54.14"));
        assert_eq!(libcuda_version("libcuda.so.550.54.14"), Some("550.54.14"));
        assert_eq!(libcuda_version("libcuda.so.1"), None);
        assert_eq!(stem("libnvidia-ml.so.1"), "libnvidia-ml");
        assert!(is_graphics_lib("libnvidia-egl-gbm.so.1.1.1"));
        assert!(is_graphics_lib("libnvidia-egl-wayland.so.1.1.13"));
        assert!(!is_graphics_lib("libnvidia-egl-gbm.so.1"));
        assert!(!is_graphics_lib("libnvidia-egl-gbm.so.1.x"));
    }
}
