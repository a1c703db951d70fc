//! mpi-hook: replaces the image's MPI with the host's ABI-compatible MPI at container
//! creation (OCI hook, state JSON on stdin). Configuration uses Sarus's variable names.

mod pmix;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use hooks_core::context::{enabled, HookCtx};
use hooks_core::engine::{self, bind_dir_fd, RealSys, Target};
use hooks_core::hostmpi::{DEVICE_NAME, GLIBC_DEVICE_ENV};
use hooks_core::plan::glibc::{glibc_step, split_paths, GlibcAction, GLIBC_ANNOTATION};
use hooks_core::plan::loader::Process;
use hooks_core::plan::mpi::{
    mode_from_annotation, plan_mpi_for, MpiConfig, MPI_ANNOTATION, MPI_MODE_ANNOTATION,
};
use hooks_core::plan::View;
use mpi_hook::cli::Cli;

fn run(args: Cli) -> anyhow::Result<()> {
    let activation = (!args.cdi).then_some(MPI_ANNOTATION);
    let Some(ctx) = HookCtx::from_stdin("mpi-hook", activation)? else {
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
        mode: match ctx.config.annotations.get(MPI_MODE_ANNOTATION) {
            Some(v) => mode_from_annotation(Some(v))?,
            None => args.mode,
        },
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
    // The container's program, to find an MPI the image keeps outside its loader cache
    // (in-root lookups only: the image's env and args select among its own files).
    let program = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first().cloned())
        .unwrap_or_default();
    let cwd = spec
        .process()
        .as_ref()
        .map(|p| p.cwd().to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let process = Process {
        program: &program,
        env: &env,
        cwd: &cwd,
    };
    let (mpi_plan, injected) =
        plan_mpi_for(&ctx.rootfs, &cfg, (!program.is_empty()).then_some(&process))?;
    // The glibc annotation, or (CDI) the glibc device's env entry, allows the host glibc.
    let glibc_device = format!("{GLIBC_DEVICE_ENV}={DEVICE_NAME}");
    let action =
        if enabled(&ctx.config, GLIBC_ANNOTATION) || (args.cdi && env.contains(&glibc_device)) {
            GlibcAction::Inject
        } else if args.cdi {
            GlibcAction::RefuseCdi
        } else {
            GlibcAction::Refuse
        };
    let target = Target::for_hook(&ctx)?;
    let view = View {
        rootfs: &ctx.rootfs,
        mounts: &target.mounts,
    };
    // The host glibc (when needed) first, then the MPI: one plan, one engine run.
    let mut plan = glibc_step(view, &injected, action, &args.glibc_libs)?;
    let glibc_files = plan.replace.len();
    plan.append(&mpi_plan);
    let report = engine::apply(&target, &plan, &RealSys)?;
    for l in &report.log {
        tracing::info!("{l}");
    }
    let mut pmix_bound = 0;
    for d in &pmix_dirs {
        tracing::info!(
            "binding the job's PMIx directory {} read-only (nosuid,nodev,noexec)",
            d.path.display()
        );
        if bind_dir_fd(&ctx.rootfs, &RealSys, d.fd.as_fd(), &d.path)? {
            tracing::info!("bound the PMIx directory {} read-only", d.path.display());
            pmix_bound += 1;
        }
    }
    ctx.finish_with(&format!(
        "MPI injected: {} libraries replaced, {} added, {} binds, {} PMIx directories, {} glibc files replaced, {} model",
        mpi_plan.replace.len(),
        mpi_plan.libraries.len(),
        mpi_plan.edits.mounts.len() + mpi_plan.edits.device_nodes.len(),
        pmix_bound,
        glibc_files,
        cfg.mode
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
