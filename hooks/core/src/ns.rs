//! Entering the container's mount namespace when the hook runs outside it.
//!
//! At `createRuntime` the hook runs in the runtime's namespaces and must `setns` into
//! `/proc/<pid>/ns/mnt`; at `createContainer` it already runs inside (crun passes pid 0,
//! runc passes the pid as seen inside the container's pid namespace).

use std::fs::File;
use std::os::unix::fs::MetadataExt;

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("cannot inspect {path}: {source}; is /proc mounted and is the hook running as root?")]
    Proc {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot enter the mount namespace of container process {pid} ({path}): {source}; the hook needs CAP_SYS_ADMIN and must be registered at createRuntime or createContainer")]
    Setns {
        pid: i32,
        path: String,
        #[source]
        source: nix::Error,
    },
}

/// Where the hook found itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsEntry {
    /// Already in the container's mount namespace (createContainer, or no pid given).
    AlreadyInside,
    /// Entered the mount namespace of the given host pid (createRuntime/prestart).
    Entered(i32),
}

fn ns_id(path: &str) -> Result<(u64, u64), NsError> {
    let md = std::fs::metadata(path).map_err(|source| NsError::Proc {
        path: path.to_string(),
        source,
    })?;
    Ok((md.dev(), md.ino()))
}

/// True when this process lives in a pid namespace below the one of the mounted /proc,
/// i.e. inside the container (runc's createContainer passes a container-relative pid).
fn in_nested_pid_ns() -> Result<bool, NsError> {
    let link = std::fs::read_link("/proc/self").map_err(|source| NsError::Proc {
        path: "/proc/self".into(),
        source,
    })?;
    let proc_pid: u32 = link.to_string_lossy().parse().unwrap_or(0);
    Ok(proc_pid != std::process::id())
}

/// Enters the mount namespace of `pid` unless the hook is already inside it.
/// Must be called while the process is single-threaded.
pub fn enter_container_mount_ns(pid: Option<i32>) -> Result<NsEntry, NsError> {
    let Some(pid) = pid else {
        return Ok(NsEntry::AlreadyInside);
    };
    if in_nested_pid_ns()? {
        return Ok(NsEntry::AlreadyInside);
    }
    let theirs = format!("/proc/{pid}/ns/mnt");
    if ns_id("/proc/self/ns/mnt")? == ns_id(&theirs)? {
        return Ok(NsEntry::AlreadyInside);
    }
    let f = File::open(&theirs).map_err(|source| NsError::Proc {
        path: theirs.clone(),
        source,
    })?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNS).map_err(|source| {
        NsError::Setns {
            pid,
            path: theirs,
            source,
        }
    })?;
    Ok(NsEntry::Entered(pid))
}
