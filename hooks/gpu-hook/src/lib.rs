//! gpu-hook: GPUs in containers for runtimes and engines without CDI, and the hooks CDI
//! specs call.
//!
//! - [`inject`] (the OCI hook, createRuntime or createContainer): reads the container's
//!   request ([`request`]) from its config.json as data, keeps what the admin's
//!   [`policy`] allows (environment requests by privilege, annotations, kinds), resolves
//!   it to `cdi_specs` container edits from spec files or live `cdi_gen` discovery
//!   ([`resolve`]), checks `NVIDIA_REQUIRE_CUDA` and CUDA forward compatibility
//!   ([`cuda`]) and the glibc the injected libraries need, all as one plan ([`plan`]),
//!   then applies it with the suite's one live engine (`hooks_core::engine`), which also
//!   updates the loader cache natively.
//! - [`create_symlinks`], [`update_ldcache`], [`enable_cuda_compat`]: the subcommands
//!   engines run from CDI specs at createContainer, each a one-hook plan for the same
//!   engine; in-root only, nothing from the image is executed.
//!
//! Nothing requested means nothing touched (exit 0).

pub mod caps;
pub mod cli;
pub mod cuda;
pub mod plan;
pub mod policy;
pub mod request;
pub mod resolve;

use std::path::{Path, PathBuf};
use std::time::Instant;

use cdi_specs::Plan;
use hooks_core::config::BundleConfig;
use hooks_core::context::HookCtx;
use hooks_core::engine::{self, EngineError, RealSys, Target};
use hooks_core::plan::glibc::{GlibcAction, GLIBC_ANNOTATION};
use hooks_core::plan::View;
use hooks_core::state::HookState;
use hooks_core::{logging, mountinfo, ns};

use crate::cuda::Ver;
use crate::plan::PlanOptions;
use crate::request::Request;
use crate::resolve::{ResolveOptions, Resolved};

/// Errors of the hook and its subcommands.
#[derive(Debug, thiserror::Error)]
pub enum GpuHookError {
    #[error(transparent)]
    Context(#[from] hooks_core::context::ContextError),
    #[error(transparent)]
    Request(#[from] request::RequestError),
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    #[error(transparent)]
    Cuda(#[from] cuda::CudaError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Glibc(#[from] hooks_core::plan::glibc::GlibcError),
    #[error("cannot read the mount table: {0}")]
    MountInfo(std::io::Error),
}

/// Engine errors met while planning (a malformed `--link`).
pub(crate) fn apply_error(e: EngineError) -> GpuHookError {
    GpuHookError::Engine(e)
}

/// State and config of the container, with logging set up (nothing entered yet).
pub struct Loaded {
    pub hook: &'static str,
    pub state: HookState,
    pub config: BundleConfig,
    pub started: Instant,
}

/// Reads the state from stdin, loads config.json and sets up logging.
pub fn load(hook: &'static str) -> Result<Loaded, GpuHookError> {
    let started = Instant::now();
    // Never depend on the cwd a runtime gives us (runc: the container rootfs).
    let _ = std::env::set_current_dir("/");
    let state = hooks_core::context::read_state(hook)?;
    let config = match BundleConfig::load(&state) {
        Ok(c) => c,
        Err(e) => {
            // Log to the admin's file (from the args) even when config.json is bad.
            logging::init_for_container(hook, &state.id, None);
            return Err(hooks_core::context::ContextError::from(e).into());
        }
    };
    logging::init_for_container(hook, &state.id, Some(&config));
    hooks_core::context::refuse_container_config(hook, &config)?;
    Ok(Loaded {
        hook,
        state,
        config,
        started,
    })
}

/// Enters the container's mount namespace (unless inside) and opens the rootfs handle.
pub fn enter(l: Loaded) -> Result<HookCtx, GpuHookError> {
    let ns = ns::enter_container_mount_ns(l.state.pid)
        .map_err(hooks_core::context::ContextError::from)?;
    let rootfs = hooks_core::rootfs::Rootfs::open(&l.config.rootfs)
        .map_err(hooks_core::context::ContextError::from)?;
    tracing::debug!(container = %l.state.id, ?ns, rootfs = %l.config.rootfs.display(), "{}: starting", l.hook);
    Ok(HookCtx {
        hook: l.hook,
        state: l.state,
        config: l.config,
        ns,
        rootfs,
        started: l.started,
    })
}

/// Applies `plan` to the container with the live engine, logging what it did. `mounts`:
/// the mount table planning read (`None`: read it now).
pub fn apply(
    ctx: &HookCtx,
    plan: &Plan,
    mounts: Option<Vec<mountinfo::MountEntry>>,
) -> Result<engine::Report, GpuHookError> {
    let target = match mounts {
        Some(mounts) => Target {
            rootfs: &ctx.rootfs,
            cgroup: engine::cgroup_locator(ctx),
            mounts,
        },
        None => Target::for_hook(ctx)?,
    };
    let report = engine::apply(&target, plan, &RealSys)?;
    for l in &report.log {
        tracing::info!("{l}");
    }
    Ok(report)
}

/// Options of the injecting hook.
#[derive(Debug, Clone)]
pub struct InjectOptions {
    pub resolve: ResolveOptions,
    /// Who may request what (from the command line only).
    pub policy: policy::Policy,
    /// Host glibc files for the glibc step (None: from the host's ld.so.cache).
    pub glibc_libs: Option<Vec<PathBuf>>,
}

/// The injecting hook: request -> edits -> checks -> live application. Returns true when
/// something was requested.
pub fn inject(opts: &InjectOptions) -> Result<bool, GpuHookError> {
    let loaded = load("gpu-hook")?;
    let empty = Vec::new();
    let env = loaded
        .config
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.env().as_ref())
        .unwrap_or(&empty);
    let privileged = policy::is_privileged(&loaded.config.spec);
    let outcome = request::from_config(env, &loaded.config.annotations, &opts.policy, privileged)?;
    for i in &outcome.ignored {
        if i.is_warning() {
            tracing::warn!("{i}");
        } else {
            tracing::info!("{i}");
        }
    }
    let req = outcome.request;
    if req.is_empty() {
        tracing::info!("no GPU requested (or none the policy allows); nothing to do");
        return Ok(false);
    }
    run_request(loaded, &req, opts)?;
    Ok(true)
}

fn run_request(loaded: Loaded, req: &Request, opts: &InjectOptions) -> Result<(), GpuHookError> {
    tracing::info!(
        "request {} from {}",
        req.devices.join(", "),
        req.sources.join("; ")
    );
    let unknown = req.caps.unknown();
    if !unknown.is_empty() {
        tracing::warn!(
            "NVIDIA_DRIVER_CAPABILITIES: unknown capabilities {} ignored (known: {})",
            unknown.join(", "),
            caps::KNOWN.join(", ")
        );
    }
    // Discovery and spec loading happen in the host's mount namespace.
    let resolved: Resolved = resolve::resolve(&req.devices, &opts.resolve)?;
    for w in &resolved.warnings {
        tracing::warn!("{w}");
    }
    let glibc_action = if hooks_core::context::enabled(&loaded.config, GLIBC_ANNOTATION) {
        GlibcAction::Inject
    } else {
        GlibcAction::Refuse
    };
    let ctx = enter(loaded)?;
    let mounts = mountinfo::read_self().map_err(GpuHookError::MountInfo)?;
    let view = View {
        rootfs: &ctx.rootfs,
        mounts: &mounts,
    };
    let planned = plan::plan(
        view,
        req,
        resolved,
        &PlanOptions {
            hook_path: opts.resolve.hook_path.clone(),
            glibc_action,
            glibc_libs: opts.glibc_libs.clone(),
        },
    )?;
    for l in &planned.log {
        tracing::info!("{l}");
    }
    let report = apply(&ctx, &planned.plan, Some(mounts))?;
    ctx.finish_with(&format!(
        "GPUs injected ({}): {} device nodes, {} mounts, {} links",
        req.devices.join(", "),
        report.nodes_total,
        report.mounts_total,
        report.links_total
    ));
    Ok(())
}

/// `gpu-hook create-symlinks --link TARGET::LINK ...` (createContainer hook).
pub fn create_symlinks(links: &[String]) -> Result<(), GpuHookError> {
    for l in links {
        engine::parse_link(l)?;
    }
    let ctx = enter(load("gpu-hook create-symlinks")?)?;
    let mut plan = Plan::default();
    plan.edits.hooks.push(plan::gpu_hook(
        "gpu-hook",
        "create-symlinks",
        "--link",
        links,
    ));
    apply(&ctx, &plan, None)?;
    ctx.finish_with(&format!("{} symlinks checked or created", links.len()));
    Ok(())
}

/// A plan whose only edit is an update-ldcache hook for `folders`.
fn folders_plan(folders: &[String]) -> Plan {
    let mut plan = Plan::default();
    plan.edits.hooks.push(plan::gpu_hook(
        "gpu-hook",
        "update-ldcache",
        "--folder",
        folders,
    ));
    plan
}

/// `gpu-hook update-ldcache --folder DIR ...` (createContainer hook).
pub fn update_ldcache(folders: &[PathBuf]) -> Result<(), GpuHookError> {
    let ctx = enter(load("gpu-hook update-ldcache")?)?;
    let folders: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
    apply(&ctx, &folders_plan(&folders), None)?;
    ctx.finish_with(&format!(
        "{} folders added to the container's loader cache",
        folders.len()
    ));
    Ok(())
}

/// `gpu-hook enable-cuda-compat [--host-driver-version V]` (createContainer hook): when the
/// image's compat libcuda is newer than the host driver, its directory goes first in the
/// container's loader cache.
pub fn enable_cuda_compat(host_driver: Option<&str>) -> Result<(), GpuHookError> {
    let ctx = enter(load("gpu-hook enable-cuda-compat")?)?;
    let driver = host_driver.and_then(Ver::parse).or_else(|| {
        // The driver's libcuda.so.1 in the container's cache names the version.
        let cache = hooks_core::plan::container_cache(&ctx.rootfs).ok()?;
        cache
            .entries
            .iter()
            .filter(|e| e.soname == "libcuda.so.1" && !e.path.starts_with(cuda::COMPAT_DIR))
            .find_map(|e| {
                let real = ctx.rootfs.real_path(Path::new(&e.path)).ok()?;
                let name = real.file_name()?.to_string_lossy().into_owned();
                Ver::parse(name.strip_prefix("libcuda.so.")?)
            })
    });
    match cuda::compat_to_use(&ctx.rootfs, driver.as_ref()) {
        Some(v) => {
            tracing::info!(
                "enable-cuda-compat: compat libcuda {v} is newer than the host driver {}; putting {} first",
                driver.map(|d| d.to_string()).unwrap_or_default(),
                cuda::COMPAT_DIR
            );
            apply(&ctx, &folders_plan(&[cuda::COMPAT_DIR.to_string()]), None)?;
        }
        None => {
            tracing::info!(
            "enable-cuda-compat: no compat libcuda newer than the host driver ({}); nothing to do",
            driver.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into())
        )
        }
    }
    ctx.finish();
    Ok(())
}
