//! The host MPIs that mpi-hook injects, MPICH and Open MPI (library, its non-glibc
//! dependencies from `ldd`, version from `mpichversion`/`ompi_info`), and the version
//! mpi-hello prints.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::binaries::require_command;

/// glibc sonames (and the loader / vdso) that are not MPI dependencies.
const GLIBC_SONAME_PREFIXES: &[&str] = &[
    "linux-vdso.so",
    "linux-gate.so",
    "ld-linux",
    "ld64.so",
    "libc.so",
    "libm.so",
    "libmvec.so",
    "libpthread.so",
    "libdl.so",
    "librt.so",
    "libresolv.so",
    "libutil.so",
    "libanl.so",
    "libnsl.so",
    "libBrokenLocale.so",
    "libthread_db.so",
    "libc_malloc_debug.so",
    "libnss_",
    "libmemusage.so",
    "libpcprofile.so",
];

/// Host MPI configuration handed to mpi-hook.
#[derive(Clone, Debug)]
pub struct HostMpi {
    /// Host MPICH library (`MPI_LIBS`).
    pub lib: PathBuf,
    /// Its non-glibc dependencies as resolved by `ldd` (`MPI_DEPENDENCY_LIBS`).
    pub deps: Vec<PathBuf>,
    /// Host MPICH version (e.g. `4.0.2`), from `mpichversion`.
    pub version: String,
}

impl HostMpi {
    /// `MPI_LIBS` value.
    pub fn mpi_libs(&self) -> String {
        self.lib.display().to_string()
    }
    /// `MPI_DEPENDENCY_LIBS` value.
    pub fn dependency_libs(&self) -> String {
        self.deps
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// The host's MPICH (override the library with `E2E_HOST_MPI_LIB`).
pub fn host_mpi() -> HostMpi {
    static HOST: OnceLock<HostMpi> = OnceLock::new();
    HOST.get_or_init(|| {
        let lib = std::env::var_os("E2E_HOST_MPI_LIB")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/x86_64-linux-gnu/libmpich.so.12.2.2"));
        if !lib.is_file() {
            panic!(
                "PREREQUISITE MISSING: host MPI library {} not found (apt-get install mpich libmpich-dev, \
                 or set E2E_HOST_MPI_LIB)",
                lib.display()
            );
        }
        let deps = ldd_deps(&lib);
        let mv = require_command("mpichversion");
        let out = Command::new(mv).output().expect("run mpichversion");
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("MPICH Version:").map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("cannot read the host MPICH version from mpichversion"));
        HostMpi { lib, deps, version }
    })
    .clone()
}

/// The non-glibc libraries `lib` loads, as `ldd` resolves them on the host.
pub(crate) fn ldd_deps(lib: &std::path::Path) -> Vec<PathBuf> {
    let ldd = require_command("ldd");
    let out = Command::new(ldd).arg(lib).output().expect("run ldd");
    assert!(
        out.status.success(),
        "ldd {} failed: {}",
        lib.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut deps = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "\tlibhwloc.so.15 => /lib/x86_64-linux-gnu/libhwloc.so.15 (0x...)"
        let Some((name, rest)) = line.trim().split_once(" => ") else {
            continue;
        };
        if GLIBC_SONAME_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let path = rest.split_whitespace().next().unwrap_or("");
        assert!(
            path.starts_with('/'),
            "ldd {}: dependency {name} not found on the host: `{line}`",
            lib.display()
        );
        deps.push(PathBuf::from(path));
    }
    deps
}

/// The host's Open MPI (Debian 12: 4.1.4; override the library with `E2E_HOST_OPEN_MPI_LIB`).
pub fn host_open_mpi() -> HostMpi {
    static HOST: OnceLock<HostMpi> = OnceLock::new();
    HOST.get_or_init(|| {
        let lib = std::env::var_os("E2E_HOST_OPEN_MPI_LIB")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/x86_64-linux-gnu/libmpi.so.40"));
        if !lib.is_file() {
            panic!(
                "PREREQUISITE MISSING: host Open MPI library {} not found (apt-get install openmpi-bin \
                 libopenmpi-dev, or set E2E_HOST_OPEN_MPI_LIB)",
                lib.display()
            );
        }
        let deps = ldd_deps(&lib);
        let oi = require_command("ompi_info");
        let out = Command::new(oi).arg("--version").output().expect("run ompi_info");
        let version = open_mpi_version(&String::from_utf8_lossy(&out.stdout))
            .unwrap_or_else(|| panic!("cannot read the host Open MPI version from ompi_info --version"));
        HostMpi { lib, deps, version }
    })
    .clone()
}

/// Open MPI version reported by mpi-hello ("rank 0 of 1: Open MPI v4.1.0, package: ..."),
/// or by `ompi_info --version` ("Open MPI v4.1.4").
pub fn open_mpi_version(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        let (_, v) = l.split_once("Open MPI v")?;
        let v = v.split([',', ' ']).next()?;
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// Version reported by mpi-hello ("rank 0 of 1: MPICH Version:\t3.4.1 ..."), if any.
pub fn mpich_version(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        let (_, v) = l.split_once("MPICH Version:")?;
        v.split_whitespace().next().map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mpich_version() {
        assert_eq!(
            mpich_version("rank 0 of 1: MPICH Version:\t3.4.1\n").as_deref(),
            Some("3.4.1")
        );
        assert_eq!(mpich_version("nothing"), None);
    }

    #[test]
    fn parses_open_mpi_version() {
        assert_eq!(
            open_mpi_version(
                "rank 0 of 1: Open MPI v4.1.0, package: Debian OpenMPI, ident: 4.1.0\n"
            )
            .as_deref(),
            Some("4.1.0")
        );
        assert_eq!(
            open_mpi_version("Open MPI v4.1.4\n\nhttp://www.open-mpi.org/community/help/\n")
                .as_deref(),
            Some("4.1.4")
        );
        assert_eq!(open_mpi_version("rank 0 of 1: MPICH Version:\t3.4.1"), None);
    }
}
