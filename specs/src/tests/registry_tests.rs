use std::path::{Path, PathBuf};

use super::{base_spec, device};
use crate::parse::{to_json, to_yaml};
use crate::registry::{Registry, RegistryError, DEFAULT_SPEC_DIRS};
use crate::types::Spec;

fn spec_with(kind: &str, names: &[&str], node_prefix: &str) -> Spec {
    let mut s = base_spec();
    s.kind = kind.into();
    s.devices = names
        .iter()
        .map(|n| device(n, &format!("{node_prefix}{n}")))
        .collect();
    s
}

fn write_yaml(dir: &Path, file: &str, s: &Spec) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, to_yaml(s).unwrap()).unwrap();
    p
}

fn node_path(r: &Registry, name: &str) -> String {
    r.resolve(name).unwrap().device.container_edits.device_nodes[0]
        .path
        .clone()
}

#[test]
fn defaults() {
    assert_eq!(DEFAULT_SPEC_DIRS, ["/etc/cdi", "/var/run/cdi"]);
}

#[test]
fn later_dir_wins() {
    let etc = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    write_yaml(
        etc.path(),
        "a.yaml",
        &spec_with("vendor.com/gpu", &["gpu0", "gpu1"], "/etc/"),
    );
    write_yaml(
        run.path(),
        "a.yaml",
        &spec_with("vendor.com/gpu", &["gpu0"], "/run/"),
    );
    let r = Registry::load(&[etc.path(), run.path()]);
    assert!(r.errors().is_empty(), "{:?}", r.errors());
    assert_eq!(node_path(&r, "vendor.com/gpu=gpu0"), "/run/gpu0");
    assert_eq!(node_path(&r, "vendor.com/gpu=gpu1"), "/etc/gpu1");
    assert_eq!(
        r.device_names().collect::<Vec<_>>(),
        ["vendor.com/gpu=gpu0", "vendor.com/gpu=gpu1"]
    );
    let res = r.resolve("vendor.com/gpu=gpu0").unwrap();
    assert_eq!(res.spec.priority, 1);
    assert_eq!(res.spec.vendor, "vendor.com");
    assert_eq!(res.spec.class, "gpu");
    // Reversed order: the other directory wins.
    let r = Registry::load(&[run.path(), etc.path()]);
    assert_eq!(node_path(&r, "vendor.com/gpu=gpu0"), "/etc/gpu0");
}

#[test]
fn same_priority_conflict_drops_device() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_yaml(
        dir.path(),
        "a.yaml",
        &spec_with("vendor.com/gpu", &["gpu0", "gpu1"], "/a/"),
    );
    let b = dir.path().join("b.json");
    std::fs::write(
        &b,
        to_json(&spec_with("vendor.com/gpu", &["gpu0"], "/b/")).unwrap(),
    )
    .unwrap();
    let r = Registry::load(&[dir.path()]);
    assert_eq!(r.errors().len(), 1);
    assert_eq!(
        r.errors()[0].to_string(),
        format!(
            "conflicting device \"vendor.com/gpu=gpu0\": defined by both {} and {} in directories of the same priority; engines drop it, so keep one definition",
            a.display(),
            b.display()
        )
    );
    assert_eq!(r.conflicts().collect::<Vec<_>>(), ["vendor.com/gpu=gpu0"]);
    assert_eq!(
        r.resolve("vendor.com/gpu=gpu0").unwrap_err().to_string(),
        "unresolvable CDI device \"vendor.com/gpu=gpu0\": it is defined twice at the same priority and was dropped; keep one definition"
    );
    assert_eq!(node_path(&r, "vendor.com/gpu=gpu1"), "/a/gpu1");
    // Different kinds never conflict.
    let dir2 = tempfile::tempdir().unwrap();
    write_yaml(
        dir2.path(),
        "a.yaml",
        &spec_with("vendor.com/gpu", &["x"], "/a/"),
    );
    write_yaml(
        dir2.path(),
        "b.yaml",
        &spec_with("vendor.com/nic", &["x"], "/b/"),
    );
    let r = Registry::load(&[dir2.path()]);
    assert!(r.errors().is_empty());
    assert_eq!(r.device_names().count(), 2);
}

#[test]
fn bad_files_reported_others_loaded() {
    let dir = tempfile::tempdir().unwrap();
    write_yaml(
        dir.path(),
        "good.yaml",
        &spec_with("vendor.com/gpu", &["gpu0"], "/g/"),
    );
    std::fs::write(
        dir.path().join("broken.yaml"),
        "cdiVersion: 0.3.0\nkind: vendor.com/gpu\nnope: 1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.json"), "{").unwrap();
    let mut old = spec_with("vendor.com/gpu", &["gpu9"], "/o/");
    old.devices[0].container_edits.device_nodes[0].host_path = "/dev/x".into();
    write_yaml(dir.path(), "too-old.yaml", &old);
    // Ignored: wrong extension, subdirectory, hidden temp files of writers.
    std::fs::write(dir.path().join("ignored.yml"), "garbage").unwrap();
    std::fs::write(dir.path().join("ignored.txt"), "garbage").unwrap();
    std::fs::write(dir.path().join(".x.yaml.abc.tmp"), "garbage").unwrap();
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write_yaml(
        &dir.path().join("sub"),
        "deep.yaml",
        &spec_with("vendor.com/gpu", &["deep"], "/d/"),
    );

    let r = Registry::load(&[dir.path(), Path::new("/nonexistent/cdi")]);
    let errs: Vec<String> = r.errors().iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].starts_with(&format!(
        "{}: not a valid CDI JSON spec",
        dir.path().join("broken.json").display()
    )));
    assert!(errs[1].contains("broken.yaml: not a valid CDI YAML spec: unknown field `nope`, expected one of cdiVersion, kind, annotations, devices, containerEdits at line 3, column 1"), "{}", errs[1]);
    assert!(
        errs[2].contains("too-old.yaml: cdiVersion: needs cdiVersion 0.5.0, declares 0.3.0"),
        "{}",
        errs[2]
    );
    assert!(r
        .errors()
        .iter()
        .all(|e| matches!(e, RegistryError::Spec(_))));
    assert_eq!(
        r.device_names().collect::<Vec<_>>(),
        ["vendor.com/gpu=gpu0"]
    );
    assert_eq!(r.specs().len(), 1);
    let e = r.resolve("vendor.com/gpu=deep").unwrap_err().to_string();
    assert!(e.starts_with("unresolvable CDI device \"vendor.com/gpu=deep\": no loaded spec defines it (spec directories: "), "{e}");
}

#[test]
fn bad_request_names() {
    let r = Registry::from_specs([(PathBuf::from("/x/a.yaml"), 0, base_spec())]);
    assert!(r.resolve("vendor.com/gpu=gpu0").is_ok());
    assert!(matches!(
        r.resolve("gpu0"),
        Err(RegistryError::BadName { .. })
    ));
    assert_eq!(
        r.resolve("gpu0").unwrap_err().to_string(),
        "unresolvable CDI device \"gpu0\": invalid qualified device name \"gpu0\": expected vendor/class=name, e.g. nvidia.com/gpu=0"
    );
}

#[test]
fn from_specs_validates() {
    let mut bad = base_spec();
    bad.devices.clear();
    let r = Registry::from_specs([
        (PathBuf::from("/x/bad.yaml"), 0, bad),
        (PathBuf::from("/x/good.yaml"), 0, base_spec()),
    ]);
    assert_eq!(r.errors().len(), 1);
    assert_eq!(
        r.errors()[0].to_string(),
        "/x/bad.yaml: devices: the spec has no devices; a spec needs at least one device"
    );
    assert_eq!(r.specs().len(), 1);
}

#[test]
fn refresh_sees_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Registry::load(&[dir.path()]);
    assert_eq!(r.device_names().count(), 0);
    write_yaml(dir.path(), "a.yaml", &base_spec());
    r.refresh();
    assert_eq!(
        r.device_names().collect::<Vec<_>>(),
        ["vendor.com/gpu=gpu0"]
    );
    assert_eq!(r.dirs(), [dir.path().to_path_buf()]);
}

#[cfg(unix)]
#[test]
fn fifo_named_yaml_is_skipped_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.yaml");
    let ok = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !matches!(ok, Ok(s) if s.success()) {
        return; // mkfifo unavailable: nothing to check.
    }
    write_yaml(dir.path(), "a.yaml", &base_spec());
    let r = Registry::load(&[dir.path()]);
    assert!(r.errors().is_empty());
    assert_eq!(r.device_names().count(), 1);
}

#[test]
fn conflict_is_dropped_even_if_a_later_dir_defines_it() {
    // Engine behaviour (Go cache.refresh): conflicting names are deleted after the scan,
    // whatever higher-priority directories say.
    let etc = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    write_yaml(
        etc.path(),
        "a.yaml",
        &spec_with("vendor.com/gpu", &["gpu0"], "/a/"),
    );
    write_yaml(
        etc.path(),
        "b.yaml",
        &spec_with("vendor.com/gpu", &["gpu0"], "/b/"),
    );
    write_yaml(
        run.path(),
        "c.yaml",
        &spec_with("vendor.com/gpu", &["gpu0", "gpu1"], "/c/"),
    );
    let r = Registry::load(&[etc.path(), run.path()]);
    assert_eq!(r.errors().len(), 1);
    assert!(r.resolve("vendor.com/gpu=gpu0").is_err());
    assert_eq!(node_path(&r, "vendor.com/gpu=gpu1"), "/c/gpu1");
}
