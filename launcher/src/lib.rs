//! hpc-rank's library side: the command-line definition ([`cli`], also used by `xtask docs`
//! for the man page and completions), the privilege rules ([`privilege`]), the rank
//! cgroup placement ([`cgroup`]), CDI devices for config.json ([`devices`]) and the
//! stderr log ([`log`]). Launching and cleanup live
//! in the binary (`src/run.rs`).

pub mod cgroup;
pub mod cli;
pub mod devices;
pub mod log;
pub mod privilege;
