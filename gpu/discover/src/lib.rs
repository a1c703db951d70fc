//! GPU discovery: the library behind `cdi-gen` and gpu-hook's live discovery.
//!
//! Pipeline: *discover* facts (NVML or procfs/sysfs for NVIDIA, sysfs for AMD, the driver
//! root's files) through [`roots::Roots`] -> *plan* them as `cdi_specs` container edits
//! ([`edits`]) -> *write* the spec with the minimum cdiVersion, deterministically.
//! [`inspect`] implements `cdi-gen list` and `validate`, [`doctor`] `cdi-gen doctor`.
//!
//! NVML is loaded in this process only with the cargo feature `nvml` (cdi-gen enables
//! it); without it, NVML facts come from the `cdi-gen nvml-facts` helper child
//! ([`nvidia::helper`]) or from procfs/sysfs, so the static hooks carry no driver code.

pub mod amd;
pub mod doctor;
pub mod edits;
pub mod generate;
pub mod inspect;
pub mod nvidia;
pub mod roots;

use thiserror::Error;

pub use generate::{generate, write, GenerateOptions, Generated, Vendor};
pub use roots::Roots;

/// Exit codes of the `cdi-gen` binary.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// `validate`/`list`: a spec file does not load (or is newer than `--max-version`).
    pub const INVALID_SPEC: i32 = 1;
    /// Bad command line.
    pub const USAGE: i32 = 2;
    /// Discovery failed: no driver, no GPU, unreadable or corrupt procfs/sysfs files.
    pub const DISCOVERY: i32 = 3;
    /// The spec could not be written.
    pub const OUTPUT: i32 = 4;
    /// `--spec-version` is too old for the content.
    pub const SPEC_VERSION: i32 = 5;
    /// `doctor`: a spec is stale (does not match the node) or unsafe.
    pub const DOCTOR_PROBLEMS: i32 = crate::doctor::EXIT_PROBLEMS;
}

/// Errors of spec generation, each mapped to an exit code.
#[derive(Debug, Error)]
pub enum Error {
    /// A bad option value.
    #[error("{0}")]
    Usage(String),
    /// NVIDIA discovery failed.
    #[error(transparent)]
    Nvidia(#[from] nvidia::NvidiaError),
    /// AMD discovery failed.
    #[error(transparent)]
    Amd(#[from] amd::AmdError),
    /// The spec could not be assembled.
    #[error(transparent)]
    Assemble(#[from] edits::AssembleError),
    /// Serialization failed.
    #[error(transparent)]
    Serialize(#[from] cdi_specs::ParseError),
    /// Writing `--output` failed.
    #[error(transparent)]
    Write(#[from] cdi_specs::WriteError),
    /// Writing to standard output failed.
    #[error("cannot write the spec to standard output: {0}")]
    Stdout(std::io::Error),
}

impl Error {
    /// The process exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Nvidia(_) | Error::Amd(_) => exit::DISCOVERY,
            Error::Assemble(edits::AssembleError::VersionTooOld { .. }) => exit::SPEC_VERSION,
            Error::Assemble(edits::AssembleError::NoDevices { .. }) => exit::DISCOVERY,
            Error::Assemble(_) => exit::USAGE,
            Error::Serialize(_) | Error::Write(_) | Error::Stdout(_) => exit::OUTPUT,
        }
    }
}
