//! mpi-hook (also as the net hook, --net-only) and glibc-hook as the tests register them: OCI hook objects with their env and
//! activation annotations, podman hooks.d files, the timings parsed from hook logs, and the
//! prerequisites every hooked test checks first.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::binaries::{hook_bin, require_command};
use crate::mpi::{host_mpi, HostMpi};
use crate::net::{HostNet, NET_ANNOTATION};
use crate::rootfs::cached_rootfs;
use crate::scratch::{e2e_lock, E2eLock};

/// Annotation that enables mpi-hook.
pub const MPI_ANNOTATION: &str = "com.hooks.mpi.enabled";
/// Annotation that enables glibc-hook.
pub const GLIBC_ANNOTATION: &str = "com.hooks.glibc.enabled";

/// One hook registration: which binary and its environment.
#[derive(Clone, Debug)]
pub struct Hook {
    pub name: String,
    /// Arguments after argv[0] (the name).
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: u64,
    /// Annotation that activates it (hooks.d `when`).
    pub activation: &'static str,
}

impl Hook {
    /// `glibc-hook` with logging to `log` at `level`.
    pub fn glibc(log: &Path, level: &str) -> Hook {
        hook_bin("glibc-hook");
        Hook {
            name: "glibc-hook".into(),
            args: Vec::new(),
            env: base_hook_env(log, level),
            timeout: 60,
            activation: GLIBC_ANNOTATION,
        }
    }

    /// `mpi-hook` configured with the host MPICH, its dependencies and the host ldconfig.
    pub fn mpi(log: &Path, level: &str) -> Hook {
        Hook::mpi_with(log, level, &host_mpi())
    }

    /// `mpi-hook` configured with `host` (e.g. [`host_open_mpi`](crate::host_open_mpi)).
    pub fn mpi_with(log: &Path, level: &str, host: &HostMpi) -> Hook {
        hook_bin("mpi-hook");
        let mut env = base_hook_env(log, level);
        env.push(format!("MPI_LIBS={}", host.mpi_libs()));
        env.push(format!("MPI_DEPENDENCY_LIBS={}", host.dependency_libs()));
        env.push(format!(
            "LDCONFIG_PATH={}",
            require_command("ldconfig").display()
        ));
        Hook {
            name: "mpi-hook".into(),
            args: Vec::new(),
            env,
            timeout: 60,
            activation: MPI_ANNOTATION,
        }
    }

    /// `mpi-hook --net-only` (the hooks.d net file, annotation com.hooks.net.enabled)
    /// configured with the host network stack `net`.
    pub fn net(log: &Path, level: &str, net: &HostNet) -> Hook {
        hook_bin("mpi-hook");
        let mut env = base_hook_env(log, level);
        env.push(format!("NET_LIBS={}", net.net_libs()));
        env.push(format!("NET_DEPENDENCY_LIBS={}", net.dependency_libs()));
        env.push(format!("NET_DIRS={}", net.net_dirs()));
        Hook {
            name: "mpi-hook".into(),
            args: vec!["--net-only".into()],
            env,
            timeout: 60,
            activation: NET_ANNOTATION,
        }
    }

    /// Sets (replaces or adds) one `K=V` in the hook environment.
    pub fn with_env(mut self, key: &str, value: &str) -> Hook {
        let prefix = format!("{key}=");
        self.env.retain(|e| !e.starts_with(&prefix));
        self.env.push(format!("{key}={value}"));
        self
    }

    pub fn path(&self) -> PathBuf {
        hook_bin(&self.name)
    }

    /// OCI runtime-spec hook object.
    pub fn oci_json(&self) -> Value {
        json!({
            "path": self.path(),
            "args": std::iter::once(&self.name).chain(&self.args).collect::<Vec<_>>(),
            "env": self.env,
            "timeout": self.timeout,
        })
    }

    /// Annotation that activates this hook.
    pub fn annotation(&self) -> &'static str {
        self.activation
    }
}

fn base_hook_env(log: &Path, level: &str) -> Vec<String> {
    vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        format!("HPC_HOOKS_LOG_LEVEL={level}"),
        format!("HPC_HOOKS_LOG_FILE={}", log.display()),
    ]
}

/// Escapes a literal for a Go RE2 regex.
pub fn regex_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// Writes podman hooks.d files (`NN-<name>.json`, in the given order) into `dir`: explicit
/// stage, explicit env, anchored annotation regexes.
pub fn write_hooks_d(dir: &Path, stage: &str, hooks: &[&Hook]) {
    fs::create_dir_all(dir).expect("mkdir hooks.d");
    for (i, h) in hooks.iter().enumerate() {
        let key = format!("^{}$", regex_escape(h.annotation()));
        let doc = json!({
            "version": "1.0.0",
            "hook": h.oci_json(),
            "when": { "annotations": { key: "^true$" } },
            "stages": [stage],
        });
        let name = if h.activation == NET_ANNOTATION {
            "net"
        } else {
            &h.name
        };
        let file = dir.join(format!("{:02}-{name}.json", (i + 1) * 5));
        fs::write(&file, serde_json::to_string_pretty(&doc).unwrap())
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }
}

/// Parses `hook=<name> ... elapsed_us=<N>` lines of a hook log.
pub fn hook_timings(log: &str) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for line in log.lines() {
        let mut name = None;
        let mut us = None;
        for tok in line.split(|c: char| c.is_whitespace() || c == ',' || c == '}' || c == '{') {
            let tok = tok.trim_matches('"');
            if let Some(n) = tok.strip_prefix("hook=") {
                name = Some(n.trim_matches('"').to_string());
            } else if let Some(n) = tok.strip_prefix("elapsed_us=") {
                us = n.trim_matches('"').parse::<u64>().ok();
            }
        }
        if let (Some(n), Some(u)) = (name, us) {
            v.push((n, u));
        }
    }
    v
}

/// Common prerequisites of tests that run the hooks: lock, hook binaries, rootfs.
pub struct HookedEnv {
    pub _lock: E2eLock,
    pub rootfs: PathBuf,
    pub host: HostMpi,
}

/// Takes the e2e lock and checks every prerequisite of a hooked test (runc, hook
/// binaries, host MPICH, rootfs), failing loudly when one is missing.
pub fn hooked_env() -> HookedEnv {
    let lock = e2e_lock();
    require_command("runc");
    hook_bin("mpi-hook");
    hook_bin("glibc-hook");
    let host = host_mpi();
    let rootfs = cached_rootfs();
    HookedEnv {
        _lock: lock,
        rootfs,
        host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hook_timings() {
        let log = "2024 INFO mpi_hook: done hook=mpi-hook elapsed_us=1234\n\
                   {\"hook\":\"x\"}\n\
                   INFO done hook=\"glibc-hook\" elapsed_us=77 injected=3\n";
        assert_eq!(
            hook_timings(log),
            vec![
                ("mpi-hook".to_string(), 1234),
                ("glibc-hook".to_string(), 77)
            ]
        );
    }

    #[test]
    fn escapes_regex() {
        assert_eq!(
            regex_escape("com.hooks.mpi.enabled"),
            "com\\.hooks\\.mpi\\.enabled"
        );
    }
}
