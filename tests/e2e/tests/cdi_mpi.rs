//! Issue 14, point 2: the host MPI as CDI devices. `cdi-gen mpi` writes the specs of
//! hpc-hooks.io/mpi=host and hpc-hooks.io/glibc=host into /etc/cdi; podman 4.3 with an
//! EMPTY hooks directory runs the Debian 11 image without MPI (bind model) and the Debian
//! 11 MPICH image (replaced) on the host's MPICH through `--device` alone, and without the
//! glibc device the container fails with the message that names it. And hpc-rank's
//! `--device` (allowed through a site's wrapper, unlike `--annotation`) gives two ranks
//! under `srun --mpi=pmi2` the host MPI from the same specs, with no hooks.d file.

use e2e_tests::*;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The two spec files in /etc/cdi, removed on drop.
struct InstalledSpecs(Vec<PathBuf>);

impl Drop for InstalledSpecs {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

#[test]
fn podman_runs_the_host_mpi_from_cdi_devices_with_an_empty_hooks_dir() {
    let env = hooked_env();
    require_command("podman");
    let cdi_gen = hook_bin("cdi-gen");
    let scratch = Scratch::new("cdi-mpi");
    let log = scratch.path().join("hooks.log");
    let empty_hooks = scratch.subdir("empty-hooks.d");
    assert_eq!(fs::read_dir(&empty_hooks).unwrap().count(), 0);
    let id = unique_id("h10");
    fs::create_dir_all("/etc/cdi").unwrap();
    let specs = InstalledSpecs(vec![
        PathBuf::from(format!("/etc/cdi/hpc-hooks-mpi-{id}.yaml")),
        PathBuf::from(format!("/etc/cdi/hpc-hooks-glibc-{id}.yaml")),
    ]);
    let mut c = Command::new(&cdi_gen);
    c.args(["mpi", "--mpi-libs", &env.host.mpi_libs()])
        .args(["--mpi-dependency-libs", &env.host.dependency_libs()])
        .arg("--hook-dir")
        .arg(hook_bin_dir())
        .arg("--hook-log-file")
        .arg(&log)
        .args(["--hook-log-level", "info", "--output"])
        .arg(&specs.0[0])
        .arg("--glibc-output")
        .arg(&specs.0[1]);
    run_cmd(c, Duration::from_secs(30)).assert_success("cdi-gen mpi");
    let mut c = Command::new(&cdi_gen);
    c.args(["validate", "--max-version", "0.5.0"])
        .args(&specs.0);
    run_cmd(c, Duration::from_secs(30)).assert_success("the specs load in podman 4.3's CDI");

    let scratch_img = Scratch::new("cdi-mpi-img");
    let nompi = image_without_mpi(&scratch_img, &env.rootfs);
    const MPI: &str = "hpc-hooks.io/mpi=host";
    const GLIBC: &str = "hpc-hooks.io/glibc=host";

    // Both devices: the image without MPI gets the host's (bind model, the spec's mode).
    let out = PodmanRun::new(&empty_hooks, &nompi.merged, &[MPI_HELLO])
        .device(MPI)
        .device(GLIBC)
        .hook_log(&log)
        .run();
    out.assert_mpich(&env.host.version, "CDI devices, image without MPI");
    // The image with MPICH 3.4.1 has it replaced (hybrid).
    let ov = Overlay::new(scratch.path(), "mpich", &env.rootfs);
    let out = PodmanRun::new(&empty_hooks, &ov.merged, &[MPI_HELLO])
        .device(MPI)
        .device(GLIBC)
        .hook_log(&log)
        .run();
    out.assert_mpich(&env.host.version, "CDI devices, image with MPICH");
    // The host libraries are staged read-only by the spec's mounts.
    let out = PodmanRun::new(
        &empty_hooks,
        &nompi.merged,
        &["sh", "-c", "grep hpc-hooks-staging /proc/self/mountinfo"],
    )
    .device(MPI)
    .device(GLIBC)
    .run();
    out.assert_success("staged libraries");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains(" /run/hpc-hooks-staging/mpi/libmpich.so.12") && l.contains(" ro,")),
        "{out}"
    );

    // Without the glibc device: refused, naming it.
    let out = PodmanRun::new(&empty_hooks, &nompi.merged, &[MPI_HELLO])
        .device(MPI)
        .hook_log(&log)
        .run();
    out.assert_failure("the MPI device without the glibc device");
    assert!(
        out.all_output().contains(
            "add the CDI device hpc-hooks.io/glibc=host (podman --device hpc-hooks.io/glibc=host)"
        ),
        "{out}"
    );
    // No annotation and no hooks.d entry ran anything: the hooks came from the specs.
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("hook=mpi-hook"), "{text}");
    drop(nompi);
    drop(ov);
    drop(specs);
}

#[test]
fn srun_two_ranks_get_the_host_mpi_from_the_cdi_devices() {
    let env = hooked_env();
    let cdi_gen = hook_bin("cdi-gen");
    let launcher = hook_bin("hpc-rank");
    let scratch = Scratch::new("cdi-mpi-srun");
    let log = scratch.path().join("hooks.log");
    let empty_hooks = scratch.subdir("empty-hooks.d");
    let spec_dir = scratch.subdir("cdi");
    let mut c = Command::new(&cdi_gen);
    c.args(["mpi", "--mpi-libs", &env.host.mpi_libs()])
        .args(["--mpi-dependency-libs", &env.host.dependency_libs()])
        .arg("--hook-dir")
        .arg(hook_bin_dir())
        .arg("--hook-log-file")
        .arg(&log)
        .args(["--hook-log-level", "info", "--output"])
        .arg(spec_dir.join("hpc-hooks-mpi.yaml"));
    run_cmd(c, Duration::from_secs(30)).assert_success("cdi-gen mpi");
    let nompi = image_without_mpi(&scratch, &env.rootfs);
    let conf = slurm_up(&launcher);
    let mut c = srun_pmi2(&conf, 2, "e2e-cdi-mpi");
    c.arg(&launcher)
        .arg("--hooks-dir")
        .arg(&empty_hooks)
        .args(["--no-mpi", "--no-glibc", "--cdi-spec-dir"])
        .arg(&spec_dir)
        .args(["--device", "hpc-hooks.io/mpi=host"])
        .args(["--device", "hpc-hooks.io/glibc=host"])
        .arg(&nompi.merged)
        .args(["/usr/local/bin/mpi-pingpong", "2000", "100"]);
    let out = run_cmd(c, Duration::from_secs(150));
    assert_pingpong_world(
        &out,
        2,
        &env.host.version,
        &log,
        "srun -n 2 hpc-rank --device hpc-hooks.io/mpi=host --device hpc-hooks.io/glibc=host",
    );
    let runs = fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("hook=mpi-hook") && l.contains("bind model"))
        .count();
    assert_eq!(runs, 2, "the CDI devices' mpi-hook ran for both ranks");
    drop(nompi);
}
