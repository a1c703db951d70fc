//! Developer tasks of the hpc-hooks workspace, run as `cargo run -p xtask -- TASK`.
//! [`docs`] writes the man pages and shell completions of the five binaries from their
//! clap definitions (`<crate>::cli::Cli::command()`), for the Debian package; [`doclint`]
//! checks README.md and docs/ against the tree and those definitions.

pub mod doclint;
pub mod docs;
