//! hpc-rank's privilege model: who may run it, which options each caller may give, and
//! where the container runtimes come from. Privileges handed over by sudo, setuid or file
//! capabilities are refused unless the admin config names the wrapper that handed them.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The admin configuration file: root-owned, not group- or world-writable, like every
/// directory above it. Missing: built-in defaults, no wrapper allowed.
pub const CONFIG_PATH: &str = "/etc/hpc-hooks/hpc-rank.conf";
/// runc binaries tried in order when the config names none.
pub const DEFAULT_RUNC: &[&str] = &["/usr/sbin/runc", "/usr/bin/runc"];
/// podman binaries tried in order when the config names none.
pub const DEFAULT_PODMAN: &[&str] = &["/usr/bin/podman"];
/// Largest config file read (it holds a few lines).
const MAX_CONFIG: u64 = 64 * 1024;

/// Options (and environment variables) that choose host programs, hooks or mounts run as
/// root: only the real root, not under sudo or a wrapper, may give them.
pub const ROOT_ONLY: &[&str] = &[
    "--runc",
    "--podman",
    "--hooks-dir",
    "--scratch",
    "--cdi-spec-dir",
    "HPC_RANK_PODMAN_GLOBAL_OPTS",
    "HPC_RANK_PODMAN_RUN_OPTS",
];
/// Options refused when a wrapper handed root to the caller: binds are made and
/// annotations read by root, cleanup removes other users' containers.
pub const NOT_THROUGH_WRAPPER: &[&str] =
    &["--bind", "--annotation", "--cleanup-job", "--cleanup-stale"];
/// `--env` names refused through a wrapper: root hooks read them from the container.
pub const WRAPPER_ENV_DENY: &[&str] = &["HPC_HOOKS_", "NVIDIA_", "CUDA_", "LD_"];

/// Errors of the privilege checks and of the admin config.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrivilegeError {
    #[error(
        "hpc-rank refuses to run with privileges handed to it by another user ({reasons}; \
         parent process {parent}): through sudo, setuid or file capabilities its options \
         (--bind, --env, --annotation, the runtime and the hooks it starts) would let the \
         caller act as root. Run it as the real root (a root-owned script or Slurm \
         prolog), unprivileged with `--runtime podman` (rootless), or, if the site has a \
         compiled wrapper that checks each request, name it in {CONFIG_PATH} \
         (`allow_wrapper=/path/to/wrapper`; the file and its directories root-owned, not \
         group- or world-writable) and start hpc-rank as that wrapper's child"
    )]
    Elevated { reasons: String, parent: String },
    #[error(
        "{option} chooses what runs as root and is only accepted from the real root \
         (real uid 0, not through sudo or a wrapper; caller: {caller}): leave it out, or \
         ask the admin to set it in {CONFIG_PATH}"
    )]
    RootOnly {
        option: String,
        caller: &'static str,
    },
    #[error(
        "{option} is refused when hpc-rank runs through the wrapper {wrapper}: root would \
         act on it for the caller; leave it out or have the wrapper's admin provide it"
    )]
    NotThroughWrapper { option: String, wrapper: String },
    #[error("cannot read the admin config {path}: {why}")]
    ConfigRead { path: String, why: String },
    #[error(
        "the admin config {path} is not trusted: {why}; make it and every directory above \
         it owned by root and not group- or world-writable (chown root:root, chmod go-w)"
    )]
    ConfigInsecure { path: String, why: String },
    #[error("the admin config {path}, line {line}: {why}")]
    ConfigSyntax {
        path: String,
        line: usize,
        why: String,
    },
    #[error(
        "no {what} binary at {tried} (fixed admin paths; the caller's PATH is never \
         searched): install it there or set `{key}=/absolute/path` in {CONFIG_PATH}"
    )]
    NoRuntime {
        what: &'static str,
        key: &'static str,
        tried: String,
    },
}

/// The admin configuration (`key=value` lines, `#` comments).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Config {
    /// `allow_wrapper=PATH` (repeatable): a program whose children may run hpc-rank with
    /// privileges handed over by sudo, setuid or file capabilities.
    pub allow_wrappers: Vec<PathBuf>,
    /// `runc=PATH`: the runc binary.
    pub runc: Option<PathBuf>,
    /// `podman=PATH`: the podman binary.
    pub podman: Option<PathBuf>,
}

/// Parses the config text; `Err((line, why))` names the first bad line (1-based).
pub fn parse_config(text: &str) -> Result<Config, (usize, String)> {
    let mut c = Config::default();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err((n, "expected KEY=VALUE".into()));
        };
        let (k, v) = (k.trim(), v.trim());
        let path = admin_path(v).map_err(|why| (n, format!("{k}: {why}")))?;
        match k {
            "allow_wrapper" => c.allow_wrappers.push(path),
            "runc" | "podman" => {
                let slot = if k == "runc" {
                    &mut c.runc
                } else {
                    &mut c.podman
                };
                if slot.is_some() {
                    return Err((n, format!("{k} is set twice")));
                }
                *slot = Some(path);
            }
            _ => {
                return Err((
                    n,
                    format!("unknown key {k:?} (known: allow_wrapper, runc, podman)"),
                ))
            }
        }
    }
    Ok(c)
}

/// An absolute, normalised path without control characters.
fn admin_path(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("empty value".into());
    }
    if v.chars().any(char::is_control) {
        return Err("control character in the path".into());
    }
    let p = Path::new(v);
    if !p.is_absolute() {
        return Err(format!("{v:?} is not an absolute path"));
    }
    if v.contains("//")
        || (v.len() > 1 && v.ends_with('/'))
        || p.components()
            .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Err(format!(
            "{v:?} is not a normalised path (no //, ., .. or trailing /)"
        ));
    }
    Ok(p.to_path_buf())
}

/// Why a file or directory of the config path is not trusted (None: trusted).
pub fn untrusted_why(uid: u32, mode: u32) -> Option<String> {
    if uid != 0 {
        return Some(format!("owned by uid {uid}, not root"));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "mode {:o} is group- or world-writable",
            mode & 0o7777
        ));
    }
    None
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: fstat fills a zeroed stat for an fd we own.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st)
    }
}

fn openat(dir: Option<&OwnedFd>, name: &Path, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let c = CString::new(name.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let d = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: openat with a NUL-terminated name; the fd is owned by the result.
    let fd = unsafe { libc::openat(d, c.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads the admin config at `path` (absolute): every directory from `/` down and the
/// file itself are opened without following symlinks and checked on the opened fd (root
/// owned, not group- or world-writable, a regular file). `Ok(None)` when it does not exist.
pub fn load_config(path: &Path) -> Result<Option<Config>, PrivilegeError> {
    let shown = path.display().to_string();
    let read_err = |why: String| PrivilegeError::ConfigRead {
        path: shown.clone(),
        why,
    };
    let insecure = |why: String| PrivilegeError::ConfigInsecure {
        path: shown.clone(),
        why,
    };
    let parts: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    if !path.is_absolute()
        || parts.is_empty()
        || path
            .components()
            .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Err(read_err("not a normalised absolute file path".into()));
    }
    let dir_flags = libc::O_PATH | libc::O_DIRECTORY;
    let mut dir = openat(None, Path::new("/"), dir_flags).map_err(|e| read_err(e.to_string()))?;
    let mut at = PathBuf::from("/");
    for (i, name) in parts.iter().enumerate() {
        let st = fstat(&dir).map_err(|e| read_err(e.to_string()))?;
        if let Some(why) = untrusted_why(st.st_uid, st.st_mode) {
            return Err(insecure(format!("directory {}: {why}", at.display())));
        }
        at.push(name);
        let last = i + 1 == parts.len();
        let flags = if last {
            libc::O_RDONLY | libc::O_NONBLOCK
        } else {
            dir_flags
        };
        match openat(Some(&dir), Path::new(name), flags) {
            Ok(fd) => dir = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(insecure(format!("{} is a symbolic link", at.display())))
            }
            Err(e) => return Err(read_err(format!("{}: {e}", at.display()))),
        }
    }
    let st = fstat(&dir).map_err(|e| read_err(e.to_string()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(insecure("not a regular file".into()));
    }
    if let Some(why) = untrusted_why(st.st_uid, st.st_mode) {
        return Err(insecure(format!("the file is {why}")));
    }
    if st.st_size as u64 > MAX_CONFIG {
        return Err(read_err(format!("larger than {MAX_CONFIG} bytes")));
    }
    let mut text = String::new();
    use std::io::Read;
    std::fs::File::from(dir)
        .take(MAX_CONFIG)
        .read_to_string(&mut text)
        .map_err(|e| read_err(format!("{e} (it must be UTF-8 text)")))?;
    let cfg = parse_config(&text).map_err(|(line, why)| PrivilegeError::ConfigSyntax {
        path: shown.clone(),
        line,
        why,
    })?;
    for w in &cfg.allow_wrappers {
        // Whoever can rewrite the wrapper owns every privilege it hands over.
        if let Ok(m) = std::fs::metadata(w) {
            use std::os::unix::fs::MetadataExt;
            if let Some(why) = untrusted_why(m.uid(), m.mode()) {
                return Err(insecure(format!("allow_wrapper={}: {why}", w.display())));
            }
        }
        // A script's /proc/PID/exe is its interpreter: it can never be matched safely.
        let head = std::fs::read(w)
            .map(|b| b.get(..2) == Some(b"#!"))
            .unwrap_or(false);
        if head {
            return Err(PrivilegeError::ConfigSyntax {
                path: shown.clone(),
                line: 0,
                why: format!(
                    "allow_wrapper={} is a script; its process runs as its interpreter, \
                     which cannot be told apart from any other script: use a compiled wrapper",
                    w.display()
                ),
            });
        }
    }
    Ok(Some(cfg))
}

/// The process's credentials, as far as the privilege rules need them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Creds {
    pub ruid: u32,
    pub euid: u32,
    pub rgid: u32,
    pub egid: u32,
    /// Effective capability set (CapEff of /proc/self/status).
    pub cap_eff: u64,
    /// The kernel's AT_SECURE: set for setuid, setgid and file-capability executions.
    pub at_secure: bool,
    /// Names of the sudo variables present (SUDO_UID, SUDO_USER).
    pub sudo_vars: Vec<&'static str>,
}

impl Creds {
    /// This process's credentials and environment.
    pub fn current() -> Creds {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let cap_eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            // Unknown: assume capabilities are held (the safe side).
            .unwrap_or(u64::MAX);
        Creds {
            ruid: nix::unistd::getuid().as_raw(),
            euid: nix::unistd::geteuid().as_raw(),
            rgid: nix::unistd::getgid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            cap_eff,
            // SAFETY: getauxval has no preconditions.
            at_secure: unsafe { libc::getauxval(libc::AT_SECURE) } != 0,
            sudo_vars: ["SUDO_UID", "SUDO_USER"]
                .into_iter()
                .filter(|v| std::env::var_os(v).is_some())
                .collect(),
        }
    }

    /// Why these credentials were handed over by someone else (empty: they were not).
    pub fn elevation(&self) -> Vec<String> {
        let mut r = Vec::new();
        if self.euid != self.ruid {
            r.push(format!(
                "setuid: effective uid {}, real uid {}",
                self.euid, self.ruid
            ));
        }
        if self.egid != self.rgid {
            r.push(format!(
                "setgid: effective gid {}, real gid {}",
                self.egid, self.rgid
            ));
        }
        if self.cap_eff != 0 && self.ruid != 0 {
            r.push(format!(
                "capabilities CapEff={:016x} held by real uid {}",
                self.cap_eff, self.ruid
            ));
        }
        for v in &self.sudo_vars {
            r.push(format!("{v} is set (started through sudo)"));
        }
        if self.at_secure && r.is_empty() {
            r.push("the kernel marked this execution secure (AT_SECURE)".into());
        }
        r
    }
}

/// Who is running hpc-rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The real root, on its own behalf: every option.
    Root,
    /// An unprivileged user with no handed-over privileges (runc mode fails; rootless podman).
    User,
    /// Privileges handed over through a wrapper the admin config allows.
    Wrapper(PathBuf),
}

impl Caller {
    fn describe(&self) -> &'static str {
        match self {
            Caller::Root => "real root",
            Caller::User => "unprivileged user",
            Caller::Wrapper(_) => "through an allowed wrapper",
        }
    }
}

/// Classifies the caller: handed-over privileges are refused unless `parent_exe` (the
/// executable of the parent process) is one of the config's `allow_wrapper` paths.
pub fn classify(
    c: &Creds,
    cfg: &Config,
    parent_exe: Option<&Path>,
) -> Result<Caller, PrivilegeError> {
    let reasons = c.elevation();
    if reasons.is_empty() {
        return Ok(if c.ruid == 0 && c.euid == 0 {
            Caller::Root
        } else {
            Caller::User
        });
    }
    if let Some(p) = parent_exe {
        if let Some(w) = cfg
            .allow_wrappers
            .iter()
            .find(|w| w.as_path() == p || w.canonicalize().ok().as_deref() == Some(p))
        {
            return Ok(Caller::Wrapper(w.clone()));
        }
    }
    Err(PrivilegeError::Elevated {
        reasons: reasons.join("; "),
        parent: parent_exe.map_or("unknown".into(), |p| p.display().to_string()),
    })
}

/// Checks the options given on the command line or through the environment (`given`,
/// spelled as in [`ROOT_ONLY`] and [`NOT_THROUGH_WRAPPER`]) and the `--env` entries.
pub fn authorize(caller: &Caller, given: &[&str], env: &[String]) -> Result<(), PrivilegeError> {
    if *caller != Caller::Root {
        if let Some(o) = given.iter().find(|o| ROOT_ONLY.contains(o)) {
            return Err(PrivilegeError::RootOnly {
                option: o.to_string(),
                caller: caller.describe(),
            });
        }
    }
    if let Caller::Wrapper(w) = caller {
        let wrapper = w.display().to_string();
        if let Some(o) = given.iter().find(|o| NOT_THROUGH_WRAPPER.contains(o)) {
            return Err(PrivilegeError::NotThroughWrapper {
                option: o.to_string(),
                wrapper,
            });
        }
        for kv in env {
            let k = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            if WRAPPER_ENV_DENY.iter().any(|p| k.starts_with(p)) {
                return Err(PrivilegeError::NotThroughWrapper {
                    option: format!("--env {k}=... (hooks running as root read it)"),
                    wrapper,
                });
            }
        }
    }
    Ok(())
}

/// The executable of the parent process, read from /proc and checked to still be our
/// parent afterwards (a parent that exited and whose pid was reused is not trusted).
pub fn parent_exe() -> Option<PathBuf> {
    let ppid = nix::unistd::getppid();
    let exe = std::fs::read_link(format!("/proc/{ppid}/exe")).ok()?;
    if nix::unistd::getppid() != ppid || exe.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return None;
    }
    Some(exe)
}

/// The runtime binary: the caller's choice (root only, absolute), else the config's,
/// else the first existing default. Never looked up in PATH.
pub fn resolve_runtime(
    what: &'static str,
    chosen: Option<&Path>,
    configured: Option<&Path>,
    defaults: &[&str],
) -> Result<PathBuf, PrivilegeError> {
    let key = if what == "runc" { "runc" } else { "podman" };
    let candidates: Vec<PathBuf> = match chosen.or(configured) {
        Some(p) => vec![p.to_path_buf()],
        None => defaults.iter().map(PathBuf::from).collect(),
    };
    for c in &candidates {
        if !c.is_absolute() {
            return Err(PrivilegeError::NoRuntime {
                what,
                key,
                tried: format!("{} (not an absolute path)", c.display()),
            });
        }
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    Err(PrivilegeError::NoRuntime {
        what,
        key,
        tried: candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Who the rank runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// The rank's user: the real ids; through a wrapper started by sudo (real uid 0 with
/// SUDO_UID), the sudo caller's (SUDO_UID, SUDO_GID, and SUDO_USER's groups).
pub fn rank_user(caller: &Caller) -> RankUser {
    let real = || RankUser {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        groups: nix::unistd::getgroups()
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default(),
    };
    if !matches!(caller, Caller::Wrapper(_)) || !nix::unistd::getuid().is_root() {
        return real();
    }
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    let (Some(uid), Some(gid)) = (num("SUDO_UID"), num("SUDO_GID")) else {
        return real();
    };
    let groups = std::env::var("SUDO_USER")
        .ok()
        .and_then(|u| CString::new(u).ok())
        .and_then(|u| nix::unistd::getgrouplist(&u, nix::unistd::Gid::from_raw(gid)).ok())
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![gid]);
    RankUser { uid, gid, groups }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn root() -> Creds {
        Creds::default()
    }

    fn user(uid: u32) -> Creds {
        Creds {
            ruid: uid,
            euid: uid,
            rgid: uid,
            egid: uid,
            ..Creds::default()
        }
    }

    fn wrap_cfg() -> Config {
        Config {
            allow_wrappers: vec!["/usr/local/sbin/hpc-rank-wrapper".into()],
            ..Config::default()
        }
    }

    #[test]
    fn parses_keys_comments_and_repeats() {
        let c = parse_config(
            "# site config\n\n allow_wrapper = /usr/local/sbin/a\nallow_wrapper=/opt/b\n\
             runc=/opt/runc/bin/runc\npodman=/usr/bin/podman\n",
        )
        .unwrap();
        assert_eq!(
            c.allow_wrappers,
            vec![PathBuf::from("/usr/local/sbin/a"), PathBuf::from("/opt/b")]
        );
        assert_eq!(c.runc, Some(PathBuf::from("/opt/runc/bin/runc")));
        assert_eq!(c.podman, Some(PathBuf::from("/usr/bin/podman")));
        assert_eq!(parse_config("").unwrap(), Config::default());
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        let e = |t: &str| parse_config(t).unwrap_err();
        assert_eq!(e("runc=/a\nbogus\n"), (2, "expected KEY=VALUE".into()));
        assert_eq!(
            e("runc=runc"),
            (1, "runc: \"runc\" is not an absolute path".into())
        );
        assert_eq!(e("runc=/a\nrunc=/b"), (2, "runc is set twice".into()));
        assert!(e("allow_wrapper=/a/../b")
            .1
            .contains("not a normalised path"));
        assert!(e("allow_wrapper=/a//b").1.contains("not a normalised path"));
        assert!(e("allow_wrapper=").1.contains("empty value"));
        assert!(e("allow_wrapper=/a\u{7}b").1.contains("control character"));
        assert!(e("hooks_dir=/x").1.contains("unknown key \"hooks_dir\""));
    }

    #[test]
    fn plain_root_and_plain_users_are_not_elevated() {
        assert_eq!(
            classify(&root(), &Config::default(), None),
            Ok(Caller::Root)
        );
        assert_eq!(
            classify(&user(1000), &Config::default(), None),
            Ok(Caller::User)
        );
    }

    #[test]
    fn setuid_setgid_caps_sudo_and_at_secure_are_refused() {
        let cases = [
            (
                Creds {
                    euid: 0,
                    ..user(1000)
                },
                "setuid: effective uid 0, real uid 1000",
            ),
            (
                Creds {
                    egid: 0,
                    ..user(1000)
                },
                "setgid: effective gid 0, real gid 1000",
            ),
            (
                Creds {
                    cap_eff: 1 << 21,
                    ..user(1000)
                },
                "capabilities CapEff=0000000000200000 held by real uid 1000",
            ),
            (
                Creds {
                    sudo_vars: vec!["SUDO_UID"],
                    ..root()
                },
                "SUDO_UID is set (started through sudo)",
            ),
            (
                Creds {
                    sudo_vars: vec!["SUDO_USER"],
                    ..root()
                },
                "SUDO_USER is set (started through sudo)",
            ),
            (
                Creds {
                    at_secure: true,
                    ..user(1000)
                },
                "AT_SECURE",
            ),
        ];
        for (c, why) in cases {
            let e = classify(&c, &wrap_cfg(), Some(Path::new("/bin/bash"))).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(why), "{c:?}: {msg}");
            assert!(msg.contains("parent process /bin/bash"), "{msg}");
            assert!(msg.contains("allow_wrapper="), "{msg}");
        }
    }

    #[test]
    fn allowed_wrapper_must_be_the_parent() {
        let c = Creds {
            euid: 0,
            ..user(1000)
        };
        assert_eq!(
            classify(
                &c,
                &wrap_cfg(),
                Some(Path::new("/usr/local/sbin/hpc-rank-wrapper"))
            ),
            Ok(Caller::Wrapper("/usr/local/sbin/hpc-rank-wrapper".into()))
        );
        assert!(classify(&c, &wrap_cfg(), None).is_err());
        assert!(classify(&c, &Config::default(), Some(Path::new("/usr/bin/sudo"))).is_err());
    }

    #[test]
    fn host_choosing_options_need_the_real_root() {
        assert_eq!(authorize(&Caller::Root, ROOT_ONLY, &[]), Ok(()));
        for o in ROOT_ONLY {
            let e = authorize(&Caller::User, &[o], &[]).unwrap_err();
            assert_eq!(
                e,
                PrivilegeError::RootOnly {
                    option: o.to_string(),
                    caller: "unprivileged user"
                }
            );
            assert!(authorize(&Caller::Wrapper("/w".into()), &[o], &[]).is_err());
        }
        // Unprivileged users may bind and annotate (nothing runs as root for them).
        assert_eq!(
            authorize(&Caller::User, &["--bind", "--annotation"], &[]),
            Ok(())
        );
    }

    #[test]
    fn wrapper_callers_lose_binds_annotations_cleanup_and_hook_env() {
        let w = Caller::Wrapper("/usr/local/sbin/w".into());
        for o in NOT_THROUGH_WRAPPER {
            let e = authorize(&w, &[o], &[]).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{o} is refused")), "{e}");
        }
        for k in [
            "HPC_HOOKS_LOG_FILE=/etc/x",
            "NVIDIA_VISIBLE_DEVICES=all",
            "LD_PRELOAD=/x",
            // --env NAME takes the caller's value of NAME: refused the same way.
            "LD_PRELOAD",
            "HPC_HOOKS_LOG_LEVEL",
            "CUDA_VISIBLE_DEVICES",
        ] {
            assert!(authorize(&w, &[], &[k.to_string()]).is_err(), "{k}");
        }
        assert_eq!(authorize(&w, &[], &["OMP_NUM_THREADS=4".into()]), Ok(()));
    }

    #[test]
    fn runtimes_come_from_fixed_paths_never_path() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("runc");
        std::fs::write(&bin, "").unwrap();
        let b = bin.to_str().unwrap();
        assert_eq!(
            resolve_runtime("runc", None, None, &["/nonexistent/runc", b]),
            Ok(bin.clone())
        );
        assert_eq!(
            resolve_runtime("runc", None, Some(&bin), &["/x"]),
            Ok(bin.clone())
        );
        let e = resolve_runtime("runc", Some(Path::new("runc")), None, &[b]).unwrap_err();
        assert!(e.to_string().contains("runc (not an absolute path)"), "{e}");
        let e = resolve_runtime("podman", None, None, &["/nonexistent/podman"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "no podman binary at /nonexistent/podman (fixed admin paths; the caller's PATH \
                 is never searched): install it there or set `podman=/absolute/path` in {CONFIG_PATH}"
            )
        );
    }

    /// A directory with no group- or world-writable directory above it: under target/
    /// when the checkout is in such a place (not under /tmp), else under /run or /var/lib.
    fn trusted_dir() -> tempfile::TempDir {
        let trusted = |p: &Path| {
            p.canonicalize().is_ok_and(|c| {
                c.ancestors().all(|a| {
                    std::fs::symlink_metadata(a).is_ok_and(|m| m.permissions().mode() & 0o022 == 0)
                })
            })
        };
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
        let _ = std::fs::create_dir_all(&target);
        let base = [target.as_path(), Path::new("/run"), Path::new("/var/lib")]
            .into_iter()
            .find(|b| trusted(b))
            .expect("no scratch directory without a group/world-writable parent (target/, /run, /var/lib)");
        tempfile::Builder::new()
            .prefix("hpc-rank-test")
            .tempdir_in(base.canonicalize().unwrap())
            .unwrap()
    }

    #[test]
    fn config_file_is_checked_on_the_opened_file() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test creates root-owned files: run the unit tests as root");
        }
        let d = trusted_dir();
        let f = d.path().join("hpc-rank.conf");
        assert_eq!(load_config(&f), Ok(None), "missing file: defaults");
        std::fs::write(&f, "runc=/opt/runc\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            load_config(&f).unwrap().unwrap().runc,
            Some(PathBuf::from("/opt/runc"))
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = load_config(&f).unwrap_err().to_string();
        assert!(
            e.contains("the file is mode 664 is group- or world-writable"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        nix::unistd::chown(&f, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let e = load_config(&f).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534, not root"), "{e}");
        // A symlink to a good file is refused (O_NOFOLLOW on the last component).
        let good = d.path().join("good.conf");
        std::fs::write(&good, "").unwrap();
        let l = d.path().join("link.conf");
        std::os::unix::fs::symlink(&good, &l).unwrap();
        let e = load_config(&l).unwrap_err().to_string();
        assert!(e.contains("is a symbolic link"), "{e}");
        // A writable directory above the file is refused.
        let sub = d.path().join("open");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(sub.join("c.conf"), "").unwrap();
        let e = load_config(&sub.join("c.conf")).unwrap_err().to_string();
        assert!(e.contains("mode 777 is group- or world-writable"), "{e}");
        // Syntax errors name the line.
        std::fs::write(&good, "# x\nrunc=relative\n").unwrap();
        let e = load_config(&good).unwrap_err().to_string();
        assert!(
            e.contains("line 2: runc: \"relative\" is not an absolute path"),
            "{e}"
        );
        // A wrapper others can write is refused.
        let wrap = d.path().join("wrapper");
        std::fs::write(&wrap, "\x7fELF").unwrap();
        std::fs::set_permissions(&wrap, std::fs::Permissions::from_mode(0o4777)).unwrap();
        std::fs::write(&good, format!("allow_wrapper={}\n", wrap.display())).unwrap();
        let e = load_config(&good).unwrap_err().to_string();
        assert!(
            e.contains("wrapper: mode 4777 is group- or world-writable"),
            "{e}"
        );
        std::fs::set_permissions(&wrap, std::fs::Permissions::from_mode(0o4755)).unwrap();
        assert_eq!(
            load_config(&good).unwrap().unwrap().allow_wrappers,
            vec![wrap.clone()]
        );
        // A script cannot be an allowed wrapper.
        let script = d.path().join("wrap.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::write(&good, format!("allow_wrapper={}\n", script.display())).unwrap();
        let e = load_config(&good).unwrap_err().to_string();
        assert!(e.contains("is a script"), "{e}");
    }
}
