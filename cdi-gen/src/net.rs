//! `cdi-gen net`: the host's network stack (libfabric, UCX, their dependencies, provider
//! directories, fabric device nodes) as the CDI device `hpc-hooks.io/net=host`, whose hook
//! runs `mpi-hook --cdi --net-only` with an explicit env; `--print-config` prints the
//! detected `NET_*` values for hpc-hooks-configure instead.

use std::io::Write;
use std::path::{Path, PathBuf};

use cdi_specs::parse::{to_string, Format};
use cdi_specs::types::{ContainerEdits, Device, DeviceNode, Hook, Mount, Spec};
use cdi_specs::version::{minimum_version, Version};
use clap::{Args, ValueEnum};
use hpc_facts::hostmpi::{self, DEVICE_NAME};
use hpc_facts::hostnet::{self, HostNet, NET_KIND};

use crate::cli::{parse_version, FormatArg};
use crate::mpi::DEFAULT_HOOK_DIR;

/// Exit codes (those of `cdi-gen mpi`).
const EXIT_DISCOVERY: i32 = 3;
const EXIT_OUTPUT: i32 = 4;
const EXIT_SPEC_VERSION: i32 = 5;
const EXIT_USAGE: i32 = 2;
/// Most device nodes taken from one directory of `--net-devices`.
const MAX_DIR_NODES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum NetSpecError {
    #[error("{0}")]
    Discovery(#[from] hostnet::HostNetError),
    #[error("cannot read the host's loader cache {path}: {message}; run ldconfig, or give every value with --net-libs, --net-dependency-libs, --net-dirs and --net-devices")]
    Cache { path: PathBuf, message: String },
    #[error("no host network stack found: no libfabric.so.1 or UCX library in the host's loader cache {cache} and no fabric device under {dev}; install libfabric or UCX and run ldconfig, or name them with --net-libs/--net-devices (cdi-gen net --print-config shows what is detected)")]
    NotFound { cache: PathBuf, dev: PathBuf },
    #[error("{flag}: {path} {why}")]
    Path {
        flag: &'static str,
        path: PathBuf,
        why: &'static str,
    },
    #[error("--spec-version {requested} cannot hold this spec: {field} needs cdiVersion {needed}; drop --spec-version (cdi-gen writes the minimum) or ask for {needed} or newer")]
    VersionTooOld {
        requested: Version,
        needed: Version,
        field: String,
    },
    #[error("the generated hpc-hooks.io/net spec is not valid: {0}")]
    Invalid(String),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

impl NetSpecError {
    pub fn exit_code(&self) -> i32 {
        match self {
            NetSpecError::Discovery(_)
            | NetSpecError::Cache { .. }
            | NetSpecError::NotFound { .. } => EXIT_DISCOVERY,
            NetSpecError::Path { .. } => EXIT_USAGE,
            NetSpecError::VersionTooOld { .. } => EXIT_SPEC_VERSION,
            NetSpecError::Invalid(_) | NetSpecError::Write { .. } => EXIT_OUTPUT,
        }
    }
}

/// What mpi-hook does when no NCCL/RCCL plugin variant matches the image's runtime.
#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum MismatchArg {
    Warn,
    Refuse,
}

/// `cdi-gen net`: writes the spec of the CDI device hpc-hooks.io/net=host for the host's
/// network stack, or prints its detected configuration.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// Print the detected NET_LIBS=, NET_DEPENDENCY_LIBS=, NET_DIRS= and NET_DEVICES= lines
    /// (':'-separated lists, hpc-hooks.conf's form) and write no spec.
    #[arg(long)]
    pub print_config: bool,
    /// Write the spec here atomically (mode 0644) instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Output format (default: from the --output extension, else yaml).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// cdiVersion to declare (default: the minimum the content needs).
    #[arg(long, value_parser = parse_version)]
    pub spec_version: Option<Version>,
    /// Directory holding mpi-hook, written into the spec's hook.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_HOOK_DIR)]
    pub hook_dir: PathBuf,
    /// Host MPI libraries whose network libraries are detected, ':'-separated (default:
    /// libmpi.so.N / libmpich.so.N of the host's loader cache).
    /// `auto` is the default.
    #[arg(long, value_name = "LIST")]
    pub mpi_libs: Option<String>,
    /// Host network libraries, ':'-separated (default: libfabric.so.1 and UCX's libucp,
    /// libuct, libucs, libucm.so.0 that the host MPI links, else those the host's loader
    /// cache has). `auto` is the default.
    #[arg(long, value_name = "LIST")]
    pub net_libs: Option<String>,
    /// Their dependencies, ':'-separated (default: the non-glibc DT_NEEDED closure of the
    /// libraries and of their provider modules, minus the libraries). `auto` is the default.
    #[arg(long, value_name = "LIST")]
    pub net_dependency_libs: Option<String>,
    /// Provider and module directories bound read-only, ':'-separated (default:
    /// <libdir>/libfabric, <libdir>/ucx, and with libibverbs <libdir>/libibverbs and
    /// /etc/libibverbs.d, those that exist). `auto` is the default.
    #[arg(long, value_name = "LIST")]
    pub net_dirs: Option<String>,
    /// Fabric device nodes or directories of them, ':'-separated (default: /dev/infiniband,
    /// /dev/cxi*, /dev/hfi1_*, /dev/kgni*, /dev/kfi* present). `auto` is the default.
    #[arg(long, value_name = "LIST")]
    pub net_devices: Option<String>,
    /// Directory of NCCL/RCCL network plugins (libnccl-net*.so, librccl-net*.so); empty:
    /// none.
    #[arg(long, value_name = "DIR", default_value = "")]
    pub nccl_plugin_dir: String,
    /// What mpi-hook does when no plugin variant matches the image's CUDA/HIP runtime.
    #[arg(long, value_enum, default_value = "warn")]
    pub nccl_plugin_mismatch: MismatchArg,
    /// The hook's log file (passed as its --log-file).
    #[arg(long, value_name = "FILE", default_value = "/var/log/hpc-hooks.log")]
    pub hook_log_file: PathBuf,
    /// The hook's log level (passed as its --log-level).
    #[arg(long, value_name = "LEVEL", default_value = "warn")]
    pub hook_log_level: String,
    /// The host loader cache read for discovery (tests).
    #[arg(long, hide = true, default_value = "/etc/ld.so.cache")]
    pub ld_cache: PathBuf,
    /// The host's /dev, where fabric devices are looked for (tests).
    #[arg(long, hide = true, default_value = "/dev")]
    pub dev_root: PathBuf,
}

fn split(s: &str) -> Vec<PathBuf> {
    s.split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn check_paths(flag: &'static str, v: &[PathBuf]) -> Result<(), NetSpecError> {
    for p in v {
        let err = |why| NetSpecError::Path {
            flag,
            path: p.clone(),
            why,
        };
        if !p.is_absolute() {
            return Err(err("is not an absolute path"));
        }
        if std::fs::symlink_metadata(p).is_err() {
            return Err(err("does not exist on this node"));
        }
    }
    Ok(())
}

/// The host network stack: each value given, else detected (`auto`, the default).
pub fn stack(args: &NetArgs) -> Result<HostNet, NetSpecError> {
    // `auto` (hpc-hooks.conf's value) is the same as the flag left out.
    let given = |v: &Option<String>| v.as_deref().filter(|v| *v != "auto").map(split);
    let libs = given(&args.net_libs);
    let deps = given(&args.net_dependency_libs);
    let dirs = given(&args.net_dirs);
    let devices = given(&args.net_devices);
    if let Some(l) = &libs {
        check_paths("--net-libs", l)?;
    }
    let mut net = if libs.is_some() && deps.is_some() && dirs.is_some() && devices.is_some() {
        HostNet::default()
    } else {
        let err = |message: String| NetSpecError::Cache {
            path: args.ld_cache.clone(),
            message,
        };
        let f = std::fs::File::open(&args.ld_cache).map_err(|e| err(e.to_string()))?;
        let cache = hpc_facts::ldcache::read_file(&f).map_err(|e| err(e.to_string()))?;
        let (class, machine) = hostmpi::host_arch().map_err(hostnet::HostNetError::from)?;
        match &libs {
            Some(l) => hostnet::from_libs(&cache, l, &args.dev_root)?,
            None => {
                let mpi = match given(&args.mpi_libs) {
                    Some(m) => {
                        check_paths("--mpi-libs", &m)?;
                        m
                    }
                    None => hostmpi::mpi_libs(&cache, class, machine),
                };
                hostnet::discover_for(&cache, &mpi, &args.dev_root, class, machine)?
            }
        }
    };
    if let Some(l) = libs {
        net.libs = l;
    }
    if let Some(d) = deps {
        net.dependency_libs = d;
    }
    if let Some(d) = dirs {
        net.dirs = d;
    }
    if let Some(d) = devices {
        net.devices = d;
    }
    check_paths("--net-dependency-libs", &net.dependency_libs)?;
    check_paths("--net-dirs", &net.dirs)?;
    check_paths("--net-devices", &net.devices)?;
    if !args.nccl_plugin_dir.is_empty() {
        let d = PathBuf::from(&args.nccl_plugin_dir);
        check_paths("--nccl-plugin-dir", std::slice::from_ref(&d))?;
    }
    Ok(net)
}

/// The CDI device node of a host node (type and numbers from the node), None when `p` is
/// not a character or block device.
fn device_node(p: &Path) -> Option<DeviceNode> {
    let md = std::fs::metadata(p).ok()?;
    let h = cdi_specs::HostNode::from_metadata(&md)?;
    (h.typ == "c" || h.typ == "b").then(|| DeviceNode {
        path: p.to_string_lossy().into_owned(),
        typ: h.typ.to_string(),
        major: Some(h.major),
        minor: Some(h.minor),
        ..DeviceNode::default()
    })
}

/// The device nodes of `--net-devices`: a node itself, a directory's nodes (sorted, not
/// recursive, bounded); anything else is skipped with a warning.
fn device_nodes(devices: &[PathBuf]) -> Vec<DeviceNode> {
    let mut out = Vec::new();
    for d in devices {
        if d.is_dir() {
            let mut nodes: Vec<PathBuf> = std::fs::read_dir(d)
                .map(|rd| rd.take(MAX_DIR_NODES).flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            nodes.sort();
            out.extend(nodes.iter().filter_map(|n| device_node(n)));
        } else if let Some(n) = device_node(d) {
            out.push(n);
        } else {
            tracing::warn!(
                "--net-devices: {} is neither a device node nor a directory; left out of the spec",
                d.display()
            );
        }
    }
    out
}

/// Mount options of staged host libraries and of bound directories.
const RO_OPTIONS: [&str; 4] = ["ro", "nosuid", "nodev", "bind"];

fn ro_mount(host: &Path, container: &Path) -> Mount {
    Mount {
        host_path: host.to_string_lossy().into_owned(),
        container_path: container.to_string_lossy().into_owned(),
        options: RO_OPTIONS.iter().map(|o| o.to_string()).collect(),
        typ: String::new(),
    }
}

/// The spec and its format.
#[derive(Debug, Clone)]
pub struct NetSpec {
    pub spec: Spec,
    pub format: Format,
    pub stack: HostNet,
}

fn mismatch_str(m: MismatchArg) -> &'static str {
    match m {
        MismatchArg::Warn => "warn",
        MismatchArg::Refuse => "refuse",
    }
}

/// The hook's env: the NET_* and NCCL_* configuration, explicitly (never the container's).
pub fn hook_env(stack: &HostNet, args: &NetArgs) -> Vec<String> {
    let mut env: Vec<String> = stack.config_lines().to_vec();
    env.push(format!("NCCL_PLUGIN_DIR={}", args.nccl_plugin_dir));
    env.push(format!(
        "NCCL_PLUGIN_MISMATCH={}",
        mismatch_str(args.nccl_plugin_mismatch)
    ));
    env
}

/// Builds the spec (writes nothing).
pub fn spec(args: &NetArgs) -> Result<NetSpec, NetSpecError> {
    let stack = stack(args)?;
    // mpi-hook refuses a device that carries neither a library nor a device node.
    if stack.libs.is_empty() && stack.devices.is_empty() {
        return Err(NetSpecError::NotFound {
            cache: args.ld_cache.clone(),
            dev: args.dev_root.clone(),
        });
    }
    // Libraries staged read-only under STAGING_DIR by file name (mpi-hook binds them where
    // the image needs them); directories bound read-only at their host path.
    let mut mounts = Vec::new();
    let mut staged = std::collections::BTreeSet::new();
    for lib in stack.libs.iter().chain(&stack.dependency_libs) {
        let real = std::fs::canonicalize(lib).unwrap_or_else(|_| lib.clone());
        let Some(name) = lib.file_name() else {
            continue;
        };
        if staged.insert(name.to_owned()) {
            mounts.push(ro_mount(&real, &Path::new(hostnet::STAGING_DIR).join(name)));
        }
    }
    for d in &stack.dirs {
        mounts.push(ro_mount(d, d));
    }
    let hook = Hook {
        hook_name: "createContainer".into(),
        path: args
            .hook_dir
            .join("mpi-hook")
            .to_string_lossy()
            .into_owned(),
        args: vec![
            "mpi-hook".into(),
            "--cdi".into(),
            "--net-only".into(),
            "--log-file".into(),
            args.hook_log_file.to_string_lossy().into_owned(),
            "--log-level".into(),
            args.hook_log_level.clone(),
        ],
        env: hook_env(&stack, args),
        timeout: Some(30),
    };
    let spec = Spec {
        kind: NET_KIND.into(),
        devices: vec![Device {
            name: DEVICE_NAME.into(),
            container_edits: ContainerEdits {
                device_nodes: device_nodes(&stack.devices),
                mounts,
                hooks: vec![hook],
                ..ContainerEdits::default()
            },
            ..Device::default()
        }],
        ..Spec::default()
    };
    let format = match args.format {
        Some(FormatArg::Json) => Format::Json,
        Some(FormatArg::Yaml) => Format::Yaml,
        None => args
            .output
            .as_deref()
            .and_then(|p| Format::from_path(p).ok())
            .unwrap_or(Format::Yaml),
    };
    Ok(NetSpec {
        spec: finish(spec, args.spec_version)?,
        format,
        stack,
    })
}

fn finish(mut spec: Spec, requested: Option<Version>) -> Result<Spec, NetSpecError> {
    cdi_specs::normalize::canonicalize(&mut spec);
    let min = minimum_version(&spec);
    let version = match requested {
        Some(v) if v < min.version => {
            return Err(NetSpecError::VersionTooOld {
                requested: v,
                needed: min.version,
                field: min
                    .needed_by
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "the spec".into()),
            })
        }
        Some(v) => v,
        None => min.version,
    };
    spec.cdi_version = version.to_string();
    cdi_specs::validate(&spec, None).map_err(|e| NetSpecError::Invalid(e.to_string()))?;
    Ok(spec)
}

fn write_stdout(text: &str) -> Result<(), NetSpecError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| NetSpecError::Write {
            path: PathBuf::from("standard output"),
            message: e.to_string(),
        })
}

/// Runs `cdi-gen net`: prints the configuration, or builds and writes the spec; returns
/// the summary line.
pub fn run(args: &NetArgs) -> Result<String, NetSpecError> {
    if args.print_config {
        let net = stack(args)?;
        let mut text = net.config_lines().join("\n");
        text.push('\n');
        write_stdout(&text)?;
        return Ok(format!(
            "{} network libraries, {} dependencies, {} directories, {} devices",
            net.libs.len(),
            net.dependency_libs.len(),
            net.dirs.len(),
            net.devices.len()
        ));
    }
    let s = spec(args)?;
    let text = to_string(&s.spec, s.format).map_err(|e| NetSpecError::Invalid(e.to_string()))?;
    match &args.output {
        Some(o) => {
            cdi_specs::write_atomic(o, text.as_bytes()).map_err(|e| NetSpecError::Write {
                path: o.clone(),
                message: e.to_string(),
            })?
        }
        None => write_stdout(&text)?,
    }
    Ok(format!(
        "{NET_KIND}={DEVICE_NAME} (cdiVersion {}: {} network libraries, {} dependencies, {} directories, {} device nodes)",
        s.spec.cdi_version,
        s.stack.libs.len(),
        s.stack.dependency_libs.len(),
        s.stack.dirs.len(),
        s.spec.devices[0].container_edits.device_nodes.len()
    ))
}

/// Exit code of a result of [`run`].
pub fn exit_code(r: &Result<String, NetSpecError>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.exit_code(),
    }
}
