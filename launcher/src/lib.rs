//! hpc-rank's library side: the command-line definition ([`cli`]), so that tools such as
//! `xtask docs` can build the man page and shell completions from `cli::Cli::command()`.
//! Launching and cleanup live in the binary (`src/main.rs`, `src/run.rs`).

pub mod cli;
