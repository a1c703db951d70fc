//! Logging for the hooks: tracing to stderr (runc shows it when a hook fails) and,
//! optionally, appended to a log file (crun and podman discard hook output).
//!
//! The level comes from `HPC_HOOKS_LOG_LEVEL` (the hooks.d env) and may be overridden
//! per container by the `com.hooks.logging.level` annotation (Sarus numbers 0-4 or names).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::prelude::*;

static INITIALIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether [`init`] ran (before it, errors can only go to plain stderr).
pub fn initialized() -> bool {
    INITIALIZED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Reports a hook's final error once: through tracing (stderr and the log file) when
/// logging is set up, else as a plain line on stderr.
pub fn report_error(hook: &str, err: &dyn std::fmt::Display) {
    if initialized() {
        tracing::error!("{hook}: {err}");
    } else {
        eprintln!("{hook}: error: {err}");
    }
}

pub const LEVEL_ENV: &str = "HPC_HOOKS_LOG_LEVEL";
pub const FILE_ENV: &str = "HPC_HOOKS_LOG_FILE";
pub const LEVEL_ANNOTATION: &str = "com.hooks.logging.level";
/// The logging part of every hook's `--help` and man page.
pub const ENV_HELP: &str = "\
Environment:
  HPC_HOOKS_LOG_LEVEL
      Log level: error, warn (default), info, debug or trace. The container annotation
      com.hooks.logging.level (Sarus numbers 0 debug .. 4 off, or names) overrides it.
  HPC_HOOKS_LOG_FILE
      File the log is appended to (crun and podman discard hook output; runc shows it
      only when the hook fails).";

/// Parses `error|warn|info|debug|trace` or Sarus's numbers (0 debug, 1 info, 2 warn, 3 error, 4 off).
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "0" | "debug" => LevelFilter::DEBUG,
        "1" | "info" => LevelFilter::INFO,
        "2" | "warn" | "warning" => LevelFilter::WARN,
        "3" | "error" => LevelFilter::ERROR,
        "4" | "off" => LevelFilter::OFF,
        "trace" => LevelFilter::TRACE,
        _ => return None,
    })
}

/// Effective level: annotation, else env, else `warn`.
pub fn effective_level(env: Option<&str>, annotations: &HashMap<String, String>) -> LevelFilter {
    annotations
        .get(LEVEL_ANNOTATION)
        .and_then(|v| parse_level(v))
        .or_else(|| env.and_then(parse_level))
        .unwrap_or(LevelFilter::WARN)
}

/// Sets up logging for a hook from its environment (`HPC_HOOKS_LOG_LEVEL`,
/// `HPC_HOOKS_LOG_FILE`) and the container's annotations.
pub fn init_from_env(hook: &'static str, annotations: &HashMap<String, String>) {
    let level = effective_level(std::env::var(LEVEL_ENV).ok().as_deref(), annotations);
    let file = std::env::var_os(FILE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    init(hook, level, file);
}

/// Installs the global subscriber: stderr always, the file from `HPC_HOOKS_LOG_FILE` when set.
/// A log file that cannot be opened is reported on stderr and otherwise ignored.
pub fn init(hook: &'static str, level: LevelFilter, file: Option<PathBuf>) {
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_filter(level);
    let mut file_error = None;
    let file_layer = file.and_then(|path| {
        match OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)
        {
            Ok(f) => Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(Mutex::new(f))
                    .with_ansi(false)
                    .with_target(false)
                    .with_filter(level),
            ),
            Err(e) => {
                file_error = Some(format!(
                    "{hook}: cannot open log file {}: {e}",
                    path.display()
                ));
                None
            }
        }
    });
    if tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init()
        .is_ok()
    {
        INITIALIZED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(msg) = file_error {
        tracing::warn!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level("0"), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level("WARN"), Some(LevelFilter::WARN));
        assert_eq!(parse_level("x"), None);
        let ann = HashMap::from([(LEVEL_ANNOTATION.to_string(), "debug".to_string())]);
        assert_eq!(effective_level(Some("error"), &ann), LevelFilter::DEBUG);
        assert_eq!(
            effective_level(Some("error"), &HashMap::new()),
            LevelFilter::ERROR
        );
        assert_eq!(effective_level(None, &HashMap::new()), LevelFilter::WARN);
    }
}
