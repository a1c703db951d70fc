//! The built mpi-hook run directly: errors always reach the admin's log (annotation
//! level=off included), usage and configuration errors are logged naming what the admin
//! set, every line carries the run's span, exit codes are 0 or 1 (as the docs' table
//! says), a terminal on stdin is refused at once, and the help marks what is required.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mpi-hook");

struct Out {
    code: Option<i32>,
    pid: u32,
    stdout: String,
    stderr: String,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs mpi-hook with a clean environment plus `env`, `stdin` written to it (or a
/// terminal when `None`), killed after 20 s.
fn run(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Out {
    let mut c = Command::new(BIN);
    c.args(&args[1..]).env_clear().env("PATH", "/usr/bin:/bin");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let _master = match stdin {
        Some(_) => {
            c.stdin(Stdio::piped());
            None
        }
        None => {
            let (master, slave) = pty();
            c.stdin(Stdio::from(slave));
            Some(master)
        }
    };
    let mut child = c.spawn().expect("spawn mpi-hook");
    let pid = child.id();
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        let _ = w.write_all(text.as_bytes());
    }
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("mpi-hook {args:?} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code(),
        pid,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A pseudo-terminal pair (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the given ints; name, termios and
    // winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
}

/// A bundle with an empty rootfs and `annotations`; returns (tempdir, bundle path).
fn bundle(annotations: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("bundle");
    std::fs::create_dir_all(b.join("rootfs")).unwrap();
    std::fs::write(
        b.join("config.json"),
        format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"process":{{"cwd":"/","args":["/bin/true"],"env":["PATH=/bin"],"user":{{"uid":0,"gid":0}}}},"annotations":{{{annotations}}}}}"#
        ),
    )
    .unwrap();
    (t, b)
}

fn state(id: &str, bundle: &Path) -> String {
    format!(
        r#"{{"ociVersion":"1.0.2","id":"{id}","status":"creating","pid":0,"bundle":"{}"}}"#,
        bundle.display()
    )
}

/// An admin log file path in a root-owned 0700 directory (accepted only when run as
/// root: the hooks refuse log directories that others own).
fn admin_log(t: &tempfile::TempDir) -> PathBuf {
    let d = t.path().join("log");
    std::fs::create_dir(&d).unwrap();
    d.join("hooks.log")
}

fn read_log(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("log {}: {e}", p.display()))
}

/// Drops the time stamp the log file puts in front of each line.
fn untimed(line: &str) -> &str {
    line.split_once(' ')
        .map(|(_, r)| r.trim_start())
        .unwrap_or(line)
}

#[test]
fn failing_hook_logs_its_error_even_with_annotation_and_admin_level_off() {
    let (t, b) = bundle(r#""com.hooks.mpi.enabled":"true","com.hooks.logging.level":"off""#);
    let log = admin_log(&t);
    let log_s = log.display().to_string();
    // MPI_LIBS unset: the enabled container cannot get an MPI.
    let o = run(
        &["mpi-hook", "--log-file", &log_s, "--log-level", "off"],
        &[],
        Some(&state("c-off", &b)),
    );
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    let want = format!(
        "ERROR mpi-hook{{pid={} container=c-off}}: MPI_LIBS is empty: set it in the hook's hooks.d env (or --mpi-libs) to the host MPI libraries, e.g. MPI_LIBS=/usr/lib/x86_64-linux-gnu/libmpich.so.12",
        o.pid
    );
    assert_eq!(o.stderr, format!("{want}\n"));
    if is_root() {
        let text = read_log(&log);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(untimed(lines[0]), want);
        assert!(lines[0].starts_with("20"), "no time stamp: {}", lines[0]);
    }
}

#[test]
fn config_error_from_the_environment_is_logged_naming_the_variable() {
    let t = tempfile::tempdir().unwrap();
    let log = admin_log(&t);
    let log_s = log.display().to_string();
    let o = run(
        &["mpi-hook", "--log-file", &log_s],
        &[("MPI_COMPATIBILITY_TYPE", "bogus")],
        Some(""),
    );
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    let want = format!(
        "ERROR mpi-hook{{pid={}}}: MPI_COMPATIBILITY_TYPE=bogus: invalid value for --mpi-compatibility-type: unknown MPI compatibility type 'bogus'; use one of major, full, strict, dependencies",
        o.pid
    );
    assert_eq!(o.stderr, format!("{want}\n"));
    if is_root() {
        assert_eq!(untimed(read_log(&log).trim_end()), want);
    }
    // On the command line, the flag is named.
    let o = run(
        &["mpi-hook", "--mpi-compatibility-type", "bogus"],
        &[],
        Some(""),
    );
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains(
            "}: --mpi-compatibility-type bogus: invalid value for --mpi-compatibility-type"
        ),
        "{}",
        o.stderr
    );
}

#[test]
fn every_line_carries_hook_pid_and_container_and_a_run_says_what_it_did() {
    let (t, b) = bundle(r#""com.other":"x""#);
    let log = admin_log(&t);
    let log_s = log.display().to_string();
    let o = run(
        &["mpi-hook", "--log-file", &log_s, "--log-level", "debug"],
        &[],
        Some(&state("c-span", &b)),
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let span = format!("mpi-hook{{pid={} container=c-span}}: ", o.pid);
    assert_eq!(
        o.stderr,
        format!(
            " INFO {span}not enabled for this container (annotation com.hooks.mpi.enabled=true absent); nothing to do\n"
        )
    );
    if is_root() {
        let text = read_log(&log);
        assert!(!text.is_empty());
        for l in text.lines() {
            assert!(l.contains(&span), "line without the run's span: {l}");
        }
    }
    // At the packaged level (warn) a run that did nothing writes nothing.
    let o = run(&["mpi-hook"], &[], Some(&state("c-quiet", &b)));
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""));
}

#[test]
fn unknown_log_level_is_warned_about() {
    let o = run(&["mpi-hook", "--log-level", "verbose"], &[], Some("{"));
    assert_eq!(o.code, Some(1));
    let first = o.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(" WARN mpi-hook{{pid={}}}: ignoring --log-level verbose: not a log level (off, error, warn, info, debug, trace, or Sarus's 0 debug .. 4 off); using warn", o.pid)
    );
    // Each cause once: serde's message is not repeated after the hint.
    let err = o.stderr.lines().nth(1).unwrap_or_default();
    assert_eq!(err.matches("EOF while parsing").count(), 1, "{err}");
    // Sarus numbers are levels.
    let o = run(&["mpi-hook", "--log-level", "3"], &[], Some("{"));
    assert!(!o.stderr.contains("WARN"), "{}", o.stderr);
}

/// The exit codes the docs' table promises for the hooks, each checked.
#[test]
fn exit_codes_are_0_or_1_as_the_docs_table_says() {
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/troubleshooting.md"),
    )
    .unwrap();
    let codes: Vec<&str> = docs
        .lines()
        .filter(|l| l.starts_with("| mpi-hook, glibc-hook, gpu-hook |"))
        .filter_map(|l| l.split('|').nth(2).map(str::trim))
        .collect();
    assert_eq!(
        codes,
        ["0", "1"],
        "the hooks' exit-code table in docs/troubleshooting.md"
    );

    let (_t, b) = bundle("");
    let st = state("c-exit", &b);
    for (args, env, stdin, want) in [
        (&["mpi-hook", "--help"][..], &[][..], Some(""), 0),
        (&["mpi-hook", "--version"], &[], Some(""), 0),
        (&["mpi-hook"], &[], Some(st.as_str()), 0),
        (&["mpi-hook", "--bogus"], &[], Some(""), 1),
        (&["mpi-hook", "extra"], &[], Some(""), 1),
        (
            &["mpi-hook"],
            &[("MPI_COMPATIBILITY_TYPE", "x")],
            Some(""),
            1,
        ),
        (&["mpi-hook"], &[], Some("not json"), 1),
        (&["mpi-hook"], &[], None, 1),
    ] {
        let o = run(args, env, stdin);
        assert_eq!(o.code, Some(want), "{args:?} {env:?}: {}", o.stderr);
        if want == 1 {
            assert_eq!(o.stderr.lines().count(), 1, "{args:?}: {}", o.stderr);
            assert!(o.stderr.starts_with("ERROR mpi-hook{pid="), "{}", o.stderr);
        }
    }
}

#[test]
fn a_terminal_on_stdin_gives_a_hint_and_exits() {
    let o = run(&["mpi-hook"], &[], None);
    assert_eq!(o.code, Some(1));
    assert_eq!(
        o.stderr,
        format!(
            "ERROR mpi-hook{{pid={}}}: standard input is a terminal: mpi-hook expects the OCI container state JSON on stdin, as a runtime (runc, crun, podman) gives it; it is not run by hand (see docs/troubleshooting.md, \"Running a hook by hand\")\n",
            o.pid
        )
    );
}

#[test]
fn help_marks_required_settings_one_default_each_and_the_conf_file() {
    let long = run(&["mpi-hook", "--help"], &[], Some("")).stdout;
    let short = run(&["mpi-hook", "-h"], &[], Some("")).stdout;
    for h in [&long, &short] {
        assert!(
            h.contains("Configured by /etc/hpc-hooks/hpc-hooks.conf, see hpc-hooks-configure(8)"),
            "{h}"
        );
        assert!(h.contains("Required: the host MPI libraries"), "{h}");
        assert!(!h.contains("[default: ]"), "{h}");
    }
    // --glibc-libs: its own default only.
    let glibc = long
        .split("--glibc-libs <GLIBC_LIBS>")
        .nth(1)
        .and_then(|r| r.split("\n      --").next())
        .unwrap();
    assert_eq!(glibc.matches("default").count(), 1, "{glibc}");
    assert!(long.contains("Exit status:"), "{long}");
}

/// The package ships a logrotate file for the default LOG_FILE, installed as a conffile.
#[test]
fn packaged_logrotate_covers_the_default_log_file() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let conf = std::fs::read_to_string(top.join("packaging/hpc-hooks.conf")).unwrap();
    let log_file = conf
        .lines()
        .find_map(|l| l.strip_prefix("LOG_FILE="))
        .expect("LOG_FILE in hpc-hooks.conf")
        .trim_matches('"');
    let rotate = std::fs::read_to_string(top.join("packaging/logrotate/hpc-hooks")).unwrap();
    let paths = rotate
        .lines()
        .find(|l| l.trim_end().ends_with('{'))
        .expect("a logrotate stanza");
    assert!(
        paths.split_whitespace().any(|p| p == log_file),
        "{log_file} not rotated: {paths}"
    );
    for directive in ["missingok", "notifempty", "compress", "rotate "] {
        assert!(rotate.contains(directive), "{directive} missing:\n{rotate}");
    }
    let deb = std::fs::read_to_string(top.join("packaging/deb/build-deb.sh")).unwrap();
    assert!(
        deb.contains("\"$root/etc/logrotate.d/hpc-hooks\""),
        "build-deb.sh does not install it"
    );
    let conffiles = deb
        .lines()
        .find(|l| l.contains("DEBIAN/conffiles\"") && l.contains('>'))
        .expect("conffiles line");
    assert!(
        conffiles.contains("/etc/logrotate.d/hpc-hooks"),
        "{conffiles}"
    );
}

/// `--cdi` (the hook of the hpc-hooks.io/mpi=host CDI device) runs without the
/// annotation: here it gets as far as its configuration, which the spec's env gives.
#[test]
fn cdi_mode_needs_no_annotation_and_the_mode_annotation_is_checked() {
    let (_t, b) = bundle(r#""com.other":"x""#);
    let o = run(&["mpi-hook"], &[], Some(&state("c-plain", &b)));
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""));
    let o = run(&["mpi-hook", "--cdi"], &[], Some(&state("c-cdi", &b)));
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("MPI_LIBS is empty"), "{}", o.stderr);
    // Neither --cdi nor --mode is read from the environment (runc may hand a hook the
    // container's).
    let o = run(
        &["mpi-hook"],
        &[("CDI", "true"), ("MPI_HOOK_CDI", "1"), ("MODE", "bind")],
        Some(&state("c-env", &b)),
    );
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""));
    let o = run(&["mpi-hook", "--mode", "replace"], &[], Some("{}"));
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr
            .contains("com.hooks.mpi.mode=\"replace\" is not an MPI model"),
        "{}",
        o.stderr
    );
    let (_t, b) = bundle(r#""com.hooks.mpi.enabled":"true","com.hooks.mpi.mode":"bnd""#);
    let o = run(&["mpi-hook"], &[], Some(&state("c-mode", &b)));
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(
        o.stderr.contains("com.hooks.mpi.mode=\"bnd\" is not an MPI model: use hybrid (the image's MPI is replaced, the default) or bind (an image without MPI gets the host MPI)"),
        "{}",
        o.stderr
    );
}

/// `--net-only` (hooks.d file hpc-hooks-net.json): activated by com.hooks.net.enabled=true,
/// leaves containers that also have the MPI annotation to the MPI hook, and refuses a
/// network stack that is not configured, saying what to change.
#[test]
fn net_only_mode_activation_and_an_unconfigured_stack() {
    let (_t, b) = bundle(r#""com.hooks.mpi.enabled":"true""#);
    let o = run(
        &["mpi-hook", "--net-only"],
        &[],
        Some(&state("c-net-off", &b)),
    );
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""));
    let (_t, b) = bundle(r#""com.hooks.net.enabled":"true","com.hooks.mpi.enabled":"true""#);
    let o = run(
        &["mpi-hook", "--net-only", "--log-level", "info"],
        &[],
        Some(&state("c-net-mpi", &b)),
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(
        o.stderr,
        format!(" INFO mpi-hook{{pid={} container=c-net-mpi}}: com.hooks.mpi.enabled=true is also set: the MPI hook applies the network stack with the MPI; nothing to do here\n", o.pid)
    );
    let (_t, b) = bundle(r#""com.hooks.net.enabled":"true""#);
    let o = run(
        &["mpi-hook", "--net-only"],
        &[("NET_LIBS", ""), ("NET_DIRS", "/usr/lib")],
        Some(&state("c-net-none", &b)),
    );
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert_eq!(
        o.stderr,
        format!("ERROR mpi-hook{{pid={} container=c-net-none}}: the container asks for the host's network stack, but none is configured: NET_LIBS and NET_DEVICES are empty (hpc-hooks.conf has NET_STACK=none, or nothing was detected on this node). Have the admin set NET_STACK=auto in /etc/hpc-hooks/hpc-hooks.conf and run hpc-hooks-configure, or start the container without the annotation com.hooks.net.enabled=true\n", o.pid)
    );
    // --net-only is never taken from the environment: the MPI hook runs as before.
    let o = run(
        &["mpi-hook"],
        &[("NET_ONLY", "true"), ("MPI_HOOK_NET_ONLY", "1")],
        Some(&state("c-net-env", &b)),
    );
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""));
}
