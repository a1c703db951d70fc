//! hpc-rank's admin config (`privilege::parse_config`) and its /proc/self/cgroup parser
//! (`cgroup::own_cgroup`). Input: the text of either file.
#![no_main]

use hpc_rank::{cgroup, privilege};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = privilege::parse_config(text) {
        // Every path accepted is absolute and normalised; writing the config back and
        // parsing it again gives the same config.
        let mut out = String::new();
        for w in &c.allow_wrappers {
            out.push_str(&format!("allow_wrapper={}\n", w.display()));
        }
        for (k, v) in [("runc", &c.runc), ("podman", &c.podman)] {
            if let Some(p) = v {
                out.push_str(&format!("{k}={}\n", p.display()));
            }
        }
        for p in c.allow_wrappers.iter().chain(c.runc.iter()).chain(c.podman.iter()) {
            let s = p.to_str().expect("UTF-8 path");
            assert!(s.starts_with('/') && !s.contains("/../") && !s.ends_with("/.."), "{s:?}");
        }
        assert_eq!(privilege::parse_config(&out), Ok(c), "round trip of {out:?}");
    }
    if let Some(p) = cgroup::own_cgroup(text) {
        assert!(p.starts_with('/'), "{p:?}");
        assert!(!p.split('/').any(|c| c == ".."), "{p:?}");
        assert!(!p.contains('\n'), "{p:?}");
        let parent = cgroup::podman_parent(&p);
        assert!(parent.ends_with("/hpc-rank") && parent.starts_with('/'), "{parent:?}");
    }
});
