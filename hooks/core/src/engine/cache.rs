//! The loader cache: ONE regeneration per apply, covering the plan's added libraries
//! (bound into the hooks' private tmpfs at [`INJECT_ROOT`]) and the folders of
//! `update-ldcache` hooks, written on that tmpfs and bound over `/etc/ld.so.cache`.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cdi_specs::plan::Library;

use super::mounts::bind_file;
use super::sys::Sys;
use super::EngineError;
use crate::ldcache::{CacheEntry, CacheFormat, LdCache};
use crate::ldcache_write;
use crate::mount::{self, BindFlags};
use crate::rootfs::{stat_handle, Rootfs};

/// Container directory of the private tmpfs holding added libraries and the cache.
pub const INJECT_ROOT: &str = "/run/hpc-hooks";
/// Directory (inside [`INJECT_ROOT`]) with the added libraries; in the container's cache.
pub const INJECT_LIB_DIR: &str = "/run/hpc-hooks/lib";
/// The CUDA forward-compatibility directory: first among update-ldcache folders.
pub const COMPAT_DIR: &str = "/usr/local/cuda/compat";
const MARKER: &str = ".hpc-hooks-tmpfs";
/// Largest container ld.so.cache read.
pub const MAX_CACHE_BYTES: u64 = 64 << 20;

/// Reads the container's current cache (possibly one a previous hook bound there).
pub fn read_container_cache(rootfs: &Rootfs) -> Result<LdCache, EngineError> {
    crate::plan::container_cache(rootfs).map_err(EngineError::BadCache)
}

/// Folders in the order the cache gets them: [`COMPAT_DIR`] first when present, then the
/// others in the order given; each once.
pub fn order_folders(folders: &[String]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let compat = folders
        .iter()
        .any(|f| f.trim_end_matches('/') == COMPAT_DIR);
    if compat {
        out.push(PathBuf::from(COMPAT_DIR));
    }
    for f in folders {
        let p = PathBuf::from(f.trim_end_matches('/'));
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Mounts (or reopens) the private tmpfs at [`INJECT_ROOT`] and makes it writable.
fn inject_root(rootfs: &Rootfs, sys: &dyn Sys) -> Result<pathrs::Handle, EngineError> {
    let root = Path::new(INJECT_ROOT);
    let h = rootfs.mkdir_all(root)?;
    let is_ours = sys.fs_magic(h.as_fd()).ok() == Some(mount::TMPFS_MAGIC)
        && rootfs.try_resolve(&root.join(MARKER))?.is_some();
    if is_ours {
        sys.remount(
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
    sys.mount_tmpfs(h.as_fd(), "64m", INJECT_ROOT)?;
    let h = rootfs.resolve(root)?;
    if sys.fs_magic(h.as_fd()).ok() != Some(mount::TMPFS_MAGIC) {
        return Err(EngineError::InjectRootTaken);
    }
    rootfs.write_new_file(&root.join(MARKER), b"", 0o644)?;
    rootfs.mkdir_all(Path::new(INJECT_LIB_DIR))?;
    Ok(h)
}

/// Counts of one regeneration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub libraries_added: usize,
    pub folder_entries: usize,
    pub entries: usize,
}

/// Regenerates the container's loader cache once: the current cache (required when
/// libraries are added; else a new one when unusable), the shared objects of `folders`
/// (earlier folders win a SONAME), then `libraries` (they win over both). Nothing is
/// done when both lists are empty.
pub fn regenerate(
    rootfs: &Rootfs,
    sys: &dyn Sys,
    libraries: &[Library],
    folders: &[PathBuf],
    log: &mut Vec<String>,
) -> Result<Option<CacheCounts>, EngineError> {
    if libraries.is_empty() && folders.is_empty() {
        return Ok(None);
    }
    let mut cache = match read_container_cache(rootfs) {
        Ok(c) => c,
        Err(e) if libraries.is_empty() => {
            log.push(format!("{e}; starting a new cache"));
            LdCache {
                entries: Vec::new(),
                generator: None,
                hwcap_subdirs: Vec::new(),
                format: CacheFormat::New,
            }
        }
        Err(e) => return Err(e),
    };
    let root_h = inject_root(rootfs, sys)?;
    let mut counts = CacheCounts::default();
    if !folders.is_empty() {
        let entries = crate::ldcache_update::scan_dirs(rootfs, folders)?;
        log.push(format!(
            "update-ldcache: {} libraries in {}",
            entries.len(),
            folders
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        counts.folder_entries = entries.len();
        crate::ldcache_update::merge(&mut cache, entries);
    }
    let mut added: BTreeMap<(String, i32), String> = BTreeMap::new();
    for l in libraries {
        let target = Path::new(INJECT_LIB_DIR).join(&l.soname);
        if bind_file(rootfs, sys, &l.host_path, &target, true)? {
            counts.libraries_added += 1;
            log.push(format!("added {} as {}", l.host_path, target.display()));
        }
        added.insert(
            (l.soname.clone(), l.cache_flags),
            target.to_string_lossy().into_owned(),
        );
    }
    crate::ldcache_update::merge(
        &mut cache,
        added
            .into_iter()
            .map(|((soname, flags), path)| CacheEntry {
                soname,
                path,
                flags,
                osversion: 0,
                hwcap: 0,
            })
            .collect(),
    );
    counts.entries = cache.entries.len();
    log.push(bind_cache(rootfs, sys, &root_h, &cache)?);
    Ok(Some(counts))
}

/// Adds the shared objects of `folders` (container paths, earlier folders win a SONAME)
/// to the container's loader cache: what gpu-hook's `update-ldcache` and
/// `enable-cuda-compat` subcommands do. Returns log lines.
pub fn add_folders(
    rootfs: &Rootfs,
    sys: &dyn Sys,
    folders: &[PathBuf],
) -> Result<Vec<String>, EngineError> {
    let mut log = Vec::new();
    regenerate(rootfs, sys, &[], folders, &mut log)?;
    Ok(log)
}

/// Writes `cache` on the tmpfs (mounted writable at `root_h`), binds it read-only over
/// `/etc/ld.so.cache` (an older cache of ours is unmounted first) and leaves the tmpfs
/// read-only. The image is not written.
fn bind_cache(
    rootfs: &Rootfs,
    sys: &dyn Sys,
    root_h: &pathrs::Handle,
    cache: &LdCache,
) -> Result<String, EngineError> {
    let bytes = ldcache_write::write(cache, "hpc-hooks (container cache with injected libraries)")
        .map_err(|e| EngineError::WriteCache(e.to_string()))?;
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
        if sys.fs_magic(h.as_fd()).ok() == Some(mount::TMPFS_MAGIC)
            && stat_handle(&h).map(|m| m.dev()).ok() == our_dev
        {
            sys.unmount(h.as_fd(), "/etc/ld.so.cache")?;
        }
    }
    let src = rootfs.resolve(&name)?;
    let target = rootfs.ensure_file(etc_cache)?;
    let re = || rootfs.resolve(etc_cache).ok().map(OwnedFd::from);
    sys.bind(
        src.as_fd(),
        target.as_fd(),
        BindFlags::FILE_RO,
        "/etc/ld.so.cache",
        &re,
    )?;
    sys.remount(root_h.as_fd(), BindFlags::FILE_RO, INJECT_ROOT)?;
    Ok(format!(
        "regenerated the loader cache ({} entries) and bound it over /etc/ld.so.cache",
        cache.entries.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_folder_first() {
        let f = |v: &[&str]| order_folders(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            f(&["/usr/lib64", "/usr/local/cuda/compat/", "/usr/lib"]),
            [
                PathBuf::from("/usr/local/cuda/compat"),
                PathBuf::from("/usr/lib64"),
                PathBuf::from("/usr/lib")
            ]
        );
        assert_eq!(
            f(&["/b", "/a", "/b"]),
            [PathBuf::from("/b"), PathBuf::from("/a")]
        );
    }
}
