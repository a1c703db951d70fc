//! AMD discovery: GPUs bound to amdgpu (`/sys/module/amdgpu/drivers/pci:amdgpu/<bus id>`),
//! their `/dev/dri/cardN` and `renderDM` nodes from sysfs, and `/dev/kfd` for the GPUs
//! the KFD topology lists (`/sys/class/kfd/kfd/topology/nodes/*/properties`).

use std::collections::BTreeSet;

use cdi_specs::types::ContainerEdits;
use thiserror::Error;

use crate::edits::{device_node, NamedDevice, NodeFact, NodeLookup};
use crate::nvidia::facts::normalize_bus_id;
use crate::nvidia::procfs::{read_text, Majors};
use crate::nvidia::{drm_nodes, NameStrategy, DRM_MAJOR};
use crate::roots::Roots;

/// Errors of AMD discovery.
#[derive(Debug, Error)]
pub enum AmdError {
    /// amdgpu's sysfs directory is missing or lists no GPU.
    #[error("no AMD GPU found: {path} {why}; check that the amdgpu driver is loaded (lsmod | grep amdgpu) or fix --sysfs-root", path = .path.display())]
    NoGpus {
        /// The directory.
        path: std::path::PathBuf,
        /// What was wrong with it.
        why: String,
    },
}

/// One AMD GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmdGpu {
    /// Index in PCI bus order.
    pub index: u32,
    /// PCI bus id.
    pub bus_id: String,
    /// `cardN`/`renderDM` entries with their minors.
    pub drm: Vec<(String, u32)>,
    /// Unique id from sysfs (`unique_id`), if any.
    pub unique_id: Option<String>,
}

/// Reads the render minors listed by the KFD topology.
fn kfd_render_minors(roots: &Roots) -> BTreeSet<u32> {
    let dir = roots.sys("class/kfd/kfd/topology/nodes");
    let mut out = BTreeSet::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(text) = read_text(&e.path().join("properties")) else {
            continue;
        };
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("drm_render_minor ") {
                if let Ok(m) = v.trim().parse::<u32>() {
                    if m > 0 {
                        out.insert(m);
                    }
                }
            }
        }
    }
    out
}

/// Finds the GPUs bound to amdgpu.
pub fn gpus(roots: &Roots) -> Result<Vec<AmdGpu>, AmdError> {
    let dir = roots.sys("module/amdgpu/drivers/pci:amdgpu");
    let rd = std::fs::read_dir(&dir).map_err(|e| AmdError::NoGpus {
        path: dir.clone(),
        why: format!("cannot be read: {e}"),
    })?;
    let mut ids: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(normalize_bus_id))
        .collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Err(AmdError::NoGpus {
            path: dir,
            why: "lists no PCI device".to_string(),
        });
    }
    Ok(ids
        .into_iter()
        .enumerate()
        .map(|(i, bus_id)| {
            let unique_id = read_text(&roots.sys(&format!("bus/pci/devices/{bus_id}/unique_id")))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()));
            AmdGpu {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                drm: drm_nodes(roots, &bus_id),
                bus_id,
                unique_id,
            }
        })
        .collect())
}

/// Builds the AMD devices: per GPU its DRM nodes and `/dev/kfd`.
pub fn discover(
    roots: &Roots,
    strategies: &[NameStrategy],
    warnings: &mut Vec<String>,
) -> Result<Vec<NamedDevice>, AmdError> {
    let gpus = gpus(roots)?;
    let kfd = kfd_render_minors(roots);
    if kfd.is_empty() {
        warnings.push(format!(
            "the KFD topology ({}) lists no GPU; /dev/kfd is left out (ROCm compute will not work): load amdgpu with KFD support",
            roots.sys("class/kfd/kfd/topology/nodes").display()
        ));
    }
    let kfd_major = Majors::read(roots).ok().and_then(|m| m.get("kfd"));
    let mut out = Vec::new();
    for g in &gpus {
        let mut edits = ContainerEdits::default();
        for (node, minor) in &g.drm {
            let fact = NodeFact {
                path: format!("/dev/dri/{node}"),
                major: Some(DRM_MAJOR),
                minor: *minor,
            };
            push(roots, &fact, &mut edits, warnings);
        }
        if g.drm.is_empty() {
            warnings.push(format!(
                "AMD GPU {} ({}) has no DRM nodes in sysfs; it is left out",
                g.index, g.bus_id
            ));
            continue;
        }
        let render = g
            .drm
            .iter()
            .find(|(n, _)| n.starts_with("renderD"))
            .map(|(_, m)| *m);
        if render.is_some_and(|m| kfd.contains(&m)) {
            let fact = NodeFact {
                path: "/dev/kfd".to_string(),
                major: kfd_major,
                minor: 0,
            };
            push(roots, &fact, &mut edits, warnings);
        } else if !kfd.is_empty() {
            warnings.push(format!(
                "AMD GPU {} ({}) is not in the KFD topology; it gets no /dev/kfd",
                g.index, g.bus_id
            ));
        }
        let i = g.index.to_string();
        let mut names = Vec::new();
        for s in strategies {
            match s {
                NameStrategy::Index => names.push(i.clone()),
                NameStrategy::TypeIndex => names.push(format!("gpu{i}")),
                NameStrategy::Uuid => match &g.unique_id {
                    Some(u) => names.push(format!("GPU-{u}")),
                    None => warnings.push(format!(
                        "AMD GPU {i} has no unique_id in sysfs; it is named by index only"
                    )),
                },
            }
        }
        out.push(NamedDevice { names, edits });
    }
    Ok(out)
}

fn push(roots: &Roots, fact: &NodeFact, edits: &mut ContainerEdits, warnings: &mut Vec<String>) {
    match device_node(roots, fact) {
        NodeLookup::Present(n, w) => {
            crate::edits::warn_once(warnings, w);
            edits.device_nodes.push(n);
        }
        NodeLookup::FromFacts(n) => {
            warnings.push(format!(
                "{} does not exist on the host; written from sysfs facts so engines create it",
                roots.dev(&fact.path).display()
            ));
            edits.device_nodes.push(n);
        }
        NodeLookup::Missing => warnings.push(format!(
            "{} does not exist and its major is unknown; left out",
            roots.dev(&fact.path).display()
        )),
    }
}
