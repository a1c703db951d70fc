//! An unprivileged user for the rootless tests: created by the tests (useradd, its
//! /etc/subuid and /etc/subgid ranges, its runtime directory /run/user/UID as logind
//! would make it), commands run as it (setpriv, a clean environment), and removed on drop
//! (its podman pause process, its ranges, the user and its home).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::binaries::require_command;
use crate::process::{run_cmd, RunOutput};

/// The user the rootless tests create and remove.
pub const ROOTLESS_USER: &str = "hpcrootless";
/// Its subordinate id range (start, count), as useradd would give.
const SUB_RANGE: (u32, u32) = (1_600_000, 65_536);
const T: Duration = Duration::from_secs(60);

/// The rootless test user; removed (with what rootless podman left running) on drop.
pub struct RootlessUser {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// `/run/user/UID`: `XDG_RUNTIME_DIR`, and where the hooks log when the admin's log
    /// file is not theirs to write.
    pub runtime_dir: PathBuf,
}

fn id_of(flag: &str) -> Option<u32> {
    Command::new("id")
        .args([flag, ROOTLESS_USER])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
}

/// Removes the lines of `user` from an /etc/subuid-style file.
fn drop_ranges(file: &str, user: &str) {
    if let Ok(text) = fs::read_to_string(file) {
        let kept: String = text
            .lines()
            .filter(|l| l.split(':').next() != Some(user))
            .map(|l| format!("{l}\n"))
            .collect();
        if kept != text {
            let _ = fs::write(file, kept);
        }
    }
}

impl RootlessUser {
    /// Creates the user (a leftover of an interrupted run is removed first), its id ranges
    /// and runtime directory. Fails with a message when a prerequisite is missing.
    pub fn create() -> RootlessUser {
        for c in ["useradd", "userdel", "setpriv", "podman"] {
            require_command(c);
        }
        for c in ["newuidmap", "newgidmap"] {
            if !Path::new("/usr/bin").join(c).exists() {
                panic!(
                    "PREREQUISITE MISSING: /usr/bin/{c}: rootless podman needs it \
                     (apt-get install uidmap, as .ci/run does)"
                );
            }
        }
        if id_of("-u").is_some() {
            remove_user();
        }
        let mut c = Command::new(require_command("useradd"));
        c.args(["--create-home", "--shell", "/bin/sh", ROOTLESS_USER]);
        run_cmd(c, T).assert_success("useradd of the rootless test user");
        let uid = id_of("-u").expect("uid of the rootless test user");
        let gid = id_of("-g").expect("gid of the rootless test user");
        // Our own range (useradd may have added one from /etc/login.defs: replaced).
        for file in ["/etc/subuid", "/etc/subgid"] {
            drop_ranges(file, ROOTLESS_USER);
            let mut text = fs::read_to_string(file).unwrap_or_default();
            text.push_str(&format!(
                "{ROOTLESS_USER}:{}:{}\n",
                SUB_RANGE.0, SUB_RANGE.1
            ));
            fs::write(file, text).unwrap_or_else(|e| panic!("write {file}: {e}"));
        }
        let runtime_dir = PathBuf::from(format!("/run/user/{uid}"));
        let _ = fs::remove_dir_all(&runtime_dir);
        fs::create_dir_all(&runtime_dir).unwrap();
        std::os::unix::fs::chown(&runtime_dir, Some(uid), Some(gid)).unwrap();
        fs::set_permissions(&runtime_dir, fs::Permissions::from_mode(0o700)).unwrap();
        RootlessUser {
            name: ROOTLESS_USER,
            uid,
            gid,
            home: PathBuf::from(format!("/home/{ROOTLESS_USER}")),
            runtime_dir,
        }
    }

    /// `program args...` run as the user (setpriv: its uid, gid and groups) with a clean
    /// environment: HOME, USER, XDG_RUNTIME_DIR, PATH, and `env` (`K=V`).
    pub fn command(&self, program: &Path, env: &[String]) -> Command {
        let mut c = Command::new(require_command("setpriv"));
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .args(["env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("USER={}", self.name))
            .arg(format!("LOGNAME={}", self.name))
            .arg(format!("XDG_RUNTIME_DIR={}", self.runtime_dir.display()))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin")
            .args(env)
            .arg(program)
            .current_dir("/");
        c
    }

    /// Runs `sh -c script` as the user.
    pub fn sh(&self, script: &str, timeout: Duration) -> RunOutput {
        let mut c = self.command(Path::new("/bin/sh"), &[]);
        c.args(["-c", script]);
        run_cmd(c, timeout)
    }

    /// The hooks' fallback log in the user's runtime directory (see hooks_core::logging).
    pub fn hook_log(&self) -> PathBuf {
        self.runtime_dir.join("hpc-hooks.log")
    }
}

/// Ends what rootless podman left running for the user (its pause process, by the pid
/// it recorded, and conmon monitors: only processes of the test user), then removes the
/// user, its home, ranges and runtime directory.
fn remove_user() {
    if let Some(uid) = id_of("-u") {
        let out = Command::new("pgrep")
            .args(["-u", &uid.to_string()])
            .output()
            .ok();
        for pid in out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) on a pid of the test user's processes; no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = fs::remove_dir_all(format!("/run/user/{uid}"));
    }
    let _ = Command::new("userdel")
        .args(["--remove", "--force", ROOTLESS_USER])
        .output();
    drop_ranges("/etc/subuid", ROOTLESS_USER);
    drop_ranges("/etc/subgid", ROOTLESS_USER);
}

impl Drop for RootlessUser {
    fn drop(&mut self) {
        remove_user();
    }
}

/// Makes `dir` and the directories above it that the tests made (scratch directories,
/// fake machines: 0700 temporary directories) searchable by others, so that the rootless
/// user reaches what a test put there. Any other directory on the way that others cannot
/// search (a checkout in root's home) is left alone and fails the test: copy what the user
/// needs into a scratch directory instead ([`copy_for_user`]).
pub fn make_reachable(dir: &Path) {
    let ours = |d: &Path| {
        let p = d.to_string_lossy();
        p.contains("/hpc-hooks-e2e-") || p.contains("/hpc-hooks-rootless-e2e")
    };
    for d in dir.ancestors() {
        let Ok(md) = fs::metadata(d) else { continue };
        let mode = md.permissions().mode();
        if mode & 0o001 != 0 {
            continue;
        }
        assert!(
            ours(d),
            "{} is not searchable by others, so the rootless test user cannot reach {}; \
             run the tests from a checkout others can read, or copy what the user needs into \
             a scratch directory",
            d.display(),
            dir.display()
        );
        let _ = fs::set_permissions(d, fs::Permissions::from_mode(mode | 0o055));
    }
}

/// A copy of the executable `src` in `dir` (created), mode 0755, that the rootless user
/// can run wherever the original is (a checkout in root's home).
pub fn copy_for_user(src: &Path, dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let dst = dir.join(src.file_name().expect("a file name"));
    fs::copy(src, &dst)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
    make_reachable(dir);
    dst
}

/// A copy of the cached rootfs `src` owned by `user`, as rootless podman needs (it creates
/// mount points such as `/run/.containerenv` in the image, which it cannot do in a tree
/// owned by the host's root, even on an `:O` overlay). Built once per cached rootfs and
/// user id, next to it in the cache (`<name>-uid<UID>/rootfs`); containers run on `:O`
/// overlays of it, so it is never modified.
pub fn rootfs_for_user(user: &RootlessUser, src: &Path) -> PathBuf {
    let entry = src
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .expect("a cached rootfs is <cache>/<name>-<hash>/rootfs");
    let cache = src
        .parent()
        .and_then(Path::parent)
        .expect("the cache directory");
    let dir = cache.join(format!("{entry}-uid{}", user.uid));
    let dst = dir.join("rootfs");
    if dir.join(".complete").exists() {
        return dst;
    }
    let tmp = dir.join(format!("rootfs.tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&dir).unwrap();
    let mut cp = Command::new(require_command("cp"));
    cp.arg("-a").arg(src).arg(&tmp);
    run_cmd(cp, Duration::from_secs(300))
        .assert_success("copy of the rootfs for the rootless user");
    let mut chown = Command::new(require_command("chown"));
    chown
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(&tmp);
    run_cmd(chown, Duration::from_secs(300)).assert_success("chown of the user's rootfs copy");
    let _ = fs::remove_dir_all(&dst);
    fs::rename(&tmp, &dst).unwrap();
    fs::write(dir.join(".complete"), "").unwrap();
    dst
}
