//! Issue 14, point 1: Apptainer's bind model. A Debian 11 image WITHOUT an MPI (the
//! cached Debian 11 MPICH rootfs with MPICH removed in an overlay and its loader cache
//! regenerated) whose programs were built against the MPICH ABI in the MPICH image runs on
//! the host's MPICH with `com.hooks.mpi.mode=bind`: under podman, and as two ranks of one
//! world under `srun -n 2 --mpi=pmi2 hpc-rank`.

use e2e_tests::*;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

const MODE_ANNOTATION: &str = "com.hooks.mpi.mode";
const PINGPONG: &str = "/usr/local/bin/mpi-pingpong";

/// Fields drop in order: the overlay, then its scratch directory, then the e2e lock.
struct BindEnv {
    ov: Overlay,
    _scratch: Scratch,
    hooks_d: PathBuf,
    log: PathBuf,
    env: HookedEnv,
}

fn bind_env(tag: &str) -> BindEnv {
    let env = hooked_env();
    require_command("podman");
    let scratch = Scratch::new(tag);
    let ov = image_without_mpi(&scratch, &env.rootfs);
    let log = scratch.path().join("hooks.log");
    let hooks_d = scratch.subdir("hooks.d");
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[&Hook::glibc(&log, "info"), &Hook::mpi(&log, "info")],
    );
    BindEnv {
        ov,
        _scratch: scratch,
        hooks_d,
        log,
        env,
    }
}

#[test]
fn podman_bind_model_runs_an_image_without_mpi_on_the_host_mpich() {
    let be = bind_env("bind-podman");
    let rootfs = &be.ov.merged;

    // Without hooks the program cannot start: the image really has no MPI.
    let out = PodmanRun::new(&be.hooks_d, rootfs, &[MPI_HELLO]).run();
    out.assert_failure("mpi-hello in the image without MPI, no hooks");
    assert!(
        out.all_output().contains("libmpich.so.12"),
        "the loader must miss libmpich.so.12: {out}"
    );

    // The hybrid model (no mode annotation) refuses it, naming the bind model.
    let out = PodmanRun::new(&be.hooks_d, rootfs, &[MPI_HELLO])
        .enable_hooks(true, true)
        .hook_log(&be.log)
        .run();
    out.assert_failure("hybrid model on an image without MPI");
    assert!(
        out.all_output()
            .contains("add the annotation com.hooks.mpi.mode=bind"),
        "{out}"
    );

    // The bind model without the glibc annotation: the same glibc rule as hybrid.
    let out = PodmanRun::new(&be.hooks_d, rootfs, &[MPI_HELLO])
        .enable_hooks(true, false)
        .annotate(MODE_ANNOTATION, "bind")
        .hook_log(&be.log)
        .run();
    out.assert_failure("bind model without the glibc annotation");
    assert!(
        out.all_output()
            .contains("add the annotation com.hooks.glibc.enabled=true"),
        "{out}"
    );

    // The bind model with glibc: the host's MPICH, from the private library directory.
    let out = PodmanRun::new(&be.hooks_d, rootfs, &[MPI_HELLO])
        .enable_hooks(true, true)
        .annotate(MODE_ANNOTATION, "bind")
        .hook_log(&be.log)
        .run();
    out.assert_mpich(&be.env.host.version, "bind model, podman");
    let out = PodmanRun::new(
        &be.hooks_d,
        rootfs,
        &[
            "sh",
            "-c",
            "grep ' /run/hpc-hooks/lib/' /proc/self/mountinfo",
        ],
    )
    .enable_hooks(true, true)
    .annotate(MODE_ANNOTATION, "bind")
    .run();
    out.assert_success("mount table of a bind-model container");
    assert!(
        out.stdout.contains("/run/hpc-hooks/lib/libmpich.so.12 "),
        "the host MPICH must be in the private library directory: {out}"
    );
    let log = fs::read_to_string(&be.log).unwrap_or_default();
    assert!(log.contains("bind model"), "hook log: {log}");
}

#[test]
fn srun_two_ranks_of_an_image_without_mpi_form_one_world() {
    let be = bind_env("bind-srun");
    let launcher = hook_bin("hpc-rank");
    let conf = slurm_up(&launcher);
    let mut c = srun_pmi2(&conf, 2, "e2e-bind");
    c.arg(&launcher)
        .arg("--hooks-dir")
        .arg(&be.hooks_d)
        .args(["--annotation", &format!("{MODE_ANNOTATION}=bind")])
        .arg(&be.ov.merged)
        .args([PINGPONG, "2000", "100"]);
    let out = run_cmd(c, Duration::from_secs(150));
    assert_pingpong_world(
        &out,
        2,
        &be.env.host.version,
        &be.log,
        "srun -n 2 hpc-rank, bind model",
    );
    let runs = fs::read_to_string(&be.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("hook=mpi-hook") && l.contains("bind model"))
        .count();
    assert_eq!(runs, 2, "mpi-hook ran the bind model for both ranks");
}
