//! cgroup v2 device filtering: a cgroup whose BPF device program denies everything gets
//! our program in its place; a process in the cgroup can then open the allowed device
//! and still nothing else. Needs root and a cgroup2 mount (hybrid hosts have one at
//! /sys/fs/cgroup/unified); fails, never skips, when they are missing.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hooks_core::devices::bpf;
use hooks_core::devices::{DevType, DeviceNode};

fn cgroup2_mount() -> PathBuf {
    let mounts = hooks_core::mountinfo::read_self().expect("mountinfo");
    mounts
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
        .expect("this test needs a cgroup2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified)")
}

struct TestCgroup(PathBuf);
impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Runs `sh -c script` inside the cgroup; returns whether it exited 0.
fn run_in(cg: &Path, script: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let procs = std::ffi::CString::new(cg.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script);
    // SAFETY: between fork and exec only async-signal-safe calls (open, write, close) on
    // a C string allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd.status().expect("spawn sh").success()
}

fn setup(name: &str, multi: bool) -> (TestCgroup, tempfile::TempDir) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root"
    );
    let dir = cgroup2_mount().join(format!("hpc-hooks-test-{name}-{}", std::process::id()));
    std::fs::create_dir(&dir).expect("create test cgroup");
    let cg = TestCgroup(dir);
    // The "runtime's" filter: deny every device.
    let deny_all = [
        bpf::Insn {
            code: 0xb7,
            regs: 0,
            off: 0,
            imm: 0,
        },
        bpf::Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let prog = bpf::load(&deny_all).expect("load deny-all program");
    let f = std::fs::File::open(&cg.0).unwrap();
    bpf::attach(
        &f,
        &prog,
        if multi { bpf::BPF_F_ALLOW_MULTI } else { 0 },
        None,
    )
    .expect("attach deny-all program");
    let nodes = tempfile::tempdir().unwrap();
    for (n, minor) in [("null", 3), ("zero", 5)] {
        nix::sys::stat::mknod(
            &nodes.path().join(n),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, minor),
        )
        .expect("mknod");
    }
    (cg, nodes)
}

fn check(name: &str, multi: bool) {
    let (cg, nodes) = setup(name, multi);
    let null = nodes.path().join("null");
    let zero = nodes.path().join("zero");
    let w = |p: &Path| format!("echo x > {}", p.display());
    assert!(
        !run_in(&cg.0, &w(&null)),
        "control: the deny-all filter must block c 1:3"
    );
    let n = bpf::allow_in_cgroup(
        &cg.0,
        &[DeviceNode {
            dev_type: DevType::Char,
            major: 1,
            minor: 3,
        }],
    )
    .expect("allow c 1:3");
    assert_eq!(n, 1, "one program replaced");
    assert!(
        run_in(&cg.0, &w(&null)),
        "c 1:3 must now be writable in the cgroup"
    );
    assert!(
        !run_in(&cg.0, &w(&zero)),
        "c 1:5 must still be denied by the original program"
    );
    let (ids, _) = bpf::query(&std::fs::File::open(&cg.0).unwrap()).unwrap();
    assert_eq!(ids.len(), 1, "the old program was replaced, not stacked");
}

#[test]
fn allow_replaces_multi_attached_program() {
    check("multi", true);
}

#[test]
fn allow_replaces_single_attached_program() {
    check("single", false);
}

#[test]
fn no_program_means_nothing_to_do() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root"
    );
    let dir = cgroup2_mount().join(format!("hpc-hooks-test-none-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let cg = TestCgroup(dir);
    let n = bpf::allow_in_cgroup(
        &cg.0,
        &[DeviceNode {
            dev_type: DevType::Char,
            major: 1,
            minor: 3,
        }],
    )
    .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn prefix_program_shape() {
    let p = bpf::allow_prefix(&[
        DeviceNode {
            dev_type: DevType::Char,
            major: 195,
            minor: 0,
        },
        DeviceNode {
            dev_type: DevType::Block,
            major: 8,
            minor: 1,
        },
    ]);
    // 7 setup + 5 per device + ja + mov + exit
    assert_eq!(p.len(), 7 + 10 + 3);
    assert_eq!(p.last().unwrap().code, 0x95);
}
