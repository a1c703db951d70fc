//! `cdi-specs`: our own model of CDI (Container Device Interface) specs, 0.3.0 to 1.1.0.
//!
//! Hand-written on purpose: the existing `container-device-interface` crate parses specs
//! and injects them into OCI specs, but a generator such as `cdi-gen` needs more: strict,
//! versioned validation whose errors name the file, the device and the field; the minimum
//! `cdiVersion` a spec's content needs (older engines reject newer versions); and
//! deterministic, byte-identical output. That crate is used only as a test oracle.
//!
//! Modules: [`types`] (the model), [`parse`] (strict JSON/YAML in and out),
//! [`mod@validate`], [`version`], [`names`] (qualified names and annotations), [`registry`]
//! (spec directories), [`plan`] (the planning currency: edits plus what CDI cannot say),
//! [`mod@write`] (atomic writes), [`mod@compose`] (the composition rules both engines
//! share), [`apply`] (edits into an OCI spec) and
//! [`normalize`] (deterministic ordering).

pub mod apply;
pub mod compose;
pub mod names;
pub mod normalize;
pub mod parse;
pub mod plan;
pub mod registry;
pub mod types;
pub mod validate;
pub mod version;
pub mod write;

pub use apply::{apply_devices, ApplyError};
pub use compose::{compose, ComposeError, Composed};
pub use names::{parse_qualified_name, NameError, QualifiedName};
pub use parse::{Format, ParseError};
pub use plan::{DeviceRule, Library, Plan, Replace};
pub use registry::{Registry, RegistryError};
pub use types::{
    ContainerEdits, Device, DeviceNode, Hook, HostNode, IntelRdt, Mount, NetDevice, Spec,
};
pub use validate::{validate, ValidateError};
pub use version::{minimum_version, Version, VersionError};
pub use write::{write_atomic, write_spec, WriteError};

#[cfg(test)]
mod tests;
