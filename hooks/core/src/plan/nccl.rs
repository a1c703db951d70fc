//! NCCL/RCCL network plugin choice: among the admin's plugin variants (`libnccl-net*.so`,
//! `librccl-net*.so` in `NCCL_PLUGIN_DIR`, at most [`MAX_DIR_ENTRIES`] directory entries
//! scanned) the one whose DT_NEEDED names the image's CUDA (`libcudart.so.N`) or HIP
//! (`libamdhip64.so.N`) runtime SONAME, else one needing no runtime, is added to the private
//! library directory as `libnccl-net.so` and as `libnccl-net-X.so` (`NCCL_NET_PLUGIN=X`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cdi_specs::plan::{Library, Plan};

use crate::elf::{self, ElfClass};
use crate::engine::cache::INJECT_LIB_DIR;
use crate::hostlib::MAX_ELF_BYTES;
use crate::ldcache::LdCache;
use crate::ldcache_write::cache_flags_for;
use crate::plan::host_str;
use crate::plan::loader::{self, Process};
use crate::rootfs::Rootfs;

/// Most entries of the plugin directory looked at (a plugin directory holds a handful).
pub const MAX_DIR_ENTRIES: usize = 256;
/// Largest plugin file read (aws-ofi-nccl is a few MiB).
pub const MAX_PLUGIN_BYTES: u64 = 256 << 20;

/// What to do when the image's runtime has no matching plugin variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mismatch {
    /// Start the container without a plugin, with a warning (NCCL uses its own transports).
    #[default]
    Warn,
    /// Refuse the container.
    Refuse,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mismatch::Warn => "warn",
            Mismatch::Refuse => "refuse",
        })
    }
}

impl std::str::FromStr for Mismatch {
    type Err = NcclError;
    fn from_str(s: &str) -> Result<Self, NcclError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "warn" => Ok(Mismatch::Warn),
            "refuse" => Ok(Mismatch::Refuse),
            _ => Err(NcclError::Mismatch(s.to_string())),
        }
    }
}

/// The admin's NCCL plugin configuration (`NCCL_PLUGIN_DIR`, `NCCL_PLUGIN_MISMATCH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NcclConfig {
    pub plugin_dir: PathBuf,
    pub on_mismatch: Mismatch,
}

#[derive(Debug, thiserror::Error)]
pub enum NcclError {
    #[error("NCCL_PLUGIN_MISMATCH={0:?} is not accepted: use warn (a container whose CUDA/HIP runtime no plugin variant fits starts without a plugin, the default) or refuse (it is refused)")]
    Mismatch(String),
    #[error("NCCL_PLUGIN_DIR {path} cannot be read: {message}; set NCCL_PLUGIN_DIR (--nccl-plugin-dir) in the hook's hooks.d env to the absolute path of the directory holding the site's libnccl-net*.so / librccl-net*.so plugins, or leave it empty for none")]
    PluginDir { path: PathBuf, message: String },
    #[error("{found}. {todo}")]
    NoVariant {
        /// What was found: the image's runtime and each variant with what it needs.
        found: String,
        /// What to do.
        todo: String,
    },
    #[error("cannot tell the host's architecture: {0}")]
    HostArch(#[from] crate::hostmpi::HostMpiError),
}

/// The plugin variant name's suffix: `libnccl-net-cuda12.so` -> `cuda12` (what
/// `NCCL_NET_PLUGIN` names); `None` for the plain `libnccl-net.so` and other names.
pub fn variant_suffix(file_name: &str) -> Option<&str> {
    let rest = file_name
        .strip_prefix("libnccl-net-")
        .or_else(|| file_name.strip_prefix("librccl-net-"))?;
    let x = rest.strip_suffix(".so")?;
    (!x.is_empty()).then_some(x)
}

/// NCCL with the CUDA runtime, or RCCL with the HIP runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Nccl,
    Rccl,
}

impl Family {
    const ALL: [Family; 2] = [Family::Nccl, Family::Rccl];

    fn lib(self) -> &'static str {
        match self {
            Family::Nccl => "NCCL",
            Family::Rccl => "RCCL",
        }
    }

    fn runtime(self) -> &'static str {
        match self {
            Family::Nccl => "CUDA runtime",
            Family::Rccl => "HIP runtime",
        }
    }

    fn platform(self) -> &'static str {
        match self {
            Family::Nccl => "CUDA",
            Family::Rccl => "ROCm",
        }
    }

    /// The plugin file name NCCL/RCCL loads when `NCCL_NET_PLUGIN` is unset.
    fn plain(self) -> &'static str {
        match self {
            Family::Nccl => "libnccl-net.so",
            Family::Rccl => "librccl-net.so",
        }
    }

    fn runtime_prefix(self) -> &'static str {
        match self {
            Family::Nccl => "libcudart.so.",
            Family::Rccl => "libamdhip64.so.",
        }
    }

    /// The version of a runtime SONAME of this family (`libcudart.so.11.0` -> [11, 0]).
    fn runtime_version(self, soname: &str) -> Option<Vec<u32>> {
        let rest = soname.strip_prefix(self.runtime_prefix())?;
        rest.split('.')
            .map(|t| {
                (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| t.parse::<u32>().ok())
                    .flatten()
            })
            .collect()
    }

    /// Whether `file_name` is a plugin variant of this family (`libnccl-net*.so`).
    fn is_variant(self, file_name: &str) -> bool {
        let base = self.plain().trim_end_matches(".so");
        file_name.starts_with(base) && file_name.ends_with(".so") && file_name.len() > 3
    }
}

/// The CUDA/HIP runtime the image's programs load.
#[derive(Debug, Clone)]
struct ImageRuntime {
    family: Family,
    soname: String,
    /// The real file inside the rootfs.
    real: PathBuf,
    version: Vec<u32>,
}

/// One plugin file of the admin's directory, with every variant name pointing at it.
#[derive(Debug, Clone)]
struct Variant {
    family: Family,
    /// The real host file.
    real: PathBuf,
    /// Its names in the directory, sorted (the plain name first).
    names: Vec<String>,
    /// The runtime SONAMEs of its family in its DT_NEEDED.
    needs: Vec<String>,
    cache_flags: i32,
}

impl Variant {
    fn has_plain(&self) -> bool {
        self.names.iter().any(|n| n == self.family.plain())
    }

    fn label(&self) -> String {
        self.names.join(" = ")
    }

    fn describe_needs(&self) -> String {
        if self.needs.is_empty() {
            format!("{} needs no {}", self.label(), self.family.runtime())
        } else {
            format!("{} needs {}", self.label(), self.needs.join(" and "))
        }
    }
}

fn sort_names(family: Family, names: &mut [String]) {
    names.sort_by(|a, b| {
        (a != family.plain())
            .cmp(&(b != family.plain()))
            .then(a.cmp(b))
    });
}

/// Reads the plugin directory: variants of the host's architecture, grouped by real file.
/// Symlinks are followed only to files directly in the directory.
fn scan_plugins(
    cfg: &NcclConfig,
    class: ElfClass,
    machine: u16,
) -> Result<Vec<Variant>, NcclError> {
    let dir_err = |message: String| NcclError::PluginDir {
        path: cfg.plugin_dir.clone(),
        message,
    };
    if !cfg.plugin_dir.is_absolute() {
        return Err(dir_err("the path is not absolute".into()));
    }
    let dir = std::fs::canonicalize(&cfg.plugin_dir).map_err(|e| dir_err(e.to_string()))?;
    let rd = std::fs::read_dir(&dir).map_err(|e| dir_err(e.to_string()))?;
    let mut out: Vec<Variant> = Vec::new();
    for (i, entry) in rd.enumerate() {
        if i >= MAX_DIR_ENTRIES {
            tracing::warn!(
                "NCCL_PLUGIN_DIR {}: only the first {MAX_DIR_ENTRIES} entries are looked at; keep only the NCCL/RCCL plugins in it",
                cfg.plugin_dir.display()
            );
            break;
        }
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("NCCL_PLUGIN_DIR {}: {e}", cfg.plugin_dir.display());
                continue;
            }
        };
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some(family) = Family::ALL.into_iter().find(|f| f.is_variant(&name)) else {
            continue;
        };
        let path = dir.join(&name);
        let real = match entry.file_type() {
            Ok(t) if t.is_symlink() => match std::fs::canonicalize(&path) {
                Ok(r) if r.parent() == Some(dir.as_path()) => r,
                Ok(r) => {
                    tracing::warn!(
                        "ignoring plugin {}: a symlink to {}, outside NCCL_PLUGIN_DIR",
                        path.display(),
                        r.display()
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!("ignoring plugin {}: {e}", path.display());
                    continue;
                }
            },
            Ok(t) if t.is_file() => path.clone(),
            Ok(_) => {
                tracing::warn!("ignoring {}: not a regular file", path.display());
                continue;
            }
            Err(e) => {
                tracing::warn!("ignoring plugin {}: {e}", path.display());
                continue;
            }
        };
        if let Some(v) = out
            .iter_mut()
            .find(|v| v.family == family && v.real == real)
        {
            v.names.push(name);
            sort_names(family, &mut v.names);
            continue;
        }
        let facts = match std::fs::File::open(&real)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                if !f.metadata().map_err(|e| e.to_string())?.is_file() {
                    return Err("not a regular file".to_string());
                }
                elf::read_file(&f, MAX_PLUGIN_BYTES).map_err(|e| e.to_string())
            }) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(
                    "ignoring plugin {}: not a usable ELF shared object: {e}",
                    path.display()
                );
                continue;
            }
        };
        if facts.class != class || facts.machine != machine {
            tracing::warn!(
                "ignoring plugin {}: built for {}, not the host's {}",
                path.display(),
                elf::machine_name(facts.machine),
                elf::machine_name(machine)
            );
            continue;
        }
        let Some(cache_flags) = cache_flags_for(facts.class, facts.machine) else {
            tracing::warn!(
                "ignoring plugin {}: no loader-cache architecture for it",
                path.display()
            );
            continue;
        };
        let needs: Vec<String> = facts
            .needed
            .iter()
            .filter(|n| family.runtime_version(n).is_some())
            .cloned()
            .collect();
        out.push(Variant {
            family,
            real,
            names: vec![name],
            needs,
            cache_flags,
        });
    }
    out.sort_by(|a, b| {
        (a.family, !a.has_plain(), &a.names).cmp(&(b.family, !b.has_plain(), &b.names))
    });
    Ok(out)
}

/// An ELF object of the host's class and machine at `path` in the rootfs: its real path.
fn image_elf(rootfs: &Rootfs, path: &Path, class: ElfClass, machine: u16) -> Option<PathBuf> {
    let real = rootfs.real_path(path).ok()?;
    let file = rootfs.open_read(&real).ok()?;
    let facts = elf::read_file(&file, MAX_ELF_BYTES).ok()?;
    (facts.class == class && facts.machine == machine).then_some(real)
}

/// The image's runtimes, one per family: the one the container's program loads (through
/// RUNPATH, LD_LIBRARY_PATH or the cache) when it loads one, else the newest in the cache.
fn image_runtimes(
    rootfs: &Rootfs,
    cache: &LdCache,
    process: Option<&Process<'_>>,
    class: ElfClass,
    machine: u16,
) -> Vec<ImageRuntime> {
    let mut from_program: Vec<ImageRuntime> = Vec::new();
    if let Some(p) = process {
        match loader::program_libraries(rootfs, cache, p) {
            Ok(found) => {
                for f in found {
                    if f.facts.class != class || f.facts.machine != machine {
                        continue;
                    }
                    for family in Family::ALL {
                        if from_program.iter().any(|r| r.family == family) {
                            continue;
                        }
                        if let Some(version) = family.runtime_version(&f.needed) {
                            from_program.push(ImageRuntime {
                                family,
                                soname: f.needed.clone(),
                                real: f.real.clone(),
                                version,
                            });
                        }
                    }
                }
            }
            Err(e) => tracing::info!("not looking for a CUDA/HIP runtime the program loads: {e}"),
        }
    }
    let mut out = from_program;
    for family in Family::ALL {
        if out.iter().any(|r| r.family == family) {
            continue;
        }
        let mut found: Vec<ImageRuntime> = Vec::new();
        for e in &cache.entries {
            if e.hwcap != 0 || !e.arch().matches_elf(class, machine) {
                continue;
            }
            let Some(version) = family.runtime_version(&e.soname) else {
                continue;
            };
            if found.iter().any(|r| r.soname == e.soname) {
                continue;
            }
            // The cache can lie (stale or hostile): the file must be an ELF object of the
            // host's class and machine, inside the rootfs.
            let Some(real) = image_elf(rootfs, Path::new(&e.path), class, machine) else {
                tracing::info!(
                    "ignoring the image's cache entry {} ({}): not a {} ELF object inside the rootfs",
                    e.soname,
                    e.path,
                    elf::machine_name(machine)
                );
                continue;
            };
            found.push(ImageRuntime {
                family,
                soname: e.soname.clone(),
                real,
                version,
            });
        }
        found.sort_by(|a, b| b.version.cmp(&a.version));
        if found.len() > 1 {
            tracing::info!(
                "the image's loader cache has several {}s ({}): the plugin is chosen for the newest, {}",
                family.runtime(),
                found
                    .iter()
                    .map(|r| r.soname.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                found[0].soname
            );
        }
        out.extend(found.into_iter().take(1));
    }
    out
}

/// Chooses the plugin for `rt` among `variants` (all of its family), or says why none fits.
fn choose<'a>(rt: &ImageRuntime, variants: &[&'a Variant]) -> Result<&'a Variant, String> {
    let exact: Vec<&Variant> = variants
        .iter()
        .copied()
        .filter(|v| v.needs.contains(&rt.soname))
        .collect();
    let fallback: Vec<&Variant> = variants
        .iter()
        .copied()
        .filter(|v| v.needs.is_empty())
        .collect();
    let cands = if exact.is_empty() { fallback } else { exact };
    // `variants` is sorted: the plain name first, then by name.
    match cands.split_first() {
        Some((first, rest)) => {
            if !rest.is_empty() {
                tracing::info!(
                    "{} net plugins fitting the image's {}: {}; {} is taken (the plain {} first, then by name)",
                    rt.family.lib(),
                    rt.soname,
                    cands.iter().map(|v| v.label()).collect::<Vec<_>>().join(", "),
                    first.label(),
                    rt.family.plain()
                );
            }
            Ok(first)
        }
        None => Err(format!(
            "the image's {} is {} ({}), but no {} net plugin variant fits it: {}",
            rt.family.runtime(),
            rt.soname,
            rt.real.display(),
            rt.family.lib(),
            variants
                .iter()
                .map(|v| v.describe_needs())
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

/// Plans the NCCL/RCCL net plugin for the image: the variant of `cfg.plugin_dir` fitting
/// the image's CUDA/HIP runtime as [`Library`] entries of the private library directory.
/// An image without a runtime (or a family without variants in the directory) gets
/// nothing; a runtime no variant fits is a warning or an error as `cfg.on_mismatch` says.
pub fn plan_nccl(
    rootfs: &Rootfs,
    cache: &LdCache,
    process: Option<&Process<'_>>,
    cfg: &NcclConfig,
) -> Result<Plan, NcclError> {
    let (class, machine) = crate::hostmpi::host_arch()?;
    // The directory is the admin's configuration: a wrong one is an error for every image.
    let variants = scan_plugins(cfg, class, machine)?;
    let runtimes = image_runtimes(rootfs, cache, process, class, machine);
    let mut plan = Plan::default();
    if runtimes.is_empty() {
        tracing::info!(
            "no NCCL/RCCL net plugin added: the image has no CUDA runtime (libcudart.so.N) nor HIP runtime (libamdhip64.so.N) in its loader cache{}",
            match process {
                Some(p) => format!(" or among the libraries its program {} loads", p.program),
                None => String::new(),
            }
        );
        return Ok(plan);
    }
    for rt in &runtimes {
        let family = rt.family;
        let of_family: Vec<&Variant> = variants.iter().filter(|v| v.family == family).collect();
        if of_family.is_empty() {
            tracing::info!(
                "no {} net plugin added for the image's {} ({}): NCCL_PLUGIN_DIR {} has no {}*.so",
                family.lib(),
                rt.soname,
                rt.real.display(),
                cfg.plugin_dir.display(),
                family.plain().trim_end_matches(".so")
            );
            continue;
        }
        let chosen = match choose(rt, &of_family) {
            Ok(v) => v,
            Err(text) => match cfg.on_mismatch {
                Mismatch::Warn => {
                    tracing::warn!(
                        "{text}; the container starts without a {} net plugin ({} uses its internal transports; NCCL_PLUGIN_MISMATCH=warn)",
                        family.lib(),
                        family.lib()
                    );
                    continue;
                }
                Mismatch::Refuse => {
                    return Err(NcclError::NoVariant {
                        found: text,
                        todo: format!(
                            "Install in {} a variant built for {} {} (linked to {}) or one that needs no {}, or set NCCL_PLUGIN_MISMATCH=warn to start such containers without a plugin ({} then uses its internal transports)",
                            cfg.plugin_dir.display(),
                            family.platform(),
                            rt.version.first().map(u32::to_string).unwrap_or_default(),
                            rt.soname,
                            family.runtime(),
                            family.lib()
                        ),
                    })
                }
            },
        };
        let mut names: Vec<String> = vec![family.plain().to_string()];
        names.extend(
            chosen
                .names
                .iter()
                .filter(|n| variant_suffix(n).is_some())
                .cloned(),
        );
        let mut seen = BTreeSet::new();
        names.retain(|n| seen.insert(n.clone()));
        let how = names
            .iter()
            .map(|n| match variant_suffix(n) {
                Some(x) => format!("{n} (NCCL_NET_PLUGIN={x})"),
                None => format!("{n} (loaded when NCCL_NET_PLUGIN is unset)"),
            })
            .collect::<Vec<_>>()
            .join(" and ");
        tracing::info!(
            "{} net plugin {} ({}) chosen for the image's {} {} ({}): added in {INJECT_LIB_DIR} as {how}",
            family.lib(),
            chosen.real.display(),
            if chosen.needs.is_empty() {
                format!("needs no {}: the fallback", family.runtime())
            } else {
                format!("needs {}", rt.soname)
            },
            family.runtime(),
            rt.soname,
            rt.real.display()
        );
        // The image's own NCCL_NET_PLUGIN decides what NCCL dlopens: say when it is not ours.
        if let Some(want) = process.and_then(|p| p.var("NCCL_NET_PLUGIN")) {
            let ours = want.is_empty()
                || names
                    .iter()
                    .any(|n| n == want || variant_suffix(n) == Some(want));
            if !ours {
                let suffixes: Vec<&str> = names.iter().filter_map(|n| variant_suffix(n)).collect();
                tracing::warn!(
                    "the container's environment sets NCCL_NET_PLUGIN={want}: {} loads that instead of the plugin chosen for it ({}); unset it in the image{}",
                    family.lib(),
                    chosen.real.display(),
                    if suffixes.is_empty() {
                        String::new()
                    } else {
                        format!(" or set it to {}", suffixes.join(" or "))
                    }
                );
            }
        }
        for n in names {
            plan.libraries.push(Library {
                host_path: host_str(&chosen.real),
                soname: n,
                cache_flags: chosen.cache_flags,
            });
        }
    }
    Ok(plan)
}

/// The SONAMEs the plugins of a [`plan_nccl`] plan need (their DT_NEEDED, e.g.
/// `libfabric.so.1`), for the net plan to treat like the injected MPI's needs. A plugin
/// file that can no longer be read adds nothing (planning already read it).
pub fn plugin_needs(plan: &Plan) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let files: BTreeSet<&str> = plan
        .libraries
        .iter()
        .map(|l| l.host_path.as_str())
        .collect();
    for f in files {
        if let Ok(facts) = std::fs::File::open(f)
            .map_err(|e| e.to_string())
            .and_then(|file| elf::read_file(&file, MAX_PLUGIN_BYTES).map_err(|e| e.to_string()))
        {
            out.extend(facts.needed);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use test_support::{gcc_shared, gcc_shared_needing};

    use super::*;
    use crate::ldcache::{CacheEntry, CacheFormat};

    const LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";

    fn link(target: &str, at: &Path) {
        std::os::unix::fs::symlink(target, at).unwrap();
    }

    fn host_flags() -> i32 {
        let (class, machine) = crate::hostmpi::host_arch().unwrap();
        cache_flags_for(class, machine).unwrap()
    }

    /// A plugin directory with aws-ofi-nccl style variants and an image rootfs, both empty
    /// until a test fills them; stub runtimes to link plugins against in `src`.
    struct Fixture {
        tmp: tempfile::TempDir,
        plugins: PathBuf,
        rootfs: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::Builder::new().prefix("nccl").tempdir().unwrap();
            let plugins = tmp.path().join("plugins");
            let rootfs = tmp.path().join("rootfs");
            for d in [
                plugins.clone(),
                rootfs.join("etc"),
                rootfs.join(LIBDIR.trim_start_matches('/')),
                tmp.path().join("src"),
            ] {
                std::fs::create_dir_all(d).unwrap();
            }
            Fixture {
                tmp,
                plugins,
                rootfs,
            }
        }

        /// A stub runtime library with `soname` to link plugins against (outside both trees).
        fn runtime_stub(&self, soname: &str) -> PathBuf {
            let out = self.tmp.path().join("src").join(soname);
            if !out.exists() {
                gcc_shared("int rt_stub(void) { return 0; }\n", &out, soname);
            }
            out
        }

        /// `plugins/<name>`, needing the runtime `needs` (a SONAME) when given.
        fn plugin(&self, name: &str, needs: Option<&str>) {
            let src = "int ncclNetPlugin_v8(void) { return 0; }\n";
            let out = self.plugins.join(name);
            match needs {
                Some(s) => gcc_shared_needing(src, &out, name, &[&self.runtime_stub(s)]),
                None => gcc_shared(src, &out, name),
            }
            std::fs::remove_file(out.with_extension("c")).unwrap();
        }

        /// The three aws-ofi-nccl style variants of the issue.
        fn cuda_variants(&self, with_fallback: bool) {
            self.plugin("libnccl-net-cuda11.so", Some("libcudart.so.11.0"));
            self.plugin("libnccl-net-cuda12.so", Some("libcudart.so.12"));
            if with_fallback {
                self.plugin("libnccl-net-nocuda.so", None);
            }
        }

        /// `LIBDIR/<soname>` -> `<file>` in the image, a stub with that SONAME.
        fn image_lib(&self, dir: &str, soname: &str, file: &str) {
            let d = self.rootfs.join(dir.trim_start_matches('/'));
            std::fs::create_dir_all(&d).unwrap();
            gcc_shared("int rt(void) { return 0; }\n", &d.join(file), soname);
            std::fs::remove_file(d.join(file).with_extension("c")).unwrap();
            link(file, &d.join(soname));
        }

        /// The image's ld.so.cache with `sonames` in LIBDIR.
        fn cache(&self, sonames: &[&str]) -> LdCache {
            let cache = LdCache {
                format: CacheFormat::New,
                entries: sonames
                    .iter()
                    .map(|s| CacheEntry {
                        soname: s.to_string(),
                        path: format!("{LIBDIR}/{s}"),
                        flags: host_flags(),
                        osversion: 0,
                        hwcap: 0,
                    })
                    .collect(),
                generator: None,
                hwcap_subdirs: vec![],
            };
            let bytes = crate::ldcache_write::write(&cache, "fixture").unwrap();
            std::fs::write(self.rootfs.join("etc/ld.so.cache"), bytes).unwrap();
            crate::plan::container_cache(&Rootfs::open(&self.rootfs).unwrap()).unwrap()
        }

        fn cfg(&self, on_mismatch: Mismatch) -> NcclConfig {
            NcclConfig {
                plugin_dir: self.plugins.clone(),
                on_mismatch,
            }
        }

        fn plan(&self, cache: &LdCache, process: Option<&Process<'_>>, m: Mismatch) -> Plan {
            let rootfs = Rootfs::open(&self.rootfs).unwrap();
            plan_nccl(&rootfs, cache, process, &self.cfg(m)).unwrap()
        }

        fn real_plugin(&self, name: &str) -> String {
            host_str(&std::fs::canonicalize(self.plugins.join(name)).unwrap())
        }
    }

    /// The plan's libraries as (name in the private dir, host file).
    fn libs(plan: &Plan) -> Vec<(String, String)> {
        plan.libraries
            .iter()
            .map(|l| (l.soname.clone(), l.host_path.clone()))
            .collect()
    }

    /// Runs `f` with tracing's output (warn and above, no colours) captured.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf(Arc::new(Mutex::new(Vec::new())));
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        let out = tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    #[test]
    fn variant_suffix_is_what_nccl_net_plugin_names() {
        assert_eq!(variant_suffix("libnccl-net-cuda12.so"), Some("cuda12"));
        assert_eq!(variant_suffix("libnccl-net-ofi.so"), Some("ofi"));
        assert_eq!(variant_suffix("librccl-net-rocm6.so"), Some("rocm6"));
        assert_eq!(variant_suffix("libnccl-net.so"), None);
        assert_eq!(variant_suffix("libnccl-net-.so"), None);
        assert_eq!(variant_suffix("libnccl-net-cuda12.so.1"), None);
        assert_eq!(variant_suffix("libfoo-cuda12.so"), None);
    }

    #[test]
    fn mismatch_parses_warn_and_refuse_only() {
        assert_eq!("warn".parse::<Mismatch>().unwrap(), Mismatch::Warn);
        assert_eq!(" Refuse ".parse::<Mismatch>().unwrap(), Mismatch::Refuse);
        assert_eq!(Mismatch::default(), Mismatch::Warn);
        assert_eq!(
            "fail".parse::<Mismatch>().unwrap_err().to_string(),
            "NCCL_PLUGIN_MISMATCH=\"fail\" is not accepted: use warn (a container whose CUDA/HIP runtime no plugin variant fits starts without a plugin, the default) or refuse (it is refused)"
        );
    }

    #[test]
    fn cuda12_image_gets_the_cuda12_variant_under_both_names() {
        let f = Fixture::new();
        f.cuda_variants(true);
        f.image_lib(LIBDIR, "libcudart.so.12", "libcudart.so.12.2.140");
        let cache = f.cache(&["libcudart.so.12"]);
        let plan = f.plan(&cache, None, Mismatch::Refuse);
        let file = f.real_plugin("libnccl-net-cuda12.so");
        assert_eq!(
            libs(&plan),
            [
                ("libnccl-net.so".to_string(), file.clone()),
                ("libnccl-net-cuda12.so".to_string(), file)
            ]
        );
        assert!(plan.libraries.iter().all(|l| l.cache_flags == host_flags()));
        assert!(plugin_needs(&plan).contains("libcudart.so.12"));
        assert!(!plugin_needs(&plan).contains("libcudart.so.11.0"));
        assert!(plan.replace.is_empty() && plan.edits.mounts.is_empty());
    }

    #[test]
    fn cuda13_image_falls_back_to_the_variant_without_runtime() {
        let f = Fixture::new();
        f.cuda_variants(true);
        f.image_lib(LIBDIR, "libcudart.so.13", "libcudart.so.13.0.48");
        let cache = f.cache(&["libcudart.so.13"]);
        let plan = f.plan(&cache, None, Mismatch::Refuse);
        let file = f.real_plugin("libnccl-net-nocuda.so");
        assert_eq!(
            libs(&plan),
            [
                ("libnccl-net.so".to_string(), file.clone()),
                ("libnccl-net-nocuda.so".to_string(), file)
            ]
        );
    }

    #[test]
    fn no_fitting_variant_warns_or_refuses_naming_runtime_and_variants() {
        let f = Fixture::new();
        f.cuda_variants(false);
        f.image_lib(LIBDIR, "libcudart.so.13", "libcudart.so.13.0.48");
        let cache = f.cache(&["libcudart.so.13"]);
        let found = format!(
            "the image's CUDA runtime is libcudart.so.13 ({LIBDIR}/libcudart.so.13.0.48), but no NCCL net plugin variant fits it: libnccl-net-cuda11.so needs libcudart.so.11.0; libnccl-net-cuda12.so needs libcudart.so.12"
        );
        let (plan, log) = logged(|| f.plan(&cache, None, Mismatch::Warn));
        assert_eq!(plan, Plan::default());
        assert!(
            log.contains(&format!("WARN {found}; the container starts without a NCCL net plugin (NCCL uses its internal transports; NCCL_PLUGIN_MISMATCH=warn)")),
            "{log}"
        );
        let rootfs = Rootfs::open(&f.rootfs).unwrap();
        let e = plan_nccl(&rootfs, &cache, None, &f.cfg(Mismatch::Refuse)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{found}. Install in {} a variant built for CUDA 13 (linked to libcudart.so.13) or one that needs no CUDA runtime, or set NCCL_PLUGIN_MISMATCH=warn to start such containers without a plugin (NCCL then uses its internal transports)",
                f.plugins.display()
            )
        );
    }

    #[test]
    fn image_without_cuda_runtime_gets_nothing() {
        let f = Fixture::new();
        f.cuda_variants(true);
        f.image_lib(LIBDIR, "libz.so.1", "libz.so.1.2.13");
        let cache = f.cache(&["libz.so.1"]);
        assert_eq!(f.plan(&cache, None, Mismatch::Refuse), Plan::default());
    }

    #[test]
    fn a_cache_entry_that_is_not_an_elf_object_is_no_runtime() {
        let f = Fixture::new();
        f.cuda_variants(false);
        let lib = f.rootfs.join(LIBDIR.trim_start_matches('/'));
        std::fs::write(lib.join("libcudart.so.13"), b"not an ELF file").unwrap();
        let cache = f.cache(&["libcudart.so.13"]);
        // Refuse would fail for a CUDA 13 runtime: the lying entry is not one.
        assert_eq!(f.plan(&cache, None, Mismatch::Refuse), Plan::default());
    }

    #[test]
    fn rocm6_image_gets_the_rccl_variant() {
        let f = Fixture::new();
        f.cuda_variants(true);
        f.plugin("librccl-net-rocm5.so", Some("libamdhip64.so.5"));
        f.plugin("librccl-net-rocm6.so", Some("libamdhip64.so.6"));
        f.image_lib(LIBDIR, "libamdhip64.so.6", "libamdhip64.so.6.2.60200");
        let cache = f.cache(&["libamdhip64.so.6"]);
        let plan = f.plan(&cache, None, Mismatch::Refuse);
        let file = f.real_plugin("librccl-net-rocm6.so");
        assert_eq!(
            libs(&plan),
            [
                ("librccl-net.so".to_string(), file.clone()),
                ("librccl-net-rocm6.so".to_string(), file)
            ]
        );
    }

    #[test]
    fn the_plain_name_wins_and_its_symlinked_variant_name_is_kept() {
        let f = Fixture::new();
        f.cuda_variants(true);
        // aws-ofi-nccl installs libnccl-net.so -> libnccl-net-ofi.so; both need cudart 12.
        f.plugin("libnccl-net-ofi.so", Some("libcudart.so.12"));
        link("libnccl-net-ofi.so", &f.plugins.join("libnccl-net.so"));
        f.image_lib(LIBDIR, "libcudart.so.12", "libcudart.so.12.2.140");
        let cache = f.cache(&["libcudart.so.12"]);
        let plan = f.plan(&cache, None, Mismatch::Refuse);
        let file = f.real_plugin("libnccl-net-ofi.so");
        assert_eq!(
            libs(&plan),
            [
                ("libnccl-net.so".to_string(), file.clone()),
                ("libnccl-net-ofi.so".to_string(), file)
            ]
        );
    }

    #[test]
    fn a_symlink_out_of_the_plugin_dir_is_not_a_variant() {
        let f = Fixture::new();
        f.plugin("libnccl-net-nocuda.so", None);
        let outside = f.tmp.path().join("src/libnccl-net-evil.so");
        f.plugin("libnccl-net-evil.so", Some("libcudart.so.12"));
        std::fs::rename(f.plugins.join("libnccl-net-evil.so"), &outside).unwrap();
        link(
            outside.to_str().unwrap(),
            &f.plugins.join("libnccl-net-aaa.so"),
        );
        std::fs::create_dir(f.plugins.join("libnccl-net-dir.so")).unwrap();
        f.image_lib(LIBDIR, "libcudart.so.12", "libcudart.so.12.2.140");
        let cache = f.cache(&["libcudart.so.12"]);
        let plan = f.plan(&cache, None, Mismatch::Refuse);
        let file = f.real_plugin("libnccl-net-nocuda.so");
        assert_eq!(
            libs(&plan),
            [
                ("libnccl-net.so".to_string(), file.clone()),
                ("libnccl-net-nocuda.so".to_string(), file)
            ]
        );
    }

    #[test]
    fn several_fitting_variants_are_taken_in_name_order() {
        let f = Fixture::new();
        f.plugin("libnccl-net-b.so", Some("libcudart.so.12"));
        f.plugin("libnccl-net-a.so", Some("libcudart.so.12"));
        f.image_lib(LIBDIR, "libcudart.so.12", "libcudart.so.12.2.140");
        let cache = f.cache(&["libcudart.so.12"]);
        let plan = f.plan(&cache, None, Mismatch::Refuse);
        let file = f.real_plugin("libnccl-net-a.so");
        assert_eq!(
            libs(&plan),
            [
                ("libnccl-net.so".to_string(), file.clone()),
                ("libnccl-net-a.so".to_string(), file)
            ]
        );
    }

    #[test]
    fn runtime_found_only_through_the_programs_runpath() {
        let f = Fixture::new();
        f.cuda_variants(true);
        f.image_lib("/opt/cuda/lib", "libcudart.so.12", "libcudart.so.12.2.140");
        let cache = f.cache(&["libz.so.1"]);
        let bin = f.rootfs.join("opt/app/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let c = f.tmp.path().join("src/train.c");
        std::fs::write(&c, "int rt(void);\nint main(void) { return rt(); }\n").unwrap();
        let st = std::process::Command::new("gcc")
            .arg("-o")
            .arg(bin.join("train"))
            .arg(&c)
            .arg("-Wl,--no-as-needed,--enable-new-dtags")
            .arg(f.rootfs.join("opt/cuda/lib/libcudart.so.12.2.140"))
            .arg("-Wl,-rpath,$ORIGIN/../../cuda/lib")
            .status()
            .unwrap();
        assert!(st.success(), "gcc train");
        let env = vec!["PATH=/usr/bin:/opt/app/bin".to_string()];
        let process = Process {
            program: "train",
            env: &env,
            cwd: "/",
        };
        let plan = f.plan(&cache, Some(&process), Mismatch::Refuse);
        let file = f.real_plugin("libnccl-net-cuda12.so");
        assert_eq!(
            libs(&plan),
            [
                ("libnccl-net.so".to_string(), file.clone()),
                ("libnccl-net-cuda12.so".to_string(), file.clone())
            ]
        );
        // The image's NCCL_NET_PLUGIN naming another plugin is warned about.
        for (value, warned) in [("ofi", true), ("cuda12", false), ("libnccl-net.so", false)] {
            let env = vec![
                "PATH=/usr/bin:/opt/app/bin".to_string(),
                format!("NCCL_NET_PLUGIN={value}"),
            ];
            let p = Process {
                program: "train",
                env: &env,
                cwd: "/",
            };
            let (plan, log) = logged(|| f.plan(&cache, Some(&p), Mismatch::Refuse));
            assert_eq!(plan.libraries.len(), 2);
            let text = format!("WARN the container's environment sets NCCL_NET_PLUGIN={value}: NCCL loads that instead of the plugin chosen for it ({file}); unset it in the image or set it to cuda12");
            assert_eq!(log.contains(&text), warned, "{value}: {log}");
        }
        // Without the process the runtime outside the cache is not seen.
        assert_eq!(f.plan(&cache, None, Mismatch::Refuse), Plan::default());
    }

    #[test]
    fn a_missing_plugin_dir_is_an_error_naming_it() {
        let f = Fixture::new();
        let cache = f.cache(&[]);
        let rootfs = Rootfs::open(&f.rootfs).unwrap();
        let missing = f.tmp.path().join("no-such-dir");
        let cfg = NcclConfig {
            plugin_dir: missing.clone(),
            on_mismatch: Mismatch::Warn,
        };
        let e = plan_nccl(&rootfs, &cache, None, &cfg).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "NCCL_PLUGIN_DIR {} cannot be read: No such file or directory (os error 2); set NCCL_PLUGIN_DIR (--nccl-plugin-dir) in the hook's hooks.d env to the absolute path of the directory holding the site's libnccl-net*.so / librccl-net*.so plugins, or leave it empty for none",
                missing.display()
            )
        );
        let cfg = NcclConfig {
            plugin_dir: PathBuf::from("plugins"),
            on_mismatch: Mismatch::Warn,
        };
        let e = plan_nccl(&rootfs, &cache, None, &cfg).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("NCCL_PLUGIN_DIR plugins cannot be read: the path is not absolute;"),
            "{e}"
        );
    }
}
