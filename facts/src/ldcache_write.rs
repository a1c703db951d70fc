//! Writes an `ld.so.cache` in glibc's new format (`glibc-ld.so.cache1.1`), sorted the way
//! ldconfig sorts it so the loader's binary search finds every entry.
//!
//! Hand-written, like the reader: it lets a hook add injected libraries to a container's
//! cache without running any ldconfig on the image (the host ldconfig `-r` would also
//! rewrite the image's aux-cache and costs 25-65 ms per start).

use std::cmp::Ordering;

use crate::elf::ElfClass;
use crate::ldcache::{self, CacheArch, CacheEntry, LdCache};

const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const HEADER_LEN: usize = 48;
const ENTRY_LEN: usize = 24;
const EXT_MAGIC: u32 = 0xEAA4_2174;
const HWCAP_EXTENSION_BIT: u64 = 1 << 62;

#[derive(Debug, thiserror::Error)]
pub enum LdCacheWriteError {
    #[error("the ld.so.cache to write would exceed 4 GiB ({0} entries)")]
    TooLarge(usize),
}

/// `_dl_cache_libcmp`: glibc's comparison of library names, with runs of digits compared
/// numerically.
pub fn libcmp(a: &str, b: &str) -> Ordering {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let (mut i, mut j) = (0, 0);
    loop {
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        match (ca, cb) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                if x.is_ascii_digit() {
                    if !y.is_ascii_digit() {
                        return Ordering::Greater;
                    }
                    let (mut va, mut vb) = (0u64, 0u64);
                    while let Some(d) = a.get(i).filter(|d| d.is_ascii_digit()) {
                        va = va.saturating_mul(10).saturating_add(u64::from(d - b'0'));
                        i += 1;
                    }
                    while let Some(d) = b.get(j).filter(|d| d.is_ascii_digit()) {
                        vb = vb.saturating_mul(10).saturating_add(u64::from(d - b'0'));
                        j += 1;
                    }
                    if va != vb {
                        return va.cmp(&vb);
                    }
                } else if y.is_ascii_digit() {
                    return Ordering::Less;
                } else if x != y {
                    return x.cmp(&y);
                } else {
                    i += 1;
                    j += 1;
                }
            }
        }
    }
}

/// ldconfig's entry order: names descending by [`libcmp`]; for equal names higher flags
/// first, hwcaps-subdirectory entries before plain ones, then higher hwcap and osversion.
pub fn entry_order(e1: &CacheEntry, e2: &CacheEntry, subdirs: &[String]) -> Ordering {
    let res = libcmp(&e2.soname, &e1.soname);
    if res != Ordering::Equal {
        return res;
    }
    if e1.flags != e2.flags {
        return e2.flags.cmp(&e1.flags);
    }
    let x1 = e1.hwcap & HWCAP_EXTENSION_BIT != 0;
    let x2 = e2.hwcap & HWCAP_EXTENSION_BIT != 0;
    match (x1, x2) {
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        (true, true) => {
            let n = |e: &CacheEntry| subdirs.get((e.hwcap & 0xffff_ffff) as usize).cloned();
            let r = n(e1).cmp(&n(e2));
            if r != Ordering::Equal {
                return r;
            }
        }
        _ => {}
    }
    e2.hwcap
        .cmp(&e1.hwcap)
        .then(e2.osversion.cmp(&e1.osversion))
}

/// The cache `flags` ldconfig gives a native 64/32-bit ELF shared object of this class and
/// machine: type `ELF libc6` plus the [`CacheArch`] bits (32-bit ARM is taken as
/// hard-float). `None` for a machine the hooks do not handle.
pub fn cache_flags_for(class: ElfClass, machine: u16) -> Option<i32> {
    use ldcache::{
        EM_386, EM_AARCH64, EM_ARM, EM_LOONGARCH, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64,
    };
    let arch = match (class, machine) {
        (ElfClass::Elf64, EM_X86_64) => CacheArch::X86_64,
        (ElfClass::Elf32, EM_X86_64) => CacheArch::X32,
        (ElfClass::Elf32, EM_386) => CacheArch::Generic32,
        (ElfClass::Elf64, EM_AARCH64) => CacheArch::AArch64,
        (ElfClass::Elf32, EM_ARM) => CacheArch::ArmHf,
        (ElfClass::Elf64, EM_PPC64) => CacheArch::Ppc64,
        (ElfClass::Elf64, EM_S390) => CacheArch::S390x,
        (ElfClass::Elf64, EM_RISCV) => CacheArch::RiscV64,
        (ElfClass::Elf64, EM_LOONGARCH) => CacheArch::LoongArch64,
        _ => return None,
    };
    Some(ldcache::FLAG_ELF_LIBC6 | i32::from(arch.flag_bits()))
}

/// Serialises `cache` (its entries sorted first) in the new format, little endian, with the
/// generator and hwcaps-subdirectory extensions.
pub fn write(cache: &LdCache, generator: &str) -> Result<Vec<u8>, LdCacheWriteError> {
    let mut entries: Vec<&CacheEntry> = cache.entries.iter().collect();
    entries.sort_by(|a, b| entry_order(a, b, &cache.hwcap_subdirs));

    // String table: dedupe identical strings.
    let strings_start = HEADER_LEN + ENTRY_LEN * entries.len();
    let mut strings: Vec<u8> = Vec::new();
    let mut offsets = std::collections::HashMap::<String, u32>::new();
    let too_large = || LdCacheWriteError::TooLarge(entries.len());
    let mut offset_of = |s: &str, strings: &mut Vec<u8>| -> Result<u32, LdCacheWriteError> {
        if let Some(o) = offsets.get(s) {
            return Ok(*o);
        }
        let o = u32::try_from(strings_start + strings.len()).map_err(|_| too_large())?;
        strings.extend_from_slice(s.as_bytes());
        strings.push(0);
        offsets.insert(s.to_owned(), o);
        Ok(o)
    };
    let mut table = Vec::with_capacity(entries.len());
    for e in &entries {
        let k = offset_of(&e.soname, &mut strings)?;
        let v = offset_of(&e.path, &mut strings)?;
        table.push((e, k, v));
    }
    let len_strings = u32::try_from(strings.len()).map_err(|_| too_large())?;

    let mut out = Vec::with_capacity(strings_start + strings.len() + 256);
    out.extend_from_slice(MAGIC_NEW);
    out.extend_from_slice(
        &u32::try_from(entries.len())
            .map_err(|_| too_large())?
            .to_le_bytes(),
    );
    out.extend_from_slice(&len_strings.to_le_bytes());
    out.push(2); // flags: little endian
    out.extend_from_slice(&[0, 0, 0]);
    let ext_pos = out.len();
    out.extend_from_slice(&0u32.to_le_bytes()); // extension offset, patched below
    out.extend_from_slice(&[0u8; 12]);
    debug_assert_eq!(out.len(), HEADER_LEN);
    for (e, k, v) in &table {
        out.extend_from_slice(&e.flags.to_le_bytes());
        out.extend_from_slice(&k.to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
        out.extend_from_slice(&e.osversion.to_le_bytes());
        out.extend_from_slice(&e.hwcap.to_le_bytes());
    }
    out.extend_from_slice(&strings);

    // Extensions: 4-byte aligned section directory, then the payloads.
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    let ext_offset = u32::try_from(out.len()).map_err(|_| too_large())?;
    let mut sections: Vec<(u32, Vec<u8>)> = vec![(0, generator.as_bytes().to_vec())];
    if !cache.hwcap_subdirs.is_empty() {
        // Tag 1: array of u32 string offsets into the string table of the new names,
        // appended after the directory.
        sections.push((1, Vec::new()));
    }
    let dir_len = 8 + 16 * sections.len();
    let mut payload: Vec<u8> = Vec::new();
    let mut dir: Vec<u8> = Vec::new();
    dir.extend_from_slice(&EXT_MAGIC.to_le_bytes());
    dir.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    let payload_base = ext_offset as usize + dir_len;
    for (tag, data) in &sections {
        let (off, size) = if *tag == 1 {
            // Strings for subdir names first, then the offsets array.
            let mut name_offs = Vec::new();
            for name in &cache.hwcap_subdirs {
                name_offs.push(payload_base + payload.len());
                payload.extend_from_slice(name.as_bytes());
                payload.push(0);
            }
            while !payload.len().is_multiple_of(4) {
                payload.push(0);
            }
            let off = payload_base + payload.len();
            for o in name_offs {
                payload
                    .extend_from_slice(&u32::try_from(o).map_err(|_| too_large())?.to_le_bytes());
            }
            (off, 4 * cache.hwcap_subdirs.len())
        } else {
            let off = payload_base + payload.len();
            payload.extend_from_slice(data);
            (off, data.len())
        };
        dir.extend_from_slice(&tag.to_le_bytes());
        dir.extend_from_slice(&0u32.to_le_bytes());
        dir.extend_from_slice(&u32::try_from(off).map_err(|_| too_large())?.to_le_bytes());
        dir.extend_from_slice(&u32::try_from(size).map_err(|_| too_large())?.to_le_bytes());
    }
    out.extend_from_slice(&dir);
    out.extend_from_slice(&payload);
    out[ext_pos..ext_pos + 4].copy_from_slice(&ext_offset.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldcache;
    use std::process::Command;

    fn ldconfig_p(cache: &std::path::Path) -> String {
        let out = Command::new("ldconfig")
            .arg("-p")
            .arg("-C")
            .arg(cache)
            .output()
            .expect("the host ldconfig is needed as the oracle of these tests");
        assert!(
            out.status.success(),
            "ldconfig -p -C {} failed",
            cache.display()
        );
        // The first line counts entries and names the cache file; compare the rest.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn libcmp_is_glibcs() {
        assert_eq!(libcmp("libfoo.so.10", "libfoo.so.9"), Ordering::Greater);
        assert_eq!(libcmp("libfoo.so.1", "libfoo.so.1"), Ordering::Equal);
        assert_eq!(libcmp("libfoo.so", "libfoo.so.1"), Ordering::Less);
        assert_eq!(libcmp("libfoo1.so", "libfoo.so"), Ordering::Greater);
        assert_eq!(libcmp("liba.so", "libb.so"), Ordering::Less);
        assert_eq!(libcmp("libx.so.007", "libx.so.7"), Ordering::Equal);
    }

    /// Re-sorting and re-writing the host's own cache (made by glibc's ldconfig) must give
    /// a file that ldconfig itself lists identically, in the same order.
    #[test]
    fn rewrite_of_host_cache_matches_ldconfig() {
        let bytes = std::fs::read("/etc/ld.so.cache").expect("host /etc/ld.so.cache");
        let mut cache = ldcache::parse(&bytes).expect("parse host cache");
        // Shuffle to prove the writer sorts.
        cache.entries.reverse();
        let generator = cache.generator.clone().unwrap_or_default();
        let out = write(&cache, &generator).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ld.so.cache");
        std::fs::write(&p, &out).unwrap();
        assert_eq!(
            ldconfig_p(&p),
            ldconfig_p(std::path::Path::new("/etc/ld.so.cache"))
        );
        let again = ldcache::parse(&out).unwrap();
        assert_eq!(again.entries.len(), cache.entries.len());
        assert_eq!(again.generator, Some(generator));
    }

    /// Added entries land where ldconfig would put them and the loader finds them.
    #[test]
    fn added_entries_are_found_by_ldconfig() {
        let bytes = std::fs::read("/etc/ld.so.cache").unwrap();
        let mut cache = ldcache::parse(&bytes).unwrap();
        let flags = cache_flags_for(ElfClass::Elf64, 62).unwrap();
        cache.entries.push(CacheEntry {
            soname: "libinjected.so.3".into(),
            path: "/run/hpc-hooks/lib/libinjected.so.3".into(),
            flags,
            osversion: 0,
            hwcap: 0,
        });
        let out = write(&cache, "test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        std::fs::write(&p, &out).unwrap();
        let listing = ldconfig_p(&p);
        assert!(
            listing
                .contains("libinjected.so.3 (libc6,x86-64) => /run/hpc-hooks/lib/libinjected.so.3"),
            "{listing}"
        );
        // Sorted order: each key >= the next by libcmp.
        let parsed = ldcache::parse(&out).unwrap();
        for w in parsed.entries.windows(2) {
            assert_ne!(libcmp(&w[0].soname, &w[1].soname), Ordering::Less);
        }
    }

    #[test]
    fn flags_for_known_arches() {
        assert_eq!(cache_flags_for(ElfClass::Elf64, 62), Some(0x0303));
        assert_eq!(cache_flags_for(ElfClass::Elf64, 183), Some(0x0a03));
        assert_eq!(cache_flags_for(ElfClass::Elf32, 3), Some(0x0003));
        assert_eq!(cache_flags_for(ElfClass::Elf32, 40), Some(0x0903));
        assert_eq!(cache_flags_for(ElfClass::Elf64, 258), Some(0x1203));
        assert_eq!(cache_flags_for(ElfClass::Elf64, 9999), None);
        assert_eq!(cache_flags_for(ElfClass::Elf64, 3), None);
    }

    /// An entry written with these flags is one the reader's architecture test accepts for
    /// the same class and machine, and no other class.
    #[test]
    fn flags_for_round_trip_through_the_reader() {
        for (class, machine) in [
            (ElfClass::Elf64, 62),
            (ElfClass::Elf32, 62),
            (ElfClass::Elf32, 3),
            (ElfClass::Elf64, 183),
            (ElfClass::Elf32, 40),
            (ElfClass::Elf64, 21),
            (ElfClass::Elf64, 22),
            (ElfClass::Elf64, 243),
            (ElfClass::Elf64, 258),
        ] {
            let flags = cache_flags_for(class, machine).unwrap();
            let arch = CacheArch::from_flags(flags);
            assert!(
                arch.matches_elf(class, machine),
                "{class:?}/{machine}: {arch:?}"
            );
            let other = match class {
                ElfClass::Elf64 => ElfClass::Elf32,
                ElfClass::Elf32 => ElfClass::Elf64,
            };
            assert!(
                !arch.matches_elf(other, machine),
                "{class:?}/{machine}: {arch:?}"
            );
        }
    }
}
