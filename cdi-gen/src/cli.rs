//! Command line of `cdi-gen` (clap derive) and its mapping to [`GenerateOptions`]. The
//! help text is also the source of the man pages and shell completions (`xtask docs`).

use std::collections::HashSet;
use std::path::PathBuf;

use cdi_specs::parse::Format;
use cdi_specs::version::Version;
use clap::{Args, Parser, Subcommand, ValueEnum};

use gpu_discover::edits::{HookConfig, HookKind, DEFAULT_HOOK_PATH};
use gpu_discover::nvidia::hpc::DeviceClass;
use gpu_discover::nvidia::{DiscoveryMode, NameStrategy, NvidiaOptions};
use gpu_discover::{GenerateOptions, Roots, Vendor};

/// Generates CDI specs for NVIDIA and AMD GPUs, lists and validates installed specs.
///
/// Exit codes: 0 ok; 1 a spec does not load (list, validate, doctor); 2 bad command line;
/// 3 discovery failed; 4 the spec cannot be written; 5 --spec-version too old; 6 doctor
/// found a stale or unsafe spec.
///
/// Without a subcommand, cdi-gen generates a spec (the same as `cdi-gen generate`), e.g.
/// `cdi-gen --vendor nvidia --output /var/run/cdi/nvidia.yaml` (what the package's
/// cdi-gen-refresh.service runs at boot and when the driver changes), then `podman run
/// --device nvidia.com/gpu=all IMAGE`. NVIDIA facts come from NVML, or from procfs and
/// sysfs without it; AMD GPUs from sysfs. The spec declares the minimum cdiVersion its
/// content needs and references gpu-hook (--hook-path) for its create-symlinks,
/// update-ldcache and enable-cuda-compat hooks. `list` and `validate` check installed
/// specs the way engines load them.
///
/// Scripts written for `nvidia-ctk cdi generate` run unchanged for the flags that mean
/// the same thing here (docs/cdi-gen.md has the table): `--vendor nvidia.com`,
/// `--mode`/`--discovery-mode`, `--nvidia-cdi-hook-path`/`--nvidia-ctk-path`; `--ldconfig-path`
/// and `--csv.file` are accepted and ignored with a notice.
#[derive(Parser, Debug)]
#[command(name = "cdi-gen", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub generate: GenerateArgs,
    /// Log level: off, error, warn, info, debug, trace, or 0-4 (0 debug .. 4 off) [default:
    /// warn; env: CDI_GEN_LOG_LEVEL, or the older CDI_GEN_LOG].
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// Environment variable of `--log-level` (the `<TOOL>_LOG_LEVEL` name the other tools use).
pub const LOG_LEVEL_ENV: &str = "CDI_GEN_LOG_LEVEL";
/// The older name of [`LOG_LEVEL_ENV`], still read when the new one is not set.
pub const LOG_LEVEL_ENV_OLD: &str = "CDI_GEN_LOG";

impl Cli {
    /// The log level to use and where it came from: `--log-level`, then
    /// `CDI_GEN_LOG_LEVEL`, then `CDI_GEN_LOG`, else `warn`.
    pub fn log_level_setting(&self) -> (String, &'static str) {
        if let Some(l) = &self.log_level {
            return (l.clone(), "--log-level");
        }
        for var in [LOG_LEVEL_ENV, LOG_LEVEL_ENV_OLD] {
            if let Some(v) = std::env::var_os(var) {
                return (v.to_string_lossy().into_owned(), var);
            }
        }
        ("warn".to_string(), "the default")
    }
}

/// Parses a log level the way the hooks do ([`hpc_facts::log_level::parse`], the one
/// parser: `off|error|warn|info|debug|trace`, any case, `warning` too, or Sarus's numbers
/// 0 debug .. 4 off). Returns the tracing directive.
pub fn parse_log_level(s: &str) -> Option<&'static str> {
    hpc_facts::log_level::parse(s).map(hpc_facts::log_level::Level::as_str)
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a spec (the default command).
    Generate(Box<GenerateArgs>),
    /// List the devices of the spec directories and every spec file that does not load.
    List {
        /// Spec directory, lowest priority first; repeatable or ':'-separated
        /// (default: /etc/cdi:/var/run/cdi). A directory that does not exist is warned about.
        #[arg(long = "spec-dir", alias = "spec-dirs", value_name = "DIR")]
        spec_dirs: Vec<PathBuf>,
    },
    /// Load spec files the way engines do; exit 1 with the reason when one does not load.
    Validate {
        /// Also fail specs declaring a newer cdiVersion (podman 4.x: 0.5.0).
        #[arg(long, value_parser = parse_version)]
        max_version: Option<Version>,
        /// Spec files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write the CDI specs of the host MPI stack: hpc-hooks.io/mpi=host and
    /// hpc-hooks.io/glibc=host (one kind per spec file, so two files; docs/cdi-gen.md).
    Mpi(Box<crate::mpi::MpiArgs>),
    /// Write the CDI spec of the host's network stack (libfabric, UCX, provider
    /// directories, fabric devices): hpc-hooks.io/net=host (docs/network.md); or print the
    /// detected NET_* configuration with --print-config.
    Net(Box<crate::net::NetArgs>),
    /// Check the installed specs against the node: device nodes (type, major:minor vs the
    /// node and /proc/devices), host paths gone after a driver upgrade, hooks, file mode
    /// and owner, which file wins a kind, cdiVersion vs podman, devices that differ from a
    /// fresh discovery (MIG layout, removed GPUs). Exit 0 all match, 1 a spec does not
    /// load, 6 a spec is stale or unsafe.
    Doctor(Box<DoctorArgs>),
    /// Print NVML's GPU facts as JSON (run by gpu-hook in a clean child process, so the
    /// hook itself never loads driver code).
    #[command(hide = true)]
    NvmlFacts {
        /// libnvidia-ml.so.1 to load (absolute path).
        #[arg(long)]
        nvml_lib: PathBuf,
    },
}

/// `cdi-gen doctor`: the spec directories, the podman to check against, and where the
/// node's devices are discovered for comparison (few options: every argument defined
/// costs every cdi-gen run its start-up time).
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Spec directory, lowest priority first; repeatable or ':'-separated
    /// (default: /etc/cdi:/var/run/cdi).
    #[arg(long = "spec-dir", alias = "spec-dirs", value_name = "DIR")]
    pub spec_dirs: Vec<PathBuf>,
    /// podman version whose cdiVersion ceiling applies (`none`: no check; default: run
    /// `podman --version`).
    #[arg(long, value_name = "VERSION")]
    pub podman_version: Option<String>,
    /// Root of the driver installation (as for generate).
    #[arg(long, default_value = "/", env = "CDI_GEN_DRIVER_ROOT")]
    pub driver_root: PathBuf,
    /// Root under which /dev is looked up (default: the driver root).
    #[arg(long)]
    pub dev_root: Option<PathBuf>,
    /// libnvidia-ml.so.1 to load (as for generate).
    #[arg(long)]
    pub nvml_lib: Option<PathBuf>,
    /// Where NVIDIA GPU facts come from: auto, nvml, procfs (as for generate).
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_discovery)]
    pub discovery: DiscoveryArg,
    /// sysfs root (tests).
    #[arg(long, hide = true, default_value = "/sys", env = "CDI_GEN_SYSFS_ROOT")]
    pub sysfs_root: PathBuf,
    /// procfs root (tests).
    #[arg(
        long,
        hide = true,
        default_value = "/proc",
        env = "CDI_GEN_PROCFS_ROOT"
    )]
    pub procfs_root: PathBuf,
}

impl DoctorArgs {
    /// The generation options a fresh spec is discovered with.
    pub fn options(&self) -> GenerateOptions {
        GenerateOptions {
            roots: Roots {
                driver_root: self.driver_root.clone(),
                dev_root: self
                    .dev_root
                    .clone()
                    .unwrap_or_else(|| self.driver_root.clone()),
                sys_root: self.sysfs_root.clone(),
                proc_root: self.procfs_root.clone(),
            },
            nvidia: NvidiaOptions {
                nvml_lib: self.nvml_lib.clone(),
                mode: discovery_mode(self.discovery),
                ..NvidiaOptions::default()
            },
            ..GenerateOptions::default()
        }
    }
}

fn discovery_mode(d: DiscoveryArg) -> DiscoveryMode {
    match d {
        DiscoveryArg::Auto => DiscoveryMode::Auto,
        DiscoveryArg::Nvml => DiscoveryMode::Nvml,
        DiscoveryArg::Procfs => DiscoveryMode::Procfs,
    }
}

/// `--vendor`: ours (`nvidia`, `amd`) or nvidia-ctk's vendor of the kind (`nvidia.com`).
#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum VendorArg {
    #[value(alias = "nvidia.com")]
    Nvidia,
    #[value(alias = "amd.com")]
    Amd,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum FormatArg {
    Yaml,
    Json,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum StrategyArg {
    Index,
    Uuid,
    TypeIndex,
}

/// `--device-class`: GPUs or one of the HPC device classes (docs/cdi-gen.md).
#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum DeviceClassArg {
    Gpu,
    ImexChannel,
    Gds,
    Gdrcopy,
    Mofed,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum HookArg {
    CreateSymlinks,
    UpdateLdcache,
    EnableCudaCompat,
    All,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryArg {
    Auto,
    Nvml,
    Procfs,
}

/// Parses `--discovery` (also given as nvidia-ctk's `--mode`/`--discovery-mode`):
/// `auto`, `nvml`, `procfs`; nvidia-ctk's modes that have no equivalent here are refused
/// with what to do instead.
pub fn parse_discovery(s: &str) -> Result<DiscoveryArg, String> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "auto" => DiscoveryArg::Auto,
        "nvml" => DiscoveryArg::Nvml,
        "procfs" => DiscoveryArg::Procfs,
        m @ ("gds" | "mofed" | "gdrcopy" | "imex") => {
            let class = if m == "imex" { "imex-channel" } else { m };
            return Err(format!(
                "nvidia-ctk's discovery mode '{m}' is cdi-gen's --device-class {class} \
                 (kind nvidia.com/{class}); NVSwitch nodes are in the gpu spec itself"
            ));
        }
        m @ ("csv" | "wsl" | "management" | "nvswitch") => {
            return Err(format!(
                "nvidia-ctk's discovery mode '{m}' is not supported by cdi-gen, which \
                 generates specs for NVIDIA GPUs from NVML or procfs/sysfs (auto, nvml, procfs) \
                 and AMD GPUs (--vendor amd); use nvidia-ctk cdi generate for this mode"
            ))
        }
        _ => return Err("expected auto, nvml or procfs".to_string()),
    })
}

#[derive(Args, Debug, Clone)]
pub struct GenerateArgs {
    /// GPU vendor (nvidia-ctk's `nvidia.com`, and its --cdi-vendor, are accepted).
    #[arg(long, value_enum, default_value = "nvidia", alias = "cdi-vendor")]
    pub vendor: VendorArg,
    /// Class of the kind (`vendor/class`; nvidia-ctk's --cdi-class is accepted).
    #[arg(long, default_value = "gpu", alias = "cdi-class")]
    pub class: String,
    /// NVIDIA devices to generate a spec for: gpu (GPUs, MIG devices, NVSwitch nodes), or
    /// an HPC class present on the node: imex-channel (nvidia.com/imex-channel=N), gds
    /// (nvidia.com/gds=all), gdrcopy (nvidia.com/gdrcopy=all), mofed (RDMA verbs:
    /// nvidia.com/mofed=uverbsN, =all). The kind's class is the device class unless
    /// --class names another. Exit 3 when the node has none.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device_class: DeviceClassArg,
    /// Output format (default: from the --output extension, else yaml).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Write the spec here atomically (mode 0644) instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Root of the driver installation.
    #[arg(long, default_value = "/", env = "CDI_GEN_DRIVER_ROOT")]
    pub driver_root: PathBuf,
    /// Root under which /dev is looked up (default: the driver root).
    #[arg(long)]
    pub dev_root: Option<PathBuf>,
    /// Device naming: index (0, 0:1), uuid (GPU-..., MIG-...), type-index (gpu0, mig0:1);
    /// repeatable (default: index and uuid).
    #[arg(long = "device-name-strategy", value_enum)]
    pub strategies: Vec<StrategyArg>,
    /// Do not add the `all` device.
    #[arg(long)]
    pub no_all_device: bool,
    /// Extra library directory inside the driver root; repeatable.
    #[arg(long = "library-search-path")]
    pub library_search_paths: Vec<PathBuf>,
    /// MPS pipe directory (the MPS daemon's CUDA_MPS_PIPE_DIRECTORY, in-root path) to mount
    /// read-only into every GPU container. It must be a directory that is not group- or
    /// world-writable; under /tmp, /var/tmp, /dev/shm or another world-writable directory
    /// it must also be root-owned and reached without symlinks. Default: /tmp/nvidia-mps,
    /// only when it is a real directory owned by root with mode 0755 (else left out with a
    /// warning).
    #[arg(long, value_name = "DIR")]
    pub mps_pipe_dir: Option<PathBuf>,
    /// Path of gpu-hook for the create-symlinks, update-ldcache and enable-cuda-compat hooks.
    /// (nvidia-ctk's --nvidia-cdi-hook-path and --nvidia-ctk-path are accepted for it: the
    /// spec's hooks take gpu-hook's arguments.)
    #[arg(
        long,
        default_value = DEFAULT_HOOK_PATH,
        aliases = ["nvidia-cdi-hook-path", "nvidia-ctk-path"]
    )]
    pub hook_path: String,
    /// Leave a hook out of the spec; repeatable. Without create-symlinks, SONAME paths
    /// (libcuda.so.1) are bind mounts of the library instead (nvidia-ctk's --disable-hooks
    /// is accepted).
    #[arg(long = "disable-hook", alias = "disable-hooks", value_enum)]
    pub disable_hooks: Vec<HookArg>,
    /// cdiVersion to declare (default: the minimum the content needs).
    #[arg(long, value_parser = parse_version)]
    pub spec_version: Option<Version>,
    /// libnvidia-ml.so.1 to load (default: the driver root's, then the loader's).
    #[arg(long)]
    pub nvml_lib: Option<PathBuf>,
    /// Where NVIDIA GPU facts come from: auto (NVML, else procfs/sysfs), nvml, procfs.
    #[arg(
        long,
        value_name = "MODE",
        default_value = "auto",
        value_parser = parse_discovery,
        aliases = ["mode", "discovery-mode"]
    )]
    pub discovery: DiscoveryArg,
    /// nvidia-ctk's ldconfig for its update-ldcache hook: accepted and ignored (gpu-hook
    /// writes the container's loader cache natively and runs no ldconfig).
    #[arg(long, hide = true, value_name = "PATH")]
    pub ldconfig_path: Option<PathBuf>,
    /// nvidia-ctk's CSV (Tegra) mode files: accepted and ignored (cdi-gen has no CSV mode).
    /// (`csv-file` is the name clap needs for it: `--csv.file` is the alias scripts use.)
    #[arg(
        long = "csv-file",
        alias = "csv.file",
        hide = true,
        value_name = "FILE"
    )]
    pub csv_files: Vec<PathBuf>,
    /// sysfs root (tests).
    #[arg(long, hide = true, default_value = "/sys", env = "CDI_GEN_SYSFS_ROOT")]
    pub sysfs_root: PathBuf,
    /// procfs root (tests).
    #[arg(
        long,
        hide = true,
        default_value = "/proc",
        env = "CDI_GEN_PROCFS_ROOT"
    )]
    pub procfs_root: PathBuf,
}

/// Notices for the nvidia-ctk flags that are accepted but have no effect here.
impl GenerateArgs {
    /// (level is warn when true, info otherwise; the message) for each ignored flag given.
    pub fn ignored_flag_notices(&self) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        if let Some(p) = &self.ldconfig_path {
            out.push((
                false,
                format!(
                    "--ldconfig-path {} is ignored: the spec's update-ldcache hook is gpu-hook, \
                     which writes the container's loader cache natively and runs no ldconfig",
                    p.display()
                ),
            ));
        }
        if !self.csv_files.is_empty() {
            let files: Vec<String> = self
                .csv_files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            out.push((
                true,
                format!(
                    "--csv.file {} is ignored: cdi-gen has no CSV (Tegra) mode; it discovers \
                     NVIDIA GPUs from NVML or procfs/sysfs",
                    files.join(", ")
                ),
            ));
        }
        let base = std::path::Path::new(&self.hook_path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if base == "nvidia-ctk" || base == "nvidia-cdi-hook" {
            out.push((
                true,
                format!(
                    "--hook-path {}: the spec's hooks take gpu-hook's arguments (create-symlinks, \
                     update-ldcache, enable-cuda-compat), which NVIDIA's {base} may not; point \
                     --hook-path at gpu-hook (default {DEFAULT_HOOK_PATH})",
                    self.hook_path
                ),
            ));
        }
        out
    }
}

/// Parses a `cdiVersion` option, refusing legacy versions.
pub fn parse_version(s: &str) -> Result<Version, String> {
    let v: Version = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_legacy() {
        return Err(format!("cdiVersion {v} is legacy; use 0.3.0 or newer"));
    }
    Ok(v)
}

impl GenerateArgs {
    /// The library options these arguments describe.
    pub fn options(&self) -> GenerateOptions {
        let mut strategies = Vec::new();
        for s in &self.strategies {
            let s = match s {
                StrategyArg::Index => NameStrategy::Index,
                StrategyArg::Uuid => NameStrategy::Uuid,
                StrategyArg::TypeIndex => NameStrategy::TypeIndex,
            };
            if !strategies.contains(&s) {
                strategies.push(s);
            }
        }
        if strategies.is_empty() {
            strategies = vec![NameStrategy::Index, NameStrategy::Uuid];
        }
        let mut disabled = HashSet::new();
        for h in &self.disable_hooks {
            match h {
                HookArg::CreateSymlinks => {
                    disabled.insert(HookKind::CreateSymlinks);
                }
                HookArg::UpdateLdcache => {
                    disabled.insert(HookKind::UpdateLdcache);
                }
                HookArg::EnableCudaCompat => {
                    disabled.insert(HookKind::EnableCudaCompat);
                }
                HookArg::All => {
                    disabled.insert(HookKind::CreateSymlinks);
                    disabled.insert(HookKind::UpdateLdcache);
                    disabled.insert(HookKind::EnableCudaCompat);
                }
            }
        }
        let device_class = match self.device_class {
            DeviceClassArg::Gpu => DeviceClass::Gpu,
            DeviceClassArg::ImexChannel => DeviceClass::ImexChannel,
            DeviceClassArg::Gds => DeviceClass::Gds,
            DeviceClassArg::Gdrcopy => DeviceClass::Gdrcopy,
            DeviceClassArg::Mofed => DeviceClass::Mofed,
        };
        GenerateOptions {
            vendor: match self.vendor {
                VendorArg::Nvidia => Vendor::Nvidia,
                VendorArg::Amd => Vendor::Amd,
            },
            class: match (self.device_class, self.class.as_str()) {
                (DeviceClassArg::Gpu, _) => self.class.clone(),
                (_, "gpu") => device_class.name().to_string(),
                (_, c) => c.to_string(),
            },
            device_class,
            format: self.format.map(|f| match f {
                FormatArg::Yaml => Format::Yaml,
                FormatArg::Json => Format::Json,
            }),
            output: self.output.clone(),
            roots: Roots {
                driver_root: self.driver_root.clone(),
                dev_root: self
                    .dev_root
                    .clone()
                    .unwrap_or_else(|| self.driver_root.clone()),
                sys_root: self.sysfs_root.clone(),
                proc_root: self.procfs_root.clone(),
            },
            all_device: !self.no_all_device,
            spec_version: self.spec_version,
            nvidia: NvidiaOptions {
                nvml_lib: self.nvml_lib.clone(),
                nvml_helper: None,
                mode: discovery_mode(self.discovery),
                strategies,
                library_search_paths: self.library_search_paths.clone(),
                mps_pipe_dir: self.mps_pipe_dir.clone(),
                hooks: HookConfig {
                    path: self.hook_path.clone(),
                    disabled,
                },
            },
        }
    }
}
