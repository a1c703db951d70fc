//! Native reader of glibc's `/etc/ld.so.cache` (old `ld.so-1.7.0`, new `glibc-ld.so.cache1.1`
//! and the compat layout that holds both), used to list a rootfs's libraries without running
//! its `ldconfig`. Hand-written because no crate reads ld.so.cache; every count and string
//! offset is checked against the buffer, so a hostile cache yields an error, never a panic.

use std::fmt;
use std::fs::File;
use std::io::Read;

use crate::elf::ElfClass;

/// Largest cache the file helpers accept (a real one is tens of KiB).
pub const MAX_CACHE_LEN: u64 = 64 * 1024 * 1024;

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache";
const NEW_VERSION: &[u8] = b"1.1";
/// `sizeof (struct cache_file)`: 11-byte magic, 1 byte padding, `u32 nlibs`.
const OLD_HEADER_LEN: usize = 16;
const OLD_ENTRY_LEN: usize = 12;
/// `sizeof (struct cache_file_new)`.
const NEW_HEADER_LEN: usize = 48;
const NEW_ENTRY_LEN: usize = 24;
const EXTENSION_MAGIC: u32 = 0xEAA4_2174;
const EXTENSION_TAG_GENERATOR: u32 = 0;
const EXTENSION_TAG_GLIBC_HWCAPS: u32 = 1;
/// `DL_CACHE_HWCAP_EXTENSION`: the entry lives in a glibc-hwcaps subdirectory.
const HWCAP_EXTENSION: u64 = 1 << 62;

/// Entry type (`flags & 0xff`).
pub const FLAG_TYPE_MASK: i32 = 0x00ff;
/// Architecture / ABI (`flags & 0xff00`).
pub const FLAG_REQUIRED_MASK: i32 = 0xff00;
/// `FLAG_ELF`.
pub const FLAG_ELF: i32 = 0x0001;
/// `FLAG_ELF_LIBC5`.
pub const FLAG_ELF_LIBC5: i32 = 0x0002;
/// `FLAG_ELF_LIBC6`.
pub const FLAG_ELF_LIBC6: i32 = 0x0003;

/// Errors of [`parse`] and the file helpers.
#[derive(Debug, thiserror::Error)]
pub enum LdCacheError {
    #[error("ld.so.cache: cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("ld.so.cache: file is larger than {max} bytes, refusing to read it")]
    TooLarge { max: u64 },
    #[error("ld.so.cache: file is too short ({len} bytes) for a {what}")]
    Truncated { what: &'static str, len: usize },
    #[error("ld.so.cache: bad magic, neither `ld.so-1.7.0` nor `glibc-ld.so.cache1.1`")]
    BadMagic,
    #[error("ld.so.cache: unsupported new-format version {0:?} (expected \"1.1\")")]
    UnsupportedVersion(String),
    #[error("ld.so.cache: header flags {0:#x} mark the endianness as invalid")]
    InvalidEndianness(u8),
    #[error(
        "ld.so.cache: {format} header claims {nlibs} entries, which do not fit in {len} bytes"
    )]
    TooManyEntries {
        format: &'static str,
        nlibs: u32,
        len: usize,
    },
    #[error("ld.so.cache: entry {index}: {what} string offset {offset:#x} is outside the file or unterminated")]
    BadString {
        index: usize,
        what: &'static str,
        offset: u64,
    },
    #[error("ld.so.cache: malformed extension directory: {0}")]
    BadExtension(&'static str),
}

/// Which layout the file used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheFormat {
    /// `ld.so-1.7.0` alone (libc5 era; no hwcap or extensions).
    Old,
    /// `glibc-ld.so.cache1.1` alone (glibc >= 2.32 default).
    New,
    /// Old header and entries, followed by a new-format cache (entries read from the latter).
    Compat,
}

/// The architecture/ABI part of an entry's flags (`flags & 0xff00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheArch {
    /// 0x0000: generic, in practice 32-bit (i386, ...).
    Generic32,
    /// 0x0300.
    X86_64,
    /// 0x0800.
    X32,
    /// 0x0900.
    ArmHf,
    /// 0x0b00.
    ArmSf,
    /// 0x0a00.
    AArch64,
    /// 0x0500.
    Ppc64,
    /// 0x0400.
    S390x,
    /// 0x1000 (RISC-V double-float ABI).
    RiscV64,
    /// 0x1200 (LoongArch double-float ABI).
    LoongArch64,
    /// Any other value of `flags & 0xff00`.
    Other(u16),
}

// ELF machines used by `CacheArch::matches_elf` and `ldcache_write::cache_flags_for`.
pub(crate) const EM_386: u16 = 3;
const EM_MIPS: u16 = 8;
pub(crate) const EM_PPC64: u16 = 21;
pub(crate) const EM_S390: u16 = 22;
pub(crate) const EM_ARM: u16 = 40;
const EM_SPARCV9: u16 = 43;
const EM_IA_64: u16 = 50;
pub(crate) const EM_X86_64: u16 = 62;
pub(crate) const EM_AARCH64: u16 = 183;
pub(crate) const EM_RISCV: u16 = 243;
pub(crate) const EM_LOONGARCH: u16 = 258;

impl CacheArch {
    /// Decodes `flags & 0xff00`.
    pub fn from_flags(flags: i32) -> Self {
        // Masked to 16 bits, so the conversion cannot fail.
        let arch = u16::try_from(flags & FLAG_REQUIRED_MASK).unwrap_or(u16::MAX);
        match arch {
            0x0000 => Self::Generic32,
            0x0300 => Self::X86_64,
            0x0800 => Self::X32,
            0x0900 => Self::ArmHf,
            0x0b00 => Self::ArmSf,
            0x0a00 => Self::AArch64,
            0x0500 => Self::Ppc64,
            0x0400 => Self::S390x,
            0x1000 => Self::RiscV64,
            0x1200 => Self::LoongArch64,
            other => Self::Other(other),
        }
    }

    /// The `flags & 0xff00` value this variant stands for.
    pub fn flag_bits(&self) -> u16 {
        match self {
            Self::Generic32 => 0x0000,
            Self::X86_64 => 0x0300,
            Self::X32 => 0x0800,
            Self::ArmHf => 0x0900,
            Self::ArmSf => 0x0b00,
            Self::AArch64 => 0x0a00,
            Self::Ppc64 => 0x0500,
            Self::S390x => 0x0400,
            Self::RiscV64 => 0x1000,
            Self::LoongArch64 => 0x1200,
            Self::Other(v) => *v,
        }
    }

    /// Whether an ELF object of this class and `e_machine` can be what an entry of this
    /// architecture describes (the test the loader makes, minus float-ABI details that
    /// the ELF header flags would be needed for).
    pub fn matches_elf(&self, class: ElfClass, machine: u16) -> bool {
        let is64 = class == ElfClass::Elf64;
        match self {
            // Every 64-bit ABI has its own flag; x32 is 32-bit with EM_X86_64.
            Self::Generic32 => !is64 && machine != EM_X86_64,
            Self::X86_64 => is64 && machine == EM_X86_64,
            Self::X32 => !is64 && machine == EM_X86_64,
            Self::ArmHf | Self::ArmSf => !is64 && machine == EM_ARM,
            Self::AArch64 => is64 && machine == EM_AARCH64,
            Self::Ppc64 => is64 && machine == EM_PPC64,
            Self::S390x => is64 && machine == EM_S390,
            Self::RiscV64 => is64 && machine == EM_RISCV,
            Self::LoongArch64 => is64 && machine == EM_LOONGARCH,
            Self::Other(bits) => match bits {
                0x0100 => is64 && machine == EM_SPARCV9,
                0x0200 => is64 && machine == EM_IA_64,
                0x0600 | 0x0c00 | 0x0d00 => !is64 && machine == EM_MIPS,
                0x0700 | 0x0e00 => is64 && machine == EM_MIPS,
                0x0f00 => machine == EM_RISCV,
                0x1100 => is64 && machine == EM_LOONGARCH,
                _ => false,
            },
        }
    }
}

impl fmt::Display for CacheArch {
    /// The suffix `ldconfig -p` prints after the type (`x86-64`, `AArch64`, ...);
    /// empty for [`CacheArch::Generic32`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.flag_bits() {
            0x0000 => "",
            0x0100 | 0x0400 | 0x0500 | 0x0700 => "64bit",
            0x0200 => "IA-64",
            0x0300 => "x86-64",
            0x0600 => "N32",
            0x0800 => "x32",
            0x0900 => "hard-float",
            0x0a00 => "AArch64",
            0x0b00 | 0x0f00 => "soft-float",
            0x0c00 => "nan2008",
            0x0d00 => "N32,nan2008",
            0x0e00 => "64bit,nan2008",
            0x1000 => "double-float",
            other => return write!(f, "{other}"),
        };
        f.write_str(s)
    }
}

/// One library of the cache.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheEntry {
    /// The key: usually the soname (`libc.so.6`), also linker names (`libz.so`).
    pub soname: String,
    /// Full path of the file, as ldconfig saw it (inside the rootfs it was run on).
    pub path: String,
    /// Type (`& 0xff`) and architecture (`& 0xff00`) flags.
    pub flags: i32,
    /// OS ABI version (old ldconfig only; 0 otherwise).
    pub osversion: u32,
    /// Hardware capability bits; bit 62 marks a glibc-hwcaps subdirectory entry.
    pub hwcap: u64,
}

impl CacheEntry {
    /// Architecture/ABI of the entry.
    pub fn arch(&self) -> CacheArch {
        CacheArch::from_flags(self.flags)
    }

    /// Whether the entry is an ELF library (type 1, 2 or 3; 0 is a libc4 a.out library).
    pub fn is_elf(&self) -> bool {
        matches!(
            self.flags & FLAG_TYPE_MASK,
            FLAG_ELF | FLAG_ELF_LIBC5 | FLAG_ELF_LIBC6
        )
    }

    /// Index into [`LdCache::hwcap_subdirs`] when bit 62 of `hwcap` is set.
    pub fn hwcap_subdir_index(&self) -> Option<u32> {
        if self.hwcap & HWCAP_EXTENSION != 0 {
            // The low 32 bits, by definition of the extension.
            Some((self.hwcap & 0xffff_ffff) as u32)
        } else {
            None
        }
    }

    /// The flags text `ldconfig -p` prints, e.g. `libc6,x86-64`.
    pub fn flags_description(&self) -> String {
        let kind = match self.flags & FLAG_TYPE_MASK {
            0 => "libc4",
            FLAG_ELF => "ELF",
            FLAG_ELF_LIBC5 => "libc5",
            FLAG_ELF_LIBC6 => "libc6",
            _ => "unknown",
        };
        let arch = self.arch().to_string();
        if arch.is_empty() {
            kind.to_string()
        } else {
            format!("{kind},{arch}")
        }
    }
}

/// A parsed ld.so.cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdCache {
    /// Entries in file order (ldconfig sorts them; hwcap entries precede the plain ones).
    pub entries: Vec<CacheEntry>,
    /// Extension tag 0, e.g. `ldconfig (Debian GLIBC 2.36-9+deb12u14) stable release version 2.36`.
    pub generator: Option<String>,
    /// Extension tag 1: names of glibc-hwcaps subdirectories (`x86-64-v3`, ...).
    pub hwcap_subdirs: Vec<String>,
    /// Layout of the file.
    pub format: CacheFormat,
}

impl LdCache {
    /// Entries for `soname` of architecture `arch`, in cache order, plain entries
    /// (`hwcap == 0`) first, then the hwcap / glibc-hwcaps ones.
    pub fn lookup<'a>(
        &'a self,
        soname: &str,
        arch: CacheArch,
    ) -> impl Iterator<Item = &'a CacheEntry> {
        self.lookup_by(soname, |e| e.arch() == arch)
    }

    /// Like [`LdCache::lookup`], selecting entries whose architecture
    /// [matches](CacheArch::matches_elf) an ELF class and machine.
    pub fn lookup_elf<'a>(
        &'a self,
        soname: &str,
        class: ElfClass,
        machine: u16,
    ) -> impl Iterator<Item = &'a CacheEntry> {
        self.lookup_by(soname, |e| e.arch().matches_elf(class, machine))
    }

    fn lookup_by<'a>(
        &'a self,
        soname: &str,
        keep: impl Fn(&CacheEntry) -> bool,
    ) -> std::vec::IntoIter<&'a CacheEntry> {
        let mut found: Vec<&CacheEntry> = self
            .entries
            .iter()
            .filter(|e| e.soname == soname && keep(e))
            .collect();
        // Stable: keeps cache order within each group.
        found.sort_by_key(|e| e.hwcap != 0);
        found.into_iter()
    }

    /// Name of the glibc-hwcaps subdirectory of an entry, if it has one.
    pub fn hwcap_subdir(&self, entry: &CacheEntry) -> Option<&str> {
        let index = usize::try_from(entry.hwcap_subdir_index()?).ok()?;
        self.hwcap_subdirs.get(index).map(String::as_str)
    }

    /// The line `ldconfig -p` prints for an entry (without the leading tab).
    pub fn describe(&self, entry: &CacheEntry) -> String {
        let mut s = format!("{} ({}", entry.soname, entry.flags_description());
        if let Some(sub) = self.hwcap_subdir(entry) {
            s.push_str(&format!(", hwcap: \"{sub}\""));
        } else if entry.hwcap != 0 {
            s.push_str(&format!(", hwcap: {:#018x}", entry.hwcap));
        }
        if entry.osversion != 0 {
            let os = match entry.osversion >> 24 {
                0 => "Linux",
                1 => "Hurd",
                2 => "Solaris",
                3 => "FreeBSD",
                4 => "kNetBSD",
                5 => "Syllable",
                _ => "Unknown OS",
            };
            s.push_str(&format!(
                ", OS ABI: {os} {}.{}.{}",
                (entry.osversion >> 16) & 0xff,
                (entry.osversion >> 8) & 0xff,
                entry.osversion & 0xff
            ));
        }
        s.push_str(&format!(") => {}", entry.path));
        s
    }
}

/// Reads and parses an already opened cache file, refusing files over [`MAX_CACHE_LEN`].
pub fn read_file(file: &File) -> Result<LdCache, LdCacheError> {
    read_file_capped(file, MAX_CACHE_LEN)
}

/// Like [`read_file`] with a caller-chosen size cap.
pub fn read_file_capped(file: &File, max_len: u64) -> Result<LdCache, LdCacheError> {
    let bytes = read_bounded(file, max_len)?;
    parse(&bytes)
}

/// Reads at most `max_len` bytes of `file`; a longer file is an error.
fn read_bounded(file: &File, max_len: u64) -> Result<Vec<u8>, LdCacheError> {
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0);
    if hint > max_len {
        return Err(LdCacheError::TooLarge { max: max_len });
    }
    // The size is only a hint (the file may change): pre-allocate at most 64 MiB.
    let mut bytes = Vec::with_capacity(usize::try_from(hint.min(1 << 26)).unwrap_or(0));
    // One byte past the cap tells a file that grew past it.
    let mut reader = file.take(max_len.saturating_add(1));
    reader.read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_len {
        return Err(LdCacheError::TooLarge { max: max_len });
    }
    Ok(bytes)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

/// Bounds-checked reads of the buffer.
#[derive(Clone, Copy)]
struct Reader<'a> {
    bytes: &'a [u8],
    endian: Endian,
}

impl<'a> Reader<'a> {
    fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let end = at.checked_add(N)?;
        self.bytes.get(at..end)?.try_into().ok()
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let a = self.array::<4>(at)?;
        Some(match self.endian {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        })
    }

    fn i32(&self, at: usize) -> Option<i32> {
        let a = self.array::<4>(at)?;
        Some(match self.endian {
            Endian::Little => i32::from_le_bytes(a),
            Endian::Big => i32::from_be_bytes(a),
        })
    }

    fn u64(&self, at: usize) -> Option<u64> {
        let a = self.array::<8>(at)?;
        Some(match self.endian {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        })
    }

    /// NUL-terminated string at `base + offset` (non-UTF-8 bytes replaced).
    fn cstr(&self, base: usize, offset: u32) -> Option<String> {
        let start = base.checked_add(usize::try_from(offset).ok()?)?;
        let rest = self.bytes.get(start..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        Some(String::from_utf8_lossy(rest.get(..len)?).into_owned())
    }
}

/// Number of entries of `entry_len` bytes that fit between `start` and the end of `len`.
fn max_entries(len: usize, start: usize, entry_len: usize) -> usize {
    len.saturating_sub(start) / entry_len
}

/// Endianness of a header without flags: the one whose entry count fits the file
/// (the smaller when both do, a byte-swapped small count being huge).
fn guess_endian(bytes: &[u8], nlibs_at: usize, start: usize, entry_len: usize) -> Endian {
    let fit = max_entries(bytes.len(), start, entry_len);
    let le = Reader {
        bytes,
        endian: Endian::Little,
    }
    .u32(nlibs_at)
    .unwrap_or(u32::MAX);
    let be = Reader {
        bytes,
        endian: Endian::Big,
    }
    .u32(nlibs_at)
    .unwrap_or(u32::MAX);
    let fits = |n: u32| usize::try_from(n).is_ok_and(|n| n <= fit);
    match (fits(le), fits(be)) {
        (false, true) => Endian::Big,
        (true, true) if be < le => Endian::Big,
        _ => Endian::Little,
    }
}

/// Parses a whole ld.so.cache image.
pub fn parse(bytes: &[u8]) -> Result<LdCache, LdCacheError> {
    if bytes.starts_with(OLD_MAGIC) {
        parse_old_or_compat(bytes)
    } else if bytes.starts_with(NEW_MAGIC) {
        parse_new(bytes, 0).map(|c| LdCache {
            format: CacheFormat::New,
            ..c
        })
    } else if bytes.len() < OLD_MAGIC.len() {
        Err(LdCacheError::Truncated {
            what: "cache header",
            len: bytes.len(),
        })
    } else {
        Err(LdCacheError::BadMagic)
    }
}

fn parse_old_or_compat(bytes: &[u8]) -> Result<LdCache, LdCacheError> {
    if bytes.len() < OLD_HEADER_LEN {
        return Err(LdCacheError::Truncated {
            what: "old-format header",
            len: bytes.len(),
        });
    }
    let endian = guess_endian(bytes, 12, OLD_HEADER_LEN, OLD_ENTRY_LEN);
    let r = Reader { bytes, endian };
    let nlibs = r.u32(12).unwrap_or(0);
    let too_many = || LdCacheError::TooManyEntries {
        format: "old-format",
        nlibs,
        len: bytes.len(),
    };
    let n = usize::try_from(nlibs).map_err(|_| too_many())?;
    if n > max_entries(bytes.len(), OLD_HEADER_LEN, OLD_ENTRY_LEN) {
        return Err(too_many());
    }
    // Cannot overflow: n * 12 <= bytes.len().
    let entries_end = OLD_HEADER_LEN + n * OLD_ENTRY_LEN;

    // A new-format cache may follow at the next 8-byte boundary; prefer it.
    let new_at = entries_end.checked_add(7).map(|v| v & !7);
    if let Some(new_at) = new_at {
        if bytes
            .get(new_at..)
            .is_some_and(|rest| rest.starts_with(NEW_MAGIC))
        {
            let cache = parse_new(bytes, new_at)?;
            return Ok(LdCache {
                format: CacheFormat::Compat,
                ..cache
            });
        }
    }

    let mut entries = Vec::with_capacity(n);
    for index in 0..n {
        let at = OLD_HEADER_LEN + index * OLD_ENTRY_LEN;
        let (Some(flags), Some(key), Some(value)) = (r.i32(at), r.u32(at + 4), r.u32(at + 8))
        else {
            return Err(too_many());
        };
        let soname = r.cstr(entries_end, key).ok_or(LdCacheError::BadString {
            index,
            what: "soname",
            offset: u64::from(key),
        })?;
        let path = r.cstr(entries_end, value).ok_or(LdCacheError::BadString {
            index,
            what: "path",
            offset: u64::from(value),
        })?;
        entries.push(CacheEntry {
            soname,
            path,
            flags,
            osversion: 0,
            hwcap: 0,
        });
    }
    Ok(LdCache {
        entries,
        generator: None,
        hwcap_subdirs: Vec::new(),
        format: CacheFormat::Old,
    })
}

/// Parses the new-format cache whose header starts at `base`. String offsets (entries
/// and glibc-hwcaps names) are relative to `base`; the extension directory and section
/// offsets are relative to the file start, as in glibc's `cache_extension_load`.
fn parse_new(bytes: &[u8], base: usize) -> Result<LdCache, LdCacheError> {
    let header_end = base.checked_add(NEW_HEADER_LEN);
    if header_end.is_none_or(|end| end > bytes.len()) {
        return Err(LdCacheError::Truncated {
            what: "new-format header",
            len: bytes.len(),
        });
    }
    let header = bytes.get(base..).unwrap_or_default();
    let version = header.get(NEW_MAGIC.len()..20).unwrap_or_default();
    if version != NEW_VERSION {
        return Err(LdCacheError::UnsupportedVersion(
            String::from_utf8_lossy(version).into_owned(),
        ));
    }
    let flags = header.get(28).copied().unwrap_or(0);
    let entries_start = base + NEW_HEADER_LEN;
    let endian = match flags & 3 {
        0 => guess_endian(bytes, base + 20, entries_start, NEW_ENTRY_LEN),
        2 => Endian::Little,
        3 => Endian::Big,
        _ => return Err(LdCacheError::InvalidEndianness(flags)),
    };
    let r = Reader { bytes, endian };
    let nlibs = r.u32(base + 20).unwrap_or(0);
    let too_many = || LdCacheError::TooManyEntries {
        format: "new-format",
        nlibs,
        len: bytes.len(),
    };
    let n = usize::try_from(nlibs).map_err(|_| too_many())?;
    if n > max_entries(bytes.len(), entries_start, NEW_ENTRY_LEN) {
        return Err(too_many());
    }
    let mut entries = Vec::with_capacity(n);
    for index in 0..n {
        let at = entries_start + index * NEW_ENTRY_LEN;
        let (Some(flags), Some(key), Some(value), Some(osversion), Some(hwcap)) = (
            r.i32(at),
            r.u32(at + 4),
            r.u32(at + 8),
            r.u32(at + 12),
            r.u64(at + 16),
        ) else {
            return Err(too_many());
        };
        let soname = r.cstr(base, key).ok_or(LdCacheError::BadString {
            index,
            what: "soname",
            offset: u64::from(key),
        })?;
        let path = r.cstr(base, value).ok_or(LdCacheError::BadString {
            index,
            what: "path",
            offset: u64::from(value),
        })?;
        entries.push(CacheEntry {
            soname,
            path,
            flags,
            osversion,
            hwcap,
        });
    }

    let mut cache = LdCache {
        entries,
        generator: None,
        hwcap_subdirs: Vec::new(),
        format: CacheFormat::New,
    };
    let extension_offset = r.u32(base + 32).unwrap_or(0);
    if extension_offset != 0 {
        parse_extensions(r, base, extension_offset, &mut cache)?;
    }
    Ok(cache)
}

fn parse_extensions(
    r: Reader<'_>,
    base: usize,
    offset: u32,
    cache: &mut LdCache,
) -> Result<(), LdCacheError> {
    let at = usize::try_from(offset)
        .map_err(|_| LdCacheError::BadExtension("directory offset out of range"))?;
    let magic = r.u32(at).ok_or(LdCacheError::BadExtension(
        "directory offset beyond the end of the file",
    ))?;
    if magic != EXTENSION_MAGIC {
        // glibc's ld.so ignores a directory without the magic; so do we.
        return Ok(());
    }
    let count = r
        .u32(at + 4)
        .ok_or(LdCacheError::BadExtension("truncated directory header"))?;
    let sections_at = at + 8;
    let count = usize::try_from(count)
        .ok()
        .filter(|&c| c <= max_entries(r.bytes.len(), sections_at, 16))
        .ok_or(LdCacheError::BadExtension(
            "section count exceeds the file size",
        ))?;
    for i in 0..count {
        let s = sections_at + i * 16;
        let (Some(tag), Some(off), Some(size)) = (r.u32(s), r.u32(s + 8), r.u32(s + 12)) else {
            return Err(LdCacheError::BadExtension("truncated section descriptor"));
        };
        let data = usize::try_from(off)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(o, z)| r.bytes.get(o..o.checked_add(z)?))
            .ok_or(LdCacheError::BadExtension("section data outside the file"))?;
        match tag {
            EXTENSION_TAG_GENERATOR => {
                cache.generator = Some(String::from_utf8_lossy(data).into_owned());
            }
            EXTENSION_TAG_GLIBC_HWCAPS => {
                // An array of u32 string offsets, relative to the new header like the
                // entries' strings (ldconfig writes them so; for the new format alone
                // that is also the file start, which is what glibc's readers assume).
                let mut names = Vec::with_capacity(data.len() / 4);
                for chunk in data.chunks_exact(4) {
                    let str_off = Reader {
                        bytes: chunk,
                        endian: r.endian,
                    }
                    .u32(0)
                    .unwrap_or(u32::MAX);
                    let name = r.cstr(base, str_off).ok_or(LdCacheError::BadExtension(
                        "glibc-hwcaps name outside the file",
                    ))?;
                    names.push(name);
                }
                cache.hwcap_subdirs = names;
            }
            // Unknown tags are ignored, as by ld.so.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// The host ldconfig (the oracle); tests need it.
    fn ldconfig() -> PathBuf {
        for p in ["/sbin/ldconfig", "/usr/sbin/ldconfig"] {
            if Path::new(p).exists() {
                return PathBuf::from(p);
            }
        }
        PathBuf::from("ldconfig")
    }

    fn run(cmd: &mut Command) -> String {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `ldconfig -p` output: (count line's number, entry lines without the tab, generator).
    fn oracle(root: Option<&Path>) -> (usize, Vec<String>, Option<String>) {
        let mut cmd = Command::new(ldconfig());
        if let Some(root) = root {
            cmd.arg("-r").arg(root);
        }
        let text = run(cmd.arg("-p"));
        let mut lines = text.lines();
        let first = lines.next().expect("header line");
        let count = first
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("count");
        let mut entries = Vec::new();
        let mut generator = None;
        for line in lines {
            if let Some(g) = line.strip_prefix("Cache generated by: ") {
                generator = Some(g.to_string());
            } else {
                entries.push(line.strip_prefix('\t').expect("tab").to_string());
            }
        }
        (count, entries, generator)
    }

    fn gcc(args: &[&str], out: &Path, soname: &str, src: &Path) -> bool {
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-nostdlib"])
            .args(args)
            .arg(format!("-Wl,-soname,{soname}"))
            .arg("-o")
            .arg(out)
            .arg(src)
            .status()
            .unwrap_or_else(|e| panic!("gcc is needed to build fixtures: {e}"))
            .success()
    }

    /// A root with 64-bit libraries in two directories, one glibc-hwcaps variant and,
    /// when gcc can build `-m32` objects, a 32-bit library. Returns whether it has the latter.
    fn fixture_root(root: &Path) -> bool {
        let src = root.join("stub.c");
        std::fs::write(&src, "int stub_fn(void) { return 1; }\n").unwrap();
        let a = root.join("opt/a");
        let hw = a.join("glibc-hwcaps/x86-64-v3");
        let b = root.join("opt/b");
        let l32 = root.join("opt/lib32");
        for d in [&hw, &b, &l32, &root.join("etc")] {
            std::fs::create_dir_all(d).unwrap();
        }
        assert!(gcc(&[], &a.join("libfoo.so.1.2.3"), "libfoo.so.1", &src));
        assert!(gcc(&[], &hw.join("libfoo.so.1.2.3"), "libfoo.so.1", &src));
        assert!(gcc(&[], &b.join("libbar.so.2"), "libbar.so.2", &src));
        assert!(gcc(&[], &b.join("libbaz-x.so"), "libbaz.so.7", &src));
        // -m32 needs gcc-multilib; the 32-bit variant is checked only where it exists.
        let has32 = gcc(&["-m32"], &l32.join("libfoo.so.1.0"), "libfoo.so.1", &src);
        std::fs::write(root.join("etc/ld.so.conf"), "/opt/a\n/opt/b\n/opt/lib32\n").unwrap();
        has32
    }

    fn build_cache(root: &Path, format: &str) -> Vec<u8> {
        run(Command::new(ldconfig())
            .arg("-r")
            .arg(root)
            .args(["-c", format]));
        std::fs::read(root.join("etc/ld.so.cache")).unwrap()
    }

    fn lines(cache: &LdCache) -> Vec<String> {
        cache.entries.iter().map(|e| cache.describe(e)).collect()
    }

    #[test]
    fn fixture_caches_match_ldconfig_in_all_formats() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let has32 = fixture_root(root);

        let new_bytes = build_cache(root, "new");
        let new = parse(&new_bytes).unwrap();
        assert_eq!(new.format, CacheFormat::New);
        let (count, expected, generator) = oracle(Some(root));
        assert_eq!(new.entries.len(), count);
        assert_eq!(lines(&new), expected);
        assert_eq!(new.generator, generator);
        assert!(new
            .generator
            .as_deref()
            .unwrap()
            .contains("release version"));
        assert_eq!(new.hwcap_subdirs, vec!["x86-64-v3".to_string()]);

        // Lookups: plain entry first, then the glibc-hwcaps one.
        let foo: Vec<_> = new.lookup("libfoo.so.1", CacheArch::X86_64).collect();
        assert_eq!(foo.len(), 2);
        assert_eq!(foo[0].path, "/opt/a/libfoo.so.1");
        assert_eq!(foo[0].hwcap_subdir_index(), None);
        assert_eq!(foo[1].hwcap_subdir_index(), Some(0));
        assert_eq!(new.hwcap_subdir(foo[1]), Some("x86-64-v3"));
        assert!(foo
            .iter()
            .all(|e| e.is_elf() && e.arch() == CacheArch::X86_64));
        let baz: Vec<_> = new.lookup("libbaz.so.7", CacheArch::X86_64).collect();
        assert_eq!(baz.len(), 1);
        assert_eq!(baz[0].path, "/opt/b/libbaz.so.7");
        assert_eq!(baz[0].flags_description(), "libc6,x86-64");
        assert_eq!(new.lookup("libbar.so.2", CacheArch::AArch64).count(), 0);
        assert_eq!(
            new.lookup_elf("libbar.so.2", ElfClass::Elf64, 62).count(),
            1
        );
        let l32: Vec<_> = new.lookup("libfoo.so.1", CacheArch::Generic32).collect();
        if has32 {
            assert_eq!(l32.len(), 1);
            assert_eq!(l32[0].path, "/opt/lib32/libfoo.so.1");
            assert_eq!(new.lookup_elf("libfoo.so.1", ElfClass::Elf32, 3).count(), 1);
        } else {
            eprintln!("gcc -m32 unavailable: 32-bit fixture library not checked");
            assert!(l32.is_empty());
        }

        // Compat: old part, then the new one, which is read.
        let compat_bytes = build_cache(root, "compat");
        assert!(compat_bytes.starts_with(OLD_MAGIC));
        let compat = parse(&compat_bytes).unwrap();
        assert_eq!(compat.format, CacheFormat::Compat);
        assert_eq!(compat.entries, new.entries);
        assert_eq!(compat.generator, new.generator);
        assert_eq!(compat.hwcap_subdirs, new.hwcap_subdirs);
        let (count, expected, generator) = oracle(Some(root));
        assert_eq!(compat.entries.len(), count);
        assert_eq!(compat.generator, generator);
        // glibc 2.36's `ldconfig -p` resolves glibc-hwcaps names of a compat cache against
        // the file start instead of the new header and prints garbage for them: compare
        // those lines with the new-format output instead.
        for ((ours, theirs), from_new) in lines(&compat).iter().zip(&expected).zip(lines(&new)) {
            if theirs.contains("hwcap: \"") {
                assert_eq!(ours, &from_new);
            } else {
                assert_eq!(ours, theirs);
            }
        }

        let old_bytes = build_cache(root, "old");
        let old = parse(&old_bytes).unwrap();
        assert_eq!(old.format, CacheFormat::Old);
        let (count, expected, generator) = oracle(Some(root));
        assert_eq!(old.entries.len(), count);
        assert_eq!(lines(&old), expected);
        assert_eq!(old.generator, generator);
        assert_eq!(generator, None);

        // Every strict prefix of each real cache is an error, never a panic.
        for bytes in [&new_bytes, &compat_bytes, &old_bytes] {
            for len in 0..bytes.len() {
                assert!(
                    parse(&bytes[..len]).is_err(),
                    "prefix of {len} bytes parsed"
                );
            }
        }
    }

    #[test]
    fn host_cache_matches_ldconfig_p() {
        let bytes = std::fs::read("/etc/ld.so.cache").expect("host /etc/ld.so.cache");
        let file = File::open("/etc/ld.so.cache").unwrap();
        let cache = read_file(&file).unwrap();
        assert_eq!(cache, parse(&bytes).unwrap());
        let (count, expected, generator) = oracle(None);
        assert_eq!(cache.entries.len(), count);
        assert_eq!(lines(&cache), expected);
        assert_eq!(cache.generator, generator);
        assert!(cache.lookup("libc.so.6", CacheArch::X86_64).count() >= 1);

        // Truncations: every length of the first 4 KiB, then a stride.
        for len in (0..bytes.len().min(4096)).chain((4096..bytes.len()).step_by(61)) {
            assert!(
                parse(&bytes[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
    }

    #[test]
    fn file_helper_enforces_the_cap() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), vec![0u8; 100]).unwrap();
        let f = File::open(tmp.path()).unwrap();
        assert!(matches!(
            read_file_capped(&f, 99),
            Err(LdCacheError::TooLarge { max: 99 })
        ));
        let f = File::open(tmp.path()).unwrap();
        assert!(matches!(
            read_file_capped(&f, 100),
            Err(LdCacheError::BadMagic)
        ));
    }

    /// Test-only writer of caches (any endianness), to cover what the host cannot make.
    fn write_new(
        endian: Endian,
        entries: &[(i32, &str, &str, u64)],
        generator: Option<&str>,
        hwcaps: &[&str],
        prefix: usize,
    ) -> Vec<u8> {
        let u32b = |v: u32| match endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        let u64b = |v: u64| match endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        // String table right after the entries, offsets relative to the header.
        let mut strings = Vec::new();
        let strings_at = NEW_HEADER_LEN + entries.len() * NEW_ENTRY_LEN;
        let mut add = |s: &str| {
            let off = (strings_at + strings.len()) as u32;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            off
        };
        let mut ents = Vec::new();
        for (flags, soname, path, hwcap) in entries {
            ents.extend_from_slice(&u32b(*flags as u32));
            ents.extend_from_slice(&u32b(add(soname)));
            ents.extend_from_slice(&u32b(add(path)));
            ents.extend_from_slice(&u32b(0));
            ents.extend_from_slice(&u64b(*hwcap));
        }
        let hw_offs: Vec<u32> = hwcaps.iter().map(|h| add(h)).collect();
        while strings.len() % 4 != 0 {
            strings.push(0);
        }
        let ext_at = prefix + strings_at + strings.len();
        let nsec = u32::from(generator.is_some()) + u32::from(!hwcaps.is_empty());
        let mut ext = Vec::new();
        ext.extend_from_slice(&u32b(EXTENSION_MAGIC));
        ext.extend_from_slice(&u32b(nsec));
        let mut data = Vec::new();
        let data_at = ext_at + 8 + 16 * nsec as usize;
        if !hwcaps.is_empty() {
            ext.extend_from_slice(&u32b(EXTENSION_TAG_GLIBC_HWCAPS));
            ext.extend_from_slice(&u32b(0));
            ext.extend_from_slice(&u32b((data_at + data.len()) as u32));
            ext.extend_from_slice(&u32b(4 * hwcaps.len() as u32));
            for o in &hw_offs {
                data.extend_from_slice(&u32b(*o));
            }
        }
        if let Some(g) = generator {
            ext.extend_from_slice(&u32b(EXTENSION_TAG_GENERATOR));
            ext.extend_from_slice(&u32b(0));
            ext.extend_from_slice(&u32b((data_at + data.len()) as u32));
            ext.extend_from_slice(&u32b(g.len() as u32));
            data.extend_from_slice(g.as_bytes());
        }
        let mut out = Vec::new();
        out.extend_from_slice(NEW_MAGIC);
        out.extend_from_slice(NEW_VERSION);
        out.extend_from_slice(&u32b(entries.len() as u32));
        out.extend_from_slice(&u32b(strings.len() as u32));
        out.push(if endian == Endian::Little { 2 } else { 3 });
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&u32b(if nsec > 0 { ext_at as u32 } else { 0 }));
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&ents);
        out.extend_from_slice(&strings);
        if nsec > 0 {
            out.extend_from_slice(&ext);
            out.extend_from_slice(&data);
        }
        out
    }

    fn write_old(endian: Endian, entries: &[(i32, &str, &str)]) -> Vec<u8> {
        let u32b = |v: u32| match endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        let mut out = Vec::new();
        out.extend_from_slice(OLD_MAGIC);
        out.push(0);
        out.extend_from_slice(&u32b(entries.len() as u32));
        let mut strings = Vec::new();
        for (flags, soname, path) in entries {
            out.extend_from_slice(&u32b(*flags as u32));
            out.extend_from_slice(&u32b(strings.len() as u32));
            strings.extend_from_slice(soname.as_bytes());
            strings.push(0);
            out.extend_from_slice(&u32b(strings.len() as u32));
            strings.extend_from_slice(path.as_bytes());
            strings.push(0);
        }
        out.extend_from_slice(&strings);
        out
    }

    const SYNTH: &[(i32, &str, &str, u64)] = &[
        (0x0a03, "libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", 0),
        (0x0003, "libc.so.6", "/lib/i386-linux-gnu/libc.so.6", 0),
        (0x0503, "libm.so.6", "/lib64/libm.so.6", 0),
        (
            0x0403,
            "libz.so.1",
            "/lib64/glibc-hwcaps/z15/libz.so.1",
            HWCAP_EXTENSION | 1,
        ),
        (0x0403, "libz.so.1", "/lib64/libz.so.1", 0),
        (0x1003, "libz.so.1", "/lib64/lp64d/libz.so.1", 0),
    ];

    #[test]
    fn synthetic_big_and_little_endian_new_format() {
        let gen = "ldconfig (GNU libc) stable release version 2.39";
        let le = parse(&write_new(
            Endian::Little,
            SYNTH,
            Some(gen),
            &["z14", "z15"],
            0,
        ))
        .unwrap();
        let be = parse(&write_new(
            Endian::Big,
            SYNTH,
            Some(gen),
            &["z14", "z15"],
            0,
        ))
        .unwrap();
        assert_eq!(le, be);
        assert_eq!(le.format, CacheFormat::New);
        assert_eq!(le.generator.as_deref(), Some(gen));
        assert_eq!(le.hwcap_subdirs, ["z14", "z15"]);
        let arches: Vec<_> = le.entries.iter().map(CacheEntry::arch).collect();
        assert_eq!(
            arches,
            [
                CacheArch::AArch64,
                CacheArch::Generic32,
                CacheArch::Ppc64,
                CacheArch::S390x,
                CacheArch::S390x,
                CacheArch::RiscV64
            ]
        );
        let z: Vec<_> = le.lookup("libz.so.1", CacheArch::S390x).collect();
        assert_eq!(z[0].path, "/lib64/libz.so.1");
        assert_eq!(le.hwcap_subdir(z[1]), Some("z15"));
        assert_eq!(
            le.describe(z[1]),
            "libz.so.1 (libc6,64bit, hwcap: \"z15\") => /lib64/glibc-hwcaps/z15/libz.so.1"
        );
        assert_eq!(
            le.lookup_elf("libc.so.6", ElfClass::Elf64, 183)
                .map(|e| e.path.as_str())
                .collect::<Vec<_>>(),
            ["/lib/aarch64-linux-gnu/libc.so.6"]
        );
        assert_eq!(le.lookup_elf("libc.so.6", ElfClass::Elf32, 3).count(), 1);
        assert_eq!(le.lookup_elf("libc.so.6", ElfClass::Elf32, 62).count(), 0);

        // Unset endianness flag: guessed from the entry count.
        let mut unset = write_new(Endian::Big, SYNTH, None, &[], 0);
        unset[28] = 0;
        assert_eq!(parse(&unset).unwrap().entries, le.entries);
        let mut invalid = unset.clone();
        invalid[28] = 1;
        assert!(matches!(
            parse(&invalid),
            Err(LdCacheError::InvalidEndianness(1))
        ));
    }

    #[test]
    fn synthetic_old_and_compat_formats() {
        let old_entries: Vec<(i32, &str, &str)> =
            SYNTH.iter().map(|(f, s, p, _)| (*f, *s, *p)).collect();
        for endian in [Endian::Little, Endian::Big] {
            let old = parse(&write_old(endian, &old_entries)).unwrap();
            assert_eq!(old.format, CacheFormat::Old);
            assert_eq!(old.entries.len(), SYNTH.len());
            assert_eq!(old.entries[2].soname, "libm.so.6");
            assert_eq!(old.entries[2].path, "/lib64/libm.so.6");
            assert_eq!(old.entries[2].hwcap, 0);
        }
        // Compat by hand: an old part of 3 entries (52 bytes), new part at offset 56.
        let mut old_part = write_old(Endian::Little, &old_entries[..3]);
        old_part.truncate(OLD_HEADER_LEN + 3 * OLD_ENTRY_LEN);
        old_part.resize(56, 0);
        let new_part = write_new(Endian::Little, SYNTH, Some("gen"), &["z15", "z15"], 56);
        let compat = parse(&[old_part, new_part.clone()].concat()).unwrap();
        assert_eq!(compat.format, CacheFormat::Compat);
        assert_eq!(compat.entries.len(), SYNTH.len());
        assert_eq!(compat.generator.as_deref(), Some("gen"));
        assert_eq!(compat.hwcap_subdirs, ["z15", "z15"]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let good = write_new(Endian::Little, SYNTH, Some("gen"), &["z15"], 0);
        assert!(parse(&good).is_ok());
        assert!(matches!(parse(b""), Err(LdCacheError::Truncated { .. })));
        assert!(matches!(
            parse(b"not a cache file at all"),
            Err(LdCacheError::BadMagic)
        ));
        let mut v = good.clone();
        v[17..20].copy_from_slice(b"1.0");
        assert!(matches!(
            parse(&v),
            Err(LdCacheError::UnsupportedVersion(_))
        ));
        // Huge nlibs.
        for n in [u32::MAX, 0x1000_0000, SYNTH.len() as u32 + 100] {
            let mut v = good.clone();
            v[20..24].copy_from_slice(&n.to_le_bytes());
            assert!(matches!(
                parse(&v),
                Err(LdCacheError::TooManyEntries { .. })
            ));
        }
        let mut old = write_old(Endian::Little, &[(3, "a", "b")]);
        old[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&old),
            Err(LdCacheError::TooManyEntries { .. })
        ));
        // String offsets out of range, for key and value.
        for field in [4, 8] {
            let mut v = good.clone();
            let at = NEW_HEADER_LEN + field;
            v[at..at + 4].copy_from_slice(&(good.len() as u32 + 5).to_le_bytes());
            let err = parse(&v).unwrap_err();
            assert!(
                matches!(err, LdCacheError::BadString { index: 0, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("entry 0"));
            v[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            assert!(parse(&v).is_err());
        }
        // Extension directory and sections out of range.
        let mut v = good.clone();
        v[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&v), Err(LdCacheError::BadExtension(_))));
        let ext_at = u32::from_le_bytes(good[32..36].try_into().unwrap()) as usize;
        let mut v = good.clone();
        v[ext_at + 4..ext_at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&v), Err(LdCacheError::BadExtension(_))));
        let mut v = good.clone();
        v[ext_at + 16..ext_at + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&v), Err(LdCacheError::BadExtension(_))));
        // Wrong extension magic is ignored, as by ld.so.
        let mut v = good.clone();
        v[ext_at] ^= 0xff;
        let c = parse(&v).unwrap();
        assert_eq!(c.generator, None);
    }

    fn host_cache() -> Vec<u8> {
        std::fs::read("/etc/ld.so.cache")
            .unwrap_or_else(|_| write_new(Endian::Little, SYNTH, Some("gen"), &["z15"], 0))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_magic_never_panic(
            magic in 0usize..2,
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let head: &[u8] = if magic == 0 { OLD_MAGIC } else { b"glibc-ld.so.cache1.1" };
            let _ = parse(&[head, &bytes].concat());
        }

        #[test]
        fn mutated_real_caches_never_panic(
            which in 0usize..2,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
            cut in any::<usize>(),
        ) {
            let mut bytes = if which == 0 {
                host_cache()
            } else {
                write_new(Endian::Big, SYNTH, Some("gen"), &["z14", "z15"], 0)
            };
            // Bias edits towards the headers, where counts and offsets live.
            for (pos, val) in edits {
                let limit = if pos % 2 == 0 { 160.min(bytes.len()) } else { bytes.len() };
                if let Some(b) = bytes.get_mut(pos % limit.max(1)) {
                    *b = val;
                }
            }
            if cut % 4 == 0 {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            let _ = parse(&bytes);
        }
    }
}
