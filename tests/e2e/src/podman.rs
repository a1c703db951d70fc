//! `podman run --rm` of a directory rootfs with runc and cgroupfs, with a hooks dir (or
//! podman's default ones) and annotations; also the bare command line for the benchmark.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::binaries::require_command;
use crate::hooks::{GLIBC_ANNOTATION, MPI_ANNOTATION};
use crate::process::{run_cmd, RunOutput, RUN_TIMEOUT};
use crate::scratch::unique_id;

/// One `podman run --rm` of a directory rootfs with runc and cgroupfs (see
/// shared/reference/oci-hooks.md for why each flag is there).
pub struct PodmanRun<'a> {
    /// `--hooks-dir`; `None`: podman's default directories (what a package installs into).
    pub hooks_dir: Option<&'a Path>,
    pub rootfs: &'a Path,
    pub annotations: Vec<(String, String)>,
    pub env: Vec<String>,
    pub args: Vec<String>,
    pub log: Option<PathBuf>,
    /// `--device` arguments (CDI devices: `vendor/class=name`).
    pub devices: Vec<String>,
    /// `--network` (default `none`).
    pub network: String,
}

impl<'a> PodmanRun<'a> {
    pub fn new(hooks_dir: &'a Path, rootfs: &'a Path, args: &[&str]) -> PodmanRun<'a> {
        PodmanRun {
            hooks_dir: Some(hooks_dir),
            rootfs,
            annotations: Vec::new(),
            env: Vec::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log: None,
            devices: Vec::new(),
            network: "none".into(),
        }
    }

    /// No `--hooks-dir`: podman reads its default hooks.d directories.
    pub fn default_hooks_dirs(mut self) -> Self {
        self.hooks_dir = None;
        self
    }

    pub fn annotate(mut self, k: &str, v: &str) -> Self {
        self.annotations.push((k.into(), v.into()));
        self
    }

    pub fn enable_hooks(self, mpi: bool, glibc: bool) -> Self {
        let s = if mpi {
            self.annotate(MPI_ANNOTATION, "true")
        } else {
            self
        };
        if glibc {
            s.annotate(GLIBC_ANNOTATION, "true")
        } else {
            s
        }
    }

    /// Adds `--device NAME` (a CDI device, resolved by podman from /etc/cdi, /var/run/cdi).
    pub fn device(mut self, name: &str) -> Self {
        self.devices.push(name.into());
        self
    }

    /// `--network MODE` instead of `none` (e.g. `host`).
    pub fn network(mut self, mode: &str) -> Self {
        self.network = mode.into();
        self
    }

    pub fn hook_log(mut self, log: &Path) -> Self {
        self.log = Some(log.to_path_buf());
        self
    }

    /// The podman command line (no timeout wrapper), for the benchmark.
    pub fn command(&self, name: &str) -> Command {
        let mut c = Command::new(require_command("podman"));
        c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
        if let Some(d) = self.hooks_dir {
            c.arg("--hooks-dir").arg(d);
        }
        c.args(["run", "--rm", "--name", name, "--network", &self.network])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ]);
        for (k, v) in &self.annotations {
            c.arg("--annotation").arg(format!("{k}={v}"));
        }
        for d in &self.devices {
            c.arg("--device").arg(d);
        }
        for e in &self.env {
            c.arg("--env").arg(e);
        }
        c.arg("--rootfs").arg(self.rootfs).args(&self.args);
        c
    }

    pub fn run(&self) -> RunOutput {
        let name = unique_id("podman");
        let mut out = run_cmd(self.command(&name), RUN_TIMEOUT);
        let _ = Command::new("podman")
            .args(["rm", "-f", "--ignore", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(l) = &self.log {
            out.attach_file("hook log", l);
        }
        out
    }
}
