//! The bundle's `config.json` (via `oci-spec`): rootfs location, annotations, mounts.
//!
//! The state JSON only names the bundle; the runtime-written config is the source of truth.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::state::HookState;

/// Largest config.json accepted.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}; the bundle path in the state JSON must point at the container's bundle")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path} is not a valid OCI runtime config: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} has no root.path; the hook needs the container's root filesystem")]
    NoRoot { path: PathBuf },
}

/// What the hooks use from config.json.
#[derive(Debug, Clone)]
pub struct BundleConfig {
    pub spec: oci_spec::runtime::Spec,
    /// Absolute host path of the rootfs (`root.path` made absolute against the bundle).
    pub rootfs: PathBuf,
    /// config.json annotations overlaid with the state's annotations.
    pub annotations: HashMap<String, String>,
}

impl BundleConfig {
    pub fn load(state: &HookState) -> Result<Self, ConfigError> {
        let path = state.bundle.join("config.json");
        let file = std::fs::File::open(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut buf = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
        if buf.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path });
        }
        Self::parse(&buf, &path, &state.bundle, &state.annotations)
    }

    pub fn parse(
        bytes: &[u8],
        path: &Path,
        bundle: &Path,
        state_annotations: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let spec: oci_spec::runtime::Spec =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| ConfigError::NoRoot {
                path: path.to_owned(),
            })?;
        let rootfs = if root.is_absolute() {
            root
        } else {
            bundle.join(root)
        };
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        for (k, v) in state_annotations {
            annotations.insert(k.clone(), v.clone());
        }
        Ok(BundleConfig {
            spec,
            rootfs,
            annotations,
        })
    }

    /// `linux.cgroupsPath`, when set.
    pub fn cgroups_path(&self) -> Option<String> {
        self.spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<BundleConfig, ConfigError> {
        BundleConfig::parse(
            json.as_bytes(),
            Path::new("/b/config.json"),
            Path::new("/b"),
            &HashMap::from([("from.state".to_string(), "1".to_string())]),
        )
    }

    #[test]
    fn relative_root_and_annotations() {
        let c = parse(r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"annotations":{"a":"b"}}"#)
            .unwrap();
        assert_eq!(c.rootfs, PathBuf::from("/b/rootfs"));
        assert_eq!(c.annotations["a"], "b");
        assert_eq!(c.annotations["from.state"], "1");
        let c = parse(r#"{"ociVersion":"1.0.2","root":{"path":"/r"}}"#).unwrap();
        assert_eq!(c.rootfs, PathBuf::from("/r"));
    }

    #[test]
    fn bad_configs() {
        let e = parse(r#"{"ociVersion":"1.0.2"}"#).unwrap_err().to_string();
        assert_eq!(
            e,
            "/b/config.json has no root.path; the hook needs the container's root filesystem"
        );
        let e = parse("{").unwrap_err().to_string();
        assert!(
            e.starts_with("/b/config.json is not a valid OCI runtime config"),
            "{e}"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,300}") {
            let _ = parse(&s);
        }
    }
}
