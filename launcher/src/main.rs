//! hpc-rank: starts ONE MPI rank in a container, as a child in the job step's process
//! tree, under `srun` or `mpiexec`:
//!
//! ```text
//! srun -n 64 --mpi=pmi2 hpc-rank /path/to/rootfs /app/bin/solver args...
//! mpiexec -n 4 hpc-rank /path/to/rootfs /app/bin/solver args...
//! ```
//!
//! See launcher/README.md for the design (namespaces, PMI, cleanup, prolog/epilog).

mod hooksd;
mod run;
mod spec;

use std::process::ExitCode;

use clap::Parser;
use hpc_rank::cli::Cli;

fn main() -> ExitCode {
    let args = Cli::parse();
    let res = if args.cleanup_job.is_some() || args.cleanup_stale {
        run::cleanup(&args).map(|()| 0)
    } else {
        run::launch(&args)
    };
    match res {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("hpc-rank: error: {e:#}");
            ExitCode::from(125)
        }
    }
}
