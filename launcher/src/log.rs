//! hpc-rank's own log: tracing events on stderr, one line each, as
//! `hpc-rank: LEVEL: message`, the same prefix as its fatal `hpc-rank: error: ...`.
//! The level comes from `--log-level` / `HPC_RANK_LOG_LEVEL`, with the names the hooks
//! accept (off, error, warn, info, debug, trace, Sarus's 0-4).

use std::fmt;

use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The level when none is given, or an unknown one.
pub const DEFAULT_LEVEL: LevelFilter = LevelFilter::WARN;

/// The accepted level names, for messages.
pub const LEVEL_NAMES: &str =
    "off, error, warn, info, debug, trace, or Sarus's 0 (debug) .. 4 (off)";

/// Parses `off|error|warn|info|debug|trace` or Sarus's numbers (0 debug, 1 info, 2 warn,
/// 3 error, 4 off): the hooks' own parser, so every tool accepts the same set.
pub use hooks_core::logging::parse_level;

/// The level for `value` given through `source` (`--log-level` or `HPC_RANK_LOG_LEVEL`),
/// and, for an unknown value, the warning to print: [`DEFAULT_LEVEL`] is used then.
pub fn choose(value: Option<&str>, source: &str) -> (LevelFilter, Option<String>) {
    match value {
        None => (DEFAULT_LEVEL, None),
        Some(v) => match parse_level(v) {
            Some(l) => (l, None),
            None => (
                DEFAULT_LEVEL,
                Some(format!(
                    "{source} {v:?} is not a log level ({LEVEL_NAMES}); using warn"
                )),
            ),
        },
    }
}

/// `hpc-rank: LEVEL: message fields...`, one line.
struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        write!(w, "hpc-rank: {level}: ")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Installs the stderr logger at `level` (a second call does nothing).
pub fn init(level: LevelFilter) {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(false)
        .event_format(Line)
        .try_init();
}

/// `argv` as one shell-like line for the log: words with spaces, quotes, shell
/// metacharacters or control characters are quoted (control characters escaped), so the
/// line stays one line and can be pasted.
pub fn shell_line<I, S>(argv: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    argv.into_iter()
        .map(|a| {
            let s = a.as_ref().to_string_lossy().into_owned();
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%^".contains(c));
            if plain {
                s
            } else if s.chars().any(|c| c.is_control()) {
                format!("$'{}'", s.escape_default())
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_the_hooks_names_and_sarus_numbers() {
        for (s, l) in [
            ("error", LevelFilter::ERROR),
            ("warn", LevelFilter::WARN),
            ("WARNING", LevelFilter::WARN),
            ("info", LevelFilter::INFO),
            ("debug", LevelFilter::DEBUG),
            ("trace", LevelFilter::TRACE),
            ("off", LevelFilter::OFF),
            ("0", LevelFilter::DEBUG),
            ("1", LevelFilter::INFO),
            ("2", LevelFilter::WARN),
            ("3", LevelFilter::ERROR),
            ("4", LevelFilter::OFF),
        ] {
            assert_eq!(parse_level(s), Some(l), "{s}");
        }
        assert_eq!(parse_level("verbose"), None);
        assert_eq!(parse_level("5"), None);
    }

    #[test]
    fn unknown_level_is_warned_and_warn_used() {
        assert_eq!(choose(None, "--log-level"), (LevelFilter::WARN, None));
        assert_eq!(
            choose(Some("debug"), "--log-level"),
            (LevelFilter::DEBUG, None)
        );
        let (l, w) = choose(Some("verbose"), "HPC_RANK_LOG_LEVEL");
        assert_eq!(l, LevelFilter::WARN);
        assert_eq!(
            w.as_deref(),
            Some(
                "HPC_RANK_LOG_LEVEL \"verbose\" is not a log level (off, error, warn, info, \
                 debug, trace, or Sarus's 0 (debug) .. 4 (off)); using warn"
            )
        );
    }

    #[test]
    fn shell_line_quotes_what_needs_it() {
        assert_eq!(
            shell_line([
                "/usr/bin/podman",
                "run",
                "--env",
                "A=b c",
                "it's",
                "x\ny",
                ""
            ]),
            r"/usr/bin/podman run --env 'A=b c' 'it'\''s' $'x\ny' ''"
        );
    }
}
