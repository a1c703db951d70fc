use std::os::unix::fs::PermissionsExt;

use super::base_spec;
use crate::parse::{read_file, to_json};
use crate::write::{write_atomic, write_spec, WriteError};

#[test]
fn atomic_write_mode_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nvidia.yaml");
    write_atomic(&p, b"one").unwrap();
    write_atomic(&p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    // No temporary file left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["nvidia.yaml"]);
}

#[test]
fn write_spec_by_extension_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let y = dir.path().join("a.yaml");
    write_spec(&y, &base_spec()).unwrap();
    assert_eq!(read_file(&y).unwrap(), base_spec());
    let j = dir.path().join("a.json");
    write_spec(&j, &base_spec()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&j).unwrap(),
        to_json(&base_spec()).unwrap()
    );

    let e = write_spec(&dir.path().join("a.yml"), &base_spec()).unwrap_err();
    assert!(matches!(e, WriteError::Format(_)));

    let mut bad = base_spec();
    bad.devices.clear();
    let target = dir.path().join("bad.yaml");
    let e = write_spec(&target, &bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "refusing to write an invalid spec: {}: devices: the spec has no devices; a spec needs at least one device",
            target.display()
        )
    );
    assert!(!target.exists());
}

#[test]
fn write_errors() {
    let e = write_atomic(std::path::Path::new("/nonexistent-dir/x.yaml"), b"x").unwrap_err();
    assert!(
        e.to_string().starts_with(
            "/nonexistent-dir/x.yaml: cannot write the spec (create temporary file): "
        ),
        "{e}"
    );
    assert!(matches!(
        write_atomic(std::path::Path::new("/"), b"x"),
        Err(WriteError::BadPath { .. })
    ));
}
