//! PMIx directories of the job (as Sarus does): when the container's environment names
//! a PMIx server directory (`PMIX_SERVER_TMPDIR`, `PMIX_SYSTEM_TMPDIR`, the dstore base
//! paths, Slurm's `pmix.<job>.<step>` spool directory), it is bound at the same path.
//!
//! The environment belongs to whoever starts the container, so each directory is opened
//! once without following any symlink (openat2 `RESOLVE_NO_SYMLINKS`, or a component walk
//! with `O_NOFOLLOW`), checked on that descriptor (a real directory named `pmix*`, owned
//! by root or by the hook's own real uid, never by the image-chosen `process.user.uid`,
//! not group/world-writable, not under a config.json mount) and bound from that same
//! descriptor, read-only, `nosuid,nodev,noexec`. It is never scanned for devices.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Environment variables naming PMIx directories.
pub const PMIX_DIR_VARS: &[&str] = &[
    "PMIX_SERVER_TMPDIR",
    "PMIX_SYSTEM_TMPDIR",
    "PMIX_DSTORE_ESH_BASE_PATH",
    "PMIX_DSTORE_21_BASE_PATH",
];

/// Why a PMIx directory named by the container's environment is not bound.
#[derive(Debug, thiserror::Error)]
pub enum PmixSkip {
    #[error("not an absolute path")]
    NotAbsolute,
    #[error("the path contains `..`; PMIx directories must be named by a plain absolute path")]
    DotDot,
    #[error("its name does not start with `pmix`")]
    Name,
    #[error("already mounted by config.json (under {0})")]
    Covered(PathBuf),
    #[error(
        "a component of the path is a symlink; symlinks are never followed for PMIx directories"
    )]
    Symlink,
    #[error("it, or a component of its path, is not a directory (or is a symlink, which is not followed)")]
    NotDirComponent,
    #[error("it does not exist")]
    Missing,
    #[error("cannot open it: {0}")]
    Open(std::io::Error),
    #[error("cannot stat the opened directory: {0}")]
    Stat(std::io::Error),
    #[error("it is not a directory")]
    NotDir,
    #[error("it is group- or world-writable (mode {0:04o}); only directories writable by their owner alone are bound")]
    Writable(u32),
    #[error("owned by uid {owner}, neither root nor the hook's own uid {hook}; the container's user (process.user.uid, chosen by the image) is never trusted: a launcher that needs a user-owned PMIx directory binds it in config.json (hpc-rank does)")]
    Owner { owner: u32, hook: u32 },
}

/// A PMIx directory opened without following symlinks and checked on its descriptor.
#[derive(Debug)]
pub struct PmixDir {
    /// The path named by the environment (normalised; also the container path).
    pub path: PathBuf,
    /// `O_PATH` descriptor of the directory, to bind from.
    pub fd: OwnedFd,
}

/// Candidate paths named by the container's environment (`K=V` entries).
pub fn candidates(env: &[String]) -> Vec<PathBuf> {
    let get = |k: &str| {
        env.iter()
            .find_map(|e| e.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
    };
    let mut cands: Vec<PathBuf> = PMIX_DIR_VARS
        .iter()
        .filter_map(|k| get(k))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .collect();
    // Slurm's mpi/pmix: <SlurmdSpoolDir>/pmix.<job>.<step>, next to PMIX_SERVER_TMPDIR's
    // parent when the variable points inside it.
    if let (Some(job), Some(step), Some(srv)) = (
        get("SLURM_JOB_ID"),
        get("SLURM_STEP_ID"),
        get("PMIX_SERVER_TMPDIR"),
    ) {
        let name = format!("pmix.{job}.{step}");
        for a in Path::new(srv).ancestors() {
            if a.file_name().is_some_and(|n| n == name.as_str()) {
                cands.push(a.to_path_buf());
            }
        }
    }
    cands
}

/// PMIx directories to bind for a container with environment `env`, config.json mount
/// destinations `mounted`, for a hook whose real uid is `hook_uid`. Each skip is logged
/// (info) with its reason.
pub fn pmix_dirs(env: &[String], hook_uid: u32, mounted: &[PathBuf]) -> Vec<PmixDir> {
    let mut out: Vec<PmixDir> = Vec::new();
    for c in candidates(env) {
        match open_checked(&c, hook_uid, mounted) {
            Ok(d) => {
                if !out.iter().any(|o| o.path == d.path) {
                    out.push(d);
                }
            }
            Err(why) => tracing::info!("PMIx directory {} not bound: {why}", c.display()),
        }
    }
    // A directory inside another one to bind is covered by it (both were reached
    // without symlinks, so the path prefix is the real relation).
    let all: Vec<PathBuf> = out.iter().map(|d| d.path.clone()).collect();
    out.retain(|d| {
        let covered = all.iter().any(|q| *q != d.path && d.path.starts_with(q));
        if covered {
            tracing::info!(
                "PMIx directory {} not bound separately: inside another PMIx directory bound",
                d.path.display()
            );
        }
        !covered
    });
    out
}

/// Normalises an absolute path (drops `.` and repeated `/`); refuses `..`.
fn normalise(p: &Path) -> Result<PathBuf, PmixSkip> {
    if !p.is_absolute() {
        return Err(PmixSkip::NotAbsolute);
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err(PmixSkip::DotDot),
            Component::Prefix(_) => return Err(PmixSkip::NotAbsolute),
        }
    }
    Ok(out)
}

/// Opens `p` once, without following symlinks, and checks the opened directory.
pub fn open_checked(p: &Path, hook_uid: u32, mounted: &[PathBuf]) -> Result<PmixDir, PmixSkip> {
    let path = normalise(p)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.starts_with("pmix") {
        return Err(PmixSkip::Name);
    }
    if let Some(m) = mounted.iter().find(|m| path.starts_with(m)) {
        return Err(PmixSkip::Covered(m.clone()));
    }
    let fd = open_nofollow(&path).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => PmixSkip::Symlink,
        Some(libc::ENOTDIR) => PmixSkip::NotDirComponent,
        Some(libc::ENOENT) => PmixSkip::Missing,
        _ => PmixSkip::Open(e),
    })?;
    check_fd(&fd, hook_uid)?;
    Ok(PmixDir { path, fd })
}

/// The checks made on the opened descriptor.
fn check_fd(fd: &OwnedFd, hook_uid: u32) -> Result<(), PmixSkip> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat on a valid, owned fd writing into a properly sized struct.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc < 0 {
        return Err(PmixSkip::Stat(std::io::Error::last_os_error()));
    }
    // SAFETY: fstat succeeded and initialised the struct.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(PmixSkip::NotDir);
    }
    if st.st_mode & 0o022 != 0 {
        return Err(PmixSkip::Writable(st.st_mode & 0o7777));
    }
    if st.st_uid != 0 && st.st_uid != hook_uid {
        return Err(PmixSkip::Owner {
            owner: st.st_uid,
            hook: hook_uid,
        });
    }
    Ok(())
}

const OPEN_FLAGS: libc::c_int =
    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// Opens the absolute, normalised `path` from `/` without following any symlink:
/// openat2(`RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS`), or a component walk when the
/// kernel has no openat2.
pub fn open_nofollow(path: &Path) -> std::io::Result<OwnedFd> {
    let root = open_root()?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.as_os_str().is_empty() {
        return Ok(root);
    }
    match openat2_nofollow(&root, rel) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => walk_nofollow(root, rel),
        r => r,
    }
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn open_root() -> std::io::Result<OwnedFd> {
    // SAFETY: open with a static NUL-terminated path; the result is checked, then owned.
    let fd = unsafe { libc::open(c"/".as_ptr(), OPEN_FLAGS) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn openat2_nofollow(dir: &OwnedFd, rel: &Path) -> std::io::Result<OwnedFd> {
    let c = cstr(rel)?;
    let how = OpenHow {
        flags: OPEN_FLAGS as u64,
        mode: 0,
        resolve: libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and an open_how struct
    // that lives across the call, with its exact size; the result is checked.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Fallback for kernels without openat2: one `openat(O_NOFOLLOW|O_DIRECTORY)` per
/// component, each relative to the previous one (a symlink fails with ELOOP/ENOTDIR).
pub fn walk_nofollow(root: OwnedFd, rel: &Path) -> std::io::Result<OwnedFd> {
    let mut cur = root;
    for c in rel.components() {
        let Component::Normal(n) = c else {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        };
        let name = cstr(Path::new(n))?;
        // SAFETY: openat with a valid dirfd and a NUL-terminated single component.
        let fd = unsafe { libc::openat(cur.as_raw_fd(), name.as_ptr(), OPEN_FLAGS) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor owned by nobody else.
        cur = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    Ok(cur)
}

/// The hook's real uid (root for rootful engines; in a rootless user namespace the
/// user's own files show as this uid too).
pub fn hook_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    struct T {
        _t: tempfile::TempDir,
        base: PathBuf,
        me: u32,
    }

    /// A temp dir with owner-only permissions; `me` owns everything created in it.
    fn setup() -> T {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().canonicalize().unwrap();
        let me = std::fs::metadata(&base).unwrap().uid();
        T { _t: t, base, me }
    }

    fn mkdir(p: &Path, mode: u32) {
        std::fs::create_dir_all(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn skip(p: &Path, uid: u32, mounted: &[PathBuf]) -> String {
        match open_checked(p, uid, mounted) {
            Ok(d) => panic!("{} was selected ({:?})", p.display(), d.fd),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn selects_only_safe_pmix_dirs() {
        let t = setup();
        let step = t.base.join("pmix.7.0");
        mkdir(&step.join("sub"), 0o755);
        mkdir(&step, 0o755);
        let other = t.base.join("secret");
        mkdir(&other, 0o755);
        let link = t.base.join("pmix-link");
        std::os::unix::fs::symlink(&other, &link).unwrap();
        let env = vec![
            format!("PMIX_SERVER_TMPDIR={}", step.join("sub").display()),
            format!("PMIX_SYSTEM_TMPDIR={}", other.display()),
            format!("PMIX_DSTORE_21_BASE_PATH={}", link.display()),
            "SLURM_JOB_ID=7".to_string(),
            "SLURM_STEP_ID=0".to_string(),
        ];
        // `sub` is not named pmix*; the step dir (from SLURM_*) is; "secret" and the
        // symlink are refused.
        let got: Vec<PathBuf> = pmix_dirs(&env, t.me, &[])
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(got, vec![step.clone()]);
        // Already bound by the launcher: nothing to do.
        assert!(pmix_dirs(&env, t.me, std::slice::from_ref(&step)).is_empty());
        assert!(pmix_dirs(&["PMIX_SERVER_TMPDIR=rel/pmix".into()], t.me, &[]).is_empty());
        assert!(pmix_dirs(&[], t.me, &[]).is_empty());
    }

    #[test]
    fn nested_pmix_dir_is_covered_by_its_parent() {
        let t = setup();
        let outer = t.base.join("pmix.3.1");
        let inner = outer.join("pmix-42");
        mkdir(&inner, 0o700);
        mkdir(&outer, 0o700);
        let env = vec![
            format!("PMIX_SERVER_TMPDIR={}", inner.display()),
            format!("PMIX_SYSTEM_TMPDIR={}", outer.display()),
        ];
        let got: Vec<PathBuf> = pmix_dirs(&env, t.me, &[])
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(got, vec![outer]);
    }

    #[test]
    fn symlinked_component_is_refused() {
        let t = setup();
        let real = t.base.join("real");
        mkdir(&real.join("pmix-1"), 0o755);
        std::os::unix::fs::symlink(&real, t.base.join("via")).unwrap();
        let p = t.base.join("via/pmix-1");
        assert!(
            skip(&p, t.me, &[]).contains("symlink"),
            "{}",
            skip(&p, t.me, &[])
        );
        // The same directory by its real path is accepted.
        let d = open_checked(&real.join("pmix-1"), t.me, &[]).unwrap();
        assert_eq!(d.path, real.join("pmix-1"));
        // The fallback walk refuses the symlinked component too.
        let rel = p.strip_prefix("/").unwrap();
        let e = walk_nofollow(open_root().unwrap(), rel).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)),
            "{e}"
        );
        let rel_ok = real.join("pmix-1");
        walk_nofollow(open_root().unwrap(), rel_ok.strip_prefix("/").unwrap()).unwrap();
    }

    #[test]
    fn final_symlink_to_a_device_is_refused() {
        let t = setup();
        let p = t.base.join("pmix-dev");
        std::os::unix::fs::symlink("/dev/null", &p).unwrap();
        // O_NOFOLLOW|O_DIRECTORY on the final symlink: ENOTDIR (ELOOP from
        // RESOLVE_NO_SYMLINKS on other components); both say it is not followed.
        let r = open_checked(&p, t.me, &[]);
        assert!(
            matches!(r, Err(PmixSkip::NotDirComponent) | Err(PmixSkip::Symlink)),
            "a symlink named pmix* must not be followed: {r:?}"
        );
        assert!(r.unwrap_err().to_string().contains("symlink"));
        let dir = t.base.join("pmix-real");
        mkdir(&dir, 0o755);
        let via = t.base.join("pmix-via");
        std::os::unix::fs::symlink(&dir, &via).unwrap();
        let r = open_checked(&via, t.me, &[]);
        assert!(
            matches!(r, Err(PmixSkip::NotDirComponent) | Err(PmixSkip::Symlink)),
            "a symlink to a pmix directory must not be followed: {r:?}"
        );
    }

    #[test]
    fn file_and_missing_are_refused() {
        let t = setup();
        let f = t.base.join("pmix-file");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(skip(&f, t.me, &[]), PmixSkip::NotDirComponent.to_string());
        let m = t.base.join("pmix-missing");
        assert_eq!(skip(&m, t.me, &[]), "it does not exist");
    }

    #[test]
    fn wrong_owner_is_refused_whatever_the_container_user() {
        let t = setup();
        let d = t.base.join("pmix-x");
        mkdir(&d, 0o755);
        // Run as root: the directory belongs to uid 4242 (a user the image could name in
        // process.user.uid) and the hook is root. Unprivileged: the directory belongs to
        // us and the hook uid given is another one.
        let (owner, hook) = if t.me == 0 {
            std::os::unix::fs::chown(&d, Some(4242), Some(4242)).unwrap();
            (4242, 0)
        } else {
            (t.me, t.me.wrapping_add(4242))
        };
        let why = skip(&d, hook, &[]);
        assert!(
            why.starts_with(&format!(
                "owned by uid {owner}, neither root nor the hook's own uid {hook}"
            )),
            "{why}"
        );
        assert!(why.contains("process.user.uid"), "{why}");
        // Owned by the hook's own uid: accepted.
        assert!(open_checked(&d, owner, &[]).is_ok());
    }

    #[test]
    fn group_or_world_writable_is_refused() {
        let t = setup();
        let g = t.base.join("pmix-g");
        mkdir(&g, 0o775);
        assert_eq!(skip(&g, t.me, &[]), PmixSkip::Writable(0o775).to_string());
        let w = t.base.join("pmix-w");
        mkdir(&w, 0o1777);
        assert_eq!(skip(&w, t.me, &[]), PmixSkip::Writable(0o1777).to_string());
    }

    #[test]
    fn name_dotdot_relative_and_covered_are_refused() {
        let t = setup();
        let n = t.base.join("notpmix");
        mkdir(&n, 0o755);
        assert_eq!(skip(&n, t.me, &[]), "its name does not start with `pmix`");
        let d = t.base.join("pmix-ok");
        mkdir(&d, 0o755);
        let dd = t.base.join("notpmix/../pmix-ok");
        assert_eq!(skip(&dd, t.me, &[]), PmixSkip::DotDot.to_string());
        assert_eq!(
            skip(Path::new("tmp/pmix-ok"), t.me, &[]),
            "not an absolute path"
        );
        assert_eq!(
            skip(&d, t.me, std::slice::from_ref(&t.base)),
            format!(
                "already mounted by config.json (under {})",
                t.base.display()
            )
        );
        // `.` and repeated slashes are normalised.
        let odd = PathBuf::from(format!("{}//./pmix-ok", t.base.display()));
        assert_eq!(open_checked(&odd, t.me, &[]).unwrap().path, d);
    }
}
