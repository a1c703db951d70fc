//! Spec directories and the device registry engines build from them: `/etc/cdi` then
//! `/var/run/cdi` (a later directory wins at the same qualified name; the same name twice
//! at one priority is a conflict and the device is dropped), `*.json`/`*.yaml` only, not
//! recursive; a bad file is recorded with its error and does not stop the others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::names::{parse_kind, parse_qualified_name, NameError};
use crate::parse::{load_file, ParseError};
use crate::types::{Device, Spec};
use crate::validate::validate;
use crate::version::Version;

/// Where engines look for specs, lowest priority first.
pub const DEFAULT_SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// Errors of the registry: unreadable directories, bad files, conflicts, unknown devices.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// A spec directory exists but cannot be listed.
    #[error("{dir}: cannot list the CDI spec directory: {source}; check its permissions", dir = .dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A spec file that does not load (parse or validation error).
    #[error(transparent)]
    Spec(#[from] ParseError),
    /// The same qualified device in two specs of the same directory priority.
    #[error("conflicting device {name:?}: defined by both {first} and {second} in directories of the same priority; engines drop it, so keep one definition", first = .first.display(), second = .second.display())]
    Conflict {
        /// The qualified name.
        name: String,
        /// The spec that defined it first.
        first: PathBuf,
        /// The spec that defined it again.
        second: PathBuf,
    },
    /// A requested name that is not a qualified device name.
    #[error("unresolvable CDI device {name:?}: {source}")]
    BadName {
        /// The name.
        name: String,
        /// Why it is not a qualified name.
        source: NameError,
    },
    /// A well-formed name that no loaded spec provides.
    #[error("unresolvable CDI device {name:?}: {why}")]
    Unresolvable {
        /// The qualified name.
        name: String,
        /// Why (not found, or dropped after a conflict), and what to do.
        why: String,
    },
}

/// A spec that loaded and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSpec {
    /// The file it came from.
    pub path: PathBuf,
    /// Index of its directory in the registry's list (higher wins).
    pub priority: usize,
    /// Its declared version.
    pub version: Version,
    /// Vendor part of its kind.
    pub vendor: String,
    /// Class part of its kind.
    pub class: String,
    /// The spec.
    pub spec: Spec,
}

/// A resolved device: the spec it belongs to and the device itself.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    /// Index of the spec in [`Registry::specs`] (identifies the spec for spec-wide edits).
    pub spec_index: usize,
    /// The spec.
    pub spec: &'a LoadedSpec,
    /// The device.
    pub device: &'a Device,
}

/// Specs loaded from a list of directories, and the devices they provide.
#[derive(Debug, Default)]
pub struct Registry {
    dirs: Vec<PathBuf>,
    specs: Vec<LoadedSpec>,
    devices: BTreeMap<String, (usize, usize)>,
    conflicts: BTreeSet<String>,
    errors: Vec<RegistryError>,
}

impl Registry {
    /// Loads the specs of `dirs` (lowest priority first). Missing directories are skipped.
    pub fn load<P: AsRef<Path>>(dirs: &[P]) -> Registry {
        let mut r = Registry {
            dirs: dirs.iter().map(|d| d.as_ref().to_path_buf()).collect(),
            ..Registry::default()
        };
        r.refresh();
        r
    }

    /// Builds a registry from specs already in memory, `(path, priority, spec)`; each is
    /// validated as if loaded from `path`.
    pub fn from_specs<I>(specs: I) -> Registry
    where
        I: IntoIterator<Item = (PathBuf, usize, Spec)>,
    {
        let mut r = Registry::default();
        for (path, priority, spec) in specs {
            match validate(&spec, Some(&path)) {
                Ok(version) => r.add(path, priority, version, spec),
                Err(e) => r
                    .errors
                    .push(RegistryError::Spec(ParseError::Invalid(Box::new(e)))),
            }
        }
        r.finish();
        r
    }

    /// Rescans the directories.
    pub fn refresh(&mut self) {
        self.specs.clear();
        self.devices.clear();
        self.conflicts.clear();
        self.errors.clear();
        let dirs = self.dirs.clone();
        for (priority, dir) in dirs.iter().enumerate() {
            for path in self.spec_files(dir) {
                match load_file(&path) {
                    Ok((spec, version)) => self.add(path, priority, version, spec),
                    Err(e) => self.errors.push(RegistryError::Spec(e)),
                }
            }
        }
        self.finish();
    }

    /// The `*.json` and `*.yaml` files directly in `dir`, sorted by name.
    fn spec_files(&mut self, dir: &Path) -> Vec<PathBuf> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(source) => {
                self.errors.push(RegistryError::ReadDir {
                    dir: dir.to_path_buf(),
                    source,
                });
                return Vec::new();
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(source) => {
                    self.errors.push(RegistryError::ReadDir {
                        dir: dir.to_path_buf(),
                        source,
                    });
                    continue;
                }
            };
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str());
            if !matches!(ext, Some("json") | Some("yaml")) {
                continue;
            }
            // Follow symlinks; skip directories and anything that is not a regular file
            // (opening a FIFO would block).
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => files.push(path),
                Ok(_) => {}
                Err(source) => self
                    .errors
                    .push(RegistryError::Spec(ParseError::Io { file: path, source })),
            }
        }
        files.sort();
        files
    }

    fn add(&mut self, path: PathBuf, priority: usize, version: Version, spec: Spec) {
        let (vendor, class) = match parse_kind(&spec.kind) {
            Ok((v, c)) => (v.to_string(), c.to_string()),
            // Unreachable after validation; keep going without the spec.
            Err(_) => return,
        };
        let index = self.specs.len();
        for (d, dev) in spec.devices.iter().enumerate() {
            let name = format!("{vendor}/{class}={}", dev.name);
            if let Some(&(other, _)) = self.devices.get(&name) {
                let old = &self.specs[other];
                if priority < old.priority {
                    continue;
                }
                if priority == old.priority {
                    self.errors.push(RegistryError::Conflict {
                        name: name.clone(),
                        first: old.path.clone(),
                        second: path.clone(),
                    });
                    self.conflicts.insert(name);
                    continue;
                }
            }
            self.devices.insert(name, (index, d));
        }
        self.specs.push(LoadedSpec {
            path,
            priority,
            version,
            vendor,
            class,
            spec,
        });
    }

    /// Engines drop every conflicting name at the end of a scan.
    fn finish(&mut self) {
        for name in &self.conflicts {
            self.devices.remove(name);
        }
    }

    /// The directories, lowest priority first.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The specs that loaded, in scan order.
    pub fn specs(&self) -> &[LoadedSpec] {
        &self.specs
    }

    /// Files that did not load, unreadable directories and conflicts, in scan order.
    pub fn errors(&self) -> &[RegistryError] {
        &self.errors
    }

    /// Qualified names dropped because of a conflict.
    pub fn conflicts(&self) -> impl Iterator<Item = &str> {
        self.conflicts.iter().map(String::as_str)
    }

    /// Every resolvable qualified device name, sorted.
    pub fn device_names(&self) -> impl Iterator<Item = &str> {
        self.devices.keys().map(String::as_str)
    }

    /// Resolves `vendor/class=name` to its spec and device.
    pub fn resolve(&self, name: &str) -> Result<Resolved<'_>, RegistryError> {
        if let Err(source) = parse_qualified_name(name) {
            return Err(RegistryError::BadName {
                name: name.to_string(),
                source,
            });
        }
        let found = self
            .devices
            .get(name)
            .and_then(|&(s, d)| Some((s, self.specs.get(s)?, d)))
            .and_then(|(s, spec, d)| Some((s, spec, spec.spec.devices.get(d)?)));
        match found {
            Some((spec_index, spec, device)) => Ok(Resolved {
                spec_index,
                spec,
                device,
            }),
            None => {
                let why = if self.conflicts.contains(name) {
                    "it is defined twice at the same priority and was dropped; keep one definition"
                        .to_string()
                } else {
                    let dirs: Vec<String> =
                        self.dirs.iter().map(|d| d.display().to_string()).collect();
                    format!(
                        "no loaded spec defines it (spec directories: {}); generate a spec for it or check the spec errors",
                        if dirs.is_empty() { "none".to_string() } else { dirs.join(", ") }
                    )
                };
                Err(RegistryError::Unresolvable {
                    name: name.to_string(),
                    why,
                })
            }
        }
    }
}
