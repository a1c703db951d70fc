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
use std::sync::{Mutex, OnceLock};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::config::BundleConfig;

static INITIALIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static ARGS: OnceLock<LogArgs> = OnceLock::new();
static CONTAINER: OnceLock<String> = OnceLock::new();

/// Whether [`init`] ran (before it, errors can only go to plain stderr).
pub fn initialized() -> bool {
    INITIALIZED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Reports a hook's final error once: through tracing (stderr and the log file) when
/// logging is set up, else as a plain (escaped) line on stderr.
pub fn report_error(hook: &str, err: &dyn std::fmt::Display) {
    if initialized() {
        tracing::error!("{hook}: {err}");
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
/// The logging part of every hook's `--help` and man page.
pub const ENV_HELP: &str = "\
Logging:
  --log-file FILE, --log-level LEVEL
      The admin's log settings. Give them in the hook's args (the hooks.d \"args\", or
      the hook's args in config.json), which a container cannot change. The log file is
      appended to, never followed through a symlink, and opened (created 0640 if
      missing) only in a root-owned directory that group and others cannot write; an
      existing file must be a regular file. A refused file is reported once on stderr
      and the hook runs on. Every event is one line: control characters are escaped.
  Levels
      off, error, warn (default), info, debug, trace. The admin's level is a floor: the
      container annotation com.hooks.logging.level (Sarus numbers 0 debug .. 4 off, or
      names) can only make the log more verbose. Device grants are logged at warn.

Environment:
  HPC_HOOKS_LOG_LEVEL, HPC_HOOKS_LOG_FILE
      Used only when the matching argument is absent and the container's process.env
      does not set the same variable: a hook entry without \"env\" runs with the
      container's environment, so a variable the container also sets is ignored, with a
      warning on stderr. Prefer the arguments.";

/// The log arguments every hook accepts (flattened into its clap command line). They
/// have no environment fallback in clap: the environment is handled by [`admin_settings`].
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct LogArgs {
    /// Append the hook's log to FILE (absolute; in a root-owned directory that group and
    /// others cannot write; never followed through a symlink).
    #[arg(long, value_name = "FILE", global = true)]
    pub log_file: Option<PathBuf>,
    /// The admin's log level (off, error, warn, info, debug, trace); a floor that the
    /// container's com.hooks.logging.level annotation can only raise.
    #[arg(long, value_name = "LEVEL", value_parser = parse_level_arg, global = true)]
    pub log_level: Option<LevelFilter>,
}

fn parse_level_arg(s: &str) -> Result<LevelFilter, String> {
    parse_level(s).ok_or_else(|| {
        format!("'{s}' is not a log level (off, error, warn, info, debug, trace, or 0-4)")
    })
}

/// Records the hook's log arguments; call first in `main`, before the container is read.
/// Later calls are ignored.
pub fn set_args(args: LogArgs) {
    let _ = ARGS.set(args);
}

/// The container id the hook runs for, once logging is set up (for log lines that
/// must name it, e.g. device grants).
pub fn container_id() -> Option<&'static str> {
    CONTAINER.get().map(String::as_str)
}

/// Parses `off|error|warn|info|debug|trace` or Sarus's numbers (0 debug, 1 info, 2 warn, 3 error, 4 off).
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
    let level = match (args.log_level, env_level) {
        (Some(l), _) => l,
        (None, Some(v)) => parse_level(&v.to_string_lossy()).unwrap_or_else(|| {
            refused.push(format!(
                "ignoring {LEVEL_ENV}={}: not a log level (off, error, warn, info, debug, trace)",
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

/// Sets up logging for a hook working on container `id`: the admin's settings from
/// [`set_args`] and the environment rules of [`admin_settings`], the level raised by the
/// container's annotation. `config` is `None` when config.json could not be read.
pub fn init_for_container(hook: &'static str, id: &str, config: Option<&BundleConfig>) {
    let _ = CONTAINER.set(id.to_string());
    let args = ARGS.get().cloned().unwrap_or_default();
    let container_env = config.map(|c| {
        c.spec
            .process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default()
    });
    let s = admin_settings(&args, &|k| std::env::var_os(k), container_env.as_deref());
    for line in &s.refused {
        eprint!("{}", escape_event(format!("{hook}: {line}\n").as_bytes()));
    }
    let empty = HashMap::new();
    let annotations = config.map(|c| &c.annotations).unwrap_or(&empty);
    init(hook, effective_level(s.level, annotations), s.file);
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
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(Escaped(std::io::stderr))
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_filter(level);
    let file_layer = file.and_then(|path| match open_log_file(&path) {
        Ok(f) => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(Escaped(Mutex::new(f)))
                .with_ansi(false)
                .with_target(false)
                .with_filter(level),
        ),
        Err(e) => {
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
            log_level: Some(LevelFilter::INFO),
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
            vec!["ignoring HPC_HOOKS_LOG_LEVEL=loud: not a log level (off, error, warn, info, debug, trace)"]
        );
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
