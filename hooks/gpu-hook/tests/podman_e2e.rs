//! End-to-end with podman 4.3 (runc, cgroupfs, `--rootfs` on an overlay):
//! - gpu-hook registered in a hooks.d directory (no CDI), `always` + exit 0 when nothing
//!   is requested, with live discovery and with a spec directory as the source;
//! - the spec hooks: podman applies a cdi-gen spec (`--device`) whose createContainer
//!   hooks run `gpu-hook create-symlinks` and `gpu-hook update-ldcache`.
//!
//! Fails (does not skip) when podman is missing.

mod support;

use std::path::{Path, PathBuf};

use e2e_tests::{e2e_lock, require_command, Overlay, PodmanRun, RunOutput, Scratch};
use serde_json::json;
use support::*;
use test_support::*;

/// Writes the hooks.d file the packaging template produces, for a fake machine.
/// podman's containers are unprivileged: the hook gets `--env-requests always` so that
/// their NVIDIA_VISIBLE_DEVICES is a request (the policy is tested in hostile_requests.rs).
fn write_hooks_d(dir: &Path, m: &FakeMachine, spec_dirs: &str, extra: &[&str], log: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut args = hook_args(m, spec_dirs, extra);
    args.extend(["--env-requests".to_string(), "always".to_string()]);
    let doc = json!({
        "version": "1.0.0",
        "hook": hook_json(args, hook_env(log)),
        "when": { "always": true },
        "stages": ["createRuntime"],
    });
    std::fs::write(
        dir.join("50-hpc-hooks-gpu.json"),
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
}

fn podman_run(hooks: &Path, rootfs: &Path, env: &[&str], script: &str, log: &Path) -> RunOutput {
    let mut p = PodmanRun::new(hooks, rootfs, &["/bin/sh", "-c", script]).hook_log(log);
    p.env = env.iter().map(|s| s.to_string()).collect();
    p.run()
}

/// Removes an installed spec even when an assertion fails.
struct Installed(PathBuf);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A cdi-gen spec for `m` (procfs discovery, hooks pointing at this gpu-hook), as JSON.
fn generate_spec(m: &FakeMachine, class: &str) -> String {
    let mut opts = gpu_discover::GenerateOptions {
        class: class.to_string(),
        format: Some(cdi_specs::Format::Json),
        roots: gpu_discover::Roots {
            driver_root: m.root.clone(),
            dev_root: m.root.clone(),
            sys_root: m.sys.clone(),
            proc_root: m.proc.clone(),
        },
        ..gpu_discover::GenerateOptions::default()
    };
    opts.nvidia.mode = gpu_discover::nvidia::DiscoveryMode::Procfs;
    opts.nvidia.hooks.path = gpu_hook_bin().display().to_string();
    let mut warnings = Vec::new();
    let g = gpu_discover::generate(&opts, &mut warnings).expect("cdi-gen generate");
    g.text
}

const SCRIPT: &str = "for f in /dev/nvidia* /dev/dri/*; do [ -e \"$f\" ] && stat -c 'NODE %n %F %t %T %a' \"$f\"; done; gpu-dlopen libcuda.so.1 libnvidia-ml.so.1; nvidia-smi; echo CACHE $(grep -c -a libnvidia-ptxjitcompiler.so.1 /etc/ld.so.cache); readlink /usr/lib/x86_64-linux-gnu/libcuda.so; true";

fn check_gpu0(out: &RunOutput, what: &str) {
    out.assert_success(what);
    let nodes = parse_stat(&out.stdout);
    let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
    assert!(
        names.contains(&"/dev/nvidia0") && names.contains(&"/dev/nvidiactl"),
        "{what}: {out}"
    );
    assert!(!names.contains(&"/dev/nvidia1"), "{what}: {out}");
    assert_eq!(
        (nodes["/dev/nvidia0"].1, nodes["/dev/nvidia0"].2),
        (195, 0),
        "{what}"
    );
    assert!(
        out.stdout.contains("ok libcuda.so.1 cuInit"),
        "{what}: {out}"
    );
    assert!(out.stdout.contains("ok libnvidia-ml.so.1"), "{what}: {out}");
    assert!(
        out.stdout.contains("\nstub\n"),
        "{what}: nvidia-smi did not run: {out}"
    );
    assert!(
        !out.stdout.contains("CACHE 0"),
        "{what}: driver libraries not in ld.so.cache: {out}"
    );
    assert!(
        out.stdout.contains("\nlibcuda.so.1\n"),
        "{what}: libcuda.so link: {out}"
    );
}

#[test]
fn podman_hooks_d() {
    require_command("podman");
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-podman");
    let m = build_machine(&MachineSpec::nvidia(2));
    let rootfs = cached_rootfs();
    let log = scratch.path().join("hook.log");

    // Live discovery.
    let hooks = scratch.subdir("hooks-live");
    let nospecs = scratch.subdir("nospecs");
    write_hooks_d(
        &hooks,
        &m,
        &nospecs.display().to_string(),
        &["--source", "discover"],
        &log,
    );
    let ov = Overlay::new(scratch.path(), "live", &rootfs);
    let out = podman_run(
        &hooks,
        &ov.merged,
        &["NVIDIA_VISIBLE_DEVICES=0"],
        SCRIPT,
        &log,
    );
    check_gpu0(&out, "podman hooks.d, live discovery");
    drop(ov);

    // Nothing requested: untouched.
    let ov = Overlay::new(scratch.path(), "nothing", &rootfs);
    let out = podman_run(&hooks, &ov.merged, &[], "ls /dev; true", &log);
    out.assert_success("podman hooks.d, nothing requested");
    assert!(!out.stdout.contains("nvidia"), "{out}");
    drop(ov);

    // Spec files as the source (a cdi-gen spec in a private spec directory).
    let specs = scratch.subdir("specs");
    std::fs::write(specs.join("nvidia.json"), generate_spec(&m, "gpu")).unwrap();
    let hooks = scratch.subdir("hooks-spec");
    write_hooks_d(
        &hooks,
        &m,
        &specs.display().to_string(),
        &["--source", "spec"],
        &log,
    );
    let ov = Overlay::new(scratch.path(), "spec", &rootfs);
    let out = podman_run(
        &hooks,
        &ov.merged,
        &["NVIDIA_VISIBLE_DEVICES=0"],
        SCRIPT,
        &log,
    );
    check_gpu0(&out, "podman hooks.d, spec files");
    let l = std::fs::read_to_string(&log).unwrap();
    assert!(
        !l.contains("live discovery"),
        "spec source used discovery: {l}"
    );
}

/// podman applies a cdi-gen spec itself (CDI, no hooks.d); the spec's createContainer
/// hooks (gpu-hook create-symlinks, update-ldcache) make the links and the cache.
#[test]
fn podman_cdi_spec_hooks() {
    require_command("podman");
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-podman-cdi");
    let m = build_machine(&MachineSpec::nvidia(2));
    let class = format!("gpuhooke2e{}", std::process::id());
    let text = generate_spec(&m, &class);
    assert!(
        text.contains("create-symlinks") && text.contains("update-ldcache"),
        "{text}"
    );
    std::fs::create_dir_all("/etc/cdi").unwrap();
    let installed = Installed(PathBuf::from(format!(
        "/etc/cdi/gpu-hook-e2e-{}.json",
        std::process::id()
    )));
    std::fs::write(&installed.0, &text).unwrap();
    let rootfs = cached_rootfs();
    let ov = Overlay::new(scratch.path(), "cdi", &rootfs);
    let device = format!("nvidia.com/{class}=0");
    let out = podman_device(&scratch, &ov.merged, &device, SCRIPT);
    check_gpu0(&out, "podman --device (CDI spec hooks)");
    drop(ov);
    // enable-cuda-compat from the spec: a newer compat libcuda in the image wins...
    let ov = Overlay::new(scratch.path(), "cdi-compat", &rootfs);
    add_compat(&ov.merged, "555.42.02");
    let out = podman_device(&scratch, &ov.merged, &device, "gpu-which libcuda.so.1");
    out.assert_success("podman --device, newer compat");
    assert!(
        out.stdout
            .contains("-> /usr/local/cuda/compat/libcuda.so.1"),
        "{out}"
    );
    drop(ov);
    // ...an older one is ignored.
    let ov = Overlay::new(scratch.path(), "cdi-compat-old", &rootfs);
    add_compat(&ov.merged, "545.23.08");
    let out = podman_device(&scratch, &ov.merged, &device, "gpu-which libcuda.so.1");
    out.assert_success("podman --device, older compat");
    // The driver's copy (the fixture's "32-bit" directory holds a 64-bit stub too, so
    // either driver directory may win; never the compat one).
    assert!(
        out.stdout.contains("-linux-gnu/libcuda.so.1") && !out.stdout.contains("compat"),
        "{out}"
    );
    drop(ov);
    drop(installed);
}

/// `podman run --device DEVICE --rootfs ROOTFS sh -c SCRIPT` (CDI, no hooks.d).
fn podman_device(scratch: &Scratch, rootfs: &Path, device: &str, script: &str) -> RunOutput {
    let empty_hooks = scratch.subdir("nohooks");
    let name = e2e_tests::unique_id("gpu-cdi");
    let c = PodmanRun::new(&empty_hooks, rootfs, &["/bin/sh", "-c", script]).command(&name);
    // `--device` must precede `--rootfs`: rebuild the command with it inserted.
    let args: Vec<String> = c
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let pos = args.iter().position(|a| a == "--rootfs").unwrap();
    let mut cmd = std::process::Command::new(c.get_program());
    cmd.args(&args[..pos])
        .arg("--device")
        .arg(device)
        .args(&args[pos..]);
    let out = e2e_tests::run_cmd(cmd, e2e_tests::RUN_TIMEOUT);
    let _ = std::process::Command::new("podman")
        .args(["rm", "-f", "--ignore", &name])
        .output();
    out
}
