//! hpc-rank: starts ONE MPI rank in a container, as a child in the job step's process
//! tree, under `srun` or `mpiexec`:
//!
//! ```text
//! srun -n 64 --mpi=pmi2 hpc-rank /path/to/rootfs /app/bin/solver args...
//! mpiexec -n 4 hpc-rank /path/to/rootfs /app/bin/solver args...
//! ```
//!
//! See launcher/README.md for the design (namespaces, PMI, cleanup, prolog/epilog) and
//! SECURITY.md for the privilege model (src/privilege.rs).

mod hooksd;
mod run;
mod spec;

use std::path::Path;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use hpc_rank::cli::Cli;
use hpc_rank::privilege::{self, Caller, Config, Creds};

/// Options given on the command line or through their environment variable, spelled as
/// in [`privilege::ROOT_ONLY`] and [`privilege::NOT_THROUGH_WRAPPER`].
fn given_options(m: &clap::ArgMatches) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = [
        ("runc", "--runc"),
        ("podman", "--podman"),
        ("hooks_dirs", "--hooks-dir"),
        ("scratch", "--scratch"),
        ("binds", "--bind"),
        ("annotations", "--annotation"),
        ("cleanup_job", "--cleanup-job"),
        ("cleanup_stale", "--cleanup-stale"),
    ]
    .into_iter()
    .filter(|(id, _)| {
        matches!(
            m.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    })
    .map(|(_, o)| o)
    .collect();
    for var in ["HPC_RANK_PODMAN_GLOBAL_OPTS", "HPC_RANK_PODMAN_RUN_OPTS"] {
        if std::env::var_os(var).is_some() {
            v.push(var);
        }
    }
    v
}

/// Applies the privilege rules; returns the caller and the admin config.
fn admit(m: &clap::ArgMatches, args: &Cli) -> Result<(Caller, Config), privilege::PrivilegeError> {
    let cfg = privilege::load_config(Path::new(privilege::CONFIG_PATH))?.unwrap_or_default();
    let caller = privilege::classify(&Creds::current(), &cfg, privilege::parent_exe().as_deref())?;
    privilege::authorize(&caller, &given_options(m), &args.env)?;
    Ok((caller, cfg))
}

fn main() -> ExitCode {
    let m = Cli::command().get_matches();
    let args = Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
    let res = admit(&m, &args)
        .map_err(anyhow::Error::from)
        .and_then(|(caller, cfg)| {
            if args.cleanup_job.is_some() || args.cleanup_stale {
                run::cleanup(&args, &cfg).map(|()| 0)
            } else {
                run::launch(&args, &caller, &cfg)
            }
        });
    match res {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("hpc-rank: error: {e:#}");
            ExitCode::from(125)
        }
    }
}
