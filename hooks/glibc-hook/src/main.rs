//! glibc-hook: replaces the container's glibc with the host's when, and only when, the
//! libraries injected into the container need a newer glibc than the image has.

use std::process::ExitCode;

use clap::Parser;
use glibc_hook::cli::{Cli, Cmd};
use hooks_core::context::HookCtx;
use hooks_core::glibc_plan::{glibc_step, GlibcAction, GLIBC_ANNOTATION};

fn run(args: Cli) -> anyhow::Result<()> {
    let Some(ctx) = HookCtx::from_stdin("glibc-hook", GLIBC_ANNOTATION)? else {
        return Ok(());
    };
    let plan = glibc_step(&ctx, &[], GlibcAction::Inject, &args.glibc_libs)?;
    ctx.apply(&plan)?;
    ctx.finish();
    Ok(())
}

fn main() -> ExitCode {
    let args = Cli::parse();
    if let Some(Cmd::CheckHooksJson { files }) = &args.command {
        for f in files {
            if let Err(e) = glibc_hook::hooks_json::check_file(f) {
                eprintln!("glibc-hook check-hooks-json: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    hooks_core::logging::set_args(args.log.clone());
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            hooks_core::logging::report_error("glibc-hook", &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
