//! Symlinks from `create-symlinks` hooks, created in-root: an identical link is kept, a
//! conflicting file or link replaced, a directory refused. A `..` in the link path stops
//! at the container's `/` (lexically, as the kernel resolves `..` at a root), so a link
//! never lands outside the rootfs.

use std::path::{Path, PathBuf};

use pathrs::InodeType;

use super::hooks::Link;
use super::{root_err, EngineError};
use crate::rootfs::{normalize, stat_handle, KnownDirs, Rootfs};

/// Creates `l.link` -> `l.target` in-root. `Ok(false)` when an identical link is there.
/// The parent directory is created unless `known` holds it.
pub fn create_link(rootfs: &Rootfs, l: &Link, known: &mut KnownDirs) -> Result<bool, EngineError> {
    let link_err = |message: &str| EngineError::Link {
        link: l.link.clone(),
        message: message.to_string(),
    };
    let p = normalize(Path::new(&l.link));
    if p == Path::new("/") {
        return Err(link_err("cannot replace /"));
    }
    if let Some(parent) = p.parent() {
        rootfs.ensure_dir(parent, known)?;
    }
    let root = rootfs.root();
    let target = PathBuf::from(&l.target);
    if let Ok(h) = root.resolve_nofollow(&p) {
        let md = stat_handle(&h).map_err(|e| root_err(rootfs, &p, e))?;
        if md.file_type().is_symlink() {
            if root.readlink(&p).ok().as_ref() == Some(&target) {
                return Ok(false);
            }
        } else if md.is_dir() {
            return Err(link_err(
                "a directory is in the way in the container; not replacing it",
            ));
        }
        root.remove_file(&p).map_err(|e| root_err(rootfs, &p, e))?;
    }
    root.create(&p, &InodeType::Symlink(target))
        .map_err(|e| root_err(rootfs, &p, e))?;
    Ok(true)
}

/// Creates every link; returns how many were created and the log line.
pub fn create_links(
    rootfs: &Rootfs,
    links: &[Link],
    known: &mut KnownDirs,
) -> Result<(usize, String), EngineError> {
    let mut n = 0;
    for l in links {
        if create_link(rootfs, l, known)? {
            n += 1;
        }
    }
    Ok((
        n,
        format!(
            "create-symlinks: {n} of {} links created ({} already in place)",
            links.len(),
            links.len() - n
        ),
    ))
}
