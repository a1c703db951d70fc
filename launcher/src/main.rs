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
        ("cdi_spec_dirs", "--cdi-spec-dir"),
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

/// Exit status of every hpc-rank failure (usage errors included), as `docker run` and
/// `podman run` do; anything else is the rank's own status.
const FAILURE: u8 = 125;

/// The error and each of its causes, once: a cause whose text is already in the message
/// (an error that quotes its source) is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if c.is_empty() || out.contains(&c) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&c);
    }
    out
}

/// clap's message in hpc-rank's style (`hpc-rank: error: ...`, usage and hint kept); an
/// invalid value that came from an environment variable names the variable.
fn usage_error_text(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let body = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    let (first, rest) = body.split_once('\n').unwrap_or((body, ""));
    let mut first = first.to_string();
    if let Some(clap::error::ContextValue::String(bad)) =
        e.get(clap::error::ContextKind::InvalidValue)
    {
        let from_env = Cli::command().get_arguments().find_map(|arg| {
            let var = arg.get_env()?;
            (std::env::var_os(var).as_deref() == Some(std::ffi::OsStr::new(bad)))
                .then(|| var.to_string_lossy().into_owned())
        });
        if let Some(var) = from_env {
            first.push_str(&format!(" (set by the environment variable {var})"));
        }
    }
    format!("hpc-rank: error: {first}\n{rest}")
}

/// `--help` and `--version` print and exit 0; every other clap error is a usage error
/// and exits 125.
fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{}", usage_error_text(&e));
            ExitCode::from(FAILURE)
        }
    }
}

fn main() -> ExitCode {
    let m = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return clap_exit(e),
    };
    let args = match Cli::from_arg_matches(&m) {
        Ok(a) => a,
        Err(e) => return clap_exit(e),
    };
    let source = match m.value_source("log_level") {
        Some(ValueSource::EnvVariable) => "HPC_RANK_LOG_LEVEL",
        _ => "--log-level",
    };
    let (level, unknown) = hpc_rank::log::choose(args.log_level.as_deref(), source);
    hpc_rank::log::init(level);
    if let Some(w) = unknown {
        tracing::warn!("{w}");
    }
    let res = admit(&m, &args)
        .map_err(anyhow::Error::from)
        .and_then(|(caller, cfg)| {
            tracing::debug!("caller: {caller:?}");
            if args.cleanup_job.is_some() || args.cleanup_stale {
                run::cleanup(&args, &cfg).map(|()| 0)
            } else {
                run::launch(&args, &caller, &cfg)
            }
        });
    match res {
        Ok(code) => {
            tracing::debug!("exit status {code}");
            ExitCode::from(code)
        }
        Err(e) => {
            // Always printed, whatever the log level: the one line saying why.
            eprintln!("hpc-rank: error: {}", error_text(&e));
            ExitCode::from(FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("config is not valid JSON ({0})")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::other("EOF while parsing");
        let e = anyhow::Error::from(Quoting(io)).context("reading /x");
        assert_eq!(
            error_text(&e),
            "reading /x: config is not valid JSON (EOF while parsing)"
        );
        let e = anyhow::Error::from(std::io::Error::other("denied")).context("open /y");
        assert_eq!(error_text(&e), "open /y: denied");
    }
}
