//! The cached test rootfs (Debian 11 + MPICH, built once by tests/rootfs/build-rootfs.sh
//! and never modified) and the helpers that put libraries into a rootfs: gcc-built shared
//! libraries and a regenerated ld.so.cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::binaries::{require_command, workspace_root};
use crate::process::run_cmd;

/// Recipe of the cached test rootfs (Debian 11, glibc 2.31, MPICH 3.4.1, mpi-hello).
pub const RECIPE: &str = "debian11-mpich";
/// MPICH version installed in the test rootfs.
pub const CONTAINER_MPICH_VERSION: &str = "3.4.1";
/// The MPI hello program compiled inside the test rootfs.
pub const MPI_HELLO: &str = "/usr/local/bin/mpi-hello";

/// Path of the cached test rootfs, built (or reused) by `tests/rootfs/build-rootfs.sh`.
/// Panics with the script's output when it cannot be built. Never modify it: use
/// [`Overlay`](crate::Overlay) for containers.
pub fn cached_rootfs() -> PathBuf {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            let script = workspace_root().join("tests/rootfs/build-rootfs.sh");
            let out = Command::new("bash")
                .arg(&script)
                .arg(RECIPE)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                panic!(
                    "PREREQUISITE MISSING: the test rootfs `{RECIPE}` could not be built \
                     ({} {RECIPE} exited with {}).\nstdout:\n{stdout}\nstderr:\n{}",
                    script.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let path = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
            if !path.join(MPI_HELLO.trim_start_matches('/')).is_file() {
                panic!(
                    "PREREQUISITE MISSING: build-rootfs.sh printed `{}`, which has no {MPI_HELLO}",
                    path.display()
                );
            }
            path
        })
        .clone()
}

/// Compiles a C source into a shared library with the host gcc.
pub fn gcc_shared(src: &str, out: &Path, soname: &str) {
    let gcc = require_command("gcc");
    let c = out.with_extension("c");
    fs::write(&c, src).expect("write C source");
    let mut cmd = Command::new(gcc);
    cmd.args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(out)
        .arg(format!("-Wl,-soname,{soname}"))
        .arg(&c);
    run_cmd(cmd, Duration::from_secs(60)).assert_success("gcc -shared");
}

/// [`gcc_shared`] linked against `needed` (shared objects given by path), so that their
/// SONAMEs are in its DT_NEEDED.
pub fn gcc_shared_needing(src: &str, out: &Path, soname: &str, needed: &[&Path]) {
    let gcc = require_command("gcc");
    let c = out.with_extension("c");
    fs::write(&c, src).expect("write C source");
    let mut cmd = Command::new(gcc);
    cmd.args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(out)
        .arg(format!("-Wl,-soname,{soname}"))
        .arg(&c)
        .arg("-Wl,--no-as-needed")
        .args(needed);
    run_cmd(cmd, Duration::from_secs(60)).assert_success("gcc -shared (with needed libraries)");
}

/// Regenerates `rootfs/etc/ld.so.cache` with the host ldconfig.
pub fn ldconfig_root(rootfs: &Path) {
    let mut c = Command::new(require_command("ldconfig"));
    c.arg("-r").arg(rootfs);
    run_cmd(c, Duration::from_secs(60)).assert_success("ldconfig -r");
}
