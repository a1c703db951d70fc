//! Golden files: a test's output compared with the expected text compiled into the test
//! (so a copy of the binary runs anywhere, e.g. as `nobody`), or, with `UPDATE_GOLDEN=1`,
//! written back to the file the text came from.

use std::path::Path;

use cdi_specs::Plan;

/// `plan` as YAML with every host path under `dir` written `name` + the rest (`$HOST/...`),
/// so that golden files do not depend on where the fixture was built (the path is replaced
/// in the plan, before YAML folds long lines).
pub fn plan_yaml(plan: &Plan, dir: &Path, name: &str) -> String {
    let from = dir.display().to_string();
    let fix = |p: &mut String| {
        if let Some(rest) = p.strip_prefix(&from) {
            *p = format!("{name}{rest}");
        }
    };
    let mut plan = plan.clone();
    for m in &mut plan.edits.mounts {
        fix(&mut m.host_path);
        fix(&mut m.container_path);
    }
    for n in &mut plan.edits.device_nodes {
        fix(&mut n.host_path);
        fix(&mut n.path);
    }
    for r in &mut plan.replace {
        fix(&mut r.host_path);
    }
    for l in &mut plan.libraries {
        fix(&mut l.host_path);
    }
    plan.to_yaml().expect("a plan serializes as YAML")
}

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
