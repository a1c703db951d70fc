//! Starting, supervising and removing one rank's container.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::io::{AsFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sched::{unshare, CloneFlags};

use crate::hooksd;
use crate::spec::{self, SpecInput};
use hooks_core::mount;
use hpc_rank::cgroup;
use hpc_rank::cli::{Cli, RuntimeKind};
use hpc_rank::devices;
use hpc_rank::privilege::{self, Caller, Config, RankUser};

const MPI_ANNOTATION: &str = "com.hooks.mpi.enabled";
const GLIBC_ANNOTATION: &str = "com.hooks.glibc.enabled";
/// The host network stack (docs/network.md); no hooks.d file for it is not an error (a
/// node with NET_STACK=none has none).
const NET_ANNOTATION: &str = "com.hooks.net.enabled";
/// Prefix of every container id (runc) and name (podman) this launcher creates.
pub const ID_PREFIX: &str = "hpcrank-";
const JOB_LABEL: &str = "io.hpc-rank.job";
const PID_LABEL: &str = "io.hpc-rank.pid";
/// PATH given to the runtimes: they and their helpers are never looked up in the
/// caller's PATH.
const RUNTIME_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// fd number of the PMI socket inside the container.
const CONTAINER_PMI_FD: RawFd = 3;

/// Signals forwarded to the runtime (which forwards them to the rank).
const FORWARDED: &[libc::c_int] = &[
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGCONT,
];
/// Forwarded signals after which the container is killed once the grace time is over.
const TERMINATING: &[libc::c_int] = &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

fn job_id(env: &BTreeMap<String, String>) -> String {
    sanitize(
        env.get("SLURM_JOB_ID")
            .map(String::as_str)
            .unwrap_or("nojob"),
    )
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `hpcrank-<job>.<step>-<rank>-<launcher pid>`: the epilog finds a job's containers by
/// prefix, `--cleanup-stale` finds orphans by the pid.
pub fn container_id(env: &BTreeMap<String, String>, pid: u32) -> String {
    let g = |k: &str| env.get(k).map(|s| sanitize(s));
    let step = g("SLURM_STEP_ID").unwrap_or_else(|| "x".into());
    let rank = g("PMI_RANK")
        .or_else(|| g("SLURM_PROCID"))
        .or_else(|| g("PMIX_RANK"))
        .unwrap_or_else(|| "0".into());
    format!("{ID_PREFIX}{}.{step}-{rank}-{pid}", job_id(env))
}

fn launcher_pid_of(id: &str) -> Option<i32> {
    id.strip_prefix(ID_PREFIX)?.rsplit('-').next()?.parse().ok()
}

fn launcher_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim() == "hpc-rank")
        .unwrap_or(false)
}

fn annotations(a: &Cli) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    if !a.no_mpi {
        m.insert(MPI_ANNOTATION.to_string(), "true".to_string());
    }
    if !a.no_glibc {
        m.insert(GLIBC_ANNOTATION.to_string(), "true".to_string());
    }
    if !a.no_net {
        m.insert(NET_ANNOTATION.to_string(), "true".to_string());
    }
    for kv in &a.annotations {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--annotation {kv}: expected KEY=VALUE"))?;
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

/// The PMI socket named by `PMI_FD`, duplicated to a high close-on-exec fd so that
/// the child can move it to fd 3 without clobbering anything.
fn pmi_fd(env: &BTreeMap<String, String>) -> Result<Option<RawFd>> {
    let Some(v) = env.get("PMI_FD") else {
        return Ok(None);
    };
    let fd: RawFd = v
        .parse()
        .with_context(|| format!("PMI_FD={v:?} is not a file descriptor number"))?;
    // SAFETY: fcntl on an integer fd; failure is reported, nothing is assumed.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100) };
    if high < 0 {
        bail!(
            "PMI_FD={fd} but fd {fd} is not open in hpc-rank ({}): start hpc-rank directly \
             from srun/mpiexec, not through a program that closes inherited descriptors",
            std::io::Error::last_os_error()
        );
    }
    Ok(Some(high))
}

fn sigset(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise a local sigset_t.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for &g in sigs {
            libc::sigaddset(&mut s, g);
        }
        s
    }
}

fn all_watched() -> libc::sigset_t {
    let mut v = FORWARDED.to_vec();
    v.push(libc::SIGCHLD);
    sigset(&v)
}

/// Spawns the runtime with the PMI socket on fd 3 and a clean signal mask, in its own
/// process group (hydra kills the launcher's group with SIGKILL on MPI_Abort: the runtime
/// must survive that to remove the container) and with SIGTERM as parent-death signal
/// (if hpc-rank is killed, `runc run` forwards SIGTERM to the rank, which exits, and
/// `runc run` then deletes the container as usual).
fn spawn(mut cmd: Command, pmi: Option<RawFd>) -> Result<u32> {
    cmd.env("PATH", RUNTIME_PATH);
    let what = command_line(&cmd);
    tracing::debug!("running {what}");
    // SAFETY: getpid is always safe.
    let parent = unsafe { libc::getpid() };
    // SAFETY: only async-signal-safe calls (dup2, sigprocmask, setpgid, prctl, getppid,
    // _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
            if libc::getppid() != parent {
                libc::_exit(125);
            }
            if let Some(fd) = pmi {
                if libc::dup2(fd, CONTAINER_PMI_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let empty = sigset(&[]);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| {
        format!(
            "cannot start {}: is the runtime installed?",
            cmd.get_program().to_string_lossy()
        )
    })?;
    Ok(child.id())
}

/// `cmd`'s program and arguments as one shell-like line, for the log.
fn command_line(cmd: &Command) -> String {
    hpc_rank::log::shell_line(std::iter::once(cmd.get_program()).chain(cmd.get_args()))
}

fn status_code(status: libc::c_int) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else if libc::WIFSIGNALED(status) {
        (128 + libc::WTERMSIG(status)) as u8
    } else {
        1
    }
}

/// Forwards signals to `child` until it exits; after a terminating signal, calls
/// `kill` once the grace time is over. Reaps every child (we are a subreaper).
fn supervise(child: u32, grace: Duration, kill: &dyn Fn()) -> u8 {
    let set = all_watched();
    let mut deadline: Option<Instant> = None;
    let mut killed = false;
    loop {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        // SAFETY: valid sigset and timespec; no siginfo wanted.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        if sig > 0 && sig != libc::SIGCHLD {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(child as libc::pid_t, sig) };
            if TERMINATING.contains(&sig) && deadline.is_none() {
                deadline = Some(Instant::now() + grace);
            }
        }
        loop {
            let mut st: libc::c_int = 0;
            // SAFETY: waitpid on any child, non-blocking.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid as u32 == child {
                return status_code(st);
            }
        }
        if let Some(d) = deadline {
            if !killed && Instant::now() >= d {
                killed = true;
                kill();
            }
        }
    }
}

/// Reaps whatever is left (orphans re-parented to us), for at most `max`.
fn reap_rest(max: Duration) {
    let end = Instant::now() + max;
    loop {
        let mut st = 0;
        // SAFETY: waitpid on any child, non-blocking.
        let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if pid < 0 || Instant::now() >= end {
            return; // ECHILD: nothing left
        }
        if pid == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn quiet(cmd: &mut Command) -> bool {
    tracing::debug!("running {}", command_line(cmd));
    cmd.env("PATH", RUNTIME_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The runc binary: `--runc` (real root only, checked before), the config's, or a default.
fn runc_bin(a: &Cli, cfg: &Config) -> Result<PathBuf, privilege::PrivilegeError> {
    privilege::resolve_runtime(
        "runc",
        a.runc.as_deref(),
        cfg.runc.as_deref(),
        privilege::DEFAULT_RUNC,
    )
}

/// The podman binary, like [`runc_bin`].
fn podman_bin(a: &Cli, cfg: &Config) -> Result<PathBuf, privilege::PrivilegeError> {
    privilege::resolve_runtime(
        "podman",
        a.podman.as_deref(),
        cfg.podman.as_deref(),
        privilege::DEFAULT_PODMAN,
    )
}

/// The refusal of runc mode for an unprivileged caller.
pub const RUNC_NEEDS_ROOT: &str = "runc mode needs the real root (it mounts the rank's \
     scratch and rootfs overlay and runs a rootful container); as an unprivileged user use \
     --runtime podman (rootless podman runs the rank as you, with the same hooks), run \
     hpc-rank as root, or ask the admin for a wrapper allowed in /etc/hpc-hooks/hpc-rank.conf";

/// Starts one rank; returns its exit status (128+N when killed by signal N).
pub fn launch(a: &Cli, caller: &Caller, cfg: &Config) -> Result<u8> {
    // runc mode mounts (the rank's scratch, the rootfs overlay) and runs rootful
    // containers: an unprivileged caller is refused before anything else is looked at.
    if matches!(a.runtime, RuntimeKind::Runc) && !nix::unistd::geteuid().is_root() {
        bail!(RUNC_NEEDS_ROOT);
    }
    let target = a.target.as_deref().context("no rootfs or image given")?;
    if a.command.is_empty() {
        bail!("no command given: usage is `hpc-rank [OPTIONS] ROOTFS|IMAGE COMMAND [ARGS...]`");
    }
    let host_env: BTreeMap<String, String> = std::env::vars().collect();
    let extra_env = spec::resolve_env(&a.env, &host_env)?;
    check_target(a.runtime, target)?;
    // CDI devices are resolved (and their specs checked) before anything is started.
    let registry = match a.runtime {
        RuntimeKind::Podman if !a.cdi_spec_dirs.is_empty() => {
            return Err(devices::DeviceError::SpecDirWithPodman.into())
        }
        RuntimeKind::Runc if !a.devices.is_empty() => Some(devices::load(
            &devices::spec_dirs(&a.cdi_spec_dirs),
            &a.devices,
            nix::unistd::geteuid().is_root(),
        )?),
        _ => None,
    };
    let runtime = match a.runtime {
        RuntimeKind::Runc => runc_bin(a, cfg)?,
        RuntimeKind::Podman => podman_bin(a, cfg)?,
    };
    let user = privilege::rank_user(caller);
    let wrapped = matches!(caller, Caller::Wrapper(_));
    let id = container_id(&host_env, std::process::id());
    let ann = annotations(a)?;
    let pmi = pmi_fd(&host_env)?;
    // Signals are handled synchronously (sigtimedwait) from here on; the child gets a
    // clean mask in `spawn`.
    let set = all_watched();
    // SAFETY: blocking signals in this single-threaded process.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        // Orphans of the container (if the runtime dies first) stay our children, so
        // they remain in the step's process tree and are reaped here.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    match a.runtime {
        RuntimeKind::Runc => launch_runc(
            a,
            &runtime,
            &user,
            wrapped,
            target,
            &id,
            &ann,
            &host_env,
            &extra_env,
            pmi,
            registry.as_ref(),
        ),
        RuntimeKind::Podman => launch_podman(
            a, &runtime, &user, wrapped, target, &id, &ann, &host_env, &extra_env, pmi,
        ),
    }
}

/// For podman, an argument that looks like a path (`/`, `./`, `../`, `.`, `..`) is a
/// rootfs directory, never an image reference.
fn looks_like_path(target: &str) -> bool {
    ["/", "./", "../"].iter().any(|p| target.starts_with(p)) || target == "." || target == ".."
}

/// Refuses a rootfs that is not there before anything is started: runc needs a
/// directory; for podman, a path-looking argument must be one (podman would otherwise
/// take it as an image reference and say `invalid reference format`).
fn check_target(runtime: RuntimeKind, target: &str) -> Result<()> {
    let p = Path::new(target);
    let is_path = match runtime {
        RuntimeKind::Runc => true,
        RuntimeKind::Podman => looks_like_path(target),
    };
    if !is_path || p.is_dir() {
        return Ok(());
    }
    let hint = match runtime {
        RuntimeKind::Runc => "runc needs a directory rootfs; for an image use --runtime podman",
        RuntimeKind::Podman => {
            "an argument starting with /, ./ or ../ is a rootfs directory; an image \
             reference starts with a name, e.g. docker.io/library/debian:12"
        }
    };
    if p.exists() {
        bail!("rootfs {target} is not a directory ({hint})");
    }
    bail!("rootfs directory {target} does not exist ({hint})");
}

fn check_overlay_path(p: &Path, what: &str) -> Result<()> {
    let s = p.to_string_lossy();
    if s.contains([',', ':', '\\']) {
        bail!("{what} {s} contains ',', ':' or '\\', which overlayfs options cannot express; use a path without them");
    }
    Ok(())
}

/// The job's PMIx directories, bound by root from paths in the caller's environment:
/// not through a wrapper, where the caller could name directories they cannot reach
/// (PMI-2, `srun --mpi=pmi2`, needs none).
fn pmix_binds(
    host_env: &BTreeMap<String, String>,
    user: &RankUser,
    wrapped: bool,
) -> Vec<spec::UserBind> {
    let binds = spec::pmix_binds(host_env, user.uid);
    if wrapped && !binds.is_empty() {
        tracing::warn!(
            "through a wrapper, the PMIx directories {} are not bound \
             (use PMI-2: srun --mpi=pmi2)",
            binds
                .iter()
                .map(|b| b.src.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Vec::new();
    }
    binds
}

fn open_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .with_context(|| format!("cannot open the rootfs {}", dir.display()))
}

/// Through a wrapper, hpc-rank (root) must not give its caller a directory the caller
/// could not reach: `stat -L` run as the rank's user (no supplementary groups) must
/// resolve `dir` to the inode of `fd`, opened before, so a swap in between is refused.
fn check_caller_reaches(dir: &Path, fd: &std::fs::File, user: &RankUser) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = fd
        .metadata()
        .with_context(|| format!("fstat {}", dir.display()))?;
    let want = format!("{}:{}", m.dev(), m.ino());
    let out = Command::new("/usr/bin/stat")
        .args(["-L", "-c", "%d:%i", "--"])
        .arg(dir)
        .uid(user.uid)
        .gid(user.gid)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("cannot run /usr/bin/stat as the caller to check the rootfs")?;
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || got != want {
        bail!(
            "rootfs {}: uid {} cannot reach it (or it changed while checked); through a \
             wrapper, hpc-rank only uses a rootfs its caller can read: use a directory \
             readable by uid {}",
            dir.display(),
            user.uid,
            user.uid
        );
    }
    Ok(())
}

fn mount_private_scratch(scratch: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(scratch).with_context(|| {
        format!(
            "cannot create the scratch mount point {}",
            scratch.display()
        )
    })?;
    unshare(CloneFlags::CLONE_NEWNS).context(
        "unshare(CLONE_NEWNS) failed: runc mode needs the real root; run hpc-rank as \
         root, use --runtime podman (rootless), or ask the admin for a wrapper allowed in \
         /etc/hpc-hooks/hpc-rank.conf (setuid, sudo and file capabilities are refused)",
    )?;
    mount::make_rslave(Path::new("/"))
        .context("cannot make / a slave mount in the rank's mount namespace")?;
    mount::mount_tmpfs_at(scratch, "hpc-rank", "mode=0700")
        .with_context(|| format!("cannot mount the rank's tmpfs on {}", scratch.display()))?;
    Ok(scratch.to_path_buf())
}

#[allow(clippy::too_many_arguments)]
fn launch_runc(
    a: &Cli,
    runc: &Path,
    user: &RankUser,
    wrapped: bool,
    target: &str,
    id: &str,
    ann: &BTreeMap<String, String>,
    host_env: &BTreeMap<String, String>,
    extra_env: &[String],
    pmi: Option<RawFd>,
    registry: Option<&cdi_specs::Registry>,
) -> Result<u8> {
    let lower = Path::new(target);
    let lower = lower.canonicalize().with_context(|| {
        format!("rootfs {target}: not found (runc needs a directory rootfs; for an image use --runtime podman)")
    })?;
    if !lower.join("bin").exists() && !lower.join("usr").is_dir() {
        bail!(
            "{} does not look like a root filesystem (no /usr, no /bin)",
            lower.display()
        );
    }
    check_overlay_path(&lower, "rootfs")?;
    let hooks = hooksd::load(&a.hooks_dirs, ann)?;
    for key in [MPI_ANNOTATION, GLIBC_ANNOTATION] {
        if ann.get(key).map(String::as_str) == Some("true")
            && hooksd::load(
                &a.hooks_dirs,
                &BTreeMap::from([(key.to_string(), "true".to_string())]),
            )?
            .is_empty()
        {
            bail!(
                "no hooks.d file in {} is enabled by {key}=true: install the hooks \
                 (packaging/install.sh), point --hooks-dir / HPC_RANK_HOOKS_DIR at their \
                 directory, or pass --no-mpi/--no-glibc to run without them",
                a.hooks_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            );
        }
    }
    let base = mount_private_scratch(&a.scratch)?;
    // Through a wrapper, the overlay is made from the very directory the caller was
    // shown to reach (its descriptor), not from a path they could swap meanwhile. Opened
    // in the rank's mount namespace: a mount of another namespace cannot be bound.
    let lower_fd = if wrapped {
        let f = open_dir(&lower)?;
        check_caller_reaches(&lower, &f, user)?;
        Some(f)
    } else {
        None
    };
    check_overlay_path(&base, "scratch dir")?;
    let (bundle, upper, work, merged) = (
        base.join("bundle"),
        base.join("upper"),
        base.join("work"),
        base.join("rootfs"),
    );
    for d in [&bundle, &upper, &work, &merged] {
        std::fs::create_dir_all(d).with_context(|| format!("mkdir {}", d.display()))?;
    }
    // Through a wrapper: the checked descriptor is bind-mounted into the private tmpfs
    // (overlayfs refuses /proc/self/fd paths as lowerdir) and the overlay made from there.
    let lower_opt = match &lower_fd {
        Some(f) => {
            let at = base.join("lower");
            std::fs::create_dir_all(&at).with_context(|| format!("mkdir {}", at.display()))?;
            mount::bind_fd_at(f.as_fd(), &at)
                .with_context(|| format!("cannot bind the rootfs {}", lower.display()))?;
            at
        }
        None => lower.clone(),
    };
    mount::mount_overlay(&lower_opt, &upper, &work, &merged).with_context(|| {
        format!(
            "cannot mount an overlay of {} (the rootfs is shared by all ranks and never written)",
            lower.display()
        )
    })?;
    let nodename = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    let short = nodename.split('.').next().unwrap_or("").to_string();
    let mut hosts = spec::hosts_file(
        &std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        &nodename,
    );
    if short != nodename {
        hosts = spec::hosts_file(&hosts, &short);
    }
    let hosts_path = base.join("hosts");
    std::fs::write(&hosts_path, hosts).context("write the container's /etc/hosts")?;
    let resolv = Path::new("/etc/resolv.conf");
    let (uid, gid, groups) = (user.uid, user.gid, user.groups.clone());
    let env = spec::rank_env(host_env, extra_env, pmi.map(|_| CONTAINER_PMI_FD));
    let mut binds = a.binds.clone();
    binds.extend(pmix_binds(host_env, user, wrapped));
    let mut cfg = spec::config_json(&SpecInput {
        rootfs: &merged,
        args: &a.command,
        env,
        cwd: &a.workdir,
        uid,
        gid,
        groups,
        hosts_file: &hosts_path,
        resolv_conf: resolv.exists().then_some(resolv),
        binds: &binds,
        annotations: ann,
        hooks: &hooks,
        // Relative: runc creates it under its own (= hpc-rank's, the job step's) cgroup
        // in every hierarchy, so the step's limits apply to the rank.
        cgroups_path: cgroup::runc_cgroups_path(id),
    });
    if let Some(registry) = registry {
        devices::apply(&mut cfg, registry, &a.devices)?;
        tracing::debug!("CDI devices added to config.json: {}", a.devices.join(", "));
    }
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&cfg).expect("serialise config.json"),
    )
    .context("write config.json")?;
    tracing::debug!("wrote {}", bundle.join("config.json").display());

    let mut cmd = Command::new(runc);
    cmd.arg("run");
    if pmi.is_some() {
        cmd.args(["--preserve-fds", "1"]);
    }
    cmd.arg("--bundle").arg(&bundle).arg(id);
    let child = spawn(cmd, pmi)?;
    let kill_id = id.to_string();
    let code = supervise(child, Duration::from_secs(a.kill_grace), &move || {
        quiet(Command::new(runc).args(["kill", "--all", &kill_id, "KILL"]));
    });
    // The container may outlive `runc run` (runc killed, hook failure...): delete -f
    // kills what is left in its cgroup and removes runc's state.
    quiet(Command::new(runc).args(["delete", "-f", id]));
    reap_rest(Duration::from_secs(2));
    let _ = mount::unmount_path(&merged, true);
    Ok(code)
}

/// podman's `--cgroup-parent` for a rootful rank: `<hpc-rank's own cgroup>/hpc-rank`.
/// Needs podman's cgroupfs manager (with systemd, the parent must be a slice and the
/// rank would leave the job step's cgroup): refused with a message otherwise.
fn podman_cgroup_parent(podman: &Path, global: &[String]) -> Result<String> {
    let own_text = std::fs::read_to_string("/proc/self/cgroup")
        .context("cannot read /proc/self/cgroup to place the rank under the job's cgroup")?;
    let own = cgroup::own_cgroup(&own_text).with_context(|| {
        format!("no usable cgroup path in /proc/self/cgroup ({own_text:?}): cannot place the rank under the job's cgroup")
    })?;
    let mut info = Command::new(podman);
    info.args(global)
        .args(["info", "--format", "{{.Host.CgroupManager}}"]);
    tracing::debug!("running {}", command_line(&info));
    let out = info
        .env("PATH", RUNTIME_PATH)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} info", podman.display()))?;
    let manager = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if manager != "cgroupfs" {
        bail!(
            "podman's cgroup manager is {manager:?} ({}): hpc-rank puts each rank under its \
             own cgroup ({own}, the job step's) so the job's limits apply, which needs the \
             cgroupfs manager; set cgroup_manager = \"cgroupfs\" in containers.conf (or, as \
             root, --cgroup-manager cgroupfs in HPC_RANK_PODMAN_GLOBAL_OPTS)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(cgroup::podman_parent(&own))
}

#[allow(clippy::too_many_arguments)]
fn launch_podman(
    a: &Cli,
    podman: &Path,
    user: &RankUser,
    wrapped: bool,
    target: &str,
    id: &str,
    ann: &BTreeMap<String, String>,
    host_env: &BTreeMap<String, String>,
    extra_env: &[String],
    pmi: Option<RawFd>,
) -> Result<u8> {
    let mut global: Vec<String> = Vec::new();
    for d in &a.hooks_dirs {
        global.push("--hooks-dir".into());
        global.push(d.display().to_string());
    }
    if let Ok(extra) = std::env::var("HPC_RANK_PODMAN_GLOBAL_OPTS") {
        global.extend(extra.split_whitespace().map(str::to_string));
    }
    let mut cmd = Command::new(podman);
    cmd.args(&global);
    cmd.args(["run", "--rm", "--name", id]);
    // Rootless podman creates no cgroups of its own on cgroup v1 and uses the user's
    // systemd slice on v2: only a rootful rank is placed explicitly.
    if nix::unistd::geteuid().is_root() {
        cmd.arg("--cgroup-parent")
            .arg(podman_cgroup_parent(podman, &global)?);
    }
    cmd.arg("--label")
        .arg(format!("{JOB_LABEL}={}", job_id(host_env)));
    cmd.arg("--label")
        .arg(format!("{PID_LABEL}={}", std::process::id()));
    cmd.args([
        "--network",
        "host",
        "--ipc",
        "host",
        "--pid",
        "host",
        "--uts",
        "host",
    ]);
    // No seccomp filter, as in runc mode (and Sarus): MPI progress engines make many
    // system calls, and a filter on each of them cost 500x in 8-byte latency here.
    cmd.args([
        "--log-driver",
        "none",
        "--sig-proxy=true",
        "--security-opt",
        "seccomp=unconfined",
    ]);
    // The step's limits (Slurm propagates the submitter's) apply to the rank unchanged
    // (podman would otherwise raise them to its defaults, which may not be permitted).
    for (name, res) in [
        ("nofile", nix::sys::resource::Resource::RLIMIT_NOFILE),
        ("memlock", nix::sys::resource::Resource::RLIMIT_MEMLOCK),
        ("stack", nix::sys::resource::Resource::RLIMIT_STACK),
        ("core", nix::sys::resource::Resource::RLIMIT_CORE),
    ] {
        if let Ok((soft, hard)) = nix::sys::resource::getrlimit(res) {
            let f = |v: u64| {
                if v == libc::RLIM_INFINITY {
                    "-1".to_string()
                } else {
                    v.to_string()
                }
            };
            cmd.arg("--ulimit")
                .arg(format!("{name}={}:{}", f(soft), f(hard)));
        }
    }
    for (k, v) in ann {
        cmd.arg("--annotation").arg(format!("{k}={v}"));
    }
    for kv in spec::rank_env(host_env, extra_env, pmi.map(|_| CONTAINER_PMI_FD)) {
        cmd.arg("--env").arg(kv);
    }
    if pmi.is_some() {
        cmd.args(["--preserve-fds", "1"]);
    }
    for b in a
        .binds
        .iter()
        .chain(pmix_binds(host_env, user, wrapped).iter())
    {
        let mode = if b.readonly { "ro" } else { "rw" };
        cmd.arg("--volume")
            .arg(format!("{}:{}:{mode}", b.src.display(), b.dst));
    }
    for d in &a.devices {
        cmd.arg("--device").arg(d);
    }
    if let Ok(extra) = std::env::var("HPC_RANK_PODMAN_RUN_OPTS") {
        cmd.args(extra.split_whitespace());
    }
    cmd.arg("--workdir").arg(&a.workdir);
    // Rootless podman maps the container's root to the caller: the rank runs as the caller
    // on the host with no `--user` (which would pick a subordinate uid, one that cannot
    // even read the image's /etc/passwd through the rootless overlay).
    if nix::unistd::geteuid().is_root() {
        cmd.arg("--user").arg(format!("{}:{}", user.uid, user.gid));
    }
    let p = Path::new(target);
    if p.is_dir() {
        let abs = p
            .canonicalize()
            .with_context(|| format!("rootfs {target}"))?;
        check_overlay_path(&abs, "rootfs")?;
        if wrapped {
            check_caller_reaches(&abs, &open_dir(&abs)?, user)?;
        }
        // `:O`: podman mounts an overlay over the shared rootfs; it is never written.
        let mut r = OsString::from(abs.as_os_str());
        r.push(":O");
        cmd.arg("--rootfs").arg(r);
    } else {
        cmd.arg(target);
    }
    cmd.args(&a.command);
    let child = spawn(cmd, pmi)?;
    let kill_id = id.to_string();
    let code = supervise(child, Duration::from_secs(a.kill_grace), &move || {
        quiet(Command::new(podman).args(["kill", "-s", "KILL", &kill_id]));
    });
    quiet(Command::new(podman).args(["rm", "-f", "-t", "0", "--ignore", id]));
    reap_rest(Duration::from_secs(2));
    Ok(code)
}

fn lines(cmd: &mut Command) -> Vec<String> {
    cmd.env("PATH", RUNTIME_PATH)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn have(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Epilog: removes the containers of a job (`--cleanup-job`) and those whose launcher
/// is gone (`--cleanup-stale`, and always with `--cleanup-job`).
pub fn cleanup(a: &Cli, cfg: &Config) -> Result<()> {
    let job = a.cleanup_job.as_deref().map(sanitize);
    let wanted = |id: &str, pid: Option<i32>| {
        job.as_ref()
            .is_some_and(|j| id.starts_with(&format!("{ID_PREFIX}{j}.")))
            || pid.is_some_and(|p| !launcher_alive(p))
    };
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    let runc = runc_bin(a, cfg).ok().filter(|r| have(r));
    let podman = podman_bin(a, cfg).ok().filter(|p| have(p));
    if let Some(runc) = &runc {
        for id in lines(Command::new(runc).args(["list", "-q"])) {
            if id.starts_with(ID_PREFIX) && wanted(&id, launcher_pid_of(&id)) {
                if quiet(Command::new(runc).args(["delete", "-f", &id])) {
                    removed.push(format!("runc:{id}"));
                } else {
                    failed.push(format!("runc:{id}"));
                }
            }
        }
    }
    if let Some(podman) = &podman {
        let fmt = format!("{{{{.Names}}}} {{{{index .Labels \"{PID_LABEL}\"}}}}");
        for l in lines(Command::new(podman).args([
            "ps",
            "-a",
            "--filter",
            &format!("label={JOB_LABEL}"),
            "--format",
            &fmt,
        ])) {
            let mut it = l.split_whitespace();
            let (Some(name), pid) = (it.next(), it.next().and_then(|p| p.parse().ok())) else {
                continue;
            };
            if wanted(name, pid) {
                if quiet(Command::new(podman).args(["rm", "-f", "-t", "0", name])) {
                    removed.push(format!("podman:{name}"));
                } else {
                    failed.push(format!("podman:{name}"));
                }
            }
        }
    }
    // Rank cgroups live under each job step's cgroup (hpc-rank/<id>): those runc lost
    // track of (state removed, launcher killed) are removed here, then their empty
    // `hpc-rank` parents (which may block the step's own cgroup removal).
    let ours = |n: &str| n.starts_with(ID_PREFIX) && wanted(n, launcher_pid_of(n));
    for dir in cgroup::find_named(Path::new("/sys/fs/cgroup"), &ours, 12) {
        match std::fs::remove_dir(&dir) {
            Ok(()) => removed.push(format!("cgroup:{}", dir.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failed.push(format!("cgroup:{} ({e})", dir.display())),
        }
    }
    let parent = |n: &str| n == cgroup::PARENT;
    for dir in cgroup::find_named(Path::new("/sys/fs/cgroup"), &parent, 12) {
        // podman's conmon cgroup sits next to the rank cgroups. Not empty (other ranks
        // running) or already gone: left alone.
        let _ = std::fs::remove_dir(dir.join("conmon"));
        let _ = std::fs::remove_dir(&dir);
    }
    for r in &removed {
        tracing::warn!("removed leftover {r}");
    }
    if !failed.is_empty() {
        bail!(
            "could not remove {} (see `runc list` / `podman ps -a`)",
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn ids_carry_job_step_rank_and_pid() {
        let env: BTreeMap<String, String> = [
            ("SLURM_JOB_ID", "42"),
            ("SLURM_STEP_ID", "3"),
            ("PMI_RANK", "7"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let id = container_id(&env, 1234);
        assert_eq!(id, "hpcrank-42.3-7-1234");
        assert_eq!(launcher_pid_of(&id), Some(1234));
        let id = container_id(&BTreeMap::new(), 9);
        assert_eq!(id, "hpcrank-nojob.x-0-9");
        assert_eq!(launcher_pid_of("other-1"), None);
    }

    fn annotations_of(args: &[&str]) -> BTreeMap<String, String> {
        let mut argv = vec!["hpc-rank"];
        argv.extend(args);
        argv.extend(["/rootfs", "/bin/true"]);
        annotations(&Cli::try_parse_from(argv).unwrap()).unwrap()
    }

    #[test]
    fn ranks_get_the_hooks_annotations_unless_turned_off() {
        let on =
            |m: &BTreeMap<String, String>, k: &str| m.get(k).map(String::as_str) == Some("true");
        let all = annotations_of(&[]);
        for k in [MPI_ANNOTATION, GLIBC_ANNOTATION, NET_ANNOTATION] {
            assert!(on(&all, k), "{k}: {all:?}");
        }
        let m = annotations_of(&["--no-net"]);
        assert!(!m.contains_key(NET_ANNOTATION), "{m:?}");
        assert!(on(&m, MPI_ANNOTATION) && on(&m, GLIBC_ANNOTATION), "{m:?}");
        let m = annotations_of(&["--no-mpi", "--no-glibc"]);
        assert_eq!(m.keys().collect::<Vec<_>>(), [NET_ANNOTATION], "{m:?}");
        // An explicit --annotation wins.
        let m = annotations_of(&["--annotation", "com.hooks.net.enabled=false"]);
        assert_eq!(m.get(NET_ANNOTATION).map(String::as_str), Some("false"));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(status_code(3 << 8), 3);
        assert_eq!(status_code(libc::SIGKILL), 137);
    }
}
