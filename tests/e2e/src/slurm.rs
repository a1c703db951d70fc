//! The one-node Slurm of `tests/slurm/slurm-up.sh` for tests that run ranks under
//! `srun --mpi=pmi2` (started if needed, with hpc-rank's Epilog), and a clean `srun`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::binaries::{require_command, workspace_root};
use crate::process::{run_cmd, RunOutput};

/// Starts (or reuses) the one-node Slurm and returns its SLURM_CONF.
pub fn slurm_up(launcher: &Path) -> String {
    for c in ["srun", "slurmctld", "slurmd"] {
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
