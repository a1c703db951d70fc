//! Test 1: without hooks, mpi-hello in the Debian 11 rootfs reports the image's own
//! MPICH (3.4.1), under bare runc and under podman+runc.

use e2e_tests::*;

#[test]
fn runc_without_hooks_reports_container_mpich() {
    let _lock = e2e_lock();
    require_command("runc");
    let rootfs = cached_rootfs();
    let scratch = Scratch::new("baseline-runc");
    let ov = Overlay::new(scratch.path(), "rootfs", &rootfs);
    let bundle = Bundle::new(scratch.path(), "bundle", &ov.merged, &[MPI_HELLO]);
    bundle
        .run_runc()
        .assert_mpich(CONTAINER_MPICH_VERSION, "runc, no hooks");
}

#[test]
fn runc_with_annotations_but_no_hooks_registered_reports_container_mpich() {
    // Annotations alone do nothing: bare runc never reads hooks.d.
    let _lock = e2e_lock();
    require_command("runc");
    let rootfs = cached_rootfs();
    let scratch = Scratch::new("baseline-runc-annot");
    let ov = Overlay::new(scratch.path(), "rootfs", &rootfs);
    let mut bundle = Bundle::new(scratch.path(), "bundle", &ov.merged, &[MPI_HELLO]);
    bundle.enable_hooks(true, true);
    bundle
        .run_runc()
        .assert_mpich(CONTAINER_MPICH_VERSION, "runc, annotations, no hooks");
}

#[test]
fn podman_without_hooks_reports_container_mpich() {
    let _lock = e2e_lock();
    require_command("podman");
    require_command("runc");
    let rootfs = cached_rootfs();
    let scratch = Scratch::new("baseline-podman");
    let ov = Overlay::new(scratch.path(), "rootfs", &rootfs);
    let empty_hooks = scratch.subdir("hooks.d");
    PodmanRun::new(&empty_hooks, &ov.merged, &[MPI_HELLO])
        .run()
        .assert_mpich(CONTAINER_MPICH_VERSION, "podman, no hooks");
}
