//! Harness of the hpc-hooks end-to-end tests and benchmark.
//!
//! Everything here drives real runtimes (runc, crun, podman) through
//! `std::process::Command`. A missing prerequisite (runtime, rootfs, hook binary)
//! makes the calling test FAIL with a message saying what to install or build:
//! nothing is skipped silently.
//!
//! Rules the harness enforces:
//! - the cached rootfs (`tests/rootfs/build-rootfs.sh`) is never modified: every
//!   container runs on an overlayfs whose lower layer is the cached rootfs and whose
//!   upper/work dirs live in a per-test scratch dir;
//! - every test takes the global e2e lock ([`e2e_lock`]) first, so tests sharing global
//!   state (podman storage, the mount table, the kernel log) never run concurrently,
//!   whatever `--test-threads` says;
//! - containers, overlays and scratch dirs are cleaned up on drop.
//!
//! Modules, by concern: `binaries` (host commands, hook binaries), `rootfs` (the cached
//! test rootfs), `mpi` (the host MPICH), `net` (the host libfabric and UCX), `scratch`
//! (lock, ids, scratch dirs), `process`
//! (running commands), `hooks` (hook objects, hooks.d, hook logs), `overlay`, `bundle`
//! (runc, crun), `podman`, `slurm` (the one-node Slurm), `mounts` and `snapshot`
//! (host-side observation), `rootless` (the unprivileged user of the rootless tests).
//! Everything
//! public is re-exported here, so tests `use e2e_tests::...` without module paths.

mod binaries;
mod bundle;
mod hooks;
mod mounts;
mod mpi;
mod net;
mod overlay;
mod podman;
mod process;
mod rootfs;
mod rootless;
mod scratch;
mod slurm;
mod snapshot;

pub use binaries::*;
pub use bundle::*;
pub use hooks::*;
pub use mounts::*;
pub use mpi::*;
pub use net::*;
pub use overlay::*;
pub use podman::*;
pub use process::*;
pub use rootfs::*;
pub use rootless::*;
pub use scratch::*;
pub use slurm::*;
pub use snapshot::*;
