//! Snapshots of host and image file trees (kind, mode, owner, size, mtime, content hash)
//! and their differences, to assert that a hook changed nothing it must not: host loader
//! files, or an overlay upper dir holding anything but allowed leftovers.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::overlay::Overlay;

/// What a file-tree snapshot records of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// `f` file, `d` dir, `l` symlink, `c`/`b` device, `p` fifo, `s` socket.
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub size: u64,
    pub mtime_ns: i128,
    pub rdev: u64,
    pub link: Option<PathBuf>,
    /// FNV-1a of the content, for regular files up to 64 MiB.
    pub hash: Option<u64>,
}

fn fnv1a(path: &Path) -> Option<u64> {
    let mut f = fs::File::open(path).ok()?;
    let mut h: u64 = 0xcbf29ce484222325;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    Some(h)
}

fn entry_info(path: &Path, hash: bool) -> Option<EntryInfo> {
    let m = fs::symlink_metadata(path).ok()?;
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        'l'
    } else if ft.is_dir() {
        'd'
    } else if ft.is_file() {
        'f'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else {
        's'
    };
    Some(EntryInfo {
        kind,
        mode: m.mode(),
        uid: m.uid(),
        size: if kind == 'd' { 0 } else { m.size() },
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        rdev: m.rdev(),
        link: if kind == 'l' {
            fs::read_link(path).ok()
        } else {
            None
        },
        hash: if hash && kind == 'f' && m.size() <= 64 << 20 {
            fnv1a(path)
        } else {
            None
        },
    })
}

/// Recursive snapshot of `root` (not following symlinks, not crossing into other
/// mounts' contents is NOT attempted: take it when nothing is mounted below).
/// Keys are paths relative to `root` ("" is the root itself).
pub fn snapshot_tree(root: &Path, hash: bool) -> BTreeMap<PathBuf, EntryInfo> {
    let mut map = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = root.join(&rel);
        let Some(info) = entry_info(&full, hash) else {
            continue;
        };
        if info.kind == 'd' {
            if let Ok(rd) = fs::read_dir(&full) {
                for e in rd.flatten() {
                    stack.push(rel.join(e.file_name()));
                }
            }
        }
        map.insert(rel, info);
    }
    map
}

/// Human-readable differences between two snapshots (empty when equal).
pub fn diff_snapshots(
    before: &BTreeMap<PathBuf, EntryInfo>,
    after: &BTreeMap<PathBuf, EntryInfo>,
) -> Vec<String> {
    diff_impl(before, after, false)
}

/// Like [`diff_snapshots`], but a directory whose only change is its mtime (an entry
/// was created or removed in it, which is reported on its own) is not reported.
pub fn diff_snapshots_ignoring_dir_mtime(
    before: &BTreeMap<PathBuf, EntryInfo>,
    after: &BTreeMap<PathBuf, EntryInfo>,
) -> Vec<String> {
    diff_impl(before, after, true)
}

fn diff_impl(
    before: &BTreeMap<PathBuf, EntryInfo>,
    after: &BTreeMap<PathBuf, EntryInfo>,
    ignore_dir_mtime: bool,
) -> Vec<String> {
    let mut d = Vec::new();
    for (p, a) in before {
        match after.get(p) {
            None => d.push(format!("removed: /{}", p.display())),
            Some(b) if a != b => {
                let only_mtime = a.kind == 'd'
                    && b.kind == 'd'
                    && EntryInfo {
                        mtime_ns: b.mtime_ns,
                        ..a.clone()
                    } == *b;
                if !(ignore_dir_mtime && only_mtime) {
                    d.push(format!("changed: /{} ({a:?} -> {b:?})", p.display()));
                }
            }
            _ => {}
        }
    }
    for (p, b) in after {
        if !before.contains_key(p) {
            d.push(format!("created: /{} ({b:?})", p.display()));
        }
    }
    d
}

/// Snapshot of host files a misbehaving hook could touch (the host loader cache and
/// library dirs' listings), to assert nothing on the host changed.
pub fn host_sensitive_snapshot() -> BTreeMap<PathBuf, EntryInfo> {
    let mut map = BTreeMap::new();
    for f in ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.preload"] {
        if let Some(i) = entry_info(Path::new(f), true) {
            map.insert(PathBuf::from(f), i);
        }
    }
    for dir in [
        "/etc/ld.so.conf.d",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/local/lib",
    ] {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if let Some(i) = entry_info(&p, false) {
                    map.insert(p, i);
                }
            }
        }
    }
    map
}

/// Upper-dir entries that are NOT allowed leftovers of a hook: anything except
/// directories and empty regular files that do not hide a non-empty lower file
/// (overlay whiteouts, symlinks, non-empty files, opaque dirs...).
pub fn forbidden_upper_entries(ov: &Overlay) -> Vec<String> {
    let snap = snapshot_tree(&ov.upper, false);
    let mut bad = Vec::new();
    for (rel, info) in &snap {
        let shown = format!("/{}", rel.display());
        match info.kind {
            'd' => {
                if is_opaque_dir(&ov.upper.join(rel)) {
                    bad.push(format!(
                        "{shown}: opaque directory (hides the image's content)"
                    ));
                }
            }
            'f' if info.size == 0 => {
                if let Ok(m) = fs::symlink_metadata(ov.lower.join(rel)) {
                    if !m.is_file() || m.size() != 0 {
                        bad.push(format!(
                            "{shown}: empty file replaces a non-empty/non-file image entry"
                        ));
                    }
                }
            }
            'c' if info.rdev == 0 => bad.push(format!("{shown}: whiteout (image entry deleted)")),
            _ => bad.push(format!("{shown}: {info:?}")),
        }
    }
    bad
}

fn is_opaque_dir(p: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(cp) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 8];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            cp.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    n > 0 && buf[0] == b'y'
}
