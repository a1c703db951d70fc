//! What the container asks for, read from its config.json as data only: the
//! `NVIDIA_VISIBLE_DEVICES` / `CUDA_VISIBLE_DEVICES` / `ROCR_VISIBLE_DEVICES` entries of
//! `process.env`, CDI names in `cdi.k8s.io/*` annotations, `NVIDIA_DRIVER_CAPABILITIES`,
//! `NVIDIA_REQUIRE_CUDA` and `NVIDIA_DISABLE_REQUIRE`. None of these influence how the hook
//! itself runs (its own environment comes from hooks.d).

use std::collections::{BTreeSet, HashMap};

use crate::caps::Caps;

/// CDI kind of NVIDIA GPUs.
pub const NVIDIA_KIND: &str = "nvidia.com/gpu";
/// CDI kind of AMD GPUs.
pub const AMD_KIND: &str = "amd.com/gpu";
/// Annotation prefix of CDI device requests (CRI form).
pub const CDI_ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("{var}={value:?}: {id:?} is not a GPU index, UUID or MIG name; use e.g. 0,1 or GPU-<uuid> or 0:1, or all/none")]
    BadId {
        var: &'static str,
        value: String,
        id: String,
    },
    #[error("annotation {key}={value:?}: {name:?} is not a qualified CDI device name (vendor.com/class=name): {why}")]
    BadCdiName {
        key: String,
        value: String,
        name: String,
        why: String,
    },
}

/// The container's request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Qualified CDI device names, in request order, without duplicates.
    pub devices: Vec<String>,
    /// True when NVIDIA GPUs were requested through the environment.
    pub nvidia_env: bool,
    /// Driver capabilities selecting NVIDIA libraries and binaries.
    pub caps: Caps,
    /// `NVIDIA_REQUIRE_CUDA`, when set and not disabled.
    pub require_cuda: Option<String>,
    /// Where each part came from, for the log.
    pub sources: Vec<String>,
}

impl Request {
    /// True when nothing is requested.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The CDI kinds requested (`nvidia.com/gpu`, ...).
    pub fn kinds(&self) -> BTreeSet<String> {
        self.devices
            .iter()
            .filter_map(|d| d.split_once('=').map(|(k, _)| k.to_string()))
            .collect()
    }
}

/// Last value of `key` in an OCI `process.env` list (later entries win, as in execve).
pub fn env_get<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// True for characters of CDI device names (`[A-Za-z0-9_.:-]`).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.as_bytes()[id.len() - 1].is_ascii_alphanumeric()
}

/// Device ids of a `*_VISIBLE_DEVICES` value: `None` for nothing (unset, empty, `void`,
/// `none`), `["all"]` for all, else the list.
pub fn parse_visible(var: &'static str, value: &str) -> Result<Vec<String>, RequestError> {
    let v = value.trim();
    if v.is_empty() || v == "void" || v == "none" {
        return Ok(Vec::new());
    }
    if v == "all" {
        return Ok(vec!["all".to_string()]);
    }
    let mut out = Vec::new();
    for id in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !valid_id(id) {
            return Err(RequestError::BadId {
                var,
                value: value.to_string(),
                id: id.to_string(),
            });
        }
        out.push(id.to_string());
    }
    Ok(out)
}

/// Reads the request from the container's env and annotations.
pub fn from_config(
    env: &[String],
    annotations: &HashMap<String, String>,
) -> Result<Request, RequestError> {
    let mut r = Request::default();
    let push = |r: &mut Request, name: String| {
        if !r.devices.contains(&name) {
            r.devices.push(name);
        }
    };
    let (var, nv) = match env_get(env, "NVIDIA_VISIBLE_DEVICES") {
        Some(v) => ("NVIDIA_VISIBLE_DEVICES", Some(v)),
        None => ("CUDA_VISIBLE_DEVICES", env_get(env, "CUDA_VISIBLE_DEVICES")),
    };
    if let Some(v) = nv {
        let ids = parse_visible(var, v)?;
        if !ids.is_empty() {
            r.nvidia_env = true;
            r.sources.push(format!("{var}={v}"));
        }
        for id in ids {
            push(&mut r, format!("{NVIDIA_KIND}={id}"));
        }
    }
    if let Some(v) = env_get(env, "ROCR_VISIBLE_DEVICES") {
        let ids = parse_visible("ROCR_VISIBLE_DEVICES", v)?;
        if !ids.is_empty() {
            r.sources.push(format!("ROCR_VISIBLE_DEVICES={v}"));
        }
        for id in ids {
            push(&mut r, format!("{AMD_KIND}={id}"));
        }
    }
    let mut keys: Vec<&String> = annotations
        .keys()
        .filter(|k| k.starts_with(CDI_ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    for key in keys {
        let value = &annotations[key];
        for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Err(e) = cdi_specs::parse_qualified_name(name) {
                return Err(RequestError::BadCdiName {
                    key: key.clone(),
                    value: value.clone(),
                    name: name.to_string(),
                    why: e.to_string(),
                });
            }
            push(&mut r, name.to_string());
        }
        r.sources.push(format!("annotation {key}={value}"));
    }
    // Without the env request (CDI names only), every capability: the spec's full edits.
    r.caps = match env_get(env, "NVIDIA_DRIVER_CAPABILITIES") {
        Some(v) => Caps::parse(v),
        None if r.nvidia_env => Caps::default_env(),
        None => Caps::all(),
    };
    let disabled = env_get(env, "NVIDIA_DISABLE_REQUIRE")
        .is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
    r.require_cuda = env_get(env, "NVIDIA_REQUIRE_CUDA")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && !disabled);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn visible_devices() {
        let r = from_config(
            &env(&["NVIDIA_VISIBLE_DEVICES=0,GPU-abc, 1:0"]),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(
            r.devices,
            [
                "nvidia.com/gpu=0",
                "nvidia.com/gpu=GPU-abc",
                "nvidia.com/gpu=1:0"
            ]
        );
        for nothing in ["", "none", "void", " "] {
            let r = from_config(
                &env(&[&format!("NVIDIA_VISIBLE_DEVICES={nothing}")]),
                &HashMap::new(),
            )
            .unwrap();
            assert!(r.is_empty(), "{nothing:?}");
        }
        assert!(from_config(&env(&["PATH=/bin"]), &HashMap::new())
            .unwrap()
            .is_empty());
        let r = from_config(&env(&["NVIDIA_VISIBLE_DEVICES=all"]), &HashMap::new()).unwrap();
        assert_eq!(r.devices, ["nvidia.com/gpu=all"]);
        // NVIDIA_VISIBLE_DEVICES wins over CUDA_VISIBLE_DEVICES; later entries win.
        let r = from_config(
            &env(&[
                "CUDA_VISIBLE_DEVICES=1",
                "NVIDIA_VISIBLE_DEVICES=0",
                "NVIDIA_VISIBLE_DEVICES=2",
            ]),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(r.devices, ["nvidia.com/gpu=2"]);
        let r = from_config(&env(&["CUDA_VISIBLE_DEVICES=1"]), &HashMap::new()).unwrap();
        assert_eq!(r.devices, ["nvidia.com/gpu=1"]);
        let e = from_config(&env(&["NVIDIA_VISIBLE_DEVICES=0,../x"]), &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("\"../x\""), "{e}");
    }

    #[test]
    fn amd_and_annotations() {
        let a = HashMap::from([(
            "cdi.k8s.io/x_1".to_string(),
            "vendor.com/dev=a,vendor.com/dev=b".to_string(),
        )]);
        let r = from_config(&env(&["ROCR_VISIBLE_DEVICES=0"]), &a).unwrap();
        assert_eq!(
            r.devices,
            ["amd.com/gpu=0", "vendor.com/dev=a", "vendor.com/dev=b"]
        );
        assert_eq!(r.caps, Caps::all());
        let bad = HashMap::from([("cdi.k8s.io/x".to_string(), "nope".to_string())]);
        assert!(from_config(&[], &bad).is_err());
    }

    #[test]
    fn require() {
        let r = from_config(
            &env(&["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>=12.4"]),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(r.require_cuda.as_deref(), Some("cuda>=12.4"));
        let r = from_config(
            &env(&[
                "NVIDIA_VISIBLE_DEVICES=0",
                "NVIDIA_REQUIRE_CUDA=cuda>=12.4",
                "NVIDIA_DISABLE_REQUIRE=1",
            ]),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(r.require_cuda, None);
    }
}
