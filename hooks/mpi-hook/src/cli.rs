//! Command line of `mpi-hook` (clap derive). Every option doubles as the environment
//! variable that hooks.d files set; the help text is also the source of the man page.

use std::path::PathBuf;

use clap::Parser;
use hooks_core::abi::CompatType;
use hooks_core::plan::mpi::MpiMode;

/// What `--nccl-plugin-mismatch` asks for when no NCCL/RCCL net plugin variant matches the
/// image's runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NcclMismatch {
    /// Start the container without a plugin, with a warning.
    #[default]
    Warn,
    /// Refuse the container.
    Refuse,
}

impl std::str::FromStr for NcclMismatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "warn" => Ok(NcclMismatch::Warn),
            "refuse" => Ok(NcclMismatch::Refuse),
            other => Err(format!(
                "unknown NCCL_PLUGIN_MISMATCH '{other}'; use warn (start without a plugin, the default) or refuse"
            )),
        }
    }
}

impl std::fmt::Display for NcclMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NcclMismatch::Warn => "warn",
            NcclMismatch::Refuse => "refuse",
        })
    }
}

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
    /// Host network libraries (libfabric, UCX's libucp/libuct/libucs/libucm), `:`-separated:
    /// they replace the image's of the same SONAME major (symbol versions checked), for
    /// containers annotated com.hooks.net.enabled=true and whenever the injected MPI needs
    /// one (default: none; hpc-hooks-configure detects them with NET_STACK=auto).
    #[arg(long, env = "NET_LIBS", default_value = "", hide_default_value = true)]
    pub net_libs: String,
    /// Host libraries the network libraries need (libibverbs, librdmacm, libefa, libnl...),
    /// `:`-separated, injected with them (default: none).
    #[arg(
        long,
        env = "NET_DEPENDENCY_LIBS",
        default_value = "",
        hide_default_value = true
    )]
    pub net_dependency_libs: String,
    /// Host provider and module directories (libfabric's, UCX's, libibverbs'), `:`-separated,
    /// bound read-only at their host path and beside a relocated image library (default: none).
    #[arg(long, env = "NET_DIRS", default_value = "", hide_default_value = true)]
    pub net_dirs: String,
    /// Fabric device nodes or directories of them (/dev/infiniband, /dev/cxi0),
    /// `:`-separated, injected with the network stack (default: none).
    #[arg(
        long,
        env = "NET_DEVICES",
        default_value = "",
        hide_default_value = true
    )]
    pub net_devices: String,
    /// Directory of NCCL/RCCL network plugin variants (libnccl-net*.so); the one matching the
    /// image's CUDA/HIP runtime is made visible (default: none).
    #[arg(
        long,
        env = "NCCL_PLUGIN_DIR",
        default_value = "",
        hide_default_value = true
    )]
    pub nccl_plugin_dir: String,
    /// When no NCCL plugin variant matches the image's runtime: warn (start without a
    /// plugin) or refuse.
    #[arg(long, env = "NCCL_PLUGIN_MISMATCH", default_value = "warn")]
    pub nccl_plugin_mismatch: NcclMismatch,
    /// Run as the network hook (hooks.d file hpc-hooks-net.json, CDI device
    /// hpc-hooks.io/net=host): inject only the host's network stack, for containers
    /// annotated com.hooks.net.enabled=true (with --cdi: every container); a container also
    /// annotated com.hooks.mpi.enabled=true gets it from the MPI hook instead. Never from
    /// the environment.
    #[arg(long)]
    pub net_only: bool,
    /// Accepted for Sarus compatibility; the cache is written natively, no ldconfig runs.
    #[arg(long, env = "LDCONFIG_PATH")]
    pub ldconfig_path: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn network_options_parse_and_name_their_variables() {
        let c = Cli::try_parse_from([
            "mpi-hook",
            "--net-libs",
            "/usr/lib/libfabric.so.1:/usr/lib/libucp.so.0",
            "--net-dependency-libs",
            "/usr/lib/libibverbs.so.1",
            "--net-dirs",
            "/usr/lib/ucx",
            "--net-devices",
            "/dev/infiniband:/dev/cxi0",
            "--nccl-plugin-dir",
            "/opt/nccl-plugins",
            "--nccl-plugin-mismatch",
            "Refuse",
            "--net-only",
        ])
        .unwrap();
        assert_eq!(c.net_libs, "/usr/lib/libfabric.so.1:/usr/lib/libucp.so.0");
        assert_eq!(c.net_dependency_libs, "/usr/lib/libibverbs.so.1");
        assert_eq!(c.net_dirs, "/usr/lib/ucx");
        assert_eq!(c.net_devices, "/dev/infiniband:/dev/cxi0");
        assert_eq!(c.nccl_plugin_dir, "/opt/nccl-plugins");
        assert_eq!(c.nccl_plugin_mismatch, NcclMismatch::Refuse);
        assert!(c.net_only);
        let cmd = Cli::command();
        let env = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap_or_else(|| panic!("no option {id}"))
                .get_env()
                .map(|e| e.to_string_lossy().into_owned())
        };
        for (id, var) in [
            ("net_libs", "NET_LIBS"),
            ("net_dependency_libs", "NET_DEPENDENCY_LIBS"),
            ("net_dirs", "NET_DIRS"),
            ("net_devices", "NET_DEVICES"),
            ("nccl_plugin_dir", "NCCL_PLUGIN_DIR"),
            ("nccl_plugin_mismatch", "NCCL_PLUGIN_MISMATCH"),
        ] {
            assert_eq!(env(id).as_deref(), Some(var), "{id}");
        }
        assert_eq!(
            env("net_only"),
            None,
            "--net-only is never taken from the environment"
        );
    }

    #[test]
    fn nccl_plugin_mismatch_defaults_to_warn_and_rejects_other_words() {
        let c = Cli::try_parse_from(["mpi-hook", "--nccl-plugin-mismatch", "warn"]).unwrap();
        assert_eq!(c.nccl_plugin_mismatch, NcclMismatch::Warn);
        assert!(!c.net_only);
        let e = Cli::try_parse_from(["mpi-hook", "--nccl-plugin-mismatch", "ignore"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown NCCL_PLUGIN_MISMATCH 'ignore'; use warn (start without a plugin, the default) or refuse"),
            "{e}"
        );
        assert_eq!("warn".parse::<NcclMismatch>().unwrap().to_string(), "warn");
        assert_eq!(NcclMismatch::default(), NcclMismatch::Warn);
    }
}
