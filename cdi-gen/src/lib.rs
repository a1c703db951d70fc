//! `cdi-gen`'s command line as a library: the clap definition ([`cli::Cli`]) that the
//! binary parses and that `xtask docs` renders as man pages and completions. Discovery,
//! edits and spec writing live in `gpu_discover`.

pub mod cli;
