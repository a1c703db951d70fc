//! MPI library names and versions (`abi::parse_lib_name`, `abi::version_from_chain`,
//! `abi::check`). Input: a symlink chain, one file name per line.
#![no_main]

use hpc_facts::abi::{self, CompatType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let names: Vec<&str> = text.split('\n').collect();
    for n in &names {
        if let Some(p) = abi::parse_lib_name(n) {
            assert!(p.linker_name.ends_with(".so"), "{p:?} from {n:?}");
            assert!(n.starts_with(&p.linker_name), "{p:?} from {n:?}");
            assert_eq!(abi::version_from_chain([*n]), p.version);
        }
    }
    let v = abi::version_from_chain(names.iter().copied());
    let _ = abi::version_string(&v);
    // The chain's version must be one of the versions along the chain (or none).
    assert!(
        v.is_empty()
            || names
                .iter()
                .filter_map(|n| abi::parse_lib_name(n))
                .any(|p| p.version == v),
        "version {v:?} from no name of {names:?}"
    );
    let first = names.first().and_then(|n| abi::parse_lib_name(n));
    if let Some(host) = first {
        for ty in [
            CompatType::Major,
            CompatType::Full,
            CompatType::Strict,
            CompatType::Dependencies,
        ] {
            let _ = abi::check(&host.version, &v, ty);
        }
    }
});
