//! The built glibc-hook run directly: usage errors exit 1 with one `ERROR glibc-hook{...}`
//! line (never clap's 2), help names the conf file and one default per option, and the
//! hpc-hooks-configure helper `check-hooks-json` keeps its own prefix.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_glibc-hook");

fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (Option<i32>, u32, String, String) {
    let mut c = Command::new(BIN);
    c.args(&args[1..]).env_clear().env("PATH", "/usr/bin:/bin");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn glibc-hook");
    let pid = child.id();
    if let Some(mut w) = child.stdin.take() {
        let _ = w.write_all(stdin.as_bytes());
    }
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        pid,
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_1_with_one_error_line() {
    let (code, pid, _, err) = run(&["glibc-hook", "--bogus"], &[], "");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err,
        format!("ERROR glibc-hook{{pid={pid}}}: unexpected argument '--bogus' found; Usage: glibc-hook [OPTIONS]; see --help\n")
    );
    let (code, pid, _, err) = run(&["glibc-hook"], &[], "{");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.starts_with(&format!(
            "ERROR glibc-hook{{pid={pid}}}: the container state on stdin is not valid JSON"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    for ok in [&["glibc-hook", "--help"][..], &["glibc-hook", "--version"]] {
        assert_eq!(run(ok, &[], "").0, Some(0), "{ok:?}");
    }
}

#[test]
fn check_hooks_json_keeps_its_prefix_and_exit_codes() {
    let (code, _, _, err) = run(&["glibc-hook", "check-hooks-json"], &[], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.starts_with("glibc-hook check-hooks-json: error: "),
        "{err}"
    );
    let (code, _, _, err) = run(
        &["glibc-hook", "check-hooks-json", "/nonexistent/hooks.json"],
        &[],
        "",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("glibc-hook check-hooks-json: "), "{err}");
}

#[test]
fn help_names_the_conf_file_and_one_default() {
    for flag in ["-h", "--help"] {
        let (_, _, out, _) = run(&["glibc-hook", flag], &[], "");
        assert!(
            out.contains("Configured by /etc/hpc-hooks/hpc-hooks.conf, see hpc-hooks-configure(8)"),
            "{out}"
        );
        assert!(!out.contains("[default: ]"), "{out}");
        let glibc = out
            .split("--glibc-libs <GLIBC_LIBS>")
            .nth(1)
            .and_then(|r| r.split("\n  -").next())
            .unwrap_or_default();
        assert_eq!(glibc.matches("default").count(), 1, "{out}");
    }
}

/// `--cdi` (the hook of the hpc-hooks.io/glibc=host CDI device) runs without the
/// annotation; without it the hook does nothing for an unannotated container.
#[test]
fn cdi_mode_runs_without_the_annotation() {
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("bundle");
    std::fs::create_dir_all(b.join("rootfs")).unwrap();
    std::fs::write(
        b.join("config.json"),
        r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["/bin/true"],"env":["PATH=/bin"],"user":{"uid":0,"gid":0}},"annotations":{}}"#,
    )
    .unwrap();
    let state = format!(
        r#"{{"ociVersion":"1.0.2","id":"c","status":"creating","pid":0,"bundle":"{}"}}"#,
        b.display()
    );
    let (code, _, _, err) = run(&["glibc-hook", "--log-level", "info"], &[], &state);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("not enabled for this container"), "{err}");
    let (code, _, _, err) = run(&["glibc-hook", "--cdi", "--log-level", "info"], &[], &state);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("not enabled"), "{err}");
    assert!(
        err.contains("glibc: the image's glibc is new enough; nothing replaced; hook=glibc-hook"),
        "{err}"
    );
}
