//! Atomic spec writes: a temporary file in the target directory (not named `*.json` or
//! `*.yaml`, so engines never load it half-written), fsync, mode 0644, rename over the
//! target, fsync of the directory.

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::parse::{to_string, Format, ParseError};
use crate::types::Spec;
use crate::validate::{validate, ValidateError};

/// Mode of written spec files.
pub const SPEC_FILE_MODE: u32 = 0o644;

/// Errors writing a spec file.
#[derive(Debug, Error)]
pub enum WriteError {
    /// The target has no parent directory or file name.
    #[error("{path}: not a file path; give a file path such as /etc/cdi/nvidia.yaml", path = .path.display())]
    BadPath {
        /// The target.
        path: PathBuf,
    },
    /// An I/O step failed.
    #[error("{path}: cannot write the spec ({step}): {source}; check that the directory exists and is writable", path = .path.display())]
    Io {
        /// The target.
        path: PathBuf,
        /// Which step failed.
        step: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The format cannot be chosen or serialization failed.
    #[error(transparent)]
    Format(#[from] ParseError),
    /// The spec is not valid; nothing was written.
    #[error("refusing to write an invalid spec: {0}")]
    Invalid(#[from] Box<ValidateError>),
}

/// Writes `contents` to `path` atomically with mode 0644.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let bad = || WriteError::BadPath {
        path: path.to_path_buf(),
    };
    let name = path.file_name().ok_or_else(bad)?;
    let dir = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Err(bad()),
    };
    let io = |step: &'static str| {
        move |source| WriteError::Io {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io("create temporary file"))?;
    tmp.write_all(contents).map_err(io("write"))?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(SPEC_FILE_MODE))
        .map_err(io("chmod 0644"))?;
    tmp.as_file().sync_all().map_err(io("fsync"))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .map_err(io("rename"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory"))?;
    Ok(())
}

/// Validates `spec`, serializes it in the format of `path`'s extension and writes it
/// atomically.
pub fn write_spec(path: &Path, spec: &Spec) -> Result<(), WriteError> {
    let format = Format::from_path(path)?;
    write_spec_as(path, spec, format)
}

/// Like [`write_spec`] with an explicit format.
pub fn write_spec_as(path: &Path, spec: &Spec, format: Format) -> Result<(), WriteError> {
    validate(spec, Some(path)).map_err(Box::new)?;
    let text = to_string(spec, format)?;
    write_atomic(path, text.as_bytes())
}
