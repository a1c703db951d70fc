//! The device classes of HPC nodes besides GPUs, each discovered only when its nodes
//! exist under the device root: IMEX channels, GPUDirect Storage, GDRCopy and RDMA
//! (verbs), each its own CDI kind as nvidia-ctk names them; NVSwitch nodes (spec-wide).

use cdi_specs::types::ContainerEdits;

use super::procfs::Majors;
use super::push_node;
use crate::edits::{ro_mount, NamedDevice, NodeFact};
use crate::roots::Roots;

/// The device classes `cdi-gen --device-class` generates a spec for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceClass {
    /// GPUs and MIG devices (`nvidia.com/gpu`).
    #[default]
    Gpu,
    /// IMEX channels `/dev/nvidia-caps-imex-channels/channelN` (`nvidia.com/imex-channel=N`).
    ImexChannel,
    /// GPUDirect Storage: every `/dev/nvidia-fsN` and `/etc/cufile.json` (`nvidia.com/gds=all`).
    Gds,
    /// GDRCopy: `/dev/gdrdrv` (`nvidia.com/gdrcopy=all`).
    Gdrcopy,
    /// RDMA verbs: `/dev/infiniband/uverbsN` with `rdma_cm` (`nvidia.com/mofed=uverbsN`, `=all`).
    Mofed,
}

impl DeviceClass {
    /// The class of the CDI kind (`nvidia.com/<class>`), nvidia-ctk's names.
    pub fn name(self) -> &'static str {
        match self {
            DeviceClass::Gpu => "gpu",
            DeviceClass::ImexChannel => "imex-channel",
            DeviceClass::Gds => "gds",
            DeviceClass::Gdrcopy => "gdrcopy",
            DeviceClass::Mofed => "mofed",
        }
    }

    /// Whether assembly adds an `all` device (the single-device classes name theirs `all`).
    pub fn all_device(self) -> bool {
        matches!(
            self,
            DeviceClass::Gpu | DeviceClass::ImexChannel | DeviceClass::Mofed
        )
    }
}

/// `(number, file name)` of the entries of in-root directory `dir` named `<prefix><N>`,
/// sorted by number.
fn numbered(roots: &Roots, dir: &str, prefix: &str) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = match std::fs::read_dir(roots.dev(dir)) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.to_string();
                let num = n.strip_prefix(prefix)?.parse::<u32>().ok()?;
                Some((num, n))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Adds the node at `path` (stat'ed under the device root) when it exists as a
/// character device; `major` is the name of its driver in /proc/devices.
fn present_node(
    roots: &Roots,
    majors: &Majors,
    path: &str,
    major: &str,
    edits: &mut ContainerEdits,
    warnings: &mut Vec<String>,
) -> bool {
    let host = roots.dev(path);
    let Ok(md) = std::fs::metadata(&host) else {
        return false;
    };
    let Some(h) = cdi_specs::HostNode::from_metadata(&md) else {
        warnings.push(format!(
            "{} is not a device node; left out (remove it, the driver creates the node)",
            host.display()
        ));
        return false;
    };
    if h.typ != "c" {
        return false;
    }
    if let Some(m) = majors.get(major) {
        if i64::from(m) != h.major {
            warnings.push(format!(
                "{} has major {} but /proc/devices gives {major} major {m}: the node is stale (recreate it, e.g. reload the module or reboot)",
                host.display(),
                h.major
            ));
        }
    }
    push_node(
        roots,
        NodeFact {
            path: path.to_string(),
            major: majors.get(major),
            minor: h.minor as u32,
        },
        major,
        edits,
        warnings,
    )
}

/// NVSwitch nodes (`/dev/nvidia-nvswitchctl`, `/dev/nvidia-nvswitchN`) for the GPU
/// spec's spec-wide edits; nothing on nodes without NVSwitches.
pub fn nvswitch_nodes(
    roots: &Roots,
    majors: &Majors,
    edits: &mut ContainerEdits,
    warnings: &mut Vec<String>,
) {
    let switches = numbered(roots, "/dev", "nvidia-nvswitch");
    if switches.is_empty() {
        return;
    }
    present_node(
        roots,
        majors,
        "/dev/nvidia-nvswitchctl",
        "nvidia-nvswitch",
        edits,
        warnings,
    );
    for (_, n) in switches {
        present_node(
            roots,
            majors,
            &format!("/dev/{n}"),
            "nvidia-nvswitch",
            edits,
            warnings,
        );
    }
}

/// The devices of `class` (not [`DeviceClass::Gpu`]) present under the device root, and
/// a line saying what was looked for (for the "no devices" error).
pub fn discover(
    roots: &Roots,
    class: DeviceClass,
    warnings: &mut Vec<String>,
) -> (Vec<NamedDevice>, String) {
    let majors = Majors::read(roots).unwrap_or_default();
    let mut out = Vec::new();
    let dev = |p: &str| roots.dev(p).display().to_string();
    let looked = match class {
        DeviceClass::Gpu => String::new(),
        DeviceClass::ImexChannel => {
            for (i, n) in numbered(roots, "/dev/nvidia-caps-imex-channels", "channel") {
                let mut edits = ContainerEdits::default();
                let path = format!("/dev/nvidia-caps-imex-channels/{n}");
                if present_node(
                    roots,
                    &majors,
                    &path,
                    "nvidia-caps-imex-channels",
                    &mut edits,
                    warnings,
                ) {
                    out.push(NamedDevice {
                        names: vec![i.to_string()],
                        edits,
                    });
                }
            }
            format!(
                "no IMEX channel in {} (the IMEX daemon's channels are created by nvidia-modprobe -i N)",
                dev("/dev/nvidia-caps-imex-channels")
            )
        }
        DeviceClass::Gds => {
            let mut edits = ContainerEdits::default();
            for (_, n) in numbered(roots, "/dev", "nvidia-fs") {
                present_node(
                    roots,
                    &majors,
                    &format!("/dev/{n}"),
                    "nvidia-fs",
                    &mut edits,
                    warnings,
                );
            }
            if !edits.device_nodes.is_empty() {
                if let Some(real) = roots.resolve_in_driver_root("/etc/cufile.json") {
                    edits
                        .mounts
                        .push(ro_mount(&roots.driver_root, &real, "/etc/cufile.json"));
                }
                out.push(NamedDevice {
                    names: vec!["all".to_string()],
                    edits,
                });
            }
            format!(
                "no {}N (load the nvidia-fs module of GPUDirect Storage)",
                dev("/dev/nvidia-fs")
            )
        }
        DeviceClass::Gdrcopy => {
            let mut edits = ContainerEdits::default();
            if present_node(
                roots,
                &majors,
                "/dev/gdrdrv",
                "gdrdrv",
                &mut edits,
                warnings,
            ) {
                out.push(NamedDevice {
                    names: vec!["all".to_string()],
                    edits,
                });
            }
            format!(
                "no {} (load the gdrdrv module of GDRCopy)",
                dev("/dev/gdrdrv")
            )
        }
        DeviceClass::Mofed => {
            let mut cm = ContainerEdits::default();
            present_node(
                roots,
                &majors,
                "/dev/infiniband/rdma_cm",
                "misc",
                &mut cm,
                warnings,
            );
            for (_, n) in numbered(roots, "/dev/infiniband", "uverbs") {
                let mut edits = ContainerEdits::default();
                if present_node(
                    roots,
                    &majors,
                    &format!("/dev/infiniband/{n}"),
                    "infiniband_verbs",
                    &mut edits,
                    warnings,
                ) {
                    edits.device_nodes.extend(cm.device_nodes.iter().cloned());
                    out.push(NamedDevice {
                        names: vec![n],
                        edits,
                    });
                }
            }
            format!(
                "no {}N (load ib_uverbs and the HCA's driver)",
                dev("/dev/infiniband/uverbs")
            )
        }
    };
    (out, looked)
}
