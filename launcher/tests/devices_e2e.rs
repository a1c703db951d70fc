//! End-to-end: `hpc-rank --device nvidia.com/gpu=0` in runc mode with a real runc, on a
//! busybox rootfs, with the CDI spec cdi-gen generated for a fake two-GPU machine (mock
//! NVML). Inside the rank: the requested GPU's device node (made by runc from the spec),
//! not the other GPU's, the driver library bind-mounted from the driver root, the
//! spec's env; the spec's hooks ran. Needs root, runc, busybox-static and cdi-gen.

mod support;

use std::path::Path;

use support::*;

#[test]
fn runc_rank_sees_the_requested_gpu_and_the_driver_library() {
    require_root();
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("PREREQUISITE MISSING: runc (apt-get install runc)");
    let d = tempfile::tempdir().unwrap();
    let hooks = d.path().join("hooks.d");
    std::fs::create_dir(&hooks).unwrap();
    // Stands in for gpu-hook in the spec's hooks: records each call's arguments.
    let hook_log = d.path().join("hook.log");
    let hook = d.path().join("gpu-hook");
    script(
        &hook,
        &format!("#!/bin/sh\necho \"$*\" >> {}\n", hook_log.display()),
    );
    let specs = GpuSpecs::new(&hook, 2);
    let gpu1_minor = specs.machine.spec.gpus[1].minor;
    let rootfs = busybox_rootfs();
    let lib = format!("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{DRIVER}");
    let host_size = std::fs::metadata(specs.root().join(lib.trim_start_matches('/')))
        .unwrap()
        .len();
    let (code, out, err) = run(&mut hpc_rank([
        "--runc".as_ref(),
        runc.as_ref(),
        "--hooks-dir".as_ref(),
        hooks.as_os_str(),
        "--no-mpi".as_ref(),
        "--no-glibc".as_ref(),
        "--cdi-spec-dir".as_ref(),
        specs.dir.path().as_os_str(),
        "--device".as_ref(),
        "nvidia.com/gpu=0".as_ref(),
        rootfs.path().as_os_str(),
        "/bin/sh".as_ref(),
        "-c".as_ref(),
        format!(
            "stat -c '%n %F %t %T' /dev/nvidia0 /dev/nvidiactl; \
             [ -e /dev/nvidia{gpu1_minor} ] && echo other GPU present; \
             wc -c < {lib}; echo \"NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES\""
        )
        .as_ref(),
    ]));
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    assert_eq!(
        out,
        format!(
            "/dev/nvidia0 character special file c3 0\n\
             /dev/nvidiactl character special file c3 ff\n\
             {host_size}\n\
             NVIDIA_VISIBLE_DEVICES=void\n"
        ),
        "stderr {err:?}"
    );
    let calls = std::fs::read_to_string(&hook_log).unwrap_or_default();
    let subcommands: Vec<&str> = calls
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        subcommands,
        [
            "create-symlinks",
            "update-ldcache",
            "enable-cuda-compat",
            "create-symlinks"
        ],
        "the spec's hooks, run by runc: {calls}"
    );
}
