//! `cdi-gen`'s command line as a library: the clap definition ([`cli::Cli`]) that the
//! binary parses and that `xtask docs` renders as man pages and completions. Discovery,
//! edits and spec writing live in `gpu_discover`; [`mpi`] writes the host MPI's specs,
//! [`net`] the host network stack's.

pub mod cli;
pub mod mpi;
pub mod net;
