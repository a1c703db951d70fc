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

impl HookCtx {
    /// Reads the state from stdin and sets everything up. `Ok(None)` when the hook is not
    /// enabled for this container (`activation` annotation not `true`).
    pub fn from_stdin(
        hook: &'static str,
        activation: &str,
    ) -> Result<Option<HookCtx>, ContextError> {
        let started = Instant::now();
        // Never depend on the cwd a runtime gives us (runc: the container rootfs).
        let _ = std::env::set_current_dir("/");
        let state = HookState::read_from(std::io::stdin().lock())?;
        Self::from_state(hook, activation, state, started)
    }

    pub fn from_state(
        hook: &'static str,
        activation: &str,
        state: HookState,
        started: Instant,
    ) -> Result<Option<HookCtx>, ContextError> {
        let config = BundleConfig::load(&state)?;
        logging::init_from_env(hook, &config.annotations);
        if !enabled(&config, activation) {
            tracing::debug!(
                container = %state.id,
                "{hook}: not enabled for this container (annotation {activation}=true absent); nothing to do"
            );
            return Ok(None);
        }
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

    /// Applies `plan` to the container, logging each action at info.
    pub fn apply(&self, plan: &crate::inject::Plan) -> Result<(), crate::inject::InjectError> {
        for line in crate::inject::apply(self, plan)? {
            tracing::info!("{line}");
        }
        Ok(())
    }

    /// Logs the final line the benchmark reads.
    pub fn finish(&self) {
        tracing::info!(
            "hook={} container={} elapsed_us={}",
            self.hook,
            self.state.id,
            self.started.elapsed().as_micros()
        );
    }
}
