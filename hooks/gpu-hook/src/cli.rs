//! Command line of `gpu-hook` (clap derive): the injecting hook's options and the
//! subcommands CDI specs call. The help text is also the source of the man pages and the
//! shell completions (`xtask docs`).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::policy::{CdiAnnotations, EnvRequests};
use crate::resolve::Source;

/// OCI hook that gives containers the GPUs they request (createRuntime or createContainer;
/// the runtime passes the container state on stdin). Options can also be set through the
/// environment variables in brackets, which is how hooks.d files configure it; the request
/// policy (--env-requests, --cdi-annotations, --allow-kinds) is read from the command line
/// only, never from the environment, because runc gives a hook whose entry has no "env" the
/// container's own environment.
///
/// gpu-hook is not run by hand: the container runtime starts it with the container state
/// JSON on standard input. The package registers it through
/// /usr/share/containers/oci/hooks.d/hpc-hooks-gpu.json (stage createRuntime) for every
/// container ("when": {"always": true}), because the request lives in the container's
/// environment, which hooks.d cannot match. It acts only on containers that ask for GPUs
/// in a way the admin's policy allows: NVIDIA_VISIBLE_DEVICES or ROCR_VISIBLE_DEVICES in
/// process.env (by default only from privileged containers, --env-requests), CDI device
/// names in cdi.k8s.io/* annotations (off by default, --cdi-annotations), and only for the
/// CDI kinds in --allow-kinds. A request the policy does not allow is left out with a
/// warning naming the setting to change, and the container starts without those GPUs.
/// CUDA_VISIBLE_DEVICES is never a request: it numbers the GPUs a job already has (Slurm
/// sets it relative to the job's GPUs), not the host's. For any other container it exits 0
/// and touches nothing. NVIDIA_DRIVER_CAPABILITIES selects the driver files,
/// NVIDIA_REQUIRE_CUDA is checked before anything is mounted (NVIDIA_DISABLE_REQUIRE skips
/// the check). These are read from config.json as data, never as the hook's own
/// environment. Bare runc and crun do not read hooks.d: put the same hook (path, args,
/// env) into the bundle's config.json.
///
/// The request is resolved to CDI container edits from spec files or live discovery, then
/// applied to the live container: device nodes and their device cgroup rules, read-only
/// bind mounts of libraries, binaries and firmware, symlinks and the container's loader
/// cache. When the injected libraries need a newer glibc than the image has, the host glibc
/// is injected if the container is annotated com.hooks.glibc.enabled=true; otherwise
/// container creation fails. The subcommands are the createContainer hooks that CDI specs
/// written by cdi-gen reference; they take only their own options and the log options.
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
    #[command(subcommand)]
    pub command: Option<Cmd>,
    /// Root of the driver installation (libraries, binaries, firmware).
    #[arg(long, env = "GPU_HOOK_DRIVER_ROOT", default_value = "/")]
    pub driver_root: PathBuf,
    /// Root under which /dev is looked up (default: the driver root).
    #[arg(long, env = "GPU_HOOK_DEV_ROOT")]
    pub dev_root: Option<PathBuf>,
    /// sysfs root (tests only).
    #[arg(long, env = "GPU_HOOK_SYSFS_ROOT", default_value = "/sys", hide = true)]
    pub sysfs_root: PathBuf,
    /// procfs root (tests only).
    #[arg(
        long,
        env = "GPU_HOOK_PROCFS_ROOT",
        default_value = "/proc",
        hide = true
    )]
    pub procfs_root: PathBuf,
    /// CDI spec directories, `:`-separated, lowest priority first.
    #[arg(
        long,
        env = "GPU_HOOK_SPEC_DIRS",
        default_value = "/etc/cdi:/var/run/cdi"
    )]
    pub spec_dirs: String,
    /// Where device edits come from: spec files, live discovery, or auto (specs for the
    /// kinds they define, discovery for the others).
    #[arg(long, env = "GPU_HOOK_SOURCE", value_enum, default_value = "auto")]
    pub source: Source,
    /// How NVIDIA facts are discovered: auto (NVML, else procfs/sysfs), nvml, procfs.
    #[arg(long, env = "GPU_HOOK_DISCOVERY", value_enum, default_value = "auto")]
    pub discovery: Discovery,
    /// Path of libnvidia-ml.so.1 (default: from the driver root).
    #[arg(long, env = "GPU_HOOK_NVML_LIB")]
    pub nvml_lib: Option<PathBuf>,
    /// cdi-gen binary (absolute path) that queries NVML for the hook, in a child process
    /// with a clean environment: the hook itself never loads driver libraries.
    #[arg(
        long = "cdi-gen",
        env = "GPU_HOOK_CDI_GEN",
        default_value = "/usr/bin/cdi-gen"
    )]
    pub cdi_gen: PathBuf,
    /// Host glibc files for the glibc step, `:`-separated (default: from the host's ld.so.cache).
    #[arg(
        long,
        env = "GLIBC_LIBS",
        default_value = "",
        hide_default_value = true
    )]
    pub glibc_libs: String,
    /// Which containers may request GPUs through NVIDIA_VISIBLE_DEVICES or
    /// ROCR_VISIBLE_DEVICES in their environment: never; privileged (their bounding
    /// capability set holds CAP_SYS_ADMIN, as nvidia-container-toolkit decides); always
    /// (any container, including every image with NVIDIA_VISIBLE_DEVICES=all in its ENV,
    /// as CUDA base images have). Command line only, never from the environment.
    #[arg(long, value_enum, default_value = "privileged")]
    pub env_requests: EnvRequests,
    /// Whether the hook applies CDI device names from cdi.k8s.io/* annotations: off (a
    /// CDI-aware engine applies them itself, and may have refused them) or on. Command
    /// line only, never from the environment.
    #[arg(long, value_enum, default_value = "off")]
    pub cdi_annotations: CdiAnnotations,
    /// CDI kinds (vendor.com/class) any request may name, comma-separated or repeated; a
    /// device of another kind is left out with a warning. Command line only, never from
    /// the environment.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "nvidia.com/gpu,amd.com/gpu",
        value_parser = crate::policy::parse_kind_arg
    )]
    pub allow_kinds: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Discovery {
    Auto,
    Nvml,
    Procfs,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create symlinks inside the container rootfs (CDI createContainer hook).
    ///
    /// Run by the container engine from a CDI spec, with the container state JSON on
    /// standard input. Links are created inside the rootfs only: an identical link is
    /// kept, a conflicting file or link is replaced, a directory is refused.
    CreateSymlinks {
        /// `TARGET::LINK`: LINK (absolute container path) will point at TARGET.
        #[arg(long = "link")]
        links: Vec<String>,
    },
    /// Add the libraries of container directories to the container's ld.so.cache,
    /// natively (CDI createContainer hook).
    ///
    /// Run by the container engine from a CDI spec, with the container state JSON on
    /// standard input. The cache is written natively (no ldconfig from the image runs) and
    /// bound over the container's /etc/ld.so.cache.
    UpdateLdcache {
        /// Container directory whose libraries go into the cache (repeatable).
        #[arg(long = "folder")]
        folders: Vec<PathBuf>,
        /// Accepted for compatibility; the cache is written natively, nothing runs.
        #[arg(long)]
        ldconfig_path: Option<PathBuf>,
    },
    /// Put the image's newer CUDA compat libraries first (CDI createContainer hook).
    ///
    /// Run by the container engine from a CDI spec, with the container state JSON on
    /// standard input. When the image's /usr/local/cuda/compat/libcuda.so.VERSION is newer
    /// than the host driver, that directory goes first in the container's loader cache.
    EnableCudaCompat {
        /// The host driver version (default: from the container's libcuda.so.1).
        #[arg(long)]
        host_driver_version: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// runc gives a hook entry without "env" the container's environment: the policy must
    /// not be settable from there.
    #[test]
    fn policy_is_command_line_only() {
        let cmd = Cli::command();
        for id in ["env_requests", "cdi_annotations", "allow_kinds"] {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap_or_else(|| panic!("no argument {id}"));
            assert_eq!(arg.get_env(), None, "{id} is read from the environment");
        }
    }

    #[test]
    fn policy_defaults_and_values() {
        let c = Cli::try_parse_from(["gpu-hook"]).unwrap();
        assert_eq!(c.env_requests, EnvRequests::Privileged);
        assert_eq!(c.cdi_annotations, CdiAnnotations::Off);
        assert_eq!(c.allow_kinds, ["nvidia.com/gpu", "amd.com/gpu"]);
        let c = Cli::try_parse_from([
            "gpu-hook",
            "--env-requests=always",
            "--cdi-annotations",
            "on",
            "--allow-kinds=nvidia.com/gpu,vendor.com/dev",
            "--allow-kinds",
            "amd.com/gpu",
        ])
        .unwrap();
        assert_eq!(c.env_requests, EnvRequests::Always);
        assert_eq!(c.cdi_annotations, CdiAnnotations::On);
        assert_eq!(
            c.allow_kinds,
            ["nvidia.com/gpu", "vendor.com/dev", "amd.com/gpu"]
        );
        let e = Cli::try_parse_from(["gpu-hook", "--allow-kinds=nvidia.com"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"nvidia.com\" is not a CDI kind"), "{e}");
        assert!(Cli::try_parse_from(["gpu-hook", "--env-requests=sometimes"]).is_err());
    }
}
