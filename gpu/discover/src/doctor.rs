//! `cdi-gen doctor`: checks the installed specs against the node and says, per spec file
//! and device, what is wrong: device nodes (type/major/minor vs the node and
//! /proc/devices), host paths that are gone, hooks, file mode and owner, which file wins
//! a kind, cdiVersion vs podman, and devices that differ from a fresh discovery.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cdi_specs::registry::{LoadedSpec, Registry, RegistryError};
use cdi_specs::types::{ContainerEdits, Spec};
use cdi_specs::version::{Version, ENGINE_LIMITS};

use crate::nvidia::hpc::DeviceClass;
use crate::nvidia::procfs::{self, Majors};
use crate::nvidia::NameStrategy;
use crate::{GenerateOptions, Vendor};

/// `cdi-gen doctor` exit codes (besides [`crate::exit::OK`] and `INVALID_SPEC`, a spec
/// does not load).
pub const EXIT_PROBLEMS: i32 = 6;

/// The podman whose cdiVersion ceiling is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Podman {
    /// Run `podman --version` from `PATH` (none found: no check).
    Detect,
    /// This version (`4.9.3`).
    Version(String),
    /// No podman on the node: no check.
    None,
}

/// What the doctor checks and against what.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// Spec directories, lowest priority first.
    pub dirs: Vec<PathBuf>,
    /// How a fresh spec is generated for comparison (roots, NVML, naming).
    pub generate: GenerateOptions,
    /// The podman to check cdiVersion against.
    pub podman: Podman,
}

/// The verdict: lines to print and the counts behind the exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Report lines (`FILE: problem: ...`, `FILE: note: ...`, `FILE: ok: ...`, summary).
    pub lines: Vec<String>,
    /// Problems found (stale or unsafe specs).
    pub problems: usize,
    /// Spec files that do not load.
    pub unloadable: usize,
}

impl Verdict {
    /// 1 when a spec does not load, [`EXIT_PROBLEMS`] when a spec is stale or unsafe, else 0.
    pub fn exit_code(&self) -> i32 {
        if self.unloadable > 0 {
            crate::exit::INVALID_SPEC
        } else if self.problems > 0 {
            EXIT_PROBLEMS
        } else {
            crate::exit::OK
        }
    }
}

/// Problems and notes of one spec file.
#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    notes: Vec<String>,
}

/// The version of `podman --version` output (`podman version 4.9.3`).
pub fn parse_podman_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_string)
}

fn podman_version(p: &Podman) -> Option<String> {
    match p {
        Podman::None => None,
        Podman::Version(v) => Some(v.clone()),
        Podman::Detect => {
            let out = std::process::Command::new("podman")
                .arg("--version")
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            parse_podman_version(&String::from_utf8_lossy(&out.stdout))
        }
    }
}

/// The newest cdiVersion podman `version` loads, when it has a known ceiling.
fn podman_max(version: &str) -> Option<(Version, &'static str)> {
    let major = version.split('.').next()?;
    ENGINE_LIMITS
        .iter()
        .find(|l| l.engine == format!("podman {major}.x"))
        .map(|l| (l.max, l.engine))
}

/// Runs every check and returns the verdict.
pub fn doctor(opts: &DoctorOptions) -> Verdict {
    let mut v = Verdict::default();
    let reg = Registry::load(&opts.dirs);
    for e in reg.errors() {
        match e {
            RegistryError::Spec(p) => {
                v.unloadable += 1;
                v.lines.push(format!("does not load: {p}"));
            }
            other => {
                v.problems += 1;
                v.lines.push(format!("problem: {other}"));
            }
        }
    }
    let majors = Majors::read(&opts.generate.roots).ok();
    let podman = podman_version(&opts.podman);
    let driver = procfs::driver_version(&opts.generate.roots).ok();
    // Who serves each qualified name.
    let mut served: BTreeMap<&Path, usize> = BTreeMap::new();
    for name in reg.device_names() {
        if let Ok(r) = reg.resolve(name) {
            *served.entry(r.spec.path.as_path()).or_default() += 1;
        }
    }
    let mut by_kind: BTreeMap<&str, Vec<&LoadedSpec>> = BTreeMap::new();
    for s in reg.specs() {
        by_kind.entry(s.spec.kind.as_str()).or_default().push(s);
    }
    let mut fresh_cache: BTreeMap<String, Result<Spec, String>> = BTreeMap::new();
    for s in reg.specs() {
        let mut f = Findings::default();
        let file = s.path.display().to_string();
        let n_served = served.get(s.path.as_path()).copied().unwrap_or(0);
        let others: Vec<&&LoadedSpec> = by_kind[s.spec.kind.as_str()]
            .iter()
            .filter(|o| o.path != s.path)
            .collect();
        if !others.is_empty() {
            let names: Vec<String> = others
                .iter()
                .map(|o| o.path.display().to_string())
                .collect();
            if n_served == 0 {
                f.notes.push(format!(
                    "kind {} is also defined by {}, which wins for every device (higher priority directory, or later in it): engines never use this file; remove it",
                    s.spec.kind,
                    names.join(", ")
                ));
                emit(&mut v, &file, f, s, n_served);
                continue;
            }
            f.notes.push(format!(
                "kind {} is also defined by {}; this file serves {n_served} of its {} devices (the file in the higher priority directory wins each name)",
                s.spec.kind,
                names.join(", "),
                s.spec.devices.len()
            ));
        }
        check_file_mode(&s.path, &mut f);
        if let Some(pv) = &podman {
            if let Some((max, engine)) = podman_max(pv) {
                if s.version > max {
                    f.problems.push(format!(
                        "cdiVersion {} is newer than podman {pv} on this node loads ({engine} accepts at most {max}): podman ignores this file; regenerate it with cdi-gen (which writes the minimum version) or --spec-version {max}",
                        s.version
                    ));
                }
            }
        }
        check_edits(
            &s.spec.container_edits,
            "spec-wide edits",
            majors.as_ref(),
            driver.as_deref(),
            &opts.generate.roots,
            &mut f,
        );
        for d in &s.spec.devices {
            check_edits(
                &d.container_edits,
                &format!("device {}", d.name),
                majors.as_ref(),
                driver.as_deref(),
                &opts.generate.roots,
                &mut f,
            );
        }
        if let Some(class) = nvidia_class(&s.spec.kind) {
            let fresh = fresh_cache
                .entry(s.spec.kind.clone())
                .or_insert_with(|| fresh_spec(opts, class, &s.spec.kind));
            match fresh {
                Ok(fresh) => compare(&s.spec, fresh, &mut f),
                Err(e) => f.problems.push(format!(
                    "cannot discover its devices on the node to compare ({e}); if the node has none any more, remove the spec, else fix what the error says and regenerate"
                )),
            }
        }
        emit(&mut v, &file, f, s, n_served);
    }
    let files = reg.specs().len() + v.unloadable;
    let dirs: Vec<String> = opts.dirs.iter().map(|d| d.display().to_string()).collect();
    if files == 0 {
        v.problems += 1;
        v.lines.push(format!(
            "problem: no CDI spec in {}; generate one: cdi-gen --output /var/run/cdi/nvidia.yaml",
            dirs.join(", ")
        ));
    }
    let verdict = if v.unloadable > 0 {
        format!(
            "{} spec file{} do{} not load",
            v.unloadable,
            if v.unloadable == 1 { "" } else { "s" },
            if v.unloadable == 1 { "es" } else { "" }
        )
    } else if v.problems > 0 {
        format!(
            "{} problem{}: regenerate the stale specs (cdi-gen --output /var/run/cdi/nvidia.yaml, or systemctl start cdi-gen-refresh) and fix what is listed",
            v.problems,
            if v.problems == 1 { "" } else { "s" }
        )
    } else {
        "every spec matches the node".to_string()
    };
    v.lines.push(format!(
        "cdi-gen doctor: {files} spec files in {}: {verdict}",
        dirs.join(", ")
    ));
    v
}

fn emit(v: &mut Verdict, file: &str, f: Findings, s: &LoadedSpec, served: usize) {
    v.problems += f.problems.len();
    for p in f.problems.iter() {
        v.lines.push(format!("{file}: problem: {p}"));
    }
    for n in f.notes.iter() {
        v.lines.push(format!("{file}: note: {n}"));
    }
    if f.problems.is_empty() {
        v.lines.push(format!(
            "{file}: ok: kind {}, cdiVersion {}, {} devices ({served} used by engines)",
            s.spec.kind,
            s.version,
            s.spec.devices.len()
        ));
    }
}

/// The device class cdi-gen generates for an `nvidia.com/<class>` kind.
fn nvidia_class(kind: &str) -> Option<DeviceClass> {
    Some(match kind.strip_prefix("nvidia.com/")? {
        "gpu" => DeviceClass::Gpu,
        "imex-channel" => DeviceClass::ImexChannel,
        "gds" => DeviceClass::Gds,
        "gdrcopy" => DeviceClass::Gdrcopy,
        "mofed" => DeviceClass::Mofed,
        _ => return None,
    })
}

fn fresh_spec(opts: &DoctorOptions, class: DeviceClass, kind: &str) -> Result<Spec, String> {
    let mut g = opts.generate.clone();
    g.vendor = Vendor::Nvidia;
    g.device_class = class;
    g.class = kind.trim_start_matches("nvidia.com/").to_string();
    g.output = None;
    g.spec_version = None;
    g.all_device = true;
    // Every naming strategy: the spec may use any of them.
    g.nvidia.strategies = vec![
        NameStrategy::Index,
        NameStrategy::Uuid,
        NameStrategy::TypeIndex,
    ];
    let mut warnings = Vec::new();
    crate::generate(&g, &mut warnings)
        .map(|x| x.spec)
        .map_err(|e| e.to_string())
}

fn check_file_mode(path: &Path, f: &mut Findings) {
    let Ok(md) = std::fs::metadata(path) else {
        return;
    };
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        f.problems.push(format!(
            "file mode {mode:04o} is group- or world-writable: another user can add devices, mounts and root-run hooks to every container; chmod 0644"
        ));
    }
    if md.uid() != 0 {
        f.problems.push(format!(
            "owned by uid {}, not root: its owner can add root-run hooks to every container; chown root:root",
            md.uid()
        ));
    }
    if mode & 0o004 == 0 {
        f.notes.push(format!(
            "file mode {mode:04o} is not world-readable: rootless engines cannot load it; chmod 0644 unless that is meant"
        ));
    }
}

fn check_edits(
    e: &ContainerEdits,
    what: &str,
    majors: Option<&Majors>,
    driver: Option<&str>,
    roots: &crate::Roots,
    f: &mut Findings,
) {
    for n in &e.device_nodes {
        let host = if n.host_path.is_empty() {
            roots.dev(&n.path)
        } else {
            PathBuf::from(&n.host_path)
        };
        let label = format!("{what}: node {}", host.display());
        let md = match std::fs::metadata(&host) {
            Ok(m) => m,
            Err(_) => {
                f.problems.push(format!(
                    "{label} does not exist on the node (GPU removed, renumbered after a reboot, or the module not loaded); regenerate the spec"
                ));
                continue;
            }
        };
        let Some(h) = cdi_specs::HostNode::from_metadata(&md) else {
            f.problems.push(format!(
                "{label} is not a device node; remove it and regenerate"
            ));
            continue;
        };
        if !n.typ.is_empty() && n.typ != h.typ {
            f.problems.push(format!(
                "{label}: the spec says type {} but the node is type {}; regenerate the spec",
                n.typ, h.typ
            ));
        }
        let spec_nums = (n.major, n.minor);
        if let (Some(ma), Some(mi)) = spec_nums {
            if (ma, mi) != (h.major, h.minor) {
                f.problems.push(format!(
                    "{label}: the spec says {ma}:{mi} but the node is {}:{} (devices renumbered or the driver reloaded); regenerate the spec",
                    h.major, h.minor
                ));
            }
        }
        if let (Some(m), Some(ma)) = (majors, n.major) {
            if h.typ == "c" && u32::try_from(ma).ok().and_then(|x| m.name_of(x)).is_none() {
                f.problems.push(format!(
                    "{label}: no character driver has major {ma} in /proc/devices (module unloaded, or a stale node); load the driver and regenerate"
                ));
            }
        }
    }
    for m in &e.mounts {
        if m.host_path.is_empty() || std::fs::metadata(&m.host_path).is_ok() {
            continue;
        }
        let hint = match driver {
            Some(d) if !m.host_path.contains(d) && looks_versioned(&m.host_path) => {
                format!(" (the driver is now {d}: the spec mounts files of another version)")
            }
            _ => String::new(),
        };
        f.problems.push(format!(
            "{what}: mount {} -> {}: the host path no longer exists{hint}; regenerate the spec",
            m.host_path, m.container_path
        ));
    }
    let mut seen = BTreeSet::new();
    for h in &e.hooks {
        if !seen.insert(h.path.as_str()) {
            continue;
        }
        let why = match std::fs::metadata(&h.path) {
            Err(_) => Some("does not exist".to_string()),
            Ok(md) if !md.is_file() => Some("is not a regular file".to_string()),
            Ok(md) if md.permissions().mode() & 0o111 == 0 => Some(format!(
                "is not executable (mode {:04o})",
                md.permissions().mode() & 0o7777
            )),
            Ok(md) if md.permissions().mode() & 0o022 != 0 => Some(format!(
                "is group- or world-writable (mode {:04o}) and runs as root",
                md.permissions().mode() & 0o7777
            )),
            Ok(_) => None,
        };
        if let Some(why) = why {
            f.problems.push(format!(
                "{what}: hook {} {why}: engines fail every container using it; install gpu-hook there or regenerate with --hook-path",
                h.path
            ));
        }
    }
}

/// True when a path ends in a driver-style version (`.so.550.54.14`, `/550.54.14/...`).
fn looks_versioned(p: &str) -> bool {
    p.split(['/', '.']).collect::<Vec<_>>().windows(3).any(|w| {
        w.iter()
            .all(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The kinds of device names cdi-gen writes: index, UUID, type-index.
fn name_family(n: &str) -> &'static str {
    if n.starts_with("GPU-") || n.starts_with("MIG-") {
        "uuid"
    } else if n.starts_with("gpu") || n.starts_with("mig") {
        "type-index"
    } else if n == "all" {
        "all"
    } else {
        "index"
    }
}

fn nodes_of(e: &ContainerEdits) -> BTreeSet<(String, Option<i64>, Option<i64>)> {
    e.device_nodes
        .iter()
        .map(|n| (n.path.clone(), n.major, n.minor))
        .collect()
}

fn show(nodes: &BTreeSet<(String, Option<i64>, Option<i64>)>) -> String {
    nodes
        .iter()
        .map(|(p, a, b)| match (a, b) {
            (Some(a), Some(b)) => format!("{p} {a}:{b}"),
            _ => p.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares the spec's devices with a fresh discovery of the node.
fn compare(spec: &Spec, fresh: &Spec, f: &mut Findings) {
    let fresh_devs: BTreeMap<&str, &ContainerEdits> = fresh
        .devices
        .iter()
        .map(|d| (d.name.as_str(), &d.container_edits))
        .collect();
    let families: BTreeSet<&str> = spec.devices.iter().map(|d| name_family(&d.name)).collect();
    // procfs discovery knows no MIG UUIDs: those names cannot be checked.
    let fresh_has_mig_uuids = fresh.devices.iter().any(|d| d.name.starts_with("MIG-"));
    let mut gone = Vec::new();
    for d in &spec.devices {
        if d.name.starts_with("MIG-") && !fresh_has_mig_uuids {
            continue;
        }
        match fresh_devs.get(d.name.as_str()) {
            None => gone.push(d.name.clone()),
            Some(now) if d.name != "all" => {
                let a = nodes_of(&d.container_edits);
                let mut b = nodes_of(now);
                // Nodes the spec names by path only (nvidia-ctk's) are compared by path.
                let by_path: BTreeSet<&str> = a
                    .iter()
                    .filter(|n| n.1.is_none())
                    .map(|n| n.0.as_str())
                    .collect();
                b = b
                    .into_iter()
                    .map(|n| {
                        if by_path.contains(n.0.as_str()) {
                            (n.0, None, None)
                        } else {
                            n
                        }
                    })
                    .collect();
                if a != b {
                    f.problems.push(format!(
                        "device {}: its nodes differ from the node now (MIG layout changed, or devices renumbered): the spec has {}, the node has {}; regenerate the spec",
                        d.name,
                        show(&a),
                        show(&b)
                    ));
                }
            }
            Some(_) => {}
        }
    }
    if !gone.is_empty() {
        f.problems.push(format!(
            "devices {} are not on the node any more (GPU removed or MIG layout changed); regenerate the spec",
            gone.join(", ")
        ));
    }
    let names: BTreeSet<&str> = spec.devices.iter().map(|d| d.name.as_str()).collect();
    let new: Vec<&str> = fresh
        .devices
        .iter()
        .map(|d| d.name.as_str())
        .filter(|n| !names.contains(n) && families.contains(name_family(n)))
        .collect();
    if !new.is_empty() {
        f.problems.push(format!(
            "devices {} are on the node but not in the spec (GPU added or MIG layout changed); regenerate the spec",
            new.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(
            parse_podman_version("podman version 4.9.3\n").as_deref(),
            Some("4.9.3")
        );
        assert_eq!(podman_max("4.9.3").map(|x| x.0), Some(Version::V0_5_0));
        assert_eq!(podman_max("5.4.2"), None);
        assert!(looks_versioned("/usr/lib/libcuda.so.550.54.14"));
        assert!(!looks_versioned("/usr/lib/libcuda.so.1"));
        assert_eq!(name_family("MIG-abc"), "uuid");
        assert_eq!(name_family("0:1"), "index");
        assert_eq!(name_family("mig0:1"), "type-index");
    }
}
