//! The Debian package on this machine: `dpkg -i` the .deb that `packaging/deb/build-deb.sh`
//! built (path in `$HPC_HOOKS_DEB`), then a plain `podman run` with the annotations (no
//! `--hooks-dir`: the hooks.d files the package wrote) runs the Debian 11 image on the
//! host's MPICH; `dpkg --purge` then leaves the file system as it was before.

use e2e_tests::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PKG: &str = "hpc-hooks";
const HOOKS_DIRS: [&str; 2] = [
    "/usr/share/containers/oci/hooks.d",
    "/etc/containers/oci/hooks.d",
];
/// Trees compared before install and after purge (what a package can touch).
const TRACKED: [&str; 6] = [
    "/usr",
    "/etc",
    "/lib",
    "/opt",
    "/var/lib/dpkg/info",
    "/var/log",
];

fn cmd(program: &str, args: &[&str]) -> RunOutput {
    let mut c = Command::new(require_command(program));
    c.args(args);
    run_cmd(c, Duration::from_secs(300))
}

/// Every path under the tracked trees (one file system each, no /proc-like noise).
fn snapshot() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<PathBuf> = TRACKED.iter().map(PathBuf::from).collect();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        out.insert(p.display().to_string());
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    // Logs other programs append to or rotate meanwhile are not ours to judge.
    out.retain(|p| {
        !(p.starts_with("/var/log/") && !p.contains("hpc-hooks") && !p.starts_with("/var/log/hpc"))
    });
    out
}

/// The package's default hook log (`LOG_FILE` in hpc-hooks.conf), removed by purge.
const LOG_FILE: &str = "/var/log/hpc-hooks.log";

/// Moves a file away for the test and puts it back afterwards (also on failure).
struct SetAside {
    path: PathBuf,
    saved: Option<PathBuf>,
}
impl SetAside {
    fn new(path: &Path) -> SetAside {
        let saved = path.exists().then(|| {
            let to = path.with_extension(format!("log.deb-test-{}", std::process::id()));
            std::fs::rename(path, &to)
                .unwrap_or_else(|e| panic!("cannot move {} aside: {e}", path.display()));
            to
        });
        SetAside {
            path: path.to_path_buf(),
            saved,
        }
    }
}
impl Drop for SetAside {
    fn drop(&mut self) {
        if let Some(s) = &self.saved {
            let _ = std::fs::rename(s, &self.path);
        }
    }
}

/// Purges the package if the test fails half-way, so later tests see a clean machine.
struct PurgeOnDrop;
impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", PKG]).output();
    }
}

#[test]
fn deb_installs_runs_the_mpi_scenario_and_purges_clean() {
    let _lock = e2e_lock();
    let deb = std::env::var_os("HPC_HOOKS_DEB")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "HPC_HOOKS_DEB is not set: build the package with packaging/deb/build-deb.sh \
             (tests/run-all.sh does) and point HPC_HOOKS_DEB at the .deb it prints"
            )
        });
    assert!(
        deb.is_file(),
        "HPC_HOOKS_DEB={} does not exist",
        deb.display()
    );
    require_command("podman");
    let host = host_mpi();
    let rootfs = cached_rootfs();

    // A source install (packaging/install.sh) or an earlier package would mix with this one.
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PKG])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
        .unwrap_or(false);
    assert!(
        !installed,
        "{PKG} is already installed on this machine; dpkg --purge {PKG} first (the test \
         installs and purges it itself)"
    );
    for d in HOOKS_DIRS {
        for f in [
            "hpc-hooks-mpi.json",
            "hpc-hooks-glibc.json",
            "hpc-hooks-gpu.json",
            "hpc-hooks-net.json",
        ] {
            let p = Path::new(d).join(f);
            assert!(
                !p.exists(),
                "{} exists before the package is installed (a source install with \
                 packaging/install.sh?); remove it: packaging/hpc-hooks-configure --remove",
                p.display()
            );
        }
    }

    // A log from hooks installed otherwise (benchmarks, install.sh) is set aside, so that
    // purge, which removes the package's log, can be checked to leave nothing else.
    let _log = SetAside::new(Path::new(LOG_FILE));
    let before = snapshot();
    let _purge = PurgeOnDrop;
    let out = cmd("dpkg", &["-i", deb.to_str().unwrap()]);
    out.assert_success("dpkg -i");
    let all = out.all_output();
    for d in HOOKS_DIRS {
        for f in ["hpc-hooks-mpi.json", "hpc-hooks-glibc.json"] {
            let p = format!("{d}/{f}");
            assert!(
                all.contains(&format!("wrote {p}")),
                "postinst did not write {p}:\n{out}"
            );
            assert!(Path::new(&p).is_file(), "{p} missing after dpkg -i");
        }
        // This machine has libfabric and UCX (the host MPIs link them): the network
        // stack's file, detected by the installed cdi-gen.
        let net = format!("{d}/hpc-hooks-net.json");
        assert!(
            all.contains(&format!("wrote {net}")),
            "postinst did not write {net}:\n{out}"
        );
        let text = std::fs::read_to_string(&net).unwrap();
        assert!(
            text.contains("libfabric.so.1") && text.contains("\"--net-only\""),
            "{net}: {text}"
        );
        // No NVIDIA driver or /dev/kfd here: gpu-hook's always-on file is left out.
        if !Path::new("/proc/driver/nvidia/version").exists() && !Path::new("/dev/kfd").exists() {
            assert!(!Path::new(&format!("{d}/hpc-hooks-gpu.json")).exists());
        }
    }

    // What the package installed.
    for b in ["mpi-hook", "glibc-hook", "gpu-hook"] {
        let p = Path::new("/usr/libexec/hpc-hooks").join(b);
        assert!(
            !has_interpreter(&p),
            "{} is dynamically linked",
            p.display()
        );
    }
    for (b, want) in [("cdi-gen", "cdi-gen"), ("hpc-rank", "hpc-rank")] {
        let out = cmd(&format!("/usr/bin/{b}"), &["--version"]);
        out.assert_success(b);
        assert!(out.stdout.contains(want), "{out}");
    }
    for m in [
        "/usr/share/man/man8/mpi-hook.8.gz",
        "/usr/share/man/man8/glibc-hook.8.gz",
        "/usr/share/man/man8/gpu-hook.8.gz",
        "/usr/share/man/man8/cdi-gen.8.gz",
        "/usr/share/man/man1/hpc-rank.1.gz",
        "/usr/share/man/man8/hpc-hooks-configure.8.gz",
        "/usr/share/man/man5/hpc-hooks.conf.5.gz",
    ] {
        let out = sh(&format!("zcat {m} | head -20"));
        assert!(out.contains(".TH"), "{m} is not a man page: {out}");
    }
    let completions = cmd(
        "bash",
        &[
            "-c",
            ". /usr/share/bash-completion/completions/cdi-gen && complete -p cdi-gen && \
             ls /usr/share/zsh/vendor-completions/_cdi-gen /usr/share/fish/vendor_completions.d/cdi-gen.fish",
        ],
    );
    completions.assert_success("bash, zsh and fish completions of cdi-gen");
    let out = completions.stdout.clone();
    assert!(
        out.contains("-F _cdi__gen cdi-gen"),
        "bash completion of cdi-gen: {out}"
    );
    assert!(
        Path::new("/lib/systemd/system/cdi-gen-refresh.path").is_file()
            && Path::new("/lib/systemd/system/cdi-gen-mpi-refresh.path").is_file()
            && Path::new("/lib/systemd/system/cdi-gen-mpi-refresh.service").is_file()
            && Path::new("/lib/udev/rules.d/99-cdi-gen.rules").is_file(),
        "units or udev rule missing"
    );
    let conf = std::fs::read_to_string("/etc/hpc-hooks/hpc-hooks.conf").unwrap();
    assert!(conf.contains("MPI_LIBS=auto"), "{conf}");

    // The MPI scenario through the installed files: a plain podman run, annotations only.
    let scratch = Scratch::new("deb");
    let ov = Overlay::new(scratch.path(), "plain", &rootfs);
    PodmanRun::new(Path::new("/nonexistent"), &ov.merged, &[MPI_HELLO])
        .default_hooks_dirs()
        .run()
        .assert_mpich(
            CONTAINER_MPICH_VERSION,
            "installed package, no annotations: the image's MPICH",
        );
    let ov = Overlay::new(scratch.path(), "hooked", &rootfs);
    PodmanRun::new(Path::new("/nonexistent"), &ov.merged, &[MPI_HELLO])
        .default_hooks_dirs()
        .enable_hooks(true, true)
        .run()
        .assert_mpich(
            &host.version,
            "installed package, annotations: the host's MPICH",
        );

    // Purge: everything the package and its scripts created is gone.
    let out = cmd("dpkg", &["--purge", PKG]);
    out.assert_success("dpkg --purge");
    let after = snapshot();
    let added: Vec<_> = after.difference(&before).collect();
    let removed: Vec<_> = before.difference(&after).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "dpkg --purge {PKG} did not restore the file system.\nleft behind: {added:#?}\nremoved: {removed:#?}"
    );
}
