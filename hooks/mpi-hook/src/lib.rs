//! mpi-hook's library side: the command-line definition ([`cli`]), so that tools such as
//! `xtask docs` can build man pages and shell completions from `cli::Cli::command()`.
//! The hook's logic lives in `hooks_core`; the binary is `src/main.rs`.

pub mod cli;
