//! The host's network stack as the net tests give it to `mpi-hook --net-only`: libfabric
//! and UCX (Debian 12: 1.17.0 and 1.13.1), their non-glibc dependencies (`ldd`), their
//! module directories, and the versions the host's own libraries report.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::binaries::require_command;
use crate::mpi::ldd_deps;

/// Annotation that enables the network stack (the hooks.d net file, mpi-hook --net-only).
pub const NET_ANNOTATION: &str = "com.hooks.net.enabled";

/// Directory of the host's network libraries.
pub const HOST_LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";
/// The host's network libraries, by SONAME (libfabric, then UCX as one unit).
pub const NET_SONAMES: &[&str] = &[
    "libfabric.so.1",
    "libucp.so.0",
    "libuct.so.0",
    "libucs.so.0",
    "libucm.so.0",
];

/// The host network stack handed to mpi-hook (`NET_*`).
#[derive(Clone, Debug)]
pub struct HostNet {
    /// Real files of [`NET_SONAMES`] (`NET_LIBS`).
    pub libs: Vec<PathBuf>,
    /// Their non-glibc dependencies as resolved by `ldd`, minus `libs` (`NET_DEPENDENCY_LIBS`).
    pub deps: Vec<PathBuf>,
    /// UCX's module directory and the verbs provider directories present (`NET_DIRS`).
    pub dirs: Vec<PathBuf>,
    /// Version of the host libfabric (`fi_info --version`, line `libfabric: X.Y.Z`).
    pub libfabric_version: String,
    /// Version of the host UCX (`ucx_info -v`, line `# Version X.Y.Z`).
    pub ucx_version: String,
}

fn join(v: &[PathBuf]) -> String {
    v.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

impl HostNet {
    /// `NET_LIBS` value.
    pub fn net_libs(&self) -> String {
        join(&self.libs)
    }
    /// `NET_DEPENDENCY_LIBS` value.
    pub fn dependency_libs(&self) -> String {
        join(&self.deps)
    }
    /// `NET_DIRS` value.
    pub fn net_dirs(&self) -> String {
        join(&self.dirs)
    }
    /// `libfabric MAJOR.MINOR` as net-versions prints it for the host libfabric.
    pub fn libfabric_major_minor(&self) -> String {
        let mut it = self.libfabric_version.split('.');
        format!(
            "{}.{}",
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default()
        )
    }
}

fn tool_line(cmd: &str, arg: &str, prefix: &str) -> String {
    let out = Command::new(require_command(cmd))
        .arg(arg)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd} {arg}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(prefix).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| {
            panic!("`{cmd} {arg}` printed no line `{prefix}...` (host tool changed?):\n{text}")
        })
}

/// The host's libfabric and UCX (Debian 12: apt-get install libfabric-bin ucx-utils).
pub fn host_net() -> HostNet {
    static HOST: OnceLock<HostNet> = OnceLock::new();
    HOST.get_or_init(|| {
        let mut libs = Vec::new();
        for s in NET_SONAMES {
            let p = Path::new(HOST_LIBDIR).join(s);
            let real = p.canonicalize().unwrap_or_else(|_| {
                panic!(
                    "PREREQUISITE MISSING: host network library {} not found \
                     (apt-get install libfabric1 libucx0 libfabric-bin ucx-utils)",
                    p.display()
                )
            });
            libs.push(real);
        }
        let mut deps: Vec<PathBuf> = Vec::new();
        for l in &libs {
            for d in ldd_deps(l) {
                let name = d
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if !NET_SONAMES.contains(&name.as_str()) && !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        let ucx = Path::new(HOST_LIBDIR).join("ucx");
        assert!(
            ucx.is_dir(),
            "PREREQUISITE MISSING: the host UCX has no module directory {} \
             (apt-get install libucx0)",
            ucx.display()
        );
        let mut dirs = vec![ucx];
        for d in [
            format!("{HOST_LIBDIR}/libibverbs"),
            "/etc/libibverbs.d".to_string(),
        ] {
            if Path::new(&d).is_dir() {
                dirs.push(PathBuf::from(d));
            }
        }
        HostNet {
            libs,
            deps,
            dirs,
            libfabric_version: tool_line("fi_info", "--version", "libfabric:"),
            ucx_version: tool_line("ucx_info", "-v", "# Version"),
        }
    })
    .clone()
}
