//! Golden files: a test's output compared with the expected text compiled into the test
//! (so a copy of the binary runs anywhere, e.g. as `nobody`), or, with `UPDATE_GOLDEN=1`,
//! written back to the file the text came from.

use std::path::Path;

/// Compares `got` with `expected`, the text of `dir/<name>.yaml` (`include_str!`), or
/// rewrites that file when `UPDATE_GOLDEN` is set.
pub fn check_golden(dir: &Path, name: &str, expected: &str, got: &str) {
    let file = dir.join(format!("{name}.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&file, got)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        return;
    }
    assert_eq!(
        got,
        expected,
        "{name} differs from {} (UPDATE_GOLDEN=1 to accept)",
        file.display()
    );
}
