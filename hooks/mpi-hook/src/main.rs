//! mpi-hook: replaces the image's MPI with the host's ABI-compatible MPI at container
//! creation (OCI hook, state JSON on stdin). Configuration uses Sarus's variable names.

mod pmix;

use std::collections::BTreeSet;
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
use hooks_core::plan::net::{
    needed_by, needs_of, plan_net_and_libs, take_over, NetConfig, NET_ANNOTATION,
};
use hooks_core::plan::{Plan, View};
use mpi_hook::cli::Cli;

/// The network stack's configuration from the command line / hooks.d env.
fn net_config(args: &Cli) -> NetConfig {
    NetConfig {
        libs: split_paths(&args.net_libs),
        dependency_libs: split_paths(&args.net_dependency_libs),
        dirs: split_paths(&args.net_dirs),
        devices: split_paths(&args.net_devices),
    }
}

/// The container's program, environment and working directory from its config.
fn process_parts(ctx: &HookCtx) -> (String, Vec<String>, String) {
    let spec = &ctx.config.spec;
    let env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
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
    (program, env, cwd)
}

/// The glibc annotation, or (CDI) the glibc device's env entry, allows the host glibc.
fn glibc_action(ctx: &HookCtx, cdi: bool, env: &[String]) -> GlibcAction {
    let glibc_device = format!("{GLIBC_DEVICE_ENV}={DEVICE_NAME}");
    if enabled(&ctx.config, GLIBC_ANNOTATION) || (cdi && env.contains(&glibc_device)) {
        GlibcAction::Inject
    } else if cdi {
        GlibcAction::RefuseCdi
    } else {
        GlibcAction::Refuse
    }
}

/// `N libraries replaced, M added, K binds, D device nodes` of a network plan.
fn net_counts(plan: &Plan) -> String {
    format!(
        "{} libraries replaced, {} added, {} binds, {} device nodes",
        plan.replace.len(),
        plan.libraries.len(),
        plan.edits.mounts.len(),
        plan.edits.device_nodes.len()
    )
}

/// `--net-only`: the host's network stack alone (hooks.d file hpc-hooks-net.json, CDI
/// device hpc-hooks.io/net=host).
fn run_net(args: Cli) -> anyhow::Result<()> {
    let activation = (!args.cdi).then_some(NET_ANNOTATION);
    let Some(ctx) = HookCtx::from_stdin("mpi-hook", activation)? else {
        return Ok(());
    };
    if !args.cdi && enabled(&ctx.config, MPI_ANNOTATION) {
        tracing::info!(
            "{MPI_ANNOTATION}=true is also set: the MPI hook applies the network stack with the MPI; nothing to do here"
        );
        return Ok(());
    }
    let cfg = net_config(&args);
    if cfg.libs.is_empty() && cfg.devices.is_empty() {
        let how = if args.cdi {
            "or remove the device hpc-hooks.io/net=host from the container (regenerate its CDI spec with `cdi-gen net` once configured)"
        } else {
            "or start the container without the annotation com.hooks.net.enabled=true"
        };
        anyhow::bail!(
            "the container asks for the host's network stack, but none is configured: NET_LIBS and NET_DEVICES are empty (hpc-hooks.conf has NET_STACK=none, or nothing was detected on this node). Have the admin set NET_STACK=auto in /etc/hpc-hooks/hpc-hooks.conf and run hpc-hooks-configure, {how}"
        );
    }
    let (program, env, cwd) = process_parts(&ctx);
    let process = Process {
        program: &program,
        env: &env,
        cwd: &cwd,
    };
    let (net_plan, injected) = plan_net_and_libs(
        &ctx.rootfs,
        &cfg,
        (!program.is_empty()).then_some(&process),
        &BTreeSet::new(),
    )?;
    let action = glibc_action(&ctx, args.cdi, &env);
    let target = Target::for_hook(&ctx)?;
    let view = View {
        rootfs: &ctx.rootfs,
        mounts: &target.mounts,
    };
    let mut plan = glibc_step(view, &injected, action, &args.glibc_libs)?;
    let glibc_files = plan.replace.len();
    plan.append(&net_plan);
    let report = engine::apply(&target, &plan, &RealSys)?;
    for l in &report.log {
        tracing::info!("{l}");
    }
    ctx.finish_with(&format!(
        "network stack injected: {}, {} glibc files replaced",
        net_counts(&net_plan),
        glibc_files
    ));
    Ok(())
}

fn run(args: Cli) -> anyhow::Result<()> {
    if args.net_only {
        return run_net(args);
    }
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
    let (program, env, cwd) = process_parts(&ctx);
    let mounted: Vec<PathBuf> = spec
        .mounts()
        .as_ref()
        .map(|m| m.iter().map(|m| m.destination().clone()).collect())
        .unwrap_or_default();
    let pmix_dirs = pmix::pmix_dirs(&env, pmix::hook_uid(), &mounted);
    // The container's program, to find an MPI the image keeps outside its loader cache
    // (in-root lookups only: the image's env and args select among its own files).
    let process = Process {
        program: &program,
        env: &env,
        cwd: &cwd,
    };
    let process = (!program.is_empty()).then_some(&process);
    let (mut mpi_plan, mut injected) = plan_mpi_for(&ctx.rootfs, &cfg, process)?;
    // The network stack: asked for by the annotation, or needed by the injected MPI (its
    // libraries, Open MPI's component libraries included, need a NET_LIBS library). The
    // network libraries are the net plan's: the MPI plan's entries of the same host files
    // are dropped.
    let net_cfg = net_config(&args);
    let mpi_needs = needs_of(&injected);
    let asked = !args.cdi && enabled(&ctx.config, NET_ANNOTATION);
    let mut net_summary = "not applied".to_string();
    let mut net_plan = Plan::default();
    if asked || needed_by(&net_cfg, &mpi_needs)? {
        if net_cfg.is_empty() {
            tracing::info!(
                "network stack not injected: none is configured (NET_STACK=none in hpc-hooks.conf, or nothing detected)"
            );
        } else {
            let (plan, net_libs) = plan_net_and_libs(&ctx.rootfs, &net_cfg, process, &mpi_needs)?;
            take_over(&mut mpi_plan, &plan);
            net_summary = net_counts(&plan);
            injected.extend(net_libs);
            net_plan = plan;
        }
    }
    let action = glibc_action(&ctx, args.cdi, &env);
    let target = Target::for_hook(&ctx)?;
    let view = View {
        rootfs: &ctx.rootfs,
        mounts: &target.mounts,
    };
    // The host glibc (when needed) first, then the MPI and the network stack: one plan,
    // one engine run.
    let mut plan = glibc_step(view, &injected, action, &args.glibc_libs)?;
    let glibc_files = plan.replace.len();
    plan.append(&mpi_plan);
    plan.append(&net_plan);
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
        "MPI injected: {} libraries replaced, {} added, {} binds, {} PMIx directories, {} glibc files replaced, {} model, network stack: {}",
        mpi_plan.replace.len(),
        mpi_plan.libraries.len(),
        mpi_plan.edits.mounts.len() + mpi_plan.edits.device_nodes.len(),
        pmix_bound,
        glibc_files,
        cfg.mode,
        net_summary
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
