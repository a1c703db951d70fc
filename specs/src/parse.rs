//! Strict reading and deterministic writing of specs in JSON and YAML (`serde_json`,
//! `serde-saphyr`). The format follows the extension: `.json` or `.yaml`; engines do not
//! load `.yml`. An unknown key is an error naming the key and the file.

use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::types::Spec;
use crate::validate::{validate, ValidateError};
use crate::version::Version;

/// Largest spec file read (real specs are a few hundred KiB at most).
pub const MAX_SPEC_SIZE: u64 = 64 * 1024 * 1024;

/// A spec file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON (`.json`).
    Json,
    /// YAML (`.yaml`).
    Yaml,
}

impl Format {
    /// The format engines use for `path`: `.json` or `.yaml`; anything else is an error
    /// (`.yml` included: engines skip such files).
    pub fn from_path(path: &Path) -> Result<Format, ParseError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Ok(Format::Json),
            Some("yaml") => Ok(Format::Yaml),
            _ => Err(ParseError::Extension {
                file: path.to_path_buf(),
            }),
        }
    }

    /// The extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Yaml => "yaml",
        }
    }
}

/// Errors reading or writing spec text.
#[derive(Debug, Error)]
pub enum ParseError {
    /// The file name does not end in `.json` or `.yaml`.
    #[error("{file}: not a CDI spec file name: engines load only *.json and *.yaml (not .yml); rename it", file = .file.display())]
    Extension {
        /// The file.
        file: PathBuf,
    },
    /// The file cannot be read.
    #[error("{file}: cannot read the spec: {source}", file = .file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is implausibly large.
    #[error("{file}: the spec is larger than {MAX_SPEC_SIZE} bytes; this is not a CDI spec", file = .file.display())]
    TooLarge {
        /// The file.
        file: PathBuf,
    },
    /// Invalid JSON, or JSON that does not fit the CDI model (e.g. an unknown key).
    #[error("{file}: not a valid CDI JSON spec: {message}; fix the spec (loaders are strict: unknown keys and wrong value types are errors)")]
    Json {
        /// The file, or `<input>`.
        file: String,
        /// serde_json's message, with line and column.
        message: String,
    },
    /// Invalid YAML, or YAML that does not fit the CDI model (e.g. an unknown key).
    #[error("{file}: not a valid CDI YAML spec: {message}; fix the spec (loaders are strict: unknown keys and wrong value types are errors)")]
    Yaml {
        /// The file, or `<input>`.
        file: String,
        /// serde-saphyr's message, with line and column.
        message: String,
        /// The message with a source snippet, for terminals.
        snippet: String,
    },
    /// Serialization failed (only possible for values serde cannot represent).
    #[error("cannot write the spec as {format:?}: {message}")]
    Serialize {
        /// The format.
        format: Format,
        /// Why.
        message: String,
    },
    /// The spec parsed but breaks a CDI rule.
    #[error(transparent)]
    Invalid(#[from] Box<ValidateError>),
}

fn display_name(file: Option<&Path>) -> String {
    file.map(|p| p.display().to_string())
        .unwrap_or_else(|| "<input>".to_string())
}

/// Parses JSON strictly (no validation beyond the model's shape).
pub fn from_json(text: &str, file: Option<&Path>) -> Result<Spec, ParseError> {
    serde_json::from_str(text).map_err(|e| ParseError::Json {
        file: display_name(file),
        message: e.to_string(),
    })
}

/// Parses YAML strictly (unknown and duplicate keys are errors).
pub fn from_yaml(text: &str, file: Option<&Path>) -> Result<Spec, ParseError> {
    serde_saphyr::from_str(text).map_err(|e| {
        let name = display_name(file);
        let mut options = serde_saphyr::RenderOptions::default();
        options.source_name = Some(&name);
        ParseError::Yaml {
            message: e.without_snippet().to_string(),
            snippet: e.render_with_options(options),
            file: name,
        }
    })
}

/// Parses `text` in `format`.
pub fn from_str(text: &str, format: Format, file: Option<&Path>) -> Result<Spec, ParseError> {
    match format {
        Format::Json => from_json(text, file),
        Format::Yaml => from_yaml(text, file),
    }
}

/// Reads and parses a spec file (format from its extension), without validating it.
pub fn read_file(path: &Path) -> Result<Spec, ParseError> {
    let format = Format::from_path(path)?;
    let io = |source| ParseError::Io {
        file: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_SPEC_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_SPEC_SIZE {
        return Err(ParseError::TooLarge {
            file: path.to_path_buf(),
        });
    }
    from_str(&text, format, Some(path))
}

/// Reads, parses and validates a spec file the way engines load it; returns the spec and
/// its declared version.
pub fn load_file(path: &Path) -> Result<(Spec, Version), ParseError> {
    let spec = read_file(path)?;
    let version = validate(&spec, Some(path)).map_err(Box::new)?;
    Ok((spec, version))
}

/// Serializes as pretty JSON with a final newline (deterministic: fields in model order,
/// annotations sorted by key).
pub fn to_json(spec: &Spec) -> Result<String, ParseError> {
    let mut s = serde_json::to_string_pretty(spec).map_err(|e| ParseError::Serialize {
        format: Format::Json,
        message: e.to_string(),
    })?;
    s.push('\n');
    Ok(s)
}

/// Serializes as block YAML (deterministic; strings that YAML 1.1 readers would take for
/// numbers, booleans or null are quoted).
pub fn to_yaml(spec: &Spec) -> Result<String, ParseError> {
    let mut s = serde_saphyr::to_string(spec).map_err(|e| ParseError::Serialize {
        format: Format::Yaml,
        message: e.to_string(),
    })?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// Serializes in `format`.
pub fn to_string(spec: &Spec, format: Format) -> Result<String, ParseError> {
    match format {
        Format::Json => to_json(spec),
        Format::Yaml => to_yaml(spec),
    }
}
