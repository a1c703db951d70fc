//! Test 6: hostile images. Library files, library dirs, /etc/ld.so.cache,
//! /etc/ld.so.conf.d and /lib64 as absolute or relative symlinks leading out of the
//! rootfs (to a host canary dir), symlink loops, a library path that is a directory, a
//! truncated ld.so.cache, an image library preloaded through the container's
//! LD_PRELOAD and /etc/ld.so.preload.
//!
//! Symlink targets exist BOTH inside the image (a working copy, so a hook resolving
//! paths inside the rootfs can succeed) and on the host (canary files with other
//! content, so a hook resolving on the host would read or write them).
//!
//! Asserted on the host after each run: the canary dir, host loader files and library
//! dir listings and the cached rootfs are unchanged; no preload marker appeared on the
//! host; no mount was left behind. The run either gives the correct result or fails
//! with a clear hook error (never a panic, a timeout or a container broken by the hook).

use e2e_tests::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

type Check = Box<dyn Fn(&RunOutput) -> Result<(), String>>;
type AfterCheck = Box<dyn Fn(&Overlay)>;

struct Scenario {
    name: &'static str,
    stage: &'static str,
    /// Container command.
    args: Vec<String>,
    /// Extra container env.
    env: Vec<String>,
    /// Correct-result predicate when the container ran.
    correct: Check,
    /// A clear hook error is acceptable instead of the correct result.
    error_ok: bool,
    /// Extra host-side assertions after the run.
    after: Option<AfterCheck>,
}

fn mpich_is(version: String) -> Check {
    Box::new(move |out: &RunOutput| match out.mpich_version() {
        Some(v) if v == version => Ok(()),
        got => Err(format!("expected MPICH {version}, got {got:?}")),
    })
}

fn default_scenario(name: &'static str, stage: &'static str, host_version: &str) -> Scenario {
    Scenario {
        name,
        stage,
        args: vec![MPI_HELLO.into()],
        env: vec![],
        correct: mpich_is(host_version.to_string()),
        error_ok: true,
        after: None,
    }
}

/// A hook failure reported by runc: "error running hook #N: ..., stderr: <hook message>".
fn clear_hook_error(out: &RunOutput) -> Result<(), String> {
    let e = &out.stderr;
    if out.timed_out {
        return Err("timed out".into());
    }
    if e.contains("panicked at") || e.contains("RUST_BACKTRACE") {
        return Err("a hook panicked: not a clear error".into());
    }
    if !e.contains("error running hook") && !e.contains("hook") {
        return Err("the failure does not come from a hook (container broken?)".into());
    }
    let hook_msg = e
        .rsplit_once("stderr:")
        .map(|(_, m)| m.trim())
        .unwrap_or("");
    if hook_msg.is_empty() {
        return Err("the hook failed without any message on stderr".into());
    }
    Ok(())
}

/// Runs one hostile scenario; `setup` receives the overlay (modify `merged`), the host
/// canary dir (create host canary files there) and the scratch dir.
fn run_scenario(sc: Scenario, setup: impl FnOnce(&Overlay, &Path, &Scratch)) {
    let env = hooked_env();
    let scratch = Scratch::new(&format!("hostile-{}", sc.name));
    let canary = scratch.subdir("canary");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    setup(&ov, &canary, &scratch);
    run_prepared(sc, &env, &scratch, &canary, &ov.merged, Some(&ov));
}

fn run_prepared(
    sc: Scenario,
    env: &HookedEnv,
    scratch: &Scratch,
    canary: &Path,
    rootfs: &Path,
    ov: Option<&Overlay>,
) {
    let canary_before = snapshot_tree(canary, true);
    let host_before = host_sensitive_snapshot();
    let lower_before = snapshot_tree(&env.rootfs, false);
    let mounts_before = mount_table();
    let marker_dir = scratch.path().join("markers");

    let out = {
        let args: Vec<&str> = sc.args.iter().map(String::as_str).collect();
        let mut b = Bundle::new(scratch.path(), "bundle", rootfs, &args);
        b.enable_hooks(true, true);
        for e in &sc.env {
            b.add_env(e);
        }
        let (mpi, glibc) = (Hook::mpi(&b.log, "debug"), Hook::glibc(&b.log, "debug"));
        b.add_hook(sc.stage, &glibc);
        b.add_hook(sc.stage, &mpi);
        b.run_runc()
        // bundle dropped here: runc delete -f
    };
    let ctx = format!("hostile scenario `{}` ({})", sc.name, sc.stage);

    let mut problems = Vec::new();
    let d = diff_snapshots(&canary_before, &snapshot_tree(canary, true));
    if !d.is_empty() {
        problems.push(format!("HOST canary dir changed:\n  {}", d.join("\n  ")));
    }
    let d = diff_snapshots(&host_before, &host_sensitive_snapshot());
    if !d.is_empty() {
        problems.push(format!(
            "HOST loader files / library dirs changed:\n  {}",
            d.join("\n  ")
        ));
    }
    let d = diff_snapshots(&lower_before, &snapshot_tree(&env.rootfs, false));
    if !d.is_empty() {
        problems.push(format!(
            "the cached rootfs (overlay lower) changed:\n  {}",
            d.join("\n  ")
        ));
    }
    let m = new_mounts(&mounts_before, &mount_table());
    if !m.is_empty() {
        problems.push(format!("mounts left on the host: {m:#?}"));
    }
    if marker_dir.exists() {
        let found: Vec<_> = fs::read_dir(&marker_dir)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if !found.is_empty() {
            problems.push(format!(
                "preload marker(s) written ON THE HOST (an image library was loaded outside \
                 the container): {found:?}"
            ));
        }
    }
    if out.success() {
        if let Err(e) = (sc.correct)(&out) {
            problems.push(format!("the container ran but the result is wrong: {e}"));
        }
    } else if !sc.error_ok {
        problems.push("the container start failed; this scenario must succeed".into());
    } else if let Err(e) = clear_hook_error(&out) {
        problems.push(format!("failed without a clear hook error: {e}"));
    }
    if let (Some(after), Some(ov)) = (&sc.after, ov) {
        after(ov);
    }
    assert!(
        problems.is_empty(),
        "{ctx}:\n- {}\n{out}",
        problems.join("\n- ")
    );
    eprintln!(
        "{ctx}: outcome = {}",
        if out.success() {
            "correct result".to_string()
        } else {
            format!(
                "clear error: {}",
                out.stderr
                    .rsplit_once("stderr:")
                    .map(|x| x.1.trim())
                    .unwrap_or("")
            )
        }
    );
}

/// Image path of a host path (the same absolute path inside the rootfs).
fn in_image(ov: &Overlay, host_path: &Path) -> PathBuf {
    ov.path(&host_path.display().to_string())
}

fn mkparent(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
}

const LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";

fn escape_setup(ov: &Overlay, canary: &Path, relative: bool) {
    divert(
        ov,
        canary,
        &format!("{LIBDIR}/libmpich.so.12.1.10"),
        "libmpich.so.12.1.10",
        relative,
    );
    divert(ov, canary, "/etc/ld.so.cache", "ld.so.cache", relative);
    divert(ov, canary, "/etc/ld.so.conf.d", "ld.so.conf.d", relative);
    // /lib64 is `usr/lib64` in this image; /lib64/ld-linux-x86-64.so.2 is the ELF
    // interpreter of every program and the glibc hook's loader target.
    let lib64 = ov.path("/lib64");
    divert(ov, canary, "/usr/lib64", "lib64", relative);
    fs::remove_file(&lib64).unwrap();
    let target = canary.join("lib64");
    let link = if relative {
        format!(
            "{}{}",
            "../".repeat(16),
            target.display().to_string().trim_start_matches('/')
        )
    } else {
        target.display().to_string()
    };
    symlink(link, &lib64).unwrap();
}

#[test]
fn absolute_symlinks_out_of_rootfs_create_runtime() {
    let v = host_mpi().version;
    run_scenario(
        default_scenario("abs-links", "createRuntime", &v),
        |ov, c, _| escape_setup(ov, c, false),
    );
}

#[test]
fn absolute_symlinks_out_of_rootfs_create_container() {
    let v = host_mpi().version;
    run_scenario(
        default_scenario("abs-links-cc", "createContainer", &v),
        |ov, c, _| escape_setup(ov, c, false),
    );
}

#[test]
fn relative_symlinks_out_of_rootfs_create_runtime() {
    let v = host_mpi().version;
    run_scenario(
        default_scenario("rel-links", "createRuntime", &v),
        |ov, c, _| escape_setup(ov, c, true),
    );
}

#[test]
fn relative_symlinks_out_of_rootfs_create_container() {
    let v = host_mpi().version;
    run_scenario(
        default_scenario("rel-links-cc", "createContainer", &v),
        |ov, c, _| escape_setup(ov, c, true),
    );
}

#[test]
fn symlink_loops() {
    let v = host_mpi().version;
    run_scenario(
        default_scenario("loops", "createRuntime", &v),
        |ov, _, _| {
            let d = ov.path(LIBDIR);
            for n in ["libmpich.so.12", "libmpich.so"] {
                fs::remove_file(d.join(n)).unwrap();
                symlink(format!("{n}.loop"), d.join(n)).unwrap();
                symlink(n, d.join(format!("{n}.loop"))).unwrap();
            }
            // a library dir that is a symlink to itself, listed in ld.so.conf.d
            symlink("/opt/loopdir", ov.path("/opt/loopdir")).unwrap();
            fs::write(ov.path("/etc/ld.so.conf.d/zz-loop.conf"), "/opt/loopdir\n").unwrap();
        },
    );
}

#[test]
fn library_path_is_a_directory() {
    let v = host_mpi().version;
    run_scenario(
        default_scenario("lib-is-dir", "createRuntime", &v),
        |ov, _, _| {
            let p = ov.path(&format!("{LIBDIR}/libmpich.so.12.1.10"));
            fs::remove_file(&p).unwrap();
            fs::create_dir(&p).unwrap();
            fs::write(p.join("inside"), "x").unwrap();
        },
    );
}

fn truncate_cache(ov: &Overlay, len: Option<u64>) {
    let p = ov.path("/etc/ld.so.cache");
    let size = fs::metadata(&p).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len.unwrap_or(size / 2)).unwrap();
}

#[test]
fn truncated_ld_so_cache_header() {
    let v = host_mpi().version;
    run_scenario(
        default_scenario("trunc-header", "createRuntime", &v),
        |ov, _, _| truncate_cache(ov, Some(20)),
    );
}

#[test]
fn truncated_ld_so_cache_middle() {
    let v = host_mpi().version;
    run_scenario(
        default_scenario("trunc-middle", "createRuntime", &v),
        |ov, _, _| truncate_cache(ov, None),
    );
}

/// An image library named by the container's LD_PRELOAD and /etc/ld.so.preload writes
/// a marker (with the loading program) when loaded. The same library also exists at the
/// same path on the host. Loaded by mpi-hello in the container: fine (marker in the
/// overlay upper dir, mpi-hello only). Loaded by anything on the host, or by anything
/// else run in the image: failure.
#[test]
fn ld_preload_image_library_is_never_loaded_by_hooks() {
    let host_version = host_mpi().version;
    let mut sc = default_scenario("ld-preload", "createRuntime", &host_version);
    sc.error_ok = false;
    let env = hooked_env();
    let scratch = Scratch::new("hostile-ld-preload");
    let canary = scratch.subdir("canary");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let marker = scratch.path().join("markers/preload.log");
    let lib = scratch.path().join("evil/libevil.so");
    mkparent(&lib);
    gcc_shared(
        &format!(
            r#"#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void e2e_marker(void) {{
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) n = 0;
    exe[n] = 0;
    FILE *f = fopen("{}", "a");
    if (f) {{ fprintf(f, "%s\n", exe); fclose(f); }}
}}
"#,
            marker.display()
        ),
        &lib,
        "libevil.so",
    );
    let image_lib = in_image(&ov, &lib);
    mkparent(&image_lib);
    fs::copy(&lib, &image_lib).unwrap();
    let image_marker = in_image(&ov, &marker);
    mkparent(&image_marker);
    fs::write(
        ov.path("/etc/ld.so.preload"),
        format!("{}\n", lib.display()),
    )
    .unwrap();
    sc.env.push(format!("LD_PRELOAD={}", lib.display()));
    sc.after = Some(Box::new(move |_ov| {
        let text = fs::read_to_string(&image_marker).unwrap_or_default();
        assert!(
            text.lines().any(|l| l == MPI_HELLO),
            "fixture: the preload library was not loaded by mpi-hello in the container \
             (marker inside the image: {text:?}), the scenario proves nothing"
        );
        let others: Vec<&str> = text.lines().filter(|l| *l != MPI_HELLO).collect();
        assert!(
            others.is_empty(),
            "the image library was loaded by other programs run in the image \
             (a hook executed something from the image): {others:?}"
        );
    }));
    run_prepared(sc, &env, &scratch, &canary, &ov.merged, Some(&ov));
    assert!(!marker.exists(), "marker written on the host");
}

/// A small static busybox rootfs whose library dirs are absolute / relative symlinks
/// to host dirs holding a plausible libmpich (stub with the right SONAME); the image's
/// ld.so.cache lists it. No glibc in the image at all.
#[test]
fn busybox_rootfs_library_dirs_escape() {
    let env = hooked_env();
    let busybox = require_command("busybox");
    let scratch = Scratch::new("hostile-busybox");
    let canary = scratch.subdir("canary");
    let root = scratch.subdir("bbroot");
    for d in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "usr/lib",
        "usr/local",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    symlink("busybox", root.join("bin/sh")).unwrap();
    let stub = scratch.path().join("libmpich.so.12.1.10");
    gcc_shared(
        "int MPI_Init(void) { return 0; }\n",
        &stub,
        "libmpich.so.12",
    );
    // Build a real cache first, with the library where the cache says.
    let libdir = root.join("usr/lib/x86_64-linux-gnu");
    fs::create_dir_all(&libdir).unwrap();
    fs::copy(&stub, libdir.join("libmpich.so.12.1.10")).unwrap();
    symlink("libmpich.so.12.1.10", libdir.join("libmpich.so.12")).unwrap();
    fs::create_dir_all(root.join("usr/local/lib")).unwrap();
    fs::copy(&stub, root.join("usr/local/lib/libmpich.so.12")).unwrap();
    fs::write(
        root.join("etc/ld.so.conf"),
        "/usr/local/lib\n/usr/lib/x86_64-linux-gnu\n",
    )
    .unwrap();
    ldconfig_root(&root);
    // Then make the dirs escape to host canaries holding the same files.
    for (dir, name, relative) in [
        ("usr/lib/x86_64-linux-gnu", "bb-libdir-abs", false),
        ("usr/local/lib", "bb-libdir-rel", true),
    ] {
        let host_dir = canary.join(name);
        fs::create_dir_all(&host_dir).unwrap();
        fs::copy(&stub, host_dir.join("libmpich.so.12.1.10")).unwrap();
        symlink("libmpich.so.12.1.10", host_dir.join("libmpich.so.12")).unwrap();
        fs::write(host_dir.join("canary.txt"), CANARY_TEXT).unwrap();
        let p = root.join(dir);
        fs::remove_dir_all(&p).unwrap();
        let link = if relative {
            format!(
                "{}{}",
                "../".repeat(16),
                host_dir.display().to_string().trim_start_matches('/')
            )
        } else {
            host_dir.display().to_string()
        };
        symlink(link, &p).unwrap();
    }
    let root_before = snapshot_tree(&root, true);
    let mut sc = default_scenario("busybox", "createRuntime", "");
    sc.args = vec!["/bin/busybox".into(), "echo".into(), "BUSYBOX-OK".into()];
    sc.correct = Box::new(|out: &RunOutput| {
        if out.stdout.contains("BUSYBOX-OK") {
            Ok(())
        } else {
            Err("busybox did not run".into())
        }
    });
    run_prepared(sc, &env, &scratch, &canary, &root, None);
    // The rootfs itself may only have gained empty mount points.
    let after = snapshot_tree(&root, true);
    for line in diff_snapshots_ignoring_dir_mtime(&root_before, &after) {
        assert!(
            line.starts_with("created:")
                && (line.contains("kind: 'd'") || line.contains("size: 0")),
            "busybox rootfs changed beyond empty mount points: {line}"
        );
    }
}

/// Fixture check (no hooks): the escape images are valid, working images (every
/// symlink target exists inside the image), so a hook resolving paths inside the
/// rootfs can give the correct result, and the runtime alone touches no canary.
#[test]
fn fixture_escape_images_run_without_hooks() {
    let _lock = e2e_lock();
    require_command("runc");
    let rootfs = cached_rootfs();
    for relative in [false, true] {
        let scratch = Scratch::new("hostile-fixture");
        let canary = scratch.subdir("canary");
        let ov = Overlay::new(scratch.path(), "rootfs", &rootfs);
        escape_setup(&ov, &canary, relative);
        let before = snapshot_tree(&canary, true);
        let b = Bundle::new(scratch.path(), "bundle", &ov.merged, &[MPI_HELLO]);
        b.run_runc().assert_mpich(
            CONTAINER_MPICH_VERSION,
            &format!("escape image (relative={relative}) without hooks"),
        );
        let d = diff_snapshots(&before, &snapshot_tree(&canary, true));
        assert!(d.is_empty(), "runc alone changed the canary: {d:?}");
    }
}
