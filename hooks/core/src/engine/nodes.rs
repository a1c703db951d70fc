//! Device nodes: facts completed from the host node, then ONE choice ([`choose`]) between
//! creating the node with mknod and binding the host node onto an empty in-root file.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cdi_specs::types::{DeviceNode as CdiNode, HostNode};

use super::host::{open_host, HostPathError};
use super::sys::{NodeKind, NodeSpec, Sys};
use super::{root_err, EngineError};
use crate::mount::BindFlags;
use crate::rootfs::{normalize, stat_handle, KnownDirs, Rootfs};

/// How a node gets into the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMethod {
    /// mknod in-root with the spec's type, numbers, mode and owner.
    Mknod,
    /// The host node bound (`rw,dev,nosuid,noexec`) onto an empty in-root file.
    Bind,
}

/// The one place that chooses: mknod only with `CAP_MKNOD` in the initial user namespace
/// (`can_mknod`: [`Sys::can_mknod`], asked once per apply) and for a node under the
/// container's `/dev`; otherwise bind the host node.
pub fn choose(can_mknod: bool, container_path: &Path) -> NodeMethod {
    let p = normalize(container_path);
    if p.starts_with("/dev") && p != Path::new("/dev") && can_mknod {
        NodeMethod::Mknod
    } else {
        NodeMethod::Bind
    }
}

/// A spec node with everything known: the host node (opened once, when it exists) and
/// the facts to create or check it with.
#[derive(Debug)]
pub struct Filled {
    /// Normalised container path.
    pub path: PathBuf,
    /// The host path looked at (`hostPath`, else `path`).
    pub host_path: String,
    /// The host node's handle, from [`open_host`] (`None`: it does not exist).
    pub host: Option<File>,
    pub spec: NodeSpec,
    /// The spec node with type, numbers and mode completed, as composition wants it.
    pub completed: CdiNode,
}

/// True when `md` is a node of the spec's type and (for devices) numbers.
fn is_node(md: &std::fs::Metadata, spec: &NodeSpec) -> bool {
    HostNode::from_metadata(md).is_some_and(|h| {
        kind_of(h.typ) == spec.kind
            && (spec.kind == NodeKind::Fifo
                || (h.major, h.minor) == (spec.major as i64, spec.minor as i64))
    })
}

fn kind_of(typ: &str) -> NodeKind {
    match typ {
        "b" => NodeKind::Block,
        "p" => NodeKind::Fifo,
        _ => NodeKind::Char,
    }
}

/// Type, numbers and mode of a spec node: from the spec, completed from the host node
/// (opened once without following symlinks under world-writable directories).
pub fn fill(n: &CdiNode) -> Result<Filled, EngineError> {
    let host_path = if n.host_path.is_empty() {
        n.path.clone()
    } else {
        n.host_path.clone()
    };
    let err = |message: String| EngineError::Node {
        path: n.path.clone(),
        message,
    };
    let host = match open_host(&host_path) {
        Ok(f) => Some(f),
        Err(HostPathError::Unsafe(why)) => return Err(err(why)),
        Err(HostPathError::Io(_)) => None,
    };
    let md = host.as_ref().and_then(|f| f.metadata().ok());
    let from_host = md
        .as_ref()
        .and_then(HostNode::from_metadata)
        .map(|h| (kind_of(h.typ), h.major as u64, h.minor as u64, h.mode));
    let kind = match n.typ.as_str() {
        "c" | "u" => NodeKind::Char,
        "b" => NodeKind::Block,
        "p" => NodeKind::Fifo,
        "" => match from_host {
            Some((k, ..)) => k,
            None => {
                return Err(err(format!(
                    "no type given and host node {host_path} is not a device"
                )))
            }
        },
        other => {
            return Err(err(format!(
                "type {other:?} is not supported (only c, u, b, p)"
            )))
        }
    };
    let number = |spec: Option<i64>, host: Option<u64>, what: &str| match (spec, host) {
        (Some(m), _) if m >= 0 => Ok(m as u64),
        (_, Some(m)) => Ok(m),
        _ if kind == NodeKind::Fifo => Ok(0),
        _ => Err(err(format!(
            "no {what} given and host node {host_path} cannot be read"
        ))),
    };
    let major = number(n.major, from_host.map(|h| h.1), "major")?;
    let minor = number(n.minor, from_host.map(|h| h.2), "minor")?;
    let mode = n
        .file_mode
        .map(|m| m & 0o7777)
        .or(from_host.map(|h| h.3))
        .unwrap_or(0o666);
    let spec = NodeSpec {
        kind,
        major,
        minor,
        mode,
        uid: n.uid,
        gid: n.gid,
    };
    // The node as composed: type and numbers completed from the host node.
    let mut completed = n.clone();
    if completed.typ.is_empty() {
        completed.typ = kind.letter().to_string();
    }
    completed.major = Some(major as i64);
    completed.minor = Some(minor as i64);
    completed.file_mode = Some(mode);
    Ok(Filled {
        path: normalize(Path::new(&n.path)),
        host_path,
        host,
        spec,
        completed,
    })
}

/// What is at the node's container path now.
enum Existing {
    None,
    /// The same node (type and numbers; for mknod also the mode), or the host node itself.
    Same,
    /// A regular file: a mount point to bind onto.
    File,
    /// Something else that may be removed (only under `/dev`).
    Other,
}

fn existing(
    rootfs: &Rootfs,
    f: &Filled,
    method: NodeMethod,
    host_md: Option<&std::fs::Metadata>,
) -> Result<Existing, EngineError> {
    let Ok(h) = rootfs.root().resolve_nofollow(&f.path) else {
        return Ok(Existing::None);
    };
    let md = stat_handle(&h).map_err(|e| root_err(rootfs, &f.path, e))?;
    if host_md.is_some_and(|m| m.dev() == md.dev() && m.ino() == md.ino()) {
        return Ok(Existing::Same);
    }
    let ft = md.file_type();
    let same_node =
        is_node(&md, &f.spec) && (method == NodeMethod::Bind || md.mode() & 0o7777 == f.spec.mode);
    if same_node {
        return Ok(Existing::Same);
    }
    if ft.is_dir() {
        return Err(EngineError::Node {
            path: f.path.display().to_string(),
            message: "a directory is in the way in the container".into(),
        });
    }
    if ft.is_file() && method == NodeMethod::Bind {
        return Ok(Existing::File);
    }
    if !f.path.starts_with("/dev") {
        return Err(EngineError::Node {
            path: f.path.display().to_string(),
            message: "another file is in the way in the container, outside /dev; not replacing it"
                .into(),
        });
    }
    Ok(Existing::Other)
}

/// Puts one filled node into the container by `method`. Returns the log line, or `None`
/// when the node was already there.
pub fn place(
    rootfs: &Rootfs,
    sys: &dyn Sys,
    f: &Filled,
    method: NodeMethod,
    known: &mut KnownDirs,
) -> Result<Option<String>, EngineError> {
    let node_err = |message: String| EngineError::Node {
        path: f.path.display().to_string(),
        message,
    };
    let host_md = match (&f.host, method) {
        (Some(h), _) => Some(h.metadata().map_err(|e| {
            node_err(format!("cannot stat host node {}: {e}", f.host_path))
        })?),
        (None, NodeMethod::Mknod) => None,
        (None, NodeMethod::Bind) => {
            return Err(node_err(format!(
                "host node {} is missing, and it is bound into the container as this process may not create device nodes there",
                f.host_path
            )))
        }
    };
    if method == NodeMethod::Bind {
        // Bind only what the spec says: the host node must be of the same type and numbers.
        let ok = host_md.as_ref().is_some_and(|m| is_node(m, &f.spec));
        if !ok {
            return Err(node_err(format!(
                "host node {} is not a {} {}:{} node; refusing to bind it",
                f.host_path,
                f.spec.kind.letter(),
                f.spec.major,
                f.spec.minor
            )));
        }
    }
    if let Some(parent) = f.path.parent() {
        rootfs.ensure_dir(parent, known)?;
    }
    let state = existing(rootfs, f, method, host_md.as_ref())?;
    let desc = format!("{} {}:{}", f.spec.kind.letter(), f.spec.major, f.spec.minor);
    match state {
        Existing::Same => return Ok(None),
        Existing::Other => rootfs
            .root()
            .remove_file(&f.path)
            .map_err(|e| root_err(rootfs, &f.path, e))?,
        Existing::None | Existing::File => {}
    }
    match method {
        NodeMethod::Mknod => {
            sys.mknod(rootfs, &f.path, &f.spec)?;
            Ok(Some(format!(
                "created {} ({desc} mode {:o})",
                f.path.display(),
                f.spec.mode
            )))
        }
        NodeMethod::Bind => {
            let Some(src) = &f.host else {
                return Err(node_err(format!("host node {} is missing", f.host_path)));
            };
            let target = rootfs.ensure_file_known(&f.path, known)?;
            let what = format!("{} -> {} (device node)", f.host_path, f.path.display());
            let re = || {
                rootfs
                    .root()
                    .resolve_nofollow(&f.path)
                    .ok()
                    .map(OwnedFd::from)
            };
            sys.bind(src.as_fd(), target.as_fd(), BindFlags::DEVICE, &what, &re)?;
            tracing::warn!(
                "read-write host bind: device node {} ({desc}) bound into the container at {} (rw,dev,nosuid,noexec)",
                f.host_path,
                if Path::new(&f.host_path) == f.path {
                    "the same path".to_string()
                } else {
                    f.path.display().to_string()
                }
            );
            Ok(Some(format!(
                "bound host node {} at {} ({desc})",
                f.host_path,
                f.path.display()
            )))
        }
    }
}
