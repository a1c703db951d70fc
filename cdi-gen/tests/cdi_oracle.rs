//! Every generated spec (the golden files, which `generate.rs` proves equal to what
//! cdi-gen writes) loads in an independent CDI implementation, the
//! `container-device-interface` crate, with no error, lists the same devices as our
//! registry, and its injection resolves every device.

use std::path::Path;

use container_device_interface::cache::{new_cache, with_auto_refresh};
use container_device_interface::spec_dirs::with_spec_dirs;

fn oci() -> oci_spec::runtime::Spec {
    serde_json::from_str(
        r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0},"env":["PATH=/bin"]},
            "root":{"path":"rootfs"},"linux":{}}"#,
    )
    .unwrap()
}

#[test]
fn golden_specs_load_in_container_device_interface() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&golden).expect("golden dir") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        for ext in ["yaml", "json"] {
            let dir = tempfile::tempdir().unwrap();
            let (spec, _) =
                cdi_specs::parse::load_file(&path).expect("our loader accepts the golden file");
            let text = cdi_specs::parse::to_string(
                &spec,
                if ext == "json" {
                    cdi_specs::parse::Format::Json
                } else {
                    cdi_specs::parse::Format::Yaml
                },
            )
            .unwrap();
            std::fs::write(dir.path().join(format!("spec.{ext}")), text).unwrap();
            let d = dir.path().to_str().unwrap().to_string();
            let cache = new_cache(vec![
                with_spec_dirs(&[d.as_str()]),
                with_auto_refresh(false),
            ]);
            let mut c = cache.lock().unwrap();
            let _ = c.refresh();
            let errs = c.get_errors();
            assert!(
                errs.is_empty(),
                "{} ({ext}) does not load in container-device-interface: {errs:?}",
                path.display()
            );
            let mut theirs = c.list_devices();
            theirs.sort();
            let ours_reg = cdi_specs::registry::Registry::load(&[dir.path()]);
            let ours: Vec<String> = ours_reg.device_names().map(String::from).collect();
            assert_eq!(
                theirs,
                ours,
                "{} ({ext}): device lists differ",
                path.display()
            );
            assert!(!theirs.is_empty());
            for dev in &theirs {
                let mut s = oci();
                c.inject_devices(Some(&mut s), vec![dev.clone()])
                    .unwrap_or_else(|e| {
                        panic!("{} ({ext}): {dev} does not inject: {e}", path.display())
                    });
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "expected the 4 golden specs in 2 formats, checked {checked}"
    );
}
