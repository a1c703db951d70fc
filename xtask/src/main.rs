//! The `xtask` binary: `cargo run -p xtask -- docs --out DIR` writes the man pages and
//! shell completions of every binary under DIR (see `xtask::docs`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Developer tasks of the hpc-hooks workspace.
#[derive(Parser, Debug)]
#[command(name = "xtask", version)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Write man pages (DIR/man/man1, DIR/man/man8, uncompressed) and bash, zsh and fish
    /// completions (DIR/completions/{bash,zsh,fish}) for every binary.
    Docs {
        /// Output directory (created when missing; existing files are overwritten).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Docs { out } => {
            let written = xtask::docs::generate(&out)
                .with_context(|| format!("cannot write the docs under {}", out.display()))?;
            for path in &written {
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}
