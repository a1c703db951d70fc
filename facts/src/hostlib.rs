//! Facts about a host library the hooks may inject: its real file, the names along its
//! symlink chain (for vendor version numbers), and its ELF identity.

use std::path::{Path, PathBuf};

use crate::abi;
use crate::elf::{self, ElfFacts};

/// Largest ELF file the hooks will parse (host MPI libraries reach 50 MiB).
pub const MAX_ELF_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum HostLibError {
    #[error("host library {path} does not exist or cannot be read: {source}; fix the path in the hook's configuration (hooks.d env)")]
    Missing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("host library {path} is not a usable ELF shared object: {message}")]
    NotElf { path: PathBuf, message: String },
    #[error("host library path {0} must be absolute")]
    Relative(PathBuf),
}

#[derive(Debug, Clone)]
pub struct HostLib {
    /// The path as configured.
    pub path: PathBuf,
    /// The real file after following symlinks.
    pub real: PathBuf,
    /// File names from the configured path to the real file.
    pub chain: Vec<String>,
    pub facts: ElfFacts,
    pub linker_name: String,
    pub version: Vec<u32>,
}

impl HostLib {
    /// The name the library is known by in a loader cache: its SONAME, else its file name.
    pub fn soname(&self) -> String {
        self.facts
            .soname
            .clone()
            .unwrap_or_else(|| self.chain.first().cloned().unwrap_or_default())
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Inspects a host library (host paths are trusted; symlinks followed normally).
pub fn inspect(path: &Path) -> Result<HostLib, HostLibError> {
    if !path.is_absolute() {
        return Err(HostLibError::Relative(path.to_owned()));
    }
    let missing = |source| HostLibError::Missing {
        path: path.to_owned(),
        source,
    };
    let mut chain = vec![file_name(path)];
    let mut cur = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&cur) {
            Ok(t) => {
                cur = if t.is_absolute() {
                    t
                } else {
                    cur.parent().unwrap_or(Path::new("/")).join(t)
                };
                chain.push(file_name(&cur));
            }
            Err(_) => break,
        }
    }
    let real = std::fs::canonicalize(path).map_err(missing)?;
    let f = std::fs::File::open(&real).map_err(missing)?;
    let facts = elf::read_file(&f, MAX_ELF_BYTES).map_err(|e| HostLibError::NotElf {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let parsed = abi::parse_lib_name(chain.first().map(String::as_str).unwrap_or(""))
        .or_else(|| facts.soname.as_deref().and_then(abi::parse_lib_name));
    let linker_name = parsed
        .map(|p| p.linker_name)
        .unwrap_or_else(|| file_name(path));
    let mut names: Vec<&str> = chain.iter().map(String::as_str).collect();
    if let Some(s) = facts.soname.as_deref() {
        names.insert(1.min(names.len()), s);
    }
    let version = abi::version_from_chain(names);
    Ok(HostLib {
        path: path.to_owned(),
        real,
        chain,
        facts,
        linker_name,
        version,
    })
}
