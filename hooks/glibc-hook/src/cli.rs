//! Command line of `glibc-hook` (clap derive). The option doubles as the environment
//! variable that the hooks.d file sets; the help text is also the source of the man page.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// OCI hook that injects the host glibc into containers annotated com.hooks.glibc.enabled=true
/// when the host libraries mounted into them need it.
///
/// glibc-hook is not run by hand: the container runtime starts it with the container state
/// JSON on standard input. The package registers it through
/// /usr/share/containers/oci/hooks.d/hpc-hooks-glibc.json (stage createRuntime), which runs
/// it only for containers with the annotation com.hooks.glibc.enabled=true (`podman run
/// --annotation com.hooks.glibc.enabled=true IMAGE CMD`, usually together with
/// com.hooks.mpi.enabled=true) and sets its configuration in the hook's env. For any other
/// container it exits 0 and touches nothing. Bare runc and crun do not read hooks.d: put
/// the same hook (path, args, env) into the bundle's config.json.
///
/// It reads the image's glibc version without running anything and computes the newest
/// GLIBC_x.y version that the host libraries mounted into the container need (whoever
/// mounted them: mpi-hook, CDI, config.json mounts). Only when that exceeds the image's
/// glibc does it bind each host glibc file read-only over the image's file of the same
/// soname. A musl image, another architecture, a library needing GLIBC_PRIVATE or a host
/// glibc older than the need make container creation fail.
///
/// As the hook of the CDI device hpc-hooks.io/glibc=host (`cdi-gen mpi` writes its spec,
/// with --cdi and an explicit env) it runs for every container the engine gives the
/// device to, without annotations.
///
/// Configured by /etc/hpc-hooks/hpc-hooks.conf, see hpc-hooks-configure(8): the package
/// writes the hooks.d files from it, so edit the conf file, not the hooks.d files.
#[derive(Parser, Debug)]
#[command(version)]
#[command(after_help = hooks_core::logging::CONFIGURED_BY)]
#[command(after_long_help = hooks_core::logging::ENV_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    #[command(flatten)]
    pub log: hooks_core::logging::LogArgs,
    /// Host glibc files, `:`-separated (default: every glibc library in the host's ld.so.cache).
    #[arg(
        long,
        env = "GLIBC_LIBS",
        default_value = "",
        hide_default_value = true
    )]
    pub glibc_libs: String,
    /// Run as the hook of the CDI device hpc-hooks.io/glibc=host: for every container whose
    /// config lists it (no com.hooks.glibc.enabled annotation needed). Never from the
    /// environment.
    #[arg(long)]
    pub cdi: bool,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Check hooks.d files (version 1.0.0) with a JSON parser; exit 1 naming the first
    /// invalid file and property. Run by hpc-hooks-configure on each file it writes.
    #[command(hide = true)]
    CheckHooksJson {
        /// hooks.d files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}
