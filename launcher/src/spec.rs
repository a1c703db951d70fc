//! The rank's environment and the runc config.json (HPC container: host network, IPC,
//! PID and UTS namespaces like Sarus; only the mount namespace is private).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::hooksd::StagedHook;

/// Environment prefixes passed from the launcher to the rank: process management
/// (Slurm, PMI-1/2, PMIx, hydra, MPIR debugger interface) and MPI/fabric tuning.
pub const PASS_PREFIXES: &[&str] = &[
    "PMI_",
    "PMI2_",
    "PMIX_",
    "SLURM_",
    "MPIR_",
    "HYDRA_",
    "HYD_",
    "MPICH_",
    "MPIR_CVAR_",
    "FI_",
    "UCX_",
    "OMPI_",
    "I_MPI_",
];

/// Default PATH inside the container (the image's PATH is not known to runc).
pub const CONTAINER_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A `--env` entry that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error(
        "--env {0}: {0} is not set in hpc-rank's environment (--env NAME passes the \
         caller's value of NAME; give --env {0}=VALUE to set it)"
    )]
    Unset(String),
    #[error("--env {0:?}: expected KEY=VALUE or KEY, with a non-empty KEY without '\\0'")]
    BadName(String),
}

/// The `--env` entries as `KEY=VALUE`: `KEY=VALUE` is kept, `KEY` alone takes the value of
/// KEY in `host_env` (podman's `-e NAME` habit); a KEY that is unset there is an error,
/// never dropped.
pub fn resolve_env(
    entries: &[String],
    host_env: &BTreeMap<String, String>,
) -> Result<Vec<String>, EnvError> {
    entries
        .iter()
        .map(|e| {
            let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            if key.is_empty() || e.contains('\0') {
                return Err(EnvError::BadName(e.clone()));
            }
            if e.contains('=') {
                return Ok(e.clone());
            }
            host_env
                .get(key)
                .map(|v| format!("{key}={v}"))
                .ok_or_else(|| EnvError::Unset(key.to_string()))
        })
        .collect()
}

/// `K=V` entries of `host_env` passed to the rank, sorted; `PMI_FD` is rewritten to
/// `pmi_fd_in_container` when the rank gets the PMI socket.
pub fn rank_env(
    host_env: &BTreeMap<String, String>,
    extra: &[String],
    pmi_fd_in_container: Option<i32>,
) -> Vec<String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), CONTAINER_PATH[5..].to_string());
    env.insert("HOME".into(), "/".into());
    for (k, v) in host_env {
        if PASS_PREFIXES.iter().any(|p| k.starts_with(p)) {
            env.insert(k.clone(), v.clone());
        }
    }
    match pmi_fd_in_container {
        Some(fd) => {
            env.insert("PMI_FD".into(), fd.to_string());
        }
        None => {
            env.remove("PMI_FD");
        }
    }
    for kv in extra {
        if let Some((k, v)) = kv.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Contents for the container's /etc/hosts: the host's, plus the node name on
/// 127.0.1.1 when the host file does not list it (MPI and PMI resolve it).
pub fn hosts_file(host_hosts: &str, nodename: &str) -> String {
    let listed = host_hosts.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("");
        l.split_whitespace().skip(1).any(|n| n == nodename)
    });
    let mut s = host_hosts.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    if !listed && !nodename.is_empty() {
        s.push_str(&format!("127.0.1.1\t{nodename}\n"));
    }
    s
}

pub use hpc_rank::cli::UserBind;

/// Everything config.json depends on.
pub struct SpecInput<'a> {
    pub rootfs: &'a Path,
    pub args: &'a [String],
    pub env: Vec<String>,
    pub cwd: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub hosts_file: &'a Path,
    pub resolv_conf: Option<&'a Path>,
    pub binds: &'a [UserBind],
    pub annotations: &'a BTreeMap<String, String>,
    pub hooks: &'a [StagedHook],
    pub cgroups_path: String,
}

fn bind(src: &Path, dst: &str, ro: bool) -> Value {
    let mut o = vec!["rbind", "nosuid", "nodev"];
    if ro {
        o.push("ro");
    }
    json!({"destination": dst, "type": "bind", "source": src, "options": o})
}

/// The runc config.json.
pub fn config_json(i: &SpecInput) -> Value {
    let caps: Vec<&str> = if i.uid == 0 {
        vec!["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    } else {
        Vec::new()
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        // Shared with the host and the other ranks: MPI's intra-node shared memory.
        bind(Path::new("/dev/shm"), "/dev/shm", false),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        bind(i.hosts_file, "/etc/hosts", true),
    ];
    if let Some(r) = i.resolv_conf {
        mounts.push(bind(r, "/etc/resolv.conf", true));
    }
    for b in i.binds {
        mounts.push(bind(&b.src, &b.dst, b.readonly));
    }
    let mut hooks = serde_json::Map::new();
    for h in i.hooks {
        hooks
            .entry(h.stage.clone())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("array")
            .push(h.hook.clone());
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": i.uid, "gid": i.gid, "additionalGids": i.groups},
            "args": i.args,
            "env": i.env,
            "cwd": i.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true,
        },
        "root": {"path": i.rootfs, "readonly": false},
        "mounts": mounts,
        "annotations": i.annotations,
        "hooks": hooks,
        "linux": {
            // Only a private mount namespace: host network (PMI_PORT, fabrics), IPC and
            // PID (shared memory and CMA between ranks), UTS (node name).
            "namespaces": [{"type": "mount"}],
            "cgroupsPath": i.cgroups_path,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_passes_pmi_and_slurm_and_moves_pmi_fd() {
        let host: BTreeMap<String, String> = [
            ("PMI_FD", "11"),
            ("PMI_RANK", "1"),
            ("SLURM_JOB_ID", "7"),
            ("HOME", "/root"),
            ("LD_PRELOAD", "/evil.so"),
            ("PMIX_SERVER_TMPDIR", "/var/spool/slurmd/pmix.7.0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let e = rank_env(&host, &["FOO=bar".into()], Some(3));
        assert!(e.contains(&"PMI_FD=3".to_string()));
        assert!(e.contains(&"PMI_RANK=1".to_string()));
        assert!(e.contains(&"SLURM_JOB_ID=7".to_string()));
        assert!(e.contains(&"PMIX_SERVER_TMPDIR=/var/spool/slurmd/pmix.7.0".to_string()));
        assert!(e.contains(&"FOO=bar".to_string()));
        assert!(e.contains(&"HOME=/".to_string()));
        assert!(!e.iter().any(|x| x.starts_with("LD_PRELOAD")));
        let e = rank_env(&host, &[], None);
        assert!(!e.iter().any(|x| x.starts_with("PMI_FD")));
    }

    #[test]
    fn env_name_alone_takes_the_host_value_or_fails() {
        let host: BTreeMap<String, String> = [("FOO", "from host"), ("EMPTY", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            resolve_env(
                &["FOO".into(), "BAR=1".into(), "EMPTY".into(), "X=a=b".into()],
                &host
            ),
            Ok(vec![
                "FOO=from host".to_string(),
                "BAR=1".to_string(),
                "EMPTY=".to_string(),
                "X=a=b".to_string()
            ])
        );
        let e = resolve_env(&["NOPE".into()], &host).unwrap_err();
        assert_eq!(e, EnvError::Unset("NOPE".into()));
        assert_eq!(
            e.to_string(),
            "--env NOPE: NOPE is not set in hpc-rank's environment (--env NAME passes the \
             caller's value of NAME; give --env NOPE=VALUE to set it)"
        );
        assert_eq!(
            resolve_env(&["=x".into()], &host),
            Err(EnvError::BadName("=x".into()))
        );
        assert_eq!(
            resolve_env(&["".into()], &host),
            Err(EnvError::BadName("".into()))
        );
    }

    #[test]
    fn hosts_file_adds_nodename_only_when_missing() {
        assert_eq!(
            hosts_file("127.0.0.1 localhost\n", "n1"),
            "127.0.0.1 localhost\n127.0.1.1\tn1\n"
        );
        let h = "127.0.0.1 localhost\n10.0.0.1 n1.cluster n1 # node\n";
        assert_eq!(hosts_file(h, "n1"), h);
    }

    /// `--device` goes through the OCI model (cdi-specs' config.json engine): the
    /// config.json hpc-rank writes must come back from it unchanged (capability sets are
    /// sets there, so their order is not kept).
    #[test]
    fn config_json_survives_the_oci_model() {
        let sort_caps = |v: &mut Value| {
            for set in ["bounding", "effective", "permitted"] {
                let caps = v["process"]["capabilities"][set].as_array_mut().unwrap();
                caps.sort_by_key(|c| c.as_str().unwrap_or("").to_string());
            }
        };
        let binds = vec!["/scratch:/data:ro".parse::<UserBind>().unwrap()];
        let ann = BTreeMap::from([("com.hooks.mpi.enabled".to_string(), "true".to_string())]);
        let hooks = vec![StagedHook {
            stage: "createRuntime".into(),
            file: "/etc/containers/oci/hooks.d/mpi.json".into(),
            hook: json!({"path": "/usr/libexec/hpc-hooks/mpi-hook", "args": ["mpi-hook"],
                         "env": ["A=1"], "timeout": 30}),
        }];
        let args = vec!["/bin/true".to_string()];
        let mut cfg = config_json(&SpecInput {
            rootfs: Path::new("/run/hpc-rank/rootfs"),
            args: &args,
            env: vec!["PATH=/bin".into(), "PMI_FD=3".into()],
            cwd: "/",
            uid: 0,
            gid: 0,
            groups: vec![0, 10],
            hosts_file: Path::new("/run/hpc-rank/hosts"),
            resolv_conf: Some(Path::new("/etc/resolv.conf")),
            binds: &binds,
            annotations: &ann,
            hooks: &hooks,
            cgroups_path: "hpc-rank/hpcrank-1.0-0-1".into(),
        });
        let oci: oci_spec::runtime::Spec = serde_json::from_value(cfg.clone()).unwrap();
        let mut back = serde_json::to_value(&oci).unwrap();
        sort_caps(&mut cfg);
        sort_caps(&mut back);
        assert_eq!(back, cfg);
    }

    #[test]
    fn parses_binds() {
        let b: UserBind = "/scratch:/data:ro".parse().unwrap();
        assert_eq!(b.dst, "/data");
        assert!(b.readonly);
        let b: UserBind = "/scratch".parse().unwrap();
        assert_eq!(b.dst, "/scratch");
        assert!(!b.readonly);
        assert!("rel:/x".parse::<UserBind>().is_err());
        assert!("/a:/b:xx".parse::<UserBind>().is_err());
    }
}

/// The job's PMIx directories named by the environment (`PMIX_SERVER_TMPDIR`, ...,
/// Slurm's `pmix.<job>.<step>`), bound read-write at the same path (the rank connects
/// to the server's socket and maps its shared-memory store). Same rules as mpi-hook:
/// an existing directory reached without symlinks, named `pmix*`, owned by root or by
/// the rank's user.
pub fn pmix_binds(env: &BTreeMap<String, String>, uid: u32) -> Vec<UserBind> {
    use std::os::unix::fs::MetadataExt;
    let mut cands: Vec<PathBuf> = [
        "PMIX_SERVER_TMPDIR",
        "PMIX_SYSTEM_TMPDIR",
        "PMIX_DSTORE_ESH_BASE_PATH",
        "PMIX_DSTORE_21_BASE_PATH",
    ]
    .iter()
    .filter_map(|k| env.get(*k))
    .filter(|v| v.starts_with('/'))
    .map(PathBuf::from)
    .collect();
    if let (Some(j), Some(s), Some(srv)) = (
        env.get("SLURM_JOB_ID"),
        env.get("SLURM_STEP_ID"),
        env.get("PMIX_SERVER_TMPDIR"),
    ) {
        let name = format!("pmix.{j}.{s}");
        cands.extend(
            Path::new(srv)
                .ancestors()
                .filter(|a| a.file_name().is_some_and(|n| n == name.as_str()))
                .map(Path::to_path_buf),
        );
    }
    let mut ok: Vec<PathBuf> = Vec::new();
    for c in cands {
        let Ok(real) = c.canonicalize() else { continue };
        let Ok(md) = std::fs::symlink_metadata(&real) else {
            continue;
        };
        let named = real
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pmix"));
        if real == c.components().collect::<PathBuf>()
            && md.is_dir()
            && named
            && (md.uid() == 0 || md.uid() == uid)
            && !ok.contains(&real)
        {
            ok.push(real);
        }
    }
    let all = ok.clone();
    ok.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    ok.into_iter()
        .map(|p| UserBind {
            dst: p.to_string_lossy().into_owned(),
            src: p,
            readonly: false,
        })
        .collect()
}

#[cfg(test)]
mod pmix_tests {
    use super::*;

    #[test]
    fn binds_the_slurm_step_pmix_dir() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().canonicalize().unwrap();
        let step = base.join("pmix.7.0");
        std::fs::create_dir_all(step.join("x")).unwrap();
        std::fs::create_dir(base.join("etc")).unwrap();
        let env: BTreeMap<String, String> = [
            ("PMIX_SERVER_TMPDIR", step.join("x").display().to_string()),
            ("PMIX_SYSTEM_TMPDIR", base.join("etc").display().to_string()),
            ("SLURM_JOB_ID", "7".into()),
            ("SLURM_STEP_ID", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let b = pmix_binds(&env, 0);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].src, step);
        assert!(!b[0].readonly);
    }
}
