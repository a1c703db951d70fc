//! gpu-hook: OCI hook injecting GPUs into containers (requests from
//! NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES or cdi.k8s.io/*
//! annotations), and the create-symlinks / update-ldcache / enable-cuda-compat hooks that
//! CDI specs reference. All logic lives in the `gpu_hook` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use gpu_hook::resolve::{ResolveOptions, Source};

/// OCI hook that gives containers the GPUs they request (createRuntime or createContainer;
/// the runtime passes the container state on stdin). Options can also be set through the
/// environment variables in brackets, which is how hooks.d files configure it.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Root of the driver installation (libraries, binaries, firmware).
    #[arg(long, env = "GPU_HOOK_DRIVER_ROOT", default_value = "/", global = true)]
    driver_root: PathBuf,
    /// Root under which /dev is looked up (default: the driver root).
    #[arg(long, env = "GPU_HOOK_DEV_ROOT", global = true)]
    dev_root: Option<PathBuf>,
    /// sysfs root (tests).
    #[arg(
        long,
        env = "GPU_HOOK_SYSFS_ROOT",
        default_value = "/sys",
        global = true
    )]
    sysfs_root: PathBuf,
    /// procfs root (tests).
    #[arg(
        long,
        env = "GPU_HOOK_PROCFS_ROOT",
        default_value = "/proc",
        global = true
    )]
    procfs_root: PathBuf,
    /// CDI spec directories, `:`-separated, lowest priority first.
    #[arg(
        long,
        env = "GPU_HOOK_SPEC_DIRS",
        default_value = "/etc/cdi:/var/run/cdi",
        global = true
    )]
    spec_dirs: String,
    /// Where device edits come from: spec files, live discovery, or auto (specs for the
    /// kinds they define, discovery for the others).
    #[arg(
        long,
        env = "GPU_HOOK_SOURCE",
        value_enum,
        default_value = "auto",
        global = true
    )]
    source: Source,
    /// How NVIDIA facts are discovered: auto (NVML, else procfs/sysfs), nvml, procfs.
    #[arg(
        long,
        env = "GPU_HOOK_DISCOVERY",
        value_enum,
        default_value = "auto",
        global = true
    )]
    discovery: Discovery,
    /// Path of libnvidia-ml.so.1 (default: from the driver root).
    #[arg(long, env = "GPU_HOOK_NVML_LIB", global = true)]
    nvml_lib: Option<PathBuf>,
    /// Host glibc files for the glibc step, `:`-separated (default: from the host's ld.so.cache).
    #[arg(long, env = "GLIBC_LIBS", default_value = "", global = true)]
    glibc_libs: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Discovery {
    Auto,
    Nvml,
    Procfs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create symlinks inside the container rootfs (CDI createContainer hook).
    CreateSymlinks {
        /// `TARGET::LINK`: LINK (absolute container path) will point at TARGET.
        #[arg(long = "link")]
        links: Vec<String>,
    },
    /// Add the libraries of container directories to the container's ld.so.cache,
    /// natively (CDI createContainer hook).
    UpdateLdcache {
        /// Container directory whose libraries go into the cache (repeatable).
        #[arg(long = "folder")]
        folders: Vec<PathBuf>,
        /// Accepted for compatibility; the cache is written natively, nothing runs.
        #[arg(long)]
        ldconfig_path: Option<PathBuf>,
    },
    /// Put the image's newer CUDA compat libraries first (CDI createContainer hook).
    EnableCudaCompat {
        /// The host driver version (default: from the container's libcuda.so.1).
        #[arg(long)]
        host_driver_version: Option<String>,
    },
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Cmd::CreateSymlinks { links }) => gpu_hook::create_symlinks(&links)?,
        Some(Cmd::UpdateLdcache {
            folders,
            ldconfig_path: _,
        }) => gpu_hook::update_ldcache(&folders)?,
        Some(Cmd::EnableCudaCompat {
            host_driver_version,
        }) => gpu_hook::enable_cuda_compat(host_driver_version.as_deref())?,
        None => {
            let hook_path = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| cdi_gen::edits::DEFAULT_HOOK_PATH.to_string());
            let glibc = hooks_core::glibc_plan::split_paths(&args.glibc_libs);
            let opts = gpu_hook::InjectOptions {
                resolve: ResolveOptions {
                    source: args.source,
                    spec_dirs: hooks_core::glibc_plan::split_paths(&args.spec_dirs),
                    roots: cdi_gen::Roots {
                        dev_root: args.dev_root.unwrap_or_else(|| args.driver_root.clone()),
                        driver_root: args.driver_root,
                        sys_root: args.sysfs_root,
                        proc_root: args.procfs_root,
                    },
                    nvml_lib: args.nvml_lib,
                    discovery: match args.discovery {
                        Discovery::Auto => cdi_gen::nvidia::DiscoveryMode::Auto,
                        Discovery::Nvml => cdi_gen::nvidia::DiscoveryMode::Nvml,
                        Discovery::Procfs => cdi_gen::nvidia::DiscoveryMode::Procfs,
                    },
                    hook_path,
                },
                glibc_libs: (!glibc.is_empty()).then_some(glibc),
            };
            gpu_hook::inject(&opts)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let name = match &args.command {
        Some(Cmd::CreateSymlinks { .. }) => "gpu-hook create-symlinks",
        Some(Cmd::UpdateLdcache { .. }) => "gpu-hook update-ldcache",
        Some(Cmd::EnableCudaCompat { .. }) => "gpu-hook enable-cuda-compat",
        None => "gpu-hook",
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            hooks_core::logging::report_error(name, &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
