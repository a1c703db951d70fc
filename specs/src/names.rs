//! CDI names: vendor, class and device name rules, fully-qualified device names
//! (`vendor.com/class=name`) and the CRI annotation form (`cdi.k8s.io/<plugin>_<id>`
//! whose value is a comma-separated list of qualified names).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Prefix of CDI device annotation keys.
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// Longest `<plugin>_<id>` part of an annotation key.
pub const MAX_ANNOTATION_NAME_LEN: usize = 63;

/// Errors about names.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// A vendor name breaks `^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$`.
    #[error("invalid vendor {name:?}: {why}; a vendor starts with a letter, ends with a letter or digit and otherwise holds only letters, digits, '_', '.' and '-' (e.g. nvidia.com)")]
    Vendor {
        /// The rejected name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A class name breaks `^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$`.
    #[error("invalid class {name:?}: {why}; a class starts with a letter, ends with a letter or digit and otherwise holds only letters, digits, '_', '.' and '-' (e.g. gpu)")]
    Class {
        /// The rejected name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A device name breaks `^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$`.
    #[error("invalid device name {name:?}: {why}; a device name starts and ends with a letter or digit and otherwise holds only letters, digits, '_', '.', ':' and '-' (e.g. 0, gpu0, 0:1)")]
    Device {
        /// The rejected name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A kind that is not `vendor/class`.
    #[error("invalid kind {kind:?}: expected vendor/class, e.g. nvidia.com/gpu")]
    Kind {
        /// The rejected kind.
        kind: String,
    },
    /// A qualified name that is not `vendor/class=name`.
    #[error(
        "invalid qualified device name {name:?}: expected vendor/class=name, e.g. nvidia.com/gpu=0"
    )]
    Qualified {
        /// The rejected name.
        name: String,
    },
    /// A bad annotation key part.
    #[error("invalid CDI annotation key {key:?}: {why}")]
    AnnotationKey {
        /// The key (or the part being built).
        key: String,
        /// What is wrong and what to change.
        why: String,
    },
    /// A value in a `cdi.k8s.io/` annotation that is not a qualified device name.
    #[error("invalid CDI annotation {key:?}: {entry:?} is not a qualified device name (vendor/class=name); the value is a comma-separated list of them")]
    AnnotationValue {
        /// The annotation key.
        key: String,
        /// The bad entry.
        entry: String,
    },
}

/// A fully-qualified CDI device name: `vendor/class=name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName {
    /// Vendor, e.g. `nvidia.com`.
    pub vendor: String,
    /// Class, e.g. `gpu`.
    pub class: String,
    /// Device name, e.g. `0`.
    pub name: String,
}

impl QualifiedName {
    /// Builds a qualified name after validating each part.
    pub fn new(vendor: &str, class: &str, name: &str) -> Result<Self, NameError> {
        validate_vendor(vendor)?;
        validate_class(class)?;
        validate_device_name(name)?;
        Ok(QualifiedName {
            vendor: vendor.to_string(),
            class: class.to_string(),
            name: name.to_string(),
        })
    }

    /// The kind, `vendor/class`.
    pub fn kind(&self) -> String {
        format!("{}/{}", self.vendor, self.class)
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}={}", self.vendor, self.class, self.name)
    }
}

impl FromStr for QualifiedName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_qualified_name(s)
    }
}

/// Parses and validates `vendor/class=name`.
pub fn parse_qualified_name(s: &str) -> Result<QualifiedName, NameError> {
    let bad = || NameError::Qualified {
        name: s.to_string(),
    };
    let (kind, name) = s.split_once('=').ok_or_else(bad)?;
    let (vendor, class) = kind.split_once('/').ok_or_else(bad)?;
    if vendor.is_empty() || class.is_empty() || name.is_empty() {
        return Err(bad());
    }
    QualifiedName::new(vendor, class, name)
}

/// True when `s` is a valid qualified device name.
pub fn is_qualified_name(s: &str) -> bool {
    parse_qualified_name(s).is_ok()
}

/// Splits and validates a kind `vendor/class`.
pub fn parse_kind(kind: &str) -> Result<(&str, &str), NameError> {
    let (vendor, class) = kind.split_once('/').ok_or_else(|| NameError::Kind {
        kind: kind.to_string(),
    })?;
    validate_vendor(vendor)?;
    validate_class(class)?;
    Ok((vendor, class))
}

fn check_name(
    name: &str,
    first_ok: fn(char) -> bool,
    first_desc: &str,
    inner_ok: fn(char) -> bool,
) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("it is empty".to_string());
    };
    if !first_ok(first) {
        return Err(format!("it starts with {first:?}, not {first_desc}"));
    }
    let Some(last) = name.chars().next_back() else {
        return Ok(());
    };
    if name.chars().count() > 1 && !last.is_ascii_alphanumeric() {
        return Err(format!("it ends with {last:?}, not a letter or digit"));
    }
    if let Some(c) = name.chars().find(|&c| !inner_ok(c)) {
        return Err(format!("it contains {c:?}"));
    }
    Ok(())
}

fn vendor_class_inner(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn device_inner(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// Validates a vendor name.
pub fn validate_vendor(name: &str) -> Result<(), NameError> {
    check_name(
        name,
        |c| c.is_ascii_alphabetic(),
        "a letter",
        vendor_class_inner,
    )
    .map_err(|why| NameError::Vendor {
        name: name.to_string(),
        why,
    })
}

/// Validates a class name.
pub fn validate_class(name: &str) -> Result<(), NameError> {
    check_name(
        name,
        |c| c.is_ascii_alphabetic(),
        "a letter",
        vendor_class_inner,
    )
    .map_err(|why| NameError::Class {
        name: name.to_string(),
        why,
    })
}

/// Validates a device name (MIG names such as `0:1` are valid).
pub fn validate_device_name(name: &str) -> Result<(), NameError> {
    check_name(
        name,
        |c| c.is_ascii_alphanumeric(),
        "a letter or digit",
        device_inner,
    )
    .map_err(|why| NameError::Device {
        name: name.to_string(),
        why,
    })
}

/// Builds the annotation key `cdi.k8s.io/<plugin>_<id>` (`/` in the id becomes `_`).
pub fn annotation_key(plugin: &str, device_id: &str) -> Result<String, NameError> {
    if plugin.is_empty() {
        return Err(NameError::AnnotationKey {
            key: String::new(),
            why: "the plugin name is empty; pass the name of the plugin that requests the devices"
                .to_string(),
        });
    }
    if device_id.is_empty() {
        return Err(NameError::AnnotationKey {
            key: plugin.to_string(),
            why: "the device id is empty; pass an id unique to this request".to_string(),
        });
    }
    let name = format!("{plugin}_{}", device_id.replace('/', "_"));
    let bad = |why: String| NameError::AnnotationKey {
        key: format!("{ANNOTATION_PREFIX}{name}"),
        why,
    };
    if name.len() > MAX_ANNOTATION_NAME_LEN {
        return Err(bad(format!(
            "<plugin>_<id> is {} bytes, more than {MAX_ANNOTATION_NAME_LEN}; use a shorter plugin name or id",
            name.len()
        )));
    }
    check_name(
        &name,
        |c| c.is_ascii_alphanumeric(),
        "a letter or digit",
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'),
    )
    .map_err(|why| {
        bad(format!(
            "{why}; it may hold only letters, digits, '_', '-' and '.'"
        ))
    })?;
    Ok(format!("{ANNOTATION_PREFIX}{name}"))
}

/// Builds an annotation value: the qualified names joined by `,` (each validated).
pub fn annotation_value<S: AsRef<str>>(devices: &[S]) -> Result<String, NameError> {
    let mut out = Vec::with_capacity(devices.len());
    for d in devices {
        let d = d.as_ref();
        parse_qualified_name(d)?;
        out.push(d);
    }
    Ok(out.join(","))
}

/// Adds (or replaces) the annotation for `plugin`/`device_id` requesting `devices`.
pub fn update_annotations<S: AsRef<str>>(
    annotations: &mut BTreeMap<String, String>,
    plugin: &str,
    device_id: &str,
    devices: &[S],
) -> Result<(), NameError> {
    let key = annotation_key(plugin, device_id)?;
    let value = annotation_value(devices)?;
    annotations.insert(key, value);
    Ok(())
}

/// The CDI devices requested through `cdi.k8s.io/` annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnotatedDevices {
    /// The `cdi.k8s.io/` keys found, sorted.
    pub keys: Vec<String>,
    /// The qualified device names, in key order then value order.
    pub devices: Vec<String>,
}

/// Extracts CDI device requests from annotations; other keys are ignored. Any entry
/// that is not a qualified name is an error naming the key and the entry.
pub fn parse_annotations<'a, I>(annotations: I) -> Result<AnnotatedDevices, NameError>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
{
    let mut sorted: Vec<(&String, &String)> = annotations
        .into_iter()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    sorted.sort();
    let mut out = AnnotatedDevices::default();
    for (key, value) in sorted {
        for entry in value.split(',') {
            if !is_qualified_name(entry) {
                return Err(NameError::AnnotationValue {
                    key: key.clone(),
                    entry: entry.to_string(),
                });
            }
            out.devices.push(entry.to_string());
        }
        out.keys.push(key.clone());
    }
    Ok(out)
}
