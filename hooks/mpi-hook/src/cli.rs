//! Command line of `mpi-hook` (clap derive). Every option doubles as the environment
//! variable that hooks.d files set; the help text is also the source of the man page.

use std::path::PathBuf;

use clap::Parser;
use hooks_core::abi::CompatType;
use hooks_core::plan::mpi::MpiMode;

fn parse_mode(s: &str) -> Result<MpiMode, String> {
    s.parse()
        .map_err(|e: hooks_core::plan::mpi::MpiError| e.to_string())
}

/// OCI hook that injects the host's MPI into containers annotated com.hooks.mpi.enabled=true.
///
/// Register it in hooks.d at createRuntime (or createContainer); the runtime passes the
/// container state on stdin. Every option can also be given through the environment
/// variable named in brackets, which is how hooks.d files configure it.
///
/// mpi-hook is not run by hand: the container runtime starts it with the container state
/// JSON on standard input. The package registers it through
/// /usr/share/containers/oci/hooks.d/hpc-hooks-mpi.json (stage createRuntime), which runs
/// it only for containers with the annotation com.hooks.mpi.enabled=true (`podman run
/// --annotation com.hooks.mpi.enabled=true IMAGE CMD`) and sets its configuration in the
/// hook's env. For any other container it exits 0 and touches nothing. Bare runc and crun
/// do not read hooks.d: put the same hook (path, args, env) into the bundle's config.json.
///
/// Each image MPI library is replaced by a read-only bind mount of the host library with
/// the same linker name when the ABI check (MPI_COMPATIBILITY_TYPE) allows it; host
/// libraries without a counterpart go to a private tmpfs and into a regenerated loader
/// cache bound over the container's /etc/ld.so.cache. The job's PMIx directories named in
/// the container's environment are bound read-only (nosuid,nodev,noexec) when they are
/// real directories named pmix*, reached without symlinks, owned by root (or the hook's
/// own uid) and not group/world-writable; they never grant devices. When the injected libraries need a newer
/// glibc than the image has, the host glibc is injected if the container is also annotated
/// com.hooks.glibc.enabled=true; otherwise container creation fails with a message naming
/// both versions. Nothing from the image is executed.
///
/// With the annotation com.hooks.mpi.mode=bind (Apptainer's bind model) an image without
/// an MPI gets the host MPI libraries and their dependencies in the private library
/// directory and the regenerated loader cache (the application must be built against the
/// host MPI's ABI); an image with an MPI is handled as above (hybrid model).
///
/// As the hook of the CDI device hpc-hooks.io/mpi=host (`cdi-gen mpi` writes its spec,
/// with --cdi and an explicit env), it runs for every container the engine gives the
/// device to, without annotations, and the host glibc is injected only when the
/// container also has the device hpc-hooks.io/glibc=host.
///
/// Configured by /etc/hpc-hooks/hpc-hooks.conf, see hpc-hooks-configure(8): the package
/// writes the hooks.d files from it, so edit the conf file, not the hooks.d files.
#[derive(Parser, Debug)]
#[command(version)]
#[command(after_help = hooks_core::logging::CONFIGURED_BY)]
#[command(after_long_help = hooks_core::logging::ENV_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub log: hooks_core::logging::LogArgs,
    /// Required: the host MPI libraries, `:`-separated (full paths). A container annotated
    /// com.hooks.mpi.enabled=true fails to start while it is empty.
    #[arg(long, env = "MPI_LIBS", default_value = "", hide_default_value = true)]
    pub mpi_libs: String,
    /// Host libraries the MPI needs (fabric, hwloc, ...), `:`-separated (default: none).
    #[arg(
        long,
        env = "MPI_DEPENDENCY_LIBS",
        default_value = "",
        hide_default_value = true
    )]
    pub mpi_dependency_libs: String,
    /// Host files, directories or device nodes mounted at the same path, `:`-separated;
    /// device nodes in a listed directory (not symlinks to them) are allowed too (default:
    /// none).
    #[arg(
        long,
        env = "BIND_MOUNTS",
        default_value = "",
        hide_default_value = true
    )]
    pub bind_mounts: String,
    /// ABI check between host and image MPI: major, full, strict or dependencies.
    #[arg(long, env = "MPI_COMPATIBILITY_TYPE", default_value = "major")]
    pub mpi_compatibility_type: CompatType,
    /// Host glibc files used when the glibc annotation is present (default: from the host's ld.so.cache).
    #[arg(
        long,
        env = "GLIBC_LIBS",
        default_value = "",
        hide_default_value = true
    )]
    pub glibc_libs: String,
    /// MPI model when the container has no com.hooks.mpi.mode annotation: hybrid (the
    /// image's MPI is replaced; an image without one is refused) or bind (an image without
    /// MPI gets the host MPI in the private library directory). Never from the environment.
    #[arg(long, value_parser = parse_mode, default_value = "hybrid")]
    pub mode: MpiMode,
    /// Run as the hook of the CDI device hpc-hooks.io/mpi=host: for every container whose
    /// config lists it (no com.hooks.mpi.enabled annotation needed); the host glibc is
    /// injected when the container has the device hpc-hooks.io/glibc=host, else a too old
    /// image glibc is refused naming that device. Never from the environment.
    #[arg(long)]
    pub cdi: bool,
    /// Accepted for Sarus compatibility; the cache is written natively, no ldconfig runs.
    #[arg(long, env = "LDCONFIG_PATH")]
    pub ldconfig_path: Option<PathBuf>,
}
