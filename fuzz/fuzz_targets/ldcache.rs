//! The image's /etc/ld.so.cache (`ldcache::parse`: old, new and compat formats, either
//! endianness) and, for every cache that parses, a round trip through the native writer
//! (`ldcache_write::write`) that mpi-hook and gpu-hook use to regenerate a container's
//! cache: the written cache must parse again to the same entries, and writing is stable.
#![no_main]

use hpc_facts::ldcache::{self, CacheEntry};
use hpc_facts::{glibc, ldcache_write};
use libfuzzer_sys::fuzz_target;

fn sorted(entries: &[CacheEntry]) -> Vec<CacheEntry> {
    let mut v = entries.to_vec();
    v.sort_by(|a, b| {
        (&a.soname, &a.path, a.flags, a.osversion, a.hwcap).cmp(&(
            &b.soname,
            &b.path,
            b.flags,
            b.osversion,
            b.hwcap,
        ))
    });
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(cache) = ldcache::parse(data) else {
        return;
    };
    // What the hooks do with a parsed cache.
    for e in &cache.entries {
        let _ = cache.describe(e);
        let _ = cache.hwcap_subdir(e);
        let _ = e.flags_description();
        let _ = e.is_elf();
    }
    if let Some(g) = &cache.generator {
        let _ = glibc::version_from_generator(g);
    }
    if let Some(first) = cache.entries.first() {
        let _ = cache.lookup(&first.soname, first.arch()).count();
    }

    let Ok(written) = ldcache_write::write(&cache, "fuzz generator") else {
        return;
    };
    let reparsed = ldcache::parse(&written)
        .unwrap_or_else(|e| panic!("written cache does not parse again: {e}"));
    assert_eq!(sorted(&reparsed.entries), sorted(&cache.entries));
    assert_eq!(reparsed.hwcap_subdirs, cache.hwcap_subdirs);
    assert_eq!(reparsed.generator.as_deref(), Some("fuzz generator"));
    let again = ldcache_write::write(&reparsed, "fuzz generator").expect("second write");
    assert_eq!(again, written, "writing a written cache must be stable");
});
