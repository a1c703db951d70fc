//! Shared runtime of the hpc-hooks OCI hooks (`mpi-hook`, `glibc-hook`, `gpu-hook`).
//!
//! Pipeline: *discover* (state, config.json, the facts of `hpc_facts`: ld.so.cache, ELF,
//! glibc) -> *plan* ([`plan`]: a `cdi_specs::Plan` from an in-root view) -> *apply*
//! ([`engine`]: the one live engine, mounts through file descriptors inside the rootfs).

// The facts (ELF, ld.so.cache, glibc, ABI, host libraries) live in `hpc_facts`; re-exported
// so `hooks_core::elf` & co. keep working.
pub use hpc_facts::{abi, elf, glibc, hostlib, hostmpi, ldcache, ldcache_write};

pub mod config;
pub mod context;
pub mod devices;
pub mod engine;
pub mod ldcache_update;
pub mod logging;
pub mod mount;
pub mod mountinfo;
pub mod ns;
pub mod plan;
pub mod rootfs;
pub mod state;
