//! `cdi-gen mpi`: the host MPI stack as two CDI specs, `hpc-hooks.io/mpi=host` and
//! `hpc-hooks.io/glibc=host` (CDI allows one kind per spec file, so two files). Each
//! device stages what it brings read-only and runs mpi-hook / glibc-hook `--cdi` at
//! createContainer with an explicit `env`, never the container's.

use std::io::Write;
use std::path::{Path, PathBuf};

use cdi_specs::parse::{to_string, Format};
use cdi_specs::types::{ContainerEdits, Device, Hook, Mount, Spec};
use cdi_specs::version::{minimum_version, Version};
use clap::{Args, ValueEnum};
use hpc_facts::hostmpi::{self, HostMpi, DEVICE_NAME, GLIBC_DEVICE_ENV, GLIBC_KIND, MPI_KIND};

use crate::cli::{parse_version, FormatArg};

/// Default directory of mpi-hook and glibc-hook (the package's).
pub const DEFAULT_HOOK_DIR: &str = "/usr/libexec/hpc-hooks";
/// Exit codes (those of GPU generation).
const EXIT_DISCOVERY: i32 = 3;
const EXIT_OUTPUT: i32 = 4;
const EXIT_SPEC_VERSION: i32 = 5;
const EXIT_USAGE: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum MpiSpecError {
    #[error("{0}")]
    Discovery(#[from] hostmpi::HostMpiError),
    #[error("cannot read the host's loader cache {path}: {message}; run ldconfig, or name the libraries with --mpi-libs")]
    Cache { path: PathBuf, message: String },
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
    #[error("the generated {kind} spec is not valid: {message}")]
    Invalid { kind: &'static str, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

impl MpiSpecError {
    pub fn exit_code(&self) -> i32 {
        match self {
            MpiSpecError::Discovery(_) | MpiSpecError::Cache { .. } => EXIT_DISCOVERY,
            MpiSpecError::Path { .. } => EXIT_USAGE,
            MpiSpecError::VersionTooOld { .. } => EXIT_SPEC_VERSION,
            MpiSpecError::Invalid { .. } | MpiSpecError::Write { .. } => EXIT_OUTPUT,
        }
    }
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum ModeArg {
    Hybrid,
    Bind,
}

/// `cdi-gen mpi`: writes the specs of the CDI devices hpc-hooks.io/mpi=host and
/// hpc-hooks.io/glibc=host for the host MPI stack.
#[derive(Args, Debug, Clone)]
pub struct MpiArgs {
    /// Write the hpc-hooks.io/mpi spec here atomically (mode 0644) instead of standard output;
    /// the hpc-hooks.io/glibc spec goes to --glibc-output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Where the hpc-hooks.io/glibc spec goes (default: hpc-hooks-glibc.yaml or .json in the
    /// directory of --output). Without --output both specs go to standard output.
    #[arg(long, value_name = "FILE")]
    pub glibc_output: Option<PathBuf>,
    /// Output format (default: from the --output extension, else yaml).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// cdiVersion to declare (default: the minimum the content needs).
    #[arg(long, value_parser = parse_version)]
    pub spec_version: Option<Version>,
    /// Directory holding mpi-hook and glibc-hook, written into the specs' hooks.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_HOOK_DIR)]
    pub hook_dir: PathBuf,
    /// Host MPI libraries, ':'-separated (default: libmpi.so.N / libmpich.so.N of the host's
    /// loader cache, as hpc-hooks-configure detects them).
    /// `auto` is the default.
    #[arg(long, value_name = "LIST")]
    pub mpi_libs: Option<String>,
    /// Their dependencies, ':'-separated (default: their non-glibc DT_NEEDED closure,
    /// resolved through the host's loader cache).
    /// `auto` is the default.
    #[arg(long, value_name = "LIST")]
    pub mpi_dependency_libs: Option<String>,
    /// Host files or directories mpi-hook binds at the same path, ':'-separated (default:
    /// UCX's plugin directory when the MPI uses UCX).
    /// `auto` is the default.
    #[arg(long, value_name = "LIST")]
    pub bind_mounts: Option<String>,
    /// ABI check between host and image MPI: major, full, strict or dependencies.
    #[arg(long, default_value = "major", value_parser = ["major", "full", "strict", "dependencies"])]
    pub mpi_compatibility_type: String,
    /// MPI model of the device: bind (an image without MPI gets the host MPI; an image with
    /// one has it replaced) or hybrid (an image without MPI is refused).
    #[arg(long, value_enum, default_value = "bind")]
    pub mode: ModeArg,
    /// Host glibc files glibc-hook injects, ':'-separated (default: from the host's cache).
    #[arg(long, value_name = "LIST", default_value = "")]
    pub glibc_libs: String,
    /// The hooks' log file (passed as their --log-file).
    #[arg(long, value_name = "FILE", default_value = "/var/log/hpc-hooks.log")]
    pub hook_log_file: PathBuf,
    /// The hooks' log level (passed as their --log-level).
    #[arg(long, value_name = "LEVEL", default_value = "warn")]
    pub hook_log_level: String,
    /// The host loader cache read for discovery (tests).
    #[arg(long, hide = true, default_value = "/etc/ld.so.cache")]
    pub ld_cache: PathBuf,
}

/// The two specs and where they go.
#[derive(Debug, Clone)]
pub struct MpiSpecs {
    pub mpi: Spec,
    pub glibc: Spec,
    pub format: Format,
    pub stack: HostMpi,
    pub bind_mounts: Vec<PathBuf>,
}

fn split(s: &str) -> Vec<PathBuf> {
    s.split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn join(v: &[PathBuf]) -> String {
    v.iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

fn check_paths(flag: &'static str, v: &[PathBuf]) -> Result<(), MpiSpecError> {
    for p in v {
        let err = |why| MpiSpecError::Path {
            flag,
            path: p.clone(),
            why,
        };
        if !p.is_absolute() {
            return Err(err("is not an absolute path"));
        }
        if !p.exists() {
            return Err(err("does not exist on this node"));
        }
    }
    Ok(())
}

/// UCX's plugin directory (its shared-memory and CMA transports), when a dependency is
/// UCX: hpc-hooks-configure's `BIND_MOUNTS=auto`.
fn ucx_plugin_dir(deps: &[PathBuf]) -> Vec<PathBuf> {
    for d in deps {
        let name = d.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with("libucp.so") || n.starts_with("libucs.so")) {
            if let Some(dir) = std::fs::canonicalize(d)
                .ok()
                .and_then(|r| r.parent().map(|p| p.join("ucx")))
                .filter(|p| p.is_dir())
            {
                return vec![dir];
            }
        }
    }
    Vec::new()
}

/// The host MPI stack: given, else discovered in the host's loader cache.
pub fn stack(args: &MpiArgs) -> Result<(HostMpi, Vec<PathBuf>), MpiSpecError> {
    // `auto` (hpc-hooks.conf's value) is the same as the flag left out.
    let given = |v: &Option<String>| v.as_deref().filter(|v| *v != "auto").map(split);
    let given_libs = given(&args.mpi_libs);
    let given_deps = given(&args.mpi_dependency_libs);
    if let Some(l) = &given_libs {
        check_paths("--mpi-libs", l)?;
    }
    let cache = || -> Result<hpc_facts::ldcache::LdCache, MpiSpecError> {
        let err = |message: String| MpiSpecError::Cache {
            path: args.ld_cache.clone(),
            message,
        };
        let f = std::fs::File::open(&args.ld_cache).map_err(|e| err(e.to_string()))?;
        hpc_facts::ldcache::read_file(&f).map_err(|e| err(e.to_string()))
    };
    let stack = match (given_libs, given_deps) {
        (Some(mpi_libs), Some(dependency_libs)) if !mpi_libs.is_empty() => HostMpi {
            mpi_libs,
            dependency_libs,
        },
        (Some(mpi_libs), None) if !mpi_libs.is_empty() => {
            let cache = cache()?;
            let dependency_libs = hostmpi::dependencies(&cache, &mpi_libs)?;
            HostMpi {
                mpi_libs,
                dependency_libs,
            }
        }
        (_, deps) => {
            let cache = cache()?;
            let (class, machine) = hostmpi::host_arch()?;
            let mut found = hostmpi::discover(&cache, &args.ld_cache, class, machine)?;
            if let Some(d) = deps {
                found.dependency_libs = d;
            }
            found
        }
    };
    check_paths("--mpi-libs", &stack.mpi_libs)?;
    check_paths("--mpi-dependency-libs", &stack.dependency_libs)?;
    let binds = match given(&args.bind_mounts) {
        Some(b) => b,
        None => ucx_plugin_dir(&stack.dependency_libs),
    };
    check_paths("--bind-mounts", &binds)?;
    Ok((stack, binds))
}

/// Mount options of staged host libraries.
const STAGE_OPTIONS: [&str; 4] = ["ro", "nosuid", "nodev", "bind"];

fn finish(
    mut spec: Spec,
    requested: Option<Version>,
    kind: &'static str,
) -> Result<Spec, MpiSpecError> {
    cdi_specs::normalize::canonicalize(&mut spec);
    let min = minimum_version(&spec);
    let version = match requested {
        Some(v) if v < min.version => {
            return Err(MpiSpecError::VersionTooOld {
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
    cdi_specs::validate(&spec, None).map_err(|e| MpiSpecError::Invalid {
        kind,
        message: e.to_string(),
    })?;
    Ok(spec)
}

/// Builds both specs (writes nothing).
pub fn specs(args: &MpiArgs) -> Result<MpiSpecs, MpiSpecError> {
    let (stack, binds) = stack(args)?;
    let hook_path = |name: &str| args.hook_dir.join(name).to_string_lossy().into_owned();
    let log_args = |name: &str| {
        vec![
            name.to_string(),
            "--cdi".into(),
            "--log-file".into(),
            args.hook_log_file.to_string_lossy().into_owned(),
            "--log-level".into(),
            args.hook_log_level.clone(),
        ]
    };
    // Every host library staged read-only under STAGING_DIR, named by its file name: the
    // engine shows the device's files; mpi-hook binds them where the image needs them.
    let mut mounts = Vec::new();
    let mut staged = std::collections::BTreeSet::new();
    for lib in stack.mpi_libs.iter().chain(&stack.dependency_libs) {
        let real = std::fs::canonicalize(lib).unwrap_or_else(|_| lib.clone());
        let Some(name) = lib.file_name() else {
            continue;
        };
        if !staged.insert(name.to_owned()) {
            continue;
        }
        mounts.push(Mount {
            host_path: real.to_string_lossy().into_owned(),
            container_path: Path::new(hostmpi::STAGING_DIR)
                .join(name)
                .to_string_lossy()
                .into_owned(),
            options: STAGE_OPTIONS.iter().map(|o| o.to_string()).collect(),
            typ: String::new(),
        });
    }
    let mut mpi_args = log_args("mpi-hook");
    mpi_args.insert(2, "--mode".into());
    mpi_args.insert(
        3,
        match args.mode {
            ModeArg::Bind => "bind",
            ModeArg::Hybrid => "hybrid",
        }
        .into(),
    );
    let mpi_hook = Hook {
        hook_name: "createContainer".into(),
        path: hook_path("mpi-hook"),
        args: mpi_args,
        env: vec![
            format!("MPI_LIBS={}", join(&stack.mpi_libs)),
            format!("MPI_DEPENDENCY_LIBS={}", join(&stack.dependency_libs)),
            format!("BIND_MOUNTS={}", join(&binds)),
            format!("MPI_COMPATIBILITY_TYPE={}", args.mpi_compatibility_type),
            format!("GLIBC_LIBS={}", args.glibc_libs),
        ],
        timeout: Some(30),
    };
    let mpi = Spec {
        kind: MPI_KIND.into(),
        devices: vec![Device {
            name: DEVICE_NAME.into(),
            container_edits: ContainerEdits {
                mounts,
                hooks: vec![mpi_hook],
                ..ContainerEdits::default()
            },
            ..Device::default()
        }],
        ..Spec::default()
    };
    let glibc_hook = Hook {
        hook_name: "createContainer".into(),
        path: hook_path("glibc-hook"),
        args: log_args("glibc-hook"),
        env: vec![format!("GLIBC_LIBS={}", args.glibc_libs)],
        timeout: Some(30),
    };
    let glibc = Spec {
        kind: GLIBC_KIND.into(),
        devices: vec![Device {
            name: DEVICE_NAME.into(),
            container_edits: ContainerEdits {
                env: vec![format!("{GLIBC_DEVICE_ENV}={DEVICE_NAME}")],
                hooks: vec![glibc_hook],
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
    Ok(MpiSpecs {
        mpi: finish(mpi, args.spec_version, MPI_KIND)?,
        glibc: finish(glibc, args.spec_version, GLIBC_KIND)?,
        format,
        stack,
        bind_mounts: binds,
    })
}

/// The glibc spec's file: --glibc-output, else `hpc-hooks-glibc.<ext>` beside --output.
pub fn glibc_output(args: &MpiArgs, format: Format) -> Option<PathBuf> {
    args.glibc_output.clone().or_else(|| {
        args.output.as_ref().map(|o| {
            o.parent()
                .unwrap_or(Path::new("."))
                .join(format!("hpc-hooks-glibc.{}", format.extension()))
        })
    })
}

fn text(spec: &Spec, format: Format, kind: &'static str) -> Result<String, MpiSpecError> {
    to_string(spec, format).map_err(|e| MpiSpecError::Invalid {
        kind,
        message: e.to_string(),
    })
}

/// Runs `cdi-gen mpi`: builds and writes both specs; returns the summary line.
pub fn run(args: &MpiArgs) -> Result<String, MpiSpecError> {
    let s = specs(args)?;
    let mpi_text = text(&s.mpi, s.format, MPI_KIND)?;
    let glibc_text = text(&s.glibc, s.format, GLIBC_KIND)?;
    let write = |path: &Path, text: &str| {
        cdi_specs::write_atomic(path, text.as_bytes()).map_err(|e| MpiSpecError::Write {
            path: path.to_owned(),
            message: e.to_string(),
        })
    };
    match (&args.output, glibc_output(args, s.format)) {
        (Some(o), Some(g)) => {
            write(o, &mpi_text)?;
            write(&g, &glibc_text)?;
        }
        (o, g) => {
            if let Some(o) = o {
                write(o, &mpi_text)?;
            }
            if let Some(g) = &g {
                write(g, &glibc_text)?;
            }
            let mut out = std::io::stdout().lock();
            let mut docs = Vec::new();
            if o.is_none() {
                docs.push(mpi_text.as_str());
            }
            if g.is_none() {
                docs.push(glibc_text.as_str());
            }
            let sep = if s.format == Format::Yaml {
                "---\n"
            } else {
                ""
            };
            out.write_all(docs.join(sep).as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| MpiSpecError::Write {
                    path: PathBuf::from("standard output"),
                    message: e.to_string(),
                })?;
        }
    }
    Ok(format!(
        "{}={DEVICE_NAME} (cdiVersion {}: {} MPI libraries, {} dependencies, {} binds) and {}={DEVICE_NAME} (cdiVersion {})",
        MPI_KIND,
        s.mpi.cdi_version,
        s.stack.mpi_libs.len(),
        s.stack.dependency_libs.len(),
        s.bind_mounts.len(),
        GLIBC_KIND,
        s.glibc.cdi_version
    ))
}

/// Exit code of a result of [`run`].
pub fn exit_code(r: &Result<String, MpiSpecError>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.exit_code(),
    }
}
