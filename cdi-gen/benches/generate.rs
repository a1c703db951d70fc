//! Whole-process benchmark of `cdi-gen` as a user runs it, on fake machines (mock NVML,
//! stub driver, the procfs/sysfs files a real driver host has, mig-minors included):
//! 1, 8 and 64 GPUs, 8x7 and 64x7 MIG devices, NVML and procfs discovery. Prints medians
//! and the cost per device. Run: `cargo bench -p cdi-gen --bench generate` (release build).
//! `CDI_GEN_BENCH_RUNS` sets the runs per case (default 41).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use test_support::{FakeMachine, MachineSpec};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(m: &FakeMachine, bin: &Path, runs: usize, extra: &[&str]) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        let mut c = m.command(bin);
        c.args(extra).stdout(Stdio::null()).stderr(Stdio::piped());
        let start = Instant::now();
        let o = c.output().expect("run cdi-gen");
        let t = start.elapsed();
        assert!(
            o.status.success(),
            "cdi-gen failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        if i >= 3 {
            times.push(t); // the first runs warm the page cache
        }
    }
    median(times)
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let bin = Path::new(env!("CARGO_BIN_EXE_cdi-gen"));
    let runs: usize = std::env::var("CDI_GEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(41);
    let cases: Vec<(&str, MachineSpec, usize, Option<u64>)> = vec![
        ("1 GPU", MachineSpec::nvidia(1), 1, None),
        ("8 GPUs", MachineSpec::nvidia(8), 8, Some(10)),
        ("64 GPUs", MachineSpec::nvidia(64), 64, None),
        ("8 GPUs x 7 MIG", MachineSpec::mig(8, 8, 7), 56, None),
        (
            "64 GPUs x 7 MIG",
            MachineSpec::mig(64, 64, 7),
            448,
            Some(60),
        ),
    ];
    println!(
        "cdi-gen whole-process wall time, median of {runs} runs ({})",
        bin.display()
    );
    println!(
        "{:<18} {:>8} {:>12} {:>12} {:>14} {:>8}",
        "machine", "devices", "NVML ms", "procfs ms", "us/device", "target"
    );
    let mut base: Option<(usize, f64)> = None;
    let mut failed = false;
    for (name, spec, devices, target) in cases {
        let m = FakeMachine::build(&spec);
        let nvml = time_runs(&m, bin, runs, &[]);
        let procfs = time_runs(&m, bin, runs, &["--discovery", "procfs"]);
        let ms = nvml.as_secs_f64() * 1000.0;
        let per = match base {
            Some((d0, t0)) if devices > d0 => {
                format!("{:.1}", (ms - t0) * 1000.0 / (devices - d0) as f64)
            }
            _ => "-".to_string(),
        };
        if base.is_none() {
            base = Some((devices, ms));
        }
        let verdict = match target {
            Some(t) if ms <= t as f64 => format!("<= {t} ok"),
            Some(t) => {
                failed = true;
                format!("> {t} MISS")
            }
            None => String::new(),
        };
        println!(
            "{name:<18} {devices:>8} {ms:>12.2} {:>12.2} {per:>14} {verdict:>8}",
            procfs.as_secs_f64() * 1000.0
        );
    }
    println!("us/device: extra time per device over the 1-GPU machine (flat = linear growth)");
    if failed {
        std::process::exit(1);
    }
}
