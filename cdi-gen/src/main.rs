//! The `cdi-gen` binary: parses arguments, sets up logging, runs one library function and
//! maps its error to an exit code and one clear line (see `gpu_discover::exit`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cdi_gen::cli::{parse_log_level, Cli, Command, DoctorArgs, GenerateArgs};
use clap::Parser;
use gpu_discover::exit;

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let (given, source) = cli.log_level_setting();
    // An unknown level is warned about and `warn` is used, as the hooks and hpc-rank do.
    let level = parse_log_level(&given).unwrap_or_else(|| {
        eprintln!(
            "cdi-gen: warning: {source} {given:?} is not a log level (off, error, warn, info, debug, trace, or 0-4); using warn"
        );
        "warn"
    });
    let filter = tracing_subscriber::EnvFilter::try_new(format!("cdi_gen={level},{level}"))
        .with_context(|| format!("{source} {given:?} is not a log level"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    Ok(())
}

fn run_generate(args: &GenerateArgs) -> i32 {
    for (warn, notice) in args.ignored_flag_notices() {
        if warn {
            tracing::warn!("{notice}");
        } else {
            tracing::info!("{notice}");
        }
    }
    let opts = args.options();
    let mut warnings = Vec::new();
    let result = gpu_discover::generate(&opts, &mut warnings);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    match result {
        Ok(g) => {
            if let Err(e) = gpu_discover::write(&g, opts.output.as_deref()) {
                tracing::error!("{e}");
                return e.exit_code();
            }
            tracing::info!("{}", g.summary);
            exit::OK
        }
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}

/// The spec directories of `--spec-dir` (':'-separated lists split, empty entries
/// skipped), or the engines' defaults.
fn spec_dirs(given: &[PathBuf]) -> Vec<PathBuf> {
    let given: Vec<PathBuf> = given
        .iter()
        .flat_map(std::env::split_paths)
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    if given.is_empty() {
        cdi_specs::registry::DEFAULT_SPEC_DIRS
            .iter()
            .map(PathBuf::from)
            .collect()
    } else {
        given
    }
}

fn run_doctor(a: &DoctorArgs) -> i32 {
    use gpu_discover::doctor::{doctor, DoctorOptions, Podman};
    let podman = match a.podman_version.as_deref() {
        None => Podman::Detect,
        Some("none") => Podman::None,
        Some(v) => Podman::Version(v.to_string()),
    };
    let verdict = doctor(&DoctorOptions {
        dirs: spec_dirs(&a.spec_dirs),
        generate: a.options(),
        podman,
    });
    for l in &verdict.lines {
        println!("{l}");
    }
    verdict.exit_code()
}

fn print(report: &gpu_discover::inspect::Report) -> i32 {
    for l in &report.out {
        println!("{l}");
    }
    for l in &report.err {
        eprintln!("{l}");
    }
    if report.ok {
        exit::OK
    } else {
        exit::INVALID_SPEC
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("cdi-gen: {e:#}");
        return ExitCode::from(exit::USAGE as u8);
    }
    let code = match &cli.command {
        None => run_generate(&cli.generate),
        Some(Command::Generate(a)) => run_generate(a),
        Some(Command::List { spec_dirs }) => {
            // Empty entries of a ':'-separated list ("/a::/b", a trailing ':') are skipped.
            let given: Vec<PathBuf> = spec_dirs
                .iter()
                .flat_map(std::env::split_paths)
                .filter(|d| !d.as_os_str().is_empty())
                .collect();
            for d in given.iter().filter(|d| !d.is_dir()) {
                tracing::warn!(
                    "spec directory {} does not exist or is not a directory",
                    d.display()
                );
            }
            let dirs = if given.is_empty() {
                cdi_specs::registry::DEFAULT_SPEC_DIRS
                    .iter()
                    .map(PathBuf::from)
                    .collect()
            } else {
                given
            };
            print(&gpu_discover::inspect::list(&dirs))
        }
        Some(Command::Doctor(a)) => run_doctor(a),
        Some(Command::Validate { max_version, files }) => {
            print(&gpu_discover::inspect::validate_files(files, *max_version))
        }
        Some(Command::Mpi(a)) => {
            let r = cdi_gen::mpi::run(a);
            match &r {
                Ok(summary) => tracing::info!("{summary}"),
                Err(e) => tracing::error!("{e}"),
            }
            cdi_gen::mpi::exit_code(&r)
        }
        Some(Command::Net(a)) => {
            let r = cdi_gen::net::run(a);
            match &r {
                Ok(summary) => tracing::info!("{summary}"),
                Err(e) => tracing::error!("{e}"),
            }
            cdi_gen::net::exit_code(&r)
        }
        Some(Command::NvmlFacts { nvml_lib }) => {
            match gpu_discover::nvidia::nvml::discover(&nvml_lib.clone().into_os_string()) {
                Ok(facts) => {
                    println!("{}", gpu_discover::nvidia::helper::facts_json(&facts));
                    exit::OK
                }
                Err(e) => {
                    eprintln!("{e}");
                    exit::DISCOVERY
                }
            }
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
