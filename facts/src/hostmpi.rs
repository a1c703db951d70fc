//! The host MPI stack as `hpc-hooks-configure` detects it (MPI libraries from the host's
//! loader cache, their non-glibc dependencies by DT_NEEDED closure), and the names of the
//! CDI devices that carry it (`hpc-hooks.io/mpi=host`, `hpc-hooks.io/glibc=host`), shared
//! by cdi-gen, which writes the specs, and the hooks, which run for them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::elf::{self, ElfClass};
use crate::glibc::is_glibc_soname;
use crate::hostlib::MAX_ELF_BYTES;
use crate::ldcache::LdCache;

/// CDI kind of the host MPI device.
pub const MPI_KIND: &str = "hpc-hooks.io/mpi";
/// CDI kind of the host glibc device.
pub const GLIBC_KIND: &str = "hpc-hooks.io/glibc";
/// The one device name of both kinds.
pub const DEVICE_NAME: &str = "host";
/// `hpc-hooks.io/glibc=host`, as users request it.
pub const GLIBC_DEVICE: &str = "hpc-hooks.io/glibc=host";
/// `hpc-hooks.io/mpi=host`, as users request it.
pub const MPI_DEVICE: &str = "hpc-hooks.io/mpi=host";
/// Container environment entry the glibc device sets, so that the MPI device's hook
/// knows that the host glibc may be injected (the same choice the glibc annotation
/// gives any user: it selects, it widens nothing).
pub const GLIBC_DEVICE_ENV: &str = "HPC_HOOKS_CDI_GLIBC";
/// Container directory where the CDI specs stage the host MPI libraries (read-only).
pub const STAGING_DIR: &str = "/run/hpc-hooks-staging/mpi";
/// The host network stack's CDI kind and device (`hpc-hooks.io/net=host`), defined with
/// its detection in [`crate::hostnet`].
pub use crate::hostnet::{NET_DEVICE, NET_KIND};

#[derive(Debug, thiserror::Error)]
pub enum HostMpiError {
    #[error("no host MPI found: no libmpi.so.N or libmpich.so.N for {arch} in the host's loader cache {cache}; install the site MPI and run ldconfig, or name the libraries with --mpi-libs")]
    NotFound { arch: String, cache: PathBuf },
    #[error("host library {path}: {message}; fix or reinstall it, or name the libraries with --mpi-libs/--mpi-dependency-libs")]
    Lib { path: PathBuf, message: String },
    #[error("{needed}, needed by {by}, is not in the host's loader cache; install it and run ldconfig, or give the dependencies with --mpi-dependency-libs")]
    Unresolved { needed: String, by: PathBuf },
}

/// What the host MPI stack is: the `MPI_LIBS` and `MPI_DEPENDENCY_LIBS` of the hooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMpi {
    pub mpi_libs: Vec<PathBuf>,
    pub dependency_libs: Vec<PathBuf>,
}

/// Whether `soname` is an MPI library as hpc-hooks-configure detects it
/// (`libmpi.so.N`, `libmpich.so.N`).
pub fn is_mpi_soname(soname: &str) -> bool {
    let Some(rest) = soname
        .strip_prefix("libmpich.so.")
        .or_else(|| soname.strip_prefix("libmpi.so."))
    else {
        return false;
    };
    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
}

/// The MPI libraries of `cache` for an architecture, one per real file (the cache's path).
pub fn mpi_libs(cache: &LdCache, class: ElfClass, machine: u16) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for e in &cache.entries {
        if e.hwcap != 0 || !is_mpi_soname(&e.soname) || !e.arch().matches_elf(class, machine) {
            continue;
        }
        let p = PathBuf::from(&e.path);
        let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if seen.insert(real) {
            out.push(p);
        }
    }
    out
}

/// The non-glibc libraries `libs` need, transitively, resolved through `cache` for their
/// architecture (what `ldd` prints, minus glibc and the loader), in discovery order.
pub fn dependencies(cache: &LdCache, libs: &[PathBuf]) -> Result<Vec<PathBuf>, HostMpiError> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    let mut queue: Vec<PathBuf> = libs.to_vec();
    let mut i = 0;
    while let Some(p) = queue.get(i).cloned() {
        i += 1;
        let lib_err = |message: String| HostMpiError::Lib {
            path: p.clone(),
            message,
        };
        let f = std::fs::File::open(&p).map_err(|e| lib_err(e.to_string()))?;
        let facts = elf::read_file(&f, MAX_ELF_BYTES).map_err(|e| lib_err(e.to_string()))?;
        if let Some(s) = &facts.soname {
            seen.insert(s.clone());
        }
        for needed in &facts.needed {
            if is_glibc_soname(needed) || !seen.insert(needed.clone()) {
                continue;
            }
            let dep = cache
                .lookup_elf(needed, facts.class, facts.machine)
                .next()
                .ok_or_else(|| HostMpiError::Unresolved {
                    needed: needed.clone(),
                    by: p.clone(),
                })?;
            let dep = PathBuf::from(&dep.path);
            out.push(dep.clone());
            queue.push(dep);
        }
    }
    Ok(out)
}

/// Detects the host MPI stack from the loader cache at `cache_path` for the given
/// architecture (the host's: see [`host_arch`]).
pub fn discover(
    cache: &LdCache,
    cache_path: &Path,
    class: ElfClass,
    machine: u16,
) -> Result<HostMpi, HostMpiError> {
    let mpi_libs = mpi_libs(cache, class, machine);
    if mpi_libs.is_empty() {
        return Err(HostMpiError::NotFound {
            arch: elf::machine_name(machine).into(),
            cache: cache_path.to_owned(),
        });
    }
    let dependency_libs = dependencies(cache, &mpi_libs)?;
    Ok(HostMpi {
        mpi_libs,
        dependency_libs,
    })
}

/// Class and machine of the running program (a host binary): the host's architecture.
pub fn host_arch() -> Result<(ElfClass, u16), HostMpiError> {
    let exe = PathBuf::from("/proc/self/exe");
    let f = std::fs::File::open(&exe).map_err(|e| HostMpiError::Lib {
        path: exe.clone(),
        message: e.to_string(),
    })?;
    let facts = elf::read_file(&f, MAX_ELF_BYTES).map_err(|e| HostMpiError::Lib {
        path: exe,
        message: e.to_string(),
    })?;
    Ok((facts.class, facts.machine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpi_sonames() {
        for s in ["libmpi.so.12", "libmpich.so.12", "libmpi.so.40"] {
            assert!(is_mpi_soname(s), "{s}");
        }
        for s in [
            "libmpich.so",
            "libmpichfort.so.12",
            "libmpi.so.",
            "libmpi.so.12.1",
            "libmpi_cxx.so.40",
        ] {
            assert!(!is_mpi_soname(s), "{s}");
        }
    }

    #[test]
    fn host_mpich_and_its_dependencies() {
        // This machine's MPICH (Debian 12's mpich package, a test prerequisite).
        let f = std::fs::File::open("/etc/ld.so.cache").expect("host /etc/ld.so.cache");
        let cache = crate::ldcache::read_file(&f).unwrap();
        let (class, machine) = host_arch().unwrap();
        let m = discover(&cache, Path::new("/etc/ld.so.cache"), class, machine)
            .expect("PREREQUISITE MISSING: host MPICH (apt-get install mpich libmpich-dev)");
        assert!(
            m.mpi_libs.iter().any(|p| p.ends_with("libmpich.so.12")),
            "{m:?}"
        );
        let names: Vec<String> = m
            .dependency_libs
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("libhwloc.so.")),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| is_glibc_soname(n)), "{names:?}");
        // Each dependency once.
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }
}
