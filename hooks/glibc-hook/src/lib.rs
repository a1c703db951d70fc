//! glibc-hook's library side: the command-line definition ([`cli`]), so that tools such as
//! `xtask docs` can build man pages and shell completions from `cli::Cli::command()`.
//! The hook's logic lives in `hooks_core::glibc_plan`; the binary is `src/main.rs`.
//! [`hooks_json`] checks hooks.d files for `hpc-hooks-configure`.

pub mod cli;
pub mod hooks_json;
