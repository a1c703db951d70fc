//! The CDI hooks the engine carries out itself instead of running them:
//! `create-symlinks --link TARGET::LINK` and `update-ldcache --folder DIR` (gpu-hook's,
//! nvidia-cdi-hook's or `nvidia-ctk hook`'s), recognised by subcommand name.

use cdi_specs::types::Hook;

use super::EngineError;

/// A symlink to create: `link` (absolute container path) pointing at `target` (as given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    pub link: String,
}

/// Parses `TARGET::LINK`.
pub fn parse_link(s: &str) -> Result<Link, EngineError> {
    let (target, link) = s.split_once("::").ok_or_else(|| EngineError::Link {
        link: s.to_string(),
        message: "expected TARGET::LINK".into(),
    })?;
    if target.is_empty() || !link.starts_with('/') || link.contains('\0') || target.contains('\0') {
        return Err(EngineError::Link {
            link: s.to_string(),
            message: "TARGET must be non-empty and LINK an absolute container path".into(),
        });
    }
    Ok(Link {
        target: target.to_string(),
        link: link.to_string(),
    })
}

/// A hook a spec asks for that the engine knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownHook {
    CreateSymlinks(Vec<String>),
    UpdateLdcache(Vec<String>),
    /// Recognised but not interpreted: the gpu planner turns it into update-ldcache folders.
    EnableCudaCompat,
}

/// Recognises a known hook by the subcommand name in its args (after `args[0]`).
pub fn known_hook(h: &Hook) -> Option<KnownHook> {
    let pos = h.args.iter().skip(1).position(|a| {
        matches!(
            a.as_str(),
            "create-symlinks" | "update-ldcache" | "enable-cuda-compat"
        )
    })? + 1;
    let rest = &h.args[pos + 1..];
    let values = |flag: &str| -> Vec<String> {
        let mut v = Vec::new();
        let mut it = rest.iter();
        while let Some(a) = it.next() {
            if a == flag {
                if let Some(x) = it.next() {
                    v.push(x.clone());
                }
            } else if let Some(x) = a.strip_prefix(&format!("{flag}=")) {
                v.push(x.to_string());
            }
        }
        v
    };
    Some(match h.args[pos].as_str() {
        "create-symlinks" => KnownHook::CreateSymlinks(values("--link")),
        "update-ldcache" => KnownHook::UpdateLdcache(values("--folder")),
        _ => KnownHook::EnableCudaCompat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(args: &[&str]) -> Hook {
        Hook {
            hook_name: "createContainer".into(),
            path: "/usr/libexec/hpc-hooks/gpu-hook".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Hook::default()
        }
    }

    #[test]
    fn hooks_and_links() {
        let h = hook(&[
            "gpu-hook",
            "create-symlinks",
            "--link",
            "libcuda.so.1::/usr/lib/libcuda.so",
            "--link=a::/b",
        ]);
        assert_eq!(
            known_hook(&h),
            Some(KnownHook::CreateSymlinks(vec![
                "libcuda.so.1::/usr/lib/libcuda.so".into(),
                "a::/b".into()
            ]))
        );
        let h = hook(&[
            "nvidia-ctk",
            "hook",
            "update-ldcache",
            "--folder",
            "/usr/lib64",
        ]);
        assert_eq!(
            known_hook(&h),
            Some(KnownHook::UpdateLdcache(vec!["/usr/lib64".into()]))
        );
        assert_eq!(
            known_hook(&hook(&["gpu-hook", "enable-cuda-compat"])),
            Some(KnownHook::EnableCudaCompat)
        );
        assert_eq!(known_hook(&hook(&["x", "other"])), None);
        // The subcommand name as args[0] (the program) is not a subcommand.
        assert_eq!(known_hook(&hook(&["create-symlinks"])), None);
        assert!(parse_link("a::b").is_err());
        assert!(parse_link("nolink").is_err());
        assert_eq!(parse_link("../x::/dev/y").unwrap().target, "../x");
    }
}
