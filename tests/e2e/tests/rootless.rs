//! Rootless: the hooks run by rootless podman (4.3, runc, cgroupfs) for an unprivileged
//! user the tests create (useradd, /etc/subuid + /etc/subgid, uidmap's newuidmap), with
//! the hooks.d files `packaging/install.sh` writes into the system directories, which
//! rootless podman reads as root's does. The package's log file /var/log/hpc-hooks.log is
//! not the rootless hooks' to write: they fall back to /run/user/UID/hpc-hooks.log. The
//! Debian 11 image gets the host MPICH, mpi-hook alone is refused for glibc, the hostile
//! images change nothing outside the container, `srun -n 2 --mpi=pmi2 hpc-rank --runtime
//! podman` runs a world of 2 as the user, and runc mode is refused for it. gpu-hook and CDI:
//! hooks/gpu-hook/tests/rootless_e2e.rs.
//!
//! Needs root (to create the user), podman, uidmap, the static hooks: fails, never skips.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e_tests::*;

const T: Duration = Duration::from_secs(180);

/// The directories the package writes its hooks.d files into (podman 4.3 reads the
/// first, newer engines the second), for root and rootless podman alike.
const SYSTEM_HOOKS_DIRS: [&str; 2] = [
    "/usr/share/containers/oci/hooks.d",
    "/etc/containers/oci/hooks.d",
];
const HOOK_FILES: [&str; 2] = ["hpc-hooks-mpi.json", "hpc-hooks-glibc.json"];

/// The hooks installed by packaging/install.sh as a site installs them: hooks.d files in
/// the system directories (the package's defaults: log file /var/log/hpc-hooks.log), the
/// binaries in a scratch libexec. Removed on drop (files, and directories it created).
struct Installed {
    files: Vec<PathBuf>,
    created_dirs: Vec<PathBuf>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = fs::remove_file(f);
        }
        for d in self.created_dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

fn install(scratch: &Scratch) -> Installed {
    let bins = hook_bin_dir();
    for b in ["mpi-hook", "glibc-hook"] {
        hook_bin(b);
    }
    let mut inst = Installed {
        files: Vec::new(),
        created_dirs: Vec::new(),
    };
    for d in SYSTEM_HOOKS_DIRS {
        for f in HOOK_FILES {
            let p = Path::new(d).join(f);
            assert!(
                !p.exists(),
                "{} exists (the package or a source install is on this machine); the rootless \
                 tests install their own: remove it (packaging/hpc-hooks-configure --remove)",
                p.display()
            );
            inst.files.push(p);
        }
        let mut missing: Vec<PathBuf> = Path::new(d)
            .ancestors()
            .filter(|a| !a.exists())
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        inst.created_dirs.extend(missing);
    }
    let libexec = scratch.path().join("libexec");
    let mut c = std::process::Command::new(workspace_root().join("packaging/install.sh"));
    c.args(["--no-build", "--bins", "mpi-hook,glibc-hook", "--gpu", "no"])
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--libexec")
        .arg(&libexec)
        .arg("--bindir")
        .arg(scratch.path().join("bin"))
        .args(["--log-level", "info"]);
    run_cmd(c, T).assert_success("packaging/install.sh (hooks.d files in the system directories)");
    make_reachable(&libexec);
    let text = fs::read_to_string(Path::new(SYSTEM_HOOKS_DIRS[0]).join(HOOK_FILES[0])).unwrap();
    assert!(text.contains("/var/log/hpc-hooks.log"), "{text}");
    inst
}

/// `podman run` of the user's copy of the image (on a rootless overlay, `:O`) as the user.
fn podman(user: &RootlessUser, rootfs: &Path, annotations: &[&str], args: &[&str]) -> RunOutput {
    let mut c = user.command(&require_command("podman"), &[]);
    // No --hooks-dir: rootless podman reads the system hooks.d directories.
    c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
        .args(["run", "--rm", "--name", &unique_id("hpcrootless")])
        .args(["--network", "none"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
    for a in annotations {
        c.arg("--annotation").arg(a);
    }
    c.arg("--rootfs")
        .arg(format!("{}:O", rootfs.display()))
        .args(args);
    let mut out = run_cmd(c, T);
    out.attach_file("hook log (fallback)", &user.hook_log());
    out
}

const BOTH: &[&str] = &["com.hooks.mpi.enabled=true", "com.hooks.glibc.enabled=true"];

#[test]
fn rootless_podman_with_installed_hooks_reports_host_mpich() {
    let env = hooked_env();
    let scratch = Scratch::new("rootless-mpi");
    let _inst = install(&scratch);
    let user = RootlessUser::create();
    let rootfs = rootfs_for_user(&user, &env.rootfs);
    let admin_log = Path::new("/var/log/hpc-hooks.log");
    let admin_before = fs::metadata(admin_log).ok().map(|m| m.len());
    let out = podman(&user, &rootfs, BOTH, &[MPI_HELLO]);
    out.assert_mpich(&env.host.version, "rootless podman, installed hooks.d");
    // The package's log file is not the rootless hooks' to write: each hook said so once
    // and logged to the user's runtime directory instead, where the user reads it.
    let log = fs::read_to_string(user.hook_log())
        .unwrap_or_else(|e| panic!("{}: {e}\n{out}", user.hook_log().display()));
    for hook in ["mpi-hook", "glibc-hook"] {
        let said = format!(
            "{hook}: log file /var/log/hpc-hooks.log refused (directory /var/log is owned by uid 65534, not root; the log file must be in a root-owned directory); the hook runs in a user namespace (a rootless container): logging to {} instead",
            user.hook_log().display()
        );
        assert_eq!(log.matches(&said).count(), 1, "{hook}: said once\n{log}");
        assert!(
            log.contains(&format!("INFO {hook}{{")),
            "{hook} logged\n{log}"
        );
    }
    let md = fs::metadata(user.hook_log()).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&md),
        user.uid,
        "the user's file"
    );
    assert_eq!(
        fs::metadata(admin_log).ok().map(|m| m.len()),
        admin_before,
        "the admin's log file is not the rootless hooks'"
    );
}

#[test]
fn rootless_mpi_hook_alone_is_refused_for_glibc() {
    let env = hooked_env();
    let scratch = Scratch::new("rootless-glibc");
    let _inst = install(&scratch);
    let user = RootlessUser::create();
    let rootfs = rootfs_for_user(&user, &env.rootfs);
    let out = podman(
        &user,
        &rootfs,
        &["com.hooks.mpi.enabled=true"],
        &[MPI_HELLO],
    );
    out.assert_failure("rootless, mpi-hook alone");
    let all = format!(
        "{}{}",
        out.all_output(),
        fs::read_to_string(user.hook_log()).unwrap_or_default()
    );
    for needle in ["2.34", "2.31", "com.hooks.glibc.enabled=true"] {
        assert!(all.contains(needle), "`{needle}` in the refusal:\n{out}");
    }
}

// ---------------------------------------------------------------------------
// Hostile images, rootless: the image's symlinks lead out of the rootfs to a host canary
// directory; nothing outside the container may change.
// ---------------------------------------------------------------------------

const LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";

fn hostile(relative: bool) {
    let env = hooked_env();
    let scratch = Scratch::new(if relative {
        "rootless-hostile-rel"
    } else {
        "rootless-hostile-abs"
    });
    let _inst = install(&scratch);
    let canary = scratch.subdir("canary");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    divert(
        &ov,
        &canary,
        &format!("{LIBDIR}/libmpich.so.12.1.10"),
        "libmpich.so.12.1.10",
        relative,
    );
    divert(&ov, &canary, "/etc/ld.so.cache", "ld.so.cache", relative);
    divert(&ov, &canary, "/etc/ld.so.conf.d", "ld.so.conf.d", relative);
    make_reachable(&ov.merged);
    let user = RootlessUser::create();

    let canary_before = snapshot_tree(&canary, true);
    let host_before = host_sensitive_snapshot();
    let lower_before = snapshot_tree(&env.rootfs, false);
    let merged_before = snapshot_tree(&ov.merged, true);
    let mounts_before = mount_table();
    let out = podman(&user, &ov.merged, BOTH, &[MPI_HELLO]);

    let mut problems = Vec::new();
    for (what, d) in [
        (
            "HOST canary dir",
            diff_snapshots(&canary_before, &snapshot_tree(&canary, true)),
        ),
        (
            "HOST loader files / library dirs",
            diff_snapshots(&host_before, &host_sensitive_snapshot()),
        ),
        (
            "the cached rootfs",
            diff_snapshots(&lower_before, &snapshot_tree(&env.rootfs, false)),
        ),
        (
            "the image directory given to podman (its :O overlay keeps it)",
            diff_snapshots(&merged_before, &snapshot_tree(&ov.merged, true)),
        ),
    ] {
        if !d.is_empty() {
            problems.push(format!("{what} changed:\n  {}", d.join("\n  ")));
        }
    }
    let m = new_mounts(&mounts_before, &mount_table());
    if !m.is_empty() {
        problems.push(format!("mounts left on the host: {m:#?}"));
    }
    let log = fs::read_to_string(user.hook_log()).unwrap_or_default();
    if out.success() {
        if out.mpich_version().as_deref() != Some(env.host.version.as_str()) {
            problems.push("the container ran but does not report the host MPICH".into());
        }
    } else if !log.contains("ERROR") && !out.stderr.contains("error") {
        problems.push("failed without a clear hook error".into());
    }
    assert!(
        problems.is_empty(),
        "rootless hostile image ({}):\n- {}\n{out}",
        if relative { "relative" } else { "absolute" },
        problems.join("\n- ")
    );
}

#[test]
fn rootless_hostile_absolute_symlinks_change_nothing_outside() {
    hostile(false);
}

#[test]
fn rootless_hostile_relative_symlinks_change_nothing_outside() {
    hostile(true);
}

// ---------------------------------------------------------------------------
// hpc-rank for the unprivileged user
// ---------------------------------------------------------------------------

const PINGPONG: &str = "/usr/local/bin/mpi-pingpong";

/// The user's own podman settings (~/.config/containers/containers.conf): what the
/// harness passes on podman's command line (runc, cgroupfs, a limit this kernel lets runc
/// set), which hpc-rank only takes from root.
fn user_containers_conf(user: &RootlessUser) {
    let dir = user.home.join(".config/containers");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("containers.conf"),
        "[containers]\ndefault_ulimits = [\"nproc=1024:1024\"]\n\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n",
    )
    .unwrap();
    sh(&format!(
        "chown -R {}:{} '{}'",
        user.uid,
        user.gid,
        user.home.join(".config").display()
    ));
}

/// podman `--ipc host` as a rootless user binds the host's /dev/mqueue, which must be a
/// mqueue mount; mounted here when missing (and left: it is the kernel's default view).
fn ensure_mqueue() {
    let mounted = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some("/dev/mqueue"));
    if !mounted {
        fs::create_dir_all("/dev/mqueue").unwrap();
        sh("mount -t mqueue mqueue /dev/mqueue");
    }
}

#[test]
fn rootless_srun_two_ranks_with_podman() {
    let env = hooked_env();
    let scratch = Scratch::new("rootless-rank");
    let _inst = install(&scratch);
    let launcher = copy_for_user(&hook_bin("hpc-rank"), &scratch.path().join("rank-bin"));
    let user = RootlessUser::create();
    user_containers_conf(&user);
    ensure_mqueue();
    // The Epilog keeps the harness's hpc-rank (ranks.rs starts Slurm with the same).
    let conf = slurm_up(&hook_bin("hpc-rank"));
    let mut c = user.command(&require_command("srun"), &[format!("SLURM_CONF={conf}")]);
    c.args([
        "-n",
        "2",
        "--mpi=pmi2",
        "-J",
        "hpcrootless",
        "--kill-on-bad-exit=1",
    ])
    .arg(&launcher)
    .args(["--runtime", "podman"])
    .arg(rootfs_for_user(&user, &env.rootfs))
    .args([PINGPONG, "2000", "100"]);
    let out = run_cmd(c, T);
    let show = || {
        format!(
            "{out}\n--- hook log:\n{}",
            fs::read_to_string(user.hook_log()).unwrap_or_default()
        )
    };
    out.assert_success("rootless srun -n 2 --mpi=pmi2 hpc-rank --runtime podman");
    assert!(
        out.stdout.contains("world_size=2"),
        "a world of 2: {}",
        show()
    );
    assert!(
        out.stdout
            .contains(&format!("mpi_version=MPICH Version:\t{}", env.host.version))
            || out
                .stdout
                .lines()
                .any(|l| l.contains("mpi_version=MPICH Version:")
                    && l.trim_end().ends_with(&env.host.version)),
        "the host MPICH: {}",
        show()
    );
    assert!(out.stdout.contains("pingpong: ok"), "{}", show());
    let log = fs::read_to_string(user.hook_log()).unwrap_or_default();
    assert_eq!(
        log.matches("hook=mpi-hook").count(),
        2,
        "mpi-hook ran for both ranks: {log}"
    );
}

/// runc mode needs the real root: refused at once for the user, naming the way out.
#[test]
fn rootless_runc_mode_is_refused_naming_podman() {
    let env = hooked_env();
    let scratch = Scratch::new("rootless-runc");
    let launcher = copy_for_user(&hook_bin("hpc-rank"), &scratch.path().join("rank-bin"));
    let user = RootlessUser::create();
    let mut c = user.command(&launcher, &[]);
    c.arg(&env.rootfs).arg("/bin/true");
    let out = run_cmd(c, Duration::from_secs(30));
    out.assert_failure("hpc-rank (runc mode) as an unprivileged user");
    assert!(
        out.stderr.contains("--runtime podman"),
        "the refusal names --runtime podman:\n{out}"
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(125), "{out}");
    assert!(
        out.stderr
            .contains("hpc-rank: error: runc mode needs the real root"),
        "refused first, before the rootfs, hooks or runtime are looked at:\n{out}"
    );
}
