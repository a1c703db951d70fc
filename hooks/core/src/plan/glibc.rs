//! The glibc decision shared by every injecting hook: the newest `GLIBC_x.y` that the
//! libraries mounted into the container need (whoever mounted them), against the
//! container's glibc; then either the host glibc set replaces the container's, or a
//! refusal that names both versions.
//!
//! Because each hook recomputes the need from the mount table (plus its own pending
//! libraries), the outcome does not depend on the order in which hooks run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cdi_specs::plan::{Plan, Replace};

use crate::elf::{self, ElfClass, ElfFacts};
use crate::glibc::{self, GlibcVersion};
use crate::hostlib::{self, HostLib, MAX_ELF_BYTES};
use crate::ldcache::{self, LdCache};
use crate::plan::{host_str, View};
use crate::rootfs::Rootfs;

/// The annotation that enables glibc injection.
pub const GLIBC_ANNOTATION: &str = "com.hooks.glibc.enabled";
/// Largest libc.so.6 scanned for its banner.
const MAX_LIBC_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GlibcError {
    #[error("the injected host libraries need glibc {need} ({by} requires {name}) but the container has glibc {have}; add the annotation {GLIBC_ANNOTATION}=true (podman --annotation {GLIBC_ANNOTATION}=true) so that glibc-hook injects the host glibc {host}")]
    NeedsGlibcHook {
        need: GlibcVersion,
        by: String,
        name: String,
        have: GlibcVersion,
        host: String,
    },
    #[error("the injected host libraries need glibc {need} ({by} requires {name}) but the container has glibc {have}; add the CDI device {device} (podman --device {device}) so that the host glibc {host} is injected")]
    NeedsGlibcDevice {
        need: GlibcVersion,
        by: String,
        name: String,
        have: GlibcVersion,
        host: String,
        device: &'static str,
    },
    #[error("{by} needs GLIBC_PRIVATE symbols: it only works with the exact glibc build it was linked against; remove it from the injected libraries")]
    Private { by: String },
    #[error("the container rootfs uses musl libc ({musl}); glibc-linked host libraries ({by}) cannot be injected into it. Use a glibc-based image (Debian, Ubuntu, RHEL, ...)")]
    Musl { musl: PathBuf, by: String },
    #[error("the container's C library {path} is {theirs}, but the host libraries are {ours}; host libraries can only be injected into a container of the same architecture and ELF class")]
    ArchMismatch {
        path: PathBuf,
        theirs: String,
        ours: String,
    },
    #[error("cannot find the container's glibc (no libc.so.6 for {arch} in its ld.so.cache or standard directories); {by} needs glibc {need}")]
    NoContainerGlibc {
        arch: String,
        by: String,
        need: GlibcVersion,
    },
    #[error("cannot read the glibc version of {path}: no banner, version definitions or versioned file name")]
    UnknownVersion { path: PathBuf },
    #[error("the injected libraries need glibc {need} ({by}), but the host glibc {host_path} is only {host}; the host libraries do not match the host glibc")]
    HostTooOld {
        need: GlibcVersion,
        by: String,
        host: GlibcVersion,
        host_path: PathBuf,
    },
    #[error("host glibc: {0}")]
    Host(String),
    #[error(transparent)]
    HostLib(#[from] hostlib::HostLibError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
}

/// What to do when the container's glibc is too old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlibcAction {
    /// Replace the container's glibc with the host's (glibc-hook, or any hook when the
    /// glibc annotation is present).
    Inject,
    /// Fail with a message telling the user to enable glibc-hook.
    Refuse,
    /// Fail with a message naming the CDI device that injects the host glibc (a hook of
    /// the `hpc-hooks.io/mpi` CDI device without `hpc-hooks.io/glibc`).
    RefuseCdi,
}

/// The highest need over a set of objects.
#[derive(Debug, Clone, Default)]
pub struct Need {
    pub max: Option<GlibcVersion>,
    pub by: String,
    pub name: String,
    pub private_by: Vec<String>,
    pub objects: usize,
}

impl Need {
    pub fn add(&mut self, label: &str, facts: &ElfFacts) {
        if facts.soname.as_deref().is_some_and(glibc::is_glibc_soname) {
            return;
        }
        self.objects += 1;
        let n = glibc::glibc_need(facts);
        if n.private {
            self.private_by.push(label.to_string());
        }
        if let Some(v) = n.max {
            if self.max.is_none_or(|m| v > m) {
                self.max = Some(v);
                self.by = label.to_string();
                self.name = n.max_name.unwrap_or_default();
            }
        }
    }
}

/// Need of every regular ELF file currently mounted inside the rootfs.
pub fn need_of_mounted(view: View<'_>) -> Need {
    let mut need = Need::default();
    let root = std::fs::canonicalize(view.rootfs.host_path())
        .unwrap_or_else(|_| view.rootfs.host_path().to_owned());
    let mut seen = BTreeSet::new();
    for m in view.mounts {
        let Ok(rel) = m.mount_point.strip_prefix(&root) else {
            continue;
        };
        // Host glibc files (bound by a glibc step) need nothing: skip them by name
        // before opening anything. Others are judged by their ELF soname below.
        if m.root
            .file_name()
            .is_some_and(|n| glibc::is_glibc_soname(&n.to_string_lossy()))
        {
            continue;
        }
        let cpath = Path::new("/").join(rel);
        if !seen.insert(cpath.clone()) {
            continue;
        }
        // Only regular files can be ELF objects; skip /proc, /dev, tmpfs dirs, ...
        let Ok(f) = view.rootfs.open_read(&cpath) else {
            continue;
        };
        if let Ok(facts) = elf::read_file(&f, MAX_ELF_BYTES) {
            need.add(&cpath.to_string_lossy(), &facts);
        }
    }
    need
}

/// The container's C library.
#[derive(Debug, Clone)]
pub enum ContainerLibc {
    Glibc {
        version: GlibcVersion,
        /// Container path as found (cache entry or standard directory).
        path: PathBuf,
        facts: ElfFacts,
    },
    Musl(PathBuf),
    NotFound,
}

/// Debian/Ubuntu multiarch triplet of an architecture.
pub fn triplet(class: ElfClass, machine: u16) -> Option<&'static str> {
    Some(match (class, machine) {
        (ElfClass::Elf64, 62) => "x86_64-linux-gnu",
        (ElfClass::Elf64, 183) => "aarch64-linux-gnu",
        (ElfClass::Elf64, 21) => "powerpc64le-linux-gnu",
        (ElfClass::Elf64, 22) => "s390x-linux-gnu",
        (ElfClass::Elf64, 243) => "riscv64-linux-gnu",
        (ElfClass::Elf32, 3) => "i386-linux-gnu",
        _ => return None,
    })
}

fn musl_name(machine: u16) -> &'static str {
    match machine {
        62 => "ld-musl-x86_64.so.1",
        183 => "ld-musl-aarch64.so.1",
        21 => "ld-musl-powerpc64le.so.1",
        22 => "ld-musl-s390x.so.1",
        243 => "ld-musl-riscv64.so.1",
        _ => "ld-musl-i386.so.1",
    }
}

fn version_of(
    libc: &std::fs::File,
    facts: &ElfFacts,
    real: &Path,
    cache: Option<&LdCache>,
) -> Option<GlibcVersion> {
    elf::read_section(libc, ".rodata", MAX_LIBC_BYTES)
        .and_then(|rodata| glibc::version_from_banner(&rodata))
        .or_else(|| {
            real.file_name()
                .and_then(|n| glibc::version_from_file_name(&n.to_string_lossy()))
        })
        .or_else(|| glibc::max_verdef_version(facts))
        .or_else(|| {
            cache
                .and_then(|c| c.generator.as_deref())
                .and_then(glibc::version_from_generator)
        })
}

/// Finds the container's libc for `class`/`machine` without executing anything.
pub fn container_libc(
    rootfs: &Rootfs,
    cache: Option<&LdCache>,
    class: ElfClass,
    machine: u16,
) -> Result<ContainerLibc, GlibcError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    let mut other_arch: Option<PathBuf> = None;
    if let Some(c) = cache {
        for e in c
            .entries
            .iter()
            .filter(|e| e.soname == "libc.so.6" && e.hwcap == 0)
        {
            if e.arch().matches_elf(class, machine) {
                candidates.push(PathBuf::from(&e.path));
            } else if other_arch.is_none() {
                other_arch = Some(PathBuf::from(&e.path));
            }
        }
    }
    if let Some(t) = triplet(class, machine) {
        candidates.push(PathBuf::from(format!("/lib/{t}/libc.so.6")));
        candidates.push(PathBuf::from(format!("/usr/lib/{t}/libc.so.6")));
    }
    for d in ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] {
        candidates.push(Path::new(d).join("libc.so.6"));
    }
    let want = format!(
        "{}-bit {}",
        if class == ElfClass::Elf64 { 64 } else { 32 },
        elf::machine_name(machine)
    );
    for p in &candidates {
        let Ok(f) = rootfs.open_read(p) else {
            continue;
        };
        let Ok(facts) = elf::read_file(&f, MAX_LIBC_BYTES) else {
            continue;
        };
        if facts.class != class || facts.machine != machine {
            other_arch.get_or_insert(p.clone());
            continue;
        }
        let real = rootfs.real_path(p)?;
        let version = version_of(&f, &facts, &real, cache)
            .ok_or_else(|| GlibcError::UnknownVersion { path: p.clone() })?;
        return Ok(ContainerLibc::Glibc {
            version,
            path: p.clone(),
            facts,
        });
    }
    if let Some(p) = other_arch {
        let theirs = rootfs
            .read_file(&p, MAX_LIBC_BYTES)
            .ok()
            .and_then(|b| elf::parse(&b).ok())
            .map(|f| {
                format!(
                    "{}-bit {}",
                    if f.class == ElfClass::Elf64 { 64 } else { 32 },
                    elf::machine_name(f.machine)
                )
            })
            .unwrap_or_else(|| "of another architecture".into());
        return Err(GlibcError::ArchMismatch {
            path: p,
            theirs,
            ours: want,
        });
    }
    for d in ["/lib", "/usr/lib"] {
        let p = Path::new(d).join(musl_name(machine));
        if rootfs.try_resolve(&p)?.is_some() {
            return Ok(ContainerLibc::Musl(p));
        }
    }
    Ok(ContainerLibc::NotFound)
}

/// One file of the host glibc set.
#[derive(Debug, Clone)]
pub struct HostGlibcFile {
    pub soname: String,
    /// Real file (symlinks followed on the host).
    pub real: PathBuf,
}

/// The host glibc set: `GLIBC_LIBS` when configured (each file's soname read from its
/// ELF), else every glibc soname the host's ld.so.cache lists for the architecture
/// (no ELF parsing: the cache already names them). Also returns the host libc.so.6.
pub fn host_glibc_libs(
    configured: Option<&[PathBuf]>,
    class: ElfClass,
    machine: u16,
) -> Result<(Vec<HostGlibcFile>, HostLib), GlibcError> {
    let mut files = Vec::new();
    let mut libc_path = None;
    match configured {
        Some(list) => {
            for p in list {
                let l = hostlib::inspect(p)?;
                let soname = l.soname();
                if soname == "libc.so.6" {
                    libc_path = Some(p.clone());
                }
                files.push(HostGlibcFile {
                    soname,
                    real: l.real,
                });
            }
        }
        None => {
            let f = std::fs::File::open("/etc/ld.so.cache").map_err(|e| {
                GlibcError::Host(format!(
                    "cannot read the host /etc/ld.so.cache: {e}; set GLIBC_LIBS"
                ))
            })?;
            let cache = ldcache::read_file(&f).map_err(|e| {
                GlibcError::Host(format!(
                    "the host /etc/ld.so.cache is unreadable: {e}; set GLIBC_LIBS"
                ))
            })?;
            for s in glibc::GLIBC_SONAMES {
                if let Some(e) = cache.lookup_elf(s, class, machine).find(|e| e.hwcap == 0) {
                    let Ok(real) = std::fs::canonicalize(&e.path) else {
                        continue;
                    };
                    if *s == "libc.so.6" {
                        libc_path = Some(PathBuf::from(&e.path));
                    }
                    files.push(HostGlibcFile {
                        soname: s.to_string(),
                        real,
                    });
                }
            }
        }
    }
    let Some(libc_path) = libc_path else {
        return Err(GlibcError::Host(format!(
            "no host libc.so.6 for {} found; set GLIBC_LIBS to the host glibc files",
            elf::machine_name(machine)
        )));
    };
    let libc = hostlib::inspect(&libc_path)?;
    Ok((files, libc))
}

/// Parses a `:`-separated list of paths (empty components ignored).
pub fn split_paths(s: &str) -> Vec<PathBuf> {
    s.split(':')
        .filter(|p| !p.trim().is_empty())
        .map(|p| PathBuf::from(p.trim()))
        .collect()
}

/// Decides about glibc for everything mounted so far plus `pending` (libraries the
/// calling hook is about to inject). Returns the plan (empty when nothing is needed)
/// and log lines.
pub fn plan_glibc(
    view: View<'_>,
    pending: &[HostLib],
    action: GlibcAction,
    configured_glibc: Option<&[PathBuf]>,
) -> Result<(Plan, Vec<String>), GlibcError> {
    let mut need = need_of_mounted(view);
    for l in pending {
        need.add(&l.path.to_string_lossy(), &l.facts);
    }
    let mut log = Vec::new();
    if let Some(by) = need.private_by.first() {
        return Err(GlibcError::Private { by: by.clone() });
    }
    let Some(need_v) = need.max else {
        log.push(format!(
            "glibc: none of the {} injected objects needs a versioned glibc symbol; nothing to do",
            need.objects
        ));
        return Ok((Plan::default(), log));
    };
    // Architecture of the injected objects: the host's.
    let (class, machine) = pending
        .first()
        .map(|l| (l.facts.class, l.facts.machine))
        .map(Ok)
        .unwrap_or_else(host_arch)?;
    let rootfs = view.rootfs;
    let cache = crate::plan::container_cache(rootfs).ok();
    let (have, cpath, cfacts) = match container_libc(rootfs, cache.as_ref(), class, machine)? {
        ContainerLibc::Glibc {
            version,
            path,
            facts,
        } => (version, path, facts),
        ContainerLibc::Musl(musl) => return Err(GlibcError::Musl { musl, by: need.by }),
        ContainerLibc::NotFound => {
            return Err(GlibcError::NoContainerGlibc {
                arch: elf::machine_name(machine).into(),
                by: need.by,
                need: need_v,
            })
        }
    };
    if need_v <= have {
        log.push(format!(
            "glibc: container glibc {have} satisfies the injected libraries (newest need {need_v} from {}); not replacing it",
            need.by
        ));
        return Ok((Plan::default(), log));
    }
    let (host, host_libc) = host_glibc_libs(configured_glibc, class, machine)?;
    let host_v = std::fs::File::open(&host_libc.real)
        .ok()
        .and_then(|f| version_of(&f, &host_libc.facts, &host_libc.real, None));
    let host_s = || host_v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    if action == GlibcAction::Refuse {
        return Err(GlibcError::NeedsGlibcHook {
            need: need_v,
            by: need.by,
            name: need.name,
            have,
            host: host_s(),
        });
    }
    if action == GlibcAction::RefuseCdi {
        return Err(GlibcError::NeedsGlibcDevice {
            need: need_v,
            by: need.by,
            name: need.name,
            have,
            host: host_s(),
            device: hpc_facts::hostmpi::GLIBC_DEVICE,
        });
    }
    let host_v = host_v.ok_or_else(|| GlibcError::UnknownVersion {
        path: host_libc.real.clone(),
    })?;
    if host_v < need_v {
        return Err(GlibcError::HostTooOld {
            need: need_v,
            by: need.by,
            host: host_v,
            host_path: host_libc.real.clone(),
        });
    }
    let mut plan = Plan::default();
    let mut covered = BTreeSet::new();
    let libc_dir = rootfs
        .real_path(&cpath)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for lib in &host {
        let soname = lib.soname.clone();
        let mut targets: Vec<PathBuf> = Vec::new();
        if let Some(c) = &cache {
            for e in c
                .lookup_elf(&soname, class, machine)
                .filter(|e| e.hwcap == 0)
            {
                targets.push(PathBuf::from(&e.path));
            }
        }
        if soname.starts_with("ld-") {
            if let Some(i) = &cfacts.interpreter {
                targets.push(PathBuf::from(i));
            }
        }
        targets.push(libc_dir.join(&soname));
        let mut any = false;
        for t in targets {
            let Ok(real) = rootfs.real_path(&t) else {
                continue;
            };
            if rootfs.open_read(&real).is_err() {
                continue;
            }
            any = true;
            if covered.insert(real.clone()) {
                plan.replace.push(Replace {
                    host_path: host_str(&lib.real),
                    container_path: host_str(&real),
                });
            }
        }
        if !any {
            tracing::debug!("glibc: the container has no {soname}; host copy not needed");
        }
    }
    log.push(format!(
        "glibc: injected libraries need {need_v} ({} requires {}), container has {have}: replacing the container glibc with the host glibc {host_v} ({} files)",
        need.by,
        need.name,
        plan.replace.len()
    ));
    Ok((plan, log))
}

/// The glibc step as a hook runs it: `glibc_libs` is the `GLIBC_LIBS` value (empty: from
/// the host's cache); the decision is logged and its plan returned.
pub fn glibc_step(
    view: View<'_>,
    pending: &[HostLib],
    action: GlibcAction,
    glibc_libs: &str,
) -> Result<Plan, GlibcError> {
    let configured = split_paths(glibc_libs);
    let configured = (!configured.is_empty()).then_some(configured.as_slice());
    let (plan, log) = plan_glibc(view, pending, action, configured)?;
    for line in log {
        tracing::info!("{line}");
    }
    Ok(plan)
}

/// Class and machine of the host's own C library.
pub fn host_arch() -> Result<(ElfClass, u16), GlibcError> {
    // The hook binary itself is a host ELF object of the host's architecture.
    let f = std::fs::File::open("/proc/self/exe")
        .map_err(|e| GlibcError::Host(format!("cannot read /proc/self/exe: {e}")))?;
    let facts = elf::read_file(&f, MAX_ELF_BYTES)
        .map_err(|e| GlibcError::Host(format!("cannot parse /proc/self/exe: {e}")))?;
    Ok((facts.class, facts.machine))
}
