//! The one parser of log level names shared by the hooks, hpc-rank and cdi-gen:
//! `off|error|warn|info|debug|trace` (any case, `warning` too) or Sarus's numbers
//! (0 debug, 1 info, 2 warn, 3 error, 4 off). Callers map [`Level`] to their logger's type.

/// A log level, least verbose first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Nothing.
    Off,
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// One line per run and above.
    Info,
    /// Decisions and above.
    Debug,
    /// Everything.
    Trace,
}

impl Level {
    /// The directive name (`off`, `error`, `warn`, `info`, `debug`, `trace`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

/// Parses `off|error|warn|info|debug|trace` (any case, surrounding blanks ignored,
/// `warning` too) or Sarus's numbers (0 debug, 1 info, 2 warn, 3 error, 4 off); `None`
/// for anything else.
pub fn parse(s: &str) -> Option<Level> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "0" | "debug" => Level::Debug,
        "1" | "info" => Level::Info,
        "2" | "warn" | "warning" => Level::Warn,
        "3" | "error" => Level::Error,
        "4" | "off" => Level::Off,
        "trace" => Level::Trace,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_case() {
        assert_eq!(parse("0"), Some(Level::Debug));
        assert_eq!(parse("1"), Some(Level::Info));
        assert_eq!(parse("2"), Some(Level::Warn));
        assert_eq!(parse("3"), Some(Level::Error));
        assert_eq!(parse("4"), Some(Level::Off));
        assert_eq!(parse(" WARNING "), Some(Level::Warn));
        assert_eq!(parse("Trace"), Some(Level::Trace));
        assert_eq!(parse("5"), None);
        assert_eq!(parse("verbose"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn directive_names_parse_back() {
        for l in [
            Level::Off,
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ] {
            assert_eq!(parse(l.as_str()), Some(l));
        }
        assert!(Level::Off < Level::Error && Level::Debug < Level::Trace);
    }
}
