//! The cached test rootfs (Debian 11 + MPICH, Debian 11 + Open MPI, Debian 11 + libfabric
//! and UCX: built once by tests/rootfs/build-rootfs.sh and never modified) and the helpers
//! that put libraries into a rootfs: gcc-built shared libraries and a regenerated
//! ld.so.cache.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::binaries::{require_command, workspace_root};
use crate::overlay::Overlay;
use crate::process::run_cmd;
use crate::scratch::Scratch;

/// Recipe of the cached test rootfs (Debian 11, glibc 2.31, MPICH 3.4.1, mpi-hello).
pub const RECIPE: &str = "debian11-mpich";
/// MPICH version installed in the test rootfs.
pub const CONTAINER_MPICH_VERSION: &str = "3.4.1";
/// The MPI hello program compiled inside the test rootfs.
pub const MPI_HELLO: &str = "/usr/local/bin/mpi-hello";

/// Recipe of the Debian 11 image with Open MPI 4.1.0 (`libmpi.so.40`) and mpi-hello.
pub const OPEN_MPI_RECIPE: &str = "debian11-openmpi";
/// Open MPI version installed in the [`OPEN_MPI_RECIPE`] image.
pub const CONTAINER_OPEN_MPI_VERSION: &str = "4.1.0";

/// Path of the cached test rootfs, built (or reused) by `tests/rootfs/build-rootfs.sh`.
/// Panics with the script's output when it cannot be built. Never modify it: use
/// [`Overlay`](crate::Overlay) for containers.
pub fn cached_rootfs() -> PathBuf {
    cached_recipe(RECIPE)
}

/// The cached Debian 11 Open MPI 4.1.0 image ([`OPEN_MPI_RECIPE`]).
pub fn open_mpi_rootfs() -> PathBuf {
    cached_recipe(OPEN_MPI_RECIPE)
}

/// Recipe of the Debian 11 image with its own network stack: libfabric 1.11 (fi_info,
/// fi_pingpong), UCX 1.10 (ucx_info) and [`NET_VERSIONS`]; no MPI.
pub const NET_RECIPE: &str = "debian11-net";
/// libfabric version of the [`NET_RECIPE`] image.
pub const CONTAINER_LIBFABRIC_VERSION: &str = "1.11.0";
/// UCX version of the [`NET_RECIPE`] image.
pub const CONTAINER_UCX_VERSION: &str = "1.10.0";
/// Program of the [`NET_RECIPE`] image printing the versions the LOADED libfabric and libucp
/// report (`libfabric MAJOR.MINOR`, `ucp X.Y.Z`): `ucx_info -v` prints the version it was
/// compiled against, whatever libucp it loads.
pub const NET_VERSIONS: &str = "/usr/local/bin/net-versions";

/// The cached Debian 11 image with libfabric 1.11 and UCX 1.10 ([`NET_RECIPE`]).
pub fn net_rootfs() -> PathBuf {
    cached_recipe_holding(NET_RECIPE, NET_VERSIONS)
}

/// Path of the cached rootfs of `recipe` (tests/rootfs/recipes/RECIPE.sh), built once per
/// test process; it must hold [`MPI_HELLO`].
pub fn cached_recipe(recipe: &str) -> PathBuf {
    cached_recipe_holding(recipe, MPI_HELLO)
}

/// [`cached_recipe`] for an image that must hold `program` (an absolute container path).
pub fn cached_recipe_holding(recipe: &str, program: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(recipe) {
        return p.clone();
    }
    let script = workspace_root().join("tests/rootfs/build-rootfs.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(recipe)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!(
            "PREREQUISITE MISSING: the test rootfs `{recipe}` could not be built \
             ({} {recipe} exited with {}).\nstdout:\n{stdout}\nstderr:\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
    if !path.join(program.trim_start_matches('/')).is_file() {
        panic!(
            "PREREQUISITE MISSING: build-rootfs.sh printed `{}`, which has no {program}",
            path.display()
        );
    }
    built.insert(recipe.to_string(), path.clone());
    path
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

/// A Debian 11 image WITHOUT an MPI whose programs were built against the MPICH ABI (in
/// the MPICH image): every MPICH file of the cached `rootfs` removed in an overlay, the
/// loader cache regenerated by the host's `ldconfig -r` (nothing of the image runs).
pub fn image_without_mpi(scratch: &Scratch, rootfs: &Path) -> Overlay {
    let ov = Overlay::new(scratch.path(), "nompi", rootfs);
    let lib = ov.path("/usr/lib/x86_64-linux-gnu");
    let mut removed = 0;
    for e in fs::read_dir(&lib).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("libmpi") || n == "mpich" {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                fs::remove_dir_all(&p).unwrap();
            } else {
                fs::remove_file(&p).unwrap();
            }
            removed += 1;
        }
    }
    assert!(
        removed >= 4,
        "the cached image has no MPICH to remove in {}",
        lib.display()
    );
    for e in fs::read_dir(ov.path("/usr/bin")).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("mpi") {
            fs::remove_file(e.path()).unwrap();
        }
    }
    ldconfig_root(&ov.merged);
    let mut c = Command::new(require_command("ldconfig"));
    c.arg("-p").arg("-C").arg(ov.path("/etc/ld.so.cache"));
    let listed = run_cmd(c, Duration::from_secs(30));
    listed.assert_success("ldconfig -p of the image without MPI");
    assert!(
        !listed.stdout.contains("libmpi"),
        "the image still has an MPI in its cache:\n{}",
        listed.stdout
    );
    ov
}
