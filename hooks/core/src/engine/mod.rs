//! The one live engine: applies a [`Plan`] to a running container. Composes the edits
//! (CDI rules), then device nodes with their cgroup grants, mounts, replaced files,
//! symlinks, ONE loader-cache regeneration, and warnings for what a hook cannot do.
//!
//! Every privileged call goes through [`Sys`] ([`RealSys`] in the hooks, a recording
//! double in tests); every container path is resolved in-root through [`Rootfs`]; every
//! host path is opened once and checked on that handle. The image itself is never
//! written: what a hook leaves in a directory rootfs are empty mount points.

pub mod cache;
pub mod hooks;
pub mod host;
pub mod links;
pub mod mounts;
pub mod nodes;
pub mod sys;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use cdi_specs::plan::Plan;

pub use cache::{read_container_cache, INJECT_LIB_DIR, INJECT_ROOT};
pub use cdi_specs::compose;
pub use hooks::{known_hook, parse_link, KnownHook, Link};
pub use host::{open_host, HostPathError, WORLD_WRITABLE_DIRS};
pub use mounts::bind_dir_fd;
pub use nodes::{choose, NodeMethod};
pub use sys::{in_user_namespace, NodeKind, NodeSpec, RealSys, Sys};

use crate::devices::{self, Access, CgroupLocator, DevType, DeviceNode, Grant};
use crate::mountinfo::MountEntry;
use crate::rootfs::{KnownDirs, Rootfs};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Mount(#[from] crate::mount::MountError),
    #[error(transparent)]
    Device(#[from] devices::DeviceError),
    #[error(transparent)]
    Scan(#[from] crate::ldcache_update::LdCacheUpdateError),
    #[error("{0}; fix the edits of the plan")]
    Compose(String),
    #[error("device node {path}: {message}; fix or regenerate the CDI spec")]
    Node { path: String, message: String },
    #[error("device rule {typ} {major}:{minor} {access:?}: {message}; fix the plan's deviceRules")]
    Rule {
        typ: String,
        major: i64,
        minor: i64,
        access: String,
        message: String,
    },
    #[error("mount {host} -> {container}: cannot open the host path: {source}{}; the host file is missing: regenerate the CDI spec (cdi-gen), fix --driver-root or the hook's configuration", crate::mount::errno_meaning(.source))]
    HostOpen {
        host: String,
        container: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mount {host} -> {container}: the container path is {what}, the host path is not; refusing to mount over it")]
    Kind {
        host: String,
        container: String,
        what: &'static str,
    },
    #[error("cannot open host file {path}: {source}")]
    HostFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "container path {path} is {what}, not a regular file; refusing to mount {host} over it"
    )]
    NotAFile {
        path: PathBuf,
        host: PathBuf,
        what: &'static str,
    },
    #[error("container path {path} is not a real path (it resolves to {real}); refusing to mount {host} over it: plan with the image file's real path")]
    NotReal {
        path: PathBuf,
        real: PathBuf,
        host: PathBuf,
    },
    #[error("link {link:?}: {message}")]
    Link { link: String, message: String },
    #[error("the container's /etc/ld.so.cache cannot be read ({0}); rebuild the image with `RUN ldconfig` so that libraries can be added")]
    BadCache(String),
    #[error("cannot write the container's new ld.so.cache: {0}")]
    WriteCache(String),
    #[error("{INJECT_ROOT} in the container exists and is not the hooks' tmpfs; refusing to mount over it")]
    InjectRootTaken,
    #[error("cannot read the mount table: {0}")]
    MountInfo(std::io::Error),
}

pub(crate) fn root_err(rootfs: &Rootfs, path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Rootfs(crate::rootfs::RootfsError::Path {
        rootfs: rootfs.host_path().to_owned(),
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The container the plan is applied to: its rootfs (in-root view), where its device
/// cgroup is, and the mount table (as data: `mountinfo::read_self()` in a hook).
#[derive(Debug)]
pub struct Target<'a> {
    pub rootfs: &'a Rootfs,
    pub cgroup: CgroupLocator,
    pub mounts: Vec<MountEntry>,
}

impl<'a> Target<'a> {
    /// The target of a hook: its rootfs, its cgroup locator and `/proc/self/mountinfo`.
    pub fn for_hook(ctx: &'a crate::context::HookCtx) -> Result<Self, EngineError> {
        Ok(Target {
            rootfs: &ctx.rootfs,
            cgroup: cgroup_locator(ctx),
            mounts: crate::mountinfo::read_self().map_err(EngineError::MountInfo)?,
        })
    }
}

/// Where the container's device cgroup is, as seen from this hook (by the way it
/// entered the container's mount namespace).
pub fn cgroup_locator(ctx: &crate::context::HookCtx) -> CgroupLocator {
    CgroupLocator {
        proc_cgroup: match ctx.ns {
            crate::ns::NsEntry::Entered(pid) => format!("/proc/{pid}/cgroup"),
            crate::ns::NsEntry::AlreadyInside => "/proc/self/cgroup".into(),
        },
        member_pid: match ctx.ns {
            crate::ns::NsEntry::Entered(pid) => Some(pid as u32),
            // cgroup.procs lists pids as seen from the reader's pid namespace, which is
            // getpid()'s: right also when runc runs createContainer hooks inside the
            // container's pid namespace (there /proc/self, from the host's /proc, is not).
            crate::ns::NsEntry::AlreadyInside => Some(std::process::id()),
        },
        cgroups_path: ctx.config.cgroups_path(),
    }
}

/// What one apply did: counts, log lines (callers log them at info) and the warnings
/// (already logged at warn).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub nodes_created: usize,
    pub nodes_bound: usize,
    pub nodes_total: usize,
    pub grants: Vec<Grant>,
    pub mounts_bound: usize,
    pub mounts_total: usize,
    pub replaced: usize,
    pub links_created: usize,
    pub links_total: usize,
    pub libraries_added: usize,
    /// Entries of the regenerated cache (`None`: not regenerated).
    pub cache_entries: Option<usize>,
    pub log: Vec<String>,
    pub warnings: Vec<String>,
}

impl Report {
    fn warn(&mut self, w: String) {
        tracing::warn!("{w}");
        self.warnings.push(w);
    }
}

/// The grant of a rule; `None` for an empty access (a node with permissions `none`).
fn rule_grant(r: &cdi_specs::plan::DeviceRule) -> Result<Option<Grant>, EngineError> {
    if r.access.is_empty() {
        return Ok(None);
    }
    let err = |message: &str| EngineError::Rule {
        typ: r.typ.clone(),
        major: r.major,
        minor: r.minor,
        access: r.access.clone(),
        message: message.to_string(),
    };
    let dev_type = match r.typ.as_str() {
        "c" => DevType::Char,
        "b" => DevType::Block,
        _ => return Err(err("the type must be c or b")),
    };
    let (Ok(major), Ok(minor)) = (u64::try_from(r.major), u64::try_from(r.minor)) else {
        return Err(err("major and minor must be exact numbers"));
    };
    let access = Access::parse(&r.access).ok_or_else(|| err("access must be letters of rwm"))?;
    Ok(Some(Grant {
        dev: DeviceNode {
            dev_type,
            major,
            minor,
        },
        access,
    }))
}

/// The warning for composed edits only a runtime can apply while it creates the container
/// (additionalGids, intelRdt, netDevices), or `None`.
pub fn runtime_only(c: &cdi_specs::Composed) -> Option<String> {
    let mut what = Vec::new();
    if !c.additional_gids.is_empty() {
        let gids: Vec<String> = c.additional_gids.iter().map(u32::to_string).collect();
        what.push(format!("additionalGids {}", gids.join(",")));
    }
    if c.intel_rdt.is_some() {
        what.push("intelRdt".to_string());
    }
    if !c.net_devices.is_empty() {
        let n: Vec<String> = c
            .net_devices
            .iter()
            .map(|d| format!("{}->{}", d.host_interface_name, d.name))
            .collect();
        what.push(format!("netDevices {}", n.join(",")));
    }
    (!what.is_empty()).then(|| {
        format!(
            "the CDI edits set {}, which only the runtime can apply when it creates the container; not applied (request the device through the engine's CDI support, e.g. podman --device)",
            what.join(", ")
        )
    })
}

/// Applies `plan` to `target` through `sys`. Order: device nodes and their cgroup grants
/// (plus `plan.device_rules`), mounts (composed order), replaced files, symlinks of
/// `create-symlinks` hooks, ONE loader cache for `plan.libraries` and the folders of
/// `update-ldcache` hooks, then warnings for env edits, hooks not carried out and what only
/// a runtime can apply ([`runtime_only`]).
pub fn apply(target: &Target<'_>, plan: &Plan, sys: &dyn Sys) -> Result<Report, EngineError> {
    let rootfs = target.rootfs;
    // Composition wants each node's type and numbers: a node that lacks them is completed
    // from its host node first (opened once, kept for placing it); the others are
    // completed when placed, one at a time, as composed (the last node of a path).
    let incomplete = |n: &cdi_specs::DeviceNode| {
        n.typ.is_empty() || (n.typ != "p" && n.major.is_none_or(|m| m == 0))
    };
    let mut filled: HashMap<String, nodes::Filled> = HashMap::new();
    let completed_edits;
    let edits = if plan.edits.device_nodes.iter().any(incomplete) {
        let mut e = plan.edits.clone();
        for n in e.device_nodes.iter_mut().filter(|n| incomplete(n)) {
            let f = nodes::fill(n)?;
            *n = f.completed.clone();
            filled.insert(compose::clean_path(&n.path), f);
        }
        completed_edits = e;
        &completed_edits
    } else {
        &plan.edits
    };
    let composed = compose::compose([edits]).map_err(|e| EngineError::Compose(e.to_string()))?;
    let mut report = Report::default();
    // Directories made (or found) for nodes, mount points and links, so that a run of them
    // in one directory creates it once; forgotten after a directory mount.
    let mut known = KnownDirs::default();

    // 1. Device nodes, then the cgroup rules that let the container open them.
    let can_mknod = !composed.device_nodes.is_empty() && sys.can_mknod();
    for n in &composed.device_nodes {
        // The prefilled node of this path, when it is the one composed (a later node of the
        // same path may have replaced it).
        let f = match filled.remove(&compose::clean_path(&n.path)) {
            Some(f) if f.completed == *n => f,
            _ => nodes::fill(n)?,
        };
        let method = nodes::choose(can_mknod, &f.path);
        if let Some(line) = nodes::place(rootfs, sys, &f, method, &mut known)? {
            match method {
                NodeMethod::Mknod => report.nodes_created += 1,
                NodeMethod::Bind => report.nodes_bound += 1,
            }
            report.log.push(line);
        }
    }
    report.nodes_total = composed.device_nodes.len();
    let mut grants: Vec<Grant> = Vec::new();
    for r in composed.device_rules.iter().chain(&plan.device_rules) {
        if let Some(g) = rule_grant(r)? {
            grants.push(g);
        }
    }
    let mut seen = HashSet::new();
    grants.retain(|g| seen.insert(*g));
    if !grants.is_empty() {
        if sys.user_namespace() {
            // Said once, never silently: there is nothing to edit, and nothing to allow.
            let list: Vec<String> = grants.iter().map(|g| g.to_string()).collect();
            report.log.push(format!(
                "device cgroup not edited for {}: the hook runs in a user namespace (a rootless container), where the runtime sets up no device cgroup to edit; the container opens the nodes with their host permissions",
                list.join(", ")
            ));
        } else {
            report
                .log
                .extend(sys.grant(&grants, &target.cgroup, &target.mounts)?);
        }
    }
    report.grants = grants;

    // 2. Mounts, in composed order; one log line names them all (one event, however many).
    let mut bound: Vec<String> = Vec::new();
    for m in &composed.mounts {
        if mounts::bind_mount(rootfs, sys, m, &mut known)? {
            report.mounts_bound += 1;
            bound.push(if m.host_path == m.container_path {
                m.host_path.clone()
            } else {
                format!("{} at {}", m.host_path, m.container_path)
            });
        }
    }
    report.mounts_total = composed.mounts.len();
    if report.mounts_total > 0 {
        report.log.push(format!(
            "bind-mounted {} of {} files{}{}",
            report.mounts_bound,
            report.mounts_total,
            if bound.is_empty() { "" } else { ": " },
            bound.join(", ")
        ));
    }

    // 3. Host files over existing image files.
    for r in &plan.replace {
        if let Some(line) = mounts::replace(rootfs, sys, r)? {
            report.replaced += 1;
            report.log.push(line);
        }
    }

    // 4. What the hooks of the edits ask for.
    let mut links: Vec<Link> = Vec::new();
    let mut folders: Vec<String> = Vec::new();
    let mut other_hooks: Vec<String> = Vec::new();
    for h in &composed.hooks {
        match hooks::known_hook(h) {
            Some(KnownHook::CreateSymlinks(ls)) => {
                for l in ls {
                    let l = hooks::parse_link(&l)?;
                    if !links.contains(&l) {
                        links.push(l);
                    }
                }
            }
            Some(KnownHook::UpdateLdcache(ds)) => {
                for d in ds {
                    if !folders.contains(&d) {
                        folders.push(d);
                    }
                }
            }
            Some(KnownHook::EnableCudaCompat) => report.warn(format!(
                "the CDI edits ask for an enable-cuda-compat hook, which the engine does not carry out (its planner lists {} as an update-ldcache folder instead); not run: {} {}",
                cache::COMPAT_DIR,
                h.path,
                h.args.join(" ")
            )),
            None => {
                let s = format!("{} {}", h.path, h.args.join(" "));
                if !other_hooks.contains(&s) {
                    other_hooks.push(s);
                }
            }
        }
    }
    if !links.is_empty() {
        let (n, line) = links::create_links(rootfs, &links, &mut known)?;
        report.links_created = n;
        report.links_total = links.len();
        report.log.push(line);
    }

    // 5. One loader cache.
    let folders = cache::order_folders(&folders);
    let mut log = Vec::new();
    let counts = cache::regenerate(rootfs, sys, &plan.libraries, &folders, &mut log)?;
    report.log.extend(log);
    if let Some(c) = counts {
        report.libraries_added = c.libraries_added;
        report.cache_entries = Some(c.entries);
    }

    // 6. What a hook cannot do.
    if !composed.env.is_empty() {
        report.warn(format!(
            "the CDI edits set environment variables, which a hook cannot change in a created container; not applied: {}",
            composed.env.join(" ")
        ));
    }
    if !other_hooks.is_empty() {
        report.warn(format!(
            "the CDI edits ask for hooks the hpc-hooks engine does not implement; not run: {}",
            other_hooks.join("; ")
        ));
    }
    if let Some(w) = runtime_only(&composed) {
        report.warn(w);
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
