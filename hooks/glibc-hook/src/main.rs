//! glibc-hook: replaces the container's glibc with the host's when, and only when, the
//! libraries injected into the container need a newer glibc than the image has.

use std::process::ExitCode;

use glibc_hook::cli::{Cli, Cmd};
use hooks_core::context::HookCtx;
use hooks_core::engine::{self, RealSys, Target};
use hooks_core::plan::glibc::{glibc_step, GlibcAction, GLIBC_ANNOTATION};
use hooks_core::plan::View;

fn run(args: Cli) -> anyhow::Result<()> {
    let activation = (!args.cdi).then_some(GLIBC_ANNOTATION);
    let Some(ctx) = HookCtx::from_stdin("glibc-hook", activation)? else {
        return Ok(());
    };
    let target = Target::for_hook(&ctx)?;
    let view = View {
        rootfs: &ctx.rootfs,
        mounts: &target.mounts,
    };
    let plan = glibc_step(view, &[], GlibcAction::Inject, &args.glibc_libs)?;
    if !plan.is_empty() {
        for l in engine::apply(&target, &plan, &RealSys)?.log {
            tracing::info!("{l}");
        }
    }
    ctx.finish_with(&if plan.is_empty() {
        "glibc: the image's glibc is new enough; nothing replaced".to_string()
    } else {
        format!(
            "glibc injected: {} files replaced, {} added",
            plan.replace.len(),
            plan.libraries.len()
        )
    });
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "check-hooks-json") {
        // A helper of hpc-hooks-configure, not a hook run: no hook logging.
        let args = match <Cli as clap::Parser>::try_parse_from(&argv) {
            Ok(a) => a,
            Err(e) if !e.use_stderr() => {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                let msg = hooks_core::logging::usage_error(
                    &<Cli as clap::CommandFactory>::command(),
                    &e,
                    &argv,
                    &|k| std::env::var_os(k),
                );
                eprintln!("glibc-hook check-hooks-json: error: {msg}");
                return ExitCode::FAILURE;
            }
        };
        return check_hooks_json(&args);
    }
    // Logging first, so that a usage or configuration error reaches the admin's log.
    let _run = hooks_core::logging::start("glibc-hook", &argv);
    let args = match hooks_core::logging::parse_cli::<Cli>("glibc-hook", &argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.command.is_some() {
        return check_hooks_json(&args);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            hooks_core::logging::report_error(
                "glibc-hook",
                &hooks_core::logging::error_chain(e.chain()),
            );
            ExitCode::FAILURE
        }
    }
}

fn check_hooks_json(args: &Cli) -> ExitCode {
    if let Some(Cmd::CheckHooksJson { files }) = &args.command {
        for f in files {
            if let Err(e) = glibc_hook::hooks_json::check_file(f) {
                eprintln!("glibc-hook check-hooks-json: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
