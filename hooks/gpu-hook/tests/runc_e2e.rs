//! End-to-end with bare runc (hooks written into config.json, createRuntime): gpu-hook on
//! fake driver roots with the mock NVML. The containers are unprivileged (runc spec's
//! capabilities), so [`Case`] passes `--env-requests always` for their env requests; the
//! request policy itself is tested in hostile_requests.rs. One test function per area; each takes the
//! machine-wide e2e lock, so cases run serially. Fails (does not skip) when runc, gcc,
//! busybox-static or root are missing.

mod case;
mod support;

use std::path::Path;

use case::Case;
use e2e_tests::{e2e_lock, Bundle, Overlay, Scratch};
use support::*;
use test_support::*;

fn script_all() -> String {
    format!("{LIST_NODES}; gpu-dlopen libcuda.so.1 libnvidia-ml.so.1 libnvidia-ptxjitcompiler.so.1; nvidia-smi; readlink /usr/lib/x86_64-linux-gnu/libcuda.so")
}

#[test]
fn runc_nvidia_visible_devices() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-runc");
    let m = build_machine(&MachineSpec::nvidia(2));
    let script = script_all();

    // =0: exactly /dev/nvidia0 + control nodes (+ GPU 0's DRM nodes), libs loadable, nvidia-smi runs.
    let (out, _ov) = Case::new(&m, &["NVIDIA_VISIBLE_DEVICES=0"], &script).run(&scratch, "zero");
    out.assert_success("NVIDIA_VISIBLE_DEVICES=0");
    let nodes = parse_stat(&out.stdout);
    let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "/dev/dri/card1",
            "/dev/dri/renderD128",
            "/dev/nvidia-modeset",
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
            "/dev/nvidia0",
            "/dev/nvidiactl"
        ],
        "{out}"
    );
    let n0 = &nodes["/dev/nvidia0"];
    assert_eq!(
        (n0.0.as_str(), n0.1, n0.2),
        ("character special file", 195, 0)
    );
    assert_eq!(
        (nodes["/dev/nvidiactl"].1, nodes["/dev/nvidiactl"].2),
        (195, 255)
    );
    assert_eq!(
        (nodes["/dev/nvidia-uvm"].1, nodes["/dev/nvidia-uvm"].2),
        (510, 0)
    );
    assert_eq!(
        (
            nodes["/dev/nvidia-uvm-tools"].1,
            nodes["/dev/nvidia-uvm-tools"].2
        ),
        (510, 1)
    );
    // The mode is the host node's (cdi-gen writes no fileMode).
    let host_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(m.root.join("dev/nvidia0"))
            .unwrap()
            .permissions(),
    ) & 0o7777;
    assert_eq!(n0.3, format!("{host_mode:o}"), "mode of /dev/nvidia0");
    for lib in [
        "libcuda.so.1 cuInit",
        "libnvidia-ml.so.1",
        "libnvidia-ptxjitcompiler.so.1",
    ] {
        assert!(
            out.stdout.contains(&format!("ok {lib}")),
            "{lib} not loadable: {out}"
        );
    }
    assert!(
        out.stdout.contains("\nstub\n"),
        "nvidia-smi did not run: {out}"
    );
    assert!(
        out.stdout.contains("libcuda.so.1"),
        "libcuda.so link: {out}"
    );

    // The same at createContainer (the hook already runs in the container's namespace).
    let mut c = Case::new(&m, &["NVIDIA_VISIBLE_DEVICES=0"], &script);
    c.stage = "createContainer";
    let (out, _ov) = c.run(&scratch, "zero-cc");
    out.assert_success("NVIDIA_VISIBLE_DEVICES=0 at createContainer");
    assert!(
        parse_stat(&out.stdout).contains_key("/dev/nvidia0"),
        "{out}"
    );
    assert!(out.stdout.contains("ok libcuda.so.1 cuInit"), "{out}");

    // =all: both GPUs.
    let (out, _ov) = Case::new(&m, &["NVIDIA_VISIBLE_DEVICES=all"], &script).run(&scratch, "all");
    out.assert_success("NVIDIA_VISIBLE_DEVICES=all");
    let nodes = parse_stat(&out.stdout);
    assert!(
        nodes.contains_key("/dev/nvidia0") && nodes.contains_key("/dev/nvidia1"),
        "{out}"
    );

    // =GPU-<uuid> of GPU 1 (minor 1). (CUDA_VISIBLE_DEVICES is not a request: see
    // hostile_requests.rs.)
    let uuid = m.spec.gpus[1].uuid.clone();
    let env = format!("NVIDIA_VISIBLE_DEVICES={uuid}");
    let (out, _ov) = Case::new(&m, &[&env], &script).run(&scratch, "uuid");
    out.assert_success(&env);
    let nodes = parse_stat(&out.stdout);
    assert!(
        nodes.contains_key("/dev/nvidia1") && !nodes.contains_key("/dev/nvidia0"),
        "{env}: {out}"
    );

    // none / void / unset: nothing injected, the rootfs untouched.
    for env in [
        Some("NVIDIA_VISIBLE_DEVICES=none"),
        Some("NVIDIA_VISIBLE_DEVICES=void"),
        None,
    ] {
        let envs: Vec<&str> = env.into_iter().collect();
        let (out, ov) = Case::new(
            &m,
            &envs,
            &format!("{LIST_NODES}; gpu-dlopen libcuda.so.1; true"),
        )
        .run(&scratch, "none");
        out.assert_success("nothing requested");
        assert!(parse_stat(&out.stdout).is_empty(), "{env:?}: {out}");
        assert!(out.stdout.contains("FAIL libcuda.so.1"), "{env:?}: {out}");
        let upper: Vec<_> = std::fs::read_dir(&ov.upper)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            upper.is_empty(),
            "{env:?}: nothing requested but the rootfs changed: {upper:?}"
        );
    }

    // Unknown UUID: container creation fails with a clear message.
    let (out, _ov) = Case::new(
        &m,
        &["NVIDIA_VISIBLE_DEVICES=GPU-00000000-dead-beef-0000-000000000000"],
        "true",
    )
    .run(&scratch, "unknown");
    out.assert_failure("unknown UUID");
    let log = std::fs::read_to_string(out_log(&scratch, "unknown")).unwrap_or_default();
    let all = format!("{}{log}", out.all_output());
    assert!(
        all.contains(
            "unresolvable CDI devices nvidia.com/gpu=GPU-00000000-dead-beef-0000-000000000000"
        ) && all.contains(&m.spec.gpus[0].uuid),
        "unclear error: {all}"
    );
}

#[test]
fn runc_require_cuda() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-require");
    let m = build_machine(&MachineSpec::nvidia(1));
    // The mock driver provides CUDA 12.4.
    let (out, ov) = Case::new(
        &m,
        &["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>=12.9"],
        "true",
    )
    .run(&scratch, "toonew");
    out.assert_failure("NVIDIA_REQUIRE_CUDA too new");
    let log = std::fs::read_to_string(out_log(&scratch, "toonew")).unwrap_or_default();
    let all = format!("{}{log}", out.all_output());
    assert!(
        all.contains("cuda>=12.9") && all.contains("CUDA 12.4"),
        "{all}"
    );
    // Refused before anything was mounted: nothing in the upper dir but empty mount points? none at all.
    assert!(
        !ov.upper.join("usr").exists(),
        "files were created before the refusal"
    );
    let (out, _ov) = Case::new(
        &m,
        &["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>=12.0"],
        "true",
    )
    .run(&scratch, "ok");
    out.assert_success("cuda>=12.0");
    let (out, _ov) = Case::new(
        &m,
        &[
            "NVIDIA_VISIBLE_DEVICES=0",
            "NVIDIA_REQUIRE_CUDA=cuda>=12.9",
            "NVIDIA_DISABLE_REQUIRE=1",
        ],
        "true",
    )
    .run(&scratch, "disabled");
    out.assert_success("NVIDIA_DISABLE_REQUIRE=1");
}

#[test]
fn runc_mig() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-mig");
    let m = build_machine(&MachineSpec::mig(2, 1, 2));
    let mig = &m.spec.gpus[0].migs[1];
    let gi = test_support::mig_minor(0, mig.gi, None);
    let ci = test_support::mig_minor(0, mig.gi, Some(mig.ci));
    for id in ["0:1".to_string(), mig.uuid.clone()] {
        let env = format!("NVIDIA_VISIBLE_DEVICES={id}");
        let (out, _ov) = Case::new(&m, &[&env], LIST_NODES).run(&scratch, "mig");
        out.assert_success(&env);
        let nodes = parse_stat(&out.stdout);
        assert!(nodes.contains_key("/dev/nvidia0"), "{env}: {out}");
        assert!(!nodes.contains_key("/dev/nvidia1"), "{env}: {out}");
        let gi_node = &nodes[&format!("/dev/nvidia-caps/nvidia-cap{gi}")];
        let ci_node = &nodes[&format!("/dev/nvidia-caps/nvidia-cap{ci}")];
        assert_eq!((gi_node.1, gi_node.2), (test_support::CAPS_MAJOR, gi));
        assert_eq!((ci_node.1, ci_node.2), (test_support::CAPS_MAJOR, ci));
    }
}

/// A device the runtime's cgroup denies (loop-control, 10:237, not in runc's default
/// list) registered as GPU 0's node becomes openable; without the hook it is not.
#[test]
fn runc_cgroup_allows_injected_device() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-cgroup");
    let m = build_machine(&MachineSpec::nvidia(1));
    let node = m.root.join("dev/nvidia0");
    std::fs::remove_file(&node).unwrap();
    let c = std::ffi::CString::new(node.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path; mknod has no other memory effects.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(10, 237)) };
    assert_eq!(rc, 0, "mknod (tests must run as root)");
    let open = "if (exec 3<>/dev/nvidia0); then echo OPENED; else echo DENIED; fi";
    let (out, _ov) = Case::new(&m, &["NVIDIA_VISIBLE_DEVICES=0"], open).run(&scratch, "allowed");
    out.assert_success("open injected node");
    assert!(out.stdout.contains("OPENED"), "{out}");
    // Control: the same node bound in by config.json, no hook: the cgroup denies it.
    let rootfs = cached_rootfs();
    let ov = Overlay::new(scratch.path(), "denied", &rootfs);
    let mut b = Bundle::new(
        scratch.path(),
        "denied-bundle",
        &ov.merged,
        &["sh", "-c", open],
    );
    b.add_bind_mount(&node, "/dev/nvidia0");
    let out = b.run_runc();
    assert!(
        out.stdout.contains("DENIED"),
        "control container could open it: {out}"
    );
}

#[test]
fn runc_amd_rocr_visible_devices() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-amd");
    let m = FakeMachine::amd(2);
    let (out, _ov) = Case::new(&m, &["ROCR_VISIBLE_DEVICES=0"], LIST_NODES).run(&scratch, "amd");
    out.assert_success("ROCR_VISIBLE_DEVICES=0");
    let nodes = parse_stat(&out.stdout);
    let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["/dev/dri/card0", "/dev/dri/renderD128", "/dev/kfd"],
        "{out}"
    );
    assert_eq!(
        (nodes["/dev/kfd"].1, nodes["/dev/kfd"].2),
        (test_support::KFD_MAJOR, 0)
    );
    assert_eq!(
        (
            nodes["/dev/dri/renderD128"].1,
            nodes["/dev/dri/renderD128"].2
        ),
        (226, 128)
    );
}

#[test]
fn runc_cuda_compat() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-compat");
    let m = build_machine(&MachineSpec::nvidia(1));
    // Newer than the host driver 550.54.14 (CUDA 12.4): wins, and CUDA 12.5 is satisfied.
    let newer = |p: &Path| add_compat(p, "555.42.02");
    let mut c = Case::new(
        &m,
        &["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>=12.5"],
        "gpu-which libcuda.so.1",
    );
    c.prepare = Some(&newer);
    let (out, _ov) = c.run(&scratch, "newer");
    out.assert_success("newer compat");
    assert!(
        out.stdout
            .contains("-> /usr/local/cuda/compat/libcuda.so.1"),
        "{out}"
    );
    // Older: ignored, the host driver's library wins (and CUDA 12.5 is refused).
    let older = |p: &Path| add_compat(p, "545.23.08");
    let mut c = Case::new(&m, &["NVIDIA_VISIBLE_DEVICES=0"], "gpu-which libcuda.so.1");
    c.prepare = Some(&older);
    let (out, _ov) = c.run(&scratch, "older");
    out.assert_success("older compat");
    assert!(
        out.stdout
            .contains("-> /usr/lib/x86_64-linux-gnu/libcuda.so.1"),
        "{out}"
    );
    let mut c = Case::new(
        &m,
        &["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>=12.5"],
        "true",
    );
    c.prepare = Some(&older);
    let (out, _ov) = c.run(&scratch, "older-require");
    out.assert_failure("older compat cannot satisfy cuda>=12.5");
}

/// The subcommands as createContainer hooks (as engines run them from CDI specs): links
/// in-root (a conflicting file replaced, a correct link kept), the cache natively.
#[test]
fn runc_subcommands_create_symlinks_update_ldcache() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-subcmd");
    let m = build_machine(&MachineSpec::nvidia(1));
    let prep = |p: &Path| {
        let d = p.join("usr/lib/x86_64-linux-gnu");
        std::fs::write(d.join("libstub-conflict.so"), "not a link").unwrap();
        std::os::unix::fs::symlink("libc.so.6", d.join("libkeep.so")).unwrap();
        let c = d.join("x.c");
        std::fs::write(&c, "int extra_fn(void) { return 42; }\n").unwrap();
        let st = std::process::Command::new("gcc")
            .args(["-shared", "-fPIC", "-Wl,-soname,libextra.so.7", "-o"])
            .arg(d.join("libextra.so.7.0.1"))
            .arg(&c)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::remove_file(&c).unwrap();
    };
    let sub = |args: &[&str]| {
        let mut a = vec!["gpu-hook".to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        hook_json(a, vec![])
    };
    let mut c = Case::new(
        &m,
        &[],
        "readlink /usr/lib/x86_64-linux-gnu/libstub-conflict.so; readlink /usr/lib/x86_64-linux-gnu/libkeep.so; echo CACHE $(grep -c -a libextra.so.7 /etc/ld.so.cache); gpu-dlopen libextra.so.7",
    );
    c.prepare = Some(&prep);
    c.no_inject = true;
    c.more_hooks = vec![
        (
            "createContainer",
            sub(&[
                "create-symlinks",
                "--link",
                "libextra.so.7.0.1::/usr/lib/x86_64-linux-gnu/libstub-conflict.so",
                "--link",
                "libc.so.6::/usr/lib/x86_64-linux-gnu/libkeep.so",
            ]),
        ),
        (
            "createContainer",
            sub(&["update-ldcache", "--folder", "/usr/lib/x86_64-linux-gnu"]),
        ),
    ];
    let (out, _ov) = c.run(&scratch, "subcmd");
    out.assert_success("create-symlinks + update-ldcache");
    assert!(
        out.stdout.contains("libextra.so.7.0.1\nlibc.so.6\n"),
        "{out}"
    );
    assert!(!out.stdout.contains("CACHE 0"), "{out}");
    assert!(out.stdout.contains("ok libextra.so.7"), "{out}");
}

/// Hostile images, one feature at a time: /dev, /usr/lib/x86_64-linux-gnu and /usr/bin
/// symlinked to host paths, create-symlinks links whose path or target climbs out of the
/// rootfs, LD_PRELOAD in the container env. Nothing of the hook's may land on the host;
/// the hook either works in-root or refuses with a message naming the container path.
#[test]
fn runc_hostile_images() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-hostile");
    let m = build_machine(&MachineSpec::nvidia(1));
    let host = scratch.subdir("host-target");
    let hs = host.display().to_string();
    type Prep = Box<dyn Fn(&Path)>;
    let swap = |rel: &'static str, target: std::path::PathBuf| -> Prep {
        Box::new(move |p: &Path| {
            std::fs::create_dir_all(&target).unwrap();
            std::fs::remove_dir_all(p.join(rel)).unwrap();
            std::os::unix::fs::symlink(&target, p.join(rel)).unwrap();
        })
    };
    let links_hook = hook_json(
        vec![
            "gpu-hook".into(),
            "create-symlinks".into(),
            "--link".into(),
            format!("/etc/shadow::/usr/lib/../../../../../../..{hs}/links/evil"),
            "--link".into(),
            format!("../../../../../../../../../../..{hs}/x::/usr/lib/x86_64-linux-gnu/libout.so"),
        ],
        vec![],
    );
    let variants: Vec<(&str, Option<Prep>, bool, bool)> = vec![
        // (name, image change, extra create-symlinks hook, must succeed)
        ("dev", Some(swap("dev", host.join("dev"))), false, false),
        (
            "lib",
            Some(swap("usr/lib/x86_64-linux-gnu", host.join("lib"))),
            false,
            false,
        ),
        ("bin", Some(swap("usr/bin", host.join("bin"))), false, false),
        ("links", None, true, true),
        ("preload", None, false, true),
    ];
    let runc_own = [
        "fd", "stdin", "stdout", "stderr", "ptmx", "core", "shm", "pts", "mqueue",
    ];
    for (name, prep, links, must_succeed) in &variants {
        let before = e2e_tests::mount_table();
        let mut c = Case::new(
            &m,
            &["NVIDIA_VISIBLE_DEVICES=0", "LD_PRELOAD=/tmp/evil.so"],
            &format!("{LIST_NODES}; gpu-dlopen libcuda.so.1; readlink /usr/lib/x86_64-linux-gnu/libout.so; true"),
        );
        c.prepare = prep.as_deref();
        if *links {
            c.more_hooks = vec![("createContainer", links_hook.clone())];
        }
        let (out, _ov) = c.run(&scratch, &format!("hostile-{name}"));
        let after = e2e_tests::mount_table();
        // runc 1.1 itself writes its /dev/{fd,stdin,...} through an image's absolute /dev
        // symlink onto the host: not the hook's doing, so those names are tolerated.
        for d in ["lib", "dev", "bin", "links"] {
            let entries: Vec<String> = std::fs::read_dir(host.join(d))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| !(d == "dev" && runc_own.contains(&n.as_str())))
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                entries.is_empty(),
                "{name}: the hook wrote {entries:?} in {}\n{out}",
                host.join(d).display()
            );
        }
        assert!(
            !host.join("x").exists() && !host.join("evil").exists(),
            "{name}: link escaped"
        );
        let leaked: Vec<_> = e2e_tests::new_mounts(&before, &after)
            .into_iter()
            .filter(|mnt| {
                !mnt.mount_point
                    .starts_with("/var/tmp/hpc-hooks-e2e-gpu-hostile")
                    || mnt.mount_point.starts_with(&hs)
            })
            .collect();
        assert!(
            leaked.is_empty(),
            "{name}: mounts leaked onto the host: {leaked:?}"
        );
        if *must_succeed || out.success() {
            out.assert_success(name);
            assert!(
                parse_stat(&out.stdout).contains_key("/dev/nvidia0"),
                "{name}: {out}"
            );
            assert!(out.stdout.contains("ok libcuda.so.1"), "{name}: {out}");
        } else {
            let log = std::fs::read_to_string(out_log(&scratch, &format!("hostile-{name}")))
                .unwrap_or_default();
            assert!(log.contains("in rootfs"), "{name}: unclear refusal: {out}");
        }
        eprintln!(
            "hostile {name}: {}",
            if out.success() {
                "worked in-root"
            } else {
                "refused"
            }
        );
    }
}
