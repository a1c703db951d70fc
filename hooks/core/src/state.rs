//! The OCI state JSON a runtime writes on a hook's stdin, parsed leniently.
//!
//! runc, crun and podman disagree with the spec (crun sends `status: "starting"`, `pid: 0`,
//! `ociVersion: "1.0"`, an extra `root`), so this is not `oci_spec::runtime::State`.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use serde::Deserialize;

/// Largest state document accepted on stdin.
pub const MAX_STATE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the container state from stdin: {0}")]
    Read(#[source] std::io::Error),
    #[error("the container state on stdin is larger than {MAX_STATE_BYTES} bytes; is this hook started by an OCI runtime?")]
    TooLarge,
    #[error("the container state on stdin is not valid JSON ({0}); the hook must be started by an OCI runtime (runc, crun, podman) with the state on stdin")]
    Json(#[source] serde_json::Error),
    #[error(
        "the container state on stdin has no `{0}`; the hook must be started by an OCI runtime"
    )]
    Missing(&'static str),
}

/// What the hook needs from the state; every field beyond `id` and `bundle` is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookState {
    pub oci_version: String,
    pub id: String,
    pub status: String,
    /// Process id of the container as the runtime reports it; `None` when absent or 0.
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    pub annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct RawState {
    #[serde(default, rename = "ociVersion")]
    oci_version: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    status: Option<serde_json::Value>,
    #[serde(default)]
    pid: Option<serde_json::Value>,
    #[serde(default)]
    bundle: Option<String>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

impl HookState {
    /// Reads at most [`MAX_STATE_BYTES`] from `reader` and parses them.
    pub fn read_from(reader: impl Read) -> Result<Self, StateError> {
        let mut buf = Vec::new();
        reader
            .take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(StateError::Read)?;
        if buf.len() as u64 > MAX_STATE_BYTES {
            return Err(StateError::TooLarge);
        }
        Self::parse(&buf)
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, StateError> {
        let raw: RawState = serde_json::from_slice(bytes).map_err(StateError::Json)?;
        let id = raw
            .id
            .filter(|s| !s.is_empty())
            .ok_or(StateError::Missing("id"))?;
        let bundle = raw
            .bundle
            .filter(|s| !s.is_empty())
            .ok_or(StateError::Missing("bundle"))?;
        let pid = match raw.pid {
            Some(serde_json::Value::Number(n)) => n.as_i64().and_then(|p| i32::try_from(p).ok()),
            _ => None,
        }
        .filter(|p| *p > 0);
        let status = match raw.status {
            Some(serde_json::Value::String(s)) => s,
            _ => String::new(),
        };
        Ok(HookState {
            oci_version: raw.oci_version.unwrap_or_default(),
            id,
            status,
            pid,
            bundle: PathBuf::from(bundle),
            annotations: raw.annotations.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_create_runtime() {
        let s = HookState::parse(br#"{"ociVersion":"1.0.2-dev","id":"c1","status":"creating","pid":4242,"bundle":"/b","annotations":{"com.hooks.mpi.enabled":"true"}}"#).unwrap();
        assert_eq!(s.pid, Some(4242));
        assert_eq!(s.status, "creating");
        assert_eq!(s.annotations["com.hooks.mpi.enabled"], "true");
    }

    #[test]
    fn crun_variants() {
        let s = HookState::parse(br#"{"ociVersion":"1.0","id":"c1","status":"starting","pid":0,"bundle":"/b","root":"/b/rootfs","extra":[1,2]}"#).unwrap();
        assert_eq!(s.pid, None);
        assert_eq!(s.status, "starting");
        assert!(s.annotations.is_empty());
        let s = HookState::parse(br#"{"id":"c1","status":"stopped","bundle":"/b"}"#).unwrap();
        assert_eq!(s.pid, None);
    }

    #[test]
    fn bad_input() {
        let e = HookState::parse(b"").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = HookState::parse(br#"{"id":"x"}"#).unwrap_err().to_string();
        assert_eq!(e, "the container state on stdin has no `bundle`; the hook must be started by an OCI runtime");
        let e = HookState::parse(br#"{"id":"x","bundle":"/b","pid":"12"}"#).unwrap();
        assert_eq!(e.pid, None);
        let big = vec![b' '; (MAX_STATE_BYTES + 10) as usize];
        assert!(matches!(
            HookState::read_from(&big[..]),
            Err(StateError::TooLarge)
        ));
        assert!(
            HookState::parse(br#"{"id":"x","bundle":"/b","pid":99999999999}"#)
                .unwrap()
                .pid
                .is_none()
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = HookState::parse(&bytes);
        }
    }
}
