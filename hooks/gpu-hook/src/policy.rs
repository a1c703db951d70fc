//! Who may ask gpu-hook for GPUs: the admin's request policy (environment requests by
//! privilege, `cdi.k8s.io/*` annotations on or off, allowed CDI kinds) and the privilege
//! test. The policy comes from the hook's command line only, never from its environment.

use oci_spec::runtime::{Capability, Spec};

use crate::request::{AMD_KIND, NVIDIA_KIND};

/// Which containers may request GPUs through `NVIDIA_VISIBLE_DEVICES` /
/// `ROCR_VISIBLE_DEVICES` in their environment (`--env-requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EnvRequests {
    /// No container: GPUs only through CDI (annotations, when allowed, or the engine).
    Never,
    /// Privileged containers only: CAP_SYS_ADMIN in the bounding capability set.
    #[default]
    Privileged,
    /// Every container, including images that set NVIDIA_VISIBLE_DEVICES=all in their
    /// ENV (CUDA base images do).
    Always,
}

impl EnvRequests {
    /// The value as written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EnvRequests::Never => "never",
            EnvRequests::Privileged => "privileged",
            EnvRequests::Always => "always",
        }
    }

    /// True when a container with this privilege may request through its environment.
    pub fn allows(self, privileged: bool) -> bool {
        match self {
            EnvRequests::Never => false,
            EnvRequests::Privileged => privileged,
            EnvRequests::Always => true,
        }
    }
}

/// Whether `cdi.k8s.io/*` annotations are applied by the hook (`--cdi-annotations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CdiAnnotations {
    /// Ignored: a CDI-aware engine applies (and may refuse) them itself.
    #[default]
    Off,
    /// Applied by the hook, for the kinds in --allow-kinds.
    On,
}

/// The CDI kinds allowed when `--allow-kinds` is not given: those cdi-gen generates.
pub const DEFAULT_KINDS: [&str; 2] = [NVIDIA_KIND, AMD_KIND];

/// The admin's request policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub env_requests: EnvRequests,
    pub cdi_annotations: CdiAnnotations,
    /// CDI kinds (`vendor/class`) any request may name.
    pub allow_kinds: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            env_requests: EnvRequests::default(),
            cdi_annotations: CdiAnnotations::default(),
            allow_kinds: DEFAULT_KINDS.iter().map(|k| k.to_string()).collect(),
        }
    }
}

impl Policy {
    /// True when devices of `kind` may be given.
    pub fn kind_allowed(&self, kind: &str) -> bool {
        self.allow_kinds.iter().any(|k| k == kind)
    }
}

/// True when the container is privileged the way nvidia-container-toolkit decides it:
/// its bounding capability set holds CAP_SYS_ADMIN (`--privileged`). No capabilities in
/// config.json means none, so not privileged.
pub fn is_privileged(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|b| b.contains(&Capability::SysAdmin))
}

/// clap value parser of `--allow-kinds` entries: a valid CDI kind `vendor.com/class`.
pub fn parse_kind_arg(s: &str) -> Result<String, String> {
    let s = s.trim();
    cdi_specs::names::parse_kind(s)
        .map(|_| s.to_string())
        .map_err(|e| {
            format!("{s:?} is not a CDI kind (vendor.com/class, e.g. nvidia.com/gpu): {e}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config.json with `process.capabilities` as given (None: no capabilities object).
    fn spec(caps: Option<serde_json::Value>) -> Spec {
        let mut process =
            serde_json::json!({ "cwd": "/", "args": ["sh"], "user": { "uid": 0, "gid": 0 } });
        if let Some(c) = caps {
            process["capabilities"] = c;
        }
        serde_json::from_value(serde_json::json!({ "ociVersion": "1.0.2", "process": process }))
            .unwrap()
    }

    fn bounding(caps: &[&str]) -> Spec {
        spec(Some(
            serde_json::json!({ "bounding": caps, "effective": caps, "permitted": caps }),
        ))
    }

    #[test]
    fn privileged_is_cap_sys_admin_in_bounding() {
        assert!(is_privileged(&bounding(&["CAP_KILL", "CAP_SYS_ADMIN"])));
        // runc spec's default set: not privileged.
        assert!(!is_privileged(&bounding(&[
            "CAP_AUDIT_WRITE",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE"
        ])));
        assert!(!is_privileged(&bounding(&[])));
        // No capabilities object: no capabilities, not privileged.
        assert!(!is_privileged(&spec(None)));
        let mut s = spec(None);
        s.set_process(None);
        assert!(!is_privileged(&s));
        // CAP_SYS_ADMIN only in the effective set, not the bounding set: not privileged.
        let s = spec(Some(serde_json::json!({
            "bounding": ["CAP_KILL"],
            "effective": ["CAP_SYS_ADMIN"]
        })));
        assert!(!is_privileged(&s));
    }

    #[test]
    fn env_request_modes() {
        assert!(!EnvRequests::Never.allows(true));
        assert!(!EnvRequests::Never.allows(false));
        assert!(EnvRequests::Privileged.allows(true));
        assert!(!EnvRequests::Privileged.allows(false));
        assert!(EnvRequests::Always.allows(false));
        assert_eq!(EnvRequests::default(), EnvRequests::Privileged);
        assert_eq!(CdiAnnotations::default(), CdiAnnotations::Off);
    }

    #[test]
    fn kinds() {
        let p = Policy::default();
        assert!(p.kind_allowed("nvidia.com/gpu") && p.kind_allowed("amd.com/gpu"));
        assert!(!p.kind_allowed("vendor.com/dev"));
        assert!(!p.kind_allowed("nvidia.com/gp"));
        assert_eq!(parse_kind_arg(" nvidia.com/gpu").unwrap(), "nvidia.com/gpu");
        let e = parse_kind_arg("nvidia.com").unwrap_err();
        assert!(e.contains("\"nvidia.com\" is not a CDI kind"), "{e}");
        assert!(parse_kind_arg("nvidia.com/gpu=0").is_err());
    }
}
