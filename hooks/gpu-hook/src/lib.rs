//! gpu-hook: GPUs in containers for runtimes and engines without CDI, and the hooks CDI
//! specs call.
//!
//! - [`inject`] (the OCI hook, createRuntime or createContainer): reads the container's
//!   request ([`request`]) from its config.json as data, keeps what the admin's
//!   [`policy`] allows (environment requests by privilege, annotations, kinds), resolves
//!   it to `cdi_specs` container edits from spec files or live `cdi_gen` discovery
//!   ([`resolve`]), checks `NVIDIA_REQUIRE_CUDA` and CUDA forward compatibility
//!   ([`cuda`]), the glibc the injected libraries need (`hooks_core::glibc_plan`), then
//!   applies the edits to the live container ([`apply`]) and updates its loader cache
//!   natively.
//! - [`create_symlinks`], [`update_ldcache`], [`enable_cuda_compat`]: the subcommands
//!   engines run from CDI specs at createContainer; in-root only, nothing from the image
//!   is executed.
//!
//! Nothing requested means nothing touched (exit 0).

pub mod apply;
pub mod caps;
pub mod cli;
pub mod cuda;
pub mod policy;
pub mod request;
pub mod resolve;

use std::path::{Path, PathBuf};
use std::time::Instant;

use hooks_core::config::BundleConfig;
use hooks_core::context::HookCtx;
use hooks_core::glibc_plan::{plan_glibc, GlibcAction, GLIBC_ANNOTATION};
use hooks_core::state::HookState;
use hooks_core::{devices, logging, mountinfo, ns};

use crate::apply::{ApplyError, Link, Merged};
use crate::cuda::{HostCuda, Ver};
use crate::request::{Request, NVIDIA_KIND};
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
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Glibc(#[from] hooks_core::glibc_plan::GlibcError),
    #[error(transparent)]
    Inject(#[from] hooks_core::inject::InjectError),
    #[error(transparent)]
    Cache(#[from] hooks_core::ldcache_update::LdCacheUpdateError),
    #[error("cannot open the container rootfs {path} for device nodes and links: {message}")]
    Root { path: PathBuf, message: String },
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

/// Enters the container's mount namespace (unless inside) and opens the rootfs handles.
pub fn enter(l: Loaded) -> Result<(HookCtx, pathrs::Root), GpuHookError> {
    let ns = ns::enter_container_mount_ns(l.state.pid)
        .map_err(hooks_core::context::ContextError::from)?;
    let rootfs = hooks_core::rootfs::Rootfs::open(&l.config.rootfs)
        .map_err(hooks_core::context::ContextError::from)?;
    let root = pathrs::Root::open(&l.config.rootfs).map_err(|e| GpuHookError::Root {
        path: l.config.rootfs.clone(),
        message: e.to_string(),
    })?;
    tracing::debug!(container = %l.state.id, ?ns, rootfs = %l.config.rootfs.display(), "{}: starting", l.hook);
    Ok((
        HookCtx {
            hook: l.hook,
            state: l.state,
            config: l.config,
            ns,
            rootfs,
            started: l.started,
        },
        root,
    ))
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

/// Driver version from a mounted `libcuda.so.<version>` (spec files carry no facts).
fn driver_from_mounts(m: &Merged) -> Option<Ver> {
    m.mounts.iter().find_map(|mt| {
        let name = mt.container_path.rsplit('/').next()?;
        let v = Ver::parse(name.strip_prefix("libcuda.so.")?)?;
        (v.0.len() >= 2).then_some(v)
    })
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
    let merged = apply::merge(&resolved.edits, &req.caps)?;
    let (ctx, root) = enter(loaded)?;
    let nvidia = req.kinds().contains(NVIDIA_KIND);
    // CUDA forward compatibility and NVIDIA_REQUIRE_CUDA, before anything is mounted.
    let driver = resolved
        .driver
        .clone()
        .or_else(|| driver_from_mounts(&merged));
    let compat = if nvidia {
        cuda::compat_to_use(&ctx.rootfs, driver.as_ref())
    } else {
        None
    };
    if let (Some(c), Some(d)) = (&compat, &driver) {
        tracing::info!(
            "CUDA compat: the image's {}/libcuda.so.{c} is newer than the host driver {d}; it takes precedence",
            cuda::COMPAT_DIR
        );
    }
    if let (true, Some(constraint)) = (nvidia, &req.require_cuda) {
        let host = HostCuda {
            cuda: compat
                .as_ref()
                .and_then(cuda::cuda_of_driver)
                .or_else(|| resolved.cuda.clone())
                .or_else(|| driver.as_ref().and_then(cuda::cuda_of_driver)),
            driver: driver.clone(),
            compat: compat.clone(),
        };
        cuda::check_requirement(constraint, &host)?;
        tracing::info!("NVIDIA_REQUIRE_CUDA={constraint} satisfied ({host:?})");
    }
    // glibc: the injected libraries may need a newer glibc than the image has.
    let pending: Vec<_> = merged
        .mounts
        .iter()
        .filter(|m| {
            let n = m.container_path.rsplit('/').next().unwrap_or("");
            n.starts_with("lib") && n.contains(".so")
        })
        .filter_map(|m| hooks_core::hostlib::inspect(Path::new(&m.host_path)).ok())
        .filter(|l| l.facts.is_shared_object)
        .collect();
    if !pending.is_empty() {
        let action = if hooks_core::context::enabled(&ctx.config, GLIBC_ANNOTATION) {
            GlibcAction::Inject
        } else {
            GlibcAction::Refuse
        };
        let (gplan, glog) = plan_glibc(&ctx, &pending, action, opts.glibc_libs.as_deref())?;
        for l in glog {
            tracing::info!("{l}");
        }
        for l in hooks_core::inject::apply(&ctx, &gplan)? {
            tracing::info!("{l}");
        }
    }
    for l in apply_merged(&ctx, &root, &merged, compat.is_some())? {
        tracing::info!("{l}");
    }
    ctx.finish_with(&format!(
        "GPUs injected ({}): {} device nodes, {} mounts, {} links",
        req.devices.join(", "),
        merged.nodes.len(),
        merged.mounts.len(),
        merged.links.len()
    ));
    Ok(())
}

/// Applies merged edits to the live container; returns log lines.
pub fn apply_merged(
    ctx: &HookCtx,
    root: &pathrs::Root,
    merged: &Merged,
    compat: bool,
) -> Result<Vec<String>, GpuHookError> {
    let mut log = Vec::new();
    // 1. Device nodes, then the cgroup rules that let the container open them.
    let mut allow = Vec::new();
    for n in &merged.nodes {
        let f = apply::node_facts(n)?;
        if apply::make_node(root, &ctx.rootfs, &n.path, &f)? {
            log.push(format!(
                "created {} ({} {}:{} mode {:o})",
                n.path,
                match f.dev_type {
                    devices::DevType::Char => 'c',
                    devices::DevType::Block => 'b',
                },
                f.major,
                f.minor,
                f.mode
            ));
        }
        if f.allow {
            allow.push(devices::DeviceNode {
                dev_type: f.dev_type,
                major: f.major,
                minor: f.minor,
            });
        }
    }
    if !allow.is_empty() {
        let mounts = mountinfo::read_self().map_err(ApplyError::MountInfo)?;
        let loc = hooks_core::inject::cgroup_locator(ctx);
        // Device grants are always on record: warn is the packaged log level.
        for l in devices::allow_devices(&allow, &loc, &mounts).map_err(ApplyError::from)? {
            tracing::warn!("device grant: {l}");
        }
    }
    // 2. Read-only libraries, binaries, firmware; sockets.
    let mut bound = 0;
    for m in &merged.mounts {
        if apply::bind_mount(&ctx.rootfs, m)? {
            bound += 1;
        }
    }
    log.push(format!(
        "bind-mounted {bound} of {} files",
        merged.mounts.len()
    ));
    // 3. Symlinks.
    if !merged.links.is_empty() {
        log.extend(apply::create_links(root, &ctx.rootfs, &merged.links)?);
    }
    // 4. The loader cache: compat libraries first (they win), then the driver's.
    let mut dirs: Vec<PathBuf> = Vec::new();
    if compat {
        dirs.push(PathBuf::from(cuda::COMPAT_DIR));
    }
    let lib_dirs = if merged.ldcache_dirs.is_empty() {
        apply::library_dirs(&merged.mounts)
    } else {
        merged.ldcache_dirs.clone()
    };
    dirs.extend(lib_dirs.into_iter().map(PathBuf::from));
    if !dirs.is_empty() {
        log.extend(hooks_core::ldcache_update::add_dirs_to_container_cache(
            &ctx.rootfs,
            &dirs,
        )?);
    }
    // 5. What a hook cannot do.
    if !merged.env.is_empty() {
        tracing::warn!(
            "the CDI edits set environment variables, which a hook cannot change in a created container; not applied: {}",
            merged.env.join(" ")
        );
    }
    if !merged.other_hooks.is_empty() {
        tracing::warn!(
            "the CDI edits ask for hooks gpu-hook does not implement; not run: {}",
            merged.other_hooks.join("; ")
        );
    }
    if merged.filtered > 0 {
        log.push(format!(
            "{} driver files or links left out by NVIDIA_DRIVER_CAPABILITIES",
            merged.filtered
        ));
    }
    Ok(log)
}

/// `gpu-hook create-symlinks --link TARGET::LINK ...` (createContainer hook).
pub fn create_symlinks(links: &[String]) -> Result<(), GpuHookError> {
    let links: Vec<Link> = links
        .iter()
        .map(|l| apply::parse_link(l))
        .collect::<Result<_, _>>()?;
    let (ctx, root) = enter(load("gpu-hook create-symlinks")?)?;
    for l in apply::create_links(&root, &ctx.rootfs, &links)? {
        tracing::info!("{l}");
    }
    ctx.finish_with(&format!("{} symlinks checked or created", links.len()));
    Ok(())
}

/// `gpu-hook update-ldcache --folder DIR ...` (createContainer hook).
pub fn update_ldcache(folders: &[PathBuf]) -> Result<(), GpuHookError> {
    let (ctx, _root) = enter(load("gpu-hook update-ldcache")?)?;
    for l in hooks_core::ldcache_update::add_dirs_to_container_cache(&ctx.rootfs, folders)? {
        tracing::info!("{l}");
    }
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
    let (ctx, _root) = enter(load("gpu-hook enable-cuda-compat")?)?;
    let driver = host_driver.and_then(Ver::parse).or_else(|| {
        // The driver's libcuda.so.1 in the container's cache names the version.
        let cache = hooks_core::inject::read_container_cache(&ctx.rootfs).ok()?;
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
            for l in hooks_core::ldcache_update::add_dirs_to_container_cache(
                &ctx.rootfs,
                &[PathBuf::from(cuda::COMPAT_DIR)],
            )? {
                tracing::info!("{l}");
            }
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
