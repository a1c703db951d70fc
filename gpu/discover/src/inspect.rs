//! `cdi-gen list` (the devices engines would see in the spec directories, and every file
//! that does not load, with why) and `cdi-gen validate FILE...` (loads each file the way
//! engines do and says why one does not load, or which engines are too old for it).

use std::path::PathBuf;

use cdi_specs::parse::{load_file, ParseError};
use cdi_specs::registry::Registry;
use cdi_specs::validate::ValidateError;
use cdi_specs::version::{engine_max_version, Version, VersionError};

/// What a command prints: lines for stdout and stderr, and whether everything loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Lines for standard output.
    pub out: Vec<String>,
    /// Lines for standard error.
    pub err: Vec<String>,
    /// True when every file loaded (and fits `--max-version`).
    pub ok: bool,
}

/// Adds the engine note to a "needs cdiVersion X" error when X is too new for an engine.
fn explain(e: &ParseError) -> String {
    let mut msg = e.to_string();
    if let ParseError::Invalid(v) = e {
        if let ValidateError::Version {
            source: VersionError::TooOld { needed, .. },
            ..
        } = v.as_ref()
        {
            if let Some(note) = engine_max_version(*needed) {
                msg.push_str(&format!(" (note: {note})"));
            }
        }
    }
    msg
}

/// Validates spec files; `max` fails files that declare a newer cdiVersion.
pub fn validate_files(files: &[PathBuf], max: Option<Version>) -> Report {
    let mut r = Report {
        ok: true,
        ..Report::default()
    };
    for f in files {
        match load_file(f) {
            Ok((spec, version)) => {
                let names: Vec<&str> = spec.devices.iter().map(|d| d.name.as_str()).collect();
                let too_new = max.is_some_and(|m| version > m);
                let note = engine_max_version(version);
                if too_new {
                    r.ok = false;
                    r.err.push(format!(
                        "{}: declares cdiVersion {version}, newer than --max-version {}{}; regenerate it with cdi-gen (which writes the minimum version) or lower cdiVersion",
                        f.display(),
                        max.map(|m| m.to_string()).unwrap_or_default(),
                        note.map(|n| format!(" ({n})")).unwrap_or_default()
                    ));
                    continue;
                }
                r.out.push(format!(
                    "{}: ok: cdiVersion {version}, kind {}, {} devices: {}",
                    f.display(),
                    spec.kind,
                    names.len(),
                    names.join(", ")
                ));
                if let Some(n) = note {
                    r.err.push(format!(
                        "warning: {}: declares cdiVersion {version}: {n}",
                        f.display()
                    ));
                }
            }
            Err(e) => {
                r.ok = false;
                r.err
                    .push(format!("{}: does not load: {}", f.display(), explain(&e)));
            }
        }
    }
    r
}

/// Lists the devices of the spec directories (lowest priority first).
pub fn list(dirs: &[PathBuf]) -> Report {
    let reg = Registry::load(dirs);
    let mut r = Report {
        ok: reg.errors().is_empty(),
        ..Report::default()
    };
    for name in reg.device_names() {
        if let Ok(res) = reg.resolve(name) {
            r.out.push(format!(
                "{name}\t{}\tcdiVersion {}{}",
                res.spec.path.display(),
                res.spec.version,
                engine_max_version(res.spec.version)
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ));
        }
    }
    for e in reg.errors() {
        let msg = match e {
            cdi_specs::RegistryError::Spec(p) => explain(p),
            other => other.to_string(),
        };
        r.err.push(format!("error: {msg}"));
    }
    if r.out.is_empty() {
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        r.err.push(format!(
            "no CDI devices in {}; generate a spec with cdi-gen --output /etc/cdi/nvidia.yaml",
            dirs.join(", ")
        ));
    }
    r
}
