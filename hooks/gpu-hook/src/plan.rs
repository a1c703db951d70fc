//! gpu-hook's planning: the resolved CDI edits kept to what `NVIDIA_DRIVER_CAPABILITIES`
//! allows, the CUDA forward-compat and `NVIDIA_REQUIRE_CUDA` decisions and the glibc step,
//! as one [`Plan`] for the live engine (`hooks_core::engine`). It reads the container only
//! through a [`View`], so it is tested against fixture trees without a container.

use std::path::{Path, PathBuf};

use cdi_specs::types::{ContainerEdits, Hook, Mount};
use cdi_specs::Plan;
use hooks_core::engine::{known_hook, parse_link, KnownHook};
use hooks_core::plan::glibc::{plan_glibc, GlibcAction};
use hooks_core::plan::View;

use crate::caps::Caps;
use crate::cuda::{self, HostCuda, Ver};
use crate::request::{Request, NVIDIA_KIND};
use crate::resolve::Resolved;
use crate::GpuHookError;

/// What planning needs besides the request and the resolved edits.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Path of gpu-hook, written into the hooks the plan adds.
    pub hook_path: String,
    /// Inject the host glibc when the driver libraries need a newer one (the glibc
    /// annotation), or refuse.
    pub glibc_action: GlibcAction,
    /// Host glibc files (None: from the host's ld.so.cache).
    pub glibc_libs: Option<Vec<PathBuf>>,
}

/// The plan with what the hook reports about it.
#[derive(Debug, Clone, Default)]
pub struct GpuPlan {
    pub plan: Plan,
    /// Decisions made, for the log (info).
    pub log: Vec<String>,
    /// Driver files or links left out by the capabilities.
    pub filtered: usize,
}

/// The edits in engine order, with mounts and links the capabilities do not allow left
/// out (counted), `update-ldcache` folders of 32-bit libraries kept only with `compat32`,
/// and `enable-cuda-compat` hooks dropped (the compat decision is made here, at planning).
pub fn filter(
    edits: Vec<(String, ContainerEdits)>,
    caps: &Caps,
) -> Result<(ContainerEdits, usize), GpuHookError> {
    let mut out = ContainerEdits::default();
    let mut filtered = 0;
    for (_, mut e) in edits {
        let before = e.mounts.len();
        e.mounts.retain(|m| caps.allows_path(&m.container_path));
        filtered += before - e.mounts.len();
        let mut hooks = Vec::with_capacity(e.hooks.len());
        for h in e.hooks.drain(..) {
            match known_hook(&h) {
                Some(KnownHook::CreateSymlinks(links)) => {
                    let mut kept = Vec::new();
                    for l in links {
                        let parsed = parse_link(&l).map_err(crate::apply_error)?;
                        if caps.allows_path(&parsed.link) && caps.allows_path(&parsed.target) {
                            kept.push(l);
                        } else {
                            filtered += 1;
                        }
                    }
                    if !kept.is_empty() {
                        hooks.push(with_values(&h, "create-symlinks", "--link", &kept));
                    }
                }
                Some(KnownHook::UpdateLdcache(dirs)) => {
                    // 32-bit directories only with compat32.
                    let kept: Vec<String> = dirs
                        .into_iter()
                        .filter(|d| caps.allows_path(&format!("{}/", d.trim_end_matches('/'))))
                        .collect();
                    if !kept.is_empty() {
                        hooks.push(with_values(&h, "update-ldcache", "--folder", &kept));
                    }
                }
                Some(KnownHook::EnableCudaCompat) => {}
                None => hooks.push(h),
            }
        }
        e.hooks = hooks;
        out.append_owned(e);
    }
    Ok((out, filtered))
}

/// `h` with its subcommand's values replaced by `values` (`--flag value` each).
fn with_values(h: &Hook, subcommand: &str, flag: &str, values: &[String]) -> Hook {
    let end = h
        .args
        .iter()
        .skip(1)
        .position(|a| a == subcommand)
        .map(|p| p + 2)
        .unwrap_or(h.args.len());
    let mut args: Vec<String> = h.args[..end].to_vec();
    for v in values {
        args.push(flag.to_string());
        args.push(v.clone());
    }
    Hook { args, ..h.clone() }
}

/// A gpu-hook `createContainer` hook running `subcommand` with `flag value` pairs.
pub fn gpu_hook(hook_path: &str, subcommand: &str, flag: &str, values: &[String]) -> Hook {
    let mut args = vec!["gpu-hook".to_string(), subcommand.to_string()];
    for v in values {
        args.push(flag.to_string());
        args.push(v.clone());
    }
    Hook {
        hook_name: "createContainer".into(),
        path: hook_path.to_string(),
        args,
        ..Hook::default()
    }
}

/// Driver version from a mounted `libcuda.so.<version>` (spec files carry no facts).
fn driver_from_mounts(mounts: &[Mount]) -> Option<Ver> {
    mounts.iter().find_map(|mt| {
        let name = mt.container_path.rsplit('/').next()?;
        let v = Ver::parse(name.strip_prefix("libcuda.so.")?)?;
        (v.0.len() >= 2).then_some(v)
    })
}

/// True for a container path whose name ldconfig would take for a library.
fn is_library(container_path: &str) -> bool {
    hooks_core::ldcache_update::is_library_name(container_path.rsplit('/').next().unwrap_or(""))
}

/// Directories of mounted libraries, in mount order (the cache folders when a spec has
/// no update-ldcache hook).
pub fn library_dirs(mounts: &[Mount]) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    for m in mounts.iter().filter(|m| is_library(&m.container_path)) {
        if let Some((d, _)) = m.container_path.rsplit_once('/') {
            if !d.is_empty() && !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_string());
            }
        }
    }
    dirs
}

/// Plans a request: filter by capabilities, compat and CUDA requirement, cache folders,
/// then the glibc step for the driver libraries.
pub fn plan(
    view: View<'_>,
    req: &Request,
    resolved: Resolved,
    opts: &PlanOptions,
) -> Result<GpuPlan, GpuHookError> {
    let Resolved {
        edits,
        driver: resolved_driver,
        cuda: resolved_cuda,
        ..
    } = resolved;
    let (mut edits, filtered) = filter(edits, &req.caps)?;
    let mut log = Vec::new();
    let nvidia = req.kinds().contains(NVIDIA_KIND);
    let driver = resolved_driver.or_else(|| driver_from_mounts(&edits.mounts));
    // CUDA forward compatibility and NVIDIA_REQUIRE_CUDA, before anything is mounted.
    let compat = if nvidia {
        cuda::compat_to_use(view.rootfs, driver.as_ref())
    } else {
        None
    };
    if let (Some(c), Some(d)) = (&compat, &driver) {
        log.push(format!(
            "CUDA compat: the image's {}/libcuda.so.{c} is newer than the host driver {d}; it takes precedence",
            cuda::COMPAT_DIR
        ));
    }
    if let (true, Some(constraint)) = (nvidia, &req.require_cuda) {
        let host = HostCuda {
            cuda: compat
                .as_ref()
                .and_then(cuda::cuda_of_driver)
                .or_else(|| resolved_cuda.clone())
                .or_else(|| driver.as_ref().and_then(cuda::cuda_of_driver)),
            driver: driver.clone(),
            compat: compat.clone(),
        };
        cuda::check_requirement(constraint, &host)?;
        log.push(format!(
            "NVIDIA_REQUIRE_CUDA={constraint} satisfied ({host:?})"
        ));
    }
    // The loader cache: the spec's update-ldcache folders, else the mounted libraries'
    // directories; the compat directory (which the engine puts first) when it wins.
    let has_folders = edits
        .hooks
        .iter()
        .any(|h| matches!(known_hook(h), Some(KnownHook::UpdateLdcache(_))));
    let mut folders = Vec::new();
    if compat.is_some() {
        folders.push(cuda::COMPAT_DIR.to_string());
    }
    if !has_folders {
        folders.extend(library_dirs(&edits.mounts));
    }
    if !folders.is_empty() {
        edits.hooks.push(gpu_hook(
            &opts.hook_path,
            "update-ldcache",
            "--folder",
            &folders,
        ));
    }
    if filtered > 0 {
        log.push(format!(
            "{filtered} driver files or links left out by NVIDIA_DRIVER_CAPABILITIES"
        ));
    }
    // glibc: the injected libraries may need a newer glibc than the image has.
    let pending: Vec<_> = edits
        .mounts
        .iter()
        .filter(|m| is_library(&m.container_path))
        .filter_map(|m| hooks_core::hostlib::inspect(Path::new(&m.host_path)).ok())
        .filter(|l| l.facts.is_shared_object)
        .collect();
    let mut plan = Plan {
        edits,
        ..Plan::default()
    };
    if !pending.is_empty() {
        let (gplan, glog) = plan_glibc(
            view,
            &pending,
            opts.glibc_action,
            opts.glibc_libs.as_deref(),
        )?;
        log.extend(glog);
        plan.append(&gplan);
    }
    Ok(GpuPlan {
        plan,
        log,
        filtered,
    })
}
