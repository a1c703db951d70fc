//! Issue 18, attack 1: PMIx directories named by the container's environment
//! (`PMIX_SYSTEM_TMPDIR`...) must never grant host devices, be bound read-write, or be
//! raced into a host device node. Real runc, the MPICH test rootfs and mpi-hook.
//!
//! Asserted from inside the container (its cgroup v1 `devices.list`, its mount table,
//! `touch`, `[ -b ]`) and from the hook log (why a directory was skipped or bound).

use e2e_tests::*;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEVICES_LIST: &str = "/sys/fs/cgroup/devices/devices.list";

/// Shell script printing what the container sees at `dir`, between markers.
fn probe_script(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "P='{d}'\n\
         if [ -b \"$P\" ]; then echo PROBE-BLOCKDEV; fi\n\
         if [ -c \"$P\" ]; then echo PROBE-CHARDEV; fi\n\
         if [ -d \"$P\" ]; then echo PROBE-DIR; fi\n\
         echo DEVLIST-BEGIN; cat {DEVICES_LIST}; echo DEVLIST-END\n\
         echo MOUNTINFO-BEGIN; cat /proc/self/mountinfo; echo MOUNTINFO-END\n\
         if touch \"$P/probe-write\" 2>/tmp/touch.err; then echo PROBE-TOUCHED; \
         else echo \"PROBE-TOUCH-FAILED: $(cat /tmp/touch.err)\"; fi\n"
    )
}

fn section<'a>(out: &'a str, begin: &str, end: &str) -> &'a str {
    let Some((_, rest)) = out.split_once(begin) else {
        return "";
    };
    rest.split_once(end).map(|(s, _)| s).unwrap_or(rest)
}

/// The container's device cgroup rules (cgroup v1 `devices.list`).
fn devices_list(out: &RunOutput) -> Vec<String> {
    let list: Vec<String> = section(&out.stdout, "DEVLIST-BEGIN", "DEVLIST-END")
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        list.iter().any(|l| l.starts_with("c 1:3 ")),
        "the container's {DEVICES_LIST} could not be read or is not restricted \
         (no `c 1:3` rule for /dev/null): the test needs cgroup v1 devices\n{out}"
    );
    assert!(
        !list.iter().any(|l| l.starts_with("a ")),
        "the container's device cgroup allows everything: the test cannot see a grant\n{out}"
    );
    list
}

/// Rules naming one device node (not the runtime's `b *:* m` / `c *:* m` wildcards).
fn specific_rules(list: &[String], ty: char) -> Vec<String> {
    list.iter()
        .filter(|l| {
            l.starts_with(&format!("{ty} "))
                && l[2..]
                    .split(':')
                    .next()
                    .is_some_and(|m| m.chars().all(|c| c.is_ascii_digit()))
        })
        .cloned()
        .collect()
}

/// Mount options (per-mount field) of the mounts at `dir` seen by the container.
fn mounts_at(out: &RunOutput, dir: &Path) -> Vec<String> {
    let want = dir.to_string_lossy();
    section(&out.stdout, "MOUNTINFO-BEGIN", "MOUNTINFO-END")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 5 && f[4] == want).then(|| f[5].to_string())
        })
        .collect()
}

fn runc_bundle(scratch: &Scratch, rootfs: &Path, dir: &Path, var: &str) -> Bundle {
    let script = probe_script(dir);
    let mut b = Bundle::new(
        scratch.path(),
        "bundle",
        rootfs,
        &["/bin/sh", "-c", &script],
    );
    b.enable_hooks(true, true);
    let (mpi, glibc) = (Hook::mpi(&b.log, "info"), Hook::glibc(&b.log, "info"));
    b.add_hook("createRuntime", &mpi);
    b.add_hook("createRuntime", &glibc);
    b.add_env(&format!("{var}={}", dir.display()));
    b
}

fn root_owned_pmix_dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&d, Some(0), Some(0)).unwrap();
    d
}

/// (a) A directory owned by the container's user (uid 4242, named by config.json's
/// process.user) with `k -> /dev/kmsg` inside: not bound, no `c 1:11` grant, the log
/// says why.
#[test]
fn user_owned_pmix_dir_is_not_bound_and_grants_nothing() {
    let env = hooked_env();
    let scratch = Scratch::new("pmix-user");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let evil = scratch.path().join("pmix-evil");
    fs::create_dir(&evil).unwrap();
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).unwrap();
    symlink("/dev/kmsg", evil.join("k")).unwrap();
    std::os::unix::fs::chown(&evil, Some(4242), Some(4242)).unwrap();
    let mut b = runc_bundle(&scratch, &ov.merged, &evil, "PMIX_SYSTEM_TMPDIR");
    b.config["process"]["user"] = serde_json::json!({"uid": 4242, "gid": 4242});
    let out = b.run_runc();
    out.assert_success("runc with a user-owned PMIX_SYSTEM_TMPDIR");
    let list = devices_list(&out);
    assert!(
        !list.iter().any(|l| l.starts_with("c 1:11")),
        "the hook granted /dev/kmsg (c 1:11) from the user's PMIx directory: {list:?}\n{out}"
    );
    assert!(
        mounts_at(&out, &evil).is_empty(),
        "the user-owned PMIx directory was bound into the container\n{out}"
    );
    assert!(!out.stdout.contains("PROBE-DIR"), "{out}");
    let log = fs::read_to_string(&b.log).unwrap_or_default();
    let why = format!(
        "PMIx directory {} not bound: owned by uid 4242, neither root nor the hook's own uid 0",
        evil.display()
    );
    assert!(
        log.contains(&why),
        "the hook log does not say why the directory was skipped (want `{why}`)\n{log}"
    );
}

/// (a) A root-owned PMIx directory with `k -> /dev/kmsg` inside: bound read-only
/// (nosuid,nodev,noexec), never scanned for devices.
#[test]
fn root_owned_pmix_dir_is_bound_read_only_without_devices() {
    let env = hooked_env();
    let scratch = Scratch::new("pmix-root");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let dir = root_owned_pmix_dir(scratch.path(), "pmix-1234");
    symlink("/dev/kmsg", dir.join("k")).unwrap();
    fs::write(dir.join("marker"), b"pmix").unwrap();
    let b = runc_bundle(&scratch, &ov.merged, &dir, "PMIX_SERVER_TMPDIR");
    let out = b.run_runc();
    out.assert_success("runc with a root-owned PMIX_SERVER_TMPDIR");
    let list = devices_list(&out);
    assert!(
        !list.iter().any(|l| l.starts_with("c 1:11")),
        "the hook granted /dev/kmsg (c 1:11) through the PMIx directory: {list:?}\n{out}"
    );
    let opts = mounts_at(&out, &dir);
    assert_eq!(
        opts.len(),
        1,
        "expected one mount at {}\n{out}",
        dir.display()
    );
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            opts[0].split(',').any(|x| x == o),
            "the PMIx bind has options {} (missing {o})\n{out}",
            opts[0]
        );
    }
    assert!(
        out.stdout.contains("PROBE-TOUCH-FAILED:") && out.stdout.contains("Read-only file system"),
        "touch inside the bound PMIx directory must fail with `Read-only file system`\n{out}"
    );
    assert!(
        !dir.join("probe-write").exists(),
        "the container wrote into the host PMIx directory"
    );
    let log = fs::read_to_string(&b.log).unwrap_or_default();
    assert!(
        log.contains(&format!(
            "bound the PMIx directory {} read-only",
            dir.display()
        )),
        "the hook log does not record the bind\n{log}"
    );
}

/// A config.json mount covering the directory: left to it (logged).
#[test]
fn pmix_dir_covered_by_config_mount_is_left_alone() {
    let env = hooked_env();
    let scratch = Scratch::new("pmix-covered");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let dir = root_owned_pmix_dir(scratch.path(), "pmix.7.0");
    let mut b = runc_bundle(&scratch, &ov.merged, &dir, "PMIX_SERVER_TMPDIR");
    b.add_bind_mount(&dir, &dir.to_string_lossy());
    let out = b.run_runc();
    out.assert_success("runc with a PMIx directory bound by config.json");
    let opts = mounts_at(&out, &dir);
    assert_eq!(
        opts.len(),
        1,
        "expected only config.json's mount at {}\n{out}",
        dir.display()
    );
    let log = fs::read_to_string(&b.log).unwrap_or_default();
    assert!(
        log.contains(&format!(
            "PMIx directory {} not bound: already mounted by config.json",
            dir.display()
        )),
        "{log}"
    );
}

/// First block device node in the host's /dev.
fn host_block_device() -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir("/dev")
        .expect("read /dev")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
        .map(|e| e.path())
        .collect();
    found.sort();
    found.into_iter().next().unwrap_or_else(|| {
        panic!(
            "no block device node in /dev: the race test needs one (a loop device: \
             `losetup -f` / `modprobe loop`, or the disk)"
        )
    })
}

/// Stops the swapping thread also when an assertion panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn renameat2_exchange(a: &CString, b: &CString) -> std::io::Result<()> {
    // SAFETY: renameat2 with two NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// (b) The race: a thread swaps (RENAME_EXCHANGE) a root-owned PMIx directory with a
/// symlink to a host block device while containers start. The hook must never bind a
/// block device, grant a `b` rule or bind the directory writable.
#[test]
fn pmix_dir_swapped_for_block_device_symlink_never_wins() {
    const RUNS: usize = 100;
    const TIME_BOUND: Duration = Duration::from_secs(240);
    let env = hooked_env();
    let blk = host_block_device();
    let scratch = Scratch::new("pmix-race");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let dir = root_owned_pmix_dir(scratch.path(), "pmix-race");
    fs::write(dir.join("marker"), b"pmix").unwrap();
    let swap = scratch.path().join("pmix-swap");
    symlink(&blk, &swap).unwrap();
    let b = runc_bundle(&scratch, &ov.merged, &dir, "PMIX_SYSTEM_TMPDIR");

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let (a, c) = (
        CString::new(dir.as_os_str().as_bytes()).unwrap(),
        CString::new(swap.as_os_str().as_bytes()).unwrap(),
    );
    let _stop_racer = StopOnDrop(stop.clone());
    let racer = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        std::thread::spawn(move || -> Result<(), String> {
            while !stop.load(Ordering::Relaxed) {
                renameat2_exchange(&a, &c).map_err(|e| format!("renameat2: {e}"))?;
                swaps.fetch_add(1, Ordering::Relaxed);
            }
            // Leave the directory at its name (an even number of swaps).
            if swaps.load(Ordering::Relaxed) % 2 == 1 {
                renameat2_exchange(&a, &c).map_err(|e| format!("renameat2: {e}"))?;
            }
            Ok(())
        })
    };

    let started = Instant::now();
    let (mut bound, mut skipped, mut runs) = (0usize, 0usize, 0usize);
    let mut failure: Option<String> = None;
    while runs < RUNS && started.elapsed() < TIME_BOUND {
        runs += 1;
        let _ = fs::write(&b.log, b"");
        let out = b.run_runc();
        let log = fs::read_to_string(&b.log).unwrap_or_default();
        let check = || -> Result<(), String> {
            if !out.success() {
                return Err(format!("run {runs}: the container failed\n{out}"));
            }
            if out.stdout.contains("PROBE-BLOCKDEV") || out.stdout.contains("PROBE-CHARDEV") {
                return Err(format!(
                    "run {runs}: the container sees a device node at {} (the race won)\n{out}",
                    dir.display()
                ));
            }
            let list = devices_list(&out);
            let blocks = specific_rules(&list, 'b');
            if !blocks.is_empty() {
                return Err(format!(
                    "run {runs}: block device rules added to the container's cgroup: {blocks:?}\n{out}"
                ));
            }
            for o in mounts_at(&out, &dir) {
                if !o.split(',').any(|x| x == "ro") || !o.split(',').any(|x| x == "nodev") {
                    return Err(format!(
                        "run {runs}: the PMIx path is mounted with `{o}` (not ro,nodev)\n{out}"
                    ));
                }
            }
            if out.stdout.contains("PROBE-TOUCHED") && !mounts_at(&out, &dir).is_empty() {
                return Err(format!(
                    "run {runs}: the bound PMIx directory is writable\n{out}"
                ));
            }
            Ok(())
        };
        if let Err(e) = check() {
            failure = Some(e);
            break;
        }
        if log.contains("bound the PMIx directory") {
            bound += 1;
        } else if log.contains(&format!("PMIx directory {} not bound:", dir.display())) {
            skipped += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let racer_result = racer.join().expect("racer thread panicked");
    if let Some(f) = failure {
        panic!("{f}");
    }
    racer_result.unwrap_or_else(|e| panic!("the swapping thread failed: {e}"));
    let n = swaps.load(Ordering::Relaxed);
    eprintln!(
        "race: {runs} runs in {:?}, {n} swaps, directory bound {bound} times, refused {skipped} times",
        started.elapsed()
    );
    assert!(
        runs >= 10,
        "only {runs} container runs within {TIME_BOUND:?}: the race was barely exercised"
    );
    assert!(n > 1000, "only {n} swaps: the race was not exercised");
    assert!(
        bound > 0,
        "the hook never bound the real directory in {runs} runs ({n} swaps): the race was not exercised"
    );
    assert!(
        skipped > 0,
        "the hook never saw the symlink in {runs} runs ({n} swaps): the race was not exercised"
    );
    assert!(
        fs::symlink_metadata(&blk).is_ok_and(|m| m.file_type().is_block_device()),
        "{} is no longer a block device node",
        blk.display()
    );
}
