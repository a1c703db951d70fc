//! Shared runtime of the hpc-hooks OCI hooks (`mpi-hook`, `glibc-hook`, `gpu-hook`).
//!
//! Pipeline: *discover* (state, config.json, ld.so.cache, ELF, glibc) -> *plan* (an
//! [`inject::Plan`]) -> *apply* (mounts through file descriptors inside the rootfs).

// The facts (ELF, ld.so.cache, glibc, ABI, host libraries) live in `hpc_facts`; re-exported
// so `hooks_core::elf` & co. keep working.
pub use hpc_facts::{abi, elf, glibc, hostlib, ldcache, ldcache_write};

pub mod config;
pub mod context;
pub mod devices;
pub mod glibc_plan;
pub mod inject;
pub mod ldcache_update;
pub mod logging;
pub mod mount;
pub mod mountinfo;
pub mod mpi;
pub mod ns;
pub mod rootfs;
pub mod state;
