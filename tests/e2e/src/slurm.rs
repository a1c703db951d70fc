//! The one-node Slurm of `tests/slurm/slurm-up.sh` for tests that run ranks under
//! `srun --mpi=pmi2` (started if needed, with hpc-rank's Epilog), and a clean `srun`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::binaries::{require_command, workspace_root};
use crate::process::{run_cmd, RunOutput};

/// Starts (or reuses) the one-node Slurm and returns its SLURM_CONF.
pub fn slurm_up(launcher: &Path) -> String {
    for c in ["srun", "scancel", "squeue", "slurmctld", "slurmd"] {
        require_command(c);
    }
    let script = workspace_root().join("tests/slurm/slurm-up.sh");
    let mut c = Command::new("bash");
    c.arg(&script).env("HPC_RANK_BIN", launcher);
    let out = run_cmd(c, Duration::from_secs(60));
    out.assert_success("PREREQUISITE MISSING: tests/slurm/slurm-up.sh could not start Slurm");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("export SLURM_CONF="))
        .unwrap_or_else(|| panic!("slurm-up.sh printed no SLURM_CONF:\n{out}"))
        .trim()
        .to_string()
}

/// `srun -n N --mpi=pmi2 -J JOB --kill-on-bad-exit=1` with `SLURM_CONF`, and no Slurm/PMI
/// variables of an enclosing job.
pub fn srun_pmi2(conf: &str, ranks: u32, job: &str) -> Command {
    let mut c = Command::new(require_command("srun"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SLURM_") || k.starts_with("PMI_") || k.starts_with("HYDRA_") {
            c.env_remove(k);
        }
    }
    c.env("SLURM_CONF", conf)
        .arg("-n")
        .arg(ranks.to_string())
        .args(["--mpi=pmi2", "-J", job, "--kill-on-bad-exit=1"]);
    c
}

/// `mpi-pingpong` ran as one world of `size` ranks on MPICH `version` and finished
/// cleanly; the failure message shows the job's output and the hook log.
pub fn assert_pingpong_world(out: &RunOutput, size: usize, version: &str, log: &Path, what: &str) {
    let show = || {
        format!(
            "{what}\n{out}\n--- hook log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    };
    assert!(out.success(), "{}", show());
    let sizes: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("pingpong: "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|t| t.strip_prefix("world_size="))
        .collect();
    assert_eq!(sizes, [size.to_string()], "one world: {}", show());
    let got = out
        .stdout
        .lines()
        .find_map(|l| {
            l.split_once("mpi_version=MPICH Version:")
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    assert_eq!(got, version, "MPICH version: {}", show());
    assert!(
        out.stdout.contains("pingpong: ok"),
        "clean finish: {}",
        show()
    );
}

/// An `srun` started in the background with its output in files, for the tests that
/// cancel a running job: waits for the ranks to reach their sleep, then for srun to end.
pub struct BackgroundSrun {
    child: std::process::Child,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl BackgroundSrun {
    /// Starts `cmd` (an srun) with stdout and stderr in `dir/srun.{out,err}`; `log` is the
    /// hook log shown with them when something fails.
    pub fn spawn(mut cmd: Command, dir: &Path, log: &Path) -> BackgroundSrun {
        let out = dir.join("srun.out");
        let err = dir.join("srun.err");
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).expect("srun.out"))
            .stderr(std::fs::File::create(&err).expect("srun.err"))
            .spawn()
            .expect("start srun");
        BackgroundSrun {
            child,
            out,
            err,
            log: log.to_path_buf(),
        }
    }

    /// srun's output so far and the hook log.
    pub fn show(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- srun stdout:\n{}\n--- srun stderr:\n{}\n--- hook log:\n{}",
            read(&self.out),
            read(&self.err),
            read(&self.log)
        )
    }

    /// Waits (90 s at most) until the ranks print `pingpong: sleeping` and `containers()`
    /// counts `want` rank containers; fails if srun ends first.
    pub fn wait_sleeping(&mut self, want: usize, containers: impl Fn() -> usize) {
        let start = std::time::Instant::now();
        loop {
            let o = std::fs::read_to_string(&self.out).unwrap_or_default();
            if o.contains("pingpong: sleeping") && containers() == want {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "srun ended ({st}) before it could be cancelled\n{}",
                    self.show()
                );
            }
            if start.elapsed() > Duration::from_secs(90) {
                let _ = self.child.kill();
                panic!(
                    "the job did not reach its sleep with {want} containers running\n{}",
                    self.show()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (60 s at most) for srun to end after a cancel; returns how long it took.
    pub fn wait_end(&mut self, what: &str) -> Duration {
        let t0 = std::time::Instant::now();
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("srun still running 60 s after {what}\n{}", self.show());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        t0.elapsed()
    }
}
