//! packaging/hpc-hooks-configure's command line and configuration file, run directly (no
//! container, no e2e lock): options without a value, `--opt=VALUE`, quoted values, the
//! hooks' log levels (Sarus numbers included), `:`-separated HOOKS_DIRS (spaces still
//! accepted with a warning) and the `--mpi-compatibility-type` / `--compat` names.

use e2e_tests::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A node for the script: hook binaries in a libexec directory, a root-owned 0755 log
/// directory, and an existing file to stand for the MPI library.
struct Node {
    scratch: Scratch,
    libexec: PathBuf,
    log_file: PathBuf,
    mpi_lib: PathBuf,
}

impl Node {
    fn new(tag: &str) -> Node {
        let scratch = Scratch::new(tag);
        let libexec = scratch.subdir("libexec");
        for b in ["mpi-hook", "glibc-hook"] {
            fs::copy(hook_bin(b), libexec.join(b)).unwrap();
        }
        let log_dir = scratch.subdir("log");
        fs::set_permissions(&log_dir, fs::Permissions::from_mode(0o755)).unwrap();
        let mpi_lib = scratch.path().join("libmpi.so.12");
        fs::write(&mpi_lib, "").unwrap();
        Node {
            log_file: log_dir.join("hooks.log"),
            libexec,
            mpi_lib,
            scratch,
        }
    }

    fn path(&self) -> &Path {
        self.scratch.path()
    }

    /// Writes `conf` (each line as given) and runs the script with it and `args`.
    fn configure(&self, conf: &str, args: &[&str]) -> RunOutput {
        let conf_file = self.path().join("hpc-hooks.conf");
        fs::write(&conf_file, conf).unwrap();
        let mut c = Command::new(workspace_root().join("packaging/hpc-hooks-configure"));
        c.arg("--config")
            .arg(&conf_file)
            .arg("--templates")
            .arg(workspace_root().join("packaging/hooks.d"))
            .arg("--libexec")
            .arg(&self.libexec)
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        run_cmd(c, Duration::from_secs(60))
    }

    /// A configuration with the MPI settings explicit (no detection) and GPU=no.
    fn conf(&self, extra: &str) -> String {
        format!(
            "MPI_LIBS={}\nMPI_DEPENDENCY_LIBS=\nBIND_MOUNTS=\nGPU=no\nLOG_FILE={}\n{extra}",
            self.mpi_lib.display(),
            self.log_file.display()
        )
    }
}

fn code(out: &RunOutput) -> Option<i32> {
    out.status.and_then(|s| s.code())
}

fn read_json(p: &Path) -> Value {
    let t = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("{}: {e}\n{t}", p.display()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_option_without_its_value_is_a_usage_error() {
    let script = workspace_root().join("packaging/hpc-hooks-configure");
    for opt in [
        "--config",
        "--hooks-dir",
        "--mpi-compatibility-type",
        "--compat",
        "--log-level",
    ] {
        let mut c = Command::new(&script);
        c.arg(opt);
        let out = run_cmd(c, Duration::from_secs(30));
        assert_eq!(code(&out), Some(2), "{opt}\n{out}");
        assert_eq!(
            out.stderr,
            format!(
                "hpc-hooks-configure: option {opt} needs a value (see hpc-hooks-configure --help)\n"
            ),
            "{out}"
        );
    }
    // An unknown option stays "unknown", even as the last argument.
    let mut c = Command::new(&script);
    c.arg("--bogus");
    let out = run_cmd(c, Duration::from_secs(30));
    assert_eq!(code(&out), Some(2));
    assert_eq!(
        out.stderr,
        "hpc-hooks-configure: unknown option --bogus (see hpc-hooks-configure --help)\n"
    );
}

#[test]
fn quoted_values_numbers_as_log_levels_and_colon_separated_hooks_dirs() {
    let node = Node::new("configure-quotes");
    let a = node.path().join("hooks-a");
    let b = node.path().join("hooks-b");
    // Shell-style quotes (double, single, around an empty value), LOG_LEVEL=0 (Sarus:
    // debug), and HOOKS_DIRS as a ':'-separated list.
    let conf = format!(
        "MPI_LIBS=\"{}\"\nMPI_DEPENDENCY_LIBS=''\nBIND_MOUNTS=\"\"\nGPU='no'\nLOG_FILE=\"{}\"\nLOG_LEVEL=0\nHOOKS_DIRS={}:{}\n",
        node.mpi_lib.display(),
        node.log_file.display(),
        a.display(),
        b.display()
    );
    let out = node.configure(&conf, &[]);
    out.assert_success("quoted values");
    assert!(!out.stderr.contains("warning"), "{out}");
    for dir in [&a, &b] {
        let mpi = read_json(&dir.join("hpc-hooks-mpi.json"));
        let env = strings(&mpi["hook"]["env"]);
        assert!(
            env.contains(&format!("MPI_LIBS={}", node.mpi_lib.display())),
            "the quotes must not be part of the value: {env:?}"
        );
        assert!(env.contains(&"MPI_DEPENDENCY_LIBS=".to_string()), "{env:?}");
        let args = strings(&mpi["hook"]["args"]);
        assert_eq!(
            args[1..5],
            [
                "--log-file".to_string(),
                node.log_file.display().to_string(),
                "--log-level".to_string(),
                "debug".to_string()
            ],
            "LOG_LEVEL=0 is Sarus's debug"
        );
        assert!(dir.join("hpc-hooks-glibc.json").is_file());
        assert!(!dir.join("hpc-hooks-gpu.json").exists());
    }

    // The hooks accept each level the script writes (names and numbers, any case).
    for (given, written) in [
        ("4", "off"),
        ("WARN", "warn"),
        ("warning", "warn"),
        ("trace", "trace"),
    ] {
        let d = node.path().join(format!("hooks-level-{given}"));
        let out = node.configure(
            &node.conf(&format!("LOG_LEVEL={given}\n")),
            &["--hooks-dir", d.to_str().unwrap()],
        );
        out.assert_success(given);
        let args = strings(&read_json(&d.join("hpc-hooks-glibc.json"))["hook"]["args"]);
        assert_eq!(args[4], written, "LOG_LEVEL={given}");
    }
    let out = node.configure(&node.conf("LOG_LEVEL=verbose\n"), &["--dry-run"]);
    assert_eq!(code(&out), Some(2), "{out}");
    assert_eq!(
        out.stderr,
        "hpc-hooks-configure: LOG_LEVEL=verbose is not one of off, error, warn, info, debug, trace (or 0-4: 0 debug, 1 info, 2 warn, 3 error, 4 off)\n"
    );

    // A quote that does not enclose the value is refused with a message naming it.
    let out = node.configure(
        &format!("MPI_LIBS=\"{}\n", node.mpi_lib.display()),
        &["--dry-run"],
    );
    assert_eq!(code(&out), Some(2), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "hpc-hooks.conf:1: MPI_LIBS=\"{}: unbalanced or misplaced quote",
            node.mpi_lib.display()
        )),
        "{out}"
    );
    assert!(!out.stderr.contains("not an absolute path"), "{out}");
}

#[test]
fn space_separated_hooks_dirs_still_work_with_a_warning() {
    let node = Node::new("configure-spaces");
    let a = node.path().join("hooks-a");
    let b = node.path().join("hooks-b");
    let out = node.configure(
        &node.conf(&format!("HOOKS_DIRS={} {}\n", a.display(), b.display())),
        &[],
    );
    out.assert_success("space-separated HOOKS_DIRS");
    assert!(
        out.stderr.contains(&format!(
            "hpc-hooks-configure: warning: HOOKS_DIRS={} {}: separate directories with ':'",
            a.display(),
            b.display()
        )),
        "{out}"
    );
    assert!(a.join("hpc-hooks-mpi.json").is_file() && b.join("hpc-hooks-mpi.json").is_file());
    // --hooks-dir takes a ':' list too; a relative directory is refused.
    let c = node.path().join("hooks-c");
    let d = node.path().join("hooks-d");
    let out = node.configure(
        &node.conf(""),
        &["--hooks-dir", &format!("{}:{}", c.display(), d.display())],
    );
    out.assert_success("--hooks-dir C:D");
    assert!(c.join("hpc-hooks-glibc.json").is_file() && d.join("hpc-hooks-glibc.json").is_file());
    let out = node.configure(&node.conf(""), &["--hooks-dir", "relative/hooks.d"]);
    assert_eq!(code(&out), Some(2), "{out}");
    assert!(
        out.stderr
            .contains("HOOKS_DIRS: relative/hooks.d is not an absolute path"),
        "{out}"
    );
}

#[test]
fn mpi_compatibility_type_has_one_name_and_the_old_alias() {
    let node = Node::new("configure-compat");
    for (args, want) in [
        (vec!["--mpi-compatibility-type", "full"], "full"),
        (vec!["--mpi-compatibility-type=strict"], "strict"),
        (vec!["--compat", "dependencies"], "dependencies"),
    ] {
        let d = node.path().join(format!("hooks-{want}"));
        let mut all = args.clone();
        all.extend(["--hooks-dir", d.to_str().unwrap()]);
        let out = node.configure(&node.conf(""), &all);
        out.assert_success(&format!("{args:?}"));
        let env = strings(&read_json(&d.join("hpc-hooks-mpi.json"))["hook"]["env"]);
        assert!(
            env.contains(&format!("MPI_COMPATIBILITY_TYPE={want}")),
            "{args:?}: {env:?}"
        );
    }
    let out = node.configure(
        &node.conf(""),
        &["--mpi-compatibility-type", "bogus", "--dry-run"],
    );
    assert_eq!(code(&out), Some(2), "{out}");
    assert!(
        out.stderr.contains(
            "MPI_COMPATIBILITY_TYPE=bogus is not one of major, full, strict, dependencies"
        ),
        "{out}"
    );
}
