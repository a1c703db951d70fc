//! Issue 15, point 5: the host's network stack in containers, without a fabric. The
//! Debian 11 image `debian11-net` (libfabric 1.11, UCX 1.10) reports the Debian 12 host's
//! libfabric 1.17 and UCX 1.13 under the net annotation (podman hooks.d, runc, crun,
//! hpc-rank) and the CDI device hpc-hooks.io/net=host; `fi_pingpong -p sockets` runs in and
//! between containers on it; an image library needing FABRIC_1.9 (the host offers up to
//! FABRIC_1.6) is refused by name; fake fabric device nodes are injected writable; the
//! NCCL net plugin matching the image's CUDA runtime is chosen, or refused as configured.
//!
//! `ucx_info -v` prints the version it was COMPILED against (the string is in the binary),
//! so the image's `net-versions` (tests/rootfs/recipes/debian11-net.sh) reports what the
//! LOADED libraries say: `fi_version()` and `ucp_get_version_string()`.

use e2e_tests::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the image's tools print: fi_info --version, then net-versions.
const VERSIONS: &str = "fi_info --version && net-versions";

/// The prerequisites and per-test files of a net test.
struct NetEnv {
    _lock: E2eLock,
    rootfs: PathBuf,
    host: HostNet,
    scratch: Scratch,
    log: PathBuf,
}

fn net_env(tag: &str) -> NetEnv {
    let lock = e2e_lock();
    require_command("podman");
    hook_bin("mpi-hook");
    hook_bin("glibc-hook");
    let host = host_net();
    let rootfs = net_rootfs();
    let scratch = Scratch::new(tag);
    let log = scratch.path().join("hooks.log");
    NetEnv {
        _lock: lock,
        rootfs,
        host,
        scratch,
        log,
    }
}

impl NetEnv {
    /// The net hook (mpi-hook --net-only) configured with the host's stack.
    fn net_hook(&self) -> Hook {
        Hook::net(&self.log, "info", &self.host)
    }

    /// A hooks.d in `scratch/name` with glibc-hook and `net` (the host libfabric needs the
    /// host glibc: GLIBC_2.34 > the image's 2.31).
    fn hooks_d(&self, name: &str, net: &Hook) -> PathBuf {
        let d = self.scratch.subdir(name);
        write_hooks_d(&d, "createRuntime", &[&Hook::glibc(&self.log, "info"), net]);
        d
    }

    /// An overlay of the image (never modified) in `scratch/name`.
    fn overlay(&self, name: &str) -> Overlay {
        Overlay::new(self.scratch.path(), name, &self.rootfs)
    }

    fn hook_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `podman run` of `rootfs` with the net and glibc annotations.
fn net_podman<'a>(hooks_d: &'a Path, rootfs: &'a Path, log: &Path, args: &[&str]) -> PodmanRun<'a> {
    PodmanRun::new(hooks_d, rootfs, args)
        .annotate(NET_ANNOTATION, "true")
        .annotate(GLIBC_ANNOTATION, "true")
        .hook_log(log)
}

/// Panics unless the command succeeded and the image's tools report the host's libfabric
/// and UCX (fi_info --version, net-versions).
fn assert_host_stack(out: &RunOutput, host: &HostNet, context: &str) {
    out.assert_success(context);
    for want in [
        format!("libfabric: {}", host.libfabric_version),
        format!("libfabric {}", host.libfabric_major_minor()),
        format!("ucp {}", host.ucx_version),
    ] {
        assert!(
            out.stdout.lines().any(|l| l.trim() == want),
            "{context}: expected the line `{want}` (the host's network stack)\n{out}"
        );
    }
}

/// Panics unless the image's own libfabric 1.11 and UCX 1.10 are reported.
fn assert_image_stack(out: &RunOutput, context: &str) {
    out.assert_success(context);
    for want in [
        format!("libfabric: {CONTAINER_LIBFABRIC_VERSION}"),
        "libfabric 1.11".to_string(),
        format!("ucp {CONTAINER_UCX_VERSION}"),
    ] {
        assert!(
            out.stdout.lines().any(|l| l.trim() == want),
            "{context}: expected the line `{want}` (the image's own network stack)\n{out}"
        );
    }
}

/// md5sum of a host file.
fn host_md5(p: &Path) -> String {
    sh(&format!("md5sum < '{}'", p.display()))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn podman_net_annotation_gives_the_image_the_host_libfabric_and_ucx() {
    let env = net_env("net-podman");
    let hooks_d = env.hooks_d("hooks.d", &env.net_hook());
    let ov = env.overlay("rootfs");
    // The UCX module the container sees is the host's file (the module dir is bound).
    let module = "/usr/lib/x86_64-linux-gnu/ucx/libuct_cma.so.0";
    let script = format!("{VERSIONS} && md5sum < {module}");
    // Without the annotation: the image's own stack (and its own module).
    let out = PodmanRun::new(&hooks_d, &ov.merged, &["sh", "-c", &script])
        .annotate(GLIBC_ANNOTATION, "true")
        .hook_log(&env.log)
        .run();
    assert_image_stack(&out, "podman without the net annotation");
    let host_module = host_md5(Path::new(module));
    assert!(
        !out.stdout.contains(&host_module),
        "the image's UCX module is already the host's: the test proves nothing\n{out}"
    );
    // With it: the host's.
    let out = net_podman(&hooks_d, &ov.merged, &env.log, &["sh", "-c", &script]).run();
    assert_host_stack(&out, &env.host, "podman with com.hooks.net.enabled=true");
    assert!(
        out.stdout.contains(&host_module),
        "the container's {module} is not the host's (md5 {host_module})\n{out}"
    );
    let text = env.hook_log();
    assert!(
        text.contains("hook=mpi-hook"),
        "the net hook did not log:\n{text}"
    );
}

#[test]
fn runc_and_crun_bundles_get_the_host_libfabric_from_the_net_hook() {
    let env = net_env("net-bundles");
    require_command("crun");
    let ov = env.overlay("rootfs");
    for crun in [false, true] {
        let name = if crun { "bundle-crun" } else { "bundle-runc" };
        let mut b = Bundle::new(
            env.scratch.path(),
            name,
            &ov.merged,
            &["sh", "-c", VERSIONS],
        );
        b.annotate(NET_ANNOTATION, "true");
        b.annotate(GLIBC_ANNOTATION, "true");
        let net = Hook::net(&b.log, "info", &env.host);
        b.add_hook("createRuntime", &Hook::glibc(&b.log, "info"));
        b.add_hook("createRuntime", &net);
        let out = if crun { b.run_crun() } else { b.run_runc() };
        assert_host_stack(&out, &env.host, name);
    }
}

/// fi_pingpong's results table has a line `64 10 =10 ...` (size, sent, acknowledged).
fn assert_pingpong_table(out: &RunOutput, context: &str) {
    out.assert_success(context);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("bytes") && l.contains("usec/xfer")),
        "{context}: no fi_pingpong results header\n{out}"
    );
    assert!(
        out.stdout.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 8 && f[0] == "64" && f[1] == "10" && f[2] == "=10"
        }),
        "{context}: no fi_pingpong results line for 10 transfers of 64 bytes\n{out}"
    );
}

const PINGPONG: &str = "fi_pingpong -p sockets -S 64 -I 10";

#[test]
fn fi_pingpong_sockets_runs_in_one_container_on_the_host_libfabric() {
    let env = net_env("net-pingpong1");
    let hooks_d = env.hooks_d("hooks.d", &env.net_hook());
    let ov = env.overlay("rootfs");
    let script = format!(
        "fi_info --version && net-versions && \
         ({PINGPONG} > /tmp/server.out 2>&1 & sleep 0.5; {PINGPONG} 127.0.0.1; rc=$?; wait; \
         echo SERVER:; cat /tmp/server.out; exit $rc)"
    );
    let out = net_podman(&hooks_d, &ov.merged, &env.log, &["sh", "-c", &script]).run();
    assert_host_stack(&out, &env.host, "fi_pingpong in one container");
    assert_pingpong_table(&out, "fi_pingpong client and server in one container");
    let server = out.stdout.split("SERVER:").nth(1).unwrap_or_default();
    assert!(
        server
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["64", "10", "=10"])),
        "the server printed no results line\n{out}"
    );
}

/// A background `podman run` (the server container), removed on drop.
struct Background {
    child: Option<Child>,
    name: String,
}

impl Background {
    fn wait(mut self, timeout: Duration) -> (Option<i32>, String) {
        let mut child = self.child.take().expect("started");
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().expect("wait for the server") {
                let mut s = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = std::io::Read::read_to_string(&mut o, &mut s);
                }
                return (st.code(), s);
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                return (None, "(server timed out)".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("podman")
            .args(["rm", "-f", "--ignore", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether a TCP socket listens on `port` on the host.
fn listening(port: u16) -> bool {
    let out = Command::new(require_command("ss"))
        .args(["-Htln", &format!("sport = :{port}")])
        .output()
        .expect("run ss");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

#[test]
fn fi_pingpong_sockets_runs_between_two_containers_on_the_host_libfabric() {
    let env = net_env("net-pingpong2");
    let hooks_d = env.hooks_d("hooks.d", &env.net_hook());
    let (ov_s, ov_c) = (env.overlay("server"), env.overlay("client"));
    // A control port nobody listens on.
    let port = (47000..48000)
        .map(|p| p + (std::process::id() % 500) as u16)
        .find(|p| !listening(*p))
        .expect("a free TCP port");
    let server_cmd = format!("net-versions && {PINGPONG} -B {port}");
    let name = unique_id("net-server");
    let mut c = net_podman(&hooks_d, &ov_s.merged, &env.log, &["sh", "-c", &server_cmd])
        .network("host")
        .command(&name);
    let server = Background {
        child: Some(
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the server container"),
        ),
        name,
    };
    let start = Instant::now();
    while !listening(port) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the server container's fi_pingpong does not listen on port {port} after 60 s; \
             hook log:\n{}",
            env.hook_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let client = format!("{VERSIONS} && {PINGPONG} -P {port} 127.0.0.1");
    let out = net_podman(&hooks_d, &ov_c.merged, &env.log, &["sh", "-c", &client])
        .network("host")
        .run();
    let (code, server_out) = server.wait(Duration::from_secs(60));
    assert_host_stack(&out, &env.host, "the client container");
    assert_pingpong_table(&out, "fi_pingpong client container");
    assert_eq!(
        code,
        Some(0),
        "server container:\n{server_out}\nclient:\n{out}"
    );
    assert!(
        server_out
            .lines()
            .any(|l| l.trim() == format!("libfabric {}", env.host.libfabric_major_minor())),
        "the server container did not run on the host libfabric:\n{server_out}"
    );
    assert!(
        server_out
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["64", "10", "=10"])),
        "the server container printed no results line:\n{server_out}"
    );
}

/// gcc -shared with a version script.
fn gcc_versioned(src: &str, script: &str, out: &Path, soname: &str, needed: &[&Path]) {
    let c = out.with_extension("c");
    let map = out.with_extension("map");
    fs::write(&c, src).unwrap();
    fs::write(&map, script).unwrap();
    let mut cmd = Command::new(require_command("gcc"));
    cmd.args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(out)
        .arg(format!("-Wl,-soname,{soname}"))
        .arg(format!("-Wl,--version-script={}", map.display()))
        .arg(&c)
        .arg("-Wl,--no-as-needed")
        .args(needed);
    run_cmd(cmd, Duration::from_secs(60)).assert_success("gcc -shared with a version script");
}

#[test]
fn image_library_needing_fabric_1_9_is_refused_by_name() {
    let env = net_env("net-fabric19");
    let hooks_d = env.hooks_d("hooks.d", &env.net_hook());
    let stub = env.scratch.subdir("stub");
    // A stub libfabric.so.1 defining FABRIC_1.9, and libfabuser.so.1 linked against it.
    let stub_fabric = stub.join("libfabric.so.1");
    gcc_versioned(
        "int fi_stub_probe(void) { return 19; }\n",
        "FABRIC_1.9 { global: fi_stub_probe; local: *; };\n",
        &stub_fabric,
        "libfabric.so.1",
        &[],
    );
    let user = stub.join("libfabuser.so.1");
    gcc_shared_needing(
        "int fi_stub_probe(void);\nint fabuser(void) { return fi_stub_probe(); }\n",
        &user,
        "libfabuser.so.1",
        &[&stub_fabric],
    );
    let verneed = sh(&format!("readelf -V '{}'", user.display()));
    assert!(
        verneed.contains("File: libfabric.so.1") && verneed.contains("Name: FABRIC_1.9"),
        "the stub does not need FABRIC_1.9 from libfabric.so.1:\n{verneed}"
    );
    let offered = sh("readelf -V /usr/lib/x86_64-linux-gnu/libfabric.so.1");
    assert!(
        !offered.contains("FABRIC_1.9"),
        "the host libfabric offers FABRIC_1.9: the refusal cannot be tested\n{offered}"
    );
    let ov = env.overlay("rootfs");
    let image_lib = ov.path("/usr/lib/x86_64-linux-gnu/libfabuser.so.1");
    fs::copy(&user, &image_lib).unwrap();
    ldconfig_root(&ov.merged);
    let out = net_podman(&hooks_d, &ov.merged, &env.log, &["fi_info", "--version"]).run();
    out.assert_failure("an image library needs FABRIC_1.9, the host offers up to FABRIC_1.6");
    let want = format!(
        "the image's /usr/lib/x86_64-linux-gnu/libfabuser.so.1 needs symbol version FABRIC_1.9 \
         of libfabric.so.1, but the host's {} defines only FABRIC_1.0, FABRIC_1.1, FABRIC_1.2, \
         FABRIC_1.3, FABRIC_1.4, FABRIC_1.5, FABRIC_1.6: the image was built against a newer \
         libfabric.so than the host's. Run an image built against libfabric.so of the host's \
         version or older, have the admin install a newer libfabric.so on the host (NET_LIBS), \
         or start the container without the annotation com.hooks.net.enabled=true (the image \
         keeps its own libfabric.so; not possible when the host MPI needs the host's)",
        env.host.libs[0].display()
    );
    assert!(
        out.stderr.contains(&want),
        "podman does not fail with the refusal `{want}`\n{out}"
    );
    // Without the annotation the image starts (the library is only refused with net).
    PodmanRun::new(&hooks_d, &ov.merged, &["fi_info", "--version"])
        .run()
        .assert_success("the same image without the net annotation");
}

/// Fake fabric device nodes in the host's /dev (the kernel log device, char 1:11, which no
/// runtime allows by default: a write reaches `dmesg` only through the hook's cgroup rule),
/// removed on drop.
struct FakeDevices {
    created: Vec<PathBuf>,
}

const KMSG: (u32, u32) = (1, 11);
/// `st_rdev` of char 1:11 (Linux's encoding of small major and minor numbers).
const KMSG_RDEV: u64 = ((KMSG.0 as u64) << 8) | KMSG.1 as u64;

impl FakeDevices {
    fn new(nodes: &[&str]) -> FakeDevices {
        let mut f = FakeDevices {
            created: Vec::new(),
        };
        for n in nodes {
            let p = Path::new(n);
            let dir = p.parent().expect("a parent");
            if let Ok(m) = fs::symlink_metadata(p) {
                // A fake node of an earlier, killed run of this test is removed; anything
                // else may be a real fabric device and is left alone.
                let ours = m.file_type().is_char_device() && m.rdev() == KMSG_RDEV;
                assert!(
                    ours,
                    "{n} exists on this host and is not this test's fake node (char {}:{}): \
                     the test would shadow a real fabric device; run it on a machine without one",
                    KMSG.0, KMSG.1
                );
                fs::remove_file(p).unwrap();
            }
            if !dir.exists() {
                fs::create_dir(dir).unwrap();
                f.created.push(dir.to_path_buf());
            }
            sh(&format!("mknod -m 0620 '{n}' c {} {}", KMSG.0, KMSG.1));
            f.created.push(p.to_path_buf());
        }
        f
    }
}

impl Drop for FakeDevices {
    fn drop(&mut self) {
        for p in self.created.iter().rev() {
            if p.is_dir() {
                let _ = fs::remove_dir(p);
            } else {
                let _ = fs::remove_file(p);
            }
        }
    }
}

fn kernel_log_contains(token: &str) -> bool {
    let out = Command::new(require_command("dmesg"))
        .output()
        .expect("run dmesg");
    String::from_utf8_lossy(&out.stdout).contains(token)
}

#[test]
fn fake_fabric_device_nodes_are_injected_writable_only_with_net() {
    let env = net_env("net-devices");
    let devices = FakeDevices::new(&["/dev/cxi0", "/dev/infiniband/uverbs0"]);
    // A node and a directory of nodes.
    let net = env
        .net_hook()
        .with_env("NET_DEVICES", "/dev/cxi0:/dev/infiniband");
    let hooks_d = env.hooks_d("hooks.d", &net);
    let ov = env.overlay("rootfs");
    let (t1, t2) = (unique_id("cxi0"), unique_id("uverbs0"));
    let script = format!(
        "stat -c '%n %F %t:%T' /dev/cxi0 /dev/infiniband/uverbs0 && \
         echo '{t1}' > /dev/cxi0 && echo '{t2}' > /dev/infiniband/uverbs0 && echo WRITE-OK"
    );
    let out = net_podman(&hooks_d, &ov.merged, &env.log, &["sh", "-c", &script]).run();
    out.assert_success("fake fabric devices with net");
    for n in ["/dev/cxi0", "/dev/infiniband/uverbs0"] {
        let want = format!("{n} character special file {:x}:{:x}", KMSG.0, KMSG.1);
        assert!(
            out.stdout.lines().any(|l| l.trim() == want),
            "expected `{want}` in the container\n{out}"
        );
    }
    assert!(out.stdout.contains("WRITE-OK"), "{out}");
    for t in [&t1, &t2] {
        assert!(
            kernel_log_contains(t),
            "the line written to a fake fabric device is not in the host kernel log \
             (no cgroup rule?)\n{out}"
        );
    }
    // Without the net annotation: neither node exists in the container.
    let out = PodmanRun::new(
        &hooks_d,
        &ov.merged,
        &[
            "sh",
            "-c",
            "for n in /dev/cxi0 /dev/infiniband/uverbs0; do test -e $n || echo ABSENT $n; done",
        ],
    )
    .annotate(GLIBC_ANNOTATION, "true")
    .run();
    out.assert_success("without net");
    for n in ["/dev/cxi0", "/dev/infiniband/uverbs0"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim() == format!("ABSENT {n}")),
            "{n} is in a container without the net annotation\n{out}"
        );
    }
    drop(devices);
}

/// Host plugin dir with the stub NCCL net plugins `variants` (each NEEDs the stub CUDA
/// runtime `cudart` and carries `NCCL-PLUGIN-MARKER-<variant>`).
fn nccl_plugins(scratch: &Scratch, variants: &[(&str, &str)]) -> PathBuf {
    let stubs = scratch.subdir("cuda-stubs");
    let dir = scratch.subdir("nccl-plugins");
    for (variant, cudart) in variants {
        let rt = stubs.join(cudart);
        if !rt.exists() {
            gcc_shared(
                "int cudaRuntimeGetVersion(int *v) { *v = 0; return 0; }\n",
                &rt,
                cudart,
            );
        }
        let name = format!("libnccl-net-{variant}.so");
        let built = stubs.join(&name);
        gcc_shared_needing(
            &format!(
                "const char nccl_marker[] = \"NCCL-PLUGIN-MARKER-{variant}\";\n\
                 int cudaRuntimeGetVersion(int *v);\n\
                 int ncclNetPlugin_probe(void) {{ int v; return cudaRuntimeGetVersion(&v); }}\n"
            ),
            &built,
            &name,
            &[&rt],
        );
        fs::copy(&built, dir.join(&name)).unwrap();
    }
    dir
}

/// The image with a stub `libcudart.so.12` in its loader cache.
fn image_with_cudart12(env: &NetEnv) -> Overlay {
    let built = env.scratch.subdir("image-cuda").join("libcudart.so.12");
    gcc_shared(
        "int cudaRuntimeGetVersion(int *v) { *v = 12000; return 0; }\n",
        &built,
        "libcudart.so.12",
    );
    let ov = env.overlay("rootfs");
    fs::copy(&built, ov.path("/usr/lib/x86_64-linux-gnu/libcudart.so.12")).unwrap();
    ldconfig_root(&ov.merged);
    ov
}

#[test]
fn nccl_plugin_matching_the_image_cuda_runtime_is_chosen() {
    let env = net_env("net-nccl");
    let plugins = nccl_plugins(
        &env.scratch,
        &[
            ("cuda11", "libcudart.so.11.0"),
            ("cuda12", "libcudart.so.12"),
        ],
    );
    let net = env
        .net_hook()
        .with_env("NCCL_PLUGIN_DIR", &plugins.display().to_string());
    let hooks_d = env.hooks_d("hooks.d", &net);
    let ov = image_with_cudart12(&env);
    let script = "cd /run/hpc-hooks/lib && for f in libnccl-net.so libnccl-net-cuda12.so; do \
                  for v in cuda11 cuda12; do grep -q NCCL-PLUGIN-MARKER-$v $f && echo $f HAS $v; \
                  done; done; true";
    let out = net_podman(&hooks_d, &ov.merged, &env.log, &["sh", "-c", script]).run();
    out.assert_success("NCCL plugins cuda11 and cuda12, image with libcudart.so.12");
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "libnccl-net.so HAS cuda12",
            "libnccl-net-cuda12.so HAS cuda12"
        ],
        "the container's NCCL plugin is not the cuda12 variant\n{out}"
    );
}

#[test]
fn nccl_plugin_without_a_matching_variant_is_refused_when_configured() {
    let env = net_env("net-nccl-refuse");
    let plugins = nccl_plugins(&env.scratch, &[("cuda11", "libcudart.so.11.0")]);
    let net = env
        .net_hook()
        .with_env("NCCL_PLUGIN_DIR", &plugins.display().to_string())
        .with_env("NCCL_PLUGIN_MISMATCH", "refuse");
    let hooks_d = env.hooks_d("hooks.d", &net);
    let ov = image_with_cudart12(&env);
    let out = net_podman(&hooks_d, &ov.merged, &env.log, &["true"]).run();
    out.assert_failure("only a cuda11 NCCL plugin for an image with libcudart.so.12");
    let want = format!(
        "the image's CUDA runtime is libcudart.so.12 (/usr/lib/x86_64-linux-gnu/libcudart.so.12), \
         but no NCCL net plugin variant fits it: libnccl-net-cuda11.so needs libcudart.so.11.0. \
         Install in {} a variant built for CUDA 12 (linked to libcudart.so.12) or one that needs \
         no CUDA runtime, or set NCCL_PLUGIN_MISMATCH=warn to start such containers without a \
         plugin (NCCL then uses its internal transports)",
        plugins.display()
    );
    assert!(
        out.all_output().contains(&want),
        "podman does not fail with the refusal `{want}`\n{out}"
    );
}

/// Spec files installed in /etc/cdi, removed on drop.
struct InstalledSpecs(Vec<PathBuf>);

impl Drop for InstalledSpecs {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

#[test]
fn cdi_net_device_gives_podman_the_host_libfabric() {
    let env = net_env("net-cdi");
    let cdi_gen = hook_bin("cdi-gen");
    let empty_hooks = env.scratch.subdir("empty-hooks.d");
    let id = unique_id("net");
    fs::create_dir_all("/etc/cdi").unwrap();
    let specs = InstalledSpecs(vec![
        PathBuf::from(format!("/etc/cdi/hpc-hooks-net-{id}.yaml")),
        PathBuf::from(format!("/etc/cdi/hpc-hooks-glibc-{id}.yaml")),
    ]);
    // No NET_* given: cdi-gen detects the node's stack, which --print-config prints.
    let mut c = Command::new(&cdi_gen);
    c.args(["net", "--print-config"]);
    let printed = run_cmd(c, Duration::from_secs(30));
    printed.assert_success("cdi-gen net --print-config");
    let net_libs = printed
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("NET_LIBS="))
        .unwrap_or_else(|| panic!("no NET_LIBS= line\n{printed}"));
    let names: Vec<&str> = net_libs
        .split(':')
        .map(|p| p.rsplit('/').next().unwrap_or_default())
        .collect();
    assert_eq!(names, NET_SONAMES, "detected NET_LIBS\n{printed}");
    let mut c = Command::new(&cdi_gen);
    c.arg("net")
        .arg("--hook-dir")
        .arg(hook_bin_dir())
        .arg("--hook-log-file")
        .arg(&env.log)
        .args(["--hook-log-level", "info", "--output"])
        .arg(&specs.0[0]);
    run_cmd(c, Duration::from_secs(30)).assert_success("cdi-gen net");
    // The glibc device comes with the MPI specs (cdi-gen mpi --glibc-output).
    let mpi = host_mpi();
    let scratch_spec = env.scratch.path().join("mpi.yaml");
    let mut c = Command::new(&cdi_gen);
    c.args(["mpi", "--mpi-libs", &mpi.mpi_libs()])
        .args(["--mpi-dependency-libs", &mpi.dependency_libs()])
        .arg("--hook-dir")
        .arg(hook_bin_dir())
        .arg("--hook-log-file")
        .arg(&env.log)
        .args(["--hook-log-level", "info", "--output"])
        .arg(&scratch_spec)
        .arg("--glibc-output")
        .arg(&specs.0[1]);
    run_cmd(c, Duration::from_secs(30)).assert_success("cdi-gen mpi --glibc-output");
    let mut c = Command::new(&cdi_gen);
    c.args(["validate", "--max-version", "0.5.0"])
        .args(&specs.0);
    run_cmd(c, Duration::from_secs(30)).assert_success("the specs load in podman 4.3's CDI");
    let ov = env.overlay("rootfs");
    let out = PodmanRun::new(&empty_hooks, &ov.merged, &["sh", "-c", VERSIONS])
        .device("hpc-hooks.io/net=host")
        .device("hpc-hooks.io/glibc=host")
        .hook_log(&env.log)
        .run();
    assert_host_stack(&out, &env.host, "podman --device hpc-hooks.io/net=host");
    drop(specs);
}

#[test]
fn hpc_rank_gives_a_rank_the_host_libfabric_unless_no_net() {
    let env = net_env("net-rank");
    let launcher = hook_bin("hpc-rank");
    let hooks_d = env.hooks_d("hooks.d", &env.net_hook());
    for no_net in [false, true] {
        let mut c = Command::new(&launcher);
        c.arg("--hooks-dir").arg(&hooks_d).arg("--no-mpi");
        if no_net {
            c.arg("--no-net");
        }
        c.arg(&env.rootfs).args(["sh", "-c", VERSIONS]);
        let out = run_cmd(c, RUN_TIMEOUT);
        if no_net {
            assert_image_stack(&out, "hpc-rank --no-net");
        } else {
            assert_host_stack(&out, &env.host, "hpc-rank (a rank is annotated for net)");
        }
    }
}

#[test]
fn mpich_image_gets_the_host_ucx_its_mpich_needs_from_mpi_hook_with_the_net_stack() {
    let env = net_env("net-mpich");
    let host = host_mpi();
    let image = cached_rootfs();
    // The host MPICH links UCX; the MPICH image has no UCX: the net plan adds it for the MPI.
    let mpi = Hook::mpi(&env.log, "info")
        .with_env("NET_LIBS", &env.host.net_libs())
        .with_env("NET_DEPENDENCY_LIBS", &env.host.dependency_libs())
        .with_env("NET_DIRS", &env.host.net_dirs());
    let hooks_d = env.scratch.subdir("hooks.d");
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[&Hook::glibc(&env.log, "info"), &mpi, &env.net_hook()],
    );
    let ov = Overlay::new(env.scratch.path(), "mpich", &image);
    let module = "/usr/lib/x86_64-linux-gnu/ucx/libuct_cma.so.0";
    let script = format!(
        "{MPI_HELLO} && ls /run/hpc-hooks/lib | grep -x 'libuc[mpst].so.0' && md5sum < {module} && \
         LD_DEBUG=files {MPI_HELLO} 2>&1 | grep -o 'calling init: [^ ]*/ucx/[^ ]*' | sort -u"
    );
    // Both annotations: mpi-hook applies the network stack, the net hook steps aside.
    let out = PodmanRun::new(&hooks_d, &ov.merged, &["sh", "-c", &script])
        .enable_hooks(true, true)
        .annotate(NET_ANNOTATION, "true")
        .hook_log(&env.log)
        .run();
    out.assert_mpich(
        &host.version,
        "the MPICH image with the mpi, glibc and net hooks",
    );
    let libs: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("libuc"))
        .collect();
    assert_eq!(
        libs,
        ["libucm.so.0", "libucp.so.0", "libucs.so.0", "libuct.so.0"],
        "the host UCX is not in the private library directory\n{out}"
    );
    let host_module = host_md5(Path::new(module));
    assert!(
        out.stdout.contains(&host_module),
        "the host's UCX module directory is not visible at its host path\n{out}"
    );
    // MPI_Init's ucp_init loads the host UCX's transport module (LD_DEBUG=files).
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim() == format!("calling init: {module}")),
        "MPI_Init did not load the host UCX module {module}\n{out}"
    );
    let text = env.hook_log();
    assert!(
        text.contains(
            "com.hooks.mpi.enabled=true is also set: the MPI hook applies the network stack \
             with the MPI; nothing to do here"
        ),
        "the net hook did not step aside for mpi-hook:\n{text}"
    );
}

#[test]
fn ucx_is_refused_as_a_unit_when_net_libs_lacks_one_of_its_libraries() {
    let env = net_env("net-ucx-unit");
    // NET_LIBS without the host's libucm: the image's libucm.so.0 would stay beside the
    // host's libucp/libuct/libucs.
    let without_ucm: Vec<String> = env
        .host
        .libs
        .iter()
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libucm")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(without_ucm.len(), NET_SONAMES.len() - 1);
    let net = env.net_hook().with_env("NET_LIBS", &without_ucm.join(":"));
    let hooks_d = env.hooks_d("hooks.d", &net);
    let ov = env.overlay("rootfs");
    let out = net_podman(&hooks_d, &ov.merged, &env.log, &["sh", "-c", VERSIONS]).run();
    out.assert_failure("NET_LIBS with libucp, libuct, libucs but not libucm");
    let want =
        "UCX is replaced as a unit, but the image's /usr/lib/x86_64-linux-gnu/libucm.so.0.0.0 \
                (libucm.so) has no host counterpart in NET_LIBS (it has libucp.so, libuct.so, \
                libucs.so): the host's UCX cannot run beside a part of the image's. Have the admin \
                add the host's libucm.so to NET_LIBS (hpc-hooks-configure detects it), or start \
                the container without the annotation com.hooks.net.enabled=true";
    assert!(
        out.stderr.contains(want),
        "podman does not fail with the refusal `{want}`\n{out}"
    );
}

#[test]
fn net_annotation_without_glibc_is_refused_naming_the_glibc_annotation() {
    let env = net_env("net-noglibc");
    let hooks_d = env.hooks_d("hooks.d", &env.net_hook());
    let ov = env.overlay("rootfs");
    let out = PodmanRun::new(&hooks_d, &ov.merged, &["sh", "-c", VERSIONS])
        .annotate(NET_ANNOTATION, "true")
        .hook_log(&env.log)
        .run();
    out.assert_failure("the host libfabric needs glibc 2.34, the image has 2.31");
    let want = format!(
        "the injected host libraries need glibc 2.34 ({} requires GLIBC_2.34) but the container \
         has glibc 2.31; add the annotation com.hooks.glibc.enabled=true (podman --annotation \
         com.hooks.glibc.enabled=true) so that glibc-hook injects the host glibc ",
        env.host.libs[0].display()
    );
    assert!(
        out.stderr.contains(&want),
        "podman does not fail with the refusal `{want}`\n{out}"
    );
}
