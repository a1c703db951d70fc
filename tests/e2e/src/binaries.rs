//! Where the things under test are: the workspace root, host commands (runc, gcc...) and
//! the hook binaries (`$HPC_HOOKS_BIN_DIR` or the release build), each missing one a test
//! failure saying what to install or build; and an ELF check of how a binary is linked.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Root of the cargo workspace.
pub fn workspace_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.is_file() && m.mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Absolute path of a host command; panics (test failure) when it is not installed.
pub fn require_command(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    for d in dirs {
        let c = d.join(name);
        if is_executable(&c) {
            return c;
        }
    }
    panic!(
        "PREREQUISITE MISSING: `{name}` is not installed (not found in PATH or sbin dirs). \
         The end-to-end tests need it; install it as .ci/run does \
         (apt-get install runc crun podman debootstrap mpich libmpich-dev gcc busybox-static)."
    )
}

/// Directory holding the hook binaries: `$HPC_HOOKS_BIN_DIR`, else
/// `$CARGO_TARGET_DIR/release`, else `<workspace>/target/release`.
pub fn hook_bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HPC_HOOKS_BIN_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        let d = PathBuf::from(d);
        let d = if d.is_absolute() {
            d
        } else {
            workspace_root().join(d)
        };
        return d.join("release");
    }
    workspace_root().join("target/release")
}

/// Path of a hook binary (`mpi-hook`, `glibc-hook`); panics when it is missing.
pub fn hook_bin(name: &str) -> PathBuf {
    let p = hook_bin_dir().join(name);
    if !is_executable(&p) {
        panic!(
            "PREREQUISITE MISSING: hook binary {} not found. Build it first with \
             `cargo build --release -p {name}` (tests/run-all.sh does), or point \
             HPC_HOOKS_BIN_DIR at the directory holding it.",
            p.display()
        );
    }
    p
}

/// Whether the ELF file at `path` has a `PT_INTERP` program header (is dynamically linked).
pub fn has_interpreter(path: &Path) -> bool {
    let b = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        b.len() >= 64 && b.starts_with(b"\x7fELF") && b[4] == 2 && b[5] == 1,
        "{} is not a 64-bit little-endian ELF file",
        path.display()
    );
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= b.len() && u32_at(o) == 3 // PT_INTERP
    })
}
