//! A bundle's config.json as the hooks read it (`BundleConfig::parse`): the full OCI
//! runtime spec, root path resolution against the bundle, annotation overlay.
#![no_main]

use std::collections::HashMap;
use std::path::Path;

use hooks_core::config::BundleConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut state_annotations = HashMap::new();
    state_annotations.insert("com.hooks.mpi.enabled".to_string(), "true".to_string());
    let bundle = Path::new("/run/fuzz/bundle");
    let path = bundle.join("config.json");
    if let Ok(cfg) = BundleConfig::parse(data, &path, bundle, &state_annotations) {
        assert!(
            cfg.rootfs.is_absolute(),
            "rootfs not absolute: {:?}",
            cfg.rootfs
        );
        assert_eq!(
            cfg.annotations
                .get("com.hooks.mpi.enabled")
                .map(String::as_str),
            Some("true"),
            "state annotations must override config.json annotations"
        );
        let _ = cfg.cgroups_path();
    }
});
