//! Scanning container directories for the loader cache, natively (no `ldconfig`, nothing
//! from the image runs): directories are listed and files opened inside the rootfs
//! ([`Rootfs`]); each regular ELF shared object gives a cache entry under its SONAME, which
//! the engine (`crate::engine::cache`) merges into the one cache it regenerates.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::elf;
use crate::ldcache::{CacheEntry, LdCache};
use crate::ldcache_write::cache_flags_for;
use crate::rootfs::{stat_handle, Rootfs};

/// Largest library file parsed while scanning a directory.
pub const MAX_SCAN_ELF_BYTES: u64 = 1 << 30;
/// Most directory entries looked at per directory.
pub const MAX_DIR_ENTRIES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum LdCacheUpdateError {
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error("cannot list container directory {path}: {message}")]
    List { path: PathBuf, message: String },
}

/// True for names ldconfig considers: `lib*.so` and `lib*.so.*`, and `ld-*.so*`.
pub fn is_library_name(name: &str) -> bool {
    (name.starts_with("lib") || name.starts_with("ld-"))
        && (name.ends_with(".so") || name.contains(".so."))
}

/// Lists `dir` (a container path) inside the rootfs: the entry names, sorted.
pub fn list_dir(rootfs: &Rootfs, dir: &Path) -> Result<Vec<String>, LdCacheUpdateError> {
    let h = rootfs.resolve(dir)?;
    let list_err = |message: String| LdCacheUpdateError::List {
        path: dir.to_owned(),
        message,
    };
    let f = h
        .reopen(pathrs::flags::OpenFlags::O_RDONLY | pathrs::flags::OpenFlags::O_DIRECTORY)
        .map_err(|e| list_err(e.to_string()))?;
    // /proc/self/fd/N names the directory already opened in-root; nothing is re-resolved.
    let fd_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f));
    let mut names = Vec::new();
    for e in std::fs::read_dir(&fd_path).map_err(|e| list_err(e.to_string()))? {
        let e = e.map_err(|e| list_err(e.to_string()))?;
        names.push(e.file_name().to_string_lossy().into_owned());
        if names.len() >= MAX_DIR_ENTRIES {
            break;
        }
    }
    names.sort();
    Ok(names)
}

/// Cache entries for the shared objects in `dirs` (container paths), in order: for each
/// SONAME the first directory that has it wins. The entry's path is `dir/SONAME` when that
/// name resolves to the same file (the usual SONAME link), else the file itself.
pub fn scan_dirs(rootfs: &Rootfs, dirs: &[PathBuf]) -> Result<Vec<CacheEntry>, LdCacheUpdateError> {
    let mut out: Vec<CacheEntry> = Vec::new();
    let mut seen = BTreeSet::new();
    for dir in dirs {
        let names = match list_dir(rootfs, dir) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("update-ldcache: skipping {}: {e}", dir.display());
                continue;
            }
        };
        for name in names.iter().filter(|n| is_library_name(n)) {
            let path = dir.join(name);
            let Ok(f) = rootfs.open_read(&path) else {
                continue; // dangling link, directory, special file
            };
            let Ok(facts) = elf::read_file(&f, MAX_SCAN_ELF_BYTES) else {
                continue;
            };
            if !facts.is_shared_object {
                continue;
            }
            let Some(flags) = cache_flags_for(facts.class, facts.machine) else {
                continue;
            };
            let soname = facts.soname.clone().unwrap_or_else(|| name.clone());
            if !seen.insert((soname.clone(), flags)) {
                continue;
            }
            let via_soname = dir.join(&soname);
            let entry_path = if soname != *name && same_file(rootfs, &via_soname, &path) {
                via_soname
            } else {
                path
            };
            out.push(CacheEntry {
                soname,
                path: entry_path.to_string_lossy().into_owned(),
                flags,
                osversion: 0,
                hwcap: 0,
            });
        }
    }
    Ok(out)
}

fn same_file(rootfs: &Rootfs, a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let md = |p: &Path| {
        rootfs
            .resolve(p)
            .ok()
            .and_then(|h| stat_handle(&h).ok())
            .map(|m| (m.dev(), m.ino()))
    };
    matches!((md(a), md(b)), (Some(x), Some(y)) if x == y)
}

/// Merges `entries` into `cache`: existing entries with the same SONAME and flags are
/// replaced (the new ones win), the others kept.
pub fn merge(cache: &mut LdCache, entries: Vec<CacheEntry>) {
    let keys: BTreeSet<(String, i32)> = entries
        .iter()
        .map(|e| (e.soname.clone(), e.flags))
        .collect();
    cache
        .entries
        .retain(|e| !keys.contains(&(e.soname.clone(), e.flags)));
    cache.entries.extend(entries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldcache::CacheFormat;

    #[test]
    fn library_names() {
        assert!(is_library_name("libcuda.so.1"));
        assert!(is_library_name("libcuda.so"));
        assert!(is_library_name("libnvidia-ml.so.550.54.14"));
        assert!(!is_library_name("nvidia-smi"));
        assert!(!is_library_name("libfoo.a"));
    }

    #[test]
    fn merge_replaces_same_name() {
        let e = |s: &str, p: &str| CacheEntry {
            soname: s.into(),
            path: p.into(),
            flags: 0x303,
            osversion: 0,
            hwcap: 0,
        };
        let mut c = LdCache {
            entries: vec![e("libc.so.6", "/lib/libc.so.6"), e("libcuda.so.1", "/old")],
            generator: None,
            hwcap_subdirs: vec![],
            format: CacheFormat::New,
        };
        merge(&mut c, vec![e("libcuda.so.1", "/new")]);
        assert_eq!(c.entries.len(), 2);
        assert!(c.entries.iter().any(|x| x.path == "/new"));
        assert!(!c.entries.iter().any(|x| x.path == "/old"));
    }
}
