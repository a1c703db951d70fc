//! Facts of the host and of container images, read without privilege: ELF headers and
//! symbol versions ([`elf`]), glibc's loader cache ([`ldcache`] read, [`ldcache_write`]
//! write), glibc versions ([`glibc`]), MPI ABI rules ([`abi`]), host library lookup
//! ([`hostlib`]), the host MPI stack and its CDI device names ([`hostmpi`]), the host
//! network stack (libfabric, UCX, fabric devices: [`hostnet`]) and log level
//! names ([`log_level`]). The *discover* step of the hooks and
//! of cdi-gen; depends on goblin/memchr-level crates only.

pub mod abi;
pub mod elf;
pub mod glibc;
pub mod hostlib;
pub mod hostmpi;
pub mod hostnet;
pub mod ldcache;
pub mod ldcache_write;
pub mod log_level;
