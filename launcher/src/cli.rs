//! Command line of `hpc-rank` (clap derive), with the `--bind` value type. The help text
//! is also the source of the man page and the shell completions (`xtask docs`).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Container runtime used for the rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// runc as a direct child (the rank stays in the step's process tree).
    Runc,
    /// podman run (conmon leaves the process tree: use the epilog, see README).
    Podman,
}

/// Start one MPI rank in a container with the hpc-hooks (host MPI, host glibc) enabled.
///
/// The rank gets the process-management environment (PMI_*, PMIX_*, SLURM_*, MPIR_*,
/// HYDRA_*, MPI and fabric tuning variables), the PMI socket (`PMI_FD`, moved to fd 3),
/// the host's /dev/shm, network, IPC and PID namespaces, and an /etc/hosts that resolves
/// the node name. The container is removed when the rank exits, is signalled (SIGTERM,
/// SIGINT, ... are forwarded) or the step is cancelled.
///
/// Typical use: `srun -n 64 --mpi=pmi2 hpc-rank /path/to/rootfs /app/bin/solver ARGS` or
/// `mpiexec -n 4 hpc-rank /path/to/rootfs /app/bin/solver ARGS`; the ranks form one
/// MPI_COMM_WORLD on the host MPI. The container is annotated com.hooks.mpi.enabled=true,
/// com.hooks.glibc.enabled=true and com.hooks.net.enabled=true (unless --no-mpi,
/// --no-glibc or --no-net), so the mpi-hook and glibc-hook registered in the hooks.d
/// directories run for it, and the host's network stack (libfabric, UCX, fabric devices)
/// comes with it. As a Slurm Epilog,
/// `hpc-rank --cleanup-job $SLURM_JOB_ID` removes whatever a cancelled job left behind.
#[derive(Parser, Debug)]
#[command(version, name = "hpc-rank")]
#[command(after_long_help = "\
Environment:
  HPC_RANK_PODMAN_GLOBAL_OPTS
      Extra podman global options, whitespace-separated (e.g. --runtime runc); real root only.
  HPC_RANK_PODMAN_RUN_OPTS
      Extra podman run options, whitespace-separated; real root only.

Privileges:
  hpc-rank refuses to run with privileges another user handed it (setuid, setgid, file
  capabilities, sudo: SUDO_UID/SUDO_USER set) unless /etc/hpc-hooks/hpc-rank.conf
  (root-owned, not group/world-writable) names its parent process in allow_wrapper=PATH;
  through such a wrapper --bind, --annotation, --cleanup-* and --env HPC_HOOKS_*,
  NVIDIA_*, CUDA_*, LD_* are refused. --runc, --podman, --hooks-dir, --scratch,
  --cdi-spec-dir and the HPC_RANK_PODMAN_*_OPTS variables are for the real root only;
  --device chooses among the devices of the admin's CDI specs. runc and podman are never
  looked up in PATH. Ranks' cgroups are created under hpc-rank's own cgroup (the job
  step's), in hpc-rank/<container id>.

Exit status:
  0 for --help and --version; 125 when hpc-rank itself fails (usage errors included),
  with one `hpc-rank: error: ...` line; otherwise the rank's exit status (128+N when it
  was killed by signal N).")]
pub struct Cli {
    /// Container runtime.
    #[arg(long, env = "HPC_RANK_RUNTIME", value_enum, default_value = "runc")]
    pub runtime: RuntimeKind,
    /// hooks.d directories read for the hooks (runc: copied into config.json; podman:
    /// passed as --hooks-dir). Later directories override files of the same name.
    /// Only the real root may change it (the hooks run as root).
    #[arg(
        long = "hooks-dir",
        env = "HPC_RANK_HOOKS_DIR",
        value_delimiter = ':',
        default_value = "/usr/share/containers/oci/hooks.d:/etc/containers/oci/hooks.d"
    )]
    pub hooks_dirs: Vec<PathBuf>,
    /// Do not enable mpi-hook (annotation com.hooks.mpi.enabled).
    #[arg(long)]
    pub no_mpi: bool,
    /// Do not enable glibc-hook (annotation com.hooks.glibc.enabled).
    #[arg(long)]
    pub no_glibc: bool,
    /// Do not ask for the host's network stack (annotation com.hooks.net.enabled; an MPI
    /// that mpi-hook injects still brings the network libraries it needs).
    #[arg(long)]
    pub no_net: bool,
    /// Extra annotation KEY=VALUE (repeatable), e.g. com.hooks.logging.level=debug.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Extra environment variable for the rank (repeatable): KEY=VALUE, or KEY alone for
    /// the value KEY has in hpc-rank's environment (an error when KEY is not set there).
    #[arg(long = "env", short = 'e', value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// CDI device for the rank, VENDOR/CLASS=NAME (repeatable), e.g. nvidia.com/gpu=0 or
    /// nvidia.com/gpu=all. runc: the device's container edits from the CDI specs (device
    /// nodes with their cgroup rules, mounts, env, hooks) are added to config.json; podman:
    /// passed as --device, podman resolves it from its own CDI spec directories.
    #[arg(
        long = "device",
        value_name = "VENDOR/CLASS=NAME",
        value_parser = crate::devices::parse_device
    )]
    pub devices: Vec<String>,
    /// CDI spec directory read for --device in runc mode (repeatable, lowest priority
    /// first; default: /etc/cdi then /var/run/cdi). Real root only. As root, each spec
    /// directory, every directory above it and the specs used must be owned by root and
    /// not group- or world-writable.
    #[arg(long = "cdi-spec-dir", value_name = "DIR")]
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// Bind mount SRC[:DST[:ro|rw]] (repeatable; nosuid, nodev).
    #[arg(long = "bind", short = 'b', value_name = "SRC[:DST[:ro|rw]]")]
    pub binds: Vec<UserBind>,
    /// Working directory inside the container.
    #[arg(long, default_value = "/")]
    pub workdir: String,
    /// Seconds between a forwarded SIGTERM/SIGINT/SIGHUP and SIGKILL of the container.
    #[arg(long, env = "HPC_RANK_KILL_GRACE", default_value_t = 5)]
    pub kill_grace: u64,
    /// Directory over which each rank mounts its private tmpfs (bundle, overlay upper
    /// dir); the mount lives in the rank's own mount namespace only. Real root only.
    #[arg(long, env = "HPC_RANK_SCRATCH", default_value = "/run/hpc-rank")]
    pub scratch: PathBuf,
    /// runc binary, an absolute path; real root only. Default: `runc=` in
    /// /etc/hpc-hooks/hpc-rank.conf, else /usr/sbin/runc or /usr/bin/runc (never PATH).
    #[arg(long, env = "HPC_RANK_RUNC", value_name = "PATH")]
    pub runc: Option<PathBuf>,
    /// podman binary, an absolute path; real root only. Default: `podman=` in
    /// /etc/hpc-hooks/hpc-rank.conf, else /usr/bin/podman (never PATH).
    #[arg(long, env = "HPC_RANK_PODMAN", value_name = "PATH")]
    pub podman: Option<PathBuf>,
    /// Epilog mode: remove every container of job JOBID (runc and podman), and every
    /// stale hpc-rank container whose launcher is gone; then exit.
    #[arg(long, value_name = "JOBID", conflicts_with = "target")]
    pub cleanup_job: Option<String>,
    /// Like --cleanup-job, for containers whose launcher process is gone (any job).
    #[arg(long, conflicts_with = "target")]
    pub cleanup_stale: bool,
    /// hpc-rank's own log on stderr: off, error, warn (default), info, debug (adds the
    /// runtime command line it runs), trace, or Sarus's 0 (debug) .. 4 (off). An unknown
    /// level is warned about and warn is used.
    #[arg(long, env = "HPC_RANK_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Directory rootfs (runc; podman uses it through an overlay) or image (podman). For
    /// podman, an argument starting with /, ./ or ../ is always a rootfs directory.
    #[arg(required_unless_present_any = ["cleanup_job", "cleanup_stale"])]
    pub target: Option<String>,
    /// Command and arguments run in the container.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// A user bind mount `SRC[:DST[:ro|rw]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserBind {
    pub src: PathBuf,
    pub dst: String,
    pub readonly: bool,
}

impl std::str::FromStr for UserBind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [a] => (*a, *a, "rw"),
            [a, b] => (*a, *b, "rw"),
            [a, b, m] => (*a, *b, *m),
            _ => return Err(format!("--bind {s}: expected SRC[:DST[:ro|rw]]")),
        };
        if !src.starts_with('/') || !dst.starts_with('/') {
            return Err(format!("--bind {s}: SRC and DST must be absolute paths"));
        }
        let readonly = match mode {
            "ro" => true,
            "rw" => false,
            m => return Err(format!("--bind {s}: mode {m:?} is neither ro nor rw")),
        };
        Ok(UserBind {
            src: src.into(),
            dst: dst.into(),
            readonly,
        })
    }
}
