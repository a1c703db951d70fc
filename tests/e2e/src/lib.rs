//! Harness of the hpc-hooks end-to-end tests and benchmark.
//!
//! Everything here drives real runtimes (runc, crun, podman) through
//! `std::process::Command`. A missing prerequisite (runtime, rootfs, hook binary)
//! makes the calling test FAIL with a message saying what to install or build:
//! nothing is skipped silently.
//!
//! Rules the harness enforces:
//! - the cached rootfs (`tests/rootfs/build-rootfs.sh`) is never modified: every
//!   container runs on an overlayfs whose lower layer is the cached rootfs and whose
//!   upper/work dirs live in a per-test scratch dir;
//! - every test takes the global e2e lock ([`e2e_lock`]) first, so tests sharing global
//!   state (podman storage, the mount table, the kernel log) never run concurrently,
//!   whatever `--test-threads` says;
//! - containers, overlays and scratch dirs are cleaned up on drop.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Annotation that enables mpi-hook.
pub const MPI_ANNOTATION: &str = "com.hooks.mpi.enabled";
/// Annotation that enables glibc-hook.
pub const GLIBC_ANNOTATION: &str = "com.hooks.glibc.enabled";
/// Recipe of the cached test rootfs (Debian 11, glibc 2.31, MPICH 3.4.1, mpi-hello).
pub const RECIPE: &str = "debian11-mpich";
/// MPICH version installed in the test rootfs.
pub const CONTAINER_MPICH_VERSION: &str = "3.4.1";
/// The MPI hello program compiled inside the test rootfs.
pub const MPI_HELLO: &str = "/usr/local/bin/mpi-hello";
/// Default timeout of one runtime invocation.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// glibc sonames (and the loader / vdso) that are not MPI dependencies.
const GLIBC_SONAME_PREFIXES: &[&str] = &[
    "linux-vdso.so",
    "linux-gate.so",
    "ld-linux",
    "ld64.so",
    "libc.so",
    "libm.so",
    "libmvec.so",
    "libpthread.so",
    "libdl.so",
    "librt.so",
    "libresolv.so",
    "libutil.so",
    "libanl.so",
    "libnsl.so",
    "libBrokenLocale.so",
    "libthread_db.so",
    "libc_malloc_debug.so",
    "libnss_",
    "libmemusage.so",
    "libpcprofile.so",
];

// ---------------------------------------------------------------------------
// Paths and prerequisites
// ---------------------------------------------------------------------------

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

/// Path of the cached test rootfs, built (or reused) by `tests/rootfs/build-rootfs.sh`.
/// Panics with the script's output when it cannot be built. Never modify it: use
/// [`Overlay`] for containers.
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

/// Host MPI configuration handed to mpi-hook.
#[derive(Clone, Debug)]
pub struct HostMpi {
    /// Host MPICH library (`MPI_LIBS`).
    pub lib: PathBuf,
    /// Its non-glibc dependencies as resolved by `ldd` (`MPI_DEPENDENCY_LIBS`).
    pub deps: Vec<PathBuf>,
    /// Host MPICH version (e.g. `4.0.2`), from `mpichversion`.
    pub version: String,
}

impl HostMpi {
    /// `MPI_LIBS` value.
    pub fn mpi_libs(&self) -> String {
        self.lib.display().to_string()
    }
    /// `MPI_DEPENDENCY_LIBS` value.
    pub fn dependency_libs(&self) -> String {
        self.deps
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// The host's MPICH (override the library with `E2E_HOST_MPI_LIB`).
pub fn host_mpi() -> HostMpi {
    static HOST: OnceLock<HostMpi> = OnceLock::new();
    HOST.get_or_init(|| {
        let lib = std::env::var_os("E2E_HOST_MPI_LIB")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/x86_64-linux-gnu/libmpich.so.12.2.2"));
        if !lib.is_file() {
            panic!(
                "PREREQUISITE MISSING: host MPI library {} not found (apt-get install mpich libmpich-dev, \
                 or set E2E_HOST_MPI_LIB)",
                lib.display()
            );
        }
        let ldd = require_command("ldd");
        let out = Command::new(ldd).arg(&lib).output().expect("run ldd");
        assert!(
            out.status.success(),
            "ldd {} failed: {}",
            lib.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut deps = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "\tlibhwloc.so.15 => /lib/x86_64-linux-gnu/libhwloc.so.15 (0x...)"
            let Some((name, rest)) = line.trim().split_once(" => ") else {
                continue;
            };
            if GLIBC_SONAME_PREFIXES.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let path = rest.split_whitespace().next().unwrap_or("");
            assert!(
                path.starts_with('/'),
                "ldd {}: dependency {name} not found on the host: `{line}`",
                lib.display()
            );
            deps.push(PathBuf::from(path));
        }
        let mv = require_command("mpichversion");
        let out = Command::new(mv).output().expect("run mpichversion");
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("MPICH Version:").map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("cannot read the host MPICH version from mpichversion"));
        HostMpi { lib, deps, version }
    })
    .clone()
}

/// Version reported by mpi-hello ("rank 0 of 1: MPICH Version:\t3.4.1 ..."), if any.
pub fn mpich_version(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        let (_, v) = l.split_once("MPICH Version:")?;
        v.split_whitespace().next().map(str::to_string)
    })
}

// ---------------------------------------------------------------------------
// Global lock, ids, scratch dirs
// ---------------------------------------------------------------------------

/// Held for the whole duration of an e2e test; see [`e2e_lock`].
pub struct E2eLock {
    _file: fs::File,
}

/// Takes the machine-wide e2e lock (flock on `/run/lock/hpc-hooks-e2e.lock`, or the
/// temp dir). Blocks until free. Works across threads of one test binary and across
/// test binaries.
pub fn e2e_lock() -> E2eLock {
    let dir = if Path::new("/run/lock").is_dir() {
        PathBuf::from("/run/lock")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join("hpc-hooks-e2e.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    loop {
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            panic!("flock {}: {err}", path.display());
        }
    }
    E2eLock { _file: file }
}

/// A container id / name unique on this machine.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "e2e-{prefix}-{}-{}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A per-test scratch directory (under the temp dir, on a disk filesystem so that it
/// can hold overlay upper/work dirs and device nodes). On drop, anything still mounted
/// below it is unmounted; if that fails, the directory is left in place rather than
/// removed through a mount.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let base = std::env::var_os("E2E_SCRATCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp"));
        fs::create_dir_all(&base).expect("create scratch base");
        let dir = tempfile::Builder::new()
            .prefix(&format!("hpc-hooks-e2e-{tag}-"))
            .tempdir_in(&base)
            .expect("create scratch dir");
        Scratch { dir: Some(dir) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("scratch").path()
    }

    /// `path()/rel`, created as a directory.
    pub fn subdir(&self, rel: &str) -> PathBuf {
        let p = self.path().join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let root = dir.path().to_path_buf();
        let mut left: Vec<String> = mount_table()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|mp| Path::new(mp).starts_with(&root))
            .collect();
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mp in &left {
            let _ = Command::new("umount").arg("-l").arg(mp).status();
        }
        let still = mount_table()
            .into_iter()
            .any(|m| Path::new(&m.mount_point).starts_with(&root));
        if still {
            eprintln!(
                "warning: mounts remain under {}, leaving it in place",
                root.display()
            );
            let _ = dir.keep();
        }
    }
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// Result of one command, with everything needed for a useful failure message.
pub struct RunOutput {
    pub what: String,
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Extra files shown in failure messages (hook log, crun hook stderr...).
    pub attachments: Vec<(String, String)>,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.map(|s| s.success()).unwrap_or(false)
    }

    /// Panics with the full output unless the command succeeded.
    pub fn assert_success(&self, context: &str) -> &Self {
        if !self.success() {
            panic!("{context}: command failed\n{self}");
        }
        self
    }

    /// Panics unless the command failed (non-zero exit, no timeout).
    pub fn assert_failure(&self, context: &str) -> &Self {
        if self.success() || self.timed_out {
            panic!("{context}: expected the container start to FAIL\n{self}");
        }
        self
    }

    /// Version printed by mpi-hello.
    pub fn mpich_version(&self) -> Option<String> {
        mpich_version(&self.stdout)
    }

    /// Panics unless the command succeeded and mpi-hello reported `version`.
    pub fn assert_mpich(&self, version: &str, context: &str) -> &Self {
        self.assert_success(context);
        match self.mpich_version() {
            Some(v) if v == version => self,
            got => panic!(
                "{context}: expected mpi-hello to report MPICH {version}, got {got:?}\n{self}"
            ),
        }
    }

    /// stdout and stderr together (for substring assertions on error messages).
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Attaches the contents of `path` (if it exists) to failure messages.
    pub fn attach_file(&mut self, label: &str, path: &Path) {
        if let Ok(s) = fs::read_to_string(path) {
            self.attachments.push((label.to_string(), tail(&s, 6000)));
        }
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]{}", &s[start..])
}

impl fmt::Display for RunOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- command: {}", self.what)?;
        if self.timed_out {
            writeln!(f, "--- TIMED OUT after {:?}", self.elapsed)?;
        } else {
            writeln!(f, "--- exit: {:?} after {:?}", self.status, self.elapsed)?;
        }
        writeln!(f, "--- stdout:\n{}", tail(&self.stdout, 6000))?;
        writeln!(f, "--- stderr:\n{}", tail(&self.stderr, 6000))?;
        for (label, content) in &self.attachments {
            writeln!(f, "--- {label}:\n{content}")?;
        }
        Ok(())
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` (stdin null, output captured), killing it after `timeout`.
pub fn run_cmd(mut cmd: Command, timeout: Duration) -> RunOutput {
    let what = describe(&cmd);
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (res, timed_out) = match rx.recv_timeout(timeout) {
        Ok(r) => (Some(r), false),
        Err(_) => {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            (rx.recv_timeout(Duration::from_secs(20)).ok(), true)
        }
    };
    let elapsed = start.elapsed();
    match res {
        Some(Ok(out)) => RunOutput {
            what,
            status: Some(out.status),
            timed_out,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
            attachments: Vec::new(),
        },
        Some(Err(e)) => panic!("waiting for `{what}`: {e}"),
        None => RunOutput {
            what,
            status: None,
            timed_out: true,
            stdout: String::new(),
            stderr: "(output lost: the process or a descendant kept its pipes open)".into(),
            elapsed,
            attachments: Vec::new(),
        },
    }
}

/// Runs a shell command line on the host; panics on failure.
pub fn sh(script: &str) -> String {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    let out = run_cmd(c, Duration::from_secs(120));
    out.assert_success(&format!("host command `{script}`"));
    out.stdout
}

// ---------------------------------------------------------------------------
// Hooks
// ---------------------------------------------------------------------------

/// One hook registration: which binary and its environment.
#[derive(Clone, Debug)]
pub struct Hook {
    pub name: String,
    pub env: Vec<String>,
    pub timeout: u64,
}

impl Hook {
    /// `glibc-hook` with logging to `log` at `level`.
    pub fn glibc(log: &Path, level: &str) -> Hook {
        hook_bin("glibc-hook");
        Hook {
            name: "glibc-hook".into(),
            env: base_hook_env(log, level),
            timeout: 60,
        }
    }

    /// `mpi-hook` configured with the host MPICH, its dependencies and the host ldconfig.
    pub fn mpi(log: &Path, level: &str) -> Hook {
        hook_bin("mpi-hook");
        let host = host_mpi();
        let mut env = base_hook_env(log, level);
        env.push(format!("MPI_LIBS={}", host.mpi_libs()));
        env.push(format!("MPI_DEPENDENCY_LIBS={}", host.dependency_libs()));
        env.push(format!(
            "LDCONFIG_PATH={}",
            require_command("ldconfig").display()
        ));
        Hook {
            name: "mpi-hook".into(),
            env,
            timeout: 60,
        }
    }

    /// Sets (replaces or adds) one `K=V` in the hook environment.
    pub fn with_env(mut self, key: &str, value: &str) -> Hook {
        let prefix = format!("{key}=");
        self.env.retain(|e| !e.starts_with(&prefix));
        self.env.push(format!("{key}={value}"));
        self
    }

    pub fn path(&self) -> PathBuf {
        hook_bin(&self.name)
    }

    /// OCI runtime-spec hook object.
    pub fn oci_json(&self) -> Value {
        json!({
            "path": self.path(),
            "args": [self.name],
            "env": self.env,
            "timeout": self.timeout,
        })
    }

    /// Annotation that activates this hook.
    pub fn annotation(&self) -> &'static str {
        if self.name == "mpi-hook" {
            MPI_ANNOTATION
        } else {
            GLIBC_ANNOTATION
        }
    }
}

fn base_hook_env(log: &Path, level: &str) -> Vec<String> {
    vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        format!("HPC_HOOKS_LOG_LEVEL={level}"),
        format!("HPC_HOOKS_LOG_FILE={}", log.display()),
    ]
}

/// Escapes a literal for a Go RE2 regex.
pub fn regex_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// Writes podman hooks.d files (`NN-<name>.json`, in the given order) into `dir`: explicit
/// stage, explicit env, anchored annotation regexes.
pub fn write_hooks_d(dir: &Path, stage: &str, hooks: &[&Hook]) {
    fs::create_dir_all(dir).expect("mkdir hooks.d");
    for (i, h) in hooks.iter().enumerate() {
        let key = format!("^{}$", regex_escape(h.annotation()));
        let doc = json!({
            "version": "1.0.0",
            "hook": h.oci_json(),
            "when": { "annotations": { key: "^true$" } },
            "stages": [stage],
        });
        let file = dir.join(format!("{:02}-{}.json", (i + 1) * 5, h.name));
        fs::write(&file, serde_json::to_string_pretty(&doc).unwrap())
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }
}

/// Parses `hook=<name> ... elapsed_us=<N>` lines of a hook log.
pub fn hook_timings(log: &str) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for line in log.lines() {
        let mut name = None;
        let mut us = None;
        for tok in line.split(|c: char| c.is_whitespace() || c == ',' || c == '}' || c == '{') {
            let tok = tok.trim_matches('"');
            if let Some(n) = tok.strip_prefix("hook=") {
                name = Some(n.trim_matches('"').to_string());
            } else if let Some(n) = tok.strip_prefix("elapsed_us=") {
                us = n.trim_matches('"').parse::<u64>().ok();
            }
        }
        if let (Some(n), Some(u)) = (name, us) {
            v.push((n, u));
        }
    }
    v
}

// ---------------------------------------------------------------------------
// Overlay rootfs
// ---------------------------------------------------------------------------

/// An overlayfs over a (read-only, never modified) lower rootfs; modifications land in
/// `upper`. Unmounted on drop.
pub struct Overlay {
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    mounted: bool,
}

impl Overlay {
    /// Mounts an overlay of `lower` in `parent/<name>/{upper,work,merged}`.
    pub fn new(parent: &Path, name: &str, lower: &Path) -> Overlay {
        let base = parent.join(name);
        let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        let mut c = Command::new("mount");
        c.args(["-t", "overlay", "overlay", "-o"]).arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        ));
        c.arg(&merged);
        run_cmd(c, Duration::from_secs(30)).assert_success("mount overlay");
        Overlay {
            lower: lower.to_path_buf(),
            upper,
            work,
            merged,
            mounted: true,
        }
    }

    /// `merged/rel` (rel is an absolute container path).
    pub fn path(&self, container_path: &str) -> PathBuf {
        self.merged.join(container_path.trim_start_matches('/'))
    }

    pub fn unmount(&mut self) {
        if !self.mounted {
            return;
        }
        let ok = Command::new("umount")
            .arg(&self.merged)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.merged).status();
        }
        self.mounted = false;
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        self.unmount();
    }
}

// ---------------------------------------------------------------------------
// runc / crun bundles
// ---------------------------------------------------------------------------

/// OCI runtime used for a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Runc,
    Crun,
}

/// A runtime bundle (config.json generated by `runc spec`, edited with serde_json).
pub struct Bundle {
    pub dir: PathBuf,
    pub id: String,
    pub config: Value,
    /// Hook log file (also set in hooks created with [`Bundle::hook_log`]).
    pub log: PathBuf,
    used: std::cell::Cell<Option<Runtime>>,
}

impl Bundle {
    /// A bundle in `parent/<name>` running `args` in `rootfs` (absolute path).
    pub fn new(parent: &Path, name: &str, rootfs: &Path, args: &[&str]) -> Bundle {
        let dir = parent.join(name);
        fs::create_dir_all(&dir).expect("mkdir bundle");
        let runc = require_command("runc");
        let mut c = Command::new(runc);
        c.arg("spec").arg("--bundle").arg(&dir);
        run_cmd(c, Duration::from_secs(30)).assert_success("runc spec");
        let config: Value =
            serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap())
                .expect("parse config.json");
        let mut b = Bundle {
            log: dir.join("hooks.log"),
            dir,
            id: unique_id(name),
            config,
            used: std::cell::Cell::new(None),
        };
        b.config["root"] = json!({ "path": rootfs, "readonly": false });
        b.config["process"]["terminal"] = json!(false);
        b.config["process"]["args"] = json!(args);
        b.config["hostname"] = json!("e2e");
        b
    }

    /// Path of the hook log for this bundle.
    pub fn hook_log(&self) -> &Path {
        &self.log
    }

    pub fn annotate(&mut self, key: &str, value: &str) {
        if !self.config["annotations"].is_object() {
            self.config["annotations"] = json!({});
        }
        self.config["annotations"][key] = json!(value);
    }

    /// Sets both activation annotations.
    pub fn enable_hooks(&mut self, mpi: bool, glibc: bool) {
        if mpi {
            self.annotate(MPI_ANNOTATION, "true");
        }
        if glibc {
            self.annotate(GLIBC_ANNOTATION, "true");
        }
    }

    /// Appends `hook` at `stage` (createRuntime, createContainer, ...).
    pub fn add_hook(&mut self, stage: &str, hook: &Hook) {
        if !self.config["hooks"].is_object() {
            self.config["hooks"] = json!({});
        }
        if !self.config["hooks"][stage].is_array() {
            self.config["hooks"][stage] = json!([]);
        }
        self.config["hooks"][stage]
            .as_array_mut()
            .unwrap()
            .push(hook.oci_json());
    }

    /// Adds `K=V` to the container process environment.
    pub fn add_env(&mut self, kv: &str) {
        self.config["process"]["env"]
            .as_array_mut()
            .expect("process.env")
            .push(json!(kv));
    }

    /// Adds a bind mount `src` -> `dst` to config.json.
    pub fn add_bind_mount(&mut self, src: &Path, dst: &str) {
        self.config["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(json!({"destination": dst, "type": "bind", "source": src, "options": ["bind"]}));
    }

    fn write_config(&self) {
        fs::write(
            self.dir.join("config.json"),
            serde_json::to_string_pretty(&self.config).unwrap(),
        )
        .expect("write config.json");
    }

    /// `runc run -b DIR ID` (foreground, deletes the container on exit).
    pub fn run_runc(&self) -> RunOutput {
        self.write_config();
        self.used.set(Some(Runtime::Runc));
        let mut c = Command::new(require_command("runc"));
        c.arg("run").arg("-b").arg(&self.dir).arg(&self.id);
        let mut out = run_cmd(c, RUN_TIMEOUT);
        out.attach_file("hook log", &self.log);
        out
    }

    /// `crun run` inside a private mount namespace without the cgroup2 `unified`
    /// mount of hybrid hosts (crun refuses hybrid mode). Hook stdout/stderr, which crun
    /// drops by default, go to files shown in failure messages.
    pub fn run_crun(&mut self) -> RunOutput {
        require_command("crun");
        require_command("unshare");
        let hook_out = self.dir.join("crun-hooks.stdout");
        let hook_err = self.dir.join("crun-hooks.stderr");
        self.annotate("run.oci.hooks.stdout", &hook_out.display().to_string());
        self.annotate("run.oci.hooks.stderr", &hook_err.display().to_string());
        self.write_config();
        self.used.set(Some(Runtime::Crun));
        let mut c = Command::new("unshare");
        c.arg("-m").arg("sh").arg("-c").arg(format!(
            "{CRUN_PRELUDE} exec crun run -b '{}' '{}'",
            self.dir.display(),
            self.id
        ));
        let mut out = run_cmd(c, RUN_TIMEOUT);
        out.attach_file("hook log", &self.log);
        out.attach_file("crun hooks stderr", &hook_err);
        out.attach_file("crun hooks stdout", &hook_out);
        out
    }
}

const CRUN_PRELUDE: &str =
    "if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 125; fi;";

impl Drop for Bundle {
    fn drop(&mut self) {
        match self.used.get() {
            Some(Runtime::Runc) => {
                let _ = Command::new("runc")
                    .args(["delete", "-f", &self.id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            Some(Runtime::Crun) => {
                let _ = Command::new("unshare")
                    .arg("-m")
                    .arg("sh")
                    .arg("-c")
                    .arg(format!("{CRUN_PRELUDE} crun delete -f '{}'", self.id))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            None => {}
        }
    }
}

// ---------------------------------------------------------------------------
// podman
// ---------------------------------------------------------------------------

/// One `podman run --rm` of a directory rootfs with runc and cgroupfs (see
/// shared/reference/oci-hooks.md for why each flag is there).
pub struct PodmanRun<'a> {
    /// `--hooks-dir`; `None`: podman's default directories (what a package installs into).
    pub hooks_dir: Option<&'a Path>,
    pub rootfs: &'a Path,
    pub annotations: Vec<(String, String)>,
    pub env: Vec<String>,
    pub args: Vec<String>,
    pub log: Option<PathBuf>,
}

impl<'a> PodmanRun<'a> {
    pub fn new(hooks_dir: &'a Path, rootfs: &'a Path, args: &[&str]) -> PodmanRun<'a> {
        PodmanRun {
            hooks_dir: Some(hooks_dir),
            rootfs,
            annotations: Vec::new(),
            env: Vec::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log: None,
        }
    }

    /// No `--hooks-dir`: podman reads its default hooks.d directories.
    pub fn default_hooks_dirs(mut self) -> Self {
        self.hooks_dir = None;
        self
    }

    pub fn annotate(mut self, k: &str, v: &str) -> Self {
        self.annotations.push((k.into(), v.into()));
        self
    }

    pub fn enable_hooks(self, mpi: bool, glibc: bool) -> Self {
        let s = if mpi {
            self.annotate(MPI_ANNOTATION, "true")
        } else {
            self
        };
        if glibc {
            s.annotate(GLIBC_ANNOTATION, "true")
        } else {
            s
        }
    }

    pub fn hook_log(mut self, log: &Path) -> Self {
        self.log = Some(log.to_path_buf());
        self
    }

    /// The podman command line (no timeout wrapper), for the benchmark.
    pub fn command(&self, name: &str) -> Command {
        let mut c = Command::new(require_command("podman"));
        c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
        if let Some(d) = self.hooks_dir {
            c.arg("--hooks-dir").arg(d);
        }
        c.args(["run", "--rm", "--name", name, "--network", "none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ]);
        for (k, v) in &self.annotations {
            c.arg("--annotation").arg(format!("{k}={v}"));
        }
        for e in &self.env {
            c.arg("--env").arg(e);
        }
        c.arg("--rootfs").arg(self.rootfs).args(&self.args);
        c
    }

    pub fn run(&self) -> RunOutput {
        let name = unique_id("podman");
        let mut out = run_cmd(self.command(&name), RUN_TIMEOUT);
        let _ = Command::new("podman")
            .args(["rm", "-f", "--ignore", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(l) = &self.log {
            out.attach_file("hook log", l);
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Host-side observation: mount table, file trees
// ---------------------------------------------------------------------------

/// One line of /proc/self/mountinfo, without the volatile ids.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MountEntry {
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
    pub root: String,
}

/// The host mount table (`/proc/self/mountinfo`).
pub fn mount_table() -> Vec<MountEntry> {
    let s = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some(MountEntry {
                root: unescape_mountinfo(f.get(3)?),
                mount_point: unescape_mountinfo(f.get(4)?),
                fs_type: f.get(sep + 1)?.to_string(),
                source: f.get(sep + 2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut o = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap(), 8)
                .unwrap_or(b'?');
            o.push(v);
            i += 4;
        } else {
            o.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&o).into_owned()
}

/// Mounts present in `after` but not in `before` (multiset difference), ignoring mounts
/// that podman's own storage/runtime dirs may create or keep.
pub fn new_mounts(before: &[MountEntry], after: &[MountEntry]) -> Vec<MountEntry> {
    let mut pool: BTreeMap<&MountEntry, usize> = BTreeMap::new();
    for m in before {
        *pool.entry(m).or_default() += 1;
    }
    let mut extra = Vec::new();
    for m in after {
        match pool.get_mut(m) {
            Some(n) if *n > 0 => *n -= 1,
            _ => extra.push(m.clone()),
        }
    }
    extra
        .into_iter()
        .filter(|m| {
            ![
                "/run/netns",
                "/var/lib/containers",
                "/run/containers",
                "/run/user",
            ]
            .iter()
            .any(|p| m.mount_point.starts_with(p))
        })
        .collect()
}

/// What a file-tree snapshot records of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// `f` file, `d` dir, `l` symlink, `c`/`b` device, `p` fifo, `s` socket.
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub size: u64,
    pub mtime_ns: i128,
    pub rdev: u64,
    pub link: Option<PathBuf>,
    /// FNV-1a of the content, for regular files up to 64 MiB.
    pub hash: Option<u64>,
}

fn fnv1a(path: &Path) -> Option<u64> {
    let mut f = fs::File::open(path).ok()?;
    let mut h: u64 = 0xcbf29ce484222325;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    Some(h)
}

fn entry_info(path: &Path, hash: bool) -> Option<EntryInfo> {
    let m = fs::symlink_metadata(path).ok()?;
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        'l'
    } else if ft.is_dir() {
        'd'
    } else if ft.is_file() {
        'f'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else {
        's'
    };
    Some(EntryInfo {
        kind,
        mode: m.mode(),
        uid: m.uid(),
        size: if kind == 'd' { 0 } else { m.size() },
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        rdev: m.rdev(),
        link: if kind == 'l' {
            fs::read_link(path).ok()
        } else {
            None
        },
        hash: if hash && kind == 'f' && m.size() <= 64 << 20 {
            fnv1a(path)
        } else {
            None
        },
    })
}

/// Recursive snapshot of `root` (not following symlinks, not crossing into other
/// mounts' contents is NOT attempted: take it when nothing is mounted below).
/// Keys are paths relative to `root` ("" is the root itself).
pub fn snapshot_tree(root: &Path, hash: bool) -> BTreeMap<PathBuf, EntryInfo> {
    let mut map = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = root.join(&rel);
        let Some(info) = entry_info(&full, hash) else {
            continue;
        };
        if info.kind == 'd' {
            if let Ok(rd) = fs::read_dir(&full) {
                for e in rd.flatten() {
                    stack.push(rel.join(e.file_name()));
                }
            }
        }
        map.insert(rel, info);
    }
    map
}

/// Human-readable differences between two snapshots (empty when equal).
pub fn diff_snapshots(
    before: &BTreeMap<PathBuf, EntryInfo>,
    after: &BTreeMap<PathBuf, EntryInfo>,
) -> Vec<String> {
    diff_impl(before, after, false)
}

/// Like [`diff_snapshots`], but a directory whose only change is its mtime (an entry
/// was created or removed in it, which is reported on its own) is not reported.
pub fn diff_snapshots_ignoring_dir_mtime(
    before: &BTreeMap<PathBuf, EntryInfo>,
    after: &BTreeMap<PathBuf, EntryInfo>,
) -> Vec<String> {
    diff_impl(before, after, true)
}

fn diff_impl(
    before: &BTreeMap<PathBuf, EntryInfo>,
    after: &BTreeMap<PathBuf, EntryInfo>,
    ignore_dir_mtime: bool,
) -> Vec<String> {
    let mut d = Vec::new();
    for (p, a) in before {
        match after.get(p) {
            None => d.push(format!("removed: /{}", p.display())),
            Some(b) if a != b => {
                let only_mtime = a.kind == 'd'
                    && b.kind == 'd'
                    && EntryInfo {
                        mtime_ns: b.mtime_ns,
                        ..a.clone()
                    } == *b;
                if !(ignore_dir_mtime && only_mtime) {
                    d.push(format!("changed: /{} ({a:?} -> {b:?})", p.display()));
                }
            }
            _ => {}
        }
    }
    for (p, b) in after {
        if !before.contains_key(p) {
            d.push(format!("created: /{} ({b:?})", p.display()));
        }
    }
    d
}

/// Snapshot of host files a misbehaving hook could touch (the host loader cache and
/// library dirs' listings), to assert nothing on the host changed.
pub fn host_sensitive_snapshot() -> BTreeMap<PathBuf, EntryInfo> {
    let mut map = BTreeMap::new();
    for f in ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.preload"] {
        if let Some(i) = entry_info(Path::new(f), true) {
            map.insert(PathBuf::from(f), i);
        }
    }
    for dir in [
        "/etc/ld.so.conf.d",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/local/lib",
    ] {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if let Some(i) = entry_info(&p, false) {
                    map.insert(p, i);
                }
            }
        }
    }
    map
}

/// Upper-dir entries that are NOT allowed leftovers of a hook: anything except
/// directories and empty regular files that do not hide a non-empty lower file
/// (overlay whiteouts, symlinks, non-empty files, opaque dirs...).
pub fn forbidden_upper_entries(ov: &Overlay) -> Vec<String> {
    let snap = snapshot_tree(&ov.upper, false);
    let mut bad = Vec::new();
    for (rel, info) in &snap {
        let shown = format!("/{}", rel.display());
        match info.kind {
            'd' => {
                if is_opaque_dir(&ov.upper.join(rel)) {
                    bad.push(format!(
                        "{shown}: opaque directory (hides the image's content)"
                    ));
                }
            }
            'f' if info.size == 0 => {
                if let Ok(m) = fs::symlink_metadata(ov.lower.join(rel)) {
                    if !m.is_file() || m.size() != 0 {
                        bad.push(format!(
                            "{shown}: empty file replaces a non-empty/non-file image entry"
                        ));
                    }
                }
            }
            'c' if info.rdev == 0 => bad.push(format!("{shown}: whiteout (image entry deleted)")),
            _ => bad.push(format!("{shown}: {info:?}")),
        }
    }
    bad
}

fn is_opaque_dir(p: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(cp) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 8];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            cp.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    n > 0 && buf[0] == b'y'
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

/// Regenerates `rootfs/etc/ld.so.cache` with the host ldconfig.
pub fn ldconfig_root(rootfs: &Path) {
    let mut c = Command::new(require_command("ldconfig"));
    c.arg("-r").arg(rootfs);
    run_cmd(c, Duration::from_secs(60)).assert_success("ldconfig -r");
}

/// Common prerequisites of tests that run the hooks: lock, hook binaries, rootfs.
pub struct HookedEnv {
    pub _lock: E2eLock,
    pub rootfs: PathBuf,
    pub host: HostMpi,
}

/// Takes the e2e lock and checks every prerequisite of a hooked test (runc, hook
/// binaries, host MPICH, rootfs), failing loudly when one is missing.
pub fn hooked_env() -> HookedEnv {
    let lock = e2e_lock();
    require_command("runc");
    hook_bin("mpi-hook");
    hook_bin("glibc-hook");
    let host = host_mpi();
    let rootfs = cached_rootfs();
    HookedEnv {
        _lock: lock,
        rootfs,
        host,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mpich_version() {
        assert_eq!(
            mpich_version("rank 0 of 1: MPICH Version:\t3.4.1\n").as_deref(),
            Some("3.4.1")
        );
        assert_eq!(mpich_version("nothing"), None);
    }

    #[test]
    fn parses_hook_timings() {
        let log = "2024 INFO mpi_hook: done hook=mpi-hook elapsed_us=1234\n\
                   {\"hook\":\"x\"}\n\
                   INFO done hook=\"glibc-hook\" elapsed_us=77 injected=3\n";
        assert_eq!(
            hook_timings(log),
            vec![
                ("mpi-hook".to_string(), 1234),
                ("glibc-hook".to_string(), 77)
            ]
        );
    }

    #[test]
    fn escapes_regex() {
        assert_eq!(
            regex_escape("com.hooks.mpi.enabled"),
            "com\\.hooks\\.mpi\\.enabled"
        );
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
    }
}
