//! hpc-rank run as a program: exit codes (kept equal to the table in docs/hpc-rank.md),
//! its messages, `--env NAME`, `--log-level` and the runtime command logged at debug.
//! No Slurm and no container runtime needed: the rank's status is checked with a fake
//! podman (as root, since `--podman` is root-only).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_hpc-rank");

/// hpc-rank with a clean environment (no HPC_RANK_*, no SUDO_*), from `/`.
fn hpc_rank<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/");
    c
}

/// Held while a test writes an executable and while it forks: a child forked by another
/// test thread while a script is open for writing would make that script's exec fail
/// with ETXTBSY ("Text file busy").
static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
    SPAWN.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(c: &mut Command) -> (i32, String, String) {
    let child = {
        let _g = spawn_lock();
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run hpc-rank")
    };
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("run hpc-rank");
    (
        status.code().expect("hpc-rank exited by a signal"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A directory that is a rootfs as far as the argument checks go.
fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("usr")).unwrap();
    d
}

/// The rows of the "Exit status" table of docs/hpc-rank.md: (first cell, examples).
fn doc_rows() -> Vec<(String, Vec<String>)> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/hpc-rank.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Exit status"))
        .expect("docs/hpc-rank.md has an `## Exit status` section");
    section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| exit status"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(
                cells.len(),
                3,
                "row {l:?}: exit status | meaning | examples"
            );
            let examples = cells[2]
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|e| e.starts_with("hpc-rank"))
                .map(str::to_string)
                .collect();
            (cells[0].trim_matches('`').to_string(), examples)
        })
        .collect()
}

#[test]
fn exit_codes_match_the_table_in_the_docs() {
    let rows = doc_rows();
    let codes: Vec<&str> = rows.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codes, ["0", "125", "the rank's"], "table rows: {rows:?}");
    let fs = rootfs();
    let mut ran = 0;
    for (code, examples) in &rows {
        let Ok(want) = code.parse::<i32>() else {
            continue; // the rank's status: rank_status_is_passed_through below
        };
        assert!(!examples.is_empty(), "no example for exit status {code}");
        for ex in examples {
            let args: Vec<String> = ex
                .split_whitespace()
                .skip(1)
                .map(|w| {
                    if w == "ROOTFS" {
                        fs.path().display().to_string()
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            let (got, out, err) = run(&mut hpc_rank(&args));
            assert_eq!(got, want, "`{ex}`: stdout {out:?} stderr {err:?}");
            if want == 0 {
                assert!(!out.is_empty() && err.is_empty(), "`{ex}`: {out:?} {err:?}");
            } else {
                assert!(
                    err.starts_with("hpc-rank: error: "),
                    "`{ex}`: stderr {err:?}"
                );
                assert_eq!(err.matches("error:").count(), 1, "`{ex}`: {err:?}");
            }
            ran += 1;
        }
    }
    assert!(ran >= 6, "only {ran} examples");
}

#[test]
fn usage_errors_exit_125_in_hpc_rank_style() {
    let (code, out, err) = run(&mut hpc_rank(["--runtime", "docker", "/x", "/bin/true"]));
    assert_eq!(code, 125);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "hpc-rank: error: invalid value 'docker' for '--runtime <RUNTIME>'\n  \
         [possible values: runc, podman]\n\nFor more information, try '--help'.\n"
    );
    let (code, _, err) = run(hpc_rank(["/x", "/bin/true"]).env("HPC_RANK_RUNTIME", "docker"));
    assert_eq!(code, 125);
    assert!(
        err.starts_with(
            "hpc-rank: error: invalid value 'docker' for '--runtime <RUNTIME>' (set by the \
             environment variable HPC_RANK_RUNTIME)\n"
        ),
        "{err:?}"
    );
    let (code, out, err) = run(&mut hpc_rank(["--bogus", "/x", "/bin/true"]));
    assert_eq!(code, 125);
    assert_eq!(out, "");
    assert!(
        err.starts_with("hpc-rank: error: unexpected argument '--bogus' found\n"),
        "{err:?}"
    );
    let (code, _, err) = run(&mut hpc_rank(Vec::<String>::new()));
    assert_eq!(code, 125);
    assert!(
        err.starts_with(
            "hpc-rank: error: the following required arguments were not provided:\n  <TARGET>\n"
        ),
        "{err:?}"
    );
}

#[test]
fn missing_path_rootfs_is_named_not_taken_for_an_image() {
    for target in ["/nonexistent/rootfs", "./nonexistent", "../nonexistent"] {
        let (code, out, err) = run(&mut hpc_rank(["--runtime", "podman", target, "/bin/true"]));
        assert_eq!(code, 125, "{target}");
        assert_eq!(out, "");
        assert_eq!(
            err,
            format!(
                "hpc-rank: error: rootfs directory {target} does not exist (an argument \
                 starting with /, ./ or ../ is a rootfs directory; an image reference starts \
                 with a name, e.g. docker.io/library/debian:12)\n"
            )
        );
    }
    let (code, _, err) = run(&mut hpc_rank(["/etc/hostname", "/bin/true"]));
    assert_eq!(code, 125);
    assert_eq!(
        err,
        "hpc-rank: error: rootfs /etc/hostname is not a directory (runc needs a directory \
         rootfs; for an image use --runtime podman)\n"
    );
}

#[test]
fn env_name_without_value_must_be_set() {
    let fs = rootfs();
    let (code, out, err) = run(&mut hpc_rank([
        "--env".as_ref(),
        "HPC_RANK_TEST_UNSET".as_ref(),
        fs.path().as_os_str(),
        "/bin/true".as_ref(),
    ]));
    assert_eq!(code, 125);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "hpc-rank: error: --env HPC_RANK_TEST_UNSET: HPC_RANK_TEST_UNSET is not set in \
         hpc-rank's environment (--env NAME passes the caller's value of NAME; give --env \
         HPC_RANK_TEST_UNSET=VALUE to set it)\n"
    );
}

#[test]
fn unknown_log_level_is_warned_about() {
    let (code, _, err) = run(
        hpc_rank(["--runtime", "podman", "/nonexistent", "/bin/true"])
            .env("HPC_RANK_LOG_LEVEL", "verbose"),
    );
    assert_eq!(code, 125);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0],
        "hpc-rank: warn: HPC_RANK_LOG_LEVEL \"verbose\" is not a log level (off, error, warn, \
         info, debug, trace, or Sarus's 0 (debug) .. 4 (off)); using warn"
    );
    assert!(lines[1].starts_with("hpc-rank: error: rootfs directory /nonexistent"));
    assert_eq!(lines.len(), 2);
    // A known level is not warned about; the error is printed even with logging off.
    for level in ["off", "4", "error", "3", "warn", "2"] {
        let (code, _, err) = run(&mut hpc_rank([
            "--log-level",
            level,
            "--runtime",
            "podman",
            "/nonexistent",
            "/bin/true",
        ]));
        assert_eq!(code, 125);
        assert_eq!(err.lines().count(), 1, "{level}: {err:?}");
        assert!(err.starts_with("hpc-rank: error: rootfs directory /nonexistent"));
    }
    // More verbose levels add lines before the error, in the same style.
    let (code, _, err) = run(&mut hpc_rank([
        "--log-level",
        "trace",
        "--runtime",
        "podman",
        "/nonexistent",
        "/bin/true",
    ]));
    assert_eq!(code, 125);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() > 1, "{err:?}");
    assert!(lines[..lines.len() - 1]
        .iter()
        .all(|l| l.starts_with("hpc-rank: debug: ") || l.starts_with("hpc-rank: trace: ")));
    assert!(lines[lines.len() - 1].starts_with("hpc-rank: error: rootfs directory /nonexistent"));
}

/// A podman stand-in: `info` says cgroupfs; `run` exits with the status given as the
/// rank's last argument (`sig`: killed by SIGTERM); `kill`/`rm` succeed.
fn fake_podman(dir: &Path) -> PathBuf {
    let p = dir.join("podman");
    let _g = spawn_lock();
    std::fs::write(
        &p,
        "#!/bin/sh\n\
         case \"$1\" in rm|kill) exit 0;; esac\n\
         for a; do [ \"$a\" = info ] && { echo cgroupfs; exit 0; }; last=$a; done\n\
         [ \"$last\" = sig ] && kill -TERM $$\n\
         exit \"$last\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: --podman is for the real root only");
    }
    root
}

#[test]
fn rank_status_is_passed_through() {
    if !root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let podman = fake_podman(d.path());
    for (last, want) in [("0", 0), ("7", 7), ("125", 125), ("sig", 143)] {
        let (code, out, err) = run(&mut hpc_rank([
            "--runtime".as_ref(),
            "podman".as_ref(),
            "--podman".as_ref(),
            podman.as_os_str(),
            "example.org/img:1".as_ref(),
            last.as_ref(),
        ]));
        assert_eq!(code, want, "{last}: {out:?} {err:?}");
        assert_eq!(err, "", "{last}: nothing logged at the default level");
    }
}

#[test]
fn debug_logs_the_runtime_command_with_env_name_resolved() {
    if !root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let podman = fake_podman(d.path());
    let (code, _, err) = run(hpc_rank([
        "--log-level".as_ref(),
        "debug".as_ref(),
        "--runtime".as_ref(),
        "podman".as_ref(),
        "--podman".as_ref(),
        podman.as_os_str(),
        "--hooks-dir".as_ref(),
        "/nonexistent/hooks.d".as_ref(),
        "--env".as_ref(),
        "FROM_HOST".as_ref(),
        "-e".as_ref(),
        "GIVEN=x y".as_ref(),
        "example.org/img:1".as_ref(),
        "3".as_ref(),
    ])
    .env("FROM_HOST", "host value"));
    assert_eq!(code, 3, "{err}");
    let run_line = err
        .lines()
        .find(|l| l.contains(" run --rm "))
        .unwrap_or_else(|| panic!("no runtime command at debug: {err}"));
    let head = format!(
        "hpc-rank: debug: running {} --hooks-dir /nonexistent/hooks.d run --rm --name hpcrank-nojob.x-0-",
        podman.display()
    );
    assert!(run_line.starts_with(&head), "{run_line}");
    assert!(
        run_line.contains(" --env 'FROM_HOST=host value' --env 'GIVEN=x y' "),
        "{run_line}"
    );
    assert!(
        run_line.ends_with(" --workdir / --user 0:0 example.org/img:1 3"),
        "{run_line}"
    );
    assert!(
        err.lines().all(|l| l.starts_with("hpc-rank: debug: ")),
        "{err}"
    );
    // Same through the environment variable, and Sarus's 0 is debug.
    let (code, _, err) = run(hpc_rank([
        "--runtime".as_ref(),
        "podman".as_ref(),
        "--podman".as_ref(),
        podman.as_os_str(),
        "img".as_ref(),
        "0".as_ref(),
    ])
    .env("HPC_RANK_LOG_LEVEL", "0"));
    assert_eq!(code, 0);
    assert!(err.contains(" run --rm --name hpcrank-"), "{err}");
}
