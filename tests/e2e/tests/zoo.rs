//! The image zoo (MPI families and layouts), end to end under podman + runc with the
//! hooks.d files generated here: an image whose MPICH lives under `/opt` (out of its
//! loader cache, found through the program's RUNPATH) gets the host MPICH; an image
//! without any MPI is refused in one line naming what was looked for.

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
