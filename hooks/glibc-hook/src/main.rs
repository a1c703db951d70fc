//! glibc-hook: replaces the container's glibc with the host's when, and only when, the
//! libraries injected into the container need a newer glibc than the image has.

use std::process::ExitCode;

use clap::Parser;
use glibc_hook::cli::Cli;
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
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            hooks_core::logging::report_error("glibc-hook", &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
