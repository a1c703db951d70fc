//! CDI devices for a rank (`--device vendor/class=name`): in runc mode the devices'
//! container edits, from admin-written CDI specs, are applied to config.json by
//! cdi-specs' config.json engine ([`cdi_specs::apply_devices`]); podman resolves them itself.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cdi_specs::{ApplyError, Registry};

/// The spec directories engines read when `--cdi-spec-dir` is not given, lowest priority first.
pub use cdi_specs::registry::DEFAULT_SPEC_DIRS;

/// The command that makes a spec, for messages.
const GENERATE_HINT: &str =
    "generate a spec as root with `cdi-gen --output /etc/cdi/nvidia.yaml` (cdi-gen --help), \
     or request one of the available devices";

/// Errors of `--device` and `--cdi-spec-dir`.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// `--device` value that is not a qualified CDI name (clap reports it as a usage error).
    #[error("{0}; --device takes vendor/class=name, e.g. nvidia.com/gpu=0 or nvidia.com/gpu=all")]
    BadName(#[from] cdi_specs::NameError),
    /// A spec directory, or a spec file, a user other than root could write.
    #[error(
        "CDI spec {what} {path} is not trusted: {why}; hpc-rank runs as root, and whoever can \
         write a spec can give the rank any host device node and run hooks as root: make it \
         and every directory above it owned by root and not group- or world-writable \
         (chown root:root, chmod go-w), or name a trusted directory with --cdi-spec-dir"
    )]
    Untrusted {
        /// `directory` or `file`.
        what: &'static str,
        /// The path as given or found.
        path: String,
        /// What is wrong with which component.
        why: String,
    },
    /// Requested devices that no loaded spec provides.
    #[error(
        "unknown CDI device{plural} {names} ({why}); available in {dirs}: {available}{problems}; \
         {GENERATE_HINT}",
        plural = if .names.len() > 1 { "s" } else { "" },
        names = .names.join(", "),
        why = .why.join("; "),
    )]
    Unknown {
        /// The requested names that do not resolve, in request order.
        names: Vec<String>,
        /// Why each does not resolve.
        why: Vec<String>,
        /// The spec directories, for the message.
        dirs: String,
        /// The devices that do resolve, comma-separated, or `none`.
        available: String,
        /// `; specs that did not load: ...`, or empty.
        problems: String,
    },
    /// The engine refused an edit (a host device node missing, a type mismatch, ...).
    #[error("cannot add the CDI devices to config.json: {0}")]
    Apply(#[source] ApplyError),
    /// config.json did not convert to and from the OCI model (a bug).
    #[error(
        "config.json does not convert to the OCI runtime model to add CDI devices ({0}); \
         this is a bug in hpc-rank: report it, and run without --device meanwhile"
    )]
    Oci(String),
    /// `--cdi-spec-dir` in podman mode.
    #[error(
        "--cdi-spec-dir is for --runtime runc: podman resolves --device from its own CDI spec \
         directories (cdi_spec_dirs in containers.conf); leave --cdi-spec-dir out"
    )]
    SpecDirWithPodman,
}

/// A `--device` value: a qualified CDI device name (clap value parser).
pub fn parse_device(s: &str) -> Result<String, DeviceError> {
    cdi_specs::parse_qualified_name(s)?;
    Ok(s.to_string())
}

/// The spec directories: `--cdi-spec-dir` values when given, else [`DEFAULT_SPEC_DIRS`].
pub fn spec_dirs(given: &[PathBuf]) -> Vec<PathBuf> {
    if given.is_empty() {
        DEFAULT_SPEC_DIRS.iter().map(PathBuf::from).collect()
    } else {
        given.to_vec()
    }
}

/// Why `path` (with its directories, symlinks resolved or not) could be written by someone
/// other than root; `Ok(false)` when it does not exist. Every component must be owned by
/// root and not group- or world-writable; a directory above it may be world-writable
/// when it is sticky (/tmp: others cannot rename or remove root's entries). Symlinks
/// count by their owner and are then followed, and the resolved path is checked too.
fn check_trusted(path: &Path, what: &'static str) -> Result<bool, DeviceError> {
    let untrusted = |why: String| DeviceError::Untrusted {
        what,
        path: path.display().to_string(),
        why,
    };
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| untrusted(format!("cannot resolve the relative path: {e}")))?
            .join(path)
    };
    let real = match abs.canonicalize() {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(untrusted(format!("cannot resolve it: {e}"))),
    };
    for p in [&abs, &real] {
        let chain: Vec<&Path> = p.ancestors().collect();
        for (i, a) in chain.iter().rev().enumerate() {
            let last = i + 1 == chain.len();
            let m = match std::fs::symlink_metadata(a) {
                Ok(m) => m,
                // `..` components of the lexical path: checked through the resolved one.
                Err(_) if p == &abs => continue,
                Err(e) => return Err(untrusted(format!("{}: {e}", a.display()))),
            };
            let sticky_dir = m.is_dir() && m.mode() & libc::S_ISVTX != 0 && !last;
            let mode = if m.file_type().is_symlink() || sticky_dir {
                0
            } else {
                m.mode()
            };
            if let Some(why) = crate::privilege::untrusted_why(m.uid(), mode) {
                return Err(untrusted(format!("{}: {why}", a.display())));
            }
        }
    }
    let m = std::fs::metadata(&real).map_err(|e| untrusted(e.to_string()))?;
    let kind_ok = if what == "directory" {
        m.is_dir()
    } else {
        m.is_file()
    };
    if !kind_ok {
        return Err(untrusted(format!("not a {what}")));
    }
    Ok(true)
}

/// The devices' registry: the spec directories, checked when `privileged` (hpc-rank
/// runs as root and the specs bring device nodes and root hooks), loaded, and every
/// requested device resolved; the specs providing them are checked too.
pub fn load(
    dirs: &[PathBuf],
    devices: &[String],
    privileged: bool,
) -> Result<Registry, DeviceError> {
    let mut read = Vec::new();
    for d in dirs {
        // A missing directory is skipped (as engines do) and never read, so that one
        // created after this check is not read either.
        if !privileged || check_trusted(d, "directory")? {
            read.push(d.clone());
        }
    }
    let registry = Registry::load(&read);
    let mut unknown = Vec::new();
    let mut why = Vec::new();
    for name in devices {
        match registry.resolve(name) {
            Ok(r) => {
                if privileged {
                    check_trusted(&r.spec.path, "file")?;
                }
            }
            Err(e) => {
                let reason = if registry.conflicts().any(|c| c == name) {
                    format!("{name}: defined twice at the same priority, so dropped; keep one definition")
                } else if matches!(e, cdi_specs::RegistryError::BadName { .. }) {
                    e.to_string()
                } else {
                    format!("{name}: no spec defines it")
                };
                unknown.push(name.clone());
                why.push(reason);
            }
        }
    }
    if unknown.is_empty() {
        return Ok(registry);
    }
    let available: Vec<&str> = registry.device_names().collect();
    let problems: Vec<String> = registry.errors().iter().map(|e| e.to_string()).collect();
    Err(DeviceError::Unknown {
        names: unknown,
        why,
        dirs: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        available: if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        },
        problems: if problems.is_empty() {
            String::new()
        } else {
            format!("; specs that did not load: {}", problems.join("; "))
        },
    })
}

/// Applies `devices` (resolved by [`load`]) to the runc `config` (JSON): device nodes with
/// their cgroup rules, mounts, env, hooks, as CDI engines do. All or nothing.
pub fn apply(
    config: &mut serde_json::Value,
    registry: &Registry,
    devices: &[String],
) -> Result<(), DeviceError> {
    if devices.is_empty() {
        return Ok(());
    }
    let mut oci: oci_spec::runtime::Spec =
        serde_json::from_value(config.clone()).map_err(|e| DeviceError::Oci(e.to_string()))?;
    cdi_specs::apply_devices(&mut oci, registry, devices).map_err(DeviceError::Apply)?;
    *config = serde_json::to_value(&oci).map_err(|e| DeviceError::Oci(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn device_names_are_validated() {
        assert_eq!(
            parse_device("nvidia.com/gpu=0").unwrap(),
            "nvidia.com/gpu=0"
        );
        assert_eq!(
            parse_device("vendor.com/class=all").unwrap(),
            "vendor.com/class=all"
        );
        let e = parse_device("nvidia.com/gpu").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid qualified device name \"nvidia.com/gpu\": expected vendor/class=name, e.g. \
             nvidia.com/gpu=0; --device takes vendor/class=name, e.g. nvidia.com/gpu=0 or \
             nvidia.com/gpu=all"
        );
        assert!(parse_device("nvidia.com/gpu=-0")
            .unwrap_err()
            .to_string()
            .starts_with("invalid device name \"-0\""));
        assert!(parse_device("=0").is_err());
    }

    #[test]
    fn spec_dirs_default_to_the_engines() {
        assert_eq!(
            spec_dirs(&[]),
            vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")]
        );
        assert_eq!(spec_dirs(&["/x".into()]), vec![PathBuf::from("/x")]);
    }

    const SPEC: &str = r#"{"cdiVersion":"0.5.0","kind":"vendor.com/class",
        "devices":[{"name":"null","containerEdits":{"deviceNodes":[{"path":"/dev/xnull","hostPath":"/dev/null"}]}},
                   {"name":"zero","containerEdits":{"deviceNodes":[{"path":"/dev/zero","permissions":"r"}]}}],
        "containerEdits":{"env":["VENDOR=1"],
          "mounts":[{"hostPath":"/etc/hostname","containerPath":"/etc/vendor","options":["ro","bind"]}],
          "hooks":[{"hookName":"createContainer","path":"/usr/bin/vendor-hook","args":["vendor-hook","x"]}]}}"#;

    /// A root-owned 0755 spec directory holding [`SPEC`].
    fn spec_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.path().join("vendor.json"), SPEC).unwrap();
        d
    }

    fn base_config() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0, "additionalGids": [0]},
                        "args": ["/bin/true"], "env": ["PATH=/bin", "VENDOR=0"], "cwd": "/",
                        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                         "permitted": ["CAP_KILL"]},
                        "noNewPrivileges": true},
            "root": {"path": "/r", "readonly": false},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                       {"destination": "/etc/hosts", "type": "bind", "source": "/h",
                        "options": ["rbind", "nosuid", "nodev", "ro"]}],
            "annotations": {"com.hooks.mpi.enabled": "true"},
            "hooks": {"createRuntime": [{"path": "/usr/bin/mpi-hook", "args": ["mpi-hook"]}]},
            "linux": {"namespaces": [{"type": "mount"}], "cgroupsPath": "hpc-rank/x",
                      "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}
        })
    }

    #[test]
    fn no_device_leaves_config_json_as_it_is() {
        let reg = Registry::default();
        let mut c = base_config();
        apply(&mut c, &reg, &[]).unwrap();
        assert_eq!(c, base_config());
    }

    #[test]
    fn devices_edit_config_json_and_keep_the_rest() {
        let d = spec_dir();
        let names = vec![
            "vendor.com/class=null".to_string(),
            "vendor.com/class=zero".to_string(),
        ];
        let reg = load(&[d.path().to_path_buf()], &names, false).unwrap();
        let mut c = base_config();
        apply(&mut c, &reg, &names).unwrap();
        // The edits, as CDI engines make them: host type/major/minor filled in.
        assert_eq!(
            c["linux"]["devices"],
            serde_json::json!([
                {"path": "/dev/xnull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666},
                {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666}
            ])
        );
        assert_eq!(
            c["linux"]["resources"]["devices"],
            serde_json::json!([
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}
            ])
        );
        assert_eq!(
            c["process"]["env"],
            serde_json::json!(["PATH=/bin", "VENDOR=1"])
        );
        assert_eq!(
            c["mounts"][2],
            serde_json::json!({"destination": "/etc/vendor", "source": "/etc/hostname",
                               "options": ["ro", "bind"]})
        );
        assert_eq!(
            c["hooks"]["createContainer"],
            serde_json::json!([{"path": "/usr/bin/vendor-hook", "args": ["vendor-hook", "x"]}])
        );
        // Everything hpc-rank wrote is still there.
        let mut rest = c.clone();
        for k in ["devices", "resources"] {
            rest["linux"].as_object_mut().unwrap().remove(k);
        }
        rest["hooks"]
            .as_object_mut()
            .unwrap()
            .remove("createContainer");
        rest["mounts"].as_array_mut().unwrap().remove(2);
        rest["process"]["env"] = base_config()["process"]["env"].clone();
        assert_eq!(rest, base_config());
    }

    #[test]
    fn unknown_devices_list_the_available_ones() {
        let d = spec_dir();
        std::fs::write(d.path().join("broken.yaml"), "cdiVersion: [").unwrap();
        let names = vec![
            "vendor.com/class=null".to_string(),
            "vendor.com/class=7".to_string(),
            "other.com/x=0".to_string(),
        ];
        let e = load(&[d.path().to_path_buf()], &names, false)
            .unwrap_err()
            .to_string();
        let dir = d.path().display();
        assert!(
            e.starts_with(&format!(
                "unknown CDI devices vendor.com/class=7, other.com/x=0 (vendor.com/class=7: no \
                 spec defines it; other.com/x=0: no spec defines it); available in {dir}: \
                 vendor.com/class=null, vendor.com/class=zero; specs that did not load: {dir}/broken.yaml"
            )),
            "{e}"
        );
        assert!(e.ends_with(&format!("; {GENERATE_HINT}")), "{e}");
        let e = load(&["/nonexistent/cdi".into()], &names[1..2], false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "unknown CDI device vendor.com/class=7 (vendor.com/class=7: no spec defines it); \
                 available in /nonexistent/cdi: none; {GENERATE_HINT}"
            )
        );
    }

    #[test]
    fn host_node_problems_name_the_device() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("v.yaml"),
            "cdiVersion: 0.5.0\nkind: v.com/c\ndevices:\n- name: gone\n  containerEdits:\n    \
             deviceNodes:\n    - path: /dev/gone\n      hostPath: /nonexistent/dev/gone\n",
        )
        .unwrap();
        let names = vec!["v.com/c=gone".to_string()];
        let reg = load(&[d.path().to_path_buf()], &names, false).unwrap();
        let mut c = base_config();
        let e = apply(&mut c, &reg, &names).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "cannot add the CDI devices to config.json: device \"v.com/c=gone\": deviceNodes \
                 /dev/gone: cannot stat host device /nonexistent/dev/gone"
            ),
            "{e}"
        );
        assert_eq!(c, base_config(), "nothing applied");
    }

    #[test]
    fn privileged_runs_refuse_specs_others_can_write() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test creates root- and user-owned files: run the unit tests as root");
        }
        let d = spec_dir();
        let names = vec!["vendor.com/class=null".to_string()];
        let dirs = [d.path().to_path_buf()];
        // Root-owned 0755 under the sticky /tmp: trusted.
        load(&dirs, &names, true).unwrap();
        let shown = d.path().display().to_string();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
        let e = load(&dirs, &names, true).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "CDI spec directory {shown} is not trusted: {shown}: mode 775 is group- or \
                 world-writable; hpc-rank runs as root"
            )),
            "{e}"
        );
        assert!(
            e.ends_with("or name a trusted directory with --cdi-spec-dir"),
            "{e}"
        );
        // Unprivileged, the user only chooses for themselves.
        load(&dirs, &names, false).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // A spec file a user owns (or may write) is refused.
        let spec = d.path().join("vendor.json");
        nix::unistd::chown(&spec, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let e = load(&dirs, &names, true).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "CDI spec file {shown}/vendor.json is not trusted: {shown}/vendor.json: owned by \
                 uid 65534, not root"
            )),
            "{e}"
        );
        nix::unistd::chown(&spec, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        std::fs::set_permissions(&spec, std::fs::Permissions::from_mode(0o646)).unwrap();
        assert!(load(&dirs, &names, true).is_err());
        std::fs::set_permissions(&spec, std::fs::Permissions::from_mode(0o644)).unwrap();
        // A directory owned by a user, and a symlink to a user's directory, are refused.
        let user_dir = d.path().join("user");
        std::fs::create_dir(&user_dir).unwrap();
        std::fs::set_permissions(&user_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        nix::unistd::chown(&user_dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let e = load(std::slice::from_ref(&user_dir), &names, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("owned by uid 65534, not root"), "{e}");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&user_dir, &link).unwrap();
        let e = load(&[link], &names, true).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534, not root"), "{e}");
        // A missing directory is skipped, not an error of its own.
        let e = load(&[d.path().join("missing")], &names, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("unknown CDI device vendor.com/class=null"),
            "{e}"
        );
    }
}
