//! gpu-hook: OCI hook injecting GPUs into containers (requests from
//! NVIDIA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES or cdi.k8s.io/* annotations, as the
//! admin's policy allows), and the create-symlinks / update-ldcache / enable-cuda-compat
//! hooks that CDI specs reference. All logic lives in the `gpu_hook` library.

use std::process::ExitCode;

use gpu_hook::cli::{Cli, Cmd, Discovery};
use gpu_hook::resolve::ResolveOptions;

fn run(args: Cli) -> anyhow::Result<()> {
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
                .unwrap_or_else(|_| gpu_discover::edits::DEFAULT_HOOK_PATH.to_string());
            let glibc = hooks_core::plan::glibc::split_paths(&args.glibc_libs);
            let opts = gpu_hook::InjectOptions {
                resolve: ResolveOptions {
                    source: args.source,
                    spec_dirs: hooks_core::plan::glibc::split_paths(&args.spec_dirs),
                    roots: gpu_discover::Roots {
                        dev_root: args.dev_root.unwrap_or_else(|| args.driver_root.clone()),
                        driver_root: args.driver_root,
                        sys_root: args.sysfs_root,
                        proc_root: args.procfs_root,
                    },
                    nvml_lib: args.nvml_lib,
                    nvml_helper: args.cdi_gen,
                    discovery: match args.discovery {
                        Discovery::Auto => gpu_discover::nvidia::DiscoveryMode::Auto,
                        Discovery::Nvml => gpu_discover::nvidia::DiscoveryMode::Nvml,
                        Discovery::Procfs => gpu_discover::nvidia::DiscoveryMode::Procfs,
                    },
                    hook_path,
                },
                policy: gpu_hook::policy::Policy {
                    env_requests: args.env_requests,
                    cdi_annotations: args.cdi_annotations,
                    allow_kinds: args.allow_kinds,
                },
                glibc_libs: (!glibc.is_empty()).then_some(glibc),
            };
            gpu_hook::inject(&opts)?;
        }
    }
    Ok(())
}

/// The run's name from the raw command line (logging starts before clap parses it).
fn run_name(argv: &[std::ffi::OsString]) -> &'static str {
    for a in argv.iter().skip(1) {
        match a.to_str() {
            Some("create-symlinks") => return "gpu-hook create-symlinks",
            Some("update-ldcache") => return "gpu-hook update-ldcache",
            Some("enable-cuda-compat") => return "gpu-hook enable-cuda-compat",
            _ => {}
        }
    }
    "gpu-hook"
}

fn main() -> ExitCode {
    // Logging first, so that a usage or configuration error reaches the admin's log.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let name = run_name(&argv);
    let _run = hooks_core::logging::start(name, &argv);
    let args = match hooks_core::logging::parse_cli::<Cli>(name, &argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            hooks_core::logging::report_error(name, &hooks_core::logging::error_chain(e.chain()));
            ExitCode::FAILURE
        }
    }
}
