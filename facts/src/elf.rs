//! ELF facts the hooks decide on: class, machine, SONAME, NEEDED, RPATH/RUNPATH, interpreter
//! and symbol-version needs/definitions, read with goblin. Version tables are decoded by hand,
//! located through section headers or, for objects stripped of them, DT_VERNEED/DT_VERDEF.

use std::fs::File;
use std::io::Read;

use goblin::elf::dynamic::{
    DT_STRSZ, DT_STRTAB, DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM,
};
use goblin::elf::program_header::PT_LOAD;
use goblin::elf::section_header::{SHT_GNU_VERDEF, SHT_GNU_VERNEED};
use goblin::elf::Elf;

/// `VER_FLG_BASE`: the verdef entry naming the object itself.
const VER_FLG_BASE: u16 = 0x1;
/// `VER_FLG_WEAK`: a weak version reference.
const VER_FLG_WEAK: u16 = 0x2;
/// `sizeof (Elf{32,64}_Verneed)`, `Vernaux`, `Verdef` and `Verdaux`.
const VERNEED_LEN: usize = 16;
const VERNAUX_LEN: usize = 16;
const VERDEF_LEN: usize = 20;
const VERDAUX_LEN: usize = 8;

/// Errors of [`parse`] and [`read_file`].
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("ELF object: cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("ELF object: file is larger than {max} bytes, refusing to read it")]
    TooLarge { max: u64 },
    #[error("ELF object: not an ELF file (bad magic)")]
    NotElf,
    #[error("ELF object: file is too short ({len} bytes) for an ELF header")]
    Truncated { len: usize },
    #[error("ELF object: malformed: {0}")]
    Malformed(String),
    #[error("ELF object: malformed {table} table: {what}")]
    BadVersionTable {
        table: &'static str,
        what: &'static str,
    },
}

/// `EI_CLASS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElfClass {
    Elf32,
    Elf64,
}

/// A version needed from one file (`Elf_Vernaux`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VerNeedAux {
    /// Version name, e.g. `GLIBC_2.34`.
    pub name: String,
    /// `vna_flags & VER_FLG_WEAK`: missing it only warns.
    pub weak: bool,
}

/// The versions needed from one DT_NEEDED file (`Elf_Verneed`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VerNeed {
    /// File name as in DT_NEEDED, e.g. `libc.so.6`.
    pub file: String,
    pub versions: Vec<VerNeedAux>,
}

/// What the hooks need to know about one ELF object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfFacts {
    pub class: ElfClass,
    /// `e_machine` (62 x86-64, 183 AArch64, ...; see [`machine_name`]).
    pub machine: u16,
    pub little_endian: bool,
    pub soname: Option<String>,
    pub needed: Vec<String>,
    /// DT_RPATH entries, split at `:` (empty components dropped).
    pub rpath: Vec<String>,
    /// DT_RUNPATH entries, split at `:` (empty components dropped).
    pub runpath: Vec<String>,
    /// PT_INTERP, e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub interpreter: Option<String>,
    /// Version needs, in table order.
    pub verneed: Vec<VerNeed>,
    /// Version names defined (first `Verdaux` of each `Verdef`), without the base
    /// entry that names the object itself.
    pub verdef: Vec<String>,
    /// `ET_DYN` and not flagged as a position-independent executable.
    pub is_shared_object: bool,
}

impl ElfFacts {
    /// Versions needed from `file` (empty when none).
    pub fn versions_needed_from<'a>(
        &'a self,
        file: &'a str,
    ) -> impl Iterator<Item = &'a VerNeedAux> + 'a {
        self.verneed
            .iter()
            .filter(move |n| n.file == file)
            .flat_map(|n| n.versions.iter())
    }
}

/// A printable name for `e_machine`.
pub fn machine_name(machine: u16) -> &'static str {
    match machine {
        0 => "none",
        2 => "SPARC",
        3 => "i386",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "S/390",
        40 => "ARM",
        43 => "SPARC v9",
        50 => "IA-64",
        62 => "x86-64",
        183 => "AArch64",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => "unknown",
    }
}

/// Files up to this size are read whole; larger ones sparsely (see [`read_file`]).
const SPARSE_THRESHOLD: u64 = 64 << 10;
/// Most bytes read for one header table or section in a sparse read.
const MAX_REGION: u64 = 64 << 20;

/// Reads (at most `max_len` bytes of) an opened file and parses it. The file is read
/// rather than mapped: a mapping of a file that another process truncates (a container
/// can) would fault with SIGBUS, and a copy needs no `unsafe`.
///
/// Files above 64 KiB (MPI libraries reach 50 MiB) are read sparsely: a zero-filled
/// buffer of the file's size (untouched pages cost nothing) receives only the ELF
/// header, program and section header tables, PT_DYNAMIC/PT_INTERP and the dynamic,
/// string and version sections. Objects without section headers are read whole.
pub fn read_file(file: &File, max_len: u64) -> Result<ElfFacts, ElfError> {
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0);
    if hint > max_len {
        return Err(ElfError::TooLarge { max: max_len });
    }
    if hint > SPARSE_THRESHOLD {
        if let Some(bytes) = sparse_read(file, hint)? {
            return parse(&bytes);
        }
    }
    // The size is only a hint (the file may change): pre-allocate at most 64 MiB.
    let mut bytes = Vec::with_capacity(usize::try_from(hint.min(1 << 26)).unwrap_or(0));
    file.take(max_len.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_len {
        return Err(ElfError::TooLarge { max: max_len });
    }
    parse(&bytes)
}

/// Fills `buf[off..off+len]` from the file (clamped to the buffer); short reads leave zeros.
fn fill(file: &File, buf: &mut [u8], off: u64, len: u64) -> Result<(), ElfError> {
    use std::os::unix::fs::FileExt;
    let total = buf.len() as u64;
    if off >= total {
        return Ok(());
    }
    let end = off.saturating_add(len.min(MAX_REGION)).min(total);
    let (Ok(a), Ok(b)) = (usize::try_from(off), usize::try_from(end)) else {
        return Ok(());
    };
    let mut pos = a;
    while pos < b {
        match file.read_at(&mut buf[pos..b], pos as u64) {
            Ok(0) => break,
            Ok(n) => pos += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ElfError::Io(e)),
        }
    }
    Ok(())
}

/// The sparse read described at [`read_file`]; `None` when the object has no section
/// headers (the caller then reads it whole).
fn sparse_read(file: &File, size: u64) -> Result<Option<Vec<u8>>, ElfError> {
    let Ok(n) = usize::try_from(size) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; n];
    fill(file, &mut buf, 0, 64)?;
    if !buf.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let is64 = buf[4] == 2;
    let little = buf[5] != 2;
    let h = Header { b: &buf, little };
    let (phoff, phentsize, phnum, shoff, shentsize, shnum) = if is64 {
        (
            h.u64(32),
            h.u16(54),
            h.u16(56),
            h.u64(40),
            h.u16(58),
            h.u16(60),
        )
    } else {
        (
            h.u32(28) as u64,
            h.u16(42),
            h.u16(44),
            h.u32(32) as u64,
            h.u16(46),
            h.u16(48),
        )
    };
    if shnum == 0 || shoff == 0 {
        return Ok(None);
    }
    fill(
        file,
        &mut buf,
        phoff,
        u64::from(phentsize) * u64::from(phnum),
    )?;
    fill(
        file,
        &mut buf,
        shoff,
        u64::from(shentsize) * u64::from(shnum),
    )?;
    let mut regions = Vec::new();
    for i in 0..u64::from(phnum) {
        let base = phoff.saturating_add(i * u64::from(phentsize));
        let h = Header { b: &buf, little };
        let (ty, off, filesz) = if is64 {
            (h.u32(base), h.u64(base + 8), h.u64(base + 32))
        } else {
            (h.u32(base), h.u32(base + 4) as u64, h.u32(base + 16) as u64)
        };
        // PT_DYNAMIC, PT_INTERP
        if ty == 2 || ty == 3 {
            regions.push((off, filesz));
        }
    }
    for i in 0..u64::from(shnum) {
        let base = shoff.saturating_add(i * u64::from(shentsize));
        let h = Header { b: &buf, little };
        let (ty, off, sz) = if is64 {
            (h.u32(base + 4), h.u64(base + 24), h.u64(base + 32))
        } else {
            (
                h.u32(base + 4),
                h.u32(base + 16) as u64,
                h.u32(base + 20) as u64,
            )
        };
        // STRTAB (dynstr, shstrtab; .strtab too, small once stripped), DYNAMIC,
        // HASH/GNU_HASH (goblin sizes the dynamic symbol table from them), GNU_verdef,
        // GNU_verneed.
        if matches!(ty, 3 | 5 | 6 | 0x6fff_fff6 | 0x6fff_fffd | 0x6fff_fffe) {
            regions.push((off, sz));
        }
    }
    for (off, len) in regions {
        fill(file, &mut buf, off, len)?;
    }
    Ok(Some(buf))
}

/// Reads only the named section (e.g. `.rodata`, where libc keeps its banner) of an ELF
/// file through its section headers: a few small reads instead of the whole file.
/// `None` when the file is not ELF, has no such section, or the section exceeds `max`.
pub fn read_section(file: &File, name: &str, max: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut h = [0u8; 64];
    file.read_exact_at(&mut h, 0).ok()?;
    if !h.starts_with(b"\x7fELF") {
        return None;
    }
    let is64 = h[4] == 2;
    let little = h[5] != 2;
    let hd = Header { b: &h, little };
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (hd.u64(40), hd.u16(58), hd.u16(60), hd.u16(62))
    } else {
        (u64::from(hd.u32(32)), hd.u16(46), hd.u16(48), hd.u16(50))
    };
    let table_len = u64::from(shentsize).checked_mul(u64::from(shnum))?;
    if shnum == 0 || table_len > MAX_REGION || usize::from(shentsize) < if is64 { 64 } else { 40 } {
        return None;
    }
    let mut table = vec![0u8; usize::try_from(table_len).ok()?];
    file.read_exact_at(&mut table, shoff).ok()?;
    let sh = |i: u16| -> Option<(u32, u64, u64)> {
        let base = u64::from(i) * u64::from(shentsize);
        let t = Header { b: &table, little };
        if base + u64::from(shentsize) > table_len {
            return None;
        }
        Some(if is64 {
            (t.u32(base), t.u64(base + 24), t.u64(base + 32))
        } else {
            (
                t.u32(base),
                u64::from(t.u32(base + 16)),
                u64::from(t.u32(base + 20)),
            )
        })
    };
    let (_, stroff, strsz) = sh(shstrndx)?;
    if strsz > MAX_REGION {
        return None;
    }
    let mut names = vec![0u8; usize::try_from(strsz).ok()?];
    file.read_exact_at(&mut names, stroff).ok()?;
    for i in 0..shnum {
        let (n, off, size) = sh(i)?;
        let start = usize::try_from(n).ok()?;
        let rest = names.get(start..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        if &rest[..end] == name.as_bytes() {
            if size > max {
                return None;
            }
            let mut out = vec![0u8; usize::try_from(size).ok()?];
            file.read_exact_at(&mut out, off).ok()?;
            return Some(out);
        }
    }
    None
}

/// Bounds-checked integer reads from a header buffer (0 when out of range).
struct Header<'a> {
    b: &'a [u8],
    little: bool,
}

impl Header<'_> {
    fn bytes<const N: usize>(&self, off: u64) -> [u8; N] {
        let mut out = [0u8; N];
        if let Ok(o) = usize::try_from(off) {
            if let Some(s) = o.checked_add(N).and_then(|e| self.b.get(o..e)) {
                out.copy_from_slice(s);
            }
        }
        out
    }
    fn u16(&self, off: u64) -> u16 {
        let a = self.bytes::<2>(off);
        if self.little {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }
    fn u32(&self, off: u64) -> u32 {
        let a = self.bytes::<4>(off);
        if self.little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }
    fn u64(&self, off: u64) -> u64 {
        let a = self.bytes::<8>(off);
        if self.little {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    }
}

/// Parses an ELF image.
pub fn parse(bytes: &[u8]) -> Result<ElfFacts, ElfError> {
    if !bytes.starts_with(b"\x7fELF") {
        return Err(if bytes.len() < 4 && b"\x7fELF".starts_with(bytes) {
            ElfError::Truncated { len: bytes.len() }
        } else {
            ElfError::NotElf
        });
    }
    if bytes.len() < 52 {
        return Err(ElfError::Truncated { len: bytes.len() });
    }
    // goblin is a third-party parser fed untrusted bytes: should it ever panic, report
    // a malformed object instead of taking the hook down.
    let elf = std::panic::catch_unwind(|| Light::parse(bytes))
        .map_err(|_| ElfError::Malformed("the ELF parser failed on this input".into()))?
        .map_err(|e| ElfError::Malformed(e.to_string()))?;

    let class = if elf.is_64 {
        ElfClass::Elf64
    } else {
        ElfClass::Elf32
    };
    let split = |v: &[&str]| -> Vec<String> {
        v.iter()
            .flat_map(|s| s.split(':'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let tables = VersionTables::locate(&elf, bytes);
    let dynstr = elf.dynstr(bytes);
    let cstr = |off: u64| -> Option<String> {
        let start = usize::try_from(off).ok()?;
        let rest = dynstr.get(start..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
    };
    let dyn_strings = |tag: u64| -> Vec<String> {
        elf.dynamic
            .as_ref()
            .map(|d| {
                d.dyns
                    .iter()
                    .filter(|e| e.d_tag == tag)
                    .filter_map(|e| cstr(e.d_val))
                    .collect()
            })
            .unwrap_or_default()
    };
    let soname = dyn_strings(goblin::elf::dynamic::DT_SONAME)
        .into_iter()
        .next();
    let needed = dyn_strings(goblin::elf::dynamic::DT_NEEDED);
    let rpaths = dyn_strings(goblin::elf::dynamic::DT_RPATH);
    let runpaths = dyn_strings(goblin::elf::dynamic::DT_RUNPATH);
    let rpaths: Vec<&str> = rpaths.iter().map(String::as_str).collect();
    let runpaths: Vec<&str> = runpaths.iter().map(String::as_str).collect();
    let interpreter = elf
        .program_headers
        .iter()
        .find(|ph| ph.p_type == goblin::elf::program_header::PT_INTERP)
        .and_then(|ph| {
            let s = slice(bytes, ph.p_offset, ph.p_filesz)?;
            let end = s.iter().position(|b| *b == 0).unwrap_or(s.len());
            std::str::from_utf8(&s[..end]).ok().map(str::to_string)
        });
    let r = Reader {
        bytes,
        little: elf.little_endian,
    };
    let verneed = match tables.verneed {
        Some(t) => parse_verneed(r, t)?,
        None => Vec::new(),
    };
    let verdef = match tables.verdef {
        Some(t) => parse_verdef(r, t)?,
        None => Vec::new(),
    };
    Ok(ElfFacts {
        class,
        machine: elf.header.e_machine,
        little_endian: elf.little_endian,
        soname,
        needed,
        rpath: split(&rpaths),
        runpath: split(&runpaths),
        interpreter,
        verneed,
        verdef,
        is_shared_object: elf.is_lib(),
    })
}

/// The parts of an ELF object the hooks read: headers, program and section headers, the
/// dynamic section. goblin's full `Elf::parse` also walks symbol tables and every
/// relocation, which costs milliseconds on a 40 MiB MPI library and is never needed here.
struct Light {
    header: goblin::elf::Header,
    is_64: bool,
    little_endian: bool,
    program_headers: Vec<goblin::elf::ProgramHeader>,
    section_headers: Vec<goblin::elf::SectionHeader>,
    dynamic: Option<goblin::elf::Dynamic>,
}

impl Light {
    fn parse(bytes: &[u8]) -> goblin::error::Result<Light> {
        use goblin::container::{Container, Ctx};
        let header = Elf::parse_header(bytes)?;
        let is_64 =
            header.e_ident[goblin::elf::header::EI_CLASS] == goblin::elf::header::ELFCLASS64;
        let little_endian =
            header.e_ident[goblin::elf::header::EI_DATA] == goblin::elf::header::ELFDATA2LSB;
        let ctx = Ctx::new(
            if is_64 {
                Container::Big
            } else {
                Container::Little
            },
            goblin::container::Endian::from(little_endian),
        );
        let program_headers = goblin::elf::ProgramHeader::parse(
            bytes,
            usize::try_from(header.e_phoff).unwrap_or(usize::MAX),
            usize::from(header.e_phnum),
            ctx,
        )?;
        let section_headers = if header.e_shnum == 0 || header.e_shoff == 0 {
            Vec::new()
        } else {
            goblin::elf::SectionHeader::parse(
                bytes,
                usize::try_from(header.e_shoff).unwrap_or(usize::MAX),
                usize::from(header.e_shnum),
                ctx,
            )
            .unwrap_or_default()
        };
        let dynamic = goblin::elf::Dynamic::parse(bytes, &program_headers, ctx)?;
        Ok(Light {
            header,
            is_64,
            little_endian,
            program_headers,
            section_headers,
            dynamic,
        })
    }

    fn dynstr<'b>(&self, bytes: &'b [u8]) -> &'b [u8] {
        self.dynamic
            .as_ref()
            .and_then(|d| slice(bytes, d.info.strtab as u64, d.info.strsz as u64))
            .unwrap_or_default()
    }

    /// `ET_DYN` and not flagged as a position-independent executable (as goblin decides).
    fn is_lib(&self) -> bool {
        let pie = self
            .dynamic
            .as_ref()
            .is_some_and(|d| d.info.flags_1 & goblin::elf::dynamic::DF_1_PIE != 0);
        self.header.e_type == goblin::elf::header::ET_DYN && !pie
    }
}

/// A version table: where it is, how many entries it claims, which string table it uses.
#[derive(Clone, Copy, Debug)]
struct Table<'a> {
    offset: usize,
    /// Bytes available from `offset` (the section size, or the rest of the file).
    len: usize,
    count: usize,
    strtab: &'a [u8],
}

#[derive(Default)]
struct VersionTables<'a> {
    verneed: Option<Table<'a>>,
    verdef: Option<Table<'a>>,
}

impl<'a> VersionTables<'a> {
    fn locate(elf: &Light, bytes: &'a [u8]) -> Self {
        let mut t = VersionTables::default();
        // Section headers first.
        for sh in &elf.section_headers {
            let slot = match sh.sh_type {
                SHT_GNU_VERNEED => &mut t.verneed,
                SHT_GNU_VERDEF => &mut t.verdef,
                _ => continue,
            };
            let strtab = usize::try_from(sh.sh_link)
                .ok()
                .and_then(|i| elf.section_headers.get(i))
                .and_then(|s| slice(bytes, s.sh_offset, s.sh_size))
                .unwrap_or_default();
            if let (Ok(offset), Ok(len), Ok(count)) = (
                usize::try_from(sh.sh_offset),
                usize::try_from(sh.sh_size),
                usize::try_from(sh.sh_info),
            ) {
                *slot = Some(Table {
                    offset,
                    len,
                    count,
                    strtab,
                });
            }
        }
        if t.verneed.is_some() || t.verdef.is_some() {
            return t;
        }
        // No section headers (or no version sections): the dynamic section.
        let Some(dynamic) = &elf.dynamic else {
            return t;
        };
        let get = |tag: u64| {
            dynamic
                .dyns
                .iter()
                .find(|d| d.d_tag == tag)
                .map(|d| d.d_val)
        };
        let to_offset = |addr: u64| {
            elf.program_headers.iter().find_map(|ph| {
                let delta = addr.checked_sub(ph.p_vaddr)?;
                (ph.p_type == PT_LOAD && delta < ph.p_filesz)
                    .then(|| ph.p_offset.checked_add(delta))
                    .flatten()
            })
        };
        let strtab = get(DT_STRTAB)
            .and_then(to_offset)
            .zip(get(DT_STRSZ))
            .and_then(|(o, n)| slice(bytes, o, n))
            .unwrap_or_default();
        let table = |addr_tag: u64, num_tag: u64| {
            let offset = usize::try_from(get(addr_tag).and_then(to_offset)?).ok()?;
            let count = usize::try_from(get(num_tag)?).ok()?;
            Some(Table {
                offset,
                len: bytes.len().saturating_sub(offset),
                count,
                strtab,
            })
        };
        t.verneed = table(DT_VERNEED, DT_VERNEEDNUM);
        t.verdef = table(DT_VERDEF, DT_VERDEFNUM);
        t
    }
}

fn slice(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// NUL-terminated string at `offset` of a string table.
fn cstr(strtab: &[u8], offset: u32) -> Option<String> {
    let rest = strtab.get(usize::try_from(offset).ok()?..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(rest.get(..len)?).into_owned())
}

#[derive(Clone, Copy)]
struct Reader<'a> {
    bytes: &'a [u8],
    little: bool,
}

impl Reader<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let a: [u8; 2] = self.bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.little {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let a: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }
}

/// Walks a chain of records linked by relative `next` offsets, at most `count`
/// records (and never more than fit in the table, so a hostile count is harmless).
/// Offsets only grow, so the walk ends.
fn chain_offsets(
    start: usize,
    count: usize,
    table_end: usize,
    record_len: usize,
    mut next: impl FnMut(usize) -> Option<u32>,
) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    let mut at = start;
    let max = count.min(table_end.saturating_sub(start) / record_len + 1);
    for i in 0..max {
        if at.checked_add(record_len)? > table_end {
            return None;
        }
        out.push(at);
        let step = next(at)?;
        if step == 0 || i + 1 == max {
            break;
        }
        at = at.checked_add(usize::try_from(step).ok()?)?;
    }
    Some(out)
}

fn parse_verneed(r: Reader<'_>, t: Table<'_>) -> Result<Vec<VerNeed>, ElfError> {
    let bad = |what| ElfError::BadVersionTable {
        table: "version needs (verneed)",
        what,
    };
    let end = t
        .offset
        .checked_add(t.len)
        .filter(|&e| e <= r.bytes.len())
        .ok_or(bad("table outside the file"))?;
    let needs = chain_offsets(t.offset, t.count, end, VERNEED_LEN, |at| r.u32(at + 12))
        .ok_or(bad("entry outside the table"))?;
    let mut out = Vec::with_capacity(needs.len());
    for at in needs {
        let (Some(cnt), Some(file), Some(aux)) = (r.u16(at + 2), r.u32(at + 4), r.u32(at + 8))
        else {
            return Err(bad("entry outside the table"));
        };
        let file = cstr(t.strtab, file).ok_or(bad("file name outside the string table"))?;
        let first = at
            .checked_add(usize::try_from(aux).unwrap_or(usize::MAX))
            .ok_or(bad("aux entry outside the table"))?;
        let auxes = if cnt == 0 {
            Vec::new()
        } else {
            chain_offsets(first, usize::from(cnt), end, VERNAUX_LEN, |a| r.u32(a + 12))
                .ok_or(bad("aux entry outside the table"))?
        };
        let mut versions = Vec::with_capacity(auxes.len());
        for a in auxes {
            let (Some(flags), Some(name)) = (r.u16(a + 4), r.u32(a + 8)) else {
                return Err(bad("aux entry outside the table"));
            };
            versions.push(VerNeedAux {
                name: cstr(t.strtab, name).ok_or(bad("version name outside the string table"))?,
                weak: flags & VER_FLG_WEAK != 0,
            });
        }
        out.push(VerNeed { file, versions });
    }
    Ok(out)
}

fn parse_verdef(r: Reader<'_>, t: Table<'_>) -> Result<Vec<String>, ElfError> {
    let bad = |what| ElfError::BadVersionTable {
        table: "version definitions (verdef)",
        what,
    };
    let end = t
        .offset
        .checked_add(t.len)
        .filter(|&e| e <= r.bytes.len())
        .ok_or(bad("table outside the file"))?;
    let defs = chain_offsets(t.offset, t.count, end, VERDEF_LEN, |at| r.u32(at + 16))
        .ok_or(bad("entry outside the table"))?;
    let mut out = Vec::with_capacity(defs.len());
    for at in defs {
        let (Some(flags), Some(cnt), Some(aux)) = (r.u16(at + 2), r.u16(at + 6), r.u32(at + 12))
        else {
            return Err(bad("entry outside the table"));
        };
        if flags & VER_FLG_BASE != 0 || cnt == 0 {
            continue;
        }
        let first = at
            .checked_add(usize::try_from(aux).unwrap_or(usize::MAX))
            .filter(|&a| a.checked_add(VERDAUX_LEN).is_some_and(|e| e <= end))
            .ok_or(bad("aux entry outside the table"))?;
        let name = r.u32(first).ok_or(bad("aux entry outside the table"))?;
        out.push(cstr(t.strtab, name).ok_or(bad("version name outside the string table"))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";
    const LIBMPICH: &str = "/lib/x86_64-linux-gnu/libmpich.so.12";

    fn run(cmd: &mut Command) -> String {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What `readelf` says, in the shape of [`ElfFacts`] (the oracle).
    #[derive(Debug, Default, PartialEq)]
    struct Readelf {
        soname: Option<String>,
        needed: Vec<String>,
        rpath: Vec<String>,
        runpath: Vec<String>,
        interpreter: Option<String>,
        verneed: Vec<VerNeed>,
        verdef: Vec<String>,
    }

    fn bracketed(line: &str) -> Option<String> {
        let start = line.find('[')? + 1;
        let end = line.rfind(']')?;
        line.get(start..end).map(str::to_string)
    }

    fn readelf(path: &Path) -> Readelf {
        let text = run(Command::new("readelf")
            .args(["-d", "-l", "-V", "--wide"])
            .arg(path));
        let mut r = Readelf::default();
        let mut section = "";
        let split = |s: String| -> Vec<String> {
            s.split(':')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        for line in text.lines() {
            if line.starts_with("Version needs section") {
                section = "needs";
            } else if line.starts_with("Version definition section") {
                section = "defs";
            } else if line.starts_with("Version symbols section") {
                section = "";
            }
            if line.contains("(SONAME)") {
                r.soname = bracketed(line);
            } else if line.contains("(NEEDED)") {
                r.needed.extend(bracketed(line));
            } else if line.contains("(RPATH)") {
                r.rpath
                    .extend(bracketed(line).map(split).unwrap_or_default());
            } else if line.contains("(RUNPATH)") {
                r.runpath
                    .extend(bracketed(line).map(split).unwrap_or_default());
            } else if line.contains("Requesting program interpreter:") {
                r.interpreter = line
                    .split("interpreter: ")
                    .nth(1)
                    .map(|s| s.trim_end_matches(']').to_string());
            } else if section == "needs" && line.contains("File: ") {
                let file = line.split("File: ").nth(1).unwrap();
                let file = file.split_whitespace().next().unwrap().to_string();
                r.verneed.push(VerNeed {
                    file,
                    versions: Vec::new(),
                });
            } else if section == "needs" && line.contains("Name: ") && line.contains("Flags: ") {
                let name = line.split("Name: ").nth(1).unwrap();
                let name = name.split_whitespace().next().unwrap().to_string();
                let flags = line.split("Flags: ").nth(1).unwrap();
                r.verneed.last_mut().unwrap().versions.push(VerNeedAux {
                    name,
                    weak: flags.contains("WEAK"),
                });
            } else if section == "defs" && line.contains("Rev: ") && !line.contains("BASE") {
                let name = line.split("Name: ").nth(1).unwrap().trim().to_string();
                r.verdef.push(name);
            }
        }
        r
    }

    fn check_against_readelf(path: &Path) -> ElfFacts {
        let file = File::open(path).unwrap();
        let facts = read_file(&file, 1 << 30).unwrap();
        let oracle = readelf(path);
        let ours = Readelf {
            soname: facts.soname.clone(),
            needed: facts.needed.clone(),
            rpath: facts.rpath.clone(),
            runpath: facts.runpath.clone(),
            interpreter: facts.interpreter.clone(),
            verneed: facts.verneed.clone(),
            verdef: facts.verdef.clone(),
        };
        assert_eq!(ours, oracle, "{}", path.display());
        facts
    }

    /// Removes the section header table reference from an ELF header (what
    /// `strip --strip-section-headers` of binutils >= 2.41 leaves visible to readers).
    fn drop_section_headers(bytes: &[u8]) -> Vec<u8> {
        let mut v = bytes.to_vec();
        let little = v[5] == 1;
        let (shoff, shoff_len, shnum) = if v[4] == 2 {
            (0x28, 8, 0x3c)
        } else {
            (0x20, 4, 0x30)
        };
        v[shoff..shoff + shoff_len].fill(0);
        v[shnum..shnum + 4].fill(0); // e_shnum and e_shstrndx
        let _ = little;
        assert!(goblin::elf::Elf::parse(&v)
            .unwrap()
            .section_headers
            .is_empty());
        v
    }

    /// Facts of the object with its section headers removed: by patching the header and,
    /// where the host strip supports it, with `strip --strip-section-headers`.
    fn check_without_section_headers(path: &Path, facts: &ElfFacts, tmp: &Path) {
        let bytes = std::fs::read(path).unwrap();
        let patched = parse(&drop_section_headers(&bytes)).unwrap();
        assert_eq!(
            &patched,
            facts,
            "{} without section headers",
            path.display()
        );

        let help = Command::new("strip").arg("--help").output();
        let supported = help
            .as_ref()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--strip-section-headers"));
        if supported {
            let out = tmp.join("stripped.so");
            run(Command::new("strip")
                .arg("--strip-section-headers")
                .arg("-o")
                .arg(&out)
                .arg(path));
            let stripped = parse(&std::fs::read(&out).unwrap()).unwrap();
            assert_eq!(&stripped, facts, "{} after strip", path.display());
        } else {
            // binutils < 2.41 (Debian 12 has 2.40): only the header-patching variant runs.
            eprintln!("strip lacks --strip-section-headers; checked the patched header only");
        }
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        mylib: PathBuf,
        consumer: PathBuf,
        exe: PathBuf,
    }

    fn gcc(dir: &Path, args: &[&str]) {
        run(Command::new("gcc").current_dir(dir).args(args));
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(
            dir.join("mylib.c"),
            "int f1(void){return 1;} int f2(void){return 2;} int f3(void){return 3;}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("mylib.map"),
            "MYLIB_1.0 { global: f1; local: *; };\n\
             MYLIB_2.0 { global: f2; } MYLIB_1.0;\n\
             MYLIB_3.0 { global: f3; } MYLIB_2.0;\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("consumer.c"),
            "#include <pthread.h>\n\
             extern int f1(void); extern int f2(void);\n\
             extern int f3(void) __attribute__((weak));\n\
             static void *run(void *a) { return a; }\n\
             int use(void) { pthread_t t; pthread_create(&t, 0, run, 0);\n\
               return f1() + f2() + (f3 ? f3() : 0); }\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("main.c"),
            "extern int use(void); int main(void) { return use(); }\n",
        )
        .unwrap();
        gcc(
            &dir,
            &[
                "-shared",
                "-fPIC",
                "-Wl,-soname,libmylib.so.1",
                "-Wl,--version-script=mylib.map",
                "-o",
                "libmylib.so.1",
                "mylib.c",
            ],
        );
        gcc(
            &dir,
            &[
                "-shared",
                "-fPIC",
                "-Wl,-soname,libconsumer.so.1",
                "-Wl,--enable-new-dtags,-rpath,/opt/r1:/opt/r2",
                "-o",
                "libconsumer.so.1",
                "consumer.c",
                "./libmylib.so.1",
            ],
        );
        gcc(
            &dir,
            &[
                "-Wl,--disable-new-dtags,-rpath,/opt/rp",
                "-o",
                "main",
                "main.c",
                "./libconsumer.so.1",
                "./libmylib.so.1",
            ],
        );
        Fixture {
            mylib: dir.join("libmylib.so.1"),
            consumer: dir.join("libconsumer.so.1"),
            exe: dir.join("main"),
            dir,
            _tmp: tmp,
        }
    }

    #[test]
    fn fixture_objects_match_readelf() {
        let fx = fixture();
        let mylib = check_against_readelf(&fx.mylib);
        assert_eq!(mylib.class, ElfClass::Elf64);
        assert_eq!(mylib.machine, 62);
        assert_eq!(machine_name(mylib.machine), "x86-64");
        assert!(mylib.little_endian && mylib.is_shared_object);
        assert_eq!(mylib.soname.as_deref(), Some("libmylib.so.1"));
        assert_eq!(mylib.verdef, ["MYLIB_1.0", "MYLIB_2.0", "MYLIB_3.0"]);

        let consumer = check_against_readelf(&fx.consumer);
        assert_eq!(consumer.runpath, ["/opt/r1", "/opt/r2"]);
        assert!(consumer.rpath.is_empty());
        assert!(consumer.needed.iter().any(|n| n == "libmylib.so.1"));
        let mut mine: Vec<_> = consumer
            .versions_needed_from("libmylib.so.1")
            .map(|v| v.name.as_str())
            .collect();
        mine.sort_unstable();
        assert_eq!(mine, ["MYLIB_1.0", "MYLIB_2.0", "MYLIB_3.0"]);
        assert!(consumer
            .versions_needed_from("libc.so.6")
            .any(|v| v.name == "GLIBC_2.34"));
        assert!(consumer.verdef.is_empty());

        let exe = check_against_readelf(&fx.exe);
        assert_eq!(exe.rpath, ["/opt/rp"]);
        assert!(exe.runpath.is_empty());
        assert!(!exe.is_shared_object, "a PIE executable is not a library");
        assert!(exe
            .interpreter
            .as_deref()
            .unwrap()
            .contains("ld-linux-x86-64.so.2"));
        assert_eq!(exe.soname, None);

        for (path, facts) in [
            (&fx.mylib, &mylib),
            (&fx.consumer, &consumer),
            (&fx.exe, &exe),
        ] {
            check_without_section_headers(path, facts, &fx.dir);
        }
    }

    #[test]
    fn weak_version_need_is_reported() {
        // GNU ld does not mark weak version references on its own: set VER_FLG_WEAK on
        // the MYLIB_3.0 need at the file offset readelf reports, then compare again.
        let fx = fixture();
        let text = run(Command::new("readelf").arg("-V").arg(&fx.consumer));
        let needs = text
            .split("Version needs section")
            .nth(1)
            .expect("verneed section");
        let section_offset = needs
            .split("Offset: 0x")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .unwrap();
        let aux_line = needs
            .lines()
            .find(|l| l.contains("Name: MYLIB_3.0"))
            .unwrap();
        let aux_offset = usize::from_str_radix(
            aux_line
                .trim()
                .split(':')
                .next()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap();
        let mut bytes = std::fs::read(&fx.consumer).unwrap();
        let flags_at = section_offset + aux_offset + 4;
        bytes[flags_at] |= VER_FLG_WEAK as u8;
        let patched = fx.dir.join("libconsumer-weak.so.1");
        std::fs::write(&patched, &bytes).unwrap();
        let facts = check_against_readelf(&patched);
        let weak: Vec<_> = facts
            .versions_needed_from("libmylib.so.1")
            .filter(|v| v.weak)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(weak, ["MYLIB_3.0"]);
        check_without_section_headers(&patched, &facts, &fx.dir);
    }

    #[test]
    fn host_libraries_match_readelf() {
        let tmp = tempfile::tempdir().unwrap();
        let libc = check_against_readelf(Path::new(LIBC));
        assert_eq!(libc.soname.as_deref(), Some("libc.so.6"));
        assert!(libc.is_shared_object);
        assert_eq!(libc.class, ElfClass::Elf64);
        for v in ["GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_PRIVATE"] {
            assert!(libc.verdef.iter().any(|d| d == v), "libc verdef lacks {v}");
        }
        check_without_section_headers(Path::new(LIBC), &libc, tmp.path());

        let mut others = vec![
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/lib64/ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/libz.so.1",
        ];
        if Path::new(LIBMPICH).exists() {
            let mpich = check_against_readelf(Path::new(LIBMPICH));
            assert!(mpich
                .versions_needed_from("libc.so.6")
                .any(|v| v.name == "GLIBC_2.34"));
            check_without_section_headers(Path::new(LIBMPICH), &mpich, tmp.path());
        } else {
            eprintln!("{LIBMPICH} is missing (package libmpich12): not checked");
        }
        others.retain(|p| Path::new(p).exists());
        for p in others {
            let facts = check_against_readelf(Path::new(p));
            check_without_section_headers(Path::new(p), &facts, tmp.path());
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(parse(b""), Err(ElfError::Truncated { len: 0 })));
        assert!(matches!(parse(b"\x7fEL"), Err(ElfError::Truncated { .. })));
        assert!(matches!(
            parse(b"MZ\x90\x00 not elf"),
            Err(ElfError::NotElf)
        ));
        assert!(matches!(
            parse(&[0x7f, b'E', b'L', b'F', 9, 9]),
            Err(ElfError::Truncated { .. })
        ));
        let libc = std::fs::read(LIBC).unwrap();
        // Every prefix up to 4 KiB, then a stride: errors or (once the headers are in)
        // partial facts, never a panic.
        for len in (0..libc.len().min(4096)).chain((4096..libc.len()).step_by(4093)) {
            let _ = parse(&libc[..len]);
        }
        for len in 0..64 {
            assert!(parse(&libc[..len]).is_err(), "{len}-byte prefix parsed");
        }
        // Cap of the file helper.
        let f = File::open(LIBC).unwrap();
        assert!(matches!(
            read_file(&f, 1000),
            Err(ElfError::TooLarge { max: 1000 })
        ));
    }

    #[test]
    fn hostile_version_tables_are_errors() {
        let fx = fixture();
        let bytes = std::fs::read(&fx.consumer).unwrap();
        let stripped = drop_section_headers(&bytes);
        let good = parse(&stripped).unwrap();
        assert!(!good.verneed.is_empty());
        // Find the verneed table through DT_VERNEED and corrupt its fields.
        let elf = Light::parse(&stripped).unwrap();
        let t = VersionTables::locate(&elf, &stripped).verneed.unwrap();
        for (field, value) in [(4usize, u32::MAX), (8, u32::MAX), (8, 0xfff0), (12, 0x10)] {
            let mut v = stripped.clone();
            v[t.offset + field..t.offset + field + 4].copy_from_slice(&value.to_le_bytes());
            match parse(&v) {
                Err(e) => assert!(e.to_string().contains("verneed"), "{e}"),
                Ok(f) => assert_ne!(f.verneed, good.verneed),
            }
        }
    }

    fn real_objects() -> Vec<Vec<u8>> {
        let fx = fixture();
        let consumer = std::fs::read(&fx.consumer).unwrap();
        vec![drop_section_headers(&consumer), consumer]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse(&bytes);
            let _ = parse(&[b"\x7fELF\x02\x01\x01".as_slice(), &bytes].concat());
            let _ = parse(&[b"\x7fELF\x01\x02\x01".as_slice(), &bytes].concat());
        }

        #[test]
        fn mutated_objects_never_panic(
            which in 0usize..2,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..24),
        ) {
            thread_local! {
                static OBJECTS: Vec<Vec<u8>> = real_objects();
            }
            let mut bytes = OBJECTS.with(|o| o[which].clone());
            for (pos, val) in edits {
                let len = bytes.len();
                // Half of the edits hit the ELF/program headers.
                let at = if pos % 2 == 0 { pos % 512.min(len) } else { pos % len };
                bytes[at] = val;
            }
            let _ = parse(&bytes);
        }
    }
}
