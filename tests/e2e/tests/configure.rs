//! packaging/hpc-hooks-configure's command line and configuration file, run directly (no
//! container, no e2e lock): options without a value, `--opt=VALUE`, quoted values, the
//! hooks' log levels (Sarus numbers included), `:`-separated HOOKS_DIRS (spaces still
//! accepted with a warning), the `--mpi-compatibility-type` / `--compat` names, and the
//! network stack's file (`NET_STACK`, detected by `cdi-gen net --print-config`).

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

/// The lines `cdi-gen net --print-config` prints on this machine.
fn net_config(cdi_gen: &Path) -> Vec<String> {
    let mut c = Command::new(cdi_gen);
    c.args(["net", "--print-config"]);
    let out = run_cmd(c, Duration::from_secs(60));
    out.assert_success("cdi-gen net --print-config");
    out.stdout.lines().map(String::from).collect()
}

#[test]
fn the_network_stack_file_holds_what_cdi_gen_detects() {
    // This machine: Debian 12 with MPICH, Open MPI, libfabric 1.17 and UCX 1.13.
    let node = Node::new("configure-net");
    let cdi_gen = hook_bin("cdi-gen");
    let detected = net_config(&cdi_gen);
    assert!(detected[0].contains("libfabric.so.1"), "{detected:?}");
    let ucx_dir = "/usr/lib/x86_64-linux-gnu/ucx";
    assert!(detected[2].contains(ucx_dir), "{detected:?}");
    let conf = format!(
        "MPI_LIBS=auto\nMPI_DEPENDENCY_LIBS=auto\nBIND_MOUNTS=auto\nGPU=no\nLOG_FILE={}\n",
        node.log_file.display()
    );
    let d = node.path().join("hooks");
    let hooks_dir = d.to_str().unwrap();
    let cdi = cdi_gen.to_str().unwrap();
    let out = node.configure(&conf, &["--cdi-gen", cdi, "--hooks-dir", hooks_dir]);
    out.assert_success("NET_STACK=auto (the default)");
    let net = read_json(&d.join("hpc-hooks-net.json"));
    assert_eq!(net["version"], "1.0.0");
    assert_eq!(
        net["hook"]["path"].as_str(),
        node.libexec.join("mpi-hook").to_str()
    );
    assert_eq!(
        strings(&net["hook"]["args"]),
        [
            "mpi-hook".to_string(),
            "--net-only".into(),
            "--log-file".into(),
            node.log_file.display().to_string(),
            "--log-level".into(),
            "warn".into()
        ]
    );
    let mut want = detected.clone();
    want.extend([
        "NCCL_PLUGIN_DIR=".into(),
        "NCCL_PLUGIN_MISMATCH=warn".into(),
    ]);
    assert_eq!(strings(&net["hook"]["env"]), want);
    assert_eq!(
        net["when"]["annotations"]["^com\\.hooks\\.net\\.enabled$"],
        "^true$"
    );
    assert_eq!(strings(&net["stages"]), ["createRuntime"]);
    // mpi-hook's file has the same values, and BIND_MOUNTS no longer UCX's directory.
    let mpi_env = strings(&read_json(&d.join("hpc-hooks-mpi.json"))["hook"]["env"]);
    for w in &want {
        assert!(mpi_env.contains(w), "{w}: {mpi_env:?}");
    }
    assert!(mpi_env.contains(&"BIND_MOUNTS=".to_string()), "{mpi_env:?}");
    assert!(
        out.stdout.contains("hpc-hooks-configure: NET_STACK=auto\n"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains(&format!("hpc-hooks-configure: {}\n", detected[0])),
        "{out}"
    );

    // Given values pass through; the NCCL settings go into both files.
    let plugins = node.scratch.subdir("nccl");
    let out = node.configure(
        &conf,
        &[
            "--cdi-gen",
            cdi,
            "--hooks-dir",
            hooks_dir,
            "--net-devices",
            "",
            "--nccl-plugin-dir",
            plugins.to_str().unwrap(),
            "--nccl-plugin-mismatch=refuse",
        ],
    );
    out.assert_success("given values");
    let env = strings(&read_json(&d.join("hpc-hooks-net.json"))["hook"]["env"]);
    assert_eq!(env[0], detected[0]);
    assert_eq!(env[3], "NET_DEVICES=");
    assert_eq!(env[4], format!("NCCL_PLUGIN_DIR={}", plugins.display()));
    assert_eq!(env[5], "NCCL_PLUGIN_MISMATCH=refuse");

    // NET_STACK=none: the file is removed, the values are empty, UCX's directory is back
    // in BIND_MOUNTS.
    let out = node.configure(
        &format!("{conf}NET_STACK=none\n"),
        &["--cdi-gen", cdi, "--hooks-dir", hooks_dir],
    );
    out.assert_success("NET_STACK=none");
    assert!(!d.join("hpc-hooks-net.json").exists(), "{out}");
    let mpi_env = strings(&read_json(&d.join("hpc-hooks-mpi.json"))["hook"]["env"]);
    assert!(mpi_env.contains(&"NET_LIBS=".to_string()), "{mpi_env:?}");
    assert!(
        mpi_env.contains(&format!("BIND_MOUNTS={ucx_dir}")),
        "{mpi_env:?}"
    );

    // Neither a library nor a device (mpi-hook --net-only would refuse such a container):
    // no network file (an earlier one is removed), a notice.
    node.configure(&conf, &["--cdi-gen", cdi, "--hooks-dir", hooks_dir])
        .assert_success("NET_STACK=auto again");
    assert!(d.join("hpc-hooks-net.json").is_file());
    let out = node.configure(
        &conf,
        &[
            "--cdi-gen",
            cdi,
            "--hooks-dir",
            hooks_dir,
            "--net-libs",
            "",
            "--net-devices",
            "",
        ],
    );
    out.assert_success("no library, no device");
    assert!(!d.join("hpc-hooks-net.json").exists(), "{out}");
    assert!(
        out.stderr.contains("no network library (NET_LIBS) or fabric device (NET_DEVICES) found: the network hook file is not written"),
        "{out}"
    );

    // Without cdi-gen: a notice, no network file, not an error.
    let e = node.path().join("hooks-no-cdi-gen");
    let out = node.configure(
        &node.conf(""),
        &[
            "--cdi-gen",
            "/nonexistent/cdi-gen",
            "--hooks-dir",
            e.to_str().unwrap(),
        ],
    );
    out.assert_success("no cdi-gen");
    assert!(
        out.stderr.contains("NET_STACK=auto, but cdi-gen, which detects the network stack, is not at /nonexistent/cdi-gen"),
        "{out}"
    );
    assert!(!e.join("hpc-hooks-net.json").exists());
    assert!(e.join("hpc-hooks-mpi.json").is_file());

    // Bad values: exit 2, nothing written.
    for (extra, msg) in [
        (
            "NET_STACK=maybe\n",
            "NET_STACK=maybe is not one of auto, none",
        ),
        (
            "NCCL_PLUGIN_MISMATCH=ignore\n",
            "NCCL_PLUGIN_MISMATCH=ignore is not one of warn, refuse",
        ),
        (
            "NCCL_PLUGIN_DIR=plugins\n",
            "NCCL_PLUGIN_DIR=plugins must be an absolute path (or empty: no plugins)",
        ),
        (
            "NET_LIBS=/nonexistent/libfabric.so.1\n",
            "NET_LIBS: /nonexistent/libfabric.so.1 does not exist on this node",
        ),
    ] {
        let f = node.path().join("hooks-bad");
        let out = node.configure(
            &node.conf(extra),
            &["--cdi-gen", cdi, "--hooks-dir", f.to_str().unwrap()],
        );
        assert_eq!(code(&out), Some(2), "{extra}{out}");
        assert!(out.stderr.contains(msg), "{extra}{out}");
        assert!(!f.exists(), "{extra}: nothing may be written");
    }
}
