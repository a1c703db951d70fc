//! Issue 12, point 3: PMIx under Slurm. `srun -n 2 --mpi=pmix hpc-rank ROOTFS
//! mpi-pingpong` (Slurm's mpi_pmix plugin, Debian's Slurm) on the Debian 11 Open MPI 4.1.0
//! image forms one world of 2 on the host's Open MPI 4.1.4 (mpi-hook + glibc-hook, the
//! job's PMIx directories and variables passed by hpc-rank); MPI_Abort fails the job and
//! leaves no container behind, and so does scancel.

use e2e_tests::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const PINGPONG: &str = "/usr/local/bin/mpi-pingpong";
const JOB_TIMEOUT: Duration = Duration::from_secs(150);

struct Job {
    _env: HookedEnv,
    host: HostMpi,
    rootfs: PathBuf,
    scratch: Scratch,
    hooks_d: PathBuf,
    log: PathBuf,
    conf: String,
    launcher: PathBuf,
}

fn job(tag: &str) -> Job {
    let env = hooked_env();
    let host = host_open_mpi();
    let rootfs = open_mpi_rootfs();
    assert!(
        rootfs.join(PINGPONG.trim_start_matches('/')).is_file(),
        "PREREQUISITE MISSING: {} has no {PINGPONG}",
        rootfs.display()
    );
    let launcher = hook_bin("hpc-rank");
    let conf = slurm_up(&launcher);
    let scratch = Scratch::new(tag);
    let log = scratch.path().join("hooks.log");
    let hooks_d = scratch.subdir("hooks.d");
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[
            &Hook::glibc(&log, "info"),
            &Hook::mpi_with(&log, "info", &host),
        ],
    );
    Job {
        _env: env,
        host,
        rootfs,
        scratch,
        hooks_d,
        log,
        conf,
        launcher,
    }
}

impl Job {
    /// `srun -n 2 --mpi=pmix -J JOB hpc-rank --hooks-dir H [extra] ROOTFS mpi-pingpong ITERS`
    fn srun(&self, name: &str, extra: &[&str], iters: &[&str]) -> Command {
        let mut c = Command::new(require_command("srun"));
        for (k, _) in std::env::vars() {
            if k.starts_with("SLURM_")
                || k.starts_with("PMI")
                || k.starts_with("OMPI_")
                || k.starts_with("HYDRA_")
            {
                c.env_remove(k);
            }
        }
        c.env("SLURM_CONF", &self.conf)
            .args(["-n", "2", "--mpi=pmix", "-J", name, "--kill-on-bad-exit=1"])
            .arg(&self.launcher)
            .arg("--hooks-dir")
            .arg(&self.hooks_d)
            .args(extra)
            .arg(&self.rootfs)
            .arg(PINGPONG)
            .args(iters);
        c
    }

    fn show(&self, out: &RunOutput) -> String {
        format!(
            "{out}\n--- hook log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

/// hpc-rank's containers (runc ids `hpcrank-*`) still there.
fn rank_containers() -> Vec<String> {
    let out = Command::new(require_command("runc"))
        .args(["list", "-q"])
        .output()
        .expect("runc list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("hpcrank-"))
        .map(str::to_string)
        .collect()
}

fn assert_no_rank_containers_within(within: Duration, context: &str) {
    let t0 = Instant::now();
    loop {
        let left = rank_containers();
        if left.is_empty() {
            return;
        }
        if t0.elapsed() > within {
            panic!("{context}: hpc-rank containers left behind: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn srun_pmix_two_ranks_of_the_open_mpi_image_form_one_world_on_the_host_open_mpi() {
    let j = job("pmix-ompi");
    assert_no_rank_containers_within(Duration::from_secs(15), "before the test");
    let out = run_cmd(j.srun("h12-pmix", &[], &["2000", "100"]), JOB_TIMEOUT);
    assert!(out.success(), "{}", j.show(&out));
    let worlds: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("pingpong: world_size="))
        .collect();
    assert_eq!(worlds.len(), 1, "one world: {}", j.show(&out));
    assert!(
        worlds[0].starts_with(&format!("2 mpi_version=Open MPI v{},", j.host.version)),
        "a world of 2 on the host Open MPI {}: {}",
        j.host.version,
        j.show(&out)
    );
    assert!(out.stdout.contains("pingpong: ok"), "{}", j.show(&out));
    assert_no_rank_containers_within(Duration::from_secs(10), "after a clean srun job");
    drop(j.scratch);
}

#[test]
fn srun_pmix_mpi_abort_fails_the_job_and_leaves_nothing_behind() {
    let j = job("pmix-ompi-abort");
    assert_no_rank_containers_within(Duration::from_secs(15), "before the test");
    let out = run_cmd(
        j.srun(
            "h12-pmix-abort",
            &["--env", "PINGPONG_ABORT_RANK=1"],
            &["200", "10"],
        ),
        JOB_TIMEOUT,
    );
    assert!(
        !out.timed_out && !out.success(),
        "MPI_Abort must fail the job: {}",
        j.show(&out)
    );
    assert!(
        out.all_output().contains("calls MPI_Abort"),
        "rank 1 must have reached MPI_Abort: {}",
        j.show(&out)
    );
    assert_no_rank_containers_within(Duration::from_secs(15), "after MPI_Abort under srun");
}

#[test]
fn srun_pmix_scancel_leaves_nothing_behind() {
    let j = job("pmix-ompi-scancel");
    assert_no_rank_containers_within(Duration::from_secs(15), "before the test");
    let name = "h12-pmix-scancel";
    let mut srun = BackgroundSrun::spawn(
        j.srun(name, &["--env", "PINGPONG_SLEEP=300"], &["200", "10"]),
        j.scratch.path(),
        &j.log,
    );
    srun.wait_sleeping(2, || rank_containers().len());
    let st = Command::new(require_command("scancel"))
        .env("SLURM_CONF", &j.conf)
        .args(["-n", name])
        .status()
        .expect("run scancel");
    assert!(st.success(), "scancel -n {name} failed");
    srun.wait_end("scancel");
    assert_no_rank_containers_within(
        Duration::from_secs(20),
        &format!("after scancel\n{}", srun.show()),
    );
}
