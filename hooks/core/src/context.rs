//! The start of every hook: state from stdin, config.json, logging, activation, entering
//! the container's mount namespace, and the rootfs handle.

use std::time::Instant;

use crate::config::BundleConfig;
use crate::logging;
use crate::ns::{self, NsEntry};
use crate::rootfs::Rootfs;
use crate::state::HookState;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Ns(#[from] crate::ns::NsError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error("standard input is a terminal: {hook} expects the OCI container state JSON on stdin, as a runtime (runc, crun, podman) gives it; it is not run by hand (see docs/troubleshooting.md, \"Running a hook by hand\")")]
    Terminal { hook: String },
    #[error("refusing to run: its environment sets {} to the same value as the container's process.env, so it is probably the container's environment (runc gives a hook entry without \"env\" the container's); give the hook an explicit \"env\" in its hooks.d entry or config.json", .keys.join(", "))]
    ContainerEnv { hook: String, keys: Vec<String> },
}

/// Configuration variables the hooks read from their environment (clap `env`), besides
/// every `GPU_HOOK_*` variable.
pub const CONFIG_ENV_KEYS: &[&str] = &[
    "MPI_LIBS",
    "MPI_DEPENDENCY_LIBS",
    "BIND_MOUNTS",
    "MPI_COMPATIBILITY_TYPE",
    "GLIBC_LIBS",
    "LDCONFIG_PATH",
];

/// The hook configuration variables whose value in `hook_env` equals the container's
/// `process.env` entry: settings the container chose, when the runtime handed the hook
/// the container's environment (a hook entry without `env`).
pub fn config_from_container(
    hook_env: &[(String, String)],
    container_env: &[String],
) -> Vec<String> {
    let mut keys: Vec<String> = hook_env
        .iter()
        .filter(|(k, _)| CONFIG_ENV_KEYS.contains(&k.as_str()) || k.starts_with("GPU_HOOK_"))
        .filter(|(k, v)| container_env.iter().any(|e| *e == format!("{k}={v}")))
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Fails when a hook configuration variable of this process's environment equals the
/// container's (see [`config_from_container`]).
pub fn refuse_container_config(hook: &str, config: &BundleConfig) -> Result<(), ContextError> {
    let container_env = config
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    let hook_env: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let keys = config_from_container(&hook_env, &container_env);
    if keys.is_empty() {
        Ok(())
    } else {
        Err(ContextError::ContainerEnv {
            hook: hook.to_string(),
            keys,
        })
    }
}

/// Everything a hook knows about the container it runs for.
#[derive(Debug)]
pub struct HookCtx {
    pub hook: &'static str,
    pub state: HookState,
    pub config: BundleConfig,
    pub ns: NsEntry,
    pub rootfs: Rootfs,
    pub started: Instant,
}

/// True when the annotation `key` is `true` (Sarus semantics).
pub fn enabled(config: &BundleConfig, key: &str) -> bool {
    config
        .annotations
        .get(key)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Reads the container state from stdin; a terminal on stdin (a hook run by hand) is
/// refused at once instead of waiting for input.
pub fn read_state(hook: &str) -> Result<HookState, ContextError> {
    // SAFETY: isatty only inspects descriptor 0.
    if unsafe { libc::isatty(0) } == 1 {
        return Err(ContextError::Terminal {
            hook: hook.to_string(),
        });
    }
    Ok(HookState::read_from(std::io::stdin().lock())?)
}

impl HookCtx {
    /// Reads the state from stdin and sets everything up. `Ok(None)` when the hook is not
    /// enabled for this container (`activation` annotation not `true`). `activation`
    /// `None`: always enabled (a CDI device's hook, in the config only when requested).
    pub fn from_stdin(
        hook: &'static str,
        activation: Option<&str>,
    ) -> Result<Option<HookCtx>, ContextError> {
        let started = Instant::now();
        // Never depend on the cwd a runtime gives us (runc: the container rootfs).
        let _ = std::env::set_current_dir("/");
        let state = read_state(hook)?;
        Self::from_state(hook, activation, state, started)
    }

    pub fn from_state(
        hook: &'static str,
        activation: Option<&str>,
        state: HookState,
        started: Instant,
    ) -> Result<Option<HookCtx>, ContextError> {
        let config = match BundleConfig::load(&state) {
            Ok(c) => c,
            Err(e) => {
                // Log to the admin's file (from the args) even when config.json is bad.
                logging::init_for_container(hook, &state.id, None);
                return Err(e.into());
            }
        };
        logging::init_for_container(hook, &state.id, Some(&config));
        if let Some(activation) = activation.filter(|a| !enabled(&config, a)) {
            tracing::info!(
                "not enabled for this container (annotation {activation}=true absent); nothing to do"
            );
            return Ok(None);
        }
        refuse_container_config(hook, &config)?;
        let ns = ns::enter_container_mount_ns(state.pid)?;
        tracing::debug!(container = %state.id, status = %state.status, ?ns, rootfs = %config.rootfs.display(), "{hook}: starting");
        let rootfs = Rootfs::open(&config.rootfs)?;
        Ok(Some(HookCtx {
            hook,
            state,
            config,
            ns,
            rootfs,
            started,
        }))
    }

    /// Logs the final line the benchmark reads.
    pub fn finish(&self) {
        self.finish_with("done");
    }

    /// Logs the run's one info line: what was done (`summary`), then the `hook=`,
    /// `container=` and `elapsed_us=` fields the benchmark reads.
    pub fn finish_with(&self, summary: &str) {
        tracing::info!(
            "{summary}; hook={} container={} elapsed_us={}",
            self.hook,
            self.state.id,
            self.started.elapsed().as_micros()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn settings_equal_to_the_containers_are_found() {
        let hook = vec![
            kv("PATH", "/bin"),
            kv("BIND_MOUNTS", "/dev/sda"),
            kv("MPI_LIBS", "/opt/mpi/libmpi.so.12"),
            kv("GPU_HOOK_DRIVER_ROOT", "/evil"),
        ];
        let container = vec![
            "PATH=/bin".to_string(),
            "BIND_MOUNTS=/dev/sda".to_string(),
            "MPI_LIBS=/other".to_string(),
            "GPU_HOOK_DRIVER_ROOT=/evil".to_string(),
        ];
        // PATH is not a setting; MPI_LIBS differs (the hooks.d env, not the container's).
        assert_eq!(
            config_from_container(&hook, &container),
            vec!["BIND_MOUNTS", "GPU_HOOK_DRIVER_ROOT"]
        );
        assert!(config_from_container(&hook, &[]).is_empty());
        let e = ContextError::ContainerEnv {
            hook: "mpi-hook".into(),
            keys: vec!["BIND_MOUNTS".into()],
        };
        assert_eq!(
            e.to_string(),
            "refusing to run: its environment sets BIND_MOUNTS to the same value as the container's process.env, so it is probably the container's environment (runc gives a hook entry without \"env\" the container's); give the hook an explicit \"env\" in its hooks.d entry or config.json"
        );
    }
}
