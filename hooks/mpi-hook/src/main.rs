//! mpi-hook: replaces the image's MPI with the host's ABI-compatible MPI at container
//! creation (OCI hook, state JSON on stdin). Configuration uses Sarus's variable names.

mod pmix;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hooks_core::context::{enabled, HookCtx};
use hooks_core::glibc_plan::{glibc_step, split_paths, GlibcAction, GLIBC_ANNOTATION};
use hooks_core::mpi::{plan_mpi, MpiConfig, MPI_ANNOTATION};
use mpi_hook::cli::Cli;

fn run(args: Cli) -> anyhow::Result<()> {
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
    let args = Cli::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            hooks_core::logging::report_error("mpi-hook", &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
