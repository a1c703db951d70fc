//! Hostile logging settings with the real runtime (runc): a container must not choose
//! where the root hooks write their log, nor switch off or forge the admin's log; device
//! grants reach the admin's log at warn. Also hpc-hooks-configure's JSON escaping.
//!
//! The hooks here are put into config.json as bare runc runs them; a hook entry without
//! `env` is started with the container's environment, which is the attack of issue 18
//! (items 3, 4 and the log-forging part of 7).

use e2e_tests::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A hook entry for config.json: `path` with `args` (argv[0] first), `env` when given.
fn hook_entry(bin: &Path, args: &[String], env: Option<&[String]>) -> Value {
    let mut h = json!({ "path": bin, "args": args, "timeout": 60 });
    if let Some(env) = env {
        h["env"] = json!(env);
    }
    h
}

fn push_hook(b: &mut Bundle, stage: &str, hook: Value) {
    if !b.config["hooks"].is_object() {
        b.config["hooks"] = json!({});
    }
    if !b.config["hooks"][stage].is_array() {
        b.config["hooks"][stage] = json!([]);
    }
    b.config["hooks"][stage].as_array_mut().unwrap().push(hook);
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A shell hook without `env` that records the environment the runtime gives it: the
/// control that shows the attack is live (the container's variables reach such a hook).
fn env_recorder(dest: &Path) -> Value {
    let sh = require_command("sh");
    hook_entry(
        &sh,
        &[
            "sh".into(),
            "-c".into(),
            format!("env > '{}'", dest.display()),
        ],
        None,
    )
}

/// (i) Hook entries WITHOUT `env` (gpu-hook create-symlinks at createContainer, as CDI
/// specs register it, and glibc-hook at createRuntime), container env naming a log file
/// and level: the file is not created, and the hooks still do their work.
#[test]
fn container_env_cannot_choose_the_log_file() {
    let env = hooked_env();
    let gpu_hook = hook_bin("gpu-hook");
    let glibc_hook = hook_bin("glibc-hook");
    let scratch = Scratch::new("hlog-env");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    // A root-owned 0700 directory: a log file there would be accepted if it came from
    // the admin, so only the environment rule can keep it from being created.
    let planted = scratch.path().join("created-by-root-hook");
    let planted_rt = scratch.path().join("created-by-root-hook-runtime");
    let seen_cc = scratch.path().join("env-createContainer");
    let seen_rt = scratch.path().join("env-createRuntime");
    let mut b = Bundle::new(
        scratch.path(),
        "bundle",
        &ov.merged,
        &["/bin/sh", "-c", "readlink /tmp/hlog-link && echo RAN-OK"],
    );
    b.enable_hooks(false, true);
    b.add_env(&format!("HPC_HOOKS_LOG_FILE={}", planted.display()));
    b.add_env("HPC_HOOKS_LOG_LEVEL=debug");
    push_hook(&mut b, "createRuntime", env_recorder(&seen_rt));
    push_hook(
        &mut b,
        "createRuntime",
        hook_entry(&glibc_hook, &args(&["glibc-hook"]), None),
    );
    push_hook(&mut b, "createContainer", env_recorder(&seen_cc));
    push_hook(
        &mut b,
        "createContainer",
        hook_entry(
            &gpu_hook,
            &args(&[
                "gpu-hook",
                "create-symlinks",
                "--link",
                "/bin/sh::/tmp/hlog-link",
            ]),
            None,
        ),
    );
    let out = b.run_runc();
    out.assert_success("runc with hooks without env and a container-chosen log file");
    assert!(
        out.stdout.contains("/bin/sh") && out.stdout.contains("RAN-OK"),
        "gpu-hook create-symlinks did not create the link\n{out}"
    );
    // Control: at least one of the stages hands the container's variables to a hook
    // without env (else this test would prove nothing on this runtime).
    let seen: Vec<String> = [&seen_rt, &seen_cc]
        .iter()
        .map(|p| fs::read_to_string(p).unwrap_or_default())
        .collect();
    let needle = format!("HPC_HOOKS_LOG_FILE={}", planted.display());
    eprintln!(
        "container env seen by hooks without env: createRuntime {}, createContainer {}",
        seen[0].contains(&needle),
        seen[1].contains(&needle)
    );
    assert!(
        seen.iter().any(|s| s.contains(&needle)),
        "control failed: no hook without env saw the container's HPC_HOOKS_LOG_FILE; \
         createRuntime env:\n{}\ncreateContainer env:\n{}",
        seen[0],
        seen[1]
    );
    for p in [&planted, &planted_rt] {
        assert!(
            fs::symlink_metadata(p).is_err(),
            "{} was created on the host by a root hook from the container's environment\n{out}",
            p.display()
        );
    }
}

/// Beyond logging: an mpi-hook entry without `env` at createContainer, the container's
/// env naming a host device in BIND_MOUNTS: the hook refuses to run with settings equal
/// to the container's, so the container does not start and nothing is granted.
#[test]
fn container_env_cannot_configure_a_hook_without_env() {
    let env = hooked_env();
    let scratch = Scratch::new("hlog-cfg");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let node = scratch.subdir("devices").join("e2e-kmsg");
    sh(&format!("mknod -m 0620 '{}' c 1 11", node.display()));
    let seen = scratch.path().join("env-createContainer");
    let mut b = Bundle::new(
        scratch.path(),
        "bundle",
        &ov.merged,
        &["/bin/sh", "-c", "echo STARTED"],
    );
    b.enable_hooks(true, false);
    b.add_env(&format!("BIND_MOUNTS={}", node.display()));
    push_hook(&mut b, "createContainer", env_recorder(&seen));
    push_hook(
        &mut b,
        "createContainer",
        hook_entry(&hook_bin("mpi-hook"), &args(&["mpi-hook"]), None),
    );
    let out = b.run_runc();
    let recorded = fs::read_to_string(&seen).unwrap_or_default();
    assert!(
        recorded.contains(&format!("BIND_MOUNTS={}", node.display())),
        "control failed: a createContainer hook without env did not see the container's \
         BIND_MOUNTS, so this test proves nothing:\n{recorded}"
    );
    assert!(
        !out.success() && !out.stdout.contains("STARTED"),
        "the container started with a hook configured by its own environment\n{out}"
    );
    assert!(
        out.stderr.contains("ERROR mpi-hook{pid=")
            && out.stderr.contains(
                "}: refusing to run: its environment sets BIND_MOUNTS to the same value as the container's process.env"
            ),
        "expected mpi-hook's refusal on stderr\n{out}"
    );
}

/// (ii) The admin's log file from the hook's args, the container annotated
/// com.hooks.logging.level=off: the log still has the hook's lines, and the device grant
/// of a BIND_MOUNTS device node is there at WARN (the default level) with the container id.
#[test]
fn annotation_cannot_switch_off_the_admin_log_and_grants_are_warn() {
    let env = hooked_env();
    let scratch = Scratch::new("hlog-off");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let dev_dir = scratch.subdir("devices");
    let node = dev_dir.join("e2e-kmsg");
    sh(&format!("mknod -m 0620 '{}' c 1 11", node.display()));
    let log_dir = scratch.subdir("adminlog");
    let log = log_dir.join("hooks.log");
    let mut b = Bundle::new(scratch.path(), "bundle", &ov.merged, &["/bin/true"]);
    b.enable_hooks(true, true);
    b.annotate("com.hooks.logging.level", "off");
    // The hook's env without any HPC_HOOKS_LOG_*: logging comes from the args only.
    let mpi = Hook::mpi(&log, "debug").with_env("BIND_MOUNTS", &node.display().to_string());
    let hook_env: Vec<String> = mpi
        .env
        .iter()
        .filter(|e| !e.starts_with("HPC_HOOKS_LOG_"))
        .cloned()
        .collect();
    push_hook(
        &mut b,
        "createRuntime",
        hook_entry(
            &mpi.path(),
            &args(&["mpi-hook", "--log-file", &log.display().to_string()]),
            Some(&hook_env),
        ),
    );
    let glibc = Hook::glibc(&log, "debug");
    let glibc_env: Vec<String> = glibc
        .env
        .iter()
        .filter(|e| !e.starts_with("HPC_HOOKS_LOG_"))
        .cloned()
        .collect();
    push_hook(
        &mut b,
        "createRuntime",
        hook_entry(
            &glibc.path(),
            &args(&["glibc-hook", "--log-file", &log.display().to_string()]),
            Some(&glibc_env),
        ),
    );
    let out = b.run_runc();
    out.assert_success("runc, mpi-hook with a BIND_MOUNTS device, annotation level off");
    let text = fs::read_to_string(&log).unwrap_or_else(|e| {
        panic!(
            "the admin log {} was not written (annotation off must not silence it): {e}\n{out}",
            log.display()
        )
    });
    let grant = text
        .lines()
        .find(|l| l.contains("device grant: c 1:11 rw"))
        .unwrap_or_else(|| {
            panic!("no device grant line for c 1:11 in the admin log:\n{text}\n{out}")
        });
    assert!(grant.contains(" WARN "), "grant not at WARN: {grant}");
    assert!(
        grant.contains(&b.id),
        "grant line does not name the container {}: {grant}",
        b.id
    );
    assert!(
        !text.contains(" INFO ") && !text.contains(" DEBUG "),
        "default level is warn: nothing below it expected\n{text}"
    );
}

/// (iii) A log file that is a symlink, and one in a world-writable directory: refused,
/// nothing written through the link or into the directory; the hook still runs.
#[test]
fn symlinked_or_world_writable_log_files_are_refused() {
    let env = hooked_env();
    let gpu_hook = hook_bin("gpu-hook");
    let scratch = Scratch::new("hlog-link");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let admin = scratch.subdir("admin");
    fs::set_permissions(&admin, fs::Permissions::from_mode(0o755)).unwrap();
    let victim = admin.join("victim");
    fs::write(&victim, "").unwrap();
    let link = admin.join("hooks.log");
    symlink(&victim, &link).unwrap();
    let ww = scratch.subdir("ww");
    fs::set_permissions(&ww, fs::Permissions::from_mode(0o1777)).unwrap();
    let ww_log = ww.join("hooks.log");
    let mut b = Bundle::new(
        scratch.path(),
        "bundle",
        &ov.merged,
        &["/bin/sh", "-c", "readlink /tmp/l1 && readlink /tmp/l2"],
    );
    for (log, l) in [(&link, "/tmp/l1"), (&ww_log, "/tmp/l2")] {
        push_hook(
            &mut b,
            "createContainer",
            hook_entry(
                &gpu_hook,
                &args(&[
                    "gpu-hook",
                    "create-symlinks",
                    "--log-file",
                    &log.display().to_string(),
                    "--log-level",
                    "debug",
                    "--link",
                    &format!("/bin/true::{l}"),
                ]),
                Some(&[]),
            ),
        );
    }
    let out = b.run_runc();
    out.assert_success("runc, gpu-hook with refused log files");
    assert_eq!(
        out.stdout.matches("/bin/true").count(),
        2,
        "both hooks must still create their link\n{out}"
    );
    assert_eq!(
        fs::read_to_string(&victim).unwrap(),
        "",
        "the hook wrote through the symlinked log file\n{out}"
    );
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(
        fs::symlink_metadata(&ww_log).is_err(),
        "a log file was created in the world-writable directory {}\n{out}",
        ww.display()
    );
}

/// (iv) A file name with a newline (a BIND_MOUNTS directory, logged when bound): one
/// event, one line; no forged line.
#[test]
fn newline_in_a_file_name_stays_on_one_log_line() {
    let env = hooked_env();
    let scratch = Scratch::new("hlog-nl");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let evil = scratch.subdir("evil\nWARN forged-line\r\x1b[2K");
    let log_dir = scratch.subdir("adminlog");
    let log = log_dir.join("hooks.log");
    let mut b = Bundle::new(scratch.path(), "bundle", &ov.merged, &["/bin/true"]);
    b.enable_hooks(true, true);
    let log_args = |name: &str| {
        args(&[
            name,
            "--log-file",
            &log.display().to_string(),
            "--log-level",
            "info",
        ])
    };
    let no_log_env = |h: &Hook| -> Vec<String> {
        h.env
            .iter()
            .filter(|e| !e.starts_with("HPC_HOOKS_LOG_"))
            .cloned()
            .collect()
    };
    let glibc = Hook::glibc(&log, "info");
    let mpi = Hook::mpi(&log, "info").with_env("BIND_MOUNTS", &evil.display().to_string());
    push_hook(
        &mut b,
        "createRuntime",
        hook_entry(
            &glibc.path(),
            &log_args("glibc-hook"),
            Some(&no_log_env(&glibc)),
        ),
    );
    push_hook(
        &mut b,
        "createRuntime",
        hook_entry(&mpi.path(), &log_args("mpi-hook"), Some(&no_log_env(&mpi))),
    );
    let out = b.run_runc();
    out.assert_success("runc, mpi-hook binding a directory with a newline in its name");
    let text = fs::read_to_string(&log).expect("admin log written");
    assert!(
        text.contains("evil\\nWARN forged-line\\r\\x1b[2K"),
        "the directory name is not in the log, escaped:\n{text}"
    );
    assert!(text.lines().count() >= 2, "{text}");
    for line in text.lines() {
        assert!(
            line.starts_with(|c: char| c.is_ascii_digit()),
            "a log line does not start with a timestamp (forged?): {line:?}\n{text}"
        );
        assert!(!line.contains('\r') && !line.contains('\x1b'), "{line:?}");
    }
}

/// hpc-hooks-configure with hostile values (a `"` and a newline): every file is valid
/// JSON whose env and args hold exactly the values; no entry is injected.
#[test]
fn configure_json_escapes_hostile_values() {
    let _lock = e2e_lock();
    let scratch = Scratch::new("hlog-configure");
    let libexec = scratch.subdir("libexec");
    for b in ["mpi-hook", "glibc-hook", "gpu-hook"] {
        fs::copy(hook_bin(b), libexec.join(b)).unwrap();
    }
    let cdi_gen = libexec.join("cdi-gen");
    fs::write(&cdi_gen, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&cdi_gen, fs::Permissions::from_mode(0o755)).unwrap();
    let hooks_d = scratch.path().join("hooks.d");
    let conf = scratch.path().join("empty.conf");
    fs::write(&conf, "").unwrap();
    // A log directory whose name holds a quote and a newline (root-owned, 0755).
    let log_dir = scratch.path().join("log\", \"LD_PRELOAD=evil.so\nx");
    fs::create_dir(&log_dir).unwrap();
    fs::set_permissions(&log_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let log_file = log_dir.join("hooks.log");
    let driver_root = "/\", \"LD_PRELOAD=/evil.so\\\n\t";
    let mpi_lib = hook_bin("glibc-hook"); // any existing file will do as MPI_LIBS
    let mut c = Command::new(workspace_root().join("packaging/hpc-hooks-configure"));
    c.arg("--config")
        .arg(&conf)
        .arg("--templates")
        .arg(workspace_root().join("packaging/hooks.d"))
        .arg("--libexec")
        .arg(&libexec)
        .arg("--cdi-gen")
        .arg(&cdi_gen)
        .arg("--hooks-dir")
        .arg(&hooks_d)
        .arg("--mpi-libs")
        .arg(&mpi_lib)
        .arg("--mpi-dependency-libs")
        .arg("")
        .arg("--bind-mounts")
        .arg("")
        .arg("--gpu")
        .arg("yes")
        .arg("--gpu-driver-root")
        .arg(driver_root)
        .arg("--log-file")
        .arg(&log_file);
    c.env_remove("PYTHONPATH")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let out = run_cmd(c, std::time::Duration::from_secs(60));
    out.assert_success("hpc-hooks-configure with hostile values");
    let read = |name: &str| -> Value {
        let p: PathBuf = hooks_d.join(name);
        let t = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}\n{out}", p.display()));
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("{} is not JSON: {e}\n{t}", p.display()))
    };
    for name in [
        "hpc-hooks-mpi.json",
        "hpc-hooks-glibc.json",
        "hpc-hooks-gpu.json",
    ] {
        let doc = read(name);
        let args = doc["hook"]["args"].as_array().unwrap();
        assert!(args.len() >= 5, "{name}: {args:?}");
        assert!(
            args.iter()
                .all(|a| !a.as_str().unwrap().starts_with("LD_PRELOAD")),
            "{name}: injected argument: {args:?}"
        );
        assert_eq!(args[1], "--log-file");
        assert_eq!(args[2].as_str(), Some(log_file.to_str().unwrap()), "{name}");
        assert_eq!(args[3], "--log-level");
        assert_eq!(args[4], "warn");
        let env = doc["hook"]["env"].as_array().unwrap();
        assert!(
            env.iter()
                .all(|e| !e.as_str().unwrap().starts_with("LD_PRELOAD")),
            "{name}: injected env entry: {env:?}"
        );
    }
    let gpu = read("hpc-hooks-gpu.json");
    let env: Vec<&str> = gpu["hook"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    let roots: Vec<&&str> = env
        .iter()
        .filter(|e| e.starts_with("GPU_HOOK_DRIVER_ROOT="))
        .collect();
    assert_eq!(
        roots,
        vec![&format!("GPU_HOOK_DRIVER_ROOT={driver_root}").as_str()],
        "{env:?}"
    );

    // A broken template is caught by the JSON check (no python3 involved).
    let bad = scratch.subdir("bad-templates");
    for f in fs::read_dir(workspace_root().join("packaging/hooks.d")).unwrap() {
        let f = f.unwrap().path();
        let t = fs::read_to_string(&f)
            .unwrap()
            .replace("\"stages\"", "\"stages\" ,,");
        fs::write(bad.join(f.file_name().unwrap()), t).unwrap();
    }
    let hooks_d2 = scratch.path().join("hooks.d-2");
    let mut c = Command::new(workspace_root().join("packaging/hpc-hooks-configure"));
    c.arg("--config")
        .arg(&conf)
        .arg("--templates")
        .arg(&bad)
        .arg("--libexec")
        .arg(&libexec)
        .arg("--hooks-dir")
        .arg(&hooks_d2)
        .arg("--mpi-libs")
        .arg(&mpi_lib)
        .arg("--mpi-dependency-libs")
        .arg("")
        .arg("--bind-mounts")
        .arg("")
        .arg("--gpu")
        .arg("no")
        .arg("--log-file")
        .arg(&log_file);
    let out = run_cmd(c, std::time::Duration::from_secs(60));
    assert!(!out.success(), "a broken template must fail\n{out}");
    assert!(
        out.stderr.contains("check-hooks-json") && out.stderr.contains("not JSON"),
        "the failure must come from the JSON parser\n{out}"
    );
    assert!(
        fs::read_dir(&hooks_d2).map(|d| d.count()).unwrap_or(0) == 0,
        "nothing may be written when the check fails"
    );
}
