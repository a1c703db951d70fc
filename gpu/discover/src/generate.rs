//! `cdi-gen` (generate): options, running the vendor's discovery, assembling the spec and
//! writing it (atomically to `--output`, or to standard output) in YAML or JSON.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cdi_specs::parse::{to_string, Format};
use cdi_specs::types::{ContainerEdits, Spec};
use cdi_specs::version::Version;

use crate::edits::{assemble, AssembleError, AssembleOptions, HookConfig};
use crate::nvidia::hpc::{self, DeviceClass};
use crate::nvidia::{self, DiscoveryMode, NameStrategy, NvidiaOptions};
use crate::roots::Roots;
use crate::{amd, Error};

/// The GPU vendor whose devices are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// NVIDIA (`nvidia.com`).
    Nvidia,
    /// AMD (`amd.com`).
    Amd,
}

impl Vendor {
    /// The CDI vendor of the kind.
    pub fn domain(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia.com",
            Vendor::Amd => "amd.com",
        }
    }
}

/// Everything `cdi-gen` (generate) needs.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Vendor.
    pub vendor: Vendor,
    /// Class of the kind (`gpu`).
    pub class: String,
    /// Output format; `None`: from the output extension, else YAML.
    pub format: Option<Format>,
    /// Output file; `None`: standard output.
    pub output: Option<PathBuf>,
    /// Roots.
    pub roots: Roots,
    /// Add the `all` device.
    pub all_device: bool,
    /// Explicit cdiVersion.
    pub spec_version: Option<Version>,
    /// NVIDIA options (naming strategies, hooks... also used for AMD naming).
    pub nvidia: NvidiaOptions,
    /// NVIDIA device class: GPUs, or one of the HPC classes ([`DeviceClass`]).
    pub device_class: DeviceClass,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            vendor: Vendor::Nvidia,
            class: "gpu".to_string(),
            format: None,
            output: None,
            roots: Roots::default(),
            all_device: true,
            spec_version: None,
            nvidia: NvidiaOptions {
                mode: DiscoveryMode::Auto,
                strategies: vec![NameStrategy::Index, NameStrategy::Uuid],
                hooks: HookConfig::default(),
                ..NvidiaOptions::default()
            },
            device_class: DeviceClass::Gpu,
        }
    }
}

/// A generated spec.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The spec.
    pub spec: Spec,
    /// Its text.
    pub text: String,
    /// Its format.
    pub format: Format,
    /// One line for the log: source, driver, counts, time.
    pub summary: String,
}

/// The output format: explicit, else from the output file's extension, else YAML. A file
/// name engines would not load (`.yml`, no extension) gets a warning.
pub fn output_format(
    explicit: Option<Format>,
    output: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Format {
    let from_ext = output.and_then(|p| Format::from_path(p).ok());
    if let Some(p) = output {
        if from_ext.is_none() {
            warnings.push(format!(
                "{}: engines load only *.json and *.yaml spec files (not .yml); the spec is written but will not be loaded from this name",
                p.display()
            ));
        }
    }
    explicit.or(from_ext).unwrap_or(Format::Yaml)
}

/// Discovers devices and builds the spec text (writes nothing). Problems that do not stop
/// generation are appended to `warnings`, also when generation then fails.
pub fn generate(opts: &GenerateOptions, warnings: &mut Vec<String>) -> Result<Generated, Error> {
    let start = Instant::now();
    let format = output_format(opts.format, opts.output.as_deref(), warnings);
    let kind = format!("{}/{}", opts.vendor.domain(), opts.class);
    cdi_specs::names::parse_kind(&kind)
        .map_err(|e| Error::Usage(format!("--class {:?}: {e}", opts.class)))?;
    let hpc_class = opts.vendor == Vendor::Nvidia && opts.device_class != DeviceClass::Gpu;
    let aopts = AssembleOptions {
        kind,
        all_device: opts.all_device && (!hpc_class || opts.device_class.all_device()),
        spec_version: opts.spec_version,
    };
    let (devices, global, what) = match opts.vendor {
        Vendor::Nvidia if hpc_class => {
            let (d, looked) = hpc::discover(&opts.roots, opts.device_class, warnings);
            if d.is_empty() {
                return Err(AssembleError::NoDevices {
                    why: format!(
                        "{looked}; generate the {} spec only on nodes that have them",
                        opts.device_class.name()
                    ),
                }
                .into());
            }
            let what = format!(
                "{} {} devices under {}",
                d.len(),
                opts.device_class.name(),
                opts.roots.dev("/dev").display()
            );
            (d, ContainerEdits::default(), what)
        }
        Vendor::Nvidia => {
            let d = nvidia::discover(&opts.roots, &opts.nvidia, warnings)?;
            let migs: usize = d.facts.gpus.iter().map(|g| g.migs.len()).sum();
            let what = format!(
                "{} GPUs ({} MIG devices) from {}, driver {}, {} libraries",
                d.facts.gpus.len(),
                migs,
                d.facts.source,
                d.files.version,
                d.files.libraries.len()
            );
            (d.devices, d.global, what)
        }
        Vendor::Amd => {
            let d = amd::discover(&opts.roots, &opts.nvidia.strategies, warnings)?;
            let what = format!("{} AMD GPUs from sysfs", d.len());
            (d, ContainerEdits::default(), what)
        }
    };
    if devices.iter().all(|d| d.names.is_empty()) {
        return Err(AssembleError::NoDevices {
            why: format!(
                "{what}, but none could be offered (see the warnings above); fix them and regenerate"
            ),
        }
        .into());
    }
    let spec = assemble(devices, global, &aopts)?;
    let text = to_string(&spec, format)?;
    let summary = format!(
        "{} CDI devices, cdiVersion {}: {what}; {:.1} ms",
        spec.devices.len(),
        spec.cdi_version,
        start.elapsed().as_secs_f64() * 1000.0
    );
    Ok(Generated {
        spec,
        text,
        format,
        summary,
    })
}

/// Writes the generated text to `--output` (atomically, mode 0644) or standard output.
pub fn write(generated: &Generated, output: Option<&Path>) -> Result<(), Error> {
    match output {
        Some(p) => Ok(cdi_specs::write_atomic(p, generated.text.as_bytes())?),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(generated.text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(Error::Stdout)
        }
    }
}
