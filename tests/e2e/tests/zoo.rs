//! The image zoo (MPI families and layouts), end to end under podman + runc with the
//! hooks.d files generated here. Each image gets the host MPI or a one-line refusal:
//! Debian 12 MPICH 4.0.2 (the host's version) gets the host MPICH; an image whose MPICH
//! lives under `/opt` (out of its loader cache, found through the program's RUNPATH) gets
//! the host MPICH; an image without any MPI is refused naming what was looked for; the
//! Debian 11 Open MPI 4.1.0 image runs on the host's Open MPI 4.1.4 (podman, runc, crun;
//! also when `MPI_LIBS` lists both families), and is refused when the host offers only
//! MPICH; a musl (Alpine-like) image is refused naming musl. (Debian 11 MPICH 3.4.1, the
//! default image, is injection.rs's.)

use e2e_tests::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Moves the Debian 11 image's MPICH to `/opt/mpich/lib`, drops it from the loader cache
/// (`ldconfig -r`) and builds `/opt/app/bin/mpi-hello` against it with a RUNPATH, as
/// Spack and EasyBuild images are linked.
fn mpich_under_opt(root: &Path) {
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    let opt = root.join("opt/mpich/lib");
    fs::create_dir_all(&opt).unwrap();
    fs::create_dir_all(root.join("opt/app/bin")).unwrap();
    for name in ["libmpich.so.12.1.10", "libmpich.so.12", "libmpich.so"] {
        fs::rename(lib.join(name), opt.join(name))
            .unwrap_or_else(|e| panic!("moving {name} to /opt/mpich/lib: {e}"));
    }
    let mut cc = Command::new(require_command("chroot"));
    cc.arg(root).args([
        "gcc",
        "-O2",
        "-o",
        "/opt/app/bin/mpi-hello",
        "/opt/tests/mpi-hello.c",
        "-I/usr/include/x86_64-linux-gnu/mpich",
        "-L/opt/mpich/lib",
        "-lmpich",
        "-Wl,--enable-new-dtags,-rpath,/opt/mpich/lib",
    ]);
    run_cmd(cc, Duration::from_secs(120)).assert_success("gcc in the image (RUNPATH build)");
    ldconfig_root(root);
}

#[test]
fn mpich_under_opt_is_found_through_the_runpath_and_replaced() {
    let env = hooked_env();
    require_command("podman");
    let scratch = Scratch::new("zoo-opt");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    mpich_under_opt(&ov.merged);
    let log = scratch.path().join("hooks.log");
    let hooks_d = scratch.subdir("hooks.d");
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[&Hook::glibc(&log, "info"), &Hook::mpi(&log, "info")],
    );
    // Without hooks the image's own MPICH 3.4.1 runs from /opt.
    PodmanRun::new(&hooks_d, &ov.merged, &["/opt/app/bin/mpi-hello"])
        .enable_hooks(false, false)
        .run()
        .assert_mpich("3.4.1", "the /opt image without hooks");
    PodmanRun::new(&hooks_d, &ov.merged, &["/opt/app/bin/mpi-hello"])
        .enable_hooks(true, true)
        .hook_log(&log)
        .run()
        .assert_mpich(&env.host.version, "the /opt image with both hooks");
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("the image's MPI /opt/mpich/lib/libmpich.so.12.1.10 is outside its loader cache: found as the container's program loads it (/opt/mpich/lib/libmpich.so.12)"),
        "hook log:\n{text}"
    );
}

#[test]
fn image_without_mpi_is_refused_naming_what_was_looked_for() {
    let env = hooked_env();
    require_command("podman");
    let scratch = Scratch::new("zoo-nompi");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let lib = ov.merged.join("usr/lib/x86_64-linux-gnu");
    for name in ["libmpich.so.12.1.10", "libmpich.so.12", "libmpich.so"] {
        fs::remove_file(lib.join(name)).unwrap();
    }
    ldconfig_root(&ov.merged);
    let log = scratch.path().join("hooks.log");
    let hooks_d = scratch.subdir("hooks.d");
    write_hooks_d(&hooks_d, "createRuntime", &[&Hook::mpi(&log, "info")]);
    let out = PodmanRun::new(&hooks_d, &ov.merged, &["/bin/true"])
        .enable_hooks(true, false)
        .hook_log(&log)
        .run();
    assert!(
        !out.success(),
        "an image without MPI must not start:\n{out}"
    );
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("no MPI library found in the image's ld.so.cache, nor among the libraries its program /bin/true loads (looked for libmpich.so for x86-64)"),
        "hook log:\n{text}"
    );
}

/// The hooks.d of a test: glibc-hook and mpi-hook configured with `host`.
fn hooks_d_for(scratch: &Scratch, log: &Path, host: &HostMpi) -> std::path::PathBuf {
    let hooks_d = scratch.subdir("hooks.d");
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[
            &Hook::glibc(log, "info"),
            &Hook::mpi_with(log, "info", host),
        ],
    );
    hooks_d
}

#[test]
fn open_mpi_image_runs_on_the_host_open_mpi_under_podman_runc_and_crun() {
    let _env = hooked_env();
    require_command("podman");
    require_command("crun");
    let host = host_open_mpi();
    let image = open_mpi_rootfs();
    let scratch = Scratch::new("zoo-ompi");
    let ov = Overlay::new(scratch.path(), "rootfs", &image);
    let log = scratch.path().join("hooks.log");
    let hooks_d = hooks_d_for(&scratch, &log, &host);
    // Without hooks the image's own Open MPI runs.
    PodmanRun::new(&hooks_d, &ov.merged, &[MPI_HELLO])
        .enable_hooks(false, false)
        .run()
        .assert_open_mpi(
            CONTAINER_OPEN_MPI_VERSION,
            "the Open MPI image without hooks",
        );
    let out = PodmanRun::new(&hooks_d, &ov.merged, &[MPI_HELLO])
        .enable_hooks(true, true)
        .hook_log(&log)
        .run();
    out.assert_open_mpi(&host.version, "the Open MPI image with both hooks (podman)");
    // Open MPI prints a warning for each component it cannot load: none may be missing.
    assert!(
        !out.all_output().contains("unable to open mca_"),
        "a host component did not load in the container:\n{out}"
    );
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("host Open MPI /usr/lib/x86_64-linux-gnu/libmpi.so.40: components /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3, with /usr/share/openmpi, /etc/openmpi"),
        "hook log:\n{text}"
    );
    for crun in [false, true] {
        let name = if crun { "bundle-crun" } else { "bundle-runc" };
        let mut b = Bundle::new(scratch.path(), name, &ov.merged, &[MPI_HELLO]);
        b.enable_hooks(true, true);
        let (mpi, glibc) = (
            Hook::mpi_with(&b.log, "info", &host),
            Hook::glibc(&b.log, "info"),
        );
        b.add_hook("createRuntime", &mpi);
        b.add_hook("createRuntime", &glibc);
        let out = if crun { b.run_crun() } else { b.run_runc() };
        out.assert_open_mpi(&host.version, name);
    }
}

#[test]
fn open_mpi_image_is_refused_in_one_line_when_the_host_offers_only_mpich() {
    let env = hooked_env();
    require_command("podman");
    let image = open_mpi_rootfs();
    let scratch = Scratch::new("zoo-ompi-mpich");
    let ov = Overlay::new(scratch.path(), "rootfs", &image);
    let log = scratch.path().join("hooks.log");
    let hooks_d = hooks_d_for(&scratch, &log, &env.host);
    let out = PodmanRun::new(&hooks_d, &ov.merged, &[MPI_HELLO])
        .enable_hooks(true, true)
        .hook_log(&log)
        .run();
    assert!(
        !out.success(),
        "an Open MPI image on a host MPICH must not start:\n{out}"
    );
    let text = fs::read_to_string(&log).unwrap_or_default();
    let want = "the image's MPI is Open MPI (libmpi.so.40.30.0, Open MPI 4.1.x), but the host offers MPICH ABI (libmpich.so.12";
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(want)).collect();
    assert_eq!(
        lines.len(),
        1,
        "one refusal line expected in the hook log:\n{text}"
    );
}

/// A stub MPICH-ABI library for the musl image (`libmpich.so.12`, built with musl-gcc).
const MUSL_MPICH_STUB: &str = r#"
#include <string.h>
int MPI_Init(int *argc, char ***argv) { (void)argc; (void)argv; return 0; }
int MPI_Get_library_version(char *v, int *len) {
    strcpy(v, "MPICH Version:\t3.4.1-musl"); *len = (int)strlen(v); return 0; }
int MPI_Finalize(void) { return 0; }
"#;

/// The musl image's program: prints the MPI version it runs on, as mpi-hello does.
const MUSL_HELLO: &str = r#"
#include <stdio.h>
int MPI_Init(int *, char ***);
int MPI_Get_library_version(char *, int *);
int MPI_Finalize(void);
int main(int argc, char **argv) {
    char v[256]; int len = 0;
    MPI_Init(&argc, &argv);
    MPI_Get_library_version(v, &len);
    printf("rank 0 of 1: %s\n", v);
    return MPI_Finalize();
}
"#;

/// An Alpine-like image built from the host's Debian musl packages: busybox, musl's
/// loader (`/lib/ld-musl-x86_64.so.1`), no loader cache, an MPICH-ABI library
/// (`/usr/lib/libmpich.so.12`) and `/usr/local/bin/mpi-hello` linked against it.
fn musl_image(root: &Path) {
    let musl_gcc = require_command("musl-gcc");
    for d in [
        "bin",
        "lib",
        "usr/lib",
        "usr/local/bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(require_command("busybox"), root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let loader = fs::canonicalize("/lib/ld-musl-x86_64.so.1").unwrap_or_else(|e| {
        panic!("PREREQUISITE MISSING: /lib/ld-musl-x86_64.so.1 ({e}): apt-get install musl musl-dev musl-tools")
    });
    fs::copy(&loader, root.join("lib/ld-musl-x86_64.so.1")).unwrap();
    let src = root.join("tmp");
    fs::write(src.join("stub.c"), MUSL_MPICH_STUB).unwrap();
    fs::write(src.join("hello.c"), MUSL_HELLO).unwrap();
    let lib = root.join("usr/lib/libmpich.so.12");
    let mut c = Command::new(&musl_gcc);
    c.args([
        "-shared",
        "-fPIC",
        "-O1",
        "-Wl,-soname,libmpich.so.12",
        "-o",
    ])
    .arg(&lib)
    .arg(src.join("stub.c"));
    run_cmd(c, Duration::from_secs(60)).assert_success("musl-gcc (stub MPICH)");
    std::os::unix::fs::symlink("libmpich.so.12", root.join("usr/lib/libmpich.so")).unwrap();
    let mut c = Command::new(&musl_gcc);
    c.args(["-O1", "-o"])
        .arg(root.join("usr/local/bin/mpi-hello"))
        .arg(src.join("hello.c"))
        .arg(format!("-L{}", root.join("usr/lib").display()))
        .arg("-lmpich");
    run_cmd(c, Duration::from_secs(60)).assert_success("musl-gcc (mpi-hello)");
    fs::remove_file(src.join("stub.c")).unwrap();
    fs::remove_file(src.join("hello.c")).unwrap();
}

#[test]
fn musl_image_is_refused_in_one_line_naming_musl() {
    let env = hooked_env();
    require_command("podman");
    let scratch = Scratch::new("zoo-musl");
    let root = scratch.subdir("musl-rootfs");
    musl_image(&root);
    let log = scratch.path().join("hooks.log");
    let hooks_d = hooks_d_for(&scratch, &log, &env.host);
    // Without hooks the image's own (musl) MPI runs.
    PodmanRun::new(&hooks_d, &root, &[MPI_HELLO])
        .enable_hooks(false, false)
        .run()
        .assert_mpich("3.4.1-musl", "the musl image without hooks");
    let out = PodmanRun::new(&hooks_d, &root, &[MPI_HELLO])
        .enable_hooks(true, true)
        .hook_log(&log)
        .run();
    assert!(
        !out.success(),
        "a musl image must not get the host (glibc) MPI:\n{out}"
    );
    let text = fs::read_to_string(&log).unwrap_or_default();
    let want = format!(
        "the image's libc is musl (/lib/ld-musl-x86_64.so.1), but the host MPI {} is linked against glibc: it cannot run in a musl image",
        env.host.lib.display()
    );
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&want)).collect();
    assert_eq!(
        lines.len(),
        1,
        "one refusal line expected in the hook log:\n{text}"
    );
}

#[test]
fn debian12_mpich_image_gets_the_host_mpich_of_the_same_version() {
    let env = hooked_env();
    require_command("podman");
    let image = cached_recipe("debian12-mpich");
    let scratch = Scratch::new("zoo-d12");
    let ov = Overlay::new(scratch.path(), "rootfs", &image);
    let log = scratch.path().join("hooks.log");
    let hooks_d = hooks_d_for(&scratch, &log, &env.host);
    PodmanRun::new(&hooks_d, &ov.merged, &[MPI_HELLO])
        .enable_hooks(false, false)
        .run()
        .assert_mpich(&env.host.version, "the Debian 12 image without hooks");
    PodmanRun::new(&hooks_d, &ov.merged, &[MPI_HELLO])
        .enable_hooks(true, true)
        .hook_log(&log)
        .run()
        .assert_mpich(&env.host.version, "the Debian 12 image with both hooks");
    let text = fs::read_to_string(&log).unwrap_or_default();
    let real = fs::canonicalize(&env.host.lib).unwrap();
    assert!(
        text.contains(&format!(
            "bound {} over /usr/lib/x86_64-linux-gnu/libmpich.so.12",
            real.display()
        )),
        "the host MPICH must replace the image's:\n{text}"
    );
    assert!(
        text.contains("glibc: the image's glibc is new enough; nothing replaced"),
        "same glibc on both sides: nothing to replace:\n{text}"
    );
}

/// A node with both Debian MPIs: `MPI_LIBS` lists both families, as hpc-hooks-configure
/// writes it; the Open MPI image gets the host Open MPI, not the MPICH.
#[test]
fn open_mpi_image_on_a_host_offering_both_families_gets_open_mpi() {
    let env = hooked_env();
    require_command("podman");
    let ompi = host_open_mpi();
    let image = open_mpi_rootfs();
    let scratch = Scratch::new("zoo-ompi-both");
    let ov = Overlay::new(scratch.path(), "rootfs", &image);
    let log = scratch.path().join("hooks.log");
    let mut deps = ompi.deps.clone();
    deps.extend(
        env.host
            .deps
            .iter()
            .filter(|d| !ompi.deps.contains(d))
            .cloned(),
    );
    let both = HostMpi {
        lib: ompi.lib.clone(),
        deps,
        version: ompi.version.clone(),
    };
    let libs = format!("{}:{}", ompi.lib.display(), env.host.lib.display());
    let hooks_d = scratch.subdir("hooks.d");
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[
            &Hook::glibc(&log, "info"),
            &Hook::mpi_with(&log, "info", &both).with_env("MPI_LIBS", &libs),
        ],
    );
    PodmanRun::new(&hooks_d, &ov.merged, &[MPI_HELLO])
        .enable_hooks(true, true)
        .hook_log(&log)
        .run()
        .assert_open_mpi(&ompi.version, "the Open MPI image on a host with both MPIs");
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains(&format!("host {} (MPICH ABI", env.host.lib.display())),
        "the host MPICH must be left out:\n{text}"
    );
}
