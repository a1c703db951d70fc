//! Who may ask gpu-hook for GPUs (issue 18, item 5), end to end with bare runc on a fake
//! two-GPU machine (mock NVML): an unprivileged image with NVIDIA_VISIBLE_DEVICES=all gets
//! no GPU under the default policy, CUDA_VISIBLE_DEVICES is never a host index, and
//! cdi.k8s.io annotations are ignored unless the admin turns them on. Fails (does not
//! skip) when runc, gcc, busybox-static or root are missing.

mod case;
mod support;

use case::Case;
use e2e_tests::{e2e_lock, RunOutput, Scratch};
use serde_json::{json, Value};
use support::*;
use test_support::*;

/// The hook's log of a run (debug level: hook_env), as attached by `Bundle::run_runc`.
fn hook_log(out: &RunOutput) -> String {
    out.attachments
        .iter()
        .find(|(label, _)| label == "hook log")
        .map(|(_, text)| text.clone())
        .unwrap_or_default()
}

/// Asserts the container started, saw no GPU node, and its rootfs is untouched.
fn assert_no_gpu(out: &RunOutput, ov: &e2e_tests::Overlay, what: &str) {
    out.assert_success(what);
    let nodes = parse_stat(&out.stdout);
    assert!(nodes.is_empty(), "{what}: GPU nodes {nodes:?}\n{out}");
    assert!(
        out.stdout.contains("FAIL libcuda.so.1"),
        "{what}: the driver is loadable\n{out}"
    );
    let upper: Vec<_> = std::fs::read_dir(&ov.upper)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(upper.is_empty(), "{what}: the rootfs changed: {upper:?}");
}

fn script() -> String {
    format!("{LIST_NODES}; gpu-dlopen libcuda.so.1; true")
}

/// Adds CAP_SYS_ADMIN to the bounding set (what `--privileged` gives).
fn privileged(c: &mut Value) {
    c["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .expect("runc spec has a bounding set")
        .push(json!("CAP_SYS_ADMIN"));
}

fn annotate_gpu0(c: &mut Value) {
    c["annotations"] = json!({ "cdi.k8s.io/attacker_0": "nvidia.com/gpu=0" });
}

fn privileged_annotated(c: &mut Value) {
    privileged(c);
    annotate_gpu0(c);
}

#[test]
fn env_requests_need_privilege_by_default() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-policy-env");
    let m = build_machine(&MachineSpec::nvidia(2));
    let script = script();

    // Default policy (no switch), unprivileged container (runc spec's capabilities), the
    // ENV of a CUDA base image: no GPU, the container starts, the log says which switch.
    let mut c = Case::new(&m, &["NVIDIA_VISIBLE_DEVICES=all"], &script);
    c.extra_args.clear();
    let (out, ov) = c.run(&scratch, "default-unpriv");
    assert_no_gpu(
        &out,
        &ov,
        "default policy, unprivileged, NVIDIA_VISIBLE_DEVICES=all",
    );
    let log = hook_log(&out);
    assert!(
        log.contains("WARN")
            && log.contains(
                "in the container environment ignored, the container gets no GPU from it: \
                 gpu-hook --env-requests privileged takes GPU requests from the environment only from privileged \
                 containers (CAP_SYS_ADMIN in the bounding capability set), and this container is not privileged"
            )
            && log.contains("NVIDIA_VISIBLE_DEVICES=")
            && log.contains("gpu-hook --env-requests always"),
        "no clear warning:\n{log}"
    );

    // The same request with --env-requests always: both GPUs.
    let (out, _ov) =
        Case::new(&m, &["NVIDIA_VISIBLE_DEVICES=all"], &script).run(&scratch, "always-unpriv");
    out.assert_success("--env-requests always");
    let nodes = parse_stat(&out.stdout);
    assert!(
        nodes.contains_key("/dev/nvidia0") && nodes.contains_key("/dev/nvidia1"),
        "--env-requests always: {out}"
    );
    assert!(out.stdout.contains("ok libcuda.so.1"), "{out}");

    // Default policy, privileged container (CAP_SYS_ADMIN in the bounding set): GPU 1.
    let mut c = Case::new(&m, &["NVIDIA_VISIBLE_DEVICES=1"], &script);
    c.extra_args.clear();
    c.config = Some(&privileged);
    let (out, _ov) = c.run(&scratch, "default-priv");
    out.assert_success("default policy, privileged");
    let nodes = parse_stat(&out.stdout);
    assert!(
        nodes.contains_key("/dev/nvidia1") && !nodes.contains_key("/dev/nvidia0"),
        "default policy, privileged: {out}"
    );

    // --env-requests never: not even a privileged container.
    let mut c = Case::new(&m, &["NVIDIA_VISIBLE_DEVICES=all"], &script);
    c.extra_args = vec!["--env-requests=never".into()];
    c.config = Some(&privileged);
    let (out, ov) = c.run(&scratch, "never-priv");
    assert_no_gpu(&out, &ov, "--env-requests never, privileged");
    let log = hook_log(&out);
    assert!(
        log.contains(
            "--env-requests never takes GPU requests from the environment from no container"
        ),
        "{log}"
    );

    // --allow-kinds without nvidia.com/gpu: the allowed env request is still left out.
    let mut c = Case::new(&m, &["NVIDIA_VISIBLE_DEVICES=0"], &script);
    c.extra_args
        .extend(["--allow-kinds".to_string(), "amd.com/gpu".to_string()]);
    let (out, ov) = c.run(&scratch, "kinds");
    assert_no_gpu(&out, &ov, "--allow-kinds amd.com/gpu");
    let log = hook_log(&out);
    assert!(
        log.contains(
            "nvidia.com/gpu=0 (from NVIDIA_VISIBLE_DEVICES=0) ignored: the CDI kind nvidia.com/gpu is not in gpu-hook --allow-kinds (amd.com/gpu)"
        ),
        "{log}"
    );
}

/// Slurm sets CUDA_VISIBLE_DEVICES relative to the job's GPUs: 1 is the job's second GPU,
/// perhaps another job's host GPU 1. It is never read as a host index, whatever the policy.
#[test]
fn cuda_visible_devices_is_not_a_host_index() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-policy-cuda");
    let m = build_machine(&MachineSpec::nvidia(2));
    for (name, priv_) in [("cuda-unpriv", false), ("cuda-priv", true)] {
        // --env-requests always: even the most permissive env policy.
        let mut c = Case::new(&m, &["CUDA_VISIBLE_DEVICES=1"], &script());
        if priv_ {
            c.config = Some(&privileged);
        }
        let (out, ov) = c.run(&scratch, name);
        assert_no_gpu(&out, &ov, "CUDA_VISIBLE_DEVICES=1 alone");
        let log = hook_log(&out);
        assert!(
            log.contains("CUDA_VISIBLE_DEVICES=")
                && log.contains(
                    "ignored: it numbers the GPUs a job or engine already gave the container"
                ),
            "{name}: no note in the log:\n{log}"
        );
    }
}

#[test]
fn cdi_annotations_are_off_by_default() {
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-policy-cdi");
    let m = build_machine(&MachineSpec::nvidia(2));
    let script = script();

    // Default: a cdi.k8s.io annotation is ignored, privileged or not.
    for (name, priv_) in [("ann-default", false), ("ann-default-priv", true)] {
        let mut c = Case::new(&m, &[], &script);
        c.extra_args.clear();
        c.config = Some(if priv_ {
            &privileged_annotated
        } else {
            &annotate_gpu0
        });
        let (out, ov) = c.run(&scratch, name);
        assert_no_gpu(&out, &ov, "cdi.k8s.io annotation, default policy");
        let log = hook_log(&out);
        assert!(
            log.contains("annotation cdi.k8s.io/attacker_0=")
                && log.contains(
                    "ignored: gpu-hook applies cdi.k8s.io/* annotations only with --cdi-annotations on"
                ),
            "{name}: {log}"
        );
    }

    // --cdi-annotations on: applied (GPU 0 only).
    let mut c = Case::new(&m, &[], &script);
    c.extra_args = vec!["--cdi-annotations".into(), "on".into()];
    c.config = Some(&annotate_gpu0);
    let (out, _ov) = c.run(&scratch, "ann-on");
    out.assert_success("--cdi-annotations on");
    let nodes = parse_stat(&out.stdout);
    assert!(
        nodes.contains_key("/dev/nvidia0") && !nodes.contains_key("/dev/nvidia1"),
        "--cdi-annotations on: {out}"
    );

    // On, but the kind is not allowed: ignored.
    let mut c = Case::new(&m, &[], &script);
    c.extra_args = vec![
        "--cdi-annotations=on".into(),
        "--allow-kinds=amd.com/gpu".into(),
    ];
    c.config = Some(&annotate_gpu0);
    let (out, ov) = c.run(&scratch, "ann-kind");
    assert_no_gpu(&out, &ov, "--cdi-annotations on, kind not allowed");
    assert!(
        hook_log(&out).contains("the CDI kind nvidia.com/gpu is not in gpu-hook --allow-kinds"),
        "{}",
        hook_log(&out)
    );
}

/// Runs packaging/hpc-hooks-configure (GPU=yes) into a scratch hooks.d directory.
fn configure(scratch: &Scratch, name: &str, extra: &[&str]) -> (RunOutput, std::path::PathBuf) {
    let root = e2e_tests::workspace_root();
    let hooks = scratch.subdir(name);
    let bin = e2e_tests::hook_bin_dir();
    let mut c = std::process::Command::new(root.join("packaging/hpc-hooks-configure"));
    c.arg("--config")
        .arg(root.join("packaging/hpc-hooks.conf"))
        .arg("--templates")
        .arg(root.join("packaging/hooks.d"))
        .arg("--libexec")
        .arg(&bin)
        .arg("--cdi-gen")
        .arg(bin.join("cdi-gen"))
        .arg("--hooks-dir")
        .arg(&hooks)
        .arg("--log-file")
        .arg(scratch.path().join("hooks.log"))
        .args(["--gpu", "yes"])
        .args(extra);
    (
        e2e_tests::run_cmd(c, std::time::Duration::from_secs(60)),
        hooks.join("hpc-hooks-gpu.json"),
    )
}

fn hook_args_of(file: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    (strings(&doc["hook"]["args"]), strings(&doc["hook"]["env"]))
}

/// The packaged hooks.d file carries the safe policy in gpu-hook's args (not its env,
/// which runc may fill with the container's), every setting reaches it, gpu-hook accepts
/// what is written, and a hostile value cannot add arguments.
#[test]
fn packaged_policy_is_safe_and_in_args() {
    let scratch = Scratch::new("gpu-policy-pkg");
    let (out, file) = configure(&scratch, "default", &[]);
    out.assert_success("hpc-hooks-configure --gpu yes");
    let (args, env) = hook_args_of(&file);
    let pairs: Vec<(&str, &str)> = args
        .windows(2)
        .map(|w| (w[0].as_str(), w[1].as_str()))
        .collect();
    assert!(
        pairs.contains(&("--env-requests", "privileged")),
        "{args:?}"
    );
    assert!(pairs.contains(&("--cdi-annotations", "off")), "{args:?}");
    assert!(
        args.iter().any(|a| a == "--allow-kinds"),
        "no --allow-kinds: {args:?}"
    );
    for e in &env {
        assert!(
            !e.contains("REQUESTS") && !e.contains("ANNOTATIONS") && !e.contains("KINDS"),
            "policy in the hook's env: {e}"
        );
    }

    let (out, file) = configure(
        &scratch,
        "open",
        &[
            "--gpu-env-requests",
            "always",
            "--gpu-cdi-annotations",
            "on",
            "--gpu-allow-kinds",
            "nvidia.com/gpu,vendor.com/dev",
        ],
    );
    out.assert_success("hpc-hooks-configure with the policy options");
    let (args, _) = hook_args_of(&file);
    let tail: Vec<&str> = args.iter().map(String::as_str).collect();
    for pair in [
        ["--env-requests", "always"],
        ["--cdi-annotations", "on"],
        ["--allow-kinds", "nvidia.com/gpu,vendor.com/dev"],
    ] {
        assert!(
            tail.windows(2).any(|w| w == pair),
            "{pair:?} missing: {args:?}"
        );
    }
    // gpu-hook accepts the written args: it gets past parsing to reading the state.
    let mut c = std::process::Command::new(gpu_hook_bin());
    c.args(&args[1..]).stdin(std::process::Stdio::null());
    let run = e2e_tests::run_cmd(c, std::time::Duration::from_secs(30));
    let all = run.all_output();
    // A usage error exits 1 too: the error line tells it from the missing state.
    assert!(
        run.status.and_then(|s| s.code()) == Some(1)
            && all.contains("the container state on stdin")
            && !all.contains("invalid value")
            && !all.contains("unexpected argument"),
        "gpu-hook refused the packaged args: {run}"
    );

    // Hostile or wrong values are refused (exit 2), nothing is written.
    for (i, bad) in [
        [
            "--gpu-allow-kinds",
            "nvidia.com/gpu\",\"--env-requests=always",
        ],
        ["--gpu-allow-kinds", "nvidia.com"],
        ["--gpu-env-requests", "yes"],
        ["--gpu-cdi-annotations", "true"],
    ]
    .iter()
    .enumerate()
    {
        let (out, file) = configure(&scratch, &format!("bad{i}"), bad);
        assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{bad:?}: {out}");
        assert!(!file.exists(), "{bad:?}: wrote {}", file.display());
    }
}
