//! Device nodes for the container: host node facts, and the device cgroup rules that let
//! the container open them: `devices.allow` on cgroup v1, and on cgroup v2 the runtime's
//! BPF device program replaced by one that first allows our devices, then runs the
//! runtime's original instructions unchanged.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use crate::mountinfo::MountEntry;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot stat host device {path}: {source}")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find the container's device cgroup: {0}")]
    CgroupNotFound(String),
    #[error("cannot allow device {dev} in cgroup {path}: {source}")]
    Allow {
        dev: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup v2 device filter of {path}: {what}: {source}; the hook needs CAP_SYS_ADMIN/CAP_BPF on a kernel with BPF_CGROUP_DEVICE")]
    Bpf {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup v2 device filter of {}: {message}", .path.display())]
    BpfProgram { path: PathBuf, message: String },
}

/// Block or character device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DevType {
    Char,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceNode {
    pub dev_type: DevType,
    pub major: u64,
    pub minor: u64,
}

impl std::fmt::Display for DeviceNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = match self.dev_type {
            DevType::Char => 'c',
            DevType::Block => 'b',
        };
        write!(f, "{t} {}:{}", self.major, self.minor)
    }
}

/// The device behind a host path, or `None` when it is not a device node.
pub fn host_device(path: &Path) -> Result<Option<DeviceNode>, DeviceError> {
    let md = std::fs::metadata(path).map_err(|source| DeviceError::Stat {
        path: path.to_owned(),
        source,
    })?;
    Ok(DeviceNode::from_metadata(&md))
}

impl DeviceNode {
    /// The character or block device `md` describes (from `cdi_specs::HostNode`, the one
    /// reader of host node facts), or `None` for anything else.
    pub fn from_metadata(md: &std::fs::Metadata) -> Option<DeviceNode> {
        let h = cdi_specs::HostNode::from_metadata(md)?;
        let dev_type = match h.typ {
            "c" => DevType::Char,
            "b" => DevType::Block,
            _ => return None,
        };
        Some(DeviceNode {
            dev_type,
            major: h.major as u64,
            minor: h.minor as u64,
        })
    }
}

/// Where the container's cgroup is, as seen from the hook.
#[derive(Debug, Clone)]
pub struct CgroupLocator {
    /// `/proc/<pid>/cgroup` of the container process (or of the hook when inside).
    pub proc_cgroup: String,
    /// Host-view pid that must be a member, used to verify a candidate directory.
    pub member_pid: Option<u32>,
    /// `linux.cgroupsPath` from config.json, the fallback.
    pub cgroups_path: Option<String>,
}

fn member_ok(dir: &Path, pid: Option<u32>) -> bool {
    let Some(pid) = pid else { return dir.is_dir() };
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().any(|l| l.trim() == pid.to_string()))
        .unwrap_or(false)
}

/// `path` (absolute in the hierarchy) under `mount_point`; `None` when it has `.` or
/// `..` components, which could leave the hierarchy's mount.
fn under_mount(mount_point: &Path, path: &Path) -> Option<PathBuf> {
    let mut out = mount_point.to_path_buf();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// A `/proc/<pid>/cgroup` path (relative to the hierarchy root) under the mount of
/// `mount`, whose own root may be a sub-directory of the hierarchy.
fn join_cgroup(mount: &MountEntry, path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    under_mount(&mount.mount_point, p.strip_prefix(&mount.root).unwrap_or(p))
}

/// Finds the container's directory in the hierarchy `mount`, whose `/proc/<pid>/cgroup`
/// line is selected by `select`.
fn locate(
    loc: &CgroupLocator,
    mount: &MountEntry,
    select: &dyn Fn(&str) -> bool,
) -> Result<PathBuf, DeviceError> {
    let text = std::fs::read_to_string(&loc.proc_cgroup).map_err(|e| {
        DeviceError::CgroupNotFound(format!("cannot read {}: {e}", loc.proc_cgroup))
    })?;
    let mut tried: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrl, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if select(ctrl) {
            let Some(dir) = join_cgroup(mount, path) else {
                tried.push(format!("{path} (refused: `.` or `..` component)"));
                continue;
            };
            if member_ok(&dir, loc.member_pid) {
                return Ok(dir);
            }
            tried.push(dir.display().to_string());
        }
    }
    // The fallback: config.json's cgroupsPath (written by whoever made the bundle), held
    // to the same rules: no way out of the hierarchy, and the container must be a member.
    if let Some(cp) = &loc.cgroups_path {
        if cp.starts_with('/') {
            match under_mount(&mount.mount_point, Path::new(cp)) {
                None => tried.push(format!("cgroupsPath {cp} (refused: `.` or `..` component)")),
                Some(dir) if loc.member_pid.is_some() && member_ok(&dir, loc.member_pid) => {
                    return Ok(dir)
                }
                Some(dir) => tried.push(format!(
                    "cgroupsPath {} (the container is not in its cgroup.procs)",
                    dir.display()
                )),
            }
        }
    }
    Err(DeviceError::CgroupNotFound(format!(
        "no directory in {} holds the container (tried: {}); is the hook registered at createRuntime or createContainer?",
        mount.mount_point.display(),
        if tried.is_empty() { "none".to_string() } else { tried.join(", ") }
    )))
}

/// Cgroup device access: a non-empty subset of `rwm`, as bits of the kernel's BPF
/// device access type (`BPF_DEVCG_ACC_MKNOD` 1, `_READ` 2, `_WRITE` 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access(u8);

impl Access {
    pub const MKNOD: u8 = 1;
    pub const READ: u8 = 2;
    pub const WRITE: u8 = 4;
    /// Read and write: what device binds and the older hooks always granted.
    pub const RW: Access = Access(Self::READ | Self::WRITE);

    /// Parses `r`, `rw`, `rwm`, ... (letters in any order); `None` when empty or when a
    /// letter is not one of `r`, `w`, `m`.
    pub fn parse(s: &str) -> Option<Access> {
        let mut bits = 0;
        for c in s.chars() {
            bits |= match c {
                'r' => Self::READ,
                'w' => Self::WRITE,
                'm' => Self::MKNOD,
                _ => return None,
            };
        }
        (bits != 0).then_some(Access(bits))
    }

    /// The kernel's access bits.
    pub fn bits(self) -> u8 {
        self.0
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (bit, c) in [(Self::READ, 'r'), (Self::WRITE, 'w'), (Self::MKNOD, 'm')] {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One device cgroup rule: a device and the access allowed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Grant {
    pub dev: DeviceNode,
    pub access: Access,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.dev, self.access)
    }
}

/// Allows `devs` (read and write) for the container in every device-controlling hierarchy
/// the host has. Returns a line per action for the log.
pub fn allow_devices(
    devs: &[DeviceNode],
    loc: &CgroupLocator,
    mounts: &[MountEntry],
) -> Result<Vec<String>, DeviceError> {
    let grants: Vec<Grant> = devs
        .iter()
        .map(|&dev| Grant {
            dev,
            access: Access::RW,
        })
        .collect();
    allow_grants(&grants, loc, mounts)
}

/// Allows each grant's device with its access for the container in every
/// device-controlling hierarchy the host has. Returns a line per action for the log.
pub fn allow_grants(
    grants: &[Grant],
    loc: &CgroupLocator,
    mounts: &[MountEntry],
) -> Result<Vec<String>, DeviceError> {
    let mut done = Vec::new();
    if grants.is_empty() {
        return Ok(done);
    }
    let v1 = mounts
        .iter()
        .find(|m| m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == "devices"));
    if let Some(m) = v1 {
        let dir = locate(loc, m, &|c| c.split(',').any(|x| x == "devices"))?;
        let allow = dir.join("devices.allow");
        for g in grants {
            let rule = g.to_string();
            File::options()
                .write(true)
                .open(&allow)
                .and_then(|mut f| f.write_all(rule.as_bytes()))
                .map_err(|source| DeviceError::Allow {
                    dev: g.dev.to_string(),
                    path: allow.clone(),
                    source,
                })?;
            tracing::warn!(
                container = crate::logging::container_id().unwrap_or("?"),
                "device grant: {g} for the container (cgroup v1 {})",
                allow.display()
            );
            done.push(format!("cgroup v1: '{rule}' -> {}", allow.display()));
        }
    }
    if let Some(m) = mounts.iter().find(|m| m.fs_type == "cgroup2") {
        // The unified hierarchy filters devices only through attached BPF programs.
        if let Ok(dir) = locate(loc, m, &|c| c.is_empty()) {
            let n = bpf::allow_grants_in_cgroup(&dir, grants)?;
            for g in grants {
                tracing::warn!(
                    container = crate::logging::container_id().unwrap_or("?"),
                    "device grant: {g} for the container (cgroup v2 {}, {})",
                    dir.display(),
                    if n > 0 {
                        format!("{n} device program(s) replaced")
                    } else {
                        "no device program attached: all devices already allowed".to_string()
                    }
                );
            }
            if n > 0 {
                done.push(format!(
                    "cgroup v2: replaced {n} device program(s) of {} to allow {}",
                    dir.display(),
                    grants
                        .iter()
                        .map(|g| g.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        } else if v1.is_none() {
            locate(loc, m, &|c| c.is_empty())?;
        }
    }
    Ok(done)
}

/// Raw BPF syscalls for cgroup v2 device programs.
pub mod bpf {
    use super::*;

    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_PROG_QUERY: libc::c_long = 16;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    pub const BPF_CGROUP_DEVICE: u32 = 6;
    pub const BPF_F_ALLOW_MULTI: u32 = 2;
    const BPF_F_REPLACE: u32 = 4;
    const ATTR_SIZE: usize = 128;
    /// Most instructions accepted from an existing program.
    const MAX_INSNS: u32 = 1 << 16;

    /// One eBPF instruction (8 bytes).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Insn {
        pub code: u8,
        pub regs: u8,
        pub off: i16,
        pub imm: i32,
    }

    impl Insn {
        const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
            Insn {
                code,
                regs: (src << 4) | (dst & 0xf),
                off,
                imm,
            }
        }
        fn to_bytes(self) -> [u8; 8] {
            let mut b = [0u8; 8];
            b[0] = self.code;
            b[1] = self.regs;
            b[2..4].copy_from_slice(&self.off.to_le_bytes());
            b[4..8].copy_from_slice(&self.imm.to_le_bytes());
            b
        }
        fn from_bytes(b: &[u8]) -> Insn {
            Insn {
                code: b[0],
                regs: b[1],
                off: i16::from_le_bytes([b[2], b[3]]),
                imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            }
        }
    }

    // Opcodes.
    const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const ALU64_AND_K: u8 = 0x57;
    const ALU64_RSH_K: u8 = 0x77;
    const JNE_K: u8 = 0x55;
    const JSET_K: u8 = 0x45;
    const JA: u8 = 0x05;
    const MOV64_K: u8 = 0xb7;
    const EXIT: u8 = 0x95;

    /// Instructions that return 1 (allow) for read/write access to `devs` and fall
    /// through otherwise. Registers r2-r5 are scratch; r1 (the context) is preserved.
    pub fn allow_prefix(devs: &[DeviceNode]) -> Vec<Insn> {
        let grants: Vec<Grant> = devs
            .iter()
            .map(|&dev| Grant {
                dev,
                access: Access::RW,
            })
            .collect();
        allow_prefix_grants(&grants)
    }

    /// Instructions that return 1 (allow) when the access asked for a grant's device is
    /// within the grant's access, and fall through otherwise. Registers r2-r5 are scratch;
    /// r1 (the context) is preserved.
    pub fn allow_prefix_grants(grants: &[Grant]) -> Vec<Insn> {
        let mut p = vec![
            Insn::new(LDX_W, 2, 1, 0, 0),            // r2 = ctx->access_type
            Insn::new(LDX_W, 5, 1, 0, 0),            // r5 = ctx->access_type
            Insn::new(ALU64_AND_K, 2, 0, 0, 0xffff), // r2 = type
            Insn::new(ALU64_RSH_K, 5, 0, 0, 16),     // r5 = access
            Insn::new(ALU64_AND_K, 5, 0, 0, 7),      // r5 = access & (MKNOD|READ|WRITE)
            Insn::new(LDX_W, 3, 1, 4, 0),            // r3 = major
            Insn::new(LDX_W, 4, 1, 8, 0),            // r4 = minor
        ];
        let n = grants.len() as i16;
        // After the per-device blocks: `ja +2` over the allow block.
        for (i, g) in grants.iter().enumerate() {
            let d = g.dev;
            let ty = match d.dev_type {
                DevType::Block => 1,
                DevType::Char => 2,
            };
            let remaining = (n - 1 - i as i16) * 5; // instructions of later blocks
            let denied = i32::from(!g.access.bits() & 7);
            p.push(Insn::new(JSET_K, 5, 0, 4, denied)); // access not granted: not ours
            p.push(Insn::new(JNE_K, 2, 0, 3, ty));
            p.push(Insn::new(JNE_K, 3, 0, 2, d.major as i32));
            p.push(Insn::new(JNE_K, 4, 0, 1, d.minor as i32));
            p.push(Insn::new(JA, 0, 0, remaining + 1, 0)); // -> allow block
        }
        p.push(Insn::new(JA, 0, 0, 2, 0));
        p.push(Insn::new(MOV64_K, 0, 0, 0, 1));
        p.push(Insn::new(EXIT, 0, 0, 0, 0));
        p
    }

    fn bpf(cmd: libc::c_long, attr: &mut [u8; ATTR_SIZE]) -> std::io::Result<i64> {
        // SAFETY: the bpf syscall reads/writes at most ATTR_SIZE bytes of our zero-padded
        // buffer; pointers stored in it reference live buffers owned by the caller.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), ATTR_SIZE) };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    fn put32(a: &mut [u8; ATTR_SIZE], off: usize, v: u32) {
        a[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(a: &mut [u8; ATTR_SIZE], off: usize, v: u64) {
        a[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn owned(fd: i64) -> OwnedFd {
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    }

    /// Programs attached to the cgroup directory: (ids, attach flags).
    pub fn query(cgroup: &File) -> std::io::Result<(Vec<u32>, u32)> {
        let mut ids = vec![0u32; 64];
        let mut a = [0u8; ATTR_SIZE];
        put32(&mut a, 0, cgroup.as_raw_fd() as u32);
        put32(&mut a, 4, BPF_CGROUP_DEVICE);
        put64(&mut a, 16, ids.as_mut_ptr() as u64);
        put32(&mut a, 24, ids.len() as u32);
        bpf(BPF_PROG_QUERY, &mut a)?;
        let flags = u32::from_le_bytes([a[12], a[13], a[14], a[15]]);
        let cnt = u32::from_le_bytes([a[24], a[25], a[26], a[27]]) as usize;
        ids.truncate(cnt.min(64));
        Ok((ids, flags))
    }

    fn prog_fd(id: u32) -> std::io::Result<OwnedFd> {
        let mut a = [0u8; ATTR_SIZE];
        put32(&mut a, 0, id);
        Ok(owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut a)?))
    }

    fn prog_insns(fd: &OwnedFd) -> std::io::Result<Vec<Insn>> {
        let mut info = [0u8; 40];
        let mut a = [0u8; ATTR_SIZE];
        put32(&mut a, 0, fd.as_raw_fd() as u32);
        put32(&mut a, 4, info.len() as u32);
        put64(&mut a, 8, info.as_mut_ptr() as u64);
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a)?;
        let len = u32::from_le_bytes([info[20], info[21], info[22], info[23]]);
        if len == 0 || len % 8 != 0 || len / 8 > MAX_INSNS {
            return Err(std::io::Error::other(format!(
                "unexpected instruction length {len} of the existing program"
            )));
        }
        let mut buf = vec![0u8; len as usize];
        let mut info = [0u8; 40];
        info[20..24].copy_from_slice(&len.to_le_bytes());
        info[32..40].copy_from_slice(&(buf.as_mut_ptr() as u64).to_le_bytes());
        let mut a = [0u8; ATTR_SIZE];
        put32(&mut a, 0, fd.as_raw_fd() as u32);
        put32(&mut a, 4, info.len() as u32);
        put64(&mut a, 8, info.as_mut_ptr() as u64);
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a)?;
        Ok(buf.chunks_exact(8).map(Insn::from_bytes).collect())
    }

    /// Loads a BPF_PROG_TYPE_CGROUP_DEVICE program.
    pub fn load(insns: &[Insn]) -> Result<OwnedFd, String> {
        let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
        let license = c"Apache";
        let mut log = vec![0u8; 16 * 1024];
        let mut a = [0u8; ATTR_SIZE];
        put32(&mut a, 0, BPF_PROG_TYPE_CGROUP_DEVICE);
        put32(&mut a, 4, insns.len() as u32);
        put64(&mut a, 8, bytes.as_ptr() as u64);
        put64(&mut a, 16, license.as_ptr() as u64);
        put32(&mut a, 24, 1);
        put32(&mut a, 28, log.len() as u32);
        put64(&mut a, 32, log.as_mut_ptr() as u64);
        a[48..58].copy_from_slice(b"hpc_hooks\0");
        put32(&mut a, 68, BPF_CGROUP_DEVICE);
        match bpf(BPF_PROG_LOAD, &mut a) {
            Ok(fd) => Ok(owned(fd)),
            Err(e) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                Err(format!(
                    "the kernel refused the program ({e}): {}",
                    String::from_utf8_lossy(&log[..end]).trim()
                ))
            }
        }
    }

    /// Attaches `prog` to `cgroup`, replacing `old` when given (multi mode).
    pub fn attach(
        cgroup: &File,
        prog: &OwnedFd,
        flags: u32,
        old: Option<&OwnedFd>,
    ) -> std::io::Result<()> {
        let mut a = [0u8; ATTR_SIZE];
        put32(&mut a, 0, cgroup.as_raw_fd() as u32);
        put32(&mut a, 4, prog.as_raw_fd() as u32);
        put32(&mut a, 8, BPF_CGROUP_DEVICE);
        let mut f = flags;
        if let Some(old) = old {
            f |= BPF_F_REPLACE;
            put32(&mut a, 16, old.as_raw_fd() as u32);
        }
        put32(&mut a, 12, f);
        bpf(BPF_PROG_ATTACH, &mut a).map(|_| ())
    }

    /// Replaces every device program attached to the cgroup directory `dir` with one that
    /// allows `devs` (read and write) first. Returns how many programs were replaced (0: no
    /// filter, all allowed).
    pub fn allow_in_cgroup(dir: &Path, devs: &[DeviceNode]) -> Result<usize, DeviceError> {
        let grants: Vec<Grant> = devs
            .iter()
            .map(|&dev| Grant {
                dev,
                access: Access::RW,
            })
            .collect();
        allow_grants_in_cgroup(dir, &grants)
    }

    /// Replaces every device program attached to the cgroup directory `dir` with one that
    /// allows `grants` first. Returns how many programs were replaced (0: no filter, all
    /// allowed).
    pub fn allow_grants_in_cgroup(dir: &Path, grants: &[Grant]) -> Result<usize, DeviceError> {
        let berr = |what: &'static str, source: std::io::Error| DeviceError::Bpf {
            path: dir.to_owned(),
            what,
            source,
        };
        let cg = File::open(dir).map_err(|e| berr("open the cgroup directory", e))?;
        let (ids, flags) = query(&cg).map_err(|e| berr("query attached programs", e))?;
        let prefix = allow_prefix_grants(grants);
        for id in &ids {
            let old = prog_fd(*id).map_err(|e| berr("open the attached program", e))?;
            let insns = prog_insns(&old).map_err(|e| berr("read the attached program", e))?;
            let mut all = prefix.clone();
            all.extend(insns);
            let new = load(&all).map_err(|message| DeviceError::BpfProgram {
                path: dir.to_owned(),
                message,
            })?;
            if flags & BPF_F_ALLOW_MULTI != 0 {
                attach(&cg, &new, BPF_F_ALLOW_MULTI, Some(&old))
            } else {
                attach(&cg, &new, flags, None)
            }
            .map_err(|e| berr("attach the new program", e))?;
        }
        Ok(ids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(mp: &Path, root: &str) -> MountEntry {
        MountEntry {
            id: 1,
            parent: 0,
            root: root.into(),
            mount_point: mp.to_path_buf(),
            fs_type: "cgroup".into(),
            source: "cgroup".into(),
            super_options: "rw,devices".into(),
        }
    }

    /// A fake hierarchy: `<tmp>/hier/<member>/cgroup.procs` lists pid 42, and a
    /// directory outside the hierarchy whose cgroup.procs lists it too.
    fn fixture(proc_line: &str, cgroups_path: Option<&str>) -> (tempfile::TempDir, CgroupLocator) {
        let t = tempfile::tempdir().unwrap();
        let hier = t.path().join("hier");
        std::fs::create_dir_all(hier.join("ctr")).unwrap();
        std::fs::write(hier.join("ctr/cgroup.procs"), "1\n42\n").unwrap();
        std::fs::create_dir_all(hier.join("other")).unwrap();
        std::fs::write(hier.join("other/cgroup.procs"), "7\n").unwrap();
        std::fs::create_dir_all(t.path().join("outside")).unwrap();
        std::fs::write(t.path().join("outside/cgroup.procs"), "42\n").unwrap();
        std::fs::write(t.path().join("pid-cgroup"), proc_line).unwrap();
        let loc = CgroupLocator {
            proc_cgroup: t.path().join("pid-cgroup").display().to_string(),
            member_pid: Some(42),
            cgroups_path: cgroups_path.map(String::from),
        };
        (t, loc)
    }

    fn devices(c: &str) -> bool {
        c.split(',').any(|x| x == "devices")
    }

    #[test]
    fn access_letters_and_prefix_masks() {
        assert_eq!(Access::parse("r").unwrap().to_string(), "r");
        assert_eq!(Access::parse("mwr").unwrap().to_string(), "rwm");
        assert_eq!(Access::parse(""), None);
        assert_eq!(Access::parse("rx"), None);
        let dev = DeviceNode {
            dev_type: DevType::Char,
            major: 1,
            minor: 3,
        };
        let g = |a: &str| Grant {
            dev,
            access: Access::parse(a).unwrap(),
        };
        // The first instruction of each device block jumps away when the access asked
        // has a bit the grant lacks: r refuses write and mknod (4|1), rw mknod, rwm nothing.
        let p = bpf::allow_prefix_grants(&[g("r"), g("rw"), g("rwm")]);
        let masks: Vec<(u8, i32)> = [7, 12, 17].iter().map(|&i| (p[i].code, p[i].imm)).collect();
        assert_eq!(masks, [(0x45, 5), (0x45, 1), (0x45, 0)]);
        assert_eq!(
            bpf::allow_prefix(&[dev]),
            bpf::allow_prefix_grants(&[g("rw")])
        );
        assert_eq!(g("r").to_string(), "c 1:3 r");
    }

    #[test]
    fn proc_cgroup_candidate_with_membership() {
        let (t, loc) = fixture("5:devices:/ctr\n", None);
        let m = mount(&t.path().join("hier"), "/");
        assert_eq!(
            locate(&loc, &m, &devices).unwrap(),
            t.path().join("hier/ctr")
        );
    }

    #[test]
    fn dotdot_in_proc_cgroup_is_refused() {
        let (t, loc) = fixture("5:devices:/../outside\n", None);
        let m = mount(&t.path().join("hier"), "/");
        let e = locate(&loc, &m, &devices).unwrap_err().to_string();
        assert!(
            e.contains("tried: /../outside (refused: `.` or `..` component)"),
            "{e}"
        );
    }

    #[test]
    fn cgroups_path_fallback_refuses_dotdot() {
        let (t, loc) = fixture("5:devices:/gone\n", Some("/../outside"));
        let m = mount(&t.path().join("hier"), "/");
        let e = locate(&loc, &m, &devices).unwrap_err().to_string();
        assert!(
            e.contains("cgroupsPath /../outside (refused: `.` or `..` component)"),
            "{e}"
        );
    }

    #[test]
    fn cgroups_path_fallback_requires_membership() {
        // A directory of the hierarchy that the container is not in: refused.
        let (t, loc) = fixture("5:devices:/gone\n", Some("/other"));
        let m = mount(&t.path().join("hier"), "/");
        let e = locate(&loc, &m, &devices).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "cgroupsPath {} (the container is not in its cgroup.procs)",
                t.path().join("hier/other").display()
            )),
            "{e}"
        );
        // Without a pid to check, the fallback is not used at all.
        let (t, mut loc) = fixture("5:devices:/gone\n", Some("/ctr"));
        loc.member_pid = None;
        let m = mount(&t.path().join("hier"), "/");
        assert!(locate(&loc, &m, &devices).is_err());
        // The container's own directory: accepted.
        let (t, loc) = fixture("5:devices:/gone\n", Some("/ctr"));
        let m = mount(&t.path().join("hier"), "/");
        assert_eq!(
            locate(&loc, &m, &devices).unwrap(),
            t.path().join("hier/ctr")
        );
    }

    #[test]
    fn mount_root_is_stripped() {
        let (t, loc) = fixture("5:devices:/docker/abc/ctr\n", None);
        let m = mount(&t.path().join("hier"), "/docker/abc");
        assert_eq!(
            locate(&loc, &m, &devices).unwrap(),
            t.path().join("hier/ctr")
        );
        assert_eq!(
            under_mount(Path::new("/m"), Path::new("/a/./b")),
            Some(PathBuf::from("/m/a/b"))
        );
        assert_eq!(under_mount(Path::new("/m"), Path::new("/a/../../b")), None);
    }
}
