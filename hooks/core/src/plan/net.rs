//! The host's network stack (`NET_LIBS`: libfabric, UCX as one unit) over the image's
//! libraries of the same linker name and SONAME major, refused when an image library needs a
//! symbol version the host's does not define; with their dependencies, provider and module
//! directories (`NET_DIRS`) and fabric device nodes (`NET_DEVICES`), as mpi-hook plans them.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cdi_specs::plan::{Plan, Replace};

use crate::abi::{self, CompatType, Verdict};
use crate::elf::{self, ElfFacts};
use crate::hostlib::{self, HostLib, MAX_ELF_BYTES};
use crate::ldcache::LdCache;
use crate::plan::host_str;
use crate::plan::loader::{self, Found, Process};
use crate::plan::mpi::{
    add_lib, container_counterparts, host_bind_for, program_counterparts, ro_mount, BindKind,
    ContainerLib, MpiError,
};
use crate::plan::nccl;
use crate::rootfs::Rootfs;

/// The annotation that asks for the host's network stack.
pub const NET_ANNOTATION: &str = "com.hooks.net.enabled";
/// Most image objects whose symbol-version needs are read (a large image has a few
/// thousand libraries in its loader cache).
pub const MAX_SCAN_OBJECTS: usize = 8192;
/// Most bytes of image objects (file sizes, summed) whose symbol-version needs are read;
/// each is read sparsely (headers, dynamic and version tables only).
pub const MAX_SCAN_BYTES: u64 = 8 << 30;
/// Largest `.dynstr` read to tell whether an image object names a network library.
const MAX_DYNSTR_BYTES: u64 = 16 << 20;
/// UCX's libraries: replaced all together or not at all.
pub const UCX_LIBS: [&str; 4] = ["libucp.so", "libuct.so", "libucs.so", "libucm.so"];

/// The network stack as the admin configured it (hpc-hooks.conf `NET_STACK`, detected by
/// hpc-hooks-configure).
#[derive(Debug, Clone, Default)]
pub struct NetConfig {
    /// `NET_LIBS`: host libfabric / UCX libraries.
    pub libs: Vec<PathBuf>,
    /// `NET_DEPENDENCY_LIBS`: their non-glibc dependencies.
    pub dependency_libs: Vec<PathBuf>,
    /// `NET_DIRS`: provider and module directories, bound read-only.
    pub dirs: Vec<PathBuf>,
    /// `NET_DEVICES`: fabric device nodes or directories of them.
    pub devices: Vec<PathBuf>,
    /// The NCCL/RCCL network plugin choice (`NCCL_PLUGIN_DIR`), when configured.
    pub nccl: Option<nccl::NcclConfig>,
}

impl NetConfig {
    /// Nothing to inject: no library, directory or device configured (`NET_STACK=none`).
    pub fn is_empty(&self) -> bool {
        self.libs.is_empty()
            && self.devices.is_empty()
            && self.dirs.is_empty()
            && self.nccl.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the image's {image} (version {cv}) has another SONAME major than the host's network library {host} (version {hv}): a library of another major version cannot replace it{ucx}. Run an image whose {linker} has the host's major version, have the admin set NET_LIBS to a host {linker} of the image's major version, or start the container without the annotation com.hooks.net.enabled=true (the image keeps its own {linker}; not possible when the host MPI needs the host's)", image = .image.display(), host = .host.display(), ucx = ucx_note(.linker))]
    Major {
        image: PathBuf,
        cv: String,
        host: PathBuf,
        hv: String,
        linker: String,
    },
    #[error("the image's {image} needs symbol version {missing} of {soname}, but the host's {host} defines only {offered}: the image was built against a newer {linker} than the host's{ucx}. Run an image built against {linker} of the host's version or older, have the admin install a newer {linker} on the host (NET_LIBS), or start the container without the annotation com.hooks.net.enabled=true (the image keeps its own {linker}; not possible when the host MPI needs the host's)", image = .0.image.display(), missing = .0.missing, soname = .0.soname, host = .0.host.display(), offered = .0.offered, linker = .0.linker, ucx = ucx_note(&.0.linker))]
    Versions(Box<MissingVersions>),
    #[error("UCX is replaced as a unit, but the image's {image} ({linker}) has no host counterpart in NET_LIBS (it has {hosts}): the host's UCX cannot run beside a part of the image's. Have the admin add the host's {linker} to NET_LIBS (hpc-hooks-configure detects it), or start the container without the annotation com.hooks.net.enabled=true")]
    UcxPartial {
        image: PathBuf,
        linker: String,
        hosts: String,
    },
    #[error("{var} entry {path}: {message}")]
    Entry {
        var: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error(transparent)]
    Nccl(#[from] nccl::NcclError),
    #[error(transparent)]
    Mpi(Box<MpiError>),
    #[error(transparent)]
    HostLib(#[from] hostlib::HostLibError),
}

impl From<MpiError> for NetError {
    fn from(e: MpiError) -> Self {
        NetError::Mpi(Box::new(e))
    }
}

/// An image library needing symbol versions the host's network library does not define.
#[derive(Debug)]
pub struct MissingVersions {
    pub image: PathBuf,
    /// Comma-separated version names.
    pub missing: String,
    pub soname: String,
    pub host: PathBuf,
    /// The host library's version definitions, comma-separated.
    pub offered: String,
    pub linker: String,
}

/// A configured host network library and the image files it replaces.
struct Pick {
    host: HostLib,
    image: Vec<ContainerLib>,
}

fn is_ucx(linker_name: &str) -> bool {
    UCX_LIBS.contains(&linker_name)
}

fn ucx_note(linker_name: &str) -> String {
    if is_ucx(linker_name) {
        " (UCX is replaced as a unit: none of libucp, libuct, libucs, libucm is replaced)".into()
    } else {
        String::new()
    }
}

/// The sonames the host libraries `injected` (an MPI plan's) are known by and need: what
/// [`plan_net`] takes as `mpi_needs`.
pub fn needs_of(injected: &[HostLib]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for h in injected {
        out.insert(h.soname());
        out.extend(h.facts.needed.iter().cloned());
    }
    out
}

/// Whether the needs of an injected MPI (see [`needs_of`]) include a `NET_LIBS` library:
/// then mpi-hook applies the network stack with the MPI.
pub fn needed_by(cfg: &NetConfig, mpi_needs: &BTreeSet<String>) -> Result<bool, NetError> {
    for p in &cfg.libs {
        if mpi_needs.contains(&hostlib::inspect(p)?.soname()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The network plan owns the network libraries: drops the MPI plan's replacements and
/// added libraries it covers (the same host file, the same image file replaced, or the
/// same soname added), e.g. libfabric from MPI_DEPENDENCY_LIBS or Open MPI's run-time
/// libraries.
pub fn take_over(mpi: &mut Plan, net: &Plan) {
    let hosts: BTreeSet<&str> = net
        .replace
        .iter()
        .map(|r| r.host_path.as_str())
        .chain(net.libraries.iter().map(|l| l.host_path.as_str()))
        .collect();
    let images: BTreeSet<&str> = net
        .replace
        .iter()
        .map(|r| r.container_path.as_str())
        .collect();
    let sonames: BTreeSet<&str> = net.libraries.iter().map(|l| l.soname.as_str()).collect();
    mpi.replace.retain(|r| {
        !hosts.contains(r.host_path.as_str()) && !images.contains(r.container_path.as_str())
    });
    mpi.libraries
        .retain(|l| !hosts.contains(l.host_path.as_str()) && !sonames.contains(l.soname.as_str()));
}

/// Plans the host's network stack for a container. `process`: the container's program, to
/// find libraries the image keeps outside its loader cache; `mpi_needs`: the sonames the
/// injected host MPI needs (empty without an MPI), the only reason to add a host network
/// library the image does not have.
pub fn plan_net(
    rootfs: &Rootfs,
    cfg: &NetConfig,
    process: Option<&Process<'_>>,
    mpi_needs: &BTreeSet<String>,
) -> Result<Plan, NetError> {
    Ok(plan_net_and_libs(rootfs, cfg, process, mpi_needs)?.0)
}

/// [`plan_net`], also returning every host library it injects (for the glibc decision).
pub fn plan_net_and_libs(
    rootfs: &Rootfs,
    cfg: &NetConfig,
    process: Option<&Process<'_>>,
    mpi_needs: &BTreeSet<String>,
) -> Result<(Plan, Vec<HostLib>), NetError> {
    let mut plan = Plan::default();
    let mut injected: Vec<HostLib> = Vec::new();
    let mut replaced: Vec<(HostLib, Vec<ContainerLib>)> = Vec::new();
    let mut nccl_plan = Plan::default();
    if !cfg.libs.is_empty() || cfg.nccl.is_some() {
        let cache = match crate::plan::container_cache(rootfs) {
            Ok(c) => c,
            Err(why) => {
                tracing::info!(
                    "the image has no usable /etc/ld.so.cache ({why}): its network libraries are looked for among its program's libraries only"
                );
                LdCache {
                    entries: Vec::new(),
                    generator: None,
                    hwcap_subdirs: Vec::new(),
                    format: crate::ldcache::CacheFormat::New,
                }
            }
        };
        // The NCCL plugin first: the network libraries it needs (libfabric...) are
        // injected as those an MPI needs.
        let mut needs = mpi_needs.clone();
        if let Some(n) = &cfg.nccl {
            nccl_plan = nccl::plan_nccl(rootfs, &cache, process, n)?;
            needs.extend(nccl::plugin_needs(&nccl_plan));
        }
        let mpi_needs = &needs;
        let mut program = ProgramLibs::default();
        let mut picks: Vec<Pick> = Vec::new();
        for p in &cfg.libs {
            let host = hostlib::inspect(p)?;
            let mut found = container_counterparts(rootfs, &cache, &host)?;
            if let (true, Some(proc_)) = (found.is_empty(), process) {
                found = program_counterparts(rootfs, program.get(rootfs, &cache, proc_), &host);
            }
            let mut same = Vec::new();
            let mut other = Vec::new();
            for c in found {
                match abi::check(&host.version, &c.version, CompatType::Major) {
                    Verdict::Incompatible(_) => other.push(c),
                    Verdict::CompatibleWithWarning(w) | Verdict::Beside(w) => {
                        tracing::warn!(
                            "{} over the image's {}: {w}",
                            host.path.display(),
                            c.real.display()
                        );
                        same.push(c);
                    }
                    Verdict::Compatible => same.push(c),
                }
            }
            if same.is_empty() {
                if let Some(c) = other.first() {
                    return Err(NetError::Major {
                        image: c.real.clone(),
                        cv: abi::version_string(&c.version),
                        host: host.real.clone(),
                        hv: abi::version_string(&host.version),
                        linker: host.linker_name.clone(),
                    });
                }
            }
            for c in &other {
                tracing::info!(
                    "the image's {} (version {}) stays beside {}: another SONAME major",
                    c.real.display(),
                    abi::version_string(&c.version),
                    host.real.display()
                );
            }
            picks.push(Pick { host, image: same });
        }
        let chosen = choose(&picks, mpi_needs);
        for (p, take) in picks.iter().zip(&chosen) {
            if !take {
                tracing::info!(
                    "host {} not injected: the image has no {} and the injected MPI does not need {}",
                    p.host.path.display(),
                    p.host.linker_name,
                    p.host.soname()
                );
            }
        }
        let picked: Vec<&Pick> = picks
            .iter()
            .zip(&chosen)
            .filter_map(|(p, t)| t.then_some(p))
            .collect();
        if let Some(u) = picked.iter().find(|p| is_ucx(&p.host.linker_name)) {
            ucx_whole(rootfs, &cache, &u.host, &picks)?;
        }
        check_versions(rootfs, &cache, process, &mut program, &picked)?;
        for p in &picked {
            if p.image.is_empty() {
                plan.libraries.push(add_lib(&p.host)?);
            }
            for c in &p.image {
                plan.replace.push(Replace {
                    host_path: host_str(&p.host.real),
                    container_path: host_str(&c.real),
                });
            }
            injected.push(p.host.clone());
            if !p.image.is_empty() {
                replaced.push((p.host.clone(), p.image.clone()));
            }
        }
        if !injected.is_empty() {
            let net_sonames: HashSet<String> = picks.iter().map(|p| p.host.soname()).collect();
            for d in &cfg.dependency_libs {
                let host = hostlib::inspect(d)?;
                if net_sonames.contains(&host.soname()) {
                    continue;
                }
                dependency(rootfs, &cache, &host, &mut plan)?;
                injected.push(host);
            }
        }
    }
    for d in &cfg.dirs {
        add_dir(rootfs, d, &replaced, &mut plan)?;
    }
    for d in &cfg.devices {
        add_device(d, &mut plan)?;
    }
    plan.append(&nccl_plan);
    Ok((plan, injected))
}

/// The libraries the container's program loads, followed once when first asked for.
#[derive(Default)]
struct ProgramLibs(Option<Vec<Found>>);

impl ProgramLibs {
    fn get(&mut self, rootfs: &Rootfs, cache: &LdCache, p: &Process<'_>) -> &[Found] {
        self.0.get_or_insert_with(|| {
            loader::program_libraries(rootfs, cache, p).unwrap_or_else(|e| {
                tracing::info!(
                    "not looking at the program's libraries outside the loader cache: {e}"
                );
                Vec::new()
            })
        })
    }
}

/// Which picks are injected: those with a counterpart in the image, those the MPI needs
/// and, transitively, the configured ones they need; UCX all together.
fn choose(picks: &[Pick], mpi_needs: &BTreeSet<String>) -> Vec<bool> {
    let mut wanted: BTreeSet<String> = mpi_needs.clone();
    let mut take = vec![false; picks.len()];
    loop {
        let mut changed = false;
        let any_ucx = picks
            .iter()
            .zip(&take)
            .any(|(p, t)| *t && is_ucx(&p.host.linker_name));
        for (i, p) in picks.iter().enumerate() {
            if take[i] {
                continue;
            }
            if !p.image.is_empty()
                || wanted.contains(&p.host.soname())
                || (any_ucx && is_ucx(&p.host.linker_name))
            {
                take[i] = true;
                wanted.extend(p.host.facts.needed.iter().cloned());
                changed = true;
            }
        }
        if !changed {
            return take;
        }
    }
}

/// Refuses when the image has a UCX library of the host's architecture that `NET_LIBS`
/// has no host counterpart for (the host's UCX would run beside a part of the image's).
fn ucx_whole(
    rootfs: &Rootfs,
    cache: &LdCache,
    like: &HostLib,
    picks: &[Pick],
) -> Result<(), NetError> {
    let hosts: Vec<&str> = picks
        .iter()
        .map(|p| p.host.linker_name.as_str())
        .filter(|l| is_ucx(l))
        .collect();
    for e in &cache.entries {
        if e.hwcap != 0 || !e.arch().matches_elf(like.facts.class, like.facts.machine) {
            continue;
        }
        let Some(n) = abi::parse_lib_name(&e.soname) else {
            continue;
        };
        if !is_ucx(&n.linker_name) || hosts.contains(&n.linker_name.as_str()) {
            continue;
        }
        let Ok(real) = rootfs.real_path(Path::new(&e.path)) else {
            continue;
        };
        if rootfs.open_read(&real).is_err() {
            continue;
        }
        return Err(NetError::UcxPartial {
            image: real,
            linker: n.linker_name,
            hosts: hosts.join(", "),
        });
    }
    Ok(())
}

/// The image's objects (loader cache entries of the host libraries' architecture, the
/// container's program and the libraries it loads), each read once, bounded; for each that
/// needs symbol versions of an injected library, those versions must be in the host
/// library's definitions. Files the plan replaces are not looked at.
fn check_versions(
    rootfs: &Rootfs,
    cache: &LdCache,
    process: Option<&Process<'_>>,
    program: &mut ProgramLibs,
    picked: &[&Pick],
) -> Result<(), NetError> {
    let Some(first) = picked.first() else {
        return Ok(());
    };
    let (class, machine) = (first.host.facts.class, first.host.facts.machine);
    // Files are told apart by (device, inode): one in-root resolution each.
    let id = |path: &Path| -> Option<(u64, u64)> {
        let md = rootfs.open_read(path).ok()?.metadata().ok()?;
        Some((md.dev(), md.ino()))
    };
    let mut seen: HashSet<(u64, u64)> = picked
        .iter()
        .flat_map(|p| p.image.iter().filter_map(|c| id(&c.real)))
        .collect();
    // The first injected library with versions `facts` needs and it lacks, and those.
    let sonames: Vec<String> = picked.iter().map(|p| p.host.soname()).collect();
    let check = |facts: &ElfFacts| -> Result<(), (&Pick, String)> {
        for (p, soname) in picked.iter().zip(&sonames) {
            let missing: Vec<&str> = facts
                .versions_needed_from(soname)
                .filter(|v| !v.weak && !p.host.facts.verdef.contains(&v.name))
                .map(|v| v.name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err((p, missing.join(", ")));
            }
        }
        Ok(())
    };
    let (mut objects, mut bytes) = (0usize, 0u64);
    for e in &cache.entries {
        if !e.arch().matches_elf(class, machine) {
            continue;
        }
        let path = Path::new(&e.path);
        let Ok(file) = rootfs.open_read(path) else {
            continue;
        };
        let Ok(md) = file.metadata() else {
            continue;
        };
        if !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        let len = md.len();
        objects += 1;
        bytes = bytes.saturating_add(len);
        if objects > MAX_SCAN_OBJECTS || bytes > MAX_SCAN_BYTES {
            tracing::warn!(
                "stopped checking the symbol versions the image's libraries need after {} objects ({} MiB): the rest of its loader cache is not checked",
                objects - 1,
                (bytes - len) >> 20
            );
            break;
        }
        // Cheap first: an object that needs versions of a library names it in .dynstr
        // (a few small reads); only those, and objects without section headers, are parsed.
        if elf::read_section(&file, ".dynstr", MAX_DYNSTR_BYTES)
            .is_some_and(|strs| !names_any(&strs, &sonames))
        {
            continue;
        }
        let Ok(facts) = elf::read_file(&file, MAX_ELF_BYTES) else {
            continue;
        };
        if facts.class == class && facts.machine == machine {
            // The real file is named (resolved again only for a refusal).
            check(&facts).map_err(|(p, m)| {
                let real = rootfs.real_path(path).unwrap_or_else(|_| path.to_owned());
                refusal(&real, &p.host, m)
            })?;
        }
    }
    if let Some(p) = process {
        if let Some((real, facts)) = program_facts(rootfs, p) {
            if id(&real).is_none_or(|i| seen.insert(i)) {
                check(&facts).map_err(|(p, m)| refusal(&real, &p.host, m))?;
            }
        }
        for f in program.get(rootfs, cache, p) {
            if id(&f.real).is_none_or(|i| seen.insert(i)) {
                check(&f.facts).map_err(|(p, m)| refusal(&f.real, &p.host, m))?;
            }
        }
    }
    Ok(())
}

/// Whether the string table `strs` (NUL-separated) has one of `names` as a string.
fn names_any(strs: &[u8], names: &[String]) -> bool {
    strs.split(|b| *b == 0)
        .any(|s| names.iter().any(|n| n.as_bytes() == s))
}

/// The refusal of an image file needing versions `missing` that `host` does not define.
fn refusal(image: &Path, host: &HostLib, missing: String) -> NetError {
    NetError::Versions(Box::new(MissingVersions {
        image: image.to_owned(),
        missing,
        soname: host.soname(),
        host: host.real.clone(),
        offered: if host.facts.verdef.is_empty() {
            "no symbol versions".into()
        } else {
            host.facts.verdef.join(", ")
        },
        linker: host.linker_name.clone(),
    }))
}

/// The container's program: its real file and ELF facts (`None` when it is not found).
fn program_facts(rootfs: &Rootfs, p: &Process<'_>) -> Option<(PathBuf, ElfFacts)> {
    let prog = loader::find_program(rootfs, p).ok()?;
    let real = rootfs.real_path(&prog).ok()?;
    let file = rootfs.open_read(&real).ok()?;
    let facts = elf::read_file(&file, MAX_ELF_BYTES).ok()?;
    Some((real, facts))
}

/// A `NET_DEPENDENCY_LIBS` library, as an MPI dependency: over the image's when the
/// versions allow (`CompatType::Dependencies`), else in the private library directory.
fn dependency(
    rootfs: &Rootfs,
    cache: &LdCache,
    host: &HostLib,
    plan: &mut Plan,
) -> Result<(), NetError> {
    let mut replaced = false;
    for c in container_counterparts(rootfs, cache, host)? {
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
        plan.libraries.push(add_lib(host)?);
    }
    Ok(())
}

/// True when the error is "no such file": an entry this node lacks.
fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// Whether a directory named `dir` beside a library `linker_name` holds its modules: UCX's
/// `ucx` for the UCX libraries, else the library's own name (`libfabric`).
fn modules_of(dir: &str, linker_name: &str) -> bool {
    if dir == "ucx" {
        return is_ucx(linker_name);
    }
    linker_name.strip_suffix(".so") == Some(dir)
}

/// A `NET_DIRS` directory: bound read-only at its host path and, when it is the module
/// directory beside a replaced host library (`<dir of libucs>/ucx`, `<dir of
/// libfabric>/libfabric`), beside each image file that library replaces in another
/// directory (UCX looks for its modules next to libucs). A directory this node lacks is
/// skipped with a warning (one configuration for nodes that differ).
fn add_dir(
    rootfs: &Rootfs,
    dir: &Path,
    replaced: &[(HostLib, Vec<ContainerLib>)],
    plan: &mut Plan,
) -> Result<(), NetError> {
    let entry = |message: String| NetError::Entry {
        var: "NET_DIRS",
        path: dir.to_owned(),
        message,
    };
    if !dir.is_absolute() {
        return Err(entry("must be an absolute host path".into()));
    }
    let md = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if not_found(&e) => {
            tracing::warn!(
                "NET_DIRS entry {} does not exist on this node: not bound (rerun hpc-hooks-configure if the network stack changed)",
                dir.display()
            );
            return Ok(());
        }
        Err(e) => {
            return Err(entry(format!(
                "{e}; fix NET_DIRS in the hook's hooks.d env"
            )))
        }
    };
    if !md.is_dir() {
        return Err(entry(
            "is not a directory; NET_DIRS lists provider and module directories (fix it in the hook's hooks.d env)".into(),
        ));
    }
    let path = host_str(dir);
    let mut targets: Vec<String> = vec![path.clone()];
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    if let (Some(parent), Some(name)) = (canon.parent(), dir.file_name()) {
        let dir_name = name.to_string_lossy();
        for (host, image) in replaced {
            if host.real.parent() != Some(parent) || !modules_of(&dir_name, &host.linker_name) {
                continue;
            }
            for c in image {
                // The loader opens the entry's path: its directory and the real file's.
                let mut dirs: Vec<PathBuf> =
                    c.real.parent().map(Path::to_path_buf).into_iter().collect();
                if let Some(d) = c.path.parent().and_then(|d| rootfs.real_path(d).ok()) {
                    dirs.push(d);
                }
                for d in dirs {
                    if d == parent {
                        continue;
                    }
                    let t = host_str(&d.join(name));
                    if !targets.contains(&t) {
                        tracing::info!(
                            "{} also bound at {t}, beside the image's {} that {} replaces",
                            dir.display(),
                            c.real.display(),
                            host.real.display()
                        );
                        targets.push(t);
                    }
                }
            }
        }
    }
    for t in &targets {
        plan.edits.mounts.push(ro_mount(&path, t));
    }
    linked_modules(dir, &canon, &targets, plan);
    Ok(())
}

/// Most entries of a `NET_DIRS` directory looked at for symlinked modules.
const MAX_DIR_ENTRIES: usize = 1024;

/// Modules of a bound directory that are symlinks out of it (rdma-core's verbs providers:
/// `libibverbs/libmlx5-rdmav34.so -> ../libmlx5.so.1.24.44.0`): the host file they point
/// at is bound read-only where the link leads inside the container, else the provider
/// would not load there (the image has another version of that file, or none).
fn linked_modules(dir: &Path, canon: &Path, targets: &[String], plan: &mut Plan) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten().take(MAX_DIR_ENTRIES) {
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        let Ok(real) = std::fs::canonicalize(e.path()) else {
            continue;
        };
        if real.starts_with(canon) || !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) {
            continue;
        }
        for t in targets {
            let at = if link.is_absolute() {
                link.clone()
            } else {
                lexical(&Path::new(t).join(&link))
            };
            let at = host_str(&at);
            if plan.edits.mounts.iter().any(|m| m.container_path == at) {
                continue;
            }
            tracing::info!(
                "{} is a link to {}: that file is bound at {at}",
                e.path().display(),
                real.display()
            );
            plan.edits.mounts.push(ro_mount(&host_str(&real), &at));
        }
    }
}

/// `p` with `.` and `..` resolved lexically (a link's target as the container will see it).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// A `NET_DEVICES` entry: a device node (a CDI device node; the engine creates it with a
/// cgroup rule or binds it, rootless) or a directory of them.
fn add_device(path: &Path, plan: &mut Plan) -> Result<(), NetError> {
    if path.is_absolute() {
        if let Err(e) = std::fs::symlink_metadata(path) {
            if not_found(&e) {
                tracing::warn!(
                    "NET_DEVICES entry {} does not exist on this node: not injected (rerun hpc-hooks-configure if the fabric changed)",
                    path.display()
                );
                return Ok(());
            }
        }
    }
    let b = host_bind_for(path, "NET_DEVICES")?;
    if b.kind == BindKind::File {
        return Err(NetError::Entry {
            var: "NET_DEVICES",
            path: path.to_owned(),
            message: "is a regular file, not a device node or a directory of device nodes; list the fabric's device nodes (/dev/cxi0) or their directories (/dev/infiniband) in NET_DEVICES".into(),
        });
    }
    b.add_to(plan);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdi_specs::plan::Library;

    fn replace(host: &str, image: &str) -> Replace {
        Replace {
            host_path: host.into(),
            container_path: image.into(),
        }
    }

    fn library(host: &str, soname: &str) -> Library {
        Library {
            host_path: host.into(),
            soname: soname.into(),
            cache_flags: 0x303,
        }
    }

    #[test]
    fn the_network_plan_owns_the_libraries_it_covers() {
        let mut mpi = Plan {
            replace: vec![
                replace(
                    "/usr/lib/libmpich.so.12.2.2",
                    "/usr/lib/libmpich.so.12.1.10",
                ),
                // MPI_DEPENDENCY_LIBS' libfabric: the same host file as NET_LIBS'.
                replace(
                    "/usr/lib/libfabric.so.1.20.0",
                    "/usr/lib/libfabric.so.1.14.0",
                ),
                // Another host copy over the same image file.
                replace("/opt/cray/libfabric.so.1.15.2", "/usr/lib/libucp.so.0.0.0"),
            ],
            libraries: vec![
                library("/usr/lib/libhwloc.so.15.6.1", "libhwloc.so.15"),
                library("/usr/lib/libucs.so.0.0.0", "libucs.so.0"),
                library("/opt/other/libucm.so.0.0.0", "libucm.so.0"),
            ],
            ..Plan::default()
        };
        let net = Plan {
            replace: vec![
                replace(
                    "/usr/lib/libfabric.so.1.20.0",
                    "/usr/lib/libfabric.so.1.14.0",
                ),
                replace("/usr/lib/libucp.so.0.0.0", "/usr/lib/libucp.so.0.0.0"),
            ],
            libraries: vec![
                library("/usr/lib/libucs.so.0.0.0", "libucs.so.0"),
                library("/usr/lib/libucm.so.0.0.0", "libucm.so.0"),
            ],
            ..Plan::default()
        };
        take_over(&mut mpi, &net);
        let hosts: Vec<&str> = mpi.replace.iter().map(|r| r.host_path.as_str()).collect();
        assert_eq!(hosts, ["/usr/lib/libmpich.so.12.2.2"]);
        let libs: Vec<&str> = mpi.libraries.iter().map(|l| l.soname.as_str()).collect();
        assert_eq!(libs, ["libhwloc.so.15"]);
    }
}
