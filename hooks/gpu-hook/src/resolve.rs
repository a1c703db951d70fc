//! From requested CDI names to container edits: one model (`cdi_specs` container edits),
//! two sources. Spec files (`/etc/cdi`, `/var/run/cdi`, engine priority rules) through the
//! `cdi_specs` [`Registry`], or live discovery through `gpu_discover` (the same code that writes
//! the specs, so both give the same edits). `auto` uses spec files for the kinds they
//! define and discovers the others.

use std::path::PathBuf;

use cdi_specs::types::{ContainerEdits, Spec};
use cdi_specs::Registry;
use gpu_discover::edits::{assemble, AssembleOptions, HookConfig};
use gpu_discover::nvidia::{self, DiscoveryMode, NameStrategy, NvidiaOptions};
use gpu_discover::Roots;

use crate::cuda::Ver;
use crate::request::{AMD_KIND, NVIDIA_KIND};

/// Where edits come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// Spec files for the kinds they define, live discovery for the others.
    Auto,
    /// Spec files only.
    Spec,
    /// Live discovery only.
    Discover,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("NVIDIA GPU discovery failed: {0}")]
    Nvidia(#[from] gpu_discover::nvidia::NvidiaError),
    #[error("AMD GPU discovery failed: {0}")]
    Amd(#[from] gpu_discover::amd::AmdError),
    #[error("the discovered {kind} devices do not form a valid spec: {source}")]
    Assemble {
        kind: String,
        #[source]
        source: gpu_discover::edits::AssembleError,
    },
    #[error("{what}; available: {available}")]
    Unresolvable { what: String, available: String },
    #[error("no spec defines the CDI kind {kind} in {dirs} and live discovery is off (--source spec); generate a spec (cdi-gen) or use --source auto")]
    NoSpec { kind: String, dirs: String },
    #[error("live discovery knows only {NVIDIA_KIND} and {AMD_KIND}; {kind} needs a spec file in {dirs}")]
    UnknownKind { kind: String, dirs: String },
}

/// Options of resolution.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    pub source: Source,
    /// Spec directories, lowest priority first.
    pub spec_dirs: Vec<PathBuf>,
    pub roots: Roots,
    pub nvml_lib: Option<PathBuf>,
    /// `cdi-gen`, run as a clean child process to query NVML: the hook never loads
    /// driver code itself (it is static and must stay single-threaded for `setns`).
    pub nvml_helper: PathBuf,
    pub discovery: DiscoveryMode,
    /// Path of gpu-hook written into discovered specs' hooks.
    pub hook_path: String,
}

/// Resolved edits, in engine order, with facts about the NVIDIA driver when known.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// (label, edits): spec-wide edits of each spec before its first device.
    pub edits: Vec<(String, ContainerEdits)>,
    /// Driver version, when discovery ran.
    pub driver: Option<Ver>,
    /// CUDA version from NVML, when discovery ran through NVML.
    pub cuda: Option<Ver>,
    /// Warnings of discovery and loading.
    pub warnings: Vec<String>,
}

fn dirs_text(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs gpu_discover discovery for `kind`; returns the spec and driver facts.
pub fn discover(
    kind: &str,
    opts: &ResolveOptions,
    warnings: &mut Vec<String>,
) -> Result<(Spec, Option<Ver>, Option<Ver>), ResolveError> {
    let strategies = vec![NameStrategy::Index, NameStrategy::Uuid];
    let aopts = AssembleOptions {
        kind: kind.to_string(),
        all_device: true,
        spec_version: None,
    };
    let assemble_err = |source| ResolveError::Assemble {
        kind: kind.to_string(),
        source,
    };
    if kind == NVIDIA_KIND {
        let nopts = NvidiaOptions {
            nvml_lib: opts.nvml_lib.clone(),
            nvml_helper: Some(opts.nvml_helper.clone()),
            mode: opts.discovery,
            strategies,
            library_search_paths: Vec::new(),
            mps_pipe_dir: None,
            hooks: HookConfig {
                path: opts.hook_path.clone(),
                ..HookConfig::default()
            },
        };
        let d = nvidia::discover(&opts.roots, &nopts, warnings)?;
        let driver = d
            .facts
            .driver_version
            .as_deref()
            .or(Some(d.files.version.as_str()))
            .and_then(Ver::parse);
        let cuda = d.facts.cuda_version.as_deref().and_then(Ver::parse);
        let spec = assemble(d.devices, d.global, &aopts).map_err(assemble_err)?;
        Ok((spec, driver, cuda))
    } else if kind == AMD_KIND {
        let devs = gpu_discover::amd::discover(&opts.roots, &strategies, warnings)?;
        let spec = assemble(devs, ContainerEdits::default(), &aopts).map_err(assemble_err)?;
        Ok((spec, None, None))
    } else {
        Err(ResolveError::UnknownKind {
            kind: kind.to_string(),
            dirs: dirs_text(&opts.spec_dirs),
        })
    }
}

/// Resolves `names` (qualified CDI names, request order) to edits.
pub fn resolve(names: &[String], opts: &ResolveOptions) -> Result<Resolved, ResolveError> {
    let mut out = Resolved::default();
    let loaded = if opts.source == Source::Discover {
        Registry::default()
    } else {
        Registry::load(&opts.spec_dirs)
    };
    for e in loaded.errors() {
        out.warnings.push(format!("CDI spec not loaded: {e}"));
    }
    let mut specs: Vec<(PathBuf, usize, Spec)> = loaded
        .specs()
        .iter()
        .map(|s| (s.path.clone(), s.priority, s.spec.clone()))
        .collect();
    let kinds: std::collections::BTreeSet<&str> = names
        .iter()
        .filter_map(|n| n.split_once('=').map(|(k, _)| k))
        .collect();
    for kind in kinds {
        let prefix = format!("{kind}=");
        if loaded.device_names().any(|n| n.starts_with(&prefix)) {
            continue;
        }
        if opts.source == Source::Spec {
            return Err(ResolveError::NoSpec {
                kind: kind.to_string(),
                dirs: dirs_text(&opts.spec_dirs),
            });
        }
        let (spec, driver, cuda) = discover(kind, opts, &mut out.warnings)?;
        out.driver = out.driver.or(driver);
        out.cuda = out.cuda.or(cuda);
        specs.push((
            PathBuf::from(format!("<live discovery of {kind}>")),
            0,
            spec,
        ));
    }
    let registry = Registry::from_specs(specs);
    let edits = cdi_specs::apply::collect_edits(&registry, names).map_err(|e| {
        // The caller logs warnings only on success: here they explain the failure
        // (e.g. NVML unusable, so no MIG UUIDs).
        for w in &out.warnings {
            tracing::warn!("{w}");
        }
        let mut avail: Vec<&str> = registry.device_names().collect();
        avail.sort();
        ResolveError::Unresolvable {
            what: e.to_string(),
            available: avail.join(", "),
        }
    })?;
    out.edits = edits.into_iter().map(|(l, e)| (l, e.clone())).collect();
    Ok(out)
}
