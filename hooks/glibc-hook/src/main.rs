//! glibc-hook: replaces the container's glibc with the host's when, and only when, the
//! libraries injected into the container need a newer glibc than the image has.

use std::process::ExitCode;

use clap::Parser;
use hooks_core::context::HookCtx;
use hooks_core::glibc_plan::{glibc_step, GlibcAction, GLIBC_ANNOTATION};

/// OCI hook that injects the host glibc into containers annotated com.hooks.glibc.enabled=true
/// when the host libraries mounted into them need it.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Host glibc files, `:`-separated (default: every glibc library in the host's ld.so.cache).
    #[arg(long, env = "GLIBC_LIBS", default_value = "")]
    glibc_libs: String,
}

fn run(args: Args) -> anyhow::Result<()> {
    let Some(ctx) = HookCtx::from_stdin("glibc-hook", GLIBC_ANNOTATION)? else {
        return Ok(());
    };
    let plan = glibc_step(&ctx, &[], GlibcAction::Inject, &args.glibc_libs)?;
    ctx.apply(&plan)?;
    ctx.finish();
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            hooks_core::logging::report_error("glibc-hook", &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
