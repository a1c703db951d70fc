//! The host's network stack as `cdi-gen net` and `hpc-hooks-configure` detect it: the
//! libfabric and UCX libraries the host MPI links (else those the host has), their non-glibc
//! dependencies, their provider/module directories and the fabric device nodes present.

use std::collections::BTreeSet;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::elf::{self, ElfClass};
use crate::glibc::is_glibc_soname;
use crate::hostlib::MAX_ELF_BYTES;
use crate::hostmpi;
use crate::ldcache::LdCache;

/// CDI kind of the host network stack device.
pub const NET_KIND: &str = "hpc-hooks.io/net";
/// `hpc-hooks.io/net=host`, as users request it.
pub const NET_DEVICE: &str = "hpc-hooks.io/net=host";
/// Container directory where the CDI spec stages the host network libraries (read-only).
pub const STAGING_DIR: &str = "/run/hpc-hooks-staging/net";
/// The network libraries, by SONAME: libfabric, then UCX (`NET_LIBS` order).
pub const NET_SONAMES: [&str; 5] = [
    "libfabric.so.1",
    "libucp.so.0",
    "libuct.so.0",
    "libucs.so.0",
    "libucm.so.0",
];
/// UCX's libraries: one unit (all of them or none).
pub const UCX_SONAMES: [&str; 4] = ["libucp.so.0", "libuct.so.0", "libucs.so.0", "libucm.so.0"];
/// The verbs configuration directory (`<name>.driver` files naming the providers).
pub const LIBIBVERBS_CONF_DIR: &str = "/etc/libibverbs.d";

/// Most entries read from one directory (a provider directory, `/dev`).
const MAX_DIR_ENTRIES: usize = 16384;
/// Most files whose DT_NEEDED entries one closure reads.
const MAX_CLOSURE_FILES: usize = 1024;

/// A class of fabric device nodes under `/dev` and who opens them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FabricDevices {
    /// A directory (`infiniband`) or a node-name prefix (`cxi` for `/dev/cxi0` ...).
    pub name: &'static str,
    /// Whether `name` is a directory of nodes (else a prefix of node names).
    pub directory: bool,
    /// The fabric and the providers/transports that use these nodes.
    pub users: &'static str,
}

/// The fabric device nodes detected (docs/network.md shows this table).
pub const FABRIC_DEVICES: [FabricDevices; 5] = [
    FabricDevices {
        name: "infiniband",
        directory: true,
        users: "RDMA (InfiniBand, RoCE, iWARP, AWS EFA): libibverbs/librdmacm, so libfabric's verbs and efa providers, UCX's ib/rc/ud/dc and rdmacm transports, Open MPI's openib",
    },
    FabricDevices {
        name: "cxi",
        directory: false,
        users: "HPE Slingshot 11: libfabric's cxi provider",
    },
    FabricDevices {
        name: "hfi1_",
        directory: false,
        users: "Intel/Cornelis Omni-Path: libpsm2, so libfabric's psm2 and opx providers",
    },
    FabricDevices {
        name: "kgni",
        directory: false,
        users: "Cray Aries (uGNI): libfabric's gni provider",
    },
    FabricDevices {
        name: "kfi",
        directory: false,
        users: "kernel fabric interface (kfabric) devices",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum HostNetError {
    #[error("host library {path}: {message}; fix or reinstall it, or name the libraries with --net-libs/--net-dependency-libs")]
    Lib { path: PathBuf, message: String },
    #[error("{needed}, needed by {by}, is not in the host's loader cache; install it and run ldconfig, or give the dependencies with --net-dependency-libs")]
    Unresolved { needed: String, by: PathBuf },
    #[error("{0}")]
    Arch(#[from] hostmpi::HostMpiError),
}

/// What the host network stack is: the `NET_LIBS`, `NET_DEPENDENCY_LIBS`, `NET_DIRS` and
/// `NET_DEVICES` of mpi-hook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNet {
    pub libs: Vec<PathBuf>,
    pub dependency_libs: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
    pub devices: Vec<PathBuf>,
}

/// Whether `soname` is one of [`NET_SONAMES`].
pub fn is_net_soname(soname: &str) -> bool {
    NET_SONAMES.contains(&soname)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn real_dir(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok().filter(|r| r.is_dir())
}

/// Regular files (or links to them) directly in `dir` with `.so` in their name whose
/// name starts with `prefix`, sorted, bounded.
fn shared_objects(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .take(MAX_DIR_ENTRIES)
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(prefix) && n.contains(".so") && e.path().is_file()
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// The component directory of a host Open MPI whose `libmpi.so.N` is `lib` (Debian's
/// `<libdir>/openmpi/lib/openmpi3`, else `<libdir>/openmpi/lib/openmpi`, `<libdir>/openmpi`).
fn openmpi_components(lib: &Path) -> Vec<PathBuf> {
    if !file_name(lib).starts_with("libmpi.so.") {
        return Vec::new();
    }
    let Some(libdir) = std::fs::canonicalize(lib)
        .ok()
        .and_then(|r| r.parent().map(Path::to_path_buf))
    else {
        return Vec::new();
    };
    ["openmpi/lib/openmpi3", "openmpi/lib/openmpi", "openmpi"]
        .iter()
        .filter_map(|d| real_dir(&libdir.join(d)))
        .map(|d| shared_objects(&d, "mca_"))
        .find(|v| !v.is_empty())
        .unwrap_or_default()
}

/// The DT_NEEDED closure of `roots`, resolved through `cache`: `(soname, cache path)` in
/// discovery order, glibc left out, each SONAME once (the roots' own SONAMEs too).
/// `strict`: a root that cannot be read or a name the cache lacks is an error (the
/// libraries themselves); else it is skipped (plugins: one that does not load on the
/// host is not the stack's).
fn closure(
    cache: &LdCache,
    roots: &[PathBuf],
    strict: bool,
) -> Result<Vec<(String, PathBuf)>, HostNetError> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    let mut queue: Vec<PathBuf> = roots.to_vec();
    let mut i = 0;
    while let Some(p) = queue.get(i).cloned() {
        i += 1;
        if i > MAX_CLOSURE_FILES {
            break;
        }
        let lib_err = |message: String| HostNetError::Lib {
            path: p.clone(),
            message,
        };
        let facts = match std::fs::File::open(&p)
            .map_err(|e| lib_err(e.to_string()))
            .and_then(|f| elf::read_file(&f, MAX_ELF_BYTES).map_err(|e| lib_err(e.to_string())))
        {
            Ok(f) => f,
            Err(e) if strict => return Err(e),
            Err(_) => continue,
        };
        if let Some(s) = &facts.soname {
            seen.insert(s.clone());
        }
        for needed in &facts.needed {
            if is_glibc_soname(needed) || !seen.insert(needed.clone()) {
                continue;
            }
            let Some(dep) = cache.lookup_elf(needed, facts.class, facts.machine).next() else {
                if strict {
                    return Err(HostNetError::Unresolved {
                        needed: needed.clone(),
                        by: p.clone(),
                    });
                }
                continue;
            };
            let dep = PathBuf::from(&dep.path);
            out.push((needed.clone(), dep.clone()));
            queue.push(dep);
        }
    }
    Ok(out)
}

/// The first cache entry of `soname` for the architecture (plain entries first).
fn in_cache(cache: &LdCache, soname: &str, class: ElfClass, machine: u16) -> Option<PathBuf> {
    cache
        .lookup_elf(soname, class, machine)
        .next()
        .map(|e| PathBuf::from(&e.path))
}

/// The network libraries: the [`NET_SONAMES`] in the DT_NEEDED closure of `mpi_libs` and
/// of the host Open MPI's components, else (none there, or no MPI) those in `cache`. UCX
/// is one unit: one of its libraries brings the others the cache has.
fn net_libs(
    cache: &LdCache,
    mpi_libs: &[PathBuf],
    class: ElfClass,
    machine: u16,
) -> Result<Vec<PathBuf>, HostNetError> {
    let mut roots: Vec<PathBuf> = mpi_libs.to_vec();
    for l in mpi_libs {
        roots.extend(openmpi_components(l));
    }
    // The MPI's own closure is read leniently: a component that does not load on the host
    // is not part of the stack the MPI uses.
    let linked: Vec<(String, PathBuf)> = closure(cache, &roots, false)?
        .into_iter()
        .filter(|(s, _)| is_net_soname(s))
        .collect();
    let mut libs: Vec<(String, PathBuf)> = if linked.is_empty() {
        NET_SONAMES
            .iter()
            .filter_map(|s| in_cache(cache, s, class, machine).map(|p| (s.to_string(), p)))
            .collect()
    } else {
        linked
    };
    if libs.iter().any(|(s, _)| UCX_SONAMES.contains(&s.as_str())) {
        for s in UCX_SONAMES {
            if libs.iter().all(|(have, _)| have != s) {
                if let Some(p) = in_cache(cache, s, class, machine) {
                    libs.push((s.to_string(), p));
                }
            }
        }
    }
    libs.sort_by_key(|(s, _)| NET_SONAMES.iter().position(|n| n == s));
    Ok(libs.into_iter().map(|(_, p)| p).collect())
}

/// The directory of the real file of the library `soname` among `libs`.
fn real_libdir(libs: &[PathBuf], prefix: &str) -> Option<PathBuf> {
    libs.iter()
        .find(|l| file_name(l).starts_with(prefix))
        .and_then(|l| std::fs::canonicalize(l).ok())
        .and_then(|r| r.parent().map(Path::to_path_buf))
}

/// Adds the real directory of `d`, when it is one, to `dirs` (once).
fn push_dir(dirs: &mut Vec<PathBuf>, d: PathBuf) {
    if let Some(r) = real_dir(&d) {
        if !dirs.contains(&r) {
            dirs.push(r);
        }
    }
}

/// The fabric device nodes under `dev_root` (the host's `/dev`), in [`FABRIC_DEVICES`]
/// order: the directories that exist, and the character or block nodes with a prefix.
pub fn fabric_devices(dev_root: &Path) -> Vec<PathBuf> {
    let mut names: Vec<(String, bool)> = match std::fs::read_dir(dev_root) {
        Ok(rd) => rd
            .take(MAX_DIR_ENTRIES)
            .flatten()
            .map(|e| {
                let node = e
                    .file_type()
                    .is_ok_and(|t| t.is_char_device() || t.is_block_device());
                (e.file_name().to_string_lossy().into_owned(), node)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    let mut out = Vec::new();
    for class in FABRIC_DEVICES {
        if class.directory {
            let d = dev_root.join(class.name);
            if d.is_dir() {
                out.push(d);
            }
            continue;
        }
        for (n, node) in &names {
            if *node && n.len() > class.name.len() && n.starts_with(class.name) {
                out.push(dev_root.join(n));
            }
        }
    }
    out
}

/// Detects the host network stack: `cache` is the host's loader cache, `mpi_libs` the host
/// MPI libraries (`MPI_LIBS`; empty: none), `dev_root` the host's `/dev`.
///
/// - libs: the [`NET_SONAMES`] the MPI's closure links (with Open MPI's components,
///   `mca_*.so` beside `libmpi.so.N`), else those `cache` has; UCX all or none.
/// - dependency_libs: the non-glibc DT_NEEDED closure of libs and of the provider modules
///   in their directories (those that load on the host), minus libs.
/// - dirs: `<dir of libfabric>/libfabric`, `<dir of libucs>/ucx`, and with libibverbs in
///   the closure `<dir of libibverbs>/libibverbs` and `/etc/libibverbs.d`; directories only.
/// - devices: [`fabric_devices`].
pub fn discover(
    cache: &LdCache,
    mpi_libs: &[PathBuf],
    dev_root: &Path,
) -> Result<HostNet, HostNetError> {
    let (class, machine) = hostmpi::host_arch()?;
    discover_for(cache, mpi_libs, dev_root, class, machine)
}

/// [`discover`] for an architecture (the host's: [`hostmpi::host_arch`]).
pub fn discover_for(
    cache: &LdCache,
    mpi_libs: &[PathBuf],
    dev_root: &Path,
    class: ElfClass,
    machine: u16,
) -> Result<HostNet, HostNetError> {
    let libs = net_libs(cache, mpi_libs, class, machine)?;
    from_libs(cache, &libs, dev_root)
}

/// The rest of the stack for given network libraries (`NET_LIBS`): their dependencies,
/// directories and the devices, as [`discover`] finds them.
pub fn from_libs(
    cache: &LdCache,
    libs: &[PathBuf],
    dev_root: &Path,
) -> Result<HostNet, HostNetError> {
    let libs = libs.to_vec();
    let mut dirs = Vec::new();
    if let Some(d) = real_libdir(&libs, "libfabric.so") {
        push_dir(&mut dirs, d.join("libfabric"));
    }
    if let Some(d) = real_libdir(&libs, "libucs.so") {
        push_dir(&mut dirs, d.join("ucx"));
    }
    let mut roots = libs.clone();
    for d in &dirs {
        roots.extend(shared_objects(d, ""));
    }
    // The libraries must load: strict. The modules' needs are read leniently.
    let mut deps: Vec<(String, PathBuf)> = closure(cache, &libs, true)?;
    let names: BTreeSet<String> = deps.iter().map(|(s, _)| s.clone()).collect();
    for (s, p) in closure(cache, &roots, false)? {
        if !names.contains(&s) && deps.iter().all(|(have, _)| *have != s) {
            deps.push((s, p));
        }
    }
    let lib_reals: BTreeSet<PathBuf> = libs
        .iter()
        .map(|l| std::fs::canonicalize(l).unwrap_or_else(|_| l.clone()))
        .collect();
    let dependency_libs: Vec<PathBuf> = deps
        .into_iter()
        .filter(|(s, p)| {
            !is_net_soname(s)
                && !lib_reals.contains(&std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        })
        .map(|(_, p)| p)
        .collect();
    if let Some(d) = real_libdir(&dependency_libs, "libibverbs.so") {
        push_dir(&mut dirs, d.join("libibverbs"));
        if Path::new(LIBIBVERBS_CONF_DIR).is_dir() {
            dirs.push(PathBuf::from(LIBIBVERBS_CONF_DIR));
        }
    }
    Ok(HostNet {
        libs,
        dependency_libs,
        dirs,
        devices: fabric_devices(dev_root),
    })
}

/// `v` as a `:`-separated list (the hooks' and hpc-hooks.conf's form).
pub fn join(v: &[PathBuf]) -> String {
    v.iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

impl HostNet {
    /// The four `KEY=VALUE` lines `cdi-gen net --print-config` prints.
    pub fn config_lines(&self) -> [String; 4] {
        [
            format!("NET_LIBS={}", join(&self.libs)),
            format!("NET_DEPENDENCY_LIBS={}", join(&self.dependency_libs)),
            format!("NET_DIRS={}", join(&self.dirs)),
            format!("NET_DEVICES={}", join(&self.devices)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldcache::{CacheEntry, CacheFormat};
    use crate::ldcache_write::cache_flags_for;
    use std::process::Command;

    fn host_cache() -> LdCache {
        let f = std::fs::File::open("/etc/ld.so.cache").expect("host /etc/ld.so.cache");
        crate::ldcache::read_file(&f).unwrap()
    }

    fn names(v: &[PathBuf]) -> Vec<String> {
        v.iter().map(|p| file_name(p)).collect()
    }

    /// A stub shared object `dir/file` with `soname`, linked against `needs` (paths).
    fn stub(dir: &Path, file: &str, soname: &str, needs: &[&Path]) -> PathBuf {
        let src = dir.join("stub.c");
        std::fs::write(&src, "int stub_fn(void) { return 1; }\n").unwrap();
        let out = dir.join(file);
        let ok = Command::new("gcc")
            .args(["-shared", "-fPIC", "-nostdlib", "-Wl,--no-as-needed"])
            .arg(format!("-Wl,-soname,{soname}"))
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .args(needs)
            .status()
            .unwrap_or_else(|e| panic!("gcc is needed to build fixtures: {e}"))
            .success();
        assert!(ok, "gcc failed for {file}");
        out
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        lib: PathBuf,
        cache: LdCache,
    }

    impl Fixture {
        fn path(&self, name: &str) -> PathBuf {
            self.lib.join(name)
        }
    }

    /// A host of stubs in `<tmp>/lib`: libfabric (needing libdep) with a provider dir,
    /// UCX's four libraries with a module dir whose module needs libmod, libibverbs-less.
    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().canonicalize().unwrap().join("lib");
        std::fs::create_dir_all(lib.join("libfabric")).unwrap();
        std::fs::create_dir_all(lib.join("ucx")).unwrap();
        let dep = stub(&lib, "libdep.so.1", "libdep.so.1", &[]);
        let fabric = stub(&lib, "libfabric.so.1.20.0", "libfabric.so.1", &[&dep]);
        std::os::unix::fs::symlink("libfabric.so.1.20.0", lib.join("libfabric.so.1")).unwrap();
        stub(
            &lib.join("libfabric"),
            "libcxi-fi.so",
            "libcxi-fi.so",
            &[&fabric],
        );
        let ucm = stub(&lib, "libucm.so.0", "libucm.so.0", &[]);
        let ucs = stub(&lib, "libucs.so.0", "libucs.so.0", &[&ucm]);
        let uct = stub(&lib, "libuct.so.0", "libuct.so.0", &[&ucs]);
        stub(&lib, "libucp.so.0", "libucp.so.0", &[&uct, &ucs]);
        let modlib = stub(&lib, "libmod.so.1", "libmod.so.1", &[]);
        stub(
            &lib.join("ucx"),
            "libuct_x.so.0",
            "libuct_x.so.0",
            &[&modlib, &uct],
        );
        let flags = cache_flags_for(ElfClass::Elf64, crate::ldcache::EM_X86_64).unwrap();
        let entries = [
            "libdep.so.1",
            "libfabric.so.1",
            "libucm.so.0",
            "libucs.so.0",
            "libuct.so.0",
            "libucp.so.0",
            "libmod.so.1",
        ]
        .iter()
        .map(|s| CacheEntry {
            soname: s.to_string(),
            path: lib.join(s).to_string_lossy().into_owned(),
            flags,
            osversion: 0,
            hwcap: 0,
        })
        .collect();
        let cache = LdCache {
            entries,
            generator: None,
            hwcap_subdirs: Vec::new(),
            format: CacheFormat::New,
        };
        Fixture {
            _tmp: tmp,
            lib,
            cache,
        }
    }

    fn discover_x86(f: &Fixture, mpi: &[PathBuf], dev: &Path) -> HostNet {
        discover_for(
            &f.cache,
            mpi,
            dev,
            ElfClass::Elf64,
            crate::ldcache::EM_X86_64,
        )
        .unwrap()
    }

    #[test]
    fn an_mpi_linking_libfabric_gets_libfabric_alone() {
        let f = fixture();
        let mpich = stub(
            &f.lib,
            "libmpich.so.12",
            "libmpich.so.12",
            &[&f.path("libfabric.so.1")],
        );
        let none = f.lib.join("no-dev");
        let n = discover_x86(&f, &[mpich], &none);
        assert_eq!(n.libs, [f.path("libfabric.so.1")]);
        assert_eq!(n.dependency_libs, [f.path("libdep.so.1")]);
        assert_eq!(n.dirs, [f.path("libfabric")]);
        assert!(n.devices.is_empty());
    }

    #[test]
    fn ucx_is_one_unit_and_its_modules_needs_are_dependencies() {
        let f = fixture();
        // The MPI links libucs alone (its closure adds libucm): libucp and libuct come
        // with them.
        let mpich = stub(
            &f.lib,
            "libmpich.so.12",
            "libmpich.so.12",
            &[&f.path("libucs.so.0")],
        );
        let n = discover_x86(&f, &[mpich], Path::new("/nonexistent"));
        assert_eq!(
            names(&n.libs),
            ["libucp.so.0", "libuct.so.0", "libucs.so.0", "libucm.so.0"]
        );
        assert_eq!(n.dirs, [f.path("ucx")]);
        assert_eq!(n.dependency_libs, [f.path("libmod.so.1")]);
    }

    #[test]
    fn open_mpi_components_count_and_no_mpi_means_what_the_cache_has() {
        let f = fixture();
        let comp = f.lib.join("openmpi/lib/openmpi3");
        std::fs::create_dir_all(&comp).unwrap();
        let libmpi = stub(&f.lib, "libmpi.so.40", "libmpi.so.40", &[]);
        stub(
            &comp,
            "mca_mtl_ofi.so",
            "mca_mtl_ofi.so",
            &[&f.path("libfabric.so.1")],
        );
        let n = discover_x86(&f, std::slice::from_ref(&libmpi), Path::new("/nonexistent"));
        assert_eq!(n.libs, [f.path("libfabric.so.1")]);
        // An MPI that links no network library, and no MPI: the cache's, in NET_LIBS order.
        std::fs::remove_file(comp.join("mca_mtl_ofi.so")).unwrap();
        for mpi in [vec![libmpi], vec![]] {
            let n = discover_x86(&f, &mpi, Path::new("/nonexistent"));
            assert_eq!(
                names(&n.libs),
                [
                    "libfabric.so.1",
                    "libucp.so.0",
                    "libuct.so.0",
                    "libucs.so.0",
                    "libucm.so.0"
                ]
            );
            assert_eq!(n.dirs, [f.path("libfabric"), f.path("ucx")]);
            assert_eq!(
                n.dependency_libs,
                [f.path("libdep.so.1"), f.path("libmod.so.1")]
            );
        }
    }

    #[test]
    fn a_library_needing_what_the_host_lacks_is_an_error() {
        let mut f = fixture();
        f.cache.entries.retain(|e| e.soname != "libdep.so.1");
        let e = discover_for(
            &f.cache,
            &[],
            Path::new("/nonexistent"),
            ElfClass::Elf64,
            62,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            format!(
                "libdep.so.1, needed by {}, is not in the host's loader cache; install it and run ldconfig, or give the dependencies with --net-dependency-libs",
                f.path("libfabric.so.1").display()
            )
        );
    }

    fn mknod(p: &Path, char_dev: bool) {
        let kind = if char_dev { "c" } else { "b" };
        let ok = Command::new("mknod")
            .arg(p)
            .args([kind, "1", "3"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "mknod {} (the tests run as root)", p.display());
    }

    #[test]
    fn fabric_devices_in_table_order_nodes_only() {
        let t = tempfile::tempdir().unwrap();
        let dev = t.path();
        std::fs::create_dir(dev.join("infiniband")).unwrap();
        mknod(&dev.join("cxi1"), true);
        mknod(&dev.join("cxi0"), true);
        mknod(&dev.join("kgni0"), false);
        mknod(&dev.join("kfi0"), true);
        // Not nodes, or not the prefix's: left out.
        std::fs::write(dev.join("hfi1_0"), b"").unwrap();
        mknod(&dev.join("cxi"), true);
        mknod(&dev.join("null"), true);
        std::fs::create_dir(dev.join("cxi9")).unwrap();
        assert_eq!(
            fabric_devices(dev),
            ["infiniband", "cxi0", "cxi1", "kgni0", "kfi0"].map(|n| dev.join(n))
        );
        assert!(fabric_devices(&dev.join("absent")).is_empty());
    }

    #[test]
    fn this_hosts_mpich_links_ucx_and_open_mpi_also_libfabric() {
        // Debian 12: MPICH links libucp directly; Open MPI 4.1's components link UCX
        // (mca_pml_ucx) and libfabric (mca_mtl_ofi). Test prerequisites (libfabric1, libucx0).
        let cache = host_cache();
        let mpich = PathBuf::from("/lib/x86_64-linux-gnu/libmpich.so.12");
        let n = discover(&cache, &[mpich], Path::new("/dev")).unwrap();
        assert_eq!(
            names(&n.libs),
            ["libucp.so.0", "libuct.so.0", "libucs.so.0", "libucm.so.0"]
        );
        assert_eq!(n.dirs[0], Path::new("/usr/lib/x86_64-linux-gnu/ucx"));
        let libmpi = PathBuf::from("/lib/x86_64-linux-gnu/libmpi.so.40");
        let n = discover(&cache, &[libmpi], Path::new("/dev")).unwrap();
        assert_eq!(
            names(&n.libs),
            [
                "libfabric.so.1",
                "libucp.so.0",
                "libuct.so.0",
                "libucs.so.0",
                "libucm.so.0"
            ]
        );
        let deps = names(&n.dependency_libs);
        for want in [
            "libibverbs.so.1",
            "librdmacm.so.1",
            "libnuma.so.1",
            "libmlx5.so.1",
        ] {
            assert!(deps.iter().any(|d| d == want), "{want} missing: {deps:?}");
        }
        assert!(
            !deps.iter().any(|d| is_glibc_soname(d) || is_net_soname(d)),
            "{deps:?}"
        );
        let unique: BTreeSet<&String> = deps.iter().collect();
        assert_eq!(unique.len(), deps.len(), "{deps:?}");
        // No libfabric provider directory on Debian 12 (providers are built in).
        assert_eq!(
            n.dirs,
            [
                "/usr/lib/x86_64-linux-gnu/ucx",
                "/usr/lib/x86_64-linux-gnu/libibverbs",
                LIBIBVERBS_CONF_DIR
            ]
            .map(PathBuf::from)
        );
    }
}
