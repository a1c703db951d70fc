//! The built gpu-hook run directly: usage and configuration errors exit 1 naming the
//! variable the admin set, a terminal on stdin is refused at once, and the subcommands'
//! help lists only their own options and the log options (test-only options hidden).

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_gpu-hook");

fn run(args: &[&str], env: &[(&str, &str)], stdin: Stdio) -> (Option<i32>, u32, String, String) {
    let mut c = Command::new(BIN);
    c.args(&args[1..]).env_clear().env("PATH", "/usr/bin:/bin");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().expect("spawn gpu-hook");
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        pid,
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn configuration_error_names_the_variable_and_exits_1() {
    let (code, pid, _, err) = run(
        &["gpu-hook"],
        &[("GPU_HOOK_SOURCE", "bogus")],
        Stdio::null(),
    );
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err,
        format!("ERROR gpu-hook{{pid={pid}}}: GPU_HOOK_SOURCE=bogus: invalid value for --source; valid: auto, spec, discover\n")
    );
    let (code, pid, _, err) = run(
        &["gpu-hook", "create-symlinks", "--bogus"],
        &[],
        Stdio::null(),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.starts_with(&format!(
            "ERROR gpu-hook create-symlinks{{pid={pid}}}: unexpected argument '--bogus' found"
        )),
        "{err}"
    );
}

#[test]
fn a_terminal_on_stdin_gives_a_hint_and_exits() {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the given ints; the rest may be null.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0);
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    let (_master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    let (code, pid, _, err) = run(&["gpu-hook", "update-ldcache"], &[], Stdio::from(slave));
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err,
        format!("ERROR gpu-hook update-ldcache{{pid={pid}}}: standard input is a terminal: gpu-hook update-ldcache expects the OCI container state JSON on stdin, as a runtime (runc, crun, podman) gives it; it is not run by hand (see docs/troubleshooting.md, \"Running a hook by hand\")\n")
    );
}

#[test]
fn help_shows_the_conf_file_and_subcommands_only_their_options() {
    let (code, _, top, _) = run(&["gpu-hook", "--help"], &[], Stdio::null());
    assert_eq!(code, Some(0));
    assert!(
        top.contains("Configured by /etc/hpc-hooks/hpc-hooks.conf, see hpc-hooks-configure(8)"),
        "{top}"
    );
    assert!(top.contains("--driver-root"), "{top}");
    assert!(
        !top.contains("--sysfs-root") && !top.contains("--procfs-root"),
        "{top}"
    );
    assert!(!top.contains("[default: ]"), "{top}");
    for sub in ["create-symlinks", "update-ldcache", "enable-cuda-compat"] {
        let (code, _, h, _) = run(&["gpu-hook", sub, "--help"], &[], Stdio::null());
        assert_eq!(code, Some(0), "{sub}");
        let flags: Vec<&str> = h
            .split_whitespace()
            .filter(|w| w.starts_with("--"))
            .collect();
        for f in &flags {
            assert!(
                [
                    "--link",
                    "--folder",
                    "--ldconfig-path",
                    "--host-driver-version",
                    "--log-file",
                    "--log-level",
                    "--help"
                ]
                .contains(f),
                "{sub} --help lists {f}:\n{h}"
            );
        }
        assert!(flags.contains(&"--log-level"), "{h}");
    }
}
