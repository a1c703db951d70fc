//! The `cdi-gen` binary: parses arguments, sets up logging, runs one library function and
//! maps its error to an exit code and one clear line (see `cdi_gen::exit`).

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cdi_gen::edits::{HookConfig, HookKind, DEFAULT_HOOK_PATH};
use cdi_gen::nvidia::{DiscoveryMode, NameStrategy, NvidiaOptions};
use cdi_gen::{exit, GenerateOptions, Roots, Vendor};
use cdi_specs::parse::Format;
use cdi_specs::version::Version;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Generates CDI specs for NVIDIA and AMD GPUs, lists and validates installed specs.
///
/// Exit codes: 0 ok; 1 a spec does not load (list, validate); 2 bad command line;
/// 3 discovery failed; 4 the spec cannot be written; 5 --spec-version too old.
#[derive(Parser, Debug)]
#[command(name = "cdi-gen", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    generate: GenerateArgs,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "warn", env = "CDI_GEN_LOG")]
    log_level: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a spec (the default command).
    Generate(Box<GenerateArgs>),
    /// List the devices of the spec directories and every spec file that does not load.
    List {
        /// Spec directory, lowest priority first (default: /etc/cdi /var/run/cdi).
        #[arg(long = "spec-dir")]
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
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum VendorArg {
    Nvidia,
    Amd,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum FormatArg {
    Yaml,
    Json,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
enum StrategyArg {
    Index,
    Uuid,
    TypeIndex,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum HookArg {
    CreateSymlinks,
    UpdateLdcache,
    EnableCudaCompat,
    All,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum DiscoveryArg {
    Auto,
    Nvml,
    Procfs,
}

#[derive(Args, Debug, Clone)]
struct GenerateArgs {
    /// GPU vendor.
    #[arg(long, value_enum, default_value = "nvidia")]
    vendor: VendorArg,
    /// Class of the kind (`vendor/class`).
    #[arg(long, default_value = "gpu")]
    class: String,
    /// Output format (default: from the --output extension, else yaml).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Write the spec here atomically (mode 0644) instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Root of the driver installation.
    #[arg(long, default_value = "/")]
    driver_root: PathBuf,
    /// Root under which /dev is looked up (default: the driver root).
    #[arg(long)]
    dev_root: Option<PathBuf>,
    /// Device naming: index (0, 0:1), uuid (GPU-..., MIG-...), type-index (gpu0, mig0:1);
    /// repeatable (default: index and uuid).
    #[arg(long = "device-name-strategy", value_enum)]
    strategies: Vec<StrategyArg>,
    /// Do not add the `all` device.
    #[arg(long)]
    no_all_device: bool,
    /// Extra library directory inside the driver root; repeatable.
    #[arg(long = "library-search-path")]
    library_search_paths: Vec<PathBuf>,
    /// Path of gpu-hook for the create-symlinks, update-ldcache and enable-cuda-compat hooks.
    #[arg(long, default_value = DEFAULT_HOOK_PATH)]
    hook_path: String,
    /// Leave a hook out of the spec; repeatable. Without create-symlinks, SONAME paths
    /// (libcuda.so.1) are bind mounts of the library instead.
    #[arg(long = "disable-hook", value_enum)]
    disable_hooks: Vec<HookArg>,
    /// cdiVersion to declare (default: the minimum the content needs).
    #[arg(long, value_parser = parse_version)]
    spec_version: Option<Version>,
    /// libnvidia-ml.so.1 to load (default: the driver root's, then the loader's).
    #[arg(long)]
    nvml_lib: Option<PathBuf>,
    /// Where NVIDIA GPU facts come from: auto (NVML, else procfs/sysfs), nvml, procfs.
    #[arg(long, value_enum, default_value = "auto")]
    discovery: DiscoveryArg,
    /// sysfs root (tests).
    #[arg(long, hide = true, default_value = "/sys", env = "CDI_GEN_SYSFS_ROOT")]
    sysfs_root: PathBuf,
    /// procfs root (tests).
    #[arg(
        long,
        hide = true,
        default_value = "/proc",
        env = "CDI_GEN_PROCFS_ROOT"
    )]
    procfs_root: PathBuf,
}

fn parse_version(s: &str) -> Result<Version, String> {
    let v: Version = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_legacy() {
        return Err(format!("cdiVersion {v} is legacy; use 0.3.0 or newer"));
    }
    Ok(v)
}

impl GenerateArgs {
    fn options(&self) -> GenerateOptions {
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
        GenerateOptions {
            vendor: match self.vendor {
                VendorArg::Nvidia => Vendor::Nvidia,
                VendorArg::Amd => Vendor::Amd,
            },
            class: self.class.clone(),
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
                mode: match self.discovery {
                    DiscoveryArg::Auto => DiscoveryMode::Auto,
                    DiscoveryArg::Nvml => DiscoveryMode::Nvml,
                    DiscoveryArg::Procfs => DiscoveryMode::Procfs,
                },
                strategies,
                library_search_paths: self.library_search_paths.clone(),
                hooks: HookConfig {
                    path: self.hook_path.clone(),
                    disabled,
                },
            },
        }
    }
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("cdi_gen={level},{level}"))
        .with_context(|| format!("--log-level {level:?} is not a log level"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    Ok(())
}

fn run_generate(args: &GenerateArgs) -> i32 {
    let opts = args.options();
    let mut warnings = Vec::new();
    let result = cdi_gen::generate(&opts, &mut warnings);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    match result {
        Ok(g) => {
            if let Err(e) = cdi_gen::write(&g, opts.output.as_deref()) {
                tracing::error!("{e}");
                return e.exit_code();
            }
            tracing::info!("{}", g.summary);
            exit::OK
        }
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}

fn print(report: &cdi_gen::inspect::Report) -> i32 {
    for l in &report.out {
        println!("{l}");
    }
    for l in &report.err {
        eprintln!("{l}");
    }
    if report.ok {
        exit::OK
    } else {
        exit::INVALID_SPEC
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log_level) {
        eprintln!("cdi-gen: {e:#}");
        return ExitCode::from(exit::USAGE as u8);
    }
    let code = match &cli.command {
        None => run_generate(&cli.generate),
        Some(Command::Generate(a)) => run_generate(a),
        Some(Command::List { spec_dirs }) => {
            let dirs = if spec_dirs.is_empty() {
                cdi_specs::registry::DEFAULT_SPEC_DIRS
                    .iter()
                    .map(PathBuf::from)
                    .collect()
            } else {
                spec_dirs.clone()
            };
            print(&cdi_gen::inspect::list(&dirs))
        }
        Some(Command::Validate { max_version, files }) => {
            print(&cdi_gen::inspect::validate_files(files, *max_version))
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
