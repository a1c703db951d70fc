//! mpi-hook's planning: Sarus's configuration contract (`MPI_LIBS`, `MPI_DEPENDENCY_LIBS`,
//! `BIND_MOUNTS`, `MPI_COMPATIBILITY_TYPE`), matching host libraries with the container's
//! ld.so.cache entries (or the libraries the container's program loads) of the same linker
//! name and architecture, and the ABI rules, within one MPI family (MPICH ABI or Open
//! MPI): host libraries of a family the image does not have are left out, with the
//! dependencies only they need; an image of another family is refused. Two models
//! (Apptainer's names): hybrid replaces the image's MPI; bind (annotation
//! `com.hooks.mpi.mode=bind`) also serves an image without MPI from the private lib dir.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use cdi_specs::plan::{DeviceRule, Library, Plan, Replace};
use cdi_specs::types::{DeviceNode as CdiNode, Mount};

use crate::abi::{self, CompatType, MpiFamily, Verdict};
use crate::devices::{self, DeviceNode};
use crate::elf;
use crate::hostlib::{self, HostLib, MAX_ELF_BYTES};
use crate::ldcache::LdCache;
use crate::ldcache_write::cache_flags_for;
use crate::plan::glibc::{container_libc, ContainerLibc};
use crate::plan::host_str;
use crate::plan::loader::{self, Process};
use crate::plan::openmpi;
use crate::rootfs::Rootfs;

pub const MPI_ANNOTATION: &str = "com.hooks.mpi.enabled";
/// The annotation that chooses the MPI model: `hybrid` (default) or `bind`.
pub const MPI_MODE_ANNOTATION: &str = "com.hooks.mpi.mode";

/// Apptainer's two MPI models.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MpiMode {
    /// The image has an MPI; the host's replaces it (an image without MPI is refused).
    #[default]
    Hybrid,
    /// As hybrid when the image has an MPI; otherwise the host MPI and its dependencies
    /// are added in the hooks' private library directory and the regenerated cache.
    Bind,
}

impl std::fmt::Display for MpiMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MpiMode::Hybrid => "hybrid",
            MpiMode::Bind => "bind",
        })
    }
}

impl std::str::FromStr for MpiMode {
    type Err = MpiError;
    fn from_str(s: &str) -> Result<Self, MpiError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hybrid" => Ok(MpiMode::Hybrid),
            "bind" => Ok(MpiMode::Bind),
            _ => Err(MpiError::Mode(s.to_string())),
        }
    }
}

/// The model a container asks for with [`MPI_MODE_ANNOTATION`] (absent: hybrid).
pub fn mode_from_annotation(value: Option<&str>) -> Result<MpiMode, MpiError> {
    value.map_or(Ok(MpiMode::Hybrid), str::parse)
}

#[derive(Debug, thiserror::Error)]
pub enum MpiError {
    #[error("MPI_LIBS is empty: set it in the hook's hooks.d env (or --mpi-libs) to the host MPI libraries, e.g. MPI_LIBS=/usr/lib/x86_64-linux-gnu/libmpich.so.12")]
    NoMpiLibs,
    #[error("the image has no usable /etc/ld.so.cache ({0}); the hook finds the image's MPI through it: add `RUN ldconfig` at the end of the image build")]
    NoCache(String),
    #[error("no MPI library found in the image's ld.so.cache{program} (looked for {names} for {arch}); the image must contain an MPI of the host's family (e.g. MPICH 3.x/4.x, ABI 12) registered in its loader cache or loaded by the container's program (RUNPATH, RPATH, LD_LIBRARY_PATH): install it and add `RUN ldconfig` at the end of the image build; or, for an application built against the host MPI's ABI in an image without MPI, add the annotation com.hooks.mpi.mode=bind")]
    NoContainerMpi {
        names: String,
        arch: String,
        /// `, nor among the libraries /opt/app/bin/hello loads` when the program was followed.
        program: String,
    },
    #[error("the image's MPI is {image}, but the host offers {host}: another MPI family, whose ABI cannot replace it. Run an image built with the host's MPI family, have the admin add the host's {image_family} to MPI_LIBS (hpc-hooks-configure detects both families), or start the container without the annotation com.hooks.mpi.enabled=true to use the image's own MPI")]
    CrossFamily {
        image: String,
        host: String,
        image_family: MpiFamily,
    },
    #[error("host MPI library {host} (version {hv}) is not ABI-compatible with the image's {container} (version {cv}): {why}. Use an image built with an MPI of the host's ABI, or change MPI_COMPATIBILITY_TYPE (now {ty})")]
    Incompatible {
        host: PathBuf,
        hv: String,
        container: PathBuf,
        cv: String,
        why: String,
        ty: CompatType,
    },
    #[error("the image's libc is musl ({musl}), but the host MPI {host} is linked against glibc: it cannot run in a musl image. Run a glibc-based image (Debian, Ubuntu, RHEL...) to use the host MPI, or start the container without the annotation com.hooks.mpi.enabled=true to use the image's own MPI")]
    Musl { musl: PathBuf, host: PathBuf },
    #[error("{MPI_MODE_ANNOTATION}={0:?} is not an MPI model: use hybrid (the image's MPI is replaced, the default) or bind (an image without MPI gets the host MPI)")]
    Mode(String),
    #[error("{var} entry {path}: {message}")]
    BindMount {
        /// The setting that names it (`BIND_MOUNTS`, `NET_DEVICES`).
        var: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("host library {path} has no loader-cache architecture (ELF class {class:?}, machine {machine}); it cannot be injected")]
    UnknownArch {
        path: PathBuf,
        class: elf::ElfClass,
        machine: String,
    },
    #[error(transparent)]
    HostLib(#[from] hostlib::HostLibError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Device(#[from] devices::DeviceError),
}

/// mpi-hook configuration (Sarus names).
#[derive(Debug, Clone, Default)]
pub struct MpiConfig {
    pub mpi_libs: Vec<PathBuf>,
    pub dependency_libs: Vec<PathBuf>,
    pub bind_mounts: Vec<PathBuf>,
    pub compat: CompatType,
    pub mode: MpiMode,
}

/// A container library that may be replaced.
#[derive(Debug, Clone)]
pub struct ContainerLib {
    /// Path of the cache entry.
    pub path: PathBuf,
    /// Real file inside the rootfs.
    pub real: PathBuf,
    pub version: Vec<u32>,
}

/// Container libraries with the host library's linker name and architecture.
pub fn container_counterparts(
    rootfs: &Rootfs,
    cache: &LdCache,
    host: &HostLib,
) -> Result<Vec<ContainerLib>, MpiError> {
    let mut out: Vec<ContainerLib> = Vec::new();
    let mut seen = BTreeSet::new();
    for e in &cache.entries {
        if e.hwcap != 0 || !e.arch().matches_elf(host.facts.class, host.facts.machine) {
            continue;
        }
        let Some(n) = abi::parse_lib_name(&e.soname) else {
            continue;
        };
        if n.linker_name != host.linker_name {
            continue;
        }
        let path = PathBuf::from(&e.path);
        let chain = match rootfs.link_chain(&path) {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!("ignoring the image's cache entry {}: {err}", e.path);
                continue;
            }
        };
        let Ok(real) = rootfs.real_path(&path) else {
            tracing::warn!(
                "ignoring the image's cache entry {}: it does not resolve inside the rootfs",
                e.path
            );
            continue;
        };
        if !seen.insert(real.clone()) {
            continue;
        }
        // The cache can lie (stale or hostile): check the file's ELF identity.
        let file = match rootfs.open_read(&real) {
            Ok(f) => f,
            Err(err) => {
                tracing::warn!("ignoring the image's cache entry {}: {err}", e.path);
                continue;
            }
        };
        let ok = elf::read_file(&file, MAX_ELF_BYTES)
            .is_ok_and(|f| f.class == host.facts.class && f.machine == host.facts.machine);
        if !ok {
            tracing::warn!(
                "ignoring the image's {} ({}): not a {} ELF object of the host library's class",
                e.path,
                real.display(),
                elf::machine_name(host.facts.machine)
            );
            continue;
        }
        let mut names: Vec<String> = vec![e.soname.clone()];
        names.extend(
            chain
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        );
        let version = abi::version_from_chain(names.iter().map(String::as_str));
        out.push(ContainerLib {
            path,
            real,
            version,
        });
    }
    Ok(out)
}

/// An MPI the image has in its loader cache.
#[derive(Debug, Clone)]
pub struct ImageMpi {
    pub family: MpiFamily,
    /// Linker names it is known by (the cache entry's or needed name's, the real file's).
    pub linker_names: Vec<String>,
    /// The real file inside the rootfs.
    pub real: PathBuf,
    pub version: Vec<u32>,
}

impl ImageMpi {
    pub fn describe(&self) -> String {
        let name = self
            .real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        abi::describe_mpi(self.family, &name, &self.version)
    }
}

/// The MPIs in the image's cache for the ELF class and machine of `like`, each file once:
/// entries with an MPI's name whose file (read in-root, bounded) is an MPI of a family.
pub fn image_mpis(rootfs: &Rootfs, cache: &LdCache, like: &HostLib) -> Vec<ImageMpi> {
    let mut out: Vec<ImageMpi> = Vec::new();
    for e in &cache.entries {
        if e.hwcap != 0 || !e.arch().matches_elf(like.facts.class, like.facts.machine) {
            continue;
        }
        let Some(n) = abi::parse_lib_name(&e.soname) else {
            continue;
        };
        // Names first (no file read): only a possible MPI is opened.
        if abi::mpi_family(&n.linker_name, &n.version, &[]).is_none()
            && n.linker_name != "libmpi.so"
        {
            continue;
        }
        let path = PathBuf::from(&e.path);
        let (Ok(chain), Ok(real)) = (rootfs.link_chain(&path), rootfs.real_path(&path)) else {
            continue;
        };
        if out.iter().any(|m| m.real == real) {
            continue;
        }
        let Ok(file) = rootfs.open_read(&real) else {
            continue;
        };
        let Ok(facts) = elf::read_file(&file, MAX_ELF_BYTES) else {
            continue;
        };
        if facts.class != like.facts.class || facts.machine != like.facts.machine {
            continue;
        }
        let mut names = vec![e.soname.clone()];
        names.extend(
            chain
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        );
        let version = abi::version_from_chain(names.iter().map(String::as_str));
        if let Some(family) = abi::mpi_family(&n.linker_name, &version, &facts.needed) {
            out.push(ImageMpi {
                family,
                linker_names: linker_names(&names),
                real,
                version,
            });
        }
    }
    out
}

/// The distinct linker names of a chain of library names.
fn linker_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if let Some(l) = abi::parse_lib_name(n) {
            if !out.contains(&l.linker_name) {
                out.push(l.linker_name);
            }
        }
    }
    out
}

/// The MPIs the container's program loads from outside the loader cache (RUNPATH, RPATH,
/// LD_LIBRARY_PATH: Spack, EasyBuild and `/opt` prefixes), found as the loader would.
pub fn program_mpis(rootfs: &Rootfs, cache: &LdCache, process: &Process<'_>) -> Vec<ImageMpi> {
    let found = match loader::program_libraries(rootfs, cache, process) {
        Ok(f) => f,
        Err(e) => {
            tracing::info!("not looking for an MPI outside the loader cache: {e}");
            return Vec::new();
        }
    };
    let mut out: Vec<ImageMpi> = Vec::new();
    for f in found {
        if out.iter().any(|m| m.real == f.real) {
            continue;
        }
        let mut names = vec![f.needed.clone()];
        if let Ok(chain) = rootfs.link_chain(&f.path) {
            names.extend(
                chain
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
            );
        }
        let version = abi::version_from_chain(names.iter().map(String::as_str));
        let Some(n) = abi::parse_lib_name(&f.needed) else {
            continue;
        };
        if let Some(family) = abi::mpi_family(&n.linker_name, &version, &f.facts.needed) {
            tracing::info!(
                "the image's MPI {} is outside its loader cache: found as the container's program loads it ({})",
                f.real.display(),
                f.path.display()
            );
            out.push(ImageMpi {
                family,
                linker_names: linker_names(&names),
                real: f.real,
                version,
            });
        }
    }
    out
}

/// The libraries the container's program loads (see [`loader::program_libraries`]) with
/// the host library's linker name, class and machine: its counterparts outside the loader
/// cache, each file once.
pub(crate) fn program_counterparts(
    rootfs: &Rootfs,
    found: &[loader::Found],
    host: &HostLib,
) -> Vec<ContainerLib> {
    let mut out: Vec<ContainerLib> = Vec::new();
    for f in found {
        if f.facts.class != host.facts.class
            || f.facts.machine != host.facts.machine
            || out.iter().any(|c| c.real == f.real)
        {
            continue;
        }
        let mut names = vec![f.needed.clone()];
        if let Ok(chain) = rootfs.link_chain(&f.path) {
            names.extend(
                chain
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
            );
        }
        if !linker_names(&names).contains(&host.linker_name) {
            continue;
        }
        out.push(ContainerLib {
            path: f.path.clone(),
            real: f.real.clone(),
            version: abi::version_from_chain(names.iter().map(String::as_str)),
        });
    }
    out
}

/// The family of a host library (`None`: not an MPI by name, e.g. a vendor add-on).
pub fn host_family(host: &HostLib) -> Option<MpiFamily> {
    abi::mpi_family(&host.linker_name, &host.version, &host.facts.needed)
}

fn describe_host(host: &HostLib, family: MpiFamily) -> String {
    let name = host
        .real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    abi::describe_mpi(family, &name, &host.version)
}

/// Sonames reachable from `roots` through DT_NEEDED, within the configured libraries.
fn reachable(roots: &[&HostLib], deps: &[HostLib]) -> HashSet<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut todo: Vec<&str> = roots
        .iter()
        .flat_map(|h| h.facts.needed.iter().map(String::as_str))
        .collect();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.to_string()) {
            continue;
        }
        for d in deps.iter().filter(|d| d.soname() == n) {
            todo.extend(d.facts.needed.iter().map(String::as_str));
        }
    }
    seen
}

/// A host library added to the hooks' private library directory (and the regenerated
/// loader cache) under its SONAME.
pub(crate) fn add_lib(host: &HostLib) -> Result<Library, MpiError> {
    let flags = cache_flags_for(host.facts.class, host.facts.machine).ok_or_else(|| {
        MpiError::UnknownArch {
            path: host.path.clone(),
            class: host.facts.class,
            machine: elf::machine_name(host.facts.machine).into(),
        }
    })?;
    Ok(Library {
        host_path: host_str(&host.real),
        soname: host.soname(),
        cache_flags: flags,
    })
}

/// Plans the MPI injection. Returns the plan and every host library it injects (for
/// the glibc decision).
pub fn plan_mpi(rootfs: &Rootfs, cfg: &MpiConfig) -> Result<(Plan, Vec<HostLib>), MpiError> {
    plan_mpi_for(rootfs, cfg, None)
}

/// [`plan_mpi`] for a container whose process is known: when the image's loader cache has
/// no MPI, the MPI its program loads (through RUNPATH and the like) is the one replaced.
pub fn plan_mpi_for(
    rootfs: &Rootfs,
    cfg: &MpiConfig,
    process: Option<&Process<'_>>,
) -> Result<(Plan, Vec<HostLib>), MpiError> {
    if cfg.mpi_libs.is_empty() {
        return Err(MpiError::NoMpiLibs);
    }
    let cache = match crate::plan::container_cache(rootfs) {
        Ok(c) => c,
        Err(why) => {
            // musl images (Alpine) have no loader cache: say what really stands in the way.
            if let Some(Ok(ContainerLibc::Musl(musl))) = crate::hostmpi::host_arch()
                .ok()
                .map(|(class, machine)| container_libc(rootfs, None, class, machine))
            {
                return Err(MpiError::Musl {
                    musl,
                    host: cfg.mpi_libs[0].clone(),
                });
            }
            return Err(MpiError::NoCache(why));
        }
    };
    let hosts = cfg
        .mpi_libs
        .iter()
        .map(|p| hostlib::inspect(p))
        .collect::<Result<Vec<_>, _>>()?;
    // The families on both sides: the host's MPI libraries of a family the image lacks are
    // left out; no family in common is a refusal naming both.
    let mut image = hosts
        .first()
        .map(|h| image_mpis(rootfs, &cache, h))
        .unwrap_or_default();
    let from_program = image.is_empty() && process.is_some();
    if let (true, Some(p)) = (from_program, process) {
        image = program_mpis(rootfs, &cache, p);
    }
    let image_families: BTreeSet<MpiFamily> = image.iter().map(|m| m.family).collect();
    let host_families: BTreeSet<MpiFamily> = hosts.iter().filter_map(host_family).collect();
    if !image_families.is_empty()
        && !host_families.is_empty()
        && image_families.is_disjoint(&host_families)
    {
        let image_family = image[0].family;
        return Err(MpiError::CrossFamily {
            image: image
                .iter()
                .map(ImageMpi::describe)
                .collect::<Vec<_>>()
                .join(", "),
            host: hosts
                .iter()
                .filter_map(|h| host_family(h).map(|f| describe_host(h, f)))
                .collect::<Vec<_>>()
                .join(", "),
            image_family,
        });
    }
    let mut plan = Plan::default();
    let mut injected = Vec::new();
    let mut any_counterpart = false;
    let mut mpi_names = Vec::new();
    let mut pending_add = Vec::new();
    let mut used: Vec<HostLib> = Vec::new();
    let mut unused: Vec<HostLib> = Vec::new();
    for host in hosts {
        mpi_names.push(host.linker_name.clone());
        let family = host_family(&host);
        if let Some(f) =
            family.filter(|f| !image_families.is_empty() && !image_families.contains(f))
        {
            tracing::info!(
                "host {} ({}) left out: the image's MPI is {}",
                host.path.display(),
                describe_host(&host, f),
                image
                    .iter()
                    .map(ImageMpi::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            unused.push(host);
            continue;
        }
        // Within the family: an image file of another family is never a counterpart
        // (MPICH's libmpi.so.12 and Open MPI's libmpi.so.40 share a linker name).
        let found = if from_program {
            image
                .iter()
                .filter(|m| m.linker_names.contains(&host.linker_name))
                .map(|m| ContainerLib {
                    path: m.real.clone(),
                    real: m.real.clone(),
                    version: m.version.clone(),
                })
                .collect()
        } else {
            container_counterparts(rootfs, &cache, &host)?
        };
        let cands: Vec<ContainerLib> = found
            .into_iter()
            .filter(|c| {
                family.is_none()
                    || image
                        .iter()
                        .find(|m| m.real == c.real)
                        .is_none_or(|m| Some(m.family) == family)
            })
            .collect();
        if cands.is_empty() {
            pending_add.push(host);
            continue;
        }
        any_counterpart = true;
        for c in cands {
            match abi::check(&host.version, &c.version, cfg.compat) {
                Verdict::Compatible => {}
                Verdict::CompatibleWithWarning(w) | Verdict::Beside(w) => tracing::warn!(
                    "{} over the image's {}: {w}",
                    host.path.display(),
                    c.real.display()
                ),
                Verdict::Incompatible(why) => {
                    return Err(MpiError::Incompatible {
                        host: host.real.clone(),
                        hv: abi::version_string(&host.version),
                        container: c.real.clone(),
                        cv: abi::version_string(&c.version),
                        why,
                        ty: cfg.compat,
                    })
                }
            }
            plan.replace.push(Replace {
                host_path: host_str(&host.real),
                container_path: host_str(&c.real),
            });
        }
        used.push(host.clone());
        injected.push(host);
    }
    if !any_counterpart && cfg.mode == MpiMode::Bind {
        tracing::info!(
            "bind model: the image has no MPI ({}); the host MPI goes into the private library directory",
            mpi_names.join(", ")
        );
    } else if !any_counterpart {
        let arch = pending_add
            .first()
            .or(unused.first())
            .map(|h| elf::machine_name(h.facts.machine))
            .unwrap_or("?");
        let program = match process {
            Some(p) => format!(", nor among the libraries its program {} loads", p.program),
            None => String::new(),
        };
        return Err(MpiError::NoContainerMpi {
            names: mpi_names.join(", "),
            arch: arch.into(),
            program,
        });
    }
    for host in pending_add {
        plan.libraries.push(add_lib(&host)?);
        used.push(host.clone());
        injected.push(host);
    }
    // A host Open MPI loads components, help texts and its parameter file by path, and
    // its components load PMIx, UCX, libfabric...: all of its own version, bound read-only
    // where its libopen-pal looks for them (its install paths), over the image's.
    let mut runtime_mounts: Vec<PathBuf> = Vec::new();
    let mut runtime_libs: Vec<PathBuf> = Vec::new();
    let open_mpis: Vec<&HostLib> = used
        .iter()
        .filter(|h| host_family(h) == Some(MpiFamily::OpenMpi))
        .collect();
    if !open_mpis.is_empty() {
        let host_cache = openmpi::host_cache()
            .map_err(|e| tracing::warn!("host loader cache /etc/ld.so.cache: {e}; the libraries the host Open MPI's components need are not added"))
            .ok();
        for h in open_mpis {
            let rt = openmpi::discover(h, host_cache.as_ref());
            match &rt.components {
                Some(d) => tracing::info!(
                    "host Open MPI {}: components {}, with {}, and {} libraries they load",
                    h.path.display(),
                    d.display(),
                    rt.others
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    rt.libraries.len()
                ),
                None => tracing::warn!(
                    "host Open MPI {}: no component directory next to {} (openmpi/, openmpi/lib/openmpi3/ with mca_*.so); the image's own components stay and MPI_Init may fail: name the host's component directory in BIND_MOUNTS",
                    h.path.display(),
                    h.real.display()
                ),
            }
            // What BIND_MOUNTS already binds (e.g. UCX's directory) is bound once.
            let admin: Vec<PathBuf> = cfg
                .bind_mounts
                .iter()
                .flat_map(|b| [b.clone(), std::fs::canonicalize(b).unwrap_or_default()])
                .collect();
            for p in rt.binds() {
                if !runtime_mounts.contains(p) && !admin.contains(p) {
                    runtime_mounts.push(p.clone());
                }
            }
            runtime_libs.extend(rt.libraries);
        }
    }
    // Dependencies only the left-out family needs are left out with it.
    let mut deps = cfg
        .dependency_libs
        .iter()
        .map(|p| hostlib::inspect(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut known: HashSet<String> = deps
        .iter()
        .chain(used.iter())
        .chain(unused.iter())
        .map(HostLib::soname)
        .collect();
    for p in runtime_libs {
        match hostlib::inspect(&p) {
            Ok(h) if known.insert(h.soname()) => deps.push(h),
            Ok(_) => {}
            Err(e) => tracing::warn!("not adding {}: {e}", p.display()),
        }
    }
    let only_unused: HashSet<String> = if unused.is_empty() {
        HashSet::new()
    } else {
        let of_used = reachable(&used.iter().collect::<Vec<_>>(), &deps);
        reachable(&unused.iter().collect::<Vec<_>>(), &deps)
            .into_iter()
            .filter(|n| !of_used.contains(n))
            .collect()
    };
    for host in deps {
        if only_unused.contains(&host.soname()) {
            tracing::info!(
                "dependency {} left out: only the host's MPI of another family needs it",
                host.path.display()
            );
            continue;
        }
        let cands = container_counterparts(rootfs, &cache, &host)?;
        let mut replaced = false;
        for c in &cands {
            match abi::check(&host.version, &c.version, CompatType::Dependencies) {
                Verdict::Compatible | Verdict::CompatibleWithWarning(_) => {
                    plan.replace.push(Replace {
                        host_path: host_str(&host.real),
                        container_path: host_str(&c.real),
                    });
                    replaced = true;
                }
                Verdict::Beside(why) | Verdict::Incompatible(why) => tracing::info!(
                    "dependency {} kept beside the image's {}: {why}",
                    host.path.display(),
                    c.real.display()
                ),
            }
        }
        if !replaced {
            plan.libraries.push(add_lib(&host)?);
        }
        injected.push(host);
    }
    for p in &cfg.bind_mounts {
        host_bind(p)?.add_to(&mut plan);
    }
    for p in &runtime_mounts {
        let path = host_str(p);
        plan.edits.mounts.push(ro_mount(&path, &path));
    }
    Ok((plan, injected))
}

/// What a host path given in `BIND_MOUNTS` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindKind {
    File,
    /// A directory, with the device nodes directly in it (granted in the device cgroup).
    Dir {
        devices: Vec<DeviceNode>,
    },
    Device(DeviceNode),
}

/// One `BIND_MOUNTS` entry, classified on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBind {
    pub host: PathBuf,
    pub kind: BindKind,
}

/// Mount options of an admin's file or device-free directory: `ro,nosuid,nodev`.
const RO_OPTIONS: [&str; 4] = ["ro", "nosuid", "nodev", "bind"];
/// Mount options of a directory holding device nodes: usable (`dev`), writable,
/// `nosuid,noexec`; its nodes are granted through [`DeviceRule`]s.
const DEVICE_DIR_OPTIONS: [&str; 4] = ["rw", "nosuid", "noexec", "bind"];

/// A read-only (`ro,nosuid,nodev`) bind of a host file or directory.
pub(crate) fn ro_mount(host_path: &str, container_path: &str) -> Mount {
    Mount {
        host_path: host_path.to_string(),
        container_path: container_path.to_string(),
        options: RO_OPTIONS.iter().map(|o| o.to_string()).collect(),
        typ: String::new(),
    }
}

fn dev_type_letter(t: devices::DevType) -> &'static str {
    match t {
        devices::DevType::Char => "c",
        devices::DevType::Block => "b",
    }
}

impl HostBind {
    /// The entry as plan edits: a file or directory is a mount at the same path; a
    /// device node is a CDI device node (the engine binds or creates it); a directory's
    /// device nodes become device rules.
    pub fn add_to(&self, plan: &mut Plan) {
        let path = host_str(&self.host);
        let mount = |options: &[&str]| Mount {
            host_path: path.clone(),
            container_path: path.clone(),
            options: options.iter().map(|o| o.to_string()).collect(),
            typ: String::new(),
        };
        match &self.kind {
            BindKind::File => plan.edits.mounts.push(mount(&RO_OPTIONS)),
            BindKind::Dir { devices } if devices.is_empty() => {
                plan.edits.mounts.push(mount(&RO_OPTIONS))
            }
            BindKind::Dir { devices } => {
                plan.edits.mounts.push(mount(&DEVICE_DIR_OPTIONS));
                for d in devices {
                    plan.device_rules.push(DeviceRule {
                        typ: dev_type_letter(d.dev_type).into(),
                        major: d.major as i64,
                        minor: d.minor as i64,
                        access: "rwm".into(),
                    });
                }
            }
            BindKind::Device(d) => plan.edits.device_nodes.push(CdiNode {
                path: path.clone(),
                host_path: path.clone(),
                typ: dev_type_letter(d.dev_type).into(),
                major: Some(d.major as i64),
                minor: Some(d.minor as i64),
                permissions: "rwm".into(),
                ..CdiNode::default()
            }),
        }
    }
}

/// Classifies a `BIND_MOUNTS` entry.
pub fn host_bind(path: &Path) -> Result<HostBind, MpiError> {
    host_bind_for(path, "BIND_MOUNTS")
}

/// [`host_bind`] for an entry of the setting `var` (named in the error texts).
pub(crate) fn host_bind_for(path: &Path, var: &'static str) -> Result<HostBind, MpiError> {
    let err = |m: String| MpiError::BindMount {
        var,
        path: path.to_owned(),
        message: m,
    };
    if !path.is_absolute() {
        return Err(err("must be an absolute host path".into()));
    }
    let md = std::fs::metadata(path)
        .map_err(|e| err(format!("{e}; fix {var} in the hook's hooks.d env")))?;
    let kind = if let Some(d) = devices::host_device(path)? {
        BindKind::Device(d)
    } else if md.is_dir() {
        // Only device nodes the admin put in the directory itself: entries are not
        // followed (a symlink to a device elsewhere grants nothing).
        let mut devs: Vec<DeviceNode> = Vec::new();
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten().take(4096) {
                // DirEntry::metadata does not traverse symlinks (fstatat NOFOLLOW).
                if let Some(d) = e
                    .metadata()
                    .ok()
                    .as_ref()
                    .and_then(DeviceNode::from_metadata)
                {
                    devs.push(d);
                }
            }
        }
        BindKind::Dir { devices: devs }
    } else if md.is_file() {
        BindKind::File
    } else {
        return Err(err(
            "is neither a file, a directory nor a device node".into()
        ));
    };
    Ok(HostBind {
        host: path.to_owned(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_musl_image_is_refused_naming_musl_not_the_loader_cache() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("lib")).unwrap();
        std::fs::write(t.path().join("lib/ld-musl-x86_64.so.1"), b"").unwrap();
        let rootfs = Rootfs::open(t.path()).unwrap();
        let cfg = MpiConfig {
            mpi_libs: vec![PathBuf::from("/usr/lib/x86_64-linux-gnu/libmpich.so.12")],
            ..MpiConfig::default()
        };
        let e = plan_mpi(&rootfs, &cfg).unwrap_err().to_string();
        if cfg!(target_arch = "x86_64") {
            assert!(
                e.starts_with("the image's libc is musl (/lib/ld-musl-x86_64.so.1), but the host MPI /usr/lib/x86_64-linux-gnu/libmpich.so.12 is linked against glibc"),
                "{e}"
            );
        }
    }

    #[test]
    fn bind_mounts_dir_scan_does_not_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("admin-dir");
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::symlink("/dev/null", d.join("null-link")).unwrap();
        std::fs::write(d.join("file"), b"x").unwrap();
        let b = host_bind(&d).unwrap();
        assert_eq!(b.kind, BindKind::Dir { devices: vec![] });
    }

    #[test]
    fn bind_mounts_dir_scan_grants_real_device_nodes() {
        // /dev holds real device nodes (null is c 1:3) next to symlinks (fd, stdin...).
        let b = host_bind(Path::new("/dev")).unwrap();
        let BindKind::Dir { devices } = b.kind else {
            panic!("/dev is not classified as a directory: {b:?}");
        };
        let null = DeviceNode {
            dev_type: devices::DevType::Char,
            major: 1,
            minor: 3,
        };
        assert!(devices.contains(&null), "{devices:?}");
    }
}
