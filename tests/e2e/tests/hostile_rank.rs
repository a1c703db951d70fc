//! Issue 18 item 6: hpc-rank's privilege model, attacked end to end. A setuid or
//! file-capability copy, or sudo variables, make hpc-rank refuse; a `runc`/`podman` planted
//! first in PATH is never run; host-choosing options are root-only; an admin-allowed
//! wrapper works and runs the rank as its caller; rank cgroups sit under hpc-rank's own
//! cgroup (runc and podman, directly and under srun) and the epilog removes leftovers.
//! Prerequisites (runc, podman, slurm, gcc, setcap, useradd, rootfs) FAIL when missing.

use e2e_tests::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Unprivileged user the attacks run as (created with useradd when missing).
const TEST_USER: &str = "hpcrank-e2e";
const CONFIG: &str = "/etc/hpc-hooks/hpc-rank.conf";
const T: Duration = Duration::from_secs(120);

struct Env {
    _lock: E2eLock,
    rootfs: PathBuf,
    launcher: PathBuf,
    scratch: Scratch,
    /// Directory with `runc` and `podman` scripts that create `marker` when run.
    plant: PathBuf,
    marker: PathBuf,
}

fn env(tag: &str) -> Env {
    let lock = e2e_lock();
    require_command("runc");
    let rootfs = cached_rootfs();
    let launcher = hook_bin("hpc-rank");
    let scratch = Scratch::new(tag);
    // The unprivileged test user must reach the copies and the planted programs.
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let plant = scratch.subdir("plant");
    let marker = scratch.path().join("marker");
    for name in ["runc", "podman"] {
        let p = plant.join(name);
        fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"planted {name} $*\" >> {}\nexit 1\n",
                marker.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Writable by everyone, so a planted program run as the test user leaves its trace.
    fs::write(&marker, "").unwrap();
    fs::set_permissions(&marker, fs::Permissions::from_mode(0o666)).unwrap();
    Env {
        _lock: lock,
        rootfs,
        launcher,
        scratch,
        plant,
        marker,
    }
}

impl Env {
    fn assert_no_planted_run(&self, context: &str) {
        let m = fs::read_to_string(&self.marker).unwrap_or_default();
        assert!(
            m.is_empty(),
            "{context}: a runtime planted in PATH was executed:\n{m}"
        );
    }

    /// PATH with the planted runtimes first.
    fn planted_path(&self) -> String {
        format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.plant.display()
        )
    }

    /// `BIN --no-mpi --no-glibc [extra] ROOTFS cmd...` with a clean environment and the
    /// planted PATH.
    fn cmd(&self, bin: &Path, extra: &[&str], cmd: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.env_clear()
            .env("PATH", self.planted_path())
            .args(["--no-mpi", "--no-glibc"])
            .args(extra)
            .arg(&self.rootfs)
            .args(cmd);
        c
    }

    /// A copy of hpc-rank in the scratch directory, root-owned, with `mode`.
    fn copy(&self, name: &str, mode: u32) -> PathBuf {
        let p = self.scratch.path().join(name);
        fs::copy(&self.launcher, &p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

/// uid and gid of [`TEST_USER`], created when missing.
fn test_user() -> (u32, u32) {
    let id = |flag: &str| {
        Command::new("id")
            .args([flag, TEST_USER])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
    };
    if id("-u").is_none() {
        let mut c = Command::new(require_command("useradd"));
        c.args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            TEST_USER,
        ]);
        run_cmd(c, T).assert_success("PREREQUISITE MISSING: useradd of the test user");
    }
    (
        id("-u").expect("uid of the test user"),
        id("-g").expect("gid of the test user"),
    )
}

fn as_user(c: &mut Command) -> (u32, u32) {
    let (u, g) = test_user();
    c.uid(u).gid(g);
    (u, g)
}

fn code(out: &RunOutput) -> Option<i32> {
    out.status.and_then(|s| s.code())
}

fn assert_refused(out: &RunOutput, needles: &[&str], context: &str) {
    assert_eq!(code(out), Some(125), "{context}: exit status 125\n{out}");
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{context}: stderr must contain {n:?}\n{out}"
        );
    }
}

// ---------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------

/// A setuid-root copy run by an unprivileged user refuses before doing anything; the
/// same copy without the setuid bit does not print the refusal (the bit is the cause).
#[test]
fn setuid_copy_refuses_for_an_unprivileged_user() {
    let e = env("rank-setuid");
    let copy = e.copy("hpc-rank-suid", 0o4755);
    let mut c = e.cmd(&copy, &[], &["/bin/true"]);
    let (uid, _) = as_user(&mut c);
    let out = run_cmd(c, T);
    assert_refused(
        &out,
        &[
            "refuses to run with privileges handed to it by another user",
            &format!("setuid: effective uid 0, real uid {uid}"),
            "allow_wrapper=",
        ],
        "setuid copy",
    );
    e.assert_no_planted_run("setuid copy");

    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = e.cmd(&copy, &[], &["/bin/true"]);
    as_user(&mut c);
    let out = run_cmd(c, T);
    assert!(
        !out.stderr.contains("refuses to run with privileges"),
        "without the setuid bit there is nothing to refuse:\n{out}"
    );
    e.assert_no_planted_run("plain copy");
}

/// A copy with file capabilities (cap_sys_admin+ep, enough for runc mode's unshare)
/// refuses for an unprivileged user.
#[test]
fn file_capability_copy_refuses_for_an_unprivileged_user() {
    let e = env("rank-fcaps");
    let copy = e.copy("hpc-rank-caps", 0o755);
    let mut s = Command::new(require_command("setcap"));
    s.arg("cap_sys_admin+ep").arg(&copy);
    run_cmd(s, T).assert_success("PREREQUISITE MISSING: setcap on the copy");
    let mut c = e.cmd(&copy, &[], &["/bin/true"]);
    let (uid, _) = as_user(&mut c);
    let out = run_cmd(c, T);
    assert_refused(
        &out,
        &[
            "refuses to run with privileges",
            &format!("capabilities CapEff=0000000000200000 held by real uid {uid}"),
        ],
        "file-capability copy",
    );
    e.assert_no_planted_run("file-capability copy");
}

/// Under sudo (SUDO_UID or SUDO_USER set), hpc-rank refuses, naming the variable.
#[test]
fn sudo_variables_refuse() {
    let e = env("rank-sudo");
    for (var, val) in [("SUDO_UID", "1000"), ("SUDO_USER", "alice")] {
        let mut c = e.cmd(&e.launcher, &[], &["/bin/true"]);
        c.env(var, val);
        let out = run_cmd(c, T);
        assert_refused(
            &out,
            &[
                &format!("{var} is set (started through sudo)"),
                "parent process ",
            ],
            var,
        );
    }
    e.assert_no_planted_run("sudo");
}

/// A runc and a podman planted first in PATH are never run (runc mode, podman mode,
/// cleanup), and the real ones are: the rank's output comes back.
#[test]
fn runtimes_planted_in_path_are_never_executed() {
    let e = env("rank-path");
    let out = run_cmd(e.cmd(&e.launcher, &[], &["echo", "rank-ran-runc"]), T);
    out.assert_success("runc mode with a planted runc in PATH");
    assert!(out.stdout.contains("rank-ran-runc"), "{out}");
    let mut c = e.cmd(
        &e.launcher,
        &["--runtime", "podman"],
        &["echo", "rank-ran-podman"],
    );
    podman_env(&mut c);
    let out = run_cmd(c, T);
    out.assert_success("podman mode with planted runc and podman in PATH");
    assert!(out.stdout.contains("rank-ran-podman"), "{out}");
    let mut c = Command::new(&e.launcher);
    c.env_clear()
        .env("PATH", e.planted_path())
        .arg("--cleanup-stale");
    run_cmd(c, T).assert_success("--cleanup-stale with a planted PATH");
    e.assert_no_planted_run("root with planted runtimes in PATH");
    // A relative --runc is not looked up in PATH either.
    let out = run_cmd(e.cmd(&e.launcher, &["--runc", "runc"], &["/bin/true"]), T);
    assert_refused(&out, &["runc (not an absolute path)"], "--runc runc");
    e.assert_no_planted_run("--runc runc");
}

/// Options that choose what runs as root are refused for anyone but the real root,
/// whether given as flags or through their environment variables.
#[test]
fn host_choosing_options_are_root_only() {
    let e = env("rank-rootonly");
    let runc = e.plant.join("runc").display().to_string();
    let podman = e.plant.join("podman").display().to_string();
    let hooks = e.plant.display().to_string();
    // (flags, environment variable, option named in the refusal)
    type Case<'a> = (Vec<&'a str>, Option<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--runc", &runc], None, "--runc"),
        (
            vec!["--runtime", "podman", "--podman", &podman],
            None,
            "--podman",
        ),
        (vec!["--hooks-dir", &hooks], None, "--hooks-dir"),
        (vec!["--scratch", "/var/tmp"], None, "--scratch"),
        (vec!["--cdi-spec-dir", &hooks], None, "--cdi-spec-dir"),
        (vec![], Some(("HPC_RANK_RUNC", &runc)), "--runc"),
        (vec![], Some(("HPC_RANK_HOOKS_DIR", &hooks)), "--hooks-dir"),
        (
            vec!["--runtime", "podman"],
            Some(("HPC_RANK_PODMAN_GLOBAL_OPTS", "--runtime /tmp/x")),
            "HPC_RANK_PODMAN_GLOBAL_OPTS",
        ),
    ];
    for (args, var, option) in cases {
        let mut c = e.cmd(&e.launcher, &args, &["/bin/true"]);
        if let Some((k, v)) = var {
            c.env(k, v);
        }
        as_user(&mut c);
        let out = run_cmd(c, T);
        assert_refused(
            &out,
            &[&format!(
                "{option} chooses what runs as root and is only accepted from the real root"
            )],
            &format!("{args:?} {var:?} as an unprivileged user"),
        );
    }
    e.assert_no_planted_run("root-only options");
}

// ---------------------------------------------------------------------------
// The admin-allowed wrapper
// ---------------------------------------------------------------------------

/// A sudo-like compiled wrapper: full root, SUDO_* set to the caller, hpc-rank as its child.
const WRAPPER_C: &str = r#"
#define _GNU_SOURCE
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char b[32];
    if (argc < 2) return 2;
    snprintf(b, sizeof b, "%u", (unsigned)getuid()); setenv("SUDO_UID", b, 1);
    snprintf(b, sizeof b, "%u", (unsigned)getgid()); setenv("SUDO_GID", b, 1);
    setenv("SUDO_USER", "hpcrank-e2e", 1);
    if (setgroups(0, NULL) || setresgid(0, 0, 0) || setresuid(0, 0, 0)) { perror("wrapper"); return 3; }
    pid_t p = fork();
    if (p == 0) { execv(argv[1], argv + 1); perror("execv"); _exit(127); }
    int st = 0;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
"#;

/// Writes the admin config for the test and removes it (and /etc/hpc-hooks when the
/// test created it) on drop.
struct AdminConfig {
    created_dir: bool,
}

impl AdminConfig {
    fn write(text: &str, mode: u32) -> AdminConfig {
        let dir = Path::new(CONFIG).parent().unwrap();
        assert!(
            !Path::new(CONFIG).exists(),
            "{CONFIG} exists already; this test writes its own and would replace the site's: \
             move it away while the e2e tests run"
        );
        let created_dir = !dir.exists();
        fs::create_dir_all(dir).unwrap();
        fs::write(CONFIG, text).unwrap();
        fs::set_permissions(CONFIG, fs::Permissions::from_mode(mode)).unwrap();
        AdminConfig { created_dir }
    }
}

impl Drop for AdminConfig {
    fn drop(&mut self) {
        let _ = fs::remove_file(CONFIG);
        if self.created_dir {
            let _ = fs::remove_dir(Path::new(CONFIG).parent().unwrap());
        }
    }
}

/// With `allow_wrapper=` naming it, the wrapper's child runs the rank as the wrapper's
/// caller (not root); through it --bind, hook variables, root-only options and a rootfs
/// the caller cannot reach are refused; a copy of the same wrapper at another path, and
/// a group-writable config, are refused.
#[test]
fn admin_allowed_wrapper_runs_the_rank_as_its_caller() {
    let e = env("rank-wrapper");
    let src = e.scratch.path().join("wrapper.c");
    fs::write(&src, WRAPPER_C).unwrap();
    let wrapper = e.scratch.path().join("hpc-rank-wrapper");
    let mut cc = Command::new(require_command("gcc"));
    cc.arg("-o").arg(&wrapper).arg(&src);
    run_cmd(cc, T).assert_success("PREREQUISITE MISSING: gcc for the test wrapper");
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o4755)).unwrap();
    let other = e.scratch.path().join("other-wrapper");
    fs::copy(&wrapper, &other).unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o4755)).unwrap();
    let (uid, gid) = test_user();
    let through = |w: &Path, extra: &[&str], cmd: &[&str]| {
        let mut c = Command::new(w);
        c.env_clear()
            .env("PATH", e.planted_path())
            .arg(&e.launcher)
            .args(["--no-mpi", "--no-glibc"])
            .args(extra)
            .arg(&e.rootfs)
            .args(cmd);
        as_user(&mut c);
        run_cmd(c, T)
    };

    // No config: the wrapper is refused like sudo.
    let out = through(&wrapper, &[], &["/bin/true"]);
    assert_refused(
        &out,
        &[
            "SUDO_UID is set",
            &format!("parent process {}", wrapper.display()),
        ],
        "wrapper without config",
    );

    let _cfg = AdminConfig::write(
        &format!("# test\nallow_wrapper={}\n", wrapper.display()),
        0o644,
    );
    let out = through(
        &wrapper,
        &[],
        &["sh", "-c", "echo rank-ids=$(id -u):$(id -g)"],
    );
    out.assert_success("rank through the allowed wrapper");
    assert!(
        out.stdout.contains(&format!("rank-ids={uid}:{gid}")),
        "the rank must run as the wrapper's caller ({uid}:{gid}), not root\n{out}"
    );
    let out = through(&wrapper, &["--bind", "/etc:/host-etc"], &["/bin/true"]);
    assert_refused(
        &out,
        &[&format!(
            "--bind is refused when hpc-rank runs through the wrapper {}",
            wrapper.display()
        )],
        "--bind through the wrapper",
    );
    let out = through(
        &wrapper,
        &["--env", "HPC_HOOKS_LOG_FILE=/etc/ld.so.preload"],
        &["/bin/true"],
    );
    assert_refused(
        &out,
        &["--env HPC_HOOKS_LOG_FILE=..."],
        "--env through the wrapper",
    );
    let runc = e.plant.join("runc").display().to_string();
    let out = through(&wrapper, &["--runc", &runc], &["/bin/true"]);
    assert_refused(
        &out,
        &["--runc chooses what runs as root"],
        "--runc through the wrapper",
    );
    // PMIx directories named by the caller's environment are not bound through a wrapper.
    let pmix = e.scratch.subdir("pmix-caller");
    nix_chown(&pmix, uid, gid);
    let mut c = Command::new(&wrapper);
    c.env_clear()
        .env("PATH", e.planted_path())
        .env("PMIX_SERVER_TMPDIR", &pmix)
        .arg(&e.launcher)
        .args(["--no-mpi", "--no-glibc"])
        .arg(&e.rootfs)
        .args(["sh", "-c"])
        .arg(format!(
            "test -e {} && echo pmix=present || echo pmix=absent",
            pmix.display()
        ));
    as_user(&mut c);
    let out = run_cmd(c, T);
    out.assert_success("PMIx directory through the wrapper");
    assert!(
        out.stdout.contains("pmix=absent")
            && out.stderr.contains(&format!(
                "the PMIx directories {} are not bound",
                pmix.display()
            )),
        "through a wrapper the caller's PMIx directory is not bound, with a note\n{out}"
    );
    // A rootfs the caller cannot reach (under a root-only 0700 directory) is refused.
    let private = e.scratch.subdir("private");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let hidden = private.join("rootfs");
    fs::create_dir(&hidden).unwrap();
    let mut m = Command::new("mount");
    m.arg("--bind").arg(&e.rootfs).arg(&hidden);
    run_cmd(m, T).assert_success("bind the rootfs under a 0700 directory");
    let mut c = Command::new(&wrapper);
    c.env_clear()
        .env("PATH", e.planted_path())
        .arg(&e.launcher)
        .args(["--no-mpi", "--no-glibc"])
        .arg(&hidden)
        .arg("/bin/true");
    as_user(&mut c);
    let out = run_cmd(c, T);
    let _ = Command::new("umount").arg(&hidden).status();
    assert_refused(
        &out,
        &[&format!(
            "rootfs {}: uid {uid} cannot reach it",
            hidden.display()
        )],
        "a rootfs the caller cannot reach",
    );
    let out = through(&other, &[], &["/bin/true"]);
    assert_refused(
        &out,
        &[&format!("parent process {}", other.display())],
        "a wrapper the config does not name",
    );
    fs::set_permissions(CONFIG, fs::Permissions::from_mode(0o664)).unwrap();
    let out = through(&wrapper, &[], &["/bin/true"]);
    assert_refused(
        &out,
        &[
            &format!("the admin config {CONFIG} is not trusted"),
            "mode 664",
        ],
        "group-writable config",
    );
    e.assert_no_planted_run("wrapper");
}

// ---------------------------------------------------------------------------
// Cgroup placement
// ---------------------------------------------------------------------------

/// v1 hierarchies the test moves the launcher into (cpuset needs cpus/mems first).
const MOVED: &[&str] = &["memory", "pids", "cpu", "devices", "freezer", "blkio"];

/// A cgroup `/<name>` in each of [`MOVED`], removed (with anything below) on drop.
struct TestCgroup {
    name: String,
}

impl TestCgroup {
    fn new(tag: &str) -> TestCgroup {
        let name = unique_id(tag);
        for c in MOVED {
            let d = Path::new("/sys/fs/cgroup").join(c).join(&name);
            fs::create_dir_all(&d).unwrap_or_else(|e| {
                panic!(
                    "PREREQUISITE MISSING: cannot create the cgroup {} ({e}); the test needs \
                     cgroup v1 with the {MOVED:?} controllers mounted under /sys/fs/cgroup",
                    d.display()
                )
            });
        }
        TestCgroup { name }
    }

    /// Shell that moves itself into the test cgroup, prints its own /proc/self/cgroup
    /// prefixed with `own:` and execs `launcher ARGS`.
    fn script(&self) -> String {
        let moves: String = MOVED
            .iter()
            .map(|c| {
                format!(
                    "echo $$ > /sys/fs/cgroup/{c}/{}/cgroup.procs && ",
                    self.name
                )
            })
            .collect();
        format!("{moves}sed 's/^/own:/' /proc/self/cgroup && exec \"$@\"")
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // podman creates its absolute --cgroup-parent in every hierarchy.
        let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for c in rd.flatten() {
            let root = c.path().join(&self.name);
            if !root.is_dir() {
                continue;
            }
            let mut dirs: Vec<PathBuf> = walk_dirs(&root);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                let _ = fs::remove_dir(d);
            }
        }
    }
}

fn walk_dirs(root: &Path) -> Vec<PathBuf> {
    let mut v = vec![root.to_path_buf()];
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                v.extend(walk_dirs(&e.path()));
            }
        }
    }
    v
}

/// `controllers -> path` of the `own:`-prefixed lines (`own == true`) or of the others.
fn cgroup_lines(stdout: &str, own: bool) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| match (own, l.strip_prefix("own:")) {
            (true, Some(r)) => Some(r),
            (false, None) => Some(l),
            _ => None,
        })
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, c, p) = (it.next()?, it.next()?, it.next()?);
            p.starts_with('/').then(|| (c.to_string(), p.to_string()))
        })
        .collect()
}

/// The rank's /proc/self/cgroup (read inside the container) is under hpc-rank's own
/// cgroup in every hierarchy, in `hpc-rank/<prefix>...`.
fn assert_placement(out: &RunOutput, cg: &TestCgroup, prefix: &str, context: &str) {
    out.assert_success(context);
    let own = cgroup_lines(&out.stdout, true);
    let rank = cgroup_lines(&out.stdout, false);
    for c in MOVED {
        assert_eq!(
            own.get(*c).map(String::as_str),
            Some(format!("/{}", cg.name).as_str()),
            "{context}: the launcher must have been moved into the test cgroup ({c})\n{out}"
        );
        let p = rank
            .get(*c)
            .unwrap_or_else(|| panic!("{context}: no {c} line from the rank\n{out}"));
        let want = format!("/{}/hpc-rank/{prefix}", cg.name);
        assert!(
            p.starts_with(&want),
            "{context}: the rank's {c} cgroup {p} must be under hpc-rank's own ({want}...)\n{out}"
        );
    }
    for (c, p) in &rank {
        let base = own.get(c).map_or("/", String::as_str).trim_end_matches('/');
        assert!(
            p.starts_with(&format!("{base}/")),
            "{context}: the rank's {c} cgroup {p} is outside hpc-rank's own {base}\n{out}"
        );
    }
}

/// podman as the harness runs it (runc, cgroupfs), with an RLIMIT_NPROC runc may set.
fn podman_env(c: &mut Command) {
    require_command("podman");
    c.env(
        "HPC_RANK_PODMAN_GLOBAL_OPTS",
        "--runtime runc --cgroup-manager cgroupfs",
    )
    .env("HPC_RANK_PODMAN_RUN_OPTS", "--ulimit nproc=1024:1024");
}

fn placement_cmd(e: &Env, cg: &TestCgroup, podman: bool, srun_conf: Option<&str>) -> Command {
    let mut c = match srun_conf {
        Some(conf) => {
            let mut c = Command::new(require_command("srun"));
            for (k, _) in std::env::vars() {
                if k.starts_with("SLURM_") || k.starts_with("PMI_") {
                    c.env_remove(k);
                }
            }
            c.env("SLURM_CONF", conf)
                .args(["-n", "1", "-J", "e2e-rank-cgroup"]);
            c.arg("bash");
            c
        }
        None => Command::new("bash"),
    };
    c.args(["-c", &cg.script(), "placement"]).arg(&e.launcher);
    if podman {
        c.args(["--runtime", "podman"]);
        podman_env(&mut c);
    }
    c.args(["--no-mpi", "--no-glibc"])
        .arg(&e.rootfs)
        .args(["cat", "/proc/self/cgroup"]);
    c
}

#[test]
fn runc_rank_cgroup_is_under_the_launchers_cgroup() {
    let e = env("rank-cg-runc");
    let cg = TestCgroup::new("cg-runc");
    let out = run_cmd(placement_cmd(&e, &cg, false, None), T);
    assert_placement(&out, &cg, "hpcrank-nojob.x-0-", "runc rank");
}

#[test]
fn podman_rank_cgroup_is_under_the_launchers_cgroup() {
    let e = env("rank-cg-podman");
    let cg = TestCgroup::new("cg-podman");
    let out = run_cmd(placement_cmd(&e, &cg, true, None), T);
    assert_placement(&out, &cg, "libpod-", "podman rank");
}

#[test]
fn srun_runc_rank_cgroup_is_under_the_steps_cgroup() {
    let e = env("rank-cg-srun");
    let conf = slurm_up(&e.launcher);
    let cg = TestCgroup::new("cg-srun");
    let out = run_cmd(placement_cmd(&e, &cg, false, Some(&conf)), T);
    assert_placement(&out, &cg, "hpcrank-", "runc rank under srun");
}

#[test]
fn srun_podman_rank_cgroup_is_under_the_steps_cgroup() {
    let e = env("rank-cg-srun-podman");
    let conf = slurm_up(&e.launcher);
    let cg = TestCgroup::new("cg-srun-podman");
    let out = run_cmd(placement_cmd(&e, &cg, true, Some(&conf)), T);
    assert_placement(&out, &cg, "libpod-", "podman rank under srun");
}

/// The epilog removes rank cgroups left under a step's cgroup (launcher gone) and their
/// empty `hpc-rank` parent, and leaves other cgroups alone.
#[test]
fn epilog_removes_leftover_rank_cgroups_under_the_step() {
    let e = env("rank-cg-epilog");
    let cg = TestCgroup::new("cg-epilog");
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let job = format!("{}", 900_000 + std::process::id() % 99_999);
    let left = format!("hpcrank-{job}.0-0-{dead_pid}");
    let mut made = Vec::new();
    for c in ["memory", "pids"] {
        let base = Path::new("/sys/fs/cgroup").join(c).join(&cg.name);
        let d = base.join("hpc-rank").join(&left);
        fs::create_dir_all(&d).unwrap();
        fs::create_dir_all(base.join("hpc-rank/conmon")).unwrap();
        fs::create_dir_all(base.join("keep-me")).unwrap();
        made.push(base);
    }
    let mut c = Command::new("bash");
    c.arg(workspace_root().join("packaging/slurm/epilog-hpc-rank.sh"))
        .env("HPC_RANK", &e.launcher)
        .env("SLURM_JOB_ID", &job);
    let out = run_cmd(c, T);
    out.assert_success("epilog");
    for base in made {
        assert!(
            !base.join("hpc-rank").exists(),
            "the epilog must remove {}/hpc-rank/{left} and the empty parent\n{out}",
            base.display()
        );
        assert!(base.join("keep-me").is_dir(), "other cgroups stay\n{out}");
    }
    assert!(
        out.stderr.contains("removed leftover cgroup:") && out.stderr.contains(&left),
        "the epilog reports what it removed\n{out}"
    );
}

fn nix_chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}
