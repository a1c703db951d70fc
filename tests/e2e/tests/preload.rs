//! Issue 5: a hook started with `LD_PRELOAD` pointing at a library that writes a marker
//! when loaded, with the image rootfs as working directory, must not load it.
//!
//! The hooks (mpi-hook, glibc-hook, gpu-hook) are started directly, not through a
//! runtime, the way runc starts them: state JSON on stdin, the container rootfs as cwd,
//! and an environment that carries `LD_PRELOAD`. Each runs fully activated (annotations
//! set, real host MPI config) on an overlay of the Debian 11 test image, in a private
//! mount namespace created in the child before exec (so nothing it mounts can reach the
//! host, and no helper binary such as `unshare` or `env` sits between the test and the
//! hook: a dynamically linked helper would load the library itself). The state has no
//! pid, so the hooks work in the namespace they start in.
//!
//! `LD_PRELOAD` values:
//! - `container-absolute`: the library's container path (`/usr/lib/...`). It does not
//!   exist on the host, so no loader can load it: never a marker.
//! - `cwd-relative`: the same path without the leading `/`. The dynamic loader resolves
//!   it against the working directory before `main` runs, i.e. against the rootfs: this
//!   is the "hook loads image code" CVE class. Resetting the cwd to `/` in `main` is too
//!   late for the loader.
//! - `host-absolute`: a host copy of the library.
//!
//! The loader honours `LD_PRELOAD` for every dynamically linked, non-setuid program, so
//! for the last two the truth depends on how the hooks are built: a statically linked
//! hook has no loader and cannot load anything; a dynamically linked one loads the
//! library. The test asserts exactly that (marker present if and only if the binary has
//! a `PT_INTERP`), prints which, and with `HPC_HOOKS_REQUIRE_STATIC_HOOKS=1` fails for
//! dynamically linked hooks (to be set in CI once the release build links them
//! statically; see SECURITY.md).

use e2e_tests::*;
use serde_json::json;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LIB_CONTAINER_PATH: &str = "/usr/lib/libhpc-preload-marker.so";

/// Builds the marker library: its constructor appends `/proc/self/exe` to `marker`.
fn build_marker_lib(dir: &Path, marker: &Path) -> PathBuf {
    let src = dir.join("marker.c");
    fs::write(
        &src,
        r#"#include <fcntl.h>
#include <string.h>
#include <unistd.h>
__attribute__((constructor)) static void hpc_preload_marker(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 2);
    if (n < 0) n = 0;
    exe[n++] = '\n';
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) { (void)!write(fd, exe, (size_t)n); close(fd); }
}
"#,
    )
    .expect("write marker.c");
    let lib = dir.join("libhpc-preload-marker.so");
    let mut c = Command::new(require_command("gcc"));
    c.args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(format!("-DMARKER=\"{}\"", marker.display()))
        .arg(&src);
    run_cmd(c, Duration::from_secs(60)).assert_success("gcc marker library");
    lib
}

/// Runs `bin` the way a runtime runs a hook, in a fresh private mount namespace.
fn run_hook(bin: &Path, env: &[String], preload: &str, cwd: &Path, state: &str) -> RunOutput {
    let stdin_file = cwd
        .parent()
        .expect("rootfs has a parent")
        .join("state.json");
    fs::write(&stdin_file, state).expect("write state");
    let mut c = Command::new(bin);
    c.arg0(bin.file_name().expect("hook name"));
    c.env_clear();
    for kv in env {
        let (k, v) = kv.split_once('=').expect("K=V");
        c.env(k, v);
    }
    c.env("LD_PRELOAD", preload)
        .current_dir(cwd)
        .stdin(Stdio::from(
            fs::File::open(&stdin_file).expect("open state"),
        ));
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let none = c"none".as_ptr();
            let root = c"/".as_ptr();
            let flags = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(none, root, std::ptr::null(), flags, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Not `run_cmd`: it gives the child a null stdin, and the hook needs the state there.
    let what = format!(
        "{} (LD_PRELOAD={preload}, cwd {})",
        bin.display(),
        cwd.display()
    );
    let start = Instant::now();
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (res, timed_out) = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(r) => (Some(r), false),
        Err(_) => {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            (rx.recv_timeout(Duration::from_secs(20)).ok(), true)
        }
    };
    let out = res.map(|r| r.unwrap_or_else(|e| panic!("waiting for {what}: {e}")));
    RunOutput {
        what,
        status: out.as_ref().map(|o| o.status),
        timed_out,
        stdout: out
            .as_ref()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default(),
        stderr: out
            .as_ref()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default(),
        elapsed: start.elapsed(),
        attachments: Vec::new(),
    }
}

#[test]
fn hooks_do_not_load_preloaded_image_code() {
    let _lock = e2e_lock();
    let scratch = Scratch::new("preload");
    let marker = scratch.path().join("MARKER");
    let build_dir = scratch.subdir("build");
    let host_lib = build_marker_lib(&build_dir, &marker);

    let overlay = Overlay::new(scratch.path(), "image", &cached_rootfs());
    let image_lib = overlay.path(LIB_CONTAINER_PATH);
    fs::create_dir_all(image_lib.parent().unwrap()).expect("mkdir image lib dir");
    fs::copy(&host_lib, &image_lib).expect("copy marker library into the image");
    assert!(
        !Path::new(LIB_CONTAINER_PATH).exists(),
        "{LIB_CONTAINER_PATH} exists on the host: the container-absolute case would not test anything"
    );

    let log = scratch.path().join("hooks.log");
    let mut bundle = Bundle::new(scratch.path(), "bundle", &overlay.merged, &[MPI_HELLO]);
    bundle.enable_hooks(true, true);
    // gpu-hook: an NVIDIA request in the container env (data it reads from config.json).
    bundle.add_env("NVIDIA_VISIBLE_DEVICES=none");
    fs::write(
        bundle.dir.join("config.json"),
        serde_json::to_vec_pretty(&bundle.config).unwrap(),
    )
    .expect("write config.json");
    let state = json!({
        "ociVersion": "1.0.2",
        "id": bundle.id,
        "status": "creating",
        "bundle": bundle.dir,
        "annotations": {},
    })
    .to_string();

    let gpu_env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "HPC_HOOKS_LOG_LEVEL=debug".to_string(),
        format!("HPC_HOOKS_LOG_FILE={}", log.display()),
    ];
    let hooks: Vec<(PathBuf, Vec<String>)> = vec![
        (hook_bin("mpi-hook"), Hook::mpi(&log, "debug").env),
        (hook_bin("glibc-hook"), Hook::glibc(&log, "debug").env),
        (hook_bin("gpu-hook"), gpu_env),
    ];
    let require_static = std::env::var("HPC_HOOKS_REQUIRE_STATIC_HOOKS").as_deref() == Ok("1");
    let relative = LIB_CONTAINER_PATH.trim_start_matches('/').to_string();
    let cases: [(&str, String, bool); 3] = [
        ("container-absolute", LIB_CONTAINER_PATH.to_string(), false),
        ("cwd-relative", relative, true),
        ("host-absolute", host_lib.display().to_string(), true),
    ];

    let mut problems = Vec::new();
    for (bin, env) in &hooks {
        let dynamic = has_interpreter(bin);
        eprintln!(
            "{}: {}",
            bin.display(),
            if dynamic {
                "dynamically linked (has PT_INTERP): the loader honours LD_PRELOAD"
            } else {
                "statically linked: no loader, LD_PRELOAD cannot load anything"
            }
        );
        if dynamic && require_static {
            problems.push(format!(
                "{} is dynamically linked but HPC_HOOKS_REQUIRE_STATIC_HOOKS=1",
                bin.display()
            ));
        }
        for (case, preload, loadable_path) in &cases {
            let _ = fs::remove_file(&marker);
            let out = run_hook(bin, env, preload, &overlay.merged, &state);
            assert!(
                !out.timed_out,
                "{} timed out:\n{}",
                bin.display(),
                out.all_output()
            );
            assert!(
                !out.stderr.contains("panicked at"),
                "{} panicked:\n{}",
                bin.display(),
                out.all_output()
            );
            let loaded = fs::read_to_string(&marker).ok();
            let expected = *loadable_path && dynamic;
            eprintln!(
                "  LD_PRELOAD={preload} ({case}): exit {:?}, marker {}{}",
                out.status.and_then(|s| s.code()),
                if loaded.is_some() {
                    "WRITTEN"
                } else {
                    "absent"
                },
                if out.success() {
                    String::new()
                } else {
                    format!(", hook stderr: {}", out.stderr.trim())
                }
            );
            if loaded.is_some() != expected {
                problems.push(format!(
                    "{} with LD_PRELOAD={preload} ({case}): marker {} (expected {}); marker text: {:?}\n{}",
                    bin.display(),
                    if loaded.is_some() { "written" } else { "absent" },
                    if expected { "written: dynamically linked" } else { "absent" },
                    loaded,
                    out.all_output()
                ));
            }
        }
    }
    let _ = fs::remove_file(&marker);
    // The hooks really ran, activated, on this container (not an early exit on bad input).
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    for hook in ["mpi-hook", "glibc-hook"] {
        let line = format!("hook={hook} container={}", bundle.id);
        if log_text.matches(&line).count() != cases.len() {
            problems.push(format!(
                "{hook} did not finish {} activated runs (`{line}` lines in {}):\n{log_text}",
                cases.len(),
                log.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The runtime side of the same CVE class: runc runs `createContainer` hooks from its init
/// process with the rootfs as working directory and, when the hook has no `env`, with the
/// container's `process.env`. `cdi-gen`'s specs declare `gpu-hook create-symlinks` that
/// way (no `env`). With `LD_PRELOAD=usr/lib/...` in the image's environment, a dynamically
/// linked gpu-hook then loads the image's library as root, before `pivot_root`, with the
/// host filesystem visible. Asserted: with a non-empty hook `env` the marker never
/// appears; without one it appears if and only if gpu-hook is dynamically linked (and
/// `HPC_HOOKS_REQUIRE_STATIC_HOOKS=1` makes that a failure).
#[test]
fn runc_create_container_hook_does_not_load_image_code() {
    let _lock = e2e_lock();
    let scratch = Scratch::new("preload-runc");
    let marker = scratch.path().join("MARKER");
    let host_lib = build_marker_lib(&scratch.subdir("build"), &marker);
    let gpu_hook = hook_bin("gpu-hook");
    let dynamic = has_interpreter(&gpu_hook);
    let require_static = std::env::var("HPC_HOOKS_REQUIRE_STATIC_HOOKS").as_deref() == Ok("1");
    let relative = LIB_CONTAINER_PATH.trim_start_matches('/');

    let mut problems = Vec::new();
    for (case, hook_env) in [
        ("no env (as in cdi-gen's specs)", None),
        (
            "explicit env",
            Some(vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ]),
        ),
    ] {
        let _ = fs::remove_file(&marker);
        let name = if hook_env.is_some() { "env" } else { "noenv" };
        let overlay = Overlay::new(scratch.path(), &format!("image-{name}"), &cached_rootfs());
        let image_lib = overlay.path(LIB_CONTAINER_PATH);
        fs::create_dir_all(image_lib.parent().unwrap()).expect("mkdir image lib dir");
        fs::copy(&host_lib, &image_lib).expect("copy marker library into the image");
        let mut bundle = Bundle::new(
            scratch.path(),
            &format!("bundle-{name}"),
            &overlay.merged,
            &["/bin/true"],
        );
        bundle.add_env(&format!("LD_PRELOAD={relative}"));
        let mut hook = json!({
            "path": gpu_hook,
            "args": ["gpu-hook", "create-symlinks", "--link", "libc.so.6::/usr/lib/hpc-preload-link"],
        });
        if let Some(env) = &hook_env {
            hook["env"] = json!(env);
        }
        bundle.config["hooks"] = json!({ "createContainer": [hook] });
        let out = bundle.run_runc();
        assert!(!out.timed_out, "runc timed out:\n{}", out.all_output());
        let loaded = fs::read_to_string(&marker).ok();
        let expected = hook_env.is_none() && dynamic;
        eprintln!(
            "gpu-hook createContainer hook, {case}, container LD_PRELOAD={relative}: runc exit {:?}, marker {}",
            out.status.and_then(|s| s.code()),
            if loaded.is_some() { "WRITTEN (image code ran in the hook)" } else { "absent" }
        );
        if loaded.is_some() != expected {
            problems.push(format!(
                "{case}: marker {} (expected {}), marker text {loaded:?}\n{}",
                if loaded.is_some() {
                    "written"
                } else {
                    "absent"
                },
                if expected {
                    "written: gpu-hook is dynamically linked"
                } else {
                    "absent"
                },
                out.all_output()
            ));
        }
        if loaded.is_some() && require_static {
            problems.push(format!("{case}: image code ran in gpu-hook"));
        }
    }
    let _ = fs::remove_file(&marker);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
