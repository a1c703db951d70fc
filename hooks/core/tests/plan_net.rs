//! Planning the host's network stack against fixture trees, as an unprivileged user: gcc
//! stub libraries with libfabric's and UCX's SONAMEs (libfabric's with `FABRIC_1.x` symbol
//! versions from version scripts), an image built against a newer libfabric, an ld.so.cache
//! written natively, and /dev/null standing for a fabric device node.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cdi_specs::Plan;
use hooks_core::elf::ElfClass;
use hooks_core::ldcache::{CacheEntry, CacheFormat, LdCache};
use hooks_core::plan::loader::Process;
use hooks_core::plan::net::{
    needed_by, needs_of, plan_net, plan_net_and_libs, take_over, NetConfig,
};
use hooks_core::rootfs::Rootfs;

const LIB: &str = "/usr/lib/x86_64-linux-gnu";

fn link(target: &str, at: &Path) {
    std::os::unix::fs::symlink(target, at).unwrap();
}

/// A shared object from C source `src` with `soname`, linked against `needed` (their
/// SONAMEs and symbol versions recorded), with an optional version script.
fn gcc(src: &str, out: &Path, soname: &str, needed: &[&Path], script: Option<&str>) {
    let c = out.with_extension("c");
    std::fs::write(&c, src).unwrap();
    let mut cmd = Command::new("gcc");
    cmd.args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(out)
        .arg(format!("-Wl,-soname,{soname}"))
        .arg(&c);
    if let Some(s) = script {
        let m = out.with_extension("map");
        std::fs::write(&m, s).unwrap();
        cmd.arg(format!("-Wl,--version-script={}", m.display()));
    }
    cmd.arg("-Wl,--no-as-needed").args(needed);
    let st = cmd.status().expect("gcc (needed by these tests) runs");
    assert!(st.success(), "gcc {}", out.display());
}

/// A libfabric stub defining `FABRIC_1.0` up to `FABRIC_1.<max>`.
fn libfabric(out: &Path, max: u32) {
    let mut src = String::from("int fi_getinfo(void) { return 0; }\n");
    let mut script = String::from("FABRIC_1.0 { global: fi_getinfo; local: *; };\n");
    for v in 1..=max {
        src.push_str(&format!("int fi_v{v}(void) {{ return {v}; }}\n"));
        script.push_str(&format!(
            "FABRIC_1.{v} {{ global: fi_v{v}; }} FABRIC_1.{};\n",
            v - 1
        ));
    }
    gcc(&src, out, "libfabric.so.1", &[], Some(&script));
}

/// UCX's four libraries in `dir`, files `lib*.so.0.<minor>.0`, with their DT_NEEDED.
fn ucx(dir: &Path, minor: u32, only: &[&str]) {
    let file = |n: &str| dir.join(format!("{n}.so.0.{minor}.0"));
    let want = |n: &str| only.is_empty() || only.contains(&n);
    for (name, needs) in [
        ("libucm", vec![]),
        ("libucs", vec!["libucm"]),
        ("libuct", vec!["libucs"]),
        ("libucp", vec!["libuct", "libucs"]),
    ] {
        let needed: Vec<PathBuf> = needs.iter().map(|n| file(n)).collect();
        let refs: Vec<&Path> = needed.iter().map(PathBuf::as_path).collect();
        gcc(
            &format!("int {name}_init(void) {{ return 0; }}\n"),
            &file(name),
            &format!("{name}.so.0"),
            &refs,
            None,
        );
        link(
            &format!("{name}.so.0.{minor}.0"),
            &dir.join(format!("{name}.so.0")),
        );
    }
    // Built against each other first; then the ones the image lacks go.
    for name in ["libucm", "libucs", "libuct", "libucp"] {
        if !want(name) {
            std::fs::remove_file(file(name)).unwrap();
            std::fs::remove_file(dir.join(format!("{name}.so.0"))).unwrap();
        }
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    host: PathBuf,
    build: PathBuf,
    rootfs: PathBuf,
    /// Sonames in the image's loader cache (path: `/lib/<triplet>/<soname>` unless given).
    cache: Vec<(String, String)>,
}

impl Fixture {
    /// A host with libfabric 1.18 (FABRIC_1.0..1.6), UCX 1.13, libibverbs 1.14, libnl
    /// and UCX's module directory; an empty image (merged /usr).
    fn new() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("plan-net")
            .tempdir()
            .unwrap();
        let host = tmp.path().join("host");
        let build = tmp.path().join("build");
        let rootfs = tmp.path().join("rootfs");
        for d in [&host, &build, &host.join("ucx"), &host.join("libfabric")] {
            std::fs::create_dir_all(d).unwrap();
        }
        libfabric(&host.join("libfabric.so.1.18.0"), 6);
        link("libfabric.so.1.18.0", &host.join("libfabric.so.1"));
        ucx(&host, 13, &[]);
        gcc(
            "int ibv_get_device_list(void) { return 0; }\n",
            &host.join("libibverbs.so.1.14.44.0"),
            "libibverbs.so.1",
            &[],
            None,
        );
        link("libibverbs.so.1.14.44.0", &host.join("libibverbs.so.1"));
        gcc(
            "int nl_connect(void) { return 0; }\n",
            &host.join("libnl-3.so.200.26.0"),
            "libnl-3.so.200",
            &[],
            None,
        );
        link("libnl-3.so.200.26.0", &host.join("libnl-3.so.200"));
        // What the image was built against: a libfabric with FABRIC_1.9.
        gcc(
            "int fi_getinfo(void) { return 0; }\nint fi_x(void) { return 9; }\n",
            &build.join("libfabric.so.1"),
            "libfabric.so.1",
            &[],
            Some("FABRIC_1.0 { global: fi_getinfo; local: *; };\nFABRIC_1.9 { global: fi_x; } FABRIC_1.0;\n"),
        );
        std::fs::create_dir_all(rootfs.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        link("usr/lib", &rootfs.join("lib"));
        Fixture {
            _tmp: tmp,
            host,
            build,
            rootfs,
            cache: Vec::new(),
        }
    }

    fn lib(&self) -> PathBuf {
        self.rootfs.join(&LIB[1..])
    }

    /// Registers `soname` in the image's cache at `path` (default `/lib/<triplet>/`).
    fn cached(&mut self, soname: &str, path: Option<&str>) {
        let path = path.map_or_else(|| format!("/lib/x86_64-linux-gnu/{soname}"), String::from);
        self.cache.push((soname.into(), path));
    }

    /// The image's libfabric 1.11 (FABRIC_1.0..1.3), in the cache.
    fn image_libfabric(&mut self) {
        libfabric(&self.lib().join("libfabric.so.1.11.0"), 3);
        link("libfabric.so.1.11.0", &self.lib().join("libfabric.so.1"));
        self.cached("libfabric.so.1", None);
    }

    /// An image library `libapp.so.1` calling `symbol` of the libfabric in `build` (or the
    /// host's): it needs that symbol's version.
    fn image_app(&mut self, symbol: &str, against: &Path) {
        gcc(
            &format!("int {symbol}(void);\nint app(void) {{ return {symbol}(); }}\n"),
            &self.lib().join("libapp.so.1"),
            "libapp.so.1",
            &[against],
            None,
        );
        self.cached("libapp.so.1", None);
    }

    fn write_cache(&self) {
        let flags = hooks_core::ldcache_write::cache_flags_for(ElfClass::Elf64, 62).unwrap();
        let cache = LdCache {
            format: CacheFormat::New,
            entries: self
                .cache
                .iter()
                .map(|(s, p)| CacheEntry {
                    soname: s.clone(),
                    path: p.clone(),
                    flags,
                    osversion: 0,
                    hwcap: 0,
                })
                .collect(),
            generator: None,
            hwcap_subdirs: vec![],
        };
        let bytes = hooks_core::ldcache_write::write(&cache, "fixture").unwrap();
        std::fs::write(self.rootfs.join("etc/ld.so.cache"), bytes).unwrap();
    }

    fn config(&self) -> NetConfig {
        NetConfig {
            libs: [
                "libfabric.so.1",
                "libucp.so.0",
                "libuct.so.0",
                "libucs.so.0",
                "libucm.so.0",
            ]
            .iter()
            .map(|n| self.host.join(n))
            .collect(),
            dependency_libs: vec![
                self.host.join("libibverbs.so.1"),
                self.host.join("libnl-3.so.200"),
            ],
            dirs: vec![self.host.join("ucx"), self.host.join("libfabric")],
            devices: vec![],
            nccl: None,
        }
    }

    fn plan(&self, cfg: &NetConfig, needs: &[&str]) -> Result<Plan, String> {
        self.write_cache();
        let rootfs = Rootfs::open(&self.rootfs).unwrap();
        let needs: BTreeSet<String> = needs.iter().map(|s| s.to_string()).collect();
        plan_net(&rootfs, cfg, None, &needs).map_err(|e| self.unhost(&e.to_string()))
    }

    /// `text` with the fixture's host directory written `$HOST`.
    fn unhost(&self, text: &str) -> String {
        text.replace(&self.host.display().to_string(), "$HOST")
    }

    /// The plan's replacements as `host file -> image file` with `$HOST`.
    fn replaced(&self, plan: &Plan) -> Vec<String> {
        plan.replace
            .iter()
            .map(|r| self.unhost(&format!("{} -> {}", r.host_path, r.container_path)))
            .collect()
    }

    fn added(&self, plan: &Plan) -> Vec<String> {
        plan.libraries
            .iter()
            .map(|l| self.unhost(&format!("{} as {}", l.host_path, l.soname)))
            .collect()
    }

    fn mounts(&self, plan: &Plan) -> Vec<String> {
        plan.edits
            .mounts
            .iter()
            .map(|m| {
                self.unhost(&format!(
                    "{} at {} ({})",
                    m.host_path,
                    m.container_path,
                    m.options.join(",")
                ))
            })
            .collect()
    }
}

#[test]
fn libfabric_and_ucx_replaced_as_a_unit_with_dependencies_and_dirs() {
    let mut f = Fixture::new();
    f.image_libfabric();
    ucx(&f.lib(), 10, &[]);
    for n in ["libucp.so.0", "libuct.so.0", "libucs.so.0", "libucm.so.0"] {
        f.cached(n, None);
    }
    // The image's libibverbs 1.11: replaced (dependency rules); libnl absent: added.
    gcc(
        "int ibv_get_device_list(void) { return 0; }\n",
        &f.lib().join("libibverbs.so.1.11.32.1"),
        "libibverbs.so.1",
        &[],
        None,
    );
    link("libibverbs.so.1.11.32.1", &f.lib().join("libibverbs.so.1"));
    f.cached("libibverbs.so.1", None);
    // An image library needing FABRIC_1.1, which the host defines.
    let host_fabric = f.host.join("libfabric.so.1");
    f.image_app("fi_v1", &host_fabric);
    let plan = f.plan(&f.config(), &[]).unwrap();
    assert_eq!(
        f.replaced(&plan),
        [
            format!("$HOST/libfabric.so.1.18.0 -> {LIB}/libfabric.so.1.11.0"),
            format!("$HOST/libucp.so.0.13.0 -> {LIB}/libucp.so.0.10.0"),
            format!("$HOST/libuct.so.0.13.0 -> {LIB}/libuct.so.0.10.0"),
            format!("$HOST/libucs.so.0.13.0 -> {LIB}/libucs.so.0.10.0"),
            format!("$HOST/libucm.so.0.13.0 -> {LIB}/libucm.so.0.10.0"),
            format!("$HOST/libibverbs.so.1.14.44.0 -> {LIB}/libibverbs.so.1.11.32.1"),
        ]
    );
    assert_eq!(
        f.added(&plan),
        ["$HOST/libnl-3.so.200.26.0 as libnl-3.so.200"]
    );
    // The module directories at their host paths and, as the image's libraries are in
    // another directory than the host's, beside the image files their libraries replace.
    assert_eq!(
        f.mounts(&plan),
        [
            "$HOST/ucx at $HOST/ucx (ro,nosuid,nodev,bind)".to_string(),
            format!("$HOST/ucx at {LIB}/ucx (ro,nosuid,nodev,bind)"),
            "$HOST/libfabric at $HOST/libfabric (ro,nosuid,nodev,bind)".to_string(),
            format!("$HOST/libfabric at {LIB}/libfabric (ro,nosuid,nodev,bind)"),
        ]
    );
    assert!(plan.edits.device_nodes.is_empty() && plan.device_rules.is_empty());
}

#[test]
fn an_image_library_needing_a_newer_fabric_version_is_refused_by_name() {
    let mut f = Fixture::new();
    f.image_libfabric();
    let build = f.build.join("libfabric.so.1");
    f.image_app("fi_x", &build);
    let e = f.plan(&f.config(), &[]).unwrap_err();
    assert_eq!(
        e,
        format!("the image's {LIB}/libapp.so.1 needs symbol version FABRIC_1.9 of libfabric.so.1, but the host's $HOST/libfabric.so.1.18.0 defines only FABRIC_1.0, FABRIC_1.1, FABRIC_1.2, FABRIC_1.3, FABRIC_1.4, FABRIC_1.5, FABRIC_1.6: the image was built against a newer libfabric.so than the host's. Run an image built against libfabric.so of the host's version or older, have the admin install a newer libfabric.so on the host (NET_LIBS), or start the container without the annotation com.hooks.net.enabled=true (the image keeps its own libfabric.so; not possible when the host MPI needs the host's)")
    );
}

#[test]
fn the_same_need_is_checked_when_the_library_is_added_for_the_mpi() {
    // No libfabric in the image's cache, but a library of it needing FABRIC_1.9: the
    // host's, added because the MPI needs it, would not satisfy it.
    let mut f = Fixture::new();
    let build = f.build.join("libfabric.so.1");
    f.image_app("fi_x", &build);
    let cfg = f.config();
    let e = f.plan(&cfg, &["libfabric.so.1"]).unwrap_err();
    assert!(
        e.contains("needs symbol version FABRIC_1.9 of libfabric.so.1"),
        "{e}"
    );
    // Not needed by an MPI: not added, nothing to check.
    let plan = f.plan(&cfg, &[]).unwrap();
    assert!(
        plan.replace.is_empty() && plan.libraries.is_empty(),
        "{plan:?}"
    );
}

#[test]
fn another_soname_major_is_refused_naming_both_files() {
    let mut f = Fixture::new();
    gcc(
        "int fi_getinfo(void) { return 0; }\n",
        &f.lib().join("libfabric.so.0.4.2"),
        "libfabric.so.0",
        &[],
        None,
    );
    link("libfabric.so.0.4.2", &f.lib().join("libfabric.so.0"));
    f.cached("libfabric.so.0", None);
    let e = f.plan(&f.config(), &[]).unwrap_err();
    assert_eq!(
        e,
        format!("the image's {LIB}/libfabric.so.0.4.2 (version 0.4.2) has another SONAME major than the host's network library $HOST/libfabric.so.1.18.0 (version 1.18.0): a library of another major version cannot replace it. Run an image whose libfabric.so has the host's major version, have the admin set NET_LIBS to a host libfabric.so of the image's major version, or start the container without the annotation com.hooks.net.enabled=true (the image keeps its own libfabric.so; not possible when the host MPI needs the host's)")
    );
}

#[test]
fn a_library_the_image_lacks_is_added_only_when_the_mpi_needs_it() {
    let f = Fixture::new();
    let cfg = NetConfig {
        libs: vec![f.host.join("libfabric.so.1")],
        dependency_libs: vec![f.host.join("libnl-3.so.200")],
        ..NetConfig::default()
    };
    let plan = f.plan(&cfg, &[]).unwrap();
    assert!(
        plan.is_empty(),
        "nothing needs the host's libfabric: {plan:?}"
    );
    let plan = f.plan(&cfg, &["libmpi.so.40", "libfabric.so.1"]).unwrap();
    assert!(plan.replace.is_empty(), "{plan:?}");
    assert_eq!(
        f.added(&plan),
        [
            "$HOST/libfabric.so.1.18.0 as libfabric.so.1",
            "$HOST/libnl-3.so.200.26.0 as libnl-3.so.200"
        ]
    );
}

#[test]
fn ucx_the_image_lacks_in_part_is_completed_from_the_host() {
    // The image has libucp, libuct and libucs but no libucm: the host's UCX replaces the
    // three and brings its libucm (which its libucs needs).
    let mut f = Fixture::new();
    ucx(&f.lib(), 10, &["libucp", "libuct", "libucs"]);
    for n in ["libucp.so.0", "libuct.so.0", "libucs.so.0"] {
        f.cached(n, None);
    }
    let plan = f.plan(&f.config(), &[]).unwrap();
    assert_eq!(
        f.replaced(&plan),
        [
            format!("$HOST/libucp.so.0.13.0 -> {LIB}/libucp.so.0.10.0"),
            format!("$HOST/libuct.so.0.13.0 -> {LIB}/libuct.so.0.10.0"),
            format!("$HOST/libucs.so.0.13.0 -> {LIB}/libucs.so.0.10.0"),
        ]
    );
    // libfabric stays out (neither in the image nor needed); the dependencies come along.
    assert_eq!(
        f.added(&plan),
        [
            "$HOST/libucm.so.0.13.0 as libucm.so.0",
            "$HOST/libibverbs.so.1.14.44.0 as libibverbs.so.1",
            "$HOST/libnl-3.so.200.26.0 as libnl-3.so.200",
        ]
    );
}

#[test]
fn ucx_with_an_image_library_the_host_does_not_offer_is_refused() {
    let mut f = Fixture::new();
    ucx(&f.lib(), 10, &[]);
    for n in ["libucp.so.0", "libuct.so.0", "libucs.so.0", "libucm.so.0"] {
        f.cached(n, None);
    }
    let mut cfg = f.config();
    cfg.libs.retain(|p| !p.ends_with("libucm.so.0"));
    let e = f.plan(&cfg, &[]).unwrap_err();
    assert_eq!(
        e,
        format!("UCX is replaced as a unit, but the image's {LIB}/libucm.so.0.10.0 (libucm.so) has no host counterpart in NET_LIBS (it has libucp.so, libuct.so, libucs.so): the host's UCX cannot run beside a part of the image's. Have the admin add the host's libucm.so to NET_LIBS (hpc-hooks-configure detects it), or start the container without the annotation com.hooks.net.enabled=true")
    );
}

#[test]
fn module_dirs_are_bound_beside_a_relocated_libucs() {
    // The image keeps UCX in /opt/ucx/lib (its cache names it there): the host's module
    // directory goes to its host path and to /opt/ucx/lib/ucx, where the image's libucs
    // (replaced by the host's) looks for modules. libfabric's directory stays at its
    // host path only (no libfabric in the image).
    let mut f = Fixture::new();
    let opt = f.rootfs.join("opt/ucx/lib");
    std::fs::create_dir_all(&opt).unwrap();
    ucx(&opt, 10, &[]);
    for n in ["libucp.so.0", "libuct.so.0", "libucs.so.0", "libucm.so.0"] {
        f.cached(n, Some(&format!("/opt/ucx/lib/{n}")));
    }
    let cfg = NetConfig {
        dependency_libs: vec![],
        ..f.config()
    };
    let plan = f.plan(&cfg, &[]).unwrap();
    assert_eq!(plan.replace.len(), 4, "{plan:?}");
    assert_eq!(
        f.mounts(&plan),
        [
            "$HOST/ucx at $HOST/ucx (ro,nosuid,nodev,bind)",
            "$HOST/ucx at /opt/ucx/lib/ucx (ro,nosuid,nodev,bind)",
            "$HOST/libfabric at $HOST/libfabric (ro,nosuid,nodev,bind)",
        ]
    );
}

#[test]
fn devices_are_applied_even_without_a_library() {
    let f = Fixture::new();
    let empty_dir = f.host.join("libfabric");
    let cfg = NetConfig {
        devices: vec![
            PathBuf::from("/dev/null"),
            empty_dir.clone(),
            PathBuf::from("/dev/hpc-hooks-no-such-node0"),
        ],
        ..NetConfig::default()
    };
    let plan = f.plan(&cfg, &[]).unwrap();
    let nodes: Vec<String> = plan
        .edits
        .device_nodes
        .iter()
        .map(|n| {
            format!(
                "{} {} {}:{} from {}",
                n.path,
                n.typ,
                n.major.unwrap(),
                n.minor.unwrap(),
                n.host_path
            )
        })
        .collect();
    assert_eq!(nodes, ["/dev/null c 1:3 from /dev/null"]);
    // A directory without nodes is a read-only bind; the missing node is skipped (logged).
    assert_eq!(
        f.mounts(&plan),
        ["$HOST/libfabric at $HOST/libfabric (ro,nosuid,nodev,bind)"]
    );
    assert!(plan.replace.is_empty() && plan.libraries.is_empty());
    // A regular file is not a device.
    let cfg = NetConfig {
        devices: vec![f.host.join("libfabric.so.1")],
        ..NetConfig::default()
    };
    assert_eq!(
        f.plan(&cfg, &[]).unwrap_err(),
        "NET_DEVICES entry $HOST/libfabric.so.1: is a regular file, not a device node or a directory of device nodes; list the fabric's device nodes (/dev/cxi0) or their directories (/dev/infiniband) in NET_DEVICES"
    );
}

#[test]
fn a_library_the_program_loads_outside_the_cache_is_replaced() {
    // The image's libfabric in /opt/fabric/lib, found through the program's RUNPATH only.
    let f = Fixture::new();
    let dir = f.rootfs.join("opt/fabric/lib");
    std::fs::create_dir_all(&dir).unwrap();
    libfabric(&dir.join("libfabric.so.1.11.0"), 3);
    link("libfabric.so.1.11.0", &dir.join("libfabric.so.1"));
    let bin = f.rootfs.join("opt/fabric/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let c = bin.join("app.c");
    std::fs::write(
        &c,
        "int fi_getinfo(void);\nint main(void) { return fi_getinfo(); }\n",
    )
    .unwrap();
    let st = Command::new("gcc")
        .arg("-o")
        .arg(bin.join("app"))
        .arg(&c)
        .arg(dir.join("libfabric.so.1"))
        .arg("-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib")
        .status()
        .unwrap();
    assert!(st.success(), "gcc app");
    f.write_cache();
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let env = vec!["PATH=/usr/bin".to_string()];
    let p = Process {
        program: "/opt/fabric/bin/app",
        env: &env,
        cwd: "/",
    };
    let cfg = NetConfig {
        libs: vec![f.host.join("libfabric.so.1")],
        ..NetConfig::default()
    };
    let (plan, injected) = plan_net_and_libs(&rootfs, &cfg, Some(&p), &BTreeSet::new()).unwrap();
    assert_eq!(
        f.replaced(&plan),
        ["$HOST/libfabric.so.1.18.0 -> /opt/fabric/lib/libfabric.so.1.11.0"]
    );
    let names: Vec<String> = injected.iter().map(|h| h.soname()).collect();
    assert_eq!(names, ["libfabric.so.1"]);
}

#[test]
fn an_mpi_needing_a_net_library_asks_for_the_net_plan() {
    let f = Fixture::new();
    let mpi = f.host.join("libmpi.so.40.30.4");
    gcc(
        "int fi_getinfo(void);\nint MPI_Init(void) { return fi_getinfo(); }\n",
        &mpi,
        "libmpi.so.40",
        &[&f.host.join("libfabric.so.1")],
        None,
    );
    let host = hooks_core::hostlib::inspect(&mpi).unwrap();
    let needs = needs_of(&[host]);
    assert!(
        needs.contains("libmpi.so.40") && needs.contains("libfabric.so.1"),
        "{needs:?}"
    );
    assert!(needed_by(&f.config(), &needs).unwrap());
    let ucx_only = NetConfig {
        libs: vec![f.host.join("libucp.so.0")],
        ..NetConfig::default()
    };
    assert!(!needed_by(&ucx_only, &needs).unwrap());
}

#[test]
fn net_dirs_this_node_lacks_are_skipped_and_files_refused() {
    let f = Fixture::new();
    let cfg = NetConfig {
        dirs: vec![f.host.join("no-such-provider-dir"), f.host.join("ucx")],
        ..NetConfig::default()
    };
    let plan = f.plan(&cfg, &[]).unwrap();
    assert_eq!(
        f.mounts(&plan),
        ["$HOST/ucx at $HOST/ucx (ro,nosuid,nodev,bind)"]
    );
    let cfg = NetConfig {
        dirs: vec![f.host.join("libnl-3.so.200")],
        ..NetConfig::default()
    };
    assert_eq!(
        f.plan(&cfg, &[]).unwrap_err(),
        "NET_DIRS entry $HOST/libnl-3.so.200: is not a directory; NET_DIRS lists provider and module directories (fix it in the hook's hooks.d env)"
    );
}

#[test]
fn with_the_mpi_the_net_plan_owns_libfabric() {
    // Host MPICH linked against the host's libfabric, which MPI_DEPENDENCY_LIBS also lists;
    // the image has MPICH and libfabric 1.11. The MPI needs libfabric.so.1: the net plan
    // applies and takes libfabric over from the MPI plan.
    let mut f = Fixture::new();
    gcc(
        "int fi_getinfo(void);\nint MPI_Init(int *c, char ***v) { (void)c; (void)v; return fi_getinfo(); }\n",
        &f.host.join("libmpich.so.12.2.2"),
        "libmpich.so.12",
        &[&f.host.join("libfabric.so.1")],
        None,
    );
    link("libmpich.so.12.2.2", &f.host.join("libmpich.so.12"));
    gcc(
        "int MPI_Init(int *c, char ***v) { (void)c; (void)v; return 0; }\n",
        &f.lib().join("libmpich.so.12.1.10"),
        "libmpich.so.12",
        &[],
        None,
    );
    link("libmpich.so.12.1.10", &f.lib().join("libmpich.so.12"));
    f.cached("libmpich.so.12", None);
    f.image_libfabric();
    f.write_cache();
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let mpi_cfg = hooks_core::plan::mpi::MpiConfig {
        mpi_libs: vec![f.host.join("libmpich.so.12")],
        dependency_libs: vec![f.host.join("libfabric.so.1")],
        ..Default::default()
    };
    let (mut mpi, injected) = hooks_core::plan::mpi::plan_mpi(&rootfs, &mpi_cfg).unwrap();
    assert_eq!(mpi.replace.len(), 2, "MPICH and libfabric: {mpi:?}");
    let needs = needs_of(&injected);
    let cfg = f.config();
    assert!(needed_by(&cfg, &needs).unwrap());
    let net = plan_net(&rootfs, &cfg, None, &needs).unwrap();
    take_over(&mut mpi, &net);
    assert_eq!(
        f.replaced(&mpi),
        [format!(
            "$HOST/libmpich.so.12.2.2 -> {LIB}/libmpich.so.12.1.10"
        )]
    );
    // UCX: neither in the image nor needed by the MPI; the dependencies come with libfabric.
    assert_eq!(
        f.replaced(&net),
        [format!(
            "$HOST/libfabric.so.1.18.0 -> {LIB}/libfabric.so.1.11.0"
        )]
    );
    assert_eq!(
        f.added(&net),
        [
            "$HOST/libibverbs.so.1.14.44.0 as libibverbs.so.1",
            "$HOST/libnl-3.so.200.26.0 as libnl-3.so.200"
        ]
    );
}

#[test]
fn the_nccl_plugin_brings_the_network_libraries_it_needs() {
    // A CUDA 12 image without libfabric; the admin's plugin directory has an aws-ofi-nccl
    // style variant for CUDA 12 that needs libfabric: the plugin is added as libnccl-net.so
    // (and under its own name) and the host's libfabric comes with it, although no MPI
    // asks for it.
    let mut f = Fixture::new();
    gcc(
        "int cudaGetDeviceCount(int *n) { *n = 0; return 0; }\n",
        &f.lib().join("libcudart.so.12.2.140"),
        "libcudart.so.12",
        &[],
        None,
    );
    link("libcudart.so.12.2.140", &f.lib().join("libcudart.so.12"));
    f.cached("libcudart.so.12", None);
    let plugins = f.host.join("nccl-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    gcc(
        "int ncclNetPlugin_v6(void) { return 12; }\n",
        &plugins.join("libnccl-net-cuda12.so"),
        "libnccl-net-cuda12.so",
        &[
            &f.lib().join("libcudart.so.12"),
            &f.host.join("libfabric.so.1"),
        ],
        None,
    );
    let cfg = NetConfig {
        libs: vec![f.host.join("libfabric.so.1")],
        nccl: Some(hooks_core::plan::nccl::NcclConfig {
            plugin_dir: plugins.clone(),
            on_mismatch: hooks_core::plan::nccl::Mismatch::Refuse,
        }),
        ..NetConfig::default()
    };
    let plan = f.plan(&cfg, &[]).unwrap();
    assert!(plan.replace.is_empty(), "{plan:?}");
    assert_eq!(
        f.added(&plan),
        [
            "$HOST/libfabric.so.1.18.0 as libfabric.so.1",
            "$HOST/nccl-plugins/libnccl-net-cuda12.so as libnccl-net.so",
            "$HOST/nccl-plugins/libnccl-net-cuda12.so as libnccl-net-cuda12.so",
        ]
    );
    // Without the plugin configuration nothing needs libfabric: nothing is added.
    let plan = f.plan(&NetConfig { nccl: None, ..cfg }, &[]).unwrap();
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn a_provider_linked_out_of_its_directory_is_bound_where_the_link_leads() {
    // rdma-core's verbs providers: libibverbs/libmlx5-rdmav34.so -> ../libmlx5.so.1.24.0.
    // The directory alone would hold a dangling link in the container: the host file it
    // points at is bound where the link leads. A provider that is a plain file needs
    // nothing more; a link inside the directory neither.
    let f = Fixture::new();
    let verbs = f.host.join("libibverbs");
    std::fs::create_dir_all(&verbs).unwrap();
    std::fs::write(f.host.join("libmlx5.so.1.24.0"), b"mlx5").unwrap();
    link("../libmlx5.so.1.24.0", &verbs.join("libmlx5-rdmav34.so"));
    std::fs::write(verbs.join("libcxgb4-rdmav34.so"), b"cxgb4").unwrap();
    link("libcxgb4-rdmav34.so", &verbs.join("libcxgb4-alias.so"));
    let cfg = NetConfig {
        dirs: vec![verbs.clone()],
        ..NetConfig::default()
    };
    let plan = f.plan(&cfg, &[]).unwrap();
    assert_eq!(
        f.mounts(&plan),
        [
            "$HOST/libibverbs at $HOST/libibverbs (ro,nosuid,nodev,bind)",
            "$HOST/libmlx5.so.1.24.0 at $HOST/libmlx5.so.1.24.0 (ro,nosuid,nodev,bind)",
        ]
    );
}
