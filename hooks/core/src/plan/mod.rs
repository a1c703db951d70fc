//! Planning: what a hook wants done to a container, as one [`cdi_specs::Plan`] (CDI
//! container edits plus replace / libraries / device rules). Planners read an in-root
//! [`View`] of the rootfs and the mount table as data, never a live container, so they are
//! unit-tested unprivileged against fixture trees; `crate::engine` applies the result.

pub mod glibc;
pub mod loader;
pub mod mpi;
pub mod nccl;
pub mod net;
pub mod openmpi;

use std::path::Path;

pub use cdi_specs::plan::{Library, Plan, Replace};

use crate::ldcache::{self, LdCache};
use crate::mountinfo::MountEntry;
use crate::rootfs::Rootfs;

/// Largest container ld.so.cache read.
pub const MAX_CACHE_BYTES: u64 = 64 << 20;

/// What planning may look at: the container's root filesystem through an in-root handle
/// (any directory; no namespace needed) and the mount table as seen from the hook.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub rootfs: &'a Rootfs,
    pub mounts: &'a [MountEntry],
}

/// Reads the container's current loader cache (possibly one a previous hook bound there).
/// The error text says why it cannot be used.
pub fn container_cache(rootfs: &Rootfs) -> Result<LdCache, String> {
    let bytes = rootfs
        .read_file(Path::new("/etc/ld.so.cache"), MAX_CACHE_BYTES)
        .map_err(|e| e.to_string())?;
    ldcache::parse(&bytes).map_err(|e| e.to_string())
}

/// A host path as the plan records it.
pub(crate) fn host_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
