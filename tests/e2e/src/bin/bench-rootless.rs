//! Benchmark of the hooks rootless against rootful (issue 11, point 7): in one run,
//! alternating, `podman run` of mpi-hello with mpi-hook + glibc-hook from the same hooks.d
//! directory as root and as an unprivileged user (rootless podman, created and removed
//! here: e2e_tests::RootlessUser), each hook's own wall time read from its
//! `hook=<name> ... elapsed_us=<N>` info line (rootful: the hooks.d log file; rootless:
//! the fallback /run/user/UID/hpc-hooks.log). Prints medians and the rootless/rootful ratio
//! of the hooks' own time against the target (<= 1.20x). Reports only; exits non-zero
//! only when a run fails.
//!
//! Usage (as root, after building the static hooks):
//!   HPC_HOOKS_BIN_DIR=DIR cargo run -p e2e-tests --release --bin bench-rootless [-- --pairs N]

use e2e_tests::*;
use std::fs;
use std::path::Path;
use std::time::Duration;

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// (mpi-hook, glibc-hook) own times in ms from a hook log, which is then emptied.
fn hook_times(log: &Path, context: &str) -> (f64, f64) {
    let text = fs::read_to_string(log).unwrap_or_default();
    let t = hook_timings(&text);
    let get = |n: &str| {
        t.iter()
            .find(|(h, _)| h == n)
            .map(|(_, us)| *us as f64 / 1000.0)
    };
    let _ = fs::write(log, "");
    match (get("mpi-hook"), get("glibc-hook")) {
        (Some(m), Some(g)) => (m, g),
        _ => panic!(
            "{context}: no `hook=<name> elapsed_us=<N>` line for both hooks in {}:\n{text}",
            log.display()
        ),
    }
}

#[derive(Default)]
struct Side {
    mpi: Vec<f64>,
    glibc: Vec<f64>,
    total: Vec<f64>,
    wall: Vec<f64>,
}

impl Side {
    fn push(&mut self, (m, g): (f64, f64), wall: Duration) {
        self.mpi.push(m);
        self.glibc.push(g);
        self.total.push(m + g);
        self.wall.push(wall.as_secs_f64() * 1000.0);
    }
}

fn main() {
    let mut pairs: usize = std::env::var("BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--pairs") {
        pairs = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--pairs N");
    }
    let env = hooked_env();
    let podman = require_command("podman");
    let scratch = Scratch::new("bench-rootless");
    make_reachable(scratch.path());
    let log = scratch.path().join("hooks.log");
    let hooks_d = scratch.subdir("hooks.d");
    write_hooks_d(
        &hooks_d,
        "createRuntime",
        &[&Hook::glibc(&log, "info"), &Hook::mpi(&log, "info")],
    );
    // Both run the same copies, which the user can reach (the originals may be in a
    // checkout in root's home).
    let bin = scratch.path().join("bin");
    for h in ["mpi-hook", "glibc-hook"] {
        copy_for_user(&hook_bin(h), &bin);
    }
    for e in fs::read_dir(&hooks_d).unwrap().flatten() {
        let text = fs::read_to_string(e.path()).unwrap();
        let text = text.replace(
            &hook_bin_dir().display().to_string(),
            &bin.display().to_string(),
        );
        fs::write(e.path(), text).unwrap();
    }
    make_reachable(&hooks_d);
    let user = RootlessUser::create();
    // The same image for both: the user's copy of the cached image (rootless podman needs
    // an image tree the user owns), on a `:O` overlay.
    let rootfs = rootfs_for_user(&user, &env.rootfs);

    // The same podman command line for both.
    let args = |c: &mut std::process::Command| {
        c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .arg("--hooks-dir")
            .arg(&hooks_d)
            .args(["run", "--rm", "--name", &unique_id("hpcrootless-bench")])
            .args(["--network", "none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(["--annotation", "com.hooks.mpi.enabled=true"])
            .args(["--annotation", "com.hooks.glibc.enabled=true"])
            .arg("--rootfs")
            .arg(format!("{}:O", rootfs.display()))
            .arg(MPI_HELLO);
    };
    let rootful = || {
        let mut c = std::process::Command::new(&podman);
        args(&mut c);
        let out = run_cmd(c, Duration::from_secs(120));
        out.assert_mpich(&env.host.version, "rootful podman with hooks");
        (hook_times(&log, "rootful"), out.elapsed)
    };
    let rootless = || {
        let mut c = user.command(&podman, &[]);
        args(&mut c);
        let out = run_cmd(c, Duration::from_secs(120));
        out.assert_mpich(&env.host.version, "rootless podman with hooks");
        (hook_times(&user.hook_log(), "rootless"), out.elapsed)
    };

    // Warm-up (page cache, both podman storages), checked but not measured.
    rootful();
    rootless();
    let (mut root, mut less) = (Side::default(), Side::default());
    eprintln!("bench-rootless: {pairs} alternating pairs ...");
    for i in 0..pairs {
        for rootful_turn in [i % 2 == 0, i % 2 != 0] {
            if rootful_turn {
                let (t, w) = rootful();
                root.push(t, w);
            } else {
                let (t, w) = rootless();
                less.push(t, w);
            }
        }
    }
    let ratio = median(&less.total) / median(&root.total);
    println!("hpc-hooks rootless benchmark: {pairs} alternating pairs, medians (podman 4.3, runc)");
    for (name, r, l) in [
        ("mpi-hook own time  ", &root.mpi, &less.mpi),
        ("glibc-hook own time", &root.glibc, &less.glibc),
        ("hooks together     ", &root.total, &less.total),
        ("podman run (wall)  ", &root.wall, &less.wall),
    ] {
        println!(
            "  {name}: rootful {:8.2} ms, rootless {:8.2} ms, ratio {:.3}x",
            median(r),
            median(l),
            median(l) / median(r)
        );
    }
    println!(
        "  hooks' own time rootless/rootful: {ratio:.3}x (target <= 1.20x: {})",
        if ratio <= 1.2 { "met" } else { "MISSED" }
    );
}
