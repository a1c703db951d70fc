//! mpi-hook: replaces the image's MPI with the host's ABI-compatible MPI at container
//! creation (OCI hook, state JSON on stdin). Configuration uses Sarus's variable names.

mod pmix;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use hooks_core::context::{enabled, HookCtx};
use hooks_core::glibc_plan::{glibc_step, split_paths, GlibcAction, GLIBC_ANNOTATION};
use hooks_core::inject::bind_dir_fd;
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
    let cfg = MpiConfig {
        mpi_libs: split_paths(&args.mpi_libs),
        dependency_libs: split_paths(&args.mpi_dependency_libs),
        bind_mounts: split_paths(&args.bind_mounts),
        compat: args.mpi_compatibility_type,
    };
    // The job's PMIx directories, when the container's environment names them: opened
    // once without following symlinks, checked on the descriptor, bound from it read-only
    // (never in BIND_MOUNTS' list: no device scan, no read-write bind).
    let spec = &ctx.config.spec;
    let env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    let mounted: Vec<PathBuf> = spec
        .mounts()
        .as_ref()
        .map(|m| m.iter().map(|m| m.destination().clone()).collect())
        .unwrap_or_default();
    let pmix_dirs = pmix::pmix_dirs(&env, pmix::hook_uid(), &mounted);
    let (plan, injected) = plan_mpi(&ctx, &cfg)?;
    let action = if enabled(&ctx.config, GLIBC_ANNOTATION) {
        GlibcAction::Inject
    } else {
        GlibcAction::Refuse
    };
    let glibc_plan = glibc_step(&ctx, &injected, action, &args.glibc_libs)?;
    ctx.apply(&glibc_plan)?;
    ctx.apply(&plan)?;
    let mut pmix_bound = 0;
    for d in &pmix_dirs {
        tracing::info!(
            "binding the job's PMIx directory {} read-only (nosuid,nodev,noexec)",
            d.path.display()
        );
        if bind_dir_fd(&ctx.rootfs, d.fd.as_fd(), &d.path)? {
            tracing::info!("bound the PMIx directory {} read-only", d.path.display());
            pmix_bound += 1;
        }
    }
    ctx.finish_with(&format!(
        "MPI injected: {} libraries replaced, {} added, {} binds, {} PMIx directories, {} glibc files replaced",
        plan.replace.len(),
        plan.add.len(),
        plan.binds.len(),
        pmix_bound,
        glibc_plan.replace.len() + glibc_plan.add.len()
    ));
    Ok(())
}

fn main() -> ExitCode {
    // Logging first, so that a usage or configuration error reaches the admin's log.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let _run = hooks_core::logging::start("mpi-hook", &argv);
    let args = match hooks_core::logging::parse_cli::<Cli>("mpi-hook", &argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            hooks_core::logging::report_error(
                "mpi-hook",
                &hooks_core::logging::error_chain(e.chain()),
            );
            ExitCode::FAILURE
        }
    }
}
