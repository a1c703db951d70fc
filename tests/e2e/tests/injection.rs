//! Tests 2, 3 and 5: host MPICH injection with mpi-hook + glibc-hook under podman+runc,
//! bare runc (createRuntime and createContainer) and crun (createContainer); mpi-hook
//! alone refused for glibc; an image whose MPI has another major refused.

use e2e_tests::*;
use std::fs;
use std::os::unix::fs::symlink;

fn assert_logged_elapsed(log: &std::path::Path, hooks: &[&str]) {
    let text = fs::read_to_string(log).unwrap_or_default();
    let timings = hook_timings(&text);
    for h in hooks {
        assert!(
            timings.iter().any(|(n, _)| n == h),
            "hook log {} has no info line with `hook={h}` and `elapsed_us=<N>` \
             (needed by the benchmark). Log:\n{text}",
            log.display()
        );
    }
}

/// Test 2, podman + runc, hooks.d generated here (stage createRuntime, Sarus file order:
/// glibc first, mpi second).
#[test]
fn podman_with_both_hooks_reports_host_mpich() {
    let env = hooked_env();
    require_command("podman");
    let scratch = Scratch::new("inject-podman");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let log = scratch.path().join("hooks.log");
    let hooks_d = scratch.subdir("hooks.d");
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[&Hook::glibc(&log, "debug"), &Hook::mpi(&log, "debug")],
    );
    PodmanRun::new(&hooks_d, &ov.merged, &[MPI_HELLO])
        .enable_hooks(true, true)
        .hook_log(&log)
        .run()
        .assert_mpich(&env.host.version, "podman+runc, createRuntime, both hooks");
    assert_logged_elapsed(&log, &["mpi-hook", "glibc-hook"]);
}

/// Test 2, podman: hooks.d files with the opposite order (mpi first) give the same result.
#[test]
fn podman_with_both_hooks_reversed_file_order_reports_host_mpich() {
    let env = hooked_env();
    require_command("podman");
    let scratch = Scratch::new("inject-podman-rev");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let log = scratch.path().join("hooks.log");
    let hooks_d = scratch.subdir("hooks.d");
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[&Hook::mpi(&log, "debug"), &Hook::glibc(&log, "debug")],
    );
    PodmanRun::new(&hooks_d, &ov.merged, &[MPI_HELLO])
        .enable_hooks(true, true)
        .hook_log(&log)
        .run()
        .assert_mpich(
            &env.host.version,
            "podman+runc, createRuntime, both hooks, mpi hooks.d file first",
        );
}

/// Test 2, bare runc, hooks in config.json at createRuntime.
#[test]
fn runc_create_runtime_with_both_hooks_reports_host_mpich() {
    let env = hooked_env();
    let scratch = Scratch::new("inject-runc-cr");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let mut b = Bundle::new(scratch.path(), "bundle", &ov.merged, &[MPI_HELLO]);
    b.enable_hooks(true, true);
    let (mpi, glibc) = (Hook::mpi(&b.log, "debug"), Hook::glibc(&b.log, "debug"));
    b.add_hook("createRuntime", &mpi);
    b.add_hook("createRuntime", &glibc);
    b.run_runc()
        .assert_mpich(&env.host.version, "runc, createRuntime, both hooks");
    assert_logged_elapsed(&b.log, &["mpi-hook", "glibc-hook"]);
}

/// Test 2, bare runc, hooks in config.json at createContainer (glibc listed first).
#[test]
fn runc_create_container_with_both_hooks_reports_host_mpich() {
    let env = hooked_env();
    let scratch = Scratch::new("inject-runc-cc");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let mut b = Bundle::new(scratch.path(), "bundle", &ov.merged, &[MPI_HELLO]);
    b.enable_hooks(true, true);
    let (mpi, glibc) = (Hook::mpi(&b.log, "debug"), Hook::glibc(&b.log, "debug"));
    b.add_hook("createContainer", &glibc);
    b.add_hook("createContainer", &mpi);
    b.run_runc()
        .assert_mpich(&env.host.version, "runc, createContainer, both hooks");
    assert_logged_elapsed(&b.log, &["mpi-hook", "glibc-hook"]);
}

/// Test 2, crun at createContainer (crun sends pid 0 and ociVersion "1.0").
#[test]
fn crun_create_container_with_both_hooks_reports_host_mpich() {
    let env = hooked_env();
    require_command("crun");
    let scratch = Scratch::new("inject-crun");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let mut b = Bundle::new(scratch.path(), "bundle", &ov.merged, &[MPI_HELLO]);
    b.enable_hooks(true, true);
    let (mpi, glibc) = (Hook::mpi(&b.log, "debug"), Hook::glibc(&b.log, "debug"));
    b.add_hook("createContainer", &mpi);
    b.add_hook("createContainer", &glibc);
    b.run_crun()
        .assert_mpich(&env.host.version, "crun, createContainer, both hooks");
}

/// Hooks registered but not activated by annotations: exit 0, nothing done.
#[test]
fn runc_hooks_without_annotations_do_nothing() {
    let env = hooked_env();
    let scratch = Scratch::new("inject-noannot");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let mut b = Bundle::new(scratch.path(), "bundle", &ov.merged, &[MPI_HELLO]);
    let (mpi, glibc) = (Hook::mpi(&b.log, "debug"), Hook::glibc(&b.log, "debug"));
    b.add_hook("createRuntime", &mpi);
    b.add_hook("createRuntime", &glibc);
    b.run_runc().assert_mpich(
        CONTAINER_MPICH_VERSION,
        "runc, hooks registered without activation annotations",
    );
    let left = forbidden_upper_entries(&ov);
    let upper = snapshot_tree(&ov.upper, false);
    assert!(
        upper.len() <= 1 && left.is_empty(),
        "non-activated hooks changed the rootfs: {:?}",
        upper.keys().collect::<Vec<_>>()
    );
}

fn assert_glibc_refusal(out: &RunOutput, context: &str) {
    out.assert_failure(context);
    let all = out.all_output();
    for needle in ["2.34", "2.31", "com.hooks.glibc.enabled=true"] {
        assert!(
            all.contains(needle),
            "{context}: the failure message must contain `{needle}` (host glibc need, container \
             glibc, annotation to add)\n{out}"
        );
    }
    eprintln!("{context}: refused as expected:\n{}", out.stderr.trim());
}

/// Test 3: mpi-hook alone (glibc-hook not enabled) on the glibc 2.31 image: refused
/// with a message naming both versions and the annotation to add (bare runc).
#[test]
fn runc_mpi_hook_alone_fails_with_glibc_message() {
    let env = hooked_env();
    let scratch = Scratch::new("mpi-alone-runc");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let mut b = Bundle::new(scratch.path(), "bundle", &ov.merged, &[MPI_HELLO]);
    b.enable_hooks(true, false);
    let (mpi, glibc) = (Hook::mpi(&b.log, "debug"), Hook::glibc(&b.log, "debug"));
    b.add_hook("createRuntime", &mpi);
    // glibc-hook registered but NOT enabled by annotation.
    b.add_hook("createRuntime", &glibc);
    let out = b.run_runc();
    assert_glibc_refusal(&out, "runc, mpi-hook alone");
}

/// Test 3 under podman: the hook's message surfaces in podman's stderr.
#[test]
fn podman_mpi_hook_alone_fails_with_glibc_message() {
    let env = hooked_env();
    require_command("podman");
    let scratch = Scratch::new("mpi-alone-podman");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let log = scratch.path().join("hooks.log");
    let hooks_d = scratch.subdir("hooks.d");
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[&Hook::glibc(&log, "debug"), &Hook::mpi(&log, "debug")],
    );
    let out = PodmanRun::new(&hooks_d, &ov.merged, &[MPI_HELLO])
        .enable_hooks(true, false)
        .hook_log(&log)
        .run();
    assert_glibc_refusal(&out, "podman, mpi-hook alone");
}

/// Test 5: the image's MPI has another major (libmpich.so.13): refused, naming "major"
/// and both libraries.
#[test]
fn runc_major_mismatch_is_refused() {
    let env = hooked_env();
    let scratch = Scratch::new("major");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let libdir = ov.path("/usr/lib/x86_64-linux-gnu");
    for e in fs::read_dir(&libdir).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("libmpich.so") {
            fs::remove_file(e.path()).unwrap();
        }
    }
    let stub = libdir.join("libmpich.so.13.0.0");
    gcc_shared(
        "int MPI_Init(int *c, char ***v) { (void)c; (void)v; return 0; }\n",
        &scratch.path().join("libmpich.so.13.0.0"),
        "libmpich.so.13",
    );
    fs::copy(scratch.path().join("libmpich.so.13.0.0"), &stub).unwrap();
    symlink("libmpich.so.13.0.0", libdir.join("libmpich.so.13")).unwrap();
    symlink("libmpich.so.13.0.0", libdir.join("libmpich.so")).unwrap();
    ldconfig_root(&ov.merged);
    let cache = fs::read(ov.path("/etc/ld.so.cache")).unwrap();
    assert!(
        cache.windows(14).any(|w| w == b"libmpich.so.13"),
        "fixture: regenerated cache lacks libmpich.so.13"
    );

    let mut b = Bundle::new(scratch.path(), "bundle", &ov.merged, &[MPI_HELLO]);
    b.enable_hooks(true, true);
    let (mpi, glibc) = (Hook::mpi(&b.log, "debug"), Hook::glibc(&b.log, "debug"));
    b.add_hook("createRuntime", &glibc);
    b.add_hook("createRuntime", &mpi);
    let out = b.run_runc();
    out.assert_failure("runc, image MPI libmpich.so.13 vs host libmpich.so.12");
    let all = out.all_output();
    for needle in ["major", "libmpich.so.12", "libmpich.so.13"] {
        assert!(
            all.contains(needle),
            "major mismatch: the error must contain `{needle}`\n{out}"
        );
    }
    eprintln!("major mismatch refused as expected:\n{}", out.stderr.trim());
}
