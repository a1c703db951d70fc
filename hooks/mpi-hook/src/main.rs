//! mpi-hook: replaces the image's MPI with the host's ABI-compatible MPI at container
//! creation (OCI hook, state JSON on stdin). Configuration uses Sarus's variable names.

mod pmix;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hooks_core::abi::CompatType;
use hooks_core::context::{enabled, HookCtx};
use hooks_core::glibc_plan::{glibc_step, split_paths, GlibcAction, GLIBC_ANNOTATION};
use hooks_core::mpi::{plan_mpi, MpiConfig, MPI_ANNOTATION};

/// OCI hook that injects the host's MPI into containers annotated com.hooks.mpi.enabled=true.
///
/// Register it in hooks.d at createRuntime (or createContainer); the runtime passes the
/// container state on stdin. Every option can also be given through the environment
/// variable named in brackets, which is how hooks.d files configure it.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Host MPI libraries, `:`-separated (full paths).
    #[arg(long, env = "MPI_LIBS", default_value = "")]
    mpi_libs: String,
    /// Host libraries the MPI needs (fabric, hwloc, ...), `:`-separated.
    #[arg(long, env = "MPI_DEPENDENCY_LIBS", default_value = "")]
    mpi_dependency_libs: String,
    /// Host files, directories or device nodes mounted at the same path, `:`-separated.
    #[arg(long, env = "BIND_MOUNTS", default_value = "")]
    bind_mounts: String,
    /// ABI check between host and image MPI: major, full, strict or dependencies.
    #[arg(long, env = "MPI_COMPATIBILITY_TYPE", default_value = "major")]
    mpi_compatibility_type: CompatType,
    /// Host glibc files used when the glibc annotation is present (default: from the host's ld.so.cache).
    #[arg(long, env = "GLIBC_LIBS", default_value = "")]
    glibc_libs: String,
    /// Accepted for Sarus compatibility; the cache is written natively, no ldconfig runs.
    #[arg(long, env = "LDCONFIG_PATH")]
    ldconfig_path: Option<PathBuf>,
}

fn run(args: Args) -> anyhow::Result<()> {
    let Some(ctx) = HookCtx::from_stdin("mpi-hook", MPI_ANNOTATION)? else {
        return Ok(());
    };
    if let Some(p) = &args.ldconfig_path {
        tracing::debug!(
            "LDCONFIG_PATH={} ignored: the loader cache is written natively",
            p.display()
        );
    }
    let mut cfg = MpiConfig {
        mpi_libs: split_paths(&args.mpi_libs),
        dependency_libs: split_paths(&args.mpi_dependency_libs),
        bind_mounts: split_paths(&args.bind_mounts),
        compat: args.mpi_compatibility_type,
    };
    // The job's PMIx directories, when the container's environment names them.
    let spec = &ctx.config.spec;
    let process = spec.process().as_ref();
    let env = process.and_then(|p| p.env().clone()).unwrap_or_default();
    let uid = process.map(|p| p.user().uid()).unwrap_or(0);
    let mounted: Vec<PathBuf> = spec
        .mounts()
        .as_ref()
        .map(|m| m.iter().map(|m| m.destination().clone()).collect())
        .unwrap_or_default();
    for d in pmix::pmix_dirs(&env, uid, &mounted) {
        tracing::info!("binding the job's PMIx directory {}", d.display());
        cfg.bind_mounts.push(d);
    }
    let (plan, injected) = plan_mpi(&ctx, &cfg)?;
    let action = if enabled(&ctx.config, GLIBC_ANNOTATION) {
        GlibcAction::Inject
    } else {
        GlibcAction::Refuse
    };
    let glibc_plan = glibc_step(&ctx, &injected, action, &args.glibc_libs)?;
    ctx.apply(&glibc_plan)?;
    ctx.apply(&plan)?;
    ctx.finish();
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            hooks_core::logging::report_error("mpi-hook", &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
