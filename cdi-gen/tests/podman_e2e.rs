//! End-to-end: a spec generated for a fake machine is installed in /etc/cdi and podman
//! 4.3 (runc, cgroupfs) runs containers with `--device <kind>=0`, `=all` and a MIG name;
//! inside, the device nodes have the right type/major/minor and a program can dlopen the
//! injected stub `libcuda.so.1`. Fails (does not skip) when podman is missing. One test
//! function, so the cases run serially.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use test_support::{FakeMachine, MachineSpec, MigSpec};

const DLOPEN_TEST: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    const char *lib = argc > 1 ? argv[1] : "libcuda.so.1";
    void *h = dlopen(lib, RTLD_NOW);
    if (!h) { printf("dlopen failed: %s\n", dlerror()); return 1; }
    int (*cu_init)(unsigned) = (int (*)(unsigned))dlsym(h, "cuInit");
    if (!cu_init) { printf("dlsym cuInit failed\n"); return 1; }
    printf("dlopen %s ok, cuInit=%d\n", lib, cu_init(0));
    return 0;
}
"#;

fn run(cmd: &mut Command) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Host libraries the test program needs (libc and the loader), from `ldd`.
fn host_libs(prog: &Path) -> Vec<PathBuf> {
    let out = run(Command::new("ldd").arg(prog));
    out.lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(PathBuf::from)
        .collect()
}

/// A minimal rootfs (static busybox + the dlopen program + host libc and loader), built
/// once and cached under /var/cache/hpc-hooks-tests/ by a hash of its recipe.
fn cached_rootfs() -> PathBuf {
    let mut h = DefaultHasher::new();
    DLOPEN_TEST.hash(&mut h);
    "recipe-v1: busybox-static, dlopen-test, libc+ld".hash(&mut h);
    let bb = std::fs::metadata("/bin/busybox").expect("/bin/busybox (busybox-static) is needed");
    (bb.len(), bb.modified().ok()).hash(&mut h);
    let dir = PathBuf::from(format!(
        "/var/cache/hpc-hooks-tests/cdi-gen-rootfs-{:016x}",
        h.finish()
    ));
    if dir.join(".complete").exists() {
        return dir;
    }
    // One build directory per test thread: the tests of this file run in parallel and
    // may both build the rootfs on a fresh machine.
    let thread =
        format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_digit(), "");
    let tmp = dir.with_extension(format!("tmp{}-{thread}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "etc",
        "tmp",
        "usr/lib/x86_64-linux-gnu",
    ] {
        std::fs::create_dir_all(tmp.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", tmp.join("bin/busybox")).unwrap();
    for applet in ["sh", "stat", "ls", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", tmp.join("bin").join(applet)).unwrap();
    }
    let src = tmp.join("dlopen-test.c");
    std::fs::write(&src, DLOPEN_TEST).unwrap();
    let prog = tmp.join("bin/dlopen-test");
    run(Command::new("gcc")
        .arg("-O1")
        .arg("-o")
        .arg(&prog)
        .arg(&src));
    std::fs::remove_file(&src).unwrap();
    for lib in host_libs(&prog) {
        let dst = tmp.join(lib.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&lib, &dst).unwrap();
    }
    std::fs::write(tmp.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    std::fs::write(tmp.join(".complete"), "").unwrap();
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => dir,
        Err(_) if dir.join(".complete").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            dir
        }
        Err(e) => panic!("cannot install {}: {e}", dir.display()),
    }
}

/// Removes the installed spec even when an assertion fails.
struct Installed(PathBuf);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn podman(rootfs: &Path, device: &str, script: &str) -> String {
    let out = run(Command::new("podman")
        .args([
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "-e",
            "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu",
            "--device",
            device,
            "--rootfs",
        ])
        .arg(rootfs)
        .args(["/bin/sh", "-c", script]));
    eprintln!("--device {device}:\n{out}");
    out
}

#[test]
fn podman_runs_generated_spec() {
    let which = Command::new("podman").arg("--version").output();
    let version = match which {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        other => {
            panic!("podman is required for this end-to-end test (install podman 4.3): {other:?}")
        }
    };
    eprintln!("using {}", version.trim());
    // GPU 0 whole, GPU 1 in MIG mode with two MIG devices.
    let mut spec = MachineSpec::nvidia(2);
    spec.gpus[1].mig_mode = true;
    spec.gpus[1].migs = (0..2)
        .map(|j| MigSpec {
            gi: 7 + j,
            ci: 0,
            uuid: format!("MIG-e2e00000-aaaa-bbbb-cccc-{j:012x}"),
        })
        .collect();
    let m = FakeMachine::build(&spec);
    // gpu-hook does not exist yet: no hooks; SONAME paths become bind mounts instead.
    let class = format!("gpu-e2e-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_cdi-gen"))
        .arg("--driver-root")
        .arg(&m.root)
        .arg("--sysfs-root")
        .arg(&m.sys)
        .arg("--procfs-root")
        .arg(&m.proc)
        .env("MOCK_NVML_CONFIG", &m.nvml_config)
        .args(["--class", &class, "--disable-hook", "all"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::create_dir_all("/etc/cdi").unwrap();
    let installed = Installed(PathBuf::from(format!(
        "/etc/cdi/cdi-gen-e2e-{}.yaml",
        std::process::id()
    )));
    std::fs::write(&installed.0, &out.stdout).unwrap();
    // The spec loads in our own validator the way podman will load it.
    let v = run(Command::new(env!("CARGO_BIN_EXE_cdi-gen"))
        .arg("validate")
        .arg(&installed.0));
    assert!(v.contains("ok: cdiVersion 0.5.0"), "{v}");

    // A private copy of the cached rootfs: runc creates mount points in it.
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    run(Command::new("cp")
        .arg("-a")
        .arg(cached_rootfs())
        .arg(&rootfs));

    let kind = format!("nvidia.com/{class}");
    let caps = |gi: u32, ci: Option<u32>| test_support::mig_minor(1, gi, ci);
    let stat = "stat -c '%n %F %t %T'";

    // GPU 0: /dev/nvidia0 (195:0), control nodes, DRM nodes; libcuda.so.1 loads.
    let o = podman(
        &rootfs,
        &format!("{kind}=0"),
        &format!("{stat} /dev/nvidia0 /dev/nvidiactl /dev/nvidia-uvm /dev/dri/renderD128; ls /dev; dlopen-test libcuda.so.1"),
    );
    assert!(
        o.contains("/dev/nvidia0 character special file c3 0"),
        "{o}"
    );
    assert!(
        o.contains("/dev/nvidiactl character special file c3 ff"),
        "{o}"
    );
    assert!(
        o.contains("/dev/nvidia-uvm character special file 1fe 0"),
        "{o}"
    );
    assert!(
        o.contains("/dev/dri/renderD128 character special file e2 80"),
        "{o}"
    );
    assert!(
        !o.lines().any(|l| l.trim() == "nvidia1"),
        "GPU 1 must not be visible: {o}"
    );
    assert!(o.contains("dlopen libcuda.so.1 ok, cuInit=0"), "{o}");

    // all: both GPUs' nodes and the MIG capability nodes.
    let o = podman(
        &rootfs,
        &format!("{kind}=all"),
        &format!("{stat} /dev/nvidia0 /dev/nvidia1 /dev/nvidia-caps/nvidia-cap{} ; dlopen-test /usr/lib/x86_64-linux-gnu/libcuda.so.1", caps(8, Some(0))),
    );
    assert!(
        o.contains("/dev/nvidia0 character special file c3 0"),
        "{o}"
    );
    assert!(
        o.contains("/dev/nvidia1 character special file c3 1"),
        "{o}"
    );
    assert!(
        o.contains(&format!(
            "character special file 1ff {:x}",
            caps(8, Some(0))
        )),
        "{o}"
    );
    assert!(o.contains("ok, cuInit=0"), "{o}");

    // A MIG device: its parent GPU node and its GI and CI capability nodes, nothing else.
    let gi = caps(7, None);
    let ci = caps(7, Some(0));
    let o = podman(
        &rootfs,
        &format!("{kind}=1:0"),
        &format!("{stat} /dev/nvidia1 /dev/nvidia-caps/nvidia-cap{gi} /dev/nvidia-caps/nvidia-cap{ci}; ls /dev /dev/nvidia-caps; dlopen-test libcuda.so.1"),
    );
    assert!(
        o.contains("/dev/nvidia1 character special file c3 1"),
        "{o}"
    );
    assert!(
        o.contains(&format!("nvidia-cap{gi} character special file 1ff {gi:x}")),
        "{o}"
    );
    assert!(
        o.contains(&format!("nvidia-cap{ci} character special file 1ff {ci:x}")),
        "{o}"
    );
    assert!(
        !o.lines().any(|l| l.trim() == "nvidia0"),
        "GPU 0 must not be visible: {o}"
    );
    assert!(o.contains("dlopen libcuda.so.1 ok"), "{o}");

    // GPU 1 whole although it is in MIG mode (as nvidia-ctk offers it): its node, none
    // of its MIG capability nodes.
    let o = podman(
        &rootfs,
        &format!("{kind}=1"),
        &format!("{stat} /dev/nvidia1; ls /dev; ls /dev/nvidia-caps || echo no-caps-dir"),
    );
    assert!(
        o.contains("/dev/nvidia1 character special file c3 1"),
        "{o}"
    );
    assert!(
        o.contains("no-caps-dir") && !o.lines().any(|l| l.trim() == "nvidia0"),
        "only GPU 1's node: {o}"
    );
    drop(installed);
}

/// Issue 18 item 2 with podman applying the spec itself: a root-owned MPS pipe directory
/// is shared read-only (a container cannot write into it); once a user has replaced it
/// with `tmp/nvidia-mps -> <secret host dir>`, a regenerated spec has no such mount and
/// the container sees nothing of the secret directory.
#[test]
fn podman_planted_mps_symlink_is_not_shared() {
    use std::os::unix::fs::PermissionsExt;
    const TOKEN: &str = "SECRET-HOST-HASH-51ab";
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    let secret = m.root.parent().unwrap().join("secret-host-dir");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("shadow"), format!("root:{TOKEN}\n")).unwrap();
    let tmp = m.root.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mps = tmp.join("nvidia-mps");
    std::fs::create_dir(&mps).unwrap();
    std::fs::set_permissions(&mps, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(mps.join("control"), "").unwrap();
    let class = format!("gpu-mps-{}", std::process::id());
    let generate = || {
        let out = Command::new(env!("CARGO_BIN_EXE_cdi-gen"))
            .arg("--driver-root")
            .arg(&m.root)
            .arg("--sysfs-root")
            .arg(&m.sys)
            .arg("--procfs-root")
            .arg(&m.proc)
            .env("MOCK_NVML_CONFIG", &m.nvml_config)
            .args(["--class", &class, "--disable-hook", "all"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (out.stdout, stderr)
    };
    std::fs::create_dir_all("/etc/cdi").unwrap();
    let installed = Installed(PathBuf::from(format!(
        "/etc/cdi/cdi-gen-e2e-mps-{}.yaml",
        std::process::id()
    )));
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    run(Command::new("cp")
        .arg("-a")
        .arg(cached_rootfs())
        .arg(&rootfs));
    let device = format!("nvidia.com/{class}=all");
    let script = "echo MPS:; ls /tmp/nvidia-mps 2>&1; cat /tmp/nvidia-mps/shadow 2>&1; touch /tmp/nvidia-mps/new 2>&1 && echo WROTE; dlopen-test libcuda.so.1; true";

    // Root's directory: shared, read-only.
    let (spec, _) = generate();
    std::fs::write(&installed.0, &spec).unwrap();
    let o = podman(&rootfs, &device, script);
    assert!(o.contains("MPS:\ncontrol\n"), "{o}");
    assert!(o.contains("Read-only file system"), "{o}");
    assert!(!o.contains("WROTE") && !mps.join("new").exists(), "{o}");

    // Replaced by a user's symlink to a secret directory: left out, with a warning.
    std::fs::remove_dir_all(&mps).unwrap();
    std::os::unix::fs::symlink(&secret, &mps).unwrap();
    let (spec, stderr) = generate();
    let text = String::from_utf8_lossy(&spec);
    assert!(
        !text.contains("nvidia-mps") && !text.contains("secret-host-dir"),
        "{text}"
    );
    assert!(
        stderr.contains("/tmp/nvidia-mps is a symlink under the world-writable directory /tmp"),
        "{stderr}"
    );
    std::fs::write(&installed.0, &spec).unwrap();
    let o = podman(&rootfs, &device, script);
    assert!(!o.contains(TOKEN) && !o.contains("shadow\n"), "{o}");
    assert!(
        o.contains("dlopen libcuda.so.1 ok, cuInit=0"),
        "control: {o}"
    );
}
