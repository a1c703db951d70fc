//! Issue 4: multi-rank MPI jobs, one container per rank, started by `hpc-rank`
//! (launcher/) under a one-node Slurm (`srun --mpi=pmi2`, tests/slurm/slurm-up.sh)
//! and under hydra (`mpiexec`); the ranks run the host's MPICH through mpi-hook +
//! glibc-hook. MPI_Abort and scancel leave no container, mount, cgroup or process
//! behind. Prerequisites (slurm, runc, podman, hooks, launcher, rootfs) are checked and
//! make the test FAIL when missing.

use e2e_tests::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PINGPONG: &str = "/usr/local/bin/mpi-pingpong";
const JOB_TIMEOUT: Duration = Duration::from_secs(150);

struct RankEnv {
    env: HookedEnv,
    scratch: Scratch,
    hooks_d: PathBuf,
    log: PathBuf,
    launcher: PathBuf,
}

fn rank_env(tag: &str) -> RankEnv {
    let env = hooked_env();
    assert!(
        env.rootfs.join(PINGPONG.trim_start_matches('/')).is_file(),
        "PREREQUISITE MISSING: {} has no {PINGPONG}; rebuild the test rootfs with \
         tests/rootfs/build-rootfs.sh {RECIPE} (it compiles tests/programs/mpi-*.c)",
        env.rootfs.display()
    );
    let launcher = hook_bin("hpc-rank");
    let scratch = Scratch::new(tag);
    let log = scratch.path().join("hooks.log");
    let hooks_d = scratch.subdir("hooks.d");
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[&Hook::glibc(&log, "info"), &Hook::mpi(&log, "info")],
    );
    // Containers of hpc-rank must not exist before the test; any other runc container
    // that exists now is someone else's and is ignored.
    *runc_baseline().lock().unwrap() = cmd_lines("runc", &["list", "-q"])
        .into_iter()
        .filter(|i| !i.starts_with("hpcrank-"))
        .collect();
    assert_no_leftovers("before the test");
    RankEnv {
        env,
        scratch,
        hooks_d,
        log,
        launcher,
    }
}

impl RankEnv {
    /// `hpc-rank --hooks-dir H [extra] ROOTFS mpi-pingpong ITERS...`
    fn rank_args(&self, extra: &[&str], iters: &[&str]) -> Vec<String> {
        let mut v = vec![
            self.launcher.display().to_string(),
            "--hooks-dir".into(),
            self.hooks_d.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v.push(self.env.rootfs.display().to_string());
        v.push(PINGPONG.into());
        v.extend(iters.iter().map(|s| s.to_string()));
        v
    }

    fn srun(&self, conf: &str, job: &str, extra: &[&str], iters: &[&str]) -> Command {
        let mut c = Command::new(require_command("srun"));
        clean_env(&mut c);
        c.env("SLURM_CONF", conf)
            .args(["-n", "2", "--mpi=pmi2", "-J", job, "--kill-on-bad-exit=1"])
            .args(self.rank_args(extra, iters));
        c
    }

    fn mpiexec(&self, extra: &[&str], iters: &[&str]) -> Command {
        let mut c = Command::new(require_command("mpiexec"));
        clean_env(&mut c);
        c.args(["-n", "2"]).args(self.rank_args(extra, iters));
        c
    }

    fn hook_containers(&self) -> BTreeSet<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("hook=mpi-hook") && l.contains("elapsed_us="))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|t| t.trim_matches('"').strip_prefix("container="))
                    // `container=ID}:` in the run's span, `container=ID` in the text.
                    .map(|s| s.trim_end_matches([':', '}']).trim_matches('"').to_string())
            })
            .collect()
    }
}

/// podman as the harness runs it (runc, cgroupfs; see shared/reference/oci-hooks.md),
/// and an RLIMIT_NPROC this machine's kernel lets runc set.
fn podman_env(c: &mut Command) {
    c.env(
        "HPC_RANK_PODMAN_GLOBAL_OPTS",
        "--runtime runc --cgroup-manager cgroupfs",
    )
    .env("HPC_RANK_PODMAN_RUN_OPTS", "--ulimit nproc=1024:1024");
}

/// No Slurm/PMI variables of an enclosing job leak into the tested one.
fn clean_env(c: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("SLURM_") || k.starts_with("PMI_") || k.starts_with("HYDRA_") {
            c.env_remove(k);
        }
    }
}

fn field<'a>(stdout: &'a str, key: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("pingpong: "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .collect()
}

/// World of size 2 on the host MPICH, both message sizes measured, clean finish, and
/// mpi-hook ran for two distinct hpc-rank containers.
fn assert_pingpong(re: &RankEnv, out: &RunOutput, what: &str) {
    out.assert_success(what);
    let s = &out.stdout;
    let show = || {
        format!(
            "{what}\n{out}\n--- hook log:\n{}",
            fs::read_to_string(&re.log).unwrap_or_default()
        )
    };
    assert_eq!(
        field(s, "world_size"),
        vec!["2"],
        "COMM_WORLD size: {}",
        show()
    );
    let v = s
        .lines()
        .find_map(|l| {
            l.split_once("mpi_version=MPICH Version:")
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    assert_eq!(
        v,
        re.env.host.version,
        "ranks must run the host MPICH: {}",
        show()
    );
    assert_ne!(v, CONTAINER_MPICH_VERSION);
    let bytes = field(s, "bytes");
    assert!(
        bytes.contains(&"8") && bytes.contains(&"1048576"),
        "both message sizes: {}",
        show()
    );
    let lat: f64 = field(s, "latency_us")
        .first()
        .and_then(|x| x.parse().ok())
        .unwrap_or(-1.0);
    let bw: f64 = field(s, "bandwidth_MBps")
        .first()
        .and_then(|x| x.parse().ok())
        .unwrap_or(-1.0);
    assert!(lat > 0.0 && bw > 0.0, "latency and bandwidth: {}", show());
    assert!(s.contains("pingpong: ok"), "clean MPI_Finalize: {}", show());
    let ids = re.hook_containers();
    // runc: container ids are hpc-rank's; podman: its own hashes.
    let runc = !what.contains("podman");
    assert!(
        ids.len() == 2 && (!runc || ids.iter().all(|i| i.starts_with("hpcrank-"))),
        "mpi-hook must have run for two hpc-rank containers, got {ids:?}: {}",
        show()
    );
    eprintln!("{what}: 8 B latency {lat} us, 1 MiB bandwidth {bw} MB/s, containers {ids:?}");
}

// ---------------------------------------------------------------------------
// Leftover checks
// ---------------------------------------------------------------------------

fn cmd_lines(prog: &str, args: &[&str]) -> Vec<String> {
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// runc containers that existed before the test (other users of this machine's runc).
fn runc_baseline() -> &'static std::sync::Mutex<BTreeSet<String>> {
    static B: std::sync::OnceLock<std::sync::Mutex<BTreeSet<String>>> = std::sync::OnceLock::new();
    B.get_or_init(Default::default)
}

/// Everything an hpc-rank container could leave: runc containers (ours, and podman's
/// runc state: any id not present before the test), podman containers, mounts of the
/// launcher's scratch or a rank overlay, cgroups, processes.
fn leftovers() -> Vec<String> {
    let mut v = Vec::new();
    let before = runc_baseline().lock().unwrap().clone();
    for id in cmd_lines("runc", &["list", "-q"]) {
        if id.starts_with("hpcrank-") || !before.contains(&id) {
            v.push(format!("runc container {id}"));
        }
    }
    for n in cmd_lines("podman", &["ps", "-a", "--format", "{{.Names}}"]) {
        if n.starts_with("hpcrank-") {
            v.push(format!("podman container {n}"));
        }
    }
    for m in mount_table() {
        if m.mount_point.starts_with("/run/hpc-rank") || m.mount_point.contains("hpcrank-") {
            v.push(format!("mount {}", m.mount_point));
        }
    }
    // Rank cgroups live under the launcher's own cgroup (hpc-rank/<id>), at any depth.
    fn rank_cgroups(dir: &std::path::Path, depth: usize, v: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if depth == 0 || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with("hpcrank-") {
                v.push(format!("cgroup {}", e.path().display()));
            }
            rank_cgroups(&e.path(), depth - 1, v);
        }
    }
    rank_cgroups(std::path::Path::new("/sys/fs/cgroup"), 12, &mut v);
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let p = e.path();
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            // Zombies hold no resources; whether they are reaped at once depends on
            // the host's init (re-parented after the launcher was killed).
            let stat = fs::read_to_string(p.join("stat")).unwrap_or_default();
            if stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'))
            {
                continue;
            }
            let comm = fs::read_to_string(p.join("comm")).unwrap_or_default();
            let cmdline = fs::read(p.join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let comm = comm.trim();
            if comm == "hpc-rank"
                || comm == "mpi-pingpong"
                || cmdline.contains("hpcrank-")
                || cmdline.contains(PINGPONG)
            {
                v.push(format!("process {pid} ({comm}): {cmdline}"));
            }
        }
    }
    v
}

fn assert_no_leftovers(context: &str) {
    let v = leftovers();
    assert!(
        v.is_empty(),
        "{context}: hpc-rank leftovers on the host:\n{}",
        v.join("\n")
    );
}

/// Leftovers must be gone within `within` (the runtime and Slurm tear down
/// asynchronously after the job's end was reported).
fn assert_no_leftovers_within(within: Duration, context: &str) {
    let end = Instant::now() + within;
    loop {
        let v = leftovers();
        if v.is_empty() {
            return;
        }
        if Instant::now() >= end {
            panic!(
                "{context}: hpc-rank leftovers on the host after {within:?}:\n{}",
                v.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// `srun -n 2 --mpi=pmi2 hpc-rank ROOTFS mpi-pingpong`: two containers, one world of
/// size 2 on the host's MPICH, 8 B and 1 MiB messages.
#[test]
fn srun_pmi2_two_ranks_in_containers_on_host_mpich() {
    let re = rank_env("ranks-srun");
    let conf = slurm_up(&re.launcher);
    let out = run_cmd(
        re.srun(&conf, "e2e-pingpong", &[], &["2000", "100"]),
        JOB_TIMEOUT,
    );
    assert_pingpong(&re, &out, "srun -n 2 --mpi=pmi2 hpc-rank (runc)");
    assert_no_leftovers_within(Duration::from_secs(10), "after a clean srun job");
}

/// The same with hydra (`mpiexec -n 2`, PMI_FD mode) and no Slurm.
#[test]
fn mpiexec_two_ranks_in_containers_on_host_mpich() {
    let re = rank_env("ranks-mpiexec");
    let out = run_cmd(re.mpiexec(&[], &["2000", "100"]), JOB_TIMEOUT);
    assert_pingpong(&re, &out, "mpiexec -n 2 hpc-rank (runc)");
    assert_no_leftovers_within(Duration::from_secs(10), "after a clean mpiexec job");
}

/// podman as the runtime (`--runtime podman`, rootfs through `--rootfs DIR:O`).
#[test]
fn srun_pmi2_two_ranks_with_podman() {
    let re = rank_env("ranks-podman");
    require_command("podman");
    let conf = slurm_up(&re.launcher);
    let mut c = re.srun(
        &conf,
        "e2e-podman",
        &["--runtime", "podman"],
        &["2000", "100"],
    );
    podman_env(&mut c);
    let out = run_cmd(c, JOB_TIMEOUT);
    assert_pingpong(&re, &out, "srun -n 2 --mpi=pmi2 hpc-rank --runtime podman");
    assert_no_leftovers_within(Duration::from_secs(20), "after a clean podman srun job");
}

/// MPI_Abort in rank 1 under srun: the job fails, nothing is left behind.
#[test]
fn srun_mpi_abort_leaves_nothing_behind() {
    let re = rank_env("ranks-abort");
    let conf = slurm_up(&re.launcher);
    let out = run_cmd(
        re.srun(
            &conf,
            "e2e-abort",
            &["--env", "PINGPONG_ABORT_RANK=1"],
            &["200", "10"],
        ),
        JOB_TIMEOUT,
    );
    assert!(
        !out.timed_out && !out.success(),
        "MPI_Abort must fail the job:\n{out}"
    );
    assert!(
        out.all_output().contains("calls MPI_Abort"),
        "rank 1 must have reached MPI_Abort:\n{out}"
    );
    assert_no_leftovers_within(Duration::from_secs(15), "after MPI_Abort under srun");
    drop(re.scratch);
}

/// MPI_Abort in rank 1 under mpiexec (hydra kills the other rank).
#[test]
fn mpiexec_mpi_abort_leaves_nothing_behind() {
    let re = rank_env("ranks-abort-hydra");
    let out = run_cmd(
        re.mpiexec(&["--env", "PINGPONG_ABORT_RANK=1"], &["200", "10"]),
        JOB_TIMEOUT,
    );
    assert!(
        !out.timed_out && !out.success(),
        "MPI_Abort must fail the job:\n{out}"
    );
    assert_no_leftovers_within(Duration::from_secs(15), "after MPI_Abort under mpiexec");
}

fn running_containers() -> usize {
    cmd_lines("runc", &["list", "-q"])
        .iter()
        .chain(cmd_lines("podman", &["ps", "--format", "{{.Names}}"]).iter())
        .filter(|i| i.starts_with("hpcrank-"))
        .count()
}

fn scancel_test(tag: &str, extra: &[&str], podman: bool) {
    let re = rank_env(tag);
    let conf = slurm_up(&re.launcher);
    let job = format!("e2e-{tag}");
    let mut args: Vec<&str> = vec!["--env", "PINGPONG_SLEEP=300"];
    args.extend_from_slice(extra);
    let mut c = re.srun(&conf, &job, &args, &["200", "10"]);
    if podman {
        podman_env(&mut c);
    }
    let mut srun = BackgroundSrun::spawn(c, re.scratch.path(), &re.log);
    // Wait until both ranks are in their containers and past the exchange.
    srun.wait_sleeping(2, running_containers);
    let ids: Vec<String> = Command::new("squeue")
        .env("SLURM_CONF", &conf)
        .args(["-h", "-n", &job, "-o", "%i"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        ids.len(),
        1,
        "squeue must show the job {job} once: {ids:?}\n{}",
        srun.show()
    );
    let st = Command::new("scancel")
        .env("SLURM_CONF", &conf)
        .arg(&ids[0])
        .status()
        .expect("run scancel");
    assert!(st.success(), "scancel {} failed", ids[0]);
    let took = srun.wait_end("scancel");
    assert_no_leftovers_within(
        Duration::from_secs(20),
        &format!("after scancel ({tag})\n{}", srun.show()),
    );
    eprintln!("scancel ({tag}): srun gone {took:?} after scancel, no leftovers");
}

/// scancel of a running srun job (ranks sleeping in their runc containers).
#[test]
fn scancel_runc_job_leaves_nothing_behind() {
    scancel_test("scancel-runc", &[], false);
}

/// scancel of a running srun job with podman ranks.
#[test]
fn scancel_podman_job_leaves_nothing_behind() {
    require_command("podman");
    scancel_test("scancel-podman", &["--runtime", "podman"], true);
}
