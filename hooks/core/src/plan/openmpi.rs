//! What a host Open MPI loads at run time besides the libraries in `MPI_LIBS`: its component
//! (MCA plugin) directory, its help texts and parameter file, and the libraries its
//! components need (PMIx, UCX, libfabric...), discovered from the host `libmpi.so.40`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::elf;
use crate::glibc::is_glibc_soname;
use crate::hostlib::{HostLib, MAX_ELF_BYTES};
use crate::ldcache::{self, LdCache};

/// Most entries read from one host directory while looking for components.
const MAX_DIR_ENTRIES: usize = 4096;
/// Most libraries added for the components.
const MAX_LIBRARIES: usize = 512;
/// Largest host loader cache read.
const MAX_HOST_CACHE_BYTES: u64 = 64 << 20;

/// A host Open MPI's run-time files, all host paths (real, no symlink) bound read-only at
/// the same path in the container, where the host's `libopen-pal` looks for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenMpiRuntime {
    /// The component directory (`<libdir>/openmpi`, Debian's `<libdir>/openmpi/lib/openmpi3`).
    pub components: Option<PathBuf>,
    /// Directories and files bound besides the components: `<prefix>/share/openmpi` (help
    /// texts), the parameter file (`<prefix>/etc/openmpi-mca-params.conf`, Debian's
    /// `/etc/openmpi`), the plugin directories of PMIx and UCX.
    pub others: Vec<PathBuf>,
    /// Libraries the components need, resolved through the host loader cache (no glibc).
    pub libraries: Vec<PathBuf>,
}

impl OpenMpiRuntime {
    /// Every path to bind, components first.
    pub fn binds(&self) -> impl Iterator<Item = &PathBuf> {
        self.components.iter().chain(self.others.iter())
    }
}

fn real_dir(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok().filter(|r| r.is_dir())
}

/// The shared objects directly in `dir` whose name starts with `prefix` (bounded, sorted).
fn plugins(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    // UCX's transports are versioned (`libuct_cma.so.0`): a `.so` anywhere in the name.
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .take(MAX_DIR_ENTRIES)
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(prefix) && n.contains(".so") && e.file_type().is_ok_and(|t| t.is_file())
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// The non-glibc libraries `objects` need, transitively, resolved through the host's
/// `cache` (each file read once, at most [`MAX_LIBRARIES`]). A name the cache lacks is
/// skipped: the component needing it does not load on the host either.
fn closure(cache: &LdCache, objects: &[PathBuf]) -> Vec<PathBuf> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut out: Vec<PathBuf> = Vec::new();
    let mut queue: Vec<PathBuf> = objects.to_vec();
    let mut i = 0;
    while let Some(p) = queue.get(i).cloned() {
        i += 1;
        let facts = match std::fs::File::open(&p)
            .map_err(|e| e.to_string())
            .and_then(|f| elf::read_file(&f, MAX_ELF_BYTES).map_err(|e| e.to_string()))
        {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!("host Open MPI file {}: {e}", p.display());
                continue;
            }
        };
        for needed in &facts.needed {
            if is_glibc_soname(needed) || !names.insert(needed.clone()) {
                continue;
            }
            let Some(dep) = cache.lookup_elf(needed, facts.class, facts.machine).next() else {
                tracing::debug!(
                    "{needed}, needed by {}, is not in the host's loader cache",
                    p.display()
                );
                continue;
            };
            if out.len() >= MAX_LIBRARIES {
                tracing::warn!(
                    "host Open MPI: more than {MAX_LIBRARIES} libraries needed by its components; the rest are not added"
                );
                return out;
            }
            let dep = PathBuf::from(&dep.path);
            out.push(dep.clone());
            queue.push(dep);
        }
    }
    out
}

/// Reads the host's loader cache (`/etc/ld.so.cache`).
pub fn host_cache() -> Result<LdCache, String> {
    let f = std::fs::File::open("/etc/ld.so.cache").map_err(|e| e.to_string())?;
    ldcache::read_file_capped(&f, MAX_HOST_CACHE_BYTES).map_err(|e| e.to_string())
}

/// Discovers the run-time files of the host Open MPI whose `libmpi` is `host`; `cache` (the
/// host's loader cache) resolves what its components need. Nothing found: an empty value.
pub fn discover(host: &HostLib, cache: Option<&LdCache>) -> OpenMpiRuntime {
    let mut rt = OpenMpiRuntime::default();
    let Some(libdir) = host.real.parent() else {
        return rt;
    };
    rt.components = [
        libdir.join("openmpi/lib/openmpi3"),
        libdir.join("openmpi/lib/openmpi"),
        libdir.join("openmpi"),
    ]
    .iter()
    .filter_map(|d| real_dir(d))
    .find(|d| !plugins(d, "mca_").is_empty());
    // The installation prefix: the nearest ancestor with share/openmpi.
    let prefix = libdir
        .ancestors()
        .take(4)
        .find(|a| a.join("share/openmpi").is_dir());
    if let Some(prefix) = prefix {
        if let Some(share) = real_dir(&prefix.join("share/openmpi")) {
            rt.others.push(share);
        }
        let params = prefix.join("etc/openmpi-mca-params.conf");
        if params.is_file() {
            if let Ok(p) = std::fs::canonicalize(&params) {
                rt.others.push(p);
            }
        } else if prefix == Path::new("/usr") {
            if let Some(etc) = real_dir(Path::new("/etc/openmpi")) {
                rt.others.push(etc);
            }
        }
    }
    let (Some(dir), Some(cache)) = (&rt.components, cache) else {
        return rt;
    };
    rt.libraries = closure(cache, &plugins(dir, ""));
    // An external PMIx loads its own plugins from `<its libdir>/pmix`, UCX its transports
    // from `<its libdir>/ucx`.
    for l in &rt.libraries {
        let Ok(real) = std::fs::canonicalize(l) else {
            continue;
        };
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (sub, plugin) = if name.starts_with("libpmix.so") {
            ("pmix", "pmix_mca_")
        } else if name.starts_with("libucs.so") {
            ("ucx", "libuct_")
        } else {
            continue;
        };
        if let Some(d) = real.parent().and_then(|p| real_dir(&p.join(sub))) {
            if !plugins(&d, plugin).is_empty() && !rt.others.contains(&d) {
                rt.others.push(d);
            }
        }
    }
    rt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installation_layout_is_found_from_libmpi() {
        let t = tempfile::tempdir().unwrap();
        let pre = t.path().join("opt/ompi");
        let lib = pre.join("lib");
        std::fs::create_dir_all(lib.join("openmpi")).unwrap();
        std::fs::create_dir_all(pre.join("share/openmpi")).unwrap();
        std::fs::create_dir_all(pre.join("etc")).unwrap();
        std::fs::write(pre.join("etc/openmpi-mca-params.conf"), b"").unwrap();
        std::fs::write(lib.join("openmpi/mca_btl_self.so"), b"").unwrap();
        // libmpi itself: any ELF will do for the layout (the test binary's loader).
        let host = crate::hostlib::inspect(Path::new("/proc/self/exe")).unwrap();
        let host = HostLib {
            real: lib.join("libmpi.so.40.30.4"),
            ..host
        };
        let rt = discover(&host, None);
        let pre = std::fs::canonicalize(&pre).unwrap();
        assert_eq!(rt.components, Some(pre.join("lib/openmpi")));
        assert_eq!(
            rt.others,
            vec![
                pre.join("share/openmpi"),
                pre.join("etc/openmpi-mca-params.conf")
            ]
        );
        assert!(rt.libraries.is_empty());
    }

    #[test]
    fn no_component_directory_is_nothing_to_bind() {
        let t = tempfile::tempdir().unwrap();
        let lib = t.path().join("lib");
        std::fs::create_dir_all(lib.join("openmpi")).unwrap();
        let host = crate::hostlib::inspect(Path::new("/proc/self/exe")).unwrap();
        let host = HostLib {
            real: lib.join("libmpi.so.40"),
            ..host
        };
        assert_eq!(discover(&host, None), OpenMpiRuntime::default());
    }
}
