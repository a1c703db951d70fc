//! Benchmark: gpu-hook wall time (its own `elapsed_us` log line: from reading the state to
//! the last mount) under bare runc, for fake machines with 1 and 8 GPUs, with
//! `NVIDIA_VISIBLE_DEVICES=all`, live discovery (mock NVML) and spec files as the source.
//! Also the whole `runc run` time with and without the hook. Prints medians.
//!
//! Run: `cargo bench -p gpu-hook --bench hook_time` (root; runc, gcc, busybox-static).
//! `GPU_HOOK_BENCH_RUNS` sets the runs per case (default 15). With
//! `GPU_HOOK_BENCH_BASELINE=DIR` (a directory holding another build's `gpu-hook`), every
//! run is made with both binaries, alternating, and the hook medians are printed side by
//! side with their ratio: a comparison the machine's drift cannot bias.

use std::time::Duration;

use e2e_tests::{e2e_lock, hook_timings, Bundle, Overlay, Scratch};
use test_support::*;

/// The gpu-hook binary measured: `$HPC_HOOKS_BIN_DIR/gpu-hook` when set, as in the tests.
fn gpu_hook_bin() -> std::path::PathBuf {
    hook_under_test("gpu-hook", env!("CARGO_BIN_EXE_gpu-hook"))
}

/// The baseline gpu-hook of `GPU_HOOK_BENCH_BASELINE`, when set.
fn baseline_bin() -> Option<std::path::PathBuf> {
    std::env::var_os("GPU_HOOK_BENCH_BASELINE")
        .map(|d| std::path::PathBuf::from(d).join("gpu-hook"))
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn main() {
    let runs: usize = std::env::var("GPU_HOOK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let _l = e2e_lock();
    let scratch = Scratch::new("gpu-bench");
    let rootfs = cached_rootfs();
    let baseline = baseline_bin();
    println!("gpu-hook benchmark (bench profile = release): {runs} runs per case, medians");
    if let Some(b) = &baseline {
        println!(
            "baseline {} against {}, alternating run by run",
            b.display(),
            gpu_hook_bin().display()
        );
        println!(
            "{:<8} {:<10} {:>14} {:>14} {:>8}",
            "GPUs", "source", "baseline ms", "hook ms", "ratio"
        );
    } else {
        println!(
            "{:<8} {:<10} {:>14} {:>16}",
            "GPUs", "source", "hook ms", "runc run ms"
        );
    }
    let mut bins = vec![gpu_hook_bin()];
    bins.extend(baseline.clone());
    let mut n = 0;
    for gpus in [1u32, 8] {
        let m = build_machine(&MachineSpec::nvidia(gpus));
        let specs = scratch.subdir(&format!("specs{gpus}"));
        let nospecs = scratch.subdir(&format!("nospecs{gpus}"));
        // Spec file written by cdi-gen's library (same as `cdi-gen --output`).
        let mut opts = gpu_discover::GenerateOptions {
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
        let g = gpu_discover::generate(&opts, &mut Vec::new()).expect("generate");
        std::fs::write(specs.join("nvidia.json"), g.text).unwrap();
        for (source, dirs) in [("discover", &nospecs), ("spec", &specs), ("none", &nospecs)] {
            // [candidate, baseline] hook times; run times of the candidate.
            let mut hook_us: Vec<Vec<u64>> = vec![Vec::new(); bins.len()];
            let mut run_us = Vec::new();
            for (i, bin) in (0..runs).flat_map(|_| bins.iter().enumerate()) {
                if source == "none" && i > 0 {
                    continue;
                }
                n += 1;
                let ov = Overlay::new(scratch.path(), &format!("r{n}"), &rootfs);
                let mut b = Bundle::new(scratch.path(), &format!("b{n}"), &ov.merged, &["true"]);
                if source != "none" {
                    b.add_env("NVIDIA_VISIBLE_DEVICES=all");
                    let args = hook_args(
                        &m,
                        &dirs.display().to_string(),
                        // The bench container is unprivileged: its env is a request only so.
                        &["--source", source, "--env-requests", "always"],
                    );
                    let mut env = hook_env(b.hook_log());
                    env.retain(|e| !e.starts_with("HPC_HOOKS_LOG_LEVEL"));
                    env.push("HPC_HOOKS_LOG_LEVEL=info".into());
                    add_raw_hook(&mut b, "createRuntime", hook_object(bin, args, env));
                }
                let out = b.run_runc();
                out.assert_success("bench run");
                if i == 0 {
                    run_us.push(out.elapsed.as_micros() as u64);
                }
                if source != "none" {
                    let log = std::fs::read_to_string(b.hook_log()).unwrap_or_default();
                    let t = hook_timings(&log);
                    let us = t.iter().find(|(h, _)| h == "gpu-hook").map(|(_, u)| *u);
                    hook_us[i].push(us.expect("no elapsed_us line in the hook log"));
                }
            }
            let ms = |us: u64| format!("{:.2}", Duration::from_micros(us).as_secs_f64() * 1000.0);
            if baseline.is_some() {
                if source != "none" {
                    let (new, base) = (median(hook_us[0].clone()), median(hook_us[1].clone()));
                    println!(
                        "{:<8} {:<10} {:>14} {:>14} {:>7.3}x",
                        gpus,
                        source,
                        ms(base),
                        ms(new),
                        new as f64 / base.max(1) as f64
                    );
                }
                continue;
            }
            let hook_us = hook_us.swap_remove(0);
            println!(
                "{:<8} {:<10} {:>14} {:>16}",
                gpus,
                if source == "none" {
                    "(no hook)"
                } else {
                    source
                },
                if hook_us.is_empty() {
                    "-".to_string()
                } else {
                    ms(median(hook_us))
                },
                ms(median(run_us))
            );
        }
    }
}
