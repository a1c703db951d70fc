//! Planning against fixture trees, as an unprivileged user: the Debian 11 + host MPICH
//! case, the glibc decision and `BIND_MOUNTS`, each compared with a golden plan file
//! (edits as YAML; `UPDATE_GOLDEN=1 cargo test -p hooks-core --test plan_golden` rewrites
//! them). Fixtures are built by code: gcc stub libraries with real SONAMEs and glibc symbol
//! versions, symlink chains as Debian ships them, and an ld.so.cache written natively.

use std::path::{Path, PathBuf};

use cdi_specs::Plan;
use hooks_core::abi::CompatType;
use hooks_core::elf::ElfClass;
use hooks_core::ldcache::{CacheEntry, CacheFormat, LdCache};
use hooks_core::mountinfo::MountEntry;
use hooks_core::plan::glibc::{plan_glibc, GlibcAction};
use hooks_core::plan::mpi::{mode_from_annotation, plan_mpi, MpiConfig, MpiMode};
use hooks_core::plan::View;
use hooks_core::rootfs::Rootfs;
use test_support::gcc_shared;

const TRIPLET: &str = "x86_64-linux-gnu";

fn link(target: &str, at: &Path) {
    std::os::unix::fs::symlink(target, at).unwrap();
}

/// A libc.so.6 stand-in whose banner names `version` (the planner reads `.rodata`).
fn fake_libc(out: &Path, version: &str) {
    let src = format!(
        "const char __libc_banner[] = \"GNU C Library (Debian GLIBC {version}-1) stable release version {version}.\\n\";\nconst char *libc_banner(void) {{ return __libc_banner; }}\n"
    );
    gcc_shared(&src, out, "libc.so.6");
}

/// The two trees: a host with MPICH 4 (needs GLIBC_2.34 through pthread_create), libfabric
/// and glibc 2.36; a Debian 11 image with MPICH 3.4 (ABI 12) and glibc 2.31.
struct Fixture {
    _tmp: tempfile::TempDir,
    host: PathBuf,
    rootfs: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::Builder::new()
        .prefix("plan-golden")
        .tempdir()
        .unwrap();
    let host = tmp.path().join("host");
    let rootfs = tmp.path().join("rootfs");
    let src = tmp.path().join("src");
    for d in [&host, &src, &host.join("dev-dir")] {
        std::fs::create_dir_all(d).unwrap();
    }
    // Host MPICH 4.0.2 as Debian 12 ships it: libmpich.so.12 -> libmpich.so.12.2.2.
    gcc_shared(
        "#include <pthread.h>\nstatic void *f(void *a) { return a; }\nint MPI_Init(int *c, char ***v) { pthread_t t; (void)c; (void)v; return pthread_create(&t, 0, f, 0); }\n",
        &host.join("libmpich.so.12.2.2"),
        "libmpich.so.12",
    );
    link("libmpich.so.12.2.2", &host.join("libmpich.so.12"));
    gcc_shared(
        "int fi_getinfo(void) { return 0; }\n",
        &host.join("libfabric.so.1.18.0"),
        "libfabric.so.1",
    );
    link("libfabric.so.1.18.0", &host.join("libfabric.so.1"));
    fake_libc(&host.join("libc.so.6"), "2.36");
    std::fs::write(host.join("mpi.conf"), b"admin's file\n").unwrap();

    // The image: merged /usr, /lib -> usr/lib, Debian 11 file names.
    let lib = rootfs.join("usr/lib").join(TRIPLET);
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    link("usr/lib", &rootfs.join("lib"));
    gcc_shared(
        "int MPI_Init(int *c, char ***v) { (void)c; (void)v; return 0; }\n",
        &lib.join("libmpich.so.12.1.10"),
        "libmpich.so.12",
    );
    link("libmpich.so.12.1.10", &lib.join("libmpich.so.12"));
    fake_libc(&lib.join("libc-2.31.so"), "2.31");
    link("libc-2.31.so", &lib.join("libc.so.6"));
    let flags =
        hooks_core::ldcache_write::cache_flags_for(ElfClass::Elf64, 62).expect("x86-64 flags");
    let entry = |soname: &str, path: String| CacheEntry {
        soname: soname.into(),
        path,
        flags,
        osversion: 0,
        hwcap: 0,
    };
    let cache = LdCache {
        format: CacheFormat::New,
        entries: vec![
            entry("libmpich.so.12", format!("/lib/{TRIPLET}/libmpich.so.12")),
            entry("libc.so.6", format!("/lib/{TRIPLET}/libc.so.6")),
        ],
        generator: None,
        hwcap_subdirs: vec![],
    };
    let bytes = hooks_core::ldcache_write::write(&cache, "fixture").unwrap();
    std::fs::write(rootfs.join("etc/ld.so.cache"), bytes).unwrap();
    Fixture {
        _tmp: tmp,
        host,
        rootfs,
    }
}

/// The plan as YAML with the fixture's host directory written `$HOST`.
fn yaml(plan: &Plan, f: &Fixture) -> String {
    test_support::plan_yaml(plan, &f.host, "$HOST")
}

fn check_golden(name: &str, expected: &str, got: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    test_support::check_golden(&dir, name, expected, got);
}

fn mpi_config(f: &Fixture) -> MpiConfig {
    MpiConfig {
        mpi_libs: vec![f.host.join("libmpich.so.12")],
        dependency_libs: vec![f.host.join("libfabric.so.1")],
        bind_mounts: vec![
            f.host.join("mpi.conf"),
            f.host.join("dev-dir"),
            PathBuf::from("/dev/null"),
        ],
        compat: CompatType::Major,
        mode: MpiMode::Hybrid,
    }
}

#[test]
fn debian11_image_with_host_mpich() {
    let f = fixture();
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let (plan, injected) = plan_mpi(&rootfs, &mpi_config(&f)).unwrap();
    check_golden(
        "mpi-debian11-host-mpich",
        include_str!("golden/mpi-debian11-host-mpich.yaml"),
        &yaml(&plan, &f),
    );
    // The injected host libraries go on to the glibc decision.
    let names: Vec<String> = injected.iter().map(|l| l.soname()).collect();
    assert_eq!(names, ["libmpich.so.12", "libfabric.so.1"]);
}

#[test]
fn glibc_replaced_when_the_host_mpi_needs_a_newer_one() {
    let f = fixture();
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let (_, injected) = plan_mpi(&rootfs, &mpi_config(&f)).unwrap();
    let view = View {
        rootfs: &rootfs,
        mounts: &[],
    };
    let glibc = [f.host.join("libc.so.6")];
    let (plan, log) = plan_glibc(view, &injected, GlibcAction::Inject, Some(&glibc)).unwrap();
    check_golden(
        "glibc-debian11-host-2.36",
        include_str!("golden/glibc-debian11-host-2.36.yaml"),
        &yaml(&plan, &f),
    );
    assert_eq!(
        log.last().unwrap().replace(&f.host.display().to_string(), "$HOST"),
        format!(
            "glibc: injected libraries need 2.34 ($HOST/libmpich.so.12 requires GLIBC_2.34), container has 2.31: replacing the container glibc with the host glibc 2.36 (1 files)"
        )
    );
    // Without the glibc annotation: a refusal naming both versions and the way out.
    let e = plan_glibc(view, &injected, GlibcAction::Refuse, Some(&glibc)).unwrap_err();
    assert_eq!(
        e.to_string().replace(&f.host.display().to_string(), "$HOST"),
        "the injected host libraries need glibc 2.34 ($HOST/libmpich.so.12 requires GLIBC_2.34) but the container has glibc 2.31; add the annotation com.hooks.glibc.enabled=true (podman --annotation com.hooks.glibc.enabled=true) so that glibc-hook injects the host glibc 2.36"
    );
}

#[test]
fn glibc_left_alone_when_nothing_needs_more() {
    let f = fixture();
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let view = View {
        rootfs: &rootfs,
        mounts: &[],
    };
    let glibc = [f.host.join("libc.so.6")];
    // glibc-hook on its own: nothing mounted, nothing pending.
    let (plan, log) = plan_glibc(view, &[], GlibcAction::Inject, Some(&glibc)).unwrap();
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(
        log,
        ["glibc: none of the 0 injected objects needs a versioned glibc symbol; nothing to do"]
    );
}

#[test]
fn glibc_need_read_from_the_mount_table() {
    // What another hook or the runtime mounted into the rootfs counts: the mount table is
    // data, so a fixture entry stands for a bind of the host MPI over the image's.
    let f = fixture();
    let lib = f.rootfs.join("usr/lib").join(TRIPLET);
    std::fs::copy(
        f.host.join("libmpich.so.12.2.2"),
        lib.join("libmpich.so.12.1.10"),
    )
    .unwrap();
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let mounts = [MountEntry {
        id: 1,
        parent: 0,
        root: f.host.join("libmpich.so.12.2.2"),
        mount_point: std::fs::canonicalize(lib.join("libmpich.so.12.1.10")).unwrap(),
        fs_type: "ext4".into(),
        source: "/dev/vda1".into(),
        super_options: "rw".into(),
    }];
    let view = View {
        rootfs: &rootfs,
        mounts: &mounts,
    };
    let glibc = [f.host.join("libc.so.6")];
    let (plan, _) = plan_glibc(view, &[], GlibcAction::Inject, Some(&glibc)).unwrap();
    assert_eq!(
        yaml(&plan, &f),
        include_str!("golden/glibc-debian11-host-2.36.yaml"),
        "the need from the mount table gives the same plan as the pending libraries"
    );
}

#[test]
fn image_without_mpi_is_refused_with_the_way_out() {
    let f = fixture();
    std::fs::remove_file(f.rootfs.join("etc/ld.so.cache")).unwrap();
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let e = plan_mpi(&rootfs, &mpi_config(&f)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("the image has no usable /etc/ld.so.cache ("),
        "{e}"
    );
    assert!(e
        .to_string()
        .ends_with("add `RUN ldconfig` at the end of the image build"));
}

/// The fixture's image without its MPI (Apptainer's bind model: the application was built
/// against the MPICH ABI elsewhere): no libmpich file, no cache entry.
fn remove_image_mpi(f: &Fixture) {
    let lib = f.rootfs.join("usr/lib").join(TRIPLET);
    std::fs::remove_file(lib.join("libmpich.so.12")).unwrap();
    std::fs::remove_file(lib.join("libmpich.so.12.1.10")).unwrap();
    let flags =
        hooks_core::ldcache_write::cache_flags_for(ElfClass::Elf64, 62).expect("x86-64 flags");
    let cache = LdCache {
        format: CacheFormat::New,
        entries: vec![CacheEntry {
            soname: "libc.so.6".into(),
            path: format!("/lib/{TRIPLET}/libc.so.6"),
            flags,
            osversion: 0,
            hwcap: 0,
        }],
        generator: None,
        hwcap_subdirs: vec![],
    };
    let bytes = hooks_core::ldcache_write::write(&cache, "fixture").unwrap();
    std::fs::write(f.rootfs.join("etc/ld.so.cache"), bytes).unwrap();
}

#[test]
fn bind_model_adds_the_host_mpi_to_an_image_without_one() {
    let f = fixture();
    remove_image_mpi(&f);
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let cfg = MpiConfig {
        mode: MpiMode::Bind,
        ..mpi_config(&f)
    };
    let (plan, injected) = plan_mpi(&rootfs, &cfg).unwrap();
    check_golden(
        "mpi-debian11-nompi-bind",
        include_str!("golden/mpi-debian11-nompi-bind.yaml"),
        &yaml(&plan, &f),
    );
    // Nothing of the image is replaced: both libraries go to the private directory.
    assert!(plan.replace.is_empty(), "{plan:?}");
    let added: Vec<&str> = plan.libraries.iter().map(|l| l.soname.as_str()).collect();
    assert_eq!(added, ["libmpich.so.12", "libfabric.so.1"]);
    let names: Vec<String> = injected.iter().map(|l| l.soname()).collect();
    assert_eq!(names, ["libmpich.so.12", "libfabric.so.1"]);

    // The same glibc rule as the hybrid model: refused without the glibc annotation (or,
    // for the CDI device, without the glibc device), the host glibc with it.
    let view = View {
        rootfs: &rootfs,
        mounts: &[],
    };
    let glibc = [f.host.join("libc.so.6")];
    let e = plan_glibc(view, &injected, GlibcAction::Refuse, Some(&glibc)).unwrap_err();
    assert_eq!(
        e.to_string().replace(&f.host.display().to_string(), "$HOST"),
        "the injected host libraries need glibc 2.34 ($HOST/libmpich.so.12 requires GLIBC_2.34) but the container has glibc 2.31; add the annotation com.hooks.glibc.enabled=true (podman --annotation com.hooks.glibc.enabled=true) so that glibc-hook injects the host glibc 2.36"
    );
    let e = plan_glibc(view, &injected, GlibcAction::RefuseCdi, Some(&glibc)).unwrap_err();
    assert_eq!(
        e.to_string().replace(&f.host.display().to_string(), "$HOST"),
        "the injected host libraries need glibc 2.34 ($HOST/libmpich.so.12 requires GLIBC_2.34) but the container has glibc 2.31; add the CDI device hpc-hooks.io/glibc=host (podman --device hpc-hooks.io/glibc=host) so that the host glibc 2.36 is injected"
    );
    let (gplan, _) = plan_glibc(view, &injected, GlibcAction::Inject, Some(&glibc)).unwrap();
    assert_eq!(
        yaml(&gplan, &f),
        include_str!("golden/glibc-debian11-host-2.36.yaml"),
        "the host glibc replaces the image's as in the hybrid model"
    );
}

#[test]
fn hybrid_model_refuses_an_image_without_mpi_naming_the_bind_model() {
    let f = fixture();
    remove_image_mpi(&f);
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let e = plan_mpi(&rootfs, &mpi_config(&f)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no MPI library found in the image's ld.so.cache (looked for libmpich.so for x86-64); the image must contain an MPI of the host's family (e.g. MPICH 3.x/4.x, ABI 12) registered in its loader cache or loaded by the container's program (RUNPATH, RPATH, LD_LIBRARY_PATH): install it and add `RUN ldconfig` at the end of the image build; or, for an application built against the host MPI's ABI in an image without MPI, add the annotation com.hooks.mpi.mode=bind"
    );
}

#[test]
fn bind_model_keeps_the_hybrid_plan_for_an_image_with_mpi() {
    let f = fixture();
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let cfg = MpiConfig {
        mode: MpiMode::Bind,
        ..mpi_config(&f)
    };
    let (plan, _) = plan_mpi(&rootfs, &cfg).unwrap();
    assert_eq!(
        yaml(&plan, &f),
        include_str!("golden/mpi-debian11-host-mpich.yaml"),
        "an image with an MPI gets it replaced, whatever the model"
    );
}

#[test]
fn the_mode_annotation() {
    assert_eq!(mode_from_annotation(None).unwrap(), MpiMode::Hybrid);
    assert_eq!(mode_from_annotation(Some("bind")).unwrap(), MpiMode::Bind);
    assert_eq!(
        mode_from_annotation(Some(" Hybrid ")).unwrap(),
        MpiMode::Hybrid
    );
    assert_eq!(
        mode_from_annotation(Some("replace")).unwrap_err().to_string(),
        "com.hooks.mpi.mode=\"replace\" is not an MPI model: use hybrid (the image's MPI is replaced, the default) or bind (an image without MPI gets the host MPI)"
    );
}

/// Open MPI as Debian ships it, in `dir`: `libmpi.so.40` -> `libmpi.so.<version>` needing
/// `libopen-pal.so.40` -> `libopen-pal.so.<version>`.
fn open_mpi(dir: &Path, version: &str) {
    let pal = dir.join(format!("libopen-pal.so.{version}"));
    gcc_shared(
        "int opal_init(void) { return 0; }\n",
        &pal,
        "libopen-pal.so.40",
    );
    link(
        &format!("libopen-pal.so.{version}"),
        &dir.join("libopen-pal.so.40"),
    );
    test_support::gcc_shared_needing(
        "int opal_init(void);\nint MPI_Init(int *c, char ***v) { (void)c; (void)v; return opal_init(); }\n",
        &dir.join(format!("libmpi.so.{version}")),
        "libmpi.so.40",
        &[&pal],
    );
    link(&format!("libmpi.so.{version}"), &dir.join("libmpi.so.40"));
}

/// Rewrites the image's loader cache with `sonames` (all under /lib/<triplet>).
fn image_cache(f: &Fixture, sonames: &[&str]) {
    let flags =
        hooks_core::ldcache_write::cache_flags_for(ElfClass::Elf64, 62).expect("x86-64 flags");
    let cache = LdCache {
        format: CacheFormat::New,
        entries: sonames
            .iter()
            .map(|s| CacheEntry {
                soname: s.to_string(),
                path: format!("/lib/{TRIPLET}/{s}"),
                flags,
                osversion: 0,
                hwcap: 0,
            })
            .collect(),
        generator: None,
        hwcap_subdirs: vec![],
    };
    let bytes = hooks_core::ldcache_write::write(&cache, "fixture").unwrap();
    std::fs::write(f.rootfs.join("etc/ld.so.cache"), bytes).unwrap();
}

/// A host offering both families (Debian 12 with MPICH 4.0.2 and Open MPI 4.1.4).
fn both_families(f: &Fixture) -> MpiConfig {
    open_mpi(&f.host, "40.30.4");
    let mut cfg = mpi_config(f);
    cfg.mpi_libs.insert(0, f.host.join("libmpi.so.40"));
    cfg.dependency_libs.push(f.host.join("libopen-pal.so.40"));
    cfg
}

#[test]
fn host_with_both_families_gives_an_mpich_image_only_mpich() {
    let f = fixture();
    let cfg = both_families(&f);
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let (plan, injected) = plan_mpi(&rootfs, &cfg).unwrap();
    // Open MPI and the dependency only it needs are left out: the very plan of a host
    // with MPICH alone.
    assert_eq!(
        yaml(&plan, &f),
        include_str!("golden/mpi-debian11-host-mpich.yaml")
    );
    let names: Vec<String> = injected.iter().map(|l| l.soname()).collect();
    assert_eq!(names, ["libmpich.so.12", "libfabric.so.1"]);
}

#[test]
fn open_mpi_image_gets_the_host_open_mpi_and_its_libraries() {
    let f = fixture();
    let cfg = both_families(&f);
    let lib = f.rootfs.join("usr/lib").join(TRIPLET);
    open_mpi(&lib, "40.30.0");
    std::fs::remove_file(lib.join("libmpich.so.12")).unwrap();
    image_cache(&f, &["libmpi.so.40", "libopen-pal.so.40", "libc.so.6"]);
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let (plan, injected) = plan_mpi(&rootfs, &cfg).unwrap();
    check_golden(
        "mpi-openmpi-image-host-both",
        include_str!("golden/mpi-openmpi-image-host-both.yaml"),
        &yaml(&plan, &f),
    );
    let names: Vec<String> = injected.iter().map(|l| l.soname()).collect();
    assert_eq!(
        names,
        ["libmpi.so.40", "libfabric.so.1", "libopen-pal.so.40"]
    );
}

#[test]
fn open_mpi_image_on_an_mpich_host_is_refused_naming_both() {
    let f = fixture();
    let lib = f.rootfs.join("usr/lib").join(TRIPLET);
    open_mpi(&lib, "40.30.0");
    std::fs::remove_file(lib.join("libmpich.so.12")).unwrap();
    image_cache(&f, &["libmpi.so.40", "libopen-pal.so.40", "libc.so.6"]);
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let e = plan_mpi(&rootfs, &mpi_config(&f)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the image's MPI is Open MPI (libmpi.so.40.30.0, Open MPI 4.1.x), but the host offers MPICH ABI (libmpich.so.12.2.2): another MPI family, whose ABI cannot replace it. Run an image built with the host's MPI family, have the admin add the host's Open MPI to MPI_LIBS (hpc-hooks-configure detects both families), or start the container without the annotation com.hooks.mpi.enabled=true to use the image's own MPI"
    );
}

/// Moves the image's MPICH to `/opt/mpich/lib` (out of its loader cache) and builds
/// `/opt/app/bin/hello` linked to it with `RUNPATH=$ORIGIN/../../mpich/lib`.
fn mpich_under_opt(f: &Fixture) {
    let lib = f.rootfs.join("usr/lib").join(TRIPLET);
    let opt = f.rootfs.join("opt/mpich/lib");
    let bin = f.rootfs.join("opt/app/bin");
    std::fs::create_dir_all(&opt).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::rename(
        lib.join("libmpich.so.12.1.10"),
        opt.join("libmpich.so.12.1.10"),
    )
    .unwrap();
    std::fs::remove_file(lib.join("libmpich.so.12")).unwrap();
    link("libmpich.so.12.1.10", &opt.join("libmpich.so.12"));
    image_cache(f, &["libc.so.6"]);
    let c = bin.join("hello.c");
    std::fs::write(
        &c,
        "int MPI_Init(int *c, char ***v);\nint main(void) { return MPI_Init(0, 0); }\n",
    )
    .unwrap();
    let st = std::process::Command::new("gcc")
        .arg("-o")
        .arg(bin.join("hello"))
        .arg(&c)
        .arg("-Wl,--no-as-needed,--enable-new-dtags")
        .arg(opt.join("libmpich.so.12.1.10"))
        .arg("-Wl,-rpath,$ORIGIN/../../mpich/lib")
        .status()
        .unwrap();
    assert!(st.success(), "gcc hello");
    std::fs::remove_file(&c).unwrap();
}

#[test]
fn mpich_outside_the_loader_cache_is_found_through_the_programs_runpath() {
    use hooks_core::plan::loader::Process;
    use hooks_core::plan::mpi::plan_mpi_for;
    let f = fixture();
    mpich_under_opt(&f);
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let env = vec!["PATH=/usr/bin:/opt/app/bin".to_string()];
    let process = Process {
        program: "hello",
        env: &env,
        cwd: "/",
    };
    let (plan, _) = plan_mpi_for(&rootfs, &mpi_config(&f), Some(&process)).unwrap();
    check_golden(
        "mpi-opt-runpath-host-mpich",
        include_str!("golden/mpi-opt-runpath-host-mpich.yaml"),
        &yaml(&plan, &f),
    );
    // Without the process (or with a program that does not load it) it stays unfound.
    let e = plan_mpi_for(&rootfs, &mpi_config(&f), None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("no MPI library found in the image's ld.so.cache"),
        "{e}"
    );
    let other = Process {
        program: "/bin/true",
        env: &env,
        cwd: "/",
    };
    let e = plan_mpi_for(&rootfs, &mpi_config(&f), Some(&other)).unwrap_err();
    assert!(e.to_string().starts_with("no MPI library found"), "{e}");
}

#[test]
fn host_open_mpi_components_help_and_parameters_are_bound_at_their_host_paths() {
    let f = fixture();
    let cfg = both_families(&f);
    // The host Open MPI's layout next to its libmpi: <libdir>/openmpi (components),
    // <prefix>/share/openmpi (help texts), <prefix>/etc/openmpi-mca-params.conf.
    std::fs::create_dir_all(f.host.join("openmpi")).unwrap();
    gcc_shared(
        "int mca_btl_self_component(void) { return 0; }\n",
        &f.host.join("openmpi/mca_btl_self.so"),
        "mca_btl_self.so",
    );
    std::fs::create_dir_all(f.host.join("share/openmpi")).unwrap();
    std::fs::create_dir_all(f.host.join("etc")).unwrap();
    std::fs::write(f.host.join("etc/openmpi-mca-params.conf"), "").unwrap();
    let lib = f.rootfs.join("usr/lib").join(TRIPLET);
    open_mpi(&lib, "40.30.0");
    std::fs::remove_file(lib.join("libmpich.so.12")).unwrap();
    image_cache(&f, &["libmpi.so.40", "libopen-pal.so.40", "libc.so.6"]);
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let (plan, _) = plan_mpi(&rootfs, &cfg).unwrap();
    let host = std::fs::canonicalize(&f.host).unwrap();
    for p in [
        host.join("openmpi"),
        host.join("share/openmpi"),
        host.join("etc/openmpi-mca-params.conf"),
    ] {
        let p = p.to_string_lossy().into_owned();
        let m = plan
            .edits
            .mounts
            .iter()
            .find(|m| m.host_path == p)
            .unwrap_or_else(|| panic!("{p} is not bound: {:?}", plan.edits.mounts));
        assert_eq!(m.container_path, p, "bound at its host path");
        assert_eq!(m.options, ["ro", "nosuid", "nodev", "bind"]);
    }
    // An MPICH image on the same host gets none of them.
    let f2 = fixture();
    let cfg2 = both_families(&f2);
    std::fs::create_dir_all(f2.host.join("openmpi")).unwrap();
    std::fs::copy(
        f.host.join("openmpi/mca_btl_self.so"),
        f2.host.join("openmpi/mca_btl_self.so"),
    )
    .unwrap();
    let (plan, _) = plan_mpi(&Rootfs::open(&f2.rootfs).unwrap(), &cfg2).unwrap();
    assert!(
        !plan
            .edits
            .mounts
            .iter()
            .any(|m| m.host_path.contains("openmpi")),
        "{:?}",
        plan.edits.mounts
    );
}
