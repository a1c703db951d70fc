//! What the container asks for, read from its config.json as data only: the
//! `NVIDIA_VISIBLE_DEVICES` / `ROCR_VISIBLE_DEVICES` entries of `process.env`, CDI names in
//! `cdi.k8s.io/*` annotations, `NVIDIA_DRIVER_CAPABILITIES`, `NVIDIA_REQUIRE_CUDA` and
//! `NVIDIA_DISABLE_REQUIRE`, filtered by the admin's [`Policy`]. `CUDA_VISIBLE_DEVICES` is
//! never a request: it numbers the GPUs a job already has, not the host's.

use std::collections::{BTreeSet, HashMap};

use crate::caps::Caps;
use crate::policy::{CdiAnnotations, EnvRequests, Policy};

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

/// The admin configuration file named in messages.
pub const CONFIG_FILE: &str = "/etc/hpc-hooks/hpc-hooks.conf";

/// A request the policy does not honour: left out of the [`Request`] and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// A `*_VISIBLE_DEVICES` request from a container `--env-requests` does not trust.
    Env {
        var: &'static str,
        value: String,
        mode: EnvRequests,
        privileged: bool,
    },
    /// A `cdi.k8s.io/*` annotation while `--cdi-annotations` is off.
    Annotation { key: String, value: String },
    /// A device of a kind not in `--allow-kinds`.
    Kind {
        name: String,
        from: String,
        allowed: Vec<String>,
    },
    /// `CUDA_VISIBLE_DEVICES`: ordinals relative to the GPUs the container already has.
    CudaVisible { value: String },
}

impl Ignored {
    /// True for refusals an admin or user must be able to find in the default (warn) log;
    /// false for the informational `CUDA_VISIBLE_DEVICES` note.
    pub fn is_warning(&self) -> bool {
        !matches!(self, Ignored::CudaVisible { .. })
    }
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ignored::Env {
                var,
                value,
                mode,
                privileged,
            } => {
                let who = match mode {
                    EnvRequests::Never => "from no container",
                    _ => "only from privileged containers (CAP_SYS_ADMIN in the bounding capability set)",
                };
                let this = if *privileged {
                    "privileged"
                } else {
                    "not privileged"
                };
                write!(
                    f,
                    "{var}={value:?} in the container environment ignored, the container gets no GPU from it: \
                     gpu-hook --env-requests {} takes GPU requests from the environment {who}, and this container is {this}. \
                     Request the GPUs through CDI instead (e.g. podman --device nvidia.com/gpu=0){}, or let every container \
                     request GPUs through its environment with gpu-hook --env-requests always \
                     (GPU_ENV_REQUESTS=always in {CONFIG_FILE}, then run hpc-hooks-configure)",
                    mode.as_str(),
                    if *mode == EnvRequests::Never {
                        ""
                    } else {
                        " or run the container privileged"
                    }
                )
            }
            Ignored::Annotation { key, value } => write!(
                f,
                "annotation {key}={value:?} ignored: gpu-hook applies cdi.k8s.io/* annotations only with \
                 --cdi-annotations on (default off: a CDI-aware engine applies them itself, and may have refused them). \
                 To have the hook apply them, set GPU_CDI_ANNOTATIONS=on in {CONFIG_FILE}, then run hpc-hooks-configure"
            ),
            Ignored::Kind {
                name,
                from,
                allowed,
            } => write!(
                f,
                "{name} (from {from}) ignored: the CDI kind {} is not in gpu-hook --allow-kinds ({}); \
                 add it to GPU_ALLOW_KINDS in {CONFIG_FILE}, then run hpc-hooks-configure",
                name.split_once('=').map_or(name.as_str(), |(k, _)| k),
                allowed.join(",")
            ),
            Ignored::CudaVisible { value } => write!(
                f,
                "CUDA_VISIBLE_DEVICES={value:?} ignored: it numbers the GPUs a job or engine already gave the \
                 container (Slurm sets it relative to the job's GPUs), not the host's GPUs, so gpu-hook never reads \
                 it as host indexes; request GPUs with NVIDIA_VISIBLE_DEVICES or CDI"
            ),
        }
    }
}

/// The request the policy honours, and what it left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub request: Request,
    pub ignored: Vec<Ignored>,
}

/// True for `*_VISIBLE_DEVICES` values that request nothing (empty, `void`, `none`).
fn requests_nothing(value: &str) -> bool {
    matches!(value.trim(), "" | "void" | "none")
}

/// Reads the request from the container's env and annotations, as `policy` allows for a
/// container that is (or is not) `privileged`. Values the policy ignores are not parsed,
/// so a malformed value in an ignored request cannot fail the container.
pub fn from_config(
    env: &[String],
    annotations: &HashMap<String, String>,
    policy: &Policy,
    privileged: bool,
) -> Result<Outcome, RequestError> {
    let mut r = Request::default();
    let mut ignored = Vec::new();
    // Adds `name` when its kind is allowed; returns true when added (or already there).
    let push = |r: &mut Request, ignored: &mut Vec<Ignored>, name: String, from: &str| {
        let kind = name.split_once('=').map_or(name.as_str(), |(k, _)| k);
        if !policy.kind_allowed(kind) {
            ignored.push(Ignored::Kind {
                name,
                from: from.to_string(),
                allowed: policy.allow_kinds.clone(),
            });
            return false;
        }
        if !r.devices.contains(&name) {
            r.devices.push(name);
        }
        true
    };
    let env_ok = policy.env_requests.allows(privileged);
    for (var, kind) in [
        ("NVIDIA_VISIBLE_DEVICES", NVIDIA_KIND),
        ("ROCR_VISIBLE_DEVICES", AMD_KIND),
    ] {
        let Some(v) = env_get(env, var) else {
            continue;
        };
        if requests_nothing(v) {
            continue;
        }
        if !env_ok {
            ignored.push(Ignored::Env {
                var,
                value: v.to_string(),
                mode: policy.env_requests,
                privileged,
            });
            continue;
        }
        let from = format!("{var}={v}");
        let mut any = false;
        for id in parse_visible(var, v)? {
            any |= push(&mut r, &mut ignored, format!("{kind}={id}"), &from);
        }
        if any {
            if kind == NVIDIA_KIND {
                r.nvidia_env = true;
            }
            r.sources.push(from);
        }
    }
    let mut keys: Vec<&String> = annotations
        .keys()
        .filter(|k| k.starts_with(CDI_ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    for key in keys {
        let value = &annotations[key];
        if policy.cdi_annotations == CdiAnnotations::Off {
            ignored.push(Ignored::Annotation {
                key: key.clone(),
                value: value.clone(),
            });
            continue;
        }
        let from = format!("annotation {key}={value}");
        let mut any = false;
        for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Err(e) = cdi_specs::parse_qualified_name(name) {
                return Err(RequestError::BadCdiName {
                    key: key.clone(),
                    value: value.clone(),
                    name: name.to_string(),
                    why: e.to_string(),
                });
            }
            any |= push(&mut r, &mut ignored, name.to_string(), &from);
        }
        if any {
            r.sources.push(from);
        }
    }
    if r.devices.is_empty() {
        if let Some(v) = env_get(env, "CUDA_VISIBLE_DEVICES").filter(|v| !requests_nothing(v)) {
            ignored.push(Ignored::CudaVisible {
                value: v.to_string(),
            });
        }
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
    Ok(Outcome {
        request: r,
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Everything honoured: env requests from any container, annotations on.
    fn open() -> Policy {
        Policy {
            env_requests: EnvRequests::Always,
            cdi_annotations: CdiAnnotations::On,
            ..Policy::default()
        }
    }

    /// The request under the open policy, for an unprivileged container.
    fn req(e: &[&str], a: &HashMap<String, String>) -> Result<Request, RequestError> {
        from_config(&env(e), a, &open(), false).map(|o| o.request)
    }

    #[test]
    fn visible_devices() {
        let r = req(&["NVIDIA_VISIBLE_DEVICES=0,GPU-abc, 1:0"], &HashMap::new()).unwrap();
        assert_eq!(
            r.devices,
            [
                "nvidia.com/gpu=0",
                "nvidia.com/gpu=GPU-abc",
                "nvidia.com/gpu=1:0"
            ]
        );
        assert!(r.nvidia_env);
        for nothing in ["", "none", "void", " "] {
            let o = from_config(
                &env(&[&format!("NVIDIA_VISIBLE_DEVICES={nothing}")]),
                &HashMap::new(),
                &Policy::default(),
                false,
            )
            .unwrap();
            assert!(o.request.is_empty(), "{nothing:?}");
            // Requesting nothing is not a refused request.
            assert!(o.ignored.is_empty(), "{nothing:?}: {:?}", o.ignored);
        }
        assert!(req(&["PATH=/bin"], &HashMap::new()).unwrap().is_empty());
        let r = req(&["NVIDIA_VISIBLE_DEVICES=all"], &HashMap::new()).unwrap();
        assert_eq!(r.devices, ["nvidia.com/gpu=all"]);
        // Later entries win; CUDA_VISIBLE_DEVICES is not a request.
        let r = req(
            &[
                "CUDA_VISIBLE_DEVICES=1",
                "NVIDIA_VISIBLE_DEVICES=0",
                "NVIDIA_VISIBLE_DEVICES=2",
            ],
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(r.devices, ["nvidia.com/gpu=2"]);
        let e = req(&["NVIDIA_VISIBLE_DEVICES=0,../x"], &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("\"../x\""), "{e}");
    }

    #[test]
    fn cuda_visible_devices_is_never_a_host_index() {
        for policy in [open(), Policy::default()] {
            for privileged in [false, true] {
                let o = from_config(
                    &env(&["CUDA_VISIBLE_DEVICES=1"]),
                    &HashMap::new(),
                    &policy,
                    privileged,
                )
                .unwrap();
                assert!(o.request.is_empty(), "{policy:?} {privileged}");
                assert_eq!(
                    o.ignored,
                    [Ignored::CudaVisible { value: "1".into() }],
                    "{policy:?} {privileged}"
                );
                assert!(!o.ignored[0].is_warning());
                let msg = o.ignored[0].to_string();
                assert!(
                    msg.starts_with("CUDA_VISIBLE_DEVICES=\"1\" ignored:")
                        && msg.contains("not the host's GPUs"),
                    "{msg}"
                );
            }
        }
        // With another request, no note.
        let o = from_config(
            &env(&["CUDA_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=1"]),
            &HashMap::new(),
            &open(),
            false,
        )
        .unwrap();
        assert_eq!(o.request.devices, ["nvidia.com/gpu=1"]);
        assert!(o.ignored.is_empty());
    }

    #[test]
    fn env_requests_policy() {
        let e = env(&["NVIDIA_VISIBLE_DEVICES=all", "ROCR_VISIBLE_DEVICES=0"]);
        let none = HashMap::new();
        let default = Policy::default();
        // Default (privileged): an unprivileged container gets nothing, two clear refusals.
        let o = from_config(&e, &none, &default, false).unwrap();
        assert!(o.request.is_empty());
        assert_eq!(o.ignored.len(), 2, "{:?}", o.ignored);
        assert!(o.ignored.iter().all(Ignored::is_warning));
        let msg = o.ignored[0].to_string();
        assert!(
            msg.starts_with("NVIDIA_VISIBLE_DEVICES=\"all\" in the container environment ignored")
                && msg.contains("gpu-hook --env-requests privileged")
                && msg.contains("this container is not privileged")
                && msg.contains("--env-requests always")
                && msg.contains("GPU_ENV_REQUESTS=always in /etc/hpc-hooks/hpc-hooks.conf"),
            "{msg}"
        );
        assert!(o.ignored[1]
            .to_string()
            .starts_with("ROCR_VISIBLE_DEVICES=\"0\""));
        // Default, privileged container: honoured.
        let o = from_config(&e, &none, &default, true).unwrap();
        assert_eq!(o.request.devices, ["nvidia.com/gpu=all", "amd.com/gpu=0"]);
        assert!(o.ignored.is_empty());
        // never: not even privileged.
        let never = Policy {
            env_requests: EnvRequests::Never,
            ..Policy::default()
        };
        let o = from_config(&e, &none, &never, true).unwrap();
        assert!(o.request.is_empty());
        let msg = o.ignored[0].to_string();
        assert!(
            msg.contains(
                "--env-requests never takes GPU requests from the environment from no container"
            ),
            "{msg}"
        );
        // always: any container.
        let always = Policy {
            env_requests: EnvRequests::Always,
            ..Policy::default()
        };
        let o = from_config(&e, &none, &always, false).unwrap();
        assert_eq!(o.request.devices, ["nvidia.com/gpu=all", "amd.com/gpu=0"]);
        // An ignored request is not parsed: a malformed value cannot fail the container.
        let o = from_config(
            &env(&["NVIDIA_VISIBLE_DEVICES=../x"]),
            &none,
            &default,
            false,
        )
        .unwrap();
        assert!(o.request.is_empty());
        assert_eq!(o.ignored.len(), 1);
    }

    #[test]
    fn annotations_policy() {
        let a = HashMap::from([("cdi.k8s.io/x_1".to_string(), "nvidia.com/gpu=0".to_string())]);
        // Default: off, whatever the privilege.
        for privileged in [false, true] {
            let o = from_config(&[], &a, &Policy::default(), privileged).unwrap();
            assert!(o.request.is_empty());
            let msg = o.ignored[0].to_string();
            assert!(
                msg.starts_with("annotation cdi.k8s.io/x_1=\"nvidia.com/gpu=0\" ignored")
                    && msg.contains("--cdi-annotations on")
                    && msg.contains("GPU_CDI_ANNOTATIONS=on"),
                "{msg}"
            );
        }
        // Off: a malformed annotation is not parsed either.
        let bad = HashMap::from([("cdi.k8s.io/x".to_string(), "nope".to_string())]);
        assert!(from_config(&[], &bad, &Policy::default(), false).is_ok());
        // On: applied for allowed kinds only.
        let a = HashMap::from([(
            "cdi.k8s.io/x_1".to_string(),
            "vendor.com/dev=a,nvidia.com/gpu=1".to_string(),
        )]);
        let o = from_config(&[], &a, &open(), false).unwrap();
        assert_eq!(o.request.devices, ["nvidia.com/gpu=1"]);
        assert_eq!(o.request.caps, Caps::all());
        let msg = o.ignored[0].to_string();
        assert_eq!(
            msg,
            "vendor.com/dev=a (from annotation cdi.k8s.io/x_1=vendor.com/dev=a,nvidia.com/gpu=1) ignored: \
             the CDI kind vendor.com/dev is not in gpu-hook --allow-kinds (nvidia.com/gpu,amd.com/gpu); \
             add it to GPU_ALLOW_KINDS in /etc/hpc-hooks/hpc-hooks.conf, then run hpc-hooks-configure"
        );
        let vendor = Policy {
            allow_kinds: vec!["vendor.com/dev".into(), "nvidia.com/gpu".into()],
            ..open()
        };
        let o = from_config(&env(&["ROCR_VISIBLE_DEVICES=0"]), &a, &vendor, false).unwrap();
        assert_eq!(o.request.devices, ["vendor.com/dev=a", "nvidia.com/gpu=1"]);
        // amd.com/gpu is not allowed here: the env request is refused by kind.
        assert!(
            o.ignored[0].to_string().starts_with(
                "amd.com/gpu=0 (from ROCR_VISIBLE_DEVICES=0) ignored: the CDI kind amd.com/gpu"
            ),
            "{:?}",
            o.ignored
        );
        assert!(from_config(&[], &bad, &open(), false).is_err());
    }

    #[test]
    fn require() {
        let r = req(
            &["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>=12.4"],
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(r.require_cuda.as_deref(), Some("cuda>=12.4"));
        let r = req(
            &[
                "NVIDIA_VISIBLE_DEVICES=0",
                "NVIDIA_REQUIRE_CUDA=cuda>=12.4",
                "NVIDIA_DISABLE_REQUIRE=1",
            ],
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(r.require_cuda, None);
    }
}
