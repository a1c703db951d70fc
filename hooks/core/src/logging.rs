//! Logging for the hooks: tracing to stderr (runc shows it when a hook fails) and,
//! optionally, appended to an admin log file (crun and podman discard hook output).
//!
//! The hooks run as root with an environment that may be the container's, so the log
//! settings come from the hook's arguments (`--log-file`, `--log-level`), and from
//! `HPC_HOOKS_LOG_*` only when the container's `process.env` does not hold that variable.
//! The file is opened without following symlinks, in a root-owned directory that nobody
//! else may write; every event is one line (control characters escaped). The admin's
//! level is a floor: the `com.hooks.logging.level` annotation can only raise verbosity.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::config::BundleConfig;

static INITIALIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static ARGS: OnceLock<LogArgs> = OnceLock::new();
static CONTAINER: OnceLock<String> = OnceLock::new();
/// The run's span (hook name, pid, container once known), entered by [`start`].
static SPAN: OnceLock<tracing::Span> = OnceLock::new();
/// The effective level (see [`level_code`]); errors pass whatever it is.
static LEVEL: AtomicU8 = AtomicU8::new(2);
/// The admin's log file, once opened.
static FILE: Mutex<Option<File>> = Mutex::new(None);

/// Whether [`init`] ran (before it, errors can only go to plain stderr).
pub fn initialized() -> bool {
    INITIALIZED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Reports a hook's final error once: through tracing (stderr and the log file, whatever
/// the level: errors always pass) when logging is set up, else as a plain (escaped)
/// `HOOK: error: MESSAGE` line on stderr.
pub fn report_error(hook: &str, err: &dyn std::fmt::Display) {
    if initialized() {
        tracing::error!("{err}");
    } else {
        eprint!(
            "{}",
            escape_event(format!("{hook}: error: {err}\n").as_bytes())
        );
    }
}

pub const LEVEL_ENV: &str = "HPC_HOOKS_LOG_LEVEL";
pub const FILE_ENV: &str = "HPC_HOOKS_LOG_FILE";
pub const LEVEL_ANNOTATION: &str = "com.hooks.logging.level";
/// Level when the admin sets none.
pub const DEFAULT_LEVEL: LevelFilter = LevelFilter::WARN;
/// The accepted levels, as every message and tool names them.
pub const LEVELS: &str = "off, error, warn, info, debug, trace, or Sarus's 0 debug .. 4 off";
/// Where the hooks' configuration lives (every hook's help and man page says so).
pub const CONFIGURED_BY: &str = "Configured by /etc/hpc-hooks/hpc-hooks.conf, see hpc-hooks-configure(8): the package writes the hooks.d files from it, so edit the conf file, not the hooks.d files.";
/// The logging part of every hook's `--help` and man page.
pub const ENV_HELP: &str = "\
Logging:
  --log-file FILE, --log-level LEVEL
      The admin's log settings. Give them in the hook's args (the hooks.d \"args\", or
      the hook's args in config.json), which a container cannot change. The log file is
      appended to, never followed through a symlink, and opened (created 0640 if
      missing) only in a root-owned directory that group and others cannot write; an
      existing file must be a regular file. A refused file is reported once on stderr
      and the hook runs on; in a user namespace (a rootless container) the hook then logs
      to the runtime directory of the user who started it, /run/user/UID/hpc-hooks.log. Every event is one line: control characters are escaped.
  Levels
      off, error, warn (default), info, debug, trace, or Sarus's numbers 0 debug, 1 info,
      2 warn, 3 error, 4 off; an unknown level is warned about and warn is used. The
      admin's level is a floor: the container annotation com.hooks.logging.level (same
      values) can only make the log more verbose. Errors are always logged, to stderr and
      to the log file, whatever the level (off included). Device grants are logged at
      warn; each successful run logs one info line saying what it did.
  Lines
      LEVEL HOOK{pid=PID container=ID}: MESSAGE, on stderr and in the file (which adds a
      UTC time in front); an error before the container state is read has no container
      yet. An error is one ERROR line, each cause once.

Environment:
  HPC_HOOKS_LOG_LEVEL, HPC_HOOKS_LOG_FILE
      Used only when the matching argument is absent and the container's process.env
      does not set the same variable: a hook entry without \"env\" runs with the
      container's environment, so a variable the container also sets is ignored, with a
      warning on stderr. Prefer the arguments.

Exit status:
  0
      Done, or nothing to do for this container (not enabled, nothing requested).
  1
      Any error, usage and configuration errors included (never 2): one ERROR line on
      stderr and in the log file. A terminal on stdin (a hook run by hand) is one.";

/// The log arguments every hook accepts (flattened into its clap command line). They
/// have no environment fallback in clap: the environment is handled by [`admin_settings`].
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct LogArgs {
    /// Append the hook's log to FILE (absolute; in a root-owned directory that group and
    /// others cannot write; never followed through a symlink).
    #[arg(long, value_name = "FILE", global = true)]
    pub log_file: Option<PathBuf>,
    /// The admin's log level (off, error, warn, info, debug, trace, or 0-4); a floor that
    /// the container's com.hooks.logging.level annotation can only raise. An unknown
    /// level is warned about and warn is used.
    #[arg(long, value_name = "LEVEL", global = true)]
    pub log_level: Option<String>,
}

/// The log arguments found in `argv` before (and whatever) clap parses: `--log-file F`,
/// `--log-file=F`, `--log-level L`, `--log-level=L`; the last one wins, anything else is
/// skipped. A value that looks like another option is not taken.
pub fn scan_log_args(argv: &[OsString]) -> LogArgs {
    let mut out = LogArgs::default();
    let mut it = argv.iter().skip(1).peekable();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        for (flag, is_file) in [("--log-file", true), ("--log-level", false)] {
            let value = if a == flag {
                match it.peek() {
                    Some(v) if !v.to_string_lossy().starts_with("--") => {
                        it.next().map(|v| v.to_string_lossy().into_owned())
                    }
                    _ => None,
                }
            } else {
                a.strip_prefix(flag)
                    .and_then(|r| r.strip_prefix('='))
                    .map(str::to_owned)
            };
            if let Some(v) = value {
                if is_file {
                    out.log_file = Some(PathBuf::from(v));
                } else {
                    out.log_level = Some(v);
                }
            }
        }
    }
    out
}

/// The container id the hook runs for, once logging is set up (for log lines that
/// must name it, e.g. device grants).
pub fn container_id() -> Option<&'static str> {
    CONTAINER.get().map(String::as_str)
}

/// Parses `off|error|warn|info|debug|trace` or Sarus's numbers (0 debug, 1 info, 2 warn,
/// 3 error, 4 off): [`hpc_facts::log_level::parse`], the one parser, as a tracing filter.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    use hpc_facts::log_level::Level;
    Some(match hpc_facts::log_level::parse(s)? {
        Level::Off => LevelFilter::OFF,
        Level::Error => LevelFilter::ERROR,
        Level::Warn => LevelFilter::WARN,
        Level::Info => LevelFilter::INFO,
        Level::Debug => LevelFilter::DEBUG,
        Level::Trace => LevelFilter::TRACE,
    })
}

/// Effective level: the admin's level, raised (never lowered) by the annotation.
pub fn effective_level(admin: LevelFilter, annotations: &HashMap<String, String>) -> LevelFilter {
    let ann = annotations
        .get(LEVEL_ANNOTATION)
        .and_then(|v| parse_level(v));
    match ann {
        // LevelFilter orders OFF < ERROR < WARN < INFO < DEBUG < TRACE.
        Some(a) if a > admin => a,
        _ => admin,
    }
}

/// The admin's log settings, and why environment values were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub level: LevelFilter,
    pub file: Option<PathBuf>,
    /// One line per refused or invalid setting, for stderr.
    pub refused: Vec<String>,
}

/// Decides the admin's log settings from the arguments and the hook's environment.
///
/// `container_env` is the container's `process.env` (`None` when config.json could not
/// be read: then the environment cannot be told apart from the container's and is not
/// used). An environment variable is used only when its argument is absent and the
/// container's env does not set the same key at all.
pub fn admin_settings(
    args: &LogArgs,
    hook_env: &dyn Fn(&str) -> Option<OsString>,
    container_env: Option<&[String]>,
) -> AdminSettings {
    let mut refused = Vec::new();
    let mut trusted = |key: &str| -> Option<OsString> {
        let v = hook_env(key).filter(|v| !v.is_empty())?;
        let Some(cenv) = container_env else {
            refused.push(format!(
                "ignoring {key} from the environment: the container's config.json could not be read, so it may be the container's; pass --{} in the hook's args",
                arg_of(key)
            ));
            return None;
        };
        let prefix = format!("{key}=");
        let theirs = cenv.iter().find_map(|e| e.strip_prefix(&prefix));
        match theirs {
            None => Some(v),
            Some(t) => {
                let why = if t.as_bytes() == v.as_bytes() {
                    "it equals the container's process.env entry (a hook entry without \"env\" gets the container's environment)"
                } else {
                    "the container's process.env sets it too, so the hook's environment cannot be told apart from the container's"
                };
                refused.push(format!(
                    "ignoring {key} from the environment: {why}; pass --{} in the hook's args",
                    arg_of(key)
                ));
                None
            }
        }
    };
    let env_file = if args.log_file.is_none() {
        trusted(FILE_ENV)
    } else {
        None
    };
    let env_level = if args.log_level.is_none() {
        trusted(LEVEL_ENV)
    } else {
        None
    };
    let level = match (args.log_level.clone(), env_level) {
        // An unknown level in the args is warned about by [`start`].
        (Some(l), _) => parse_level(&l).unwrap_or(DEFAULT_LEVEL),
        (None, Some(v)) => parse_level(&v.to_string_lossy()).unwrap_or_else(|| {
            refused.push(format!(
                "ignoring {LEVEL_ENV}={}: not a log level ({LEVELS}); using warn",
                v.to_string_lossy()
            ));
            DEFAULT_LEVEL
        }),
        (None, None) => DEFAULT_LEVEL,
    };
    AdminSettings {
        level,
        file: args.log_file.clone().or(env_file.map(PathBuf::from)),
        refused,
    }
}

fn arg_of(key: &str) -> &'static str {
    if key == FILE_ENV {
        "log-file"
    } else {
        "log-level"
    }
}

/// Completes the logging set up by [`start`] once the container is known: records the
/// container id on the run's span, takes `HPC_HOOKS_LOG_*` from the environment under the
/// rules of [`admin_settings`] (the file only when no `--log-file` was given), and raises
/// the level by the container's annotation. `config` is `None` when config.json could not
/// be read. Without [`start`] (library tests), installs logging as before.
pub fn init_for_container(hook: &'static str, id: &str, config: Option<&BundleConfig>) {
    let _ = CONTAINER.set(id.to_string());
    if let Some(span) = SPAN.get() {
        span.record("container", tracing::field::display(id));
    }
    let args = ARGS.get().cloned().unwrap_or_default();
    let container_env = config.map(|c| {
        c.spec
            .process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default()
    });
    let s = admin_settings(&args, &|k| std::env::var_os(k), container_env.as_deref());
    let empty = HashMap::new();
    let annotations = config.map(|c| &c.annotations).unwrap_or(&empty);
    let level = effective_level(s.level, annotations);
    if !initialized() {
        for line in &s.refused {
            eprint!("{}", escape_event(format!("{hook}: {line}\n").as_bytes()));
        }
        init(hook, level, s.file);
        return;
    }
    set_level(level);
    for line in &s.refused {
        tracing::warn!("{line}");
    }
    if args.log_file.is_none() {
        if let Some(path) = s.file {
            open_into_file_slot(&path);
        }
    }
}

fn level_code(l: LevelFilter) -> u8 {
    match l {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => 1,
        LevelFilter::WARN => 2,
        LevelFilter::INFO => 3,
        LevelFilter::DEBUG => 4,
        _ => 5,
    }
}

fn current_level() -> LevelFilter {
    let l = match LEVEL.load(Ordering::Relaxed) {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    // The floor for errors: they are always logged, whatever the admin's level.
    l.max(LevelFilter::ERROR)
}

fn set_level(l: LevelFilter) {
    LEVEL.store(level_code(l), Ordering::Relaxed);
}

/// The host uid that `uid` (of this process's user namespace) maps to in `uid_map` (the
/// text of `/proc/self/uid_map`).
pub fn outer_uid(uid_map: &str, uid: u32) -> Option<u32> {
    uid_map.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [inside, outside, count] = f[..] else {
            return None;
        };
        let uid = u64::from(uid);
        (uid >= inside && uid - inside < count)
            .then(|| u32::try_from(outside + (uid - inside)).ok())
            .flatten()
    })
}

/// Where a hook logs when the configured log file is refused and it runs in a user
/// namespace (a rootless container, where the admin's `/var/log` is not the hook's to
/// write): the runtime directory of the user who started the container,
/// `/run/user/UID/hpc-hooks.log`, opened under the same rules (the directory is that
/// user's, which is root in the namespace). `None` for the host's root.
pub fn rootless_fallback(uid_map: &str, euid: u32) -> Option<PathBuf> {
    if crate::engine::sys::is_identity_uid_map(uid_map) || uid_map.trim().is_empty() {
        return None;
    }
    outer_uid(uid_map, euid).map(|u| PathBuf::from(format!("/run/user/{u}/hpc-hooks.log")))
}

/// Opens the configured log file or, refused in a user namespace, the user's fallback
/// ([`rootless_fallback`]). A refusal, and a fallback, is said once on stderr (the
/// fallback also in the fallback file); the hook runs on whatever happens.
fn open_or_fall_back(hook: &str, path: &Path) -> Option<File> {
    let e = match open_log_file(path) {
        Ok(f) => return Some(f),
        Err(e) => e,
    };
    let uid_map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let fallback = rootless_fallback(&uid_map, euid).filter(|f| f != path);
    if let Some(fb) = fallback {
        match open_log_file(&fb) {
            Ok(mut f) => {
                let line = escape_event(
                    format!(
                        "{hook}: log file {} refused ({e}); the hook runs in a user namespace (a rootless container): logging to {} instead\n",
                        path.display(),
                        fb.display()
                    )
                    .as_bytes(),
                );
                eprint!("{line}");
                let _ = f.write_all(line.as_bytes());
                return Some(f);
            }
            Err(fe) => {
                eprint!(
                    "{}",
                    escape_event(
                        format!(
                            "{hook}: log file {} refused, logging to stderr only: {e} (the rootless fallback {} was refused too: {fe})\n",
                            path.display(),
                            fb.display()
                        )
                        .as_bytes()
                    )
                );
                return None;
            }
        }
    }
    eprint!(
        "{}",
        escape_event(
            format!(
                "{hook}: log file {} refused, logging to stderr only: {e}\n",
                path.display()
            )
            .as_bytes()
        )
    );
    None
}

/// Opens the admin log file into the file layer's slot; a refusal is reported on stderr
/// (and in a user namespace the user's fallback file is used, see [`open_or_fall_back`]).
fn open_into_file_slot(path: &Path) {
    let hook = SPAN
        .get()
        .and_then(|s| s.metadata())
        .map(|m| m.name())
        .unwrap_or("hook");
    if let Some(f) = open_or_fall_back(hook, path) {
        if let Ok(mut slot) = FILE.lock() {
            *slot = Some(f);
        }
    }
}

/// The file layer's writer: the admin log file once opened, else nothing.
struct FileSlot;

impl Write for FileSlot {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match FILE.lock() {
            Ok(mut g) => match g.as_mut() {
                Some(f) => f.write(b),
                None => Ok(b.len()),
            },
            Err(_) => Ok(b.len()),
        }
    }
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match FILE.lock() {
            Ok(mut g) => match g.as_mut() {
                Some(f) => f.write_all(b),
                None => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The file layer's field formatter: the default one under its own type, so that the
/// two layers keep separate formatted span fields (one shared set would get a field
/// recorded later, the container id, appended once per layer).
struct FileFields(tracing_subscriber::fmt::format::DefaultFields);

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for FileFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

/// The span every line of a run carries: the hook's name, its pid, and the container
/// id once the state is read (`mpi-hook{pid=4242 container=abc}`).
fn run_span(hook: &'static str) -> tracing::Span {
    use tracing::field::Empty;
    let pid = std::process::id();
    // Span names are static: one arm per hook. At ERROR level so that the span is
    // enabled whenever an event can be (errors always pass).
    match hook {
        "mpi-hook" => tracing::error_span!("mpi-hook", pid, container = Empty),
        "glibc-hook" => tracing::error_span!("glibc-hook", pid, container = Empty),
        "gpu-hook" => tracing::error_span!("gpu-hook", pid, container = Empty),
        "gpu-hook create-symlinks" => {
            tracing::error_span!("gpu-hook create-symlinks", pid, container = Empty)
        }
        "gpu-hook update-ldcache" => {
            tracing::error_span!("gpu-hook update-ldcache", pid, container = Empty)
        }
        "gpu-hook enable-cuda-compat" => {
            tracing::error_span!("gpu-hook enable-cuda-compat", pid, container = Empty)
        }
        _ => tracing::error_span!("hook", name = hook, pid, container = Empty),
    }
}

/// Sets up logging first thing in `main`, before the arguments are parsed: the log
/// arguments are taken from `argv` by [`scan_log_args`] (so that a usage or
/// configuration error reaches the admin's log), the log file is opened, the global
/// subscriber installed (stderr and the file; errors always pass) and the run's span
/// entered. Keep the returned guard alive for the whole run.
pub fn start(hook: &'static str, argv: &[OsString]) -> tracing::span::EnteredSpan {
    let args = scan_log_args(argv);
    let bad_level = args
        .log_level
        .as_deref()
        .filter(|l| parse_level(l).is_none())
        .map(str::to_owned);
    set_level(
        args.log_level
            .as_deref()
            .and_then(parse_level)
            .unwrap_or(DEFAULT_LEVEL),
    );
    let filter = || tracing_subscriber::filter::filter_fn(|m| current_level() >= *m.level());
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(Escaped(std::io::stderr))
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_filter(filter());
    let file = tracing_subscriber::fmt::layer()
        .fmt_fields(FileFields(Default::default()))
        .with_writer(Escaped(|| FileSlot))
        .with_ansi(false)
        .with_target(false)
        .with_filter(filter());
    if tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init()
        .is_ok()
    {
        INITIALIZED.store(true, Ordering::Relaxed);
    }
    let span = run_span(hook);
    let _ = SPAN.set(span.clone());
    if let Some(path) = &args.log_file {
        open_into_file_slot(path);
    }
    let _ = ARGS.set(args);
    let guard = span.entered();
    if let Some(l) = bad_level {
        tracing::warn!("ignoring --log-level {l}: not a log level ({LEVELS}); using warn");
    }
    guard
}

/// Parses the command line of hook `hook` after [`start`]: `--help`/`--version` print
/// and give `Err(0)`; any other clap error is logged as one error line naming what the
/// admin set (see [`usage_error`]) and gives `Err(1)`: hooks exit 0 or 1 only.
pub fn parse_cli<C: clap::Parser>(
    hook: &str,
    argv: &[OsString],
) -> Result<C, std::process::ExitCode> {
    match C::try_parse_from(argv) {
        Ok(c) => Ok(c),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            Err(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            let msg = usage_error(&C::command(), &e, argv, &|k| std::env::var_os(k));
            report_error(hook, &msg);
            Err(std::process::ExitCode::FAILURE)
        }
    }
}

fn find_long<'a>(cmd: &'a clap::Command, long: &str) -> Option<&'a clap::Arg> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .or_else(|| cmd.get_subcommands().find_map(|s| find_long(s, long)))
}

/// One line for a clap error. An invalid value names where it came from: the
/// environment variable (`MPI_COMPATIBILITY_TYPE=bogus: invalid value for
/// --mpi-compatibility-type; valid: major, full, strict, dependencies`) when the option
/// is not on the command line and the variable holds the value, else the option.
pub fn usage_error(
    cmd: &clap::Command,
    err: &clap::Error,
    argv: &[OsString],
    env: &dyn Fn(&str) -> Option<OsString>,
) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let text = |k| match err.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    if matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        if let (Some(arg), Some(value)) = (
            text(ContextKind::InvalidArg),
            text(ContextKind::InvalidValue),
        ) {
            let flag = arg.split_whitespace().next().unwrap_or(&arg).to_string();
            let long = flag.trim_start_matches('-');
            let on_command_line = argv.iter().skip(1).any(|a| {
                let a = a.to_string_lossy();
                a == flag || a.starts_with(&format!("{flag}="))
            });
            let from_env = find_long(cmd, long)
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned())
                .filter(|e| {
                    !on_command_line && env(e).is_some_and(|v| v.to_string_lossy() == value)
                });
            let who = match from_env {
                Some(e) => format!("{e}={value}"),
                None => format!("{flag} {value}"),
            };
            let mut msg = format!("{who}: invalid value for {flag}");
            if let Some(src) = std::error::Error::source(err) {
                msg.push_str(&format!(": {src}"));
            }
            if let Some(ContextValue::Strings(valid)) = err.get(ContextKind::ValidValue) {
                msg.push_str(&format!("; valid: {}", valid.join(", ")));
            }
            return msg;
        }
    }
    let rendered = err.render().to_string();
    let mut parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    if let Some(first) = parts.first_mut() {
        *first = first.strip_prefix("error: ").unwrap_or(first);
    }
    format!("{}; see --help", parts.join("; "))
}

/// An error and its causes on one line, each cause once: a source whose text the line
/// already holds (`#[error(transparent)]`, or a message that embeds its source) is not
/// repeated.
pub fn error_chain<'a>(
    chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> String {
    let mut out = String::new();
    for e in chain {
        let t = e.to_string();
        if out.is_empty() {
            out = t;
        } else if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
    }
    out
}

/// Why a log file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("the path must be absolute and name a file, without `.` or `..` components")]
    BadPath,
    #[error(
        "{0} is a symlink or not a directory (log paths are resolved without following symlinks)"
    )]
    NotDir(PathBuf),
    #[error("cannot open directory {path}: {source}")]
    OpenDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("directory {path} is owned by uid {uid}, not root; the log file must be in a root-owned directory")]
    DirOwner { path: PathBuf, uid: u32 },
    #[error("directory {path} is writable by group or others (mode {mode:o}); use a directory only root can write (e.g. /var/log)")]
    DirWritable { path: PathBuf, mode: u32 },
    #[error("it is a symlink; log files are never followed through symlinks")]
    Symlink,
    #[error("it is not a regular file")]
    NotRegular,
    #[error("{0}")]
    Io(#[source] std::io::Error),
}

fn cstr(b: &[u8]) -> Result<CString, LogFileError> {
    CString::new(b).map_err(|_| LogFileError::BadPath)
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor we own and `st` is a valid out pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

fn openat(dir: libc::c_int, name: &CString, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated string; the mode argument is read only with O_CREAT.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags, 0o640 as libc::c_uint) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the admin log file for appending: its parent is resolved component by
/// component without following symlinks and must be root-owned and not writable by group
/// or others (checked on the handle); the file is opened there with `O_NOFOLLOW` (created
/// 0640 when missing) and must be a regular file.
pub fn open_log_file(path: &Path) -> Result<File, LogFileError> {
    if !path.is_absolute() {
        return Err(LogFileError::BadPath);
    }
    let mut comps: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => comps.push(n),
            _ => return Err(LogFileError::BadPath),
        }
    }
    let name = comps.pop().ok_or(LogFileError::BadPath)?;
    let dflags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let mut dir =
        openat(libc::AT_FDCWD, &cstr(b"/")?, dflags).map_err(|source| LogFileError::OpenDir {
            path: "/".into(),
            source,
        })?;
    let mut dir_path = PathBuf::from("/");
    for c in comps {
        dir_path.push(c);
        dir = match openat(dir.as_raw_fd(), &cstr(c.as_bytes())?, dflags) {
            Ok(d) => d,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
                return Err(LogFileError::NotDir(dir_path))
            }
            Err(source) => {
                return Err(LogFileError::OpenDir {
                    path: dir_path,
                    source,
                })
            }
        };
    }
    let st = fstat(&dir).map_err(LogFileError::Io)?;
    if st.st_uid != 0 {
        return Err(LogFileError::DirOwner {
            path: dir_path,
            uid: st.st_uid,
        });
    }
    if st.st_mode & 0o022 != 0 {
        return Err(LogFileError::DirWritable {
            path: dir_path,
            mode: st.st_mode & 0o7777,
        });
    }
    let flags = libc::O_WRONLY
        | libc::O_APPEND
        | libc::O_CREAT
        | libc::O_NOFOLLOW
        | libc::O_CLOEXEC
        | libc::O_NOCTTY
        | libc::O_NONBLOCK;
    let fd = openat(dir.as_raw_fd(), &cstr(name.as_bytes())?, flags).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            LogFileError::Symlink
        } else if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::EISDIR)) {
            LogFileError::NotRegular
        } else {
            LogFileError::Io(e)
        }
    })?;
    let st = fstat(&fd).map_err(LogFileError::Io)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(LogFileError::NotRegular);
    }
    Ok(File::from(fd))
}

/// Escapes one formatted event so that it is exactly one line: every control character
/// (newline, CR, tab, ESC, DEL, C1), Unicode line/paragraph separators and bidi controls
/// are written as escapes (`\n`, `\r`, `\t`, `\x1b`, `\u{2028}`); the event's final
/// newline is kept (and added when missing).
pub fn escape_event(buf: &[u8]) -> String {
    let s = String::from_utf8_lossy(buf);
    let body = s.strip_suffix('\n').unwrap_or(&s);
    let mut out = String::with_capacity(body.len() + 1);
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// A writer that collects one event and writes it escaped, in one `write_all`, on drop.
pub struct EventWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Write for EventWriter<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for EventWriter<W> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = escape_event(&self.buf);
        let _ = self.inner.write_all(line.as_bytes());
        let _ = self.inner.flush();
    }
}

/// [`MakeWriter`] wrapper giving each event an [`EventWriter`].
pub struct Escaped<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaped<M> {
    type Writer = EventWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            inner: self.0.make_writer(),
            buf: Vec::new(),
        }
    }
}

/// Installs the global subscriber: stderr always, the admin log `file` when given (opened
/// with [`open_log_file`]). A refused log file is reported once on stderr with the
/// reason; the hook runs on.
pub fn init(hook: &'static str, level: LevelFilter, file: Option<PathBuf>) {
    // Errors always pass.
    let level = level.max(LevelFilter::ERROR);
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(Escaped(std::io::stderr))
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_filter(level);
    let file_layer = file
        .and_then(|path| open_or_fall_back(hook, &path))
        .map(|f| {
            tracing_subscriber::fmt::layer()
                .with_writer(Escaped(Mutex::new(f)))
                .with_ansi(false)
                .with_target(false)
                .with_filter(level)
        });
    if tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init()
        .is_ok()
    {
        INITIALIZED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ann(v: &str) -> HashMap<String, String> {
        HashMap::from([(LEVEL_ANNOTATION.to_string(), v.to_string())])
    }

    #[test]
    fn rootless_fallback_is_the_users_runtime_dir() {
        let rootless = "         0       1001          1\n         1     100000      65536\n";
        assert_eq!(outer_uid(rootless, 0), Some(1001));
        assert_eq!(outer_uid(rootless, 5), Some(100004));
        assert_eq!(outer_uid(rootless, 70000), None);
        assert_eq!(
            rootless_fallback(rootless, 0),
            Some(PathBuf::from("/run/user/1001/hpc-hooks.log"))
        );
        // The host's root never falls back: its refusals stay refusals.
        assert_eq!(
            rootless_fallback("         0          0 4294967295\n", 0),
            None
        );
        assert_eq!(rootless_fallback("", 0), None);
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("0"), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level("WARN"), Some(LevelFilter::WARN));
        assert_eq!(parse_level("off"), Some(LevelFilter::OFF));
        assert_eq!(parse_level("x"), None);
    }

    #[test]
    fn admin_level_is_a_floor() {
        let warn = LevelFilter::WARN;
        assert_eq!(effective_level(warn, &ann("debug")), LevelFilter::DEBUG);
        assert_eq!(effective_level(warn, &ann("0")), LevelFilter::DEBUG);
        assert_eq!(effective_level(warn, &ann("off")), LevelFilter::WARN);
        assert_eq!(effective_level(warn, &ann("4")), LevelFilter::WARN);
        assert_eq!(effective_level(warn, &ann("error")), LevelFilter::WARN);
        assert_eq!(effective_level(warn, &ann("garbage")), LevelFilter::WARN);
        assert_eq!(effective_level(warn, &HashMap::new()), LevelFilter::WARN);
        assert_eq!(
            effective_level(LevelFilter::INFO, &ann("warn")),
            LevelFilter::INFO
        );
        assert_eq!(
            effective_level(LevelFilter::OFF, &ann("info")),
            LevelFilter::INFO
        );
    }

    fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(pk, _)| *pk == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn args_win_and_env_is_not_read_for_them() {
        let args = LogArgs {
            log_file: Some("/var/log/a.log".into()),
            log_level: Some("info".into()),
        };
        let env = env_of(&[(FILE_ENV, "/tmp/evil"), (LEVEL_ENV, "off")]);
        let s = admin_settings(&args, &env, Some(&[format!("{FILE_ENV}=/tmp/evil")]));
        assert_eq!(s.file, Some(PathBuf::from("/var/log/a.log")));
        assert_eq!(s.level, LevelFilter::INFO);
        assert!(s.refused.is_empty(), "{:?}", s.refused);
    }

    #[test]
    fn env_equal_to_the_containers_is_refused() {
        let env = env_of(&[(FILE_ENV, "/tmp/x/created"), (LEVEL_ENV, "debug")]);
        let cenv = vec![
            "PATH=/bin".to_string(),
            format!("{FILE_ENV}=/tmp/x/created"),
            format!("{LEVEL_ENV}=debug"),
        ];
        let s = admin_settings(&LogArgs::default(), &env, Some(&cenv));
        assert_eq!(s.file, None);
        assert_eq!(s.level, DEFAULT_LEVEL);
        assert_eq!(s.refused.len(), 2, "{:?}", s.refused);
        assert_eq!(
            s.refused[0],
            "ignoring HPC_HOOKS_LOG_FILE from the environment: it equals the container's process.env entry (a hook entry without \"env\" gets the container's environment); pass --log-file in the hook's args"
        );
    }

    #[test]
    fn env_key_set_by_the_container_is_ignored_even_if_different() {
        let env = env_of(&[(FILE_ENV, "/var/log/admin.log")]);
        let cenv = vec![format!("{FILE_ENV}=/etc/ld.so.preload")];
        let s = admin_settings(&LogArgs::default(), &env, Some(&cenv));
        assert_eq!(s.file, None);
        assert!(s.refused[0].contains("the container's process.env sets it too"));
    }

    #[test]
    fn env_used_when_container_does_not_set_it() {
        let env = env_of(&[(FILE_ENV, "/var/log/admin.log"), (LEVEL_ENV, "info")]);
        let s = admin_settings(&LogArgs::default(), &env, Some(&["PATH=/bin".into()]));
        assert_eq!(s.file, Some(PathBuf::from("/var/log/admin.log")));
        assert_eq!(s.level, LevelFilter::INFO);
        assert!(s.refused.is_empty());
        // Without config.json the environment cannot be told apart: not used.
        let s = admin_settings(&LogArgs::default(), &env, None);
        assert_eq!(s.file, None);
        assert_eq!(s.level, DEFAULT_LEVEL);
        assert_eq!(s.refused.len(), 2);
        // A bad level value is reported, the default used.
        let env = env_of(&[(LEVEL_ENV, "loud")]);
        let s = admin_settings(&LogArgs::default(), &env, Some(&[]));
        assert_eq!(s.level, DEFAULT_LEVEL);
        assert_eq!(
            s.refused,
            vec!["ignoring HPC_HOOKS_LOG_LEVEL=loud: not a log level (off, error, warn, info, debug, trace, or Sarus's 0 debug .. 4 off); using warn"]
        );
        // An unknown level in the args means warn, and the environment is not read.
        let env = env_of(&[(LEVEL_ENV, "debug")]);
        let args = LogArgs {
            log_file: None,
            log_level: Some("verbose".into()),
        };
        let s = admin_settings(&args, &env, Some(&[]));
        assert_eq!(s.level, DEFAULT_LEVEL);
        assert!(s.refused.is_empty(), "{:?}", s.refused);
    }

    fn argv(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn log_args_are_found_before_clap() {
        let a = scan_log_args(&argv(&[
            "mpi-hook",
            "--bogus",
            "--log-file",
            "/var/log/a.log",
            "--log-level=verbose",
        ]));
        assert_eq!(a.log_file, Some(PathBuf::from("/var/log/a.log")));
        assert_eq!(a.log_level.as_deref(), Some("verbose"));
        let a = scan_log_args(&argv(&["h", "--log-file=/x.log", "--log-level", "--other"]));
        assert_eq!(a.log_file, Some(PathBuf::from("/x.log")));
        assert_eq!(a.log_level, None);
        let a = scan_log_args(&argv(&["h", "--", "--log-file", "/x.log"]));
        assert_eq!(a, LogArgs::default());
        // The program name is not an argument.
        assert_eq!(
            scan_log_args(&argv(&["--log-level=info"])),
            LogArgs::default()
        );
    }

    #[derive(clap::ValueEnum, Clone, Debug)]
    enum Kind {
        Major,
        Full,
    }

    #[derive(clap::Parser, Debug)]
    struct TestCli {
        #[arg(long, env = "TEST_KIND_17", value_enum, default_value = "major")]
        kind: Kind,
        #[arg(long)]
        number: Option<u32>,
    }

    fn usage(a: &[&str], env: &[(&str, &str)]) -> String {
        use clap::{CommandFactory, Parser};
        let argv = argv(a);
        let env = env_of(env);
        let cmd = TestCli::command();
        // clap reads the real environment; the value is given on the command line or
        // from `env` through the message only.
        let e = TestCli::try_parse_from(&argv).unwrap_err();
        usage_error(&cmd, &e, &argv, &env)
    }

    #[test]
    fn usage_errors_name_the_variable_or_the_flag() {
        // The value came from the environment variable: the variable is named.
        std::env::set_var("TEST_KIND_17", "bogus");
        assert_eq!(
            usage(&["t"], &[("TEST_KIND_17", "bogus")]),
            "TEST_KIND_17=bogus: invalid value for --kind; valid: major, full"
        );
        std::env::remove_var("TEST_KIND_17");
        assert_eq!(
            usage(&["t", "--kind", "bogus"], &[]),
            "--kind bogus: invalid value for --kind; valid: major, full"
        );
        assert_eq!(
            usage(&["t", "--number=x"], &[]),
            "--number x: invalid value for --number: invalid digit found in string"
        );
        assert_eq!(
            usage(&["t", "--bogus"], &[]),
            "unexpected argument '--bogus' found; Usage: t [OPTIONS]; see --help"
        );
    }

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("not valid JSON ({0}); start it from a runtime")]
        Json(#[source] std::io::Error),
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error(transparent)]
        Inner(#[from] Inner),
        #[error("cannot open the log")]
        Open(#[source] std::io::Error),
    }

    #[test]
    fn each_cause_is_printed_once() {
        let e = Outer::from(Inner::Json(std::io::Error::other("EOF while parsing")));
        let chain = std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        });
        assert_eq!(
            error_chain(chain),
            "not valid JSON (EOF while parsing); start it from a runtime"
        );
        // A cause the message does not hold is appended.
        let e = Outer::Open(std::io::Error::other("permission denied"));
        let chain = std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        });
        assert_eq!(error_chain(chain), "cannot open the log: permission denied");
    }

    #[test]
    fn escaping_keeps_one_event_on_one_line() {
        assert_eq!(escape_event(b"plain line\n"), "plain line\n");
        assert_eq!(
            escape_event(b"file a\nWARN forged: x\r\x1b[31m\t\x7f\n"),
            "file a\\nWARN forged: x\\r\\x1b[31m\\t\\x7f\n"
        );
        assert_eq!(
            escape_event("a\u{85}b\u{2028}c\u{202e}d".as_bytes()),
            "a\\u{85}b\\u{2028}c\\u{202e}d\n"
        );
        assert_eq!(escape_event(b"bad \xff utf8\n"), "bad \u{fffd} utf8\n");
        proptest::proptest!(|(s in "\\PC*|[\\x00-\\x1f\\u{80}-\\u{9f}\\u{2028}a]{0,40}")| {
            let e = escape_event(s.as_bytes());
            proptest::prop_assert!(e.ends_with('\n'));
            proptest::prop_assert_eq!(e.matches('\n').count(), 1);
            proptest::prop_assert!(!e.contains('\r'));
        });
    }

    #[test]
    fn event_writer_writes_once_escaped() {
        let mut out = Vec::new();
        {
            let mut w = EventWriter {
                inner: &mut out,
                buf: Vec::new(),
            };
            w.write_all(b"part one\n").unwrap();
            w.write_all(b"part two\n").unwrap();
        }
        assert_eq!(out, b"part one\\npart two\n");
    }

    fn admin_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn log_file_in_admin_dir_is_created_and_appended() {
        let d = admin_dir();
        let p = d.path().join("hooks.log");
        if !is_root() {
            // A tempdir of a non-root user is refused for its owner.
            let e = open_log_file(&p).unwrap_err().to_string();
            assert!(e.contains("not root"), "{e}");
            return;
        }
        open_log_file(&p).unwrap().write_all(b"one\n").unwrap();
        open_log_file(&p).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one\ntwo\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn refused_log_files() {
        let d = admin_dir();
        let target = d.path().join("target");
        std::fs::write(&target, "").unwrap();
        let link = d.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let ww = d.path().join("ww");
        std::fs::create_dir(&ww).unwrap();
        std::fs::set_permissions(&ww, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let dirlink = d.path().join("dirlink");
        std::os::unix::fs::symlink(d.path(), &dirlink).unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let err = |p: &Path| open_log_file(p).unwrap_err().to_string();

        assert_eq!(
            err(Path::new("rel/x.log")),
            "the path must be absolute and name a file, without `.` or `..` components"
        );
        assert_eq!(
            err(&d.path().join("sub/../x.log")),
            "the path must be absolute and name a file, without `.` or `..` components"
        );
        assert_eq!(
            err(&dirlink.join("x.log")),
            format!(
                "{} is a symlink or not a directory (log paths are resolved without following symlinks)",
                dirlink.display()
            )
        );
        if !is_root() {
            return;
        }
        assert_eq!(
            err(&link),
            "it is a symlink; log files are never followed through symlinks"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
        assert_eq!(
            err(&ww.join("x.log")),
            format!(
                "directory {} is writable by group or others (mode 1777); use a directory only root can write (e.g. /var/log)",
                ww.display()
            )
        );
        assert!(!ww.join("x.log").exists());
        assert_eq!(err(&sub), "it is not a regular file");
        std::os::unix::fs::chown(&sub, Some(1000), None).unwrap();
        assert_eq!(
            err(&sub.join("x.log")),
            format!(
                "directory {} is owned by uid 1000, not root; the log file must be in a root-owned directory",
                sub.display()
            )
        );
        assert!(!sub.join("x.log").exists());
    }
}
