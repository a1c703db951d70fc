//! glibc versions without executing anything: from libc's banner string, pre-2.34 file
//! names (`libc-2.31.so`), the ld.so.cache generator string and symbol-version tables, and
//! the minimum glibc an object needs (max `GLIBC_x.y` it references from glibc's libraries).

use std::fmt;
use std::str::FromStr;

use crate::elf::ElfFacts;

/// A glibc release, `major.minor` (glibc has no meaningful patch level for ABI purposes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlibcVersion {
    pub major: u32,
    pub minor: u32,
}

/// Error of `GlibcVersion::from_str`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid glibc version {0:?}: expected MAJOR.MINOR, e.g. 2.34")]
pub struct ParseGlibcVersionError(pub String);

impl GlibcVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// `GLIBC_2.34` -> 2.34; `GLIBC_2.2.5` -> 2.2 (patch ignored). `GLIBC_PRIVATE`,
    /// `GLIBC_ABI_DT_RELR` and anything else -> `None`.
    pub fn from_symbol_version(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("GLIBC_")?;
        parse_numbers(rest, true)
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for GlibcVersion {
    type Err = ParseGlibcVersionError;

    /// Accepts `2.34` (and `2.2.5`, patch ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_numbers(s, true).ok_or_else(|| ParseGlibcVersionError(s.to_string()))
    }
}

/// `MAJOR.MINOR` or, with `allow_patch`, `MAJOR.MINOR.PATCH`: all ASCII digits.
fn parse_numbers(s: &str, allow_patch: bool) -> Option<GlibcVersion> {
    let mut parts = s.split('.');
    let num = |p: Option<&str>| -> Option<u32> {
        let p = p?;
        if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let major = num(parts.next())?;
    let minor = num(parts.next())?;
    match parts.next() {
        None => {}
        Some(patch) if allow_patch => {
            num(Some(patch))?;
            if parts.next().is_some() {
                return None;
            }
        }
        Some(_) => return None,
    }
    Some(GlibcVersion { major, minor })
}

/// Reads `digits.digits` at the start of `bytes` (at most 9 digits each).
fn version_prefix(bytes: &[u8]) -> Option<GlibcVersion> {
    let digits = |b: &[u8]| b.iter().take_while(|c| c.is_ascii_digit()).count();
    let n1 = digits(bytes);
    if n1 == 0 || n1 > 9 || bytes.get(n1) != Some(&b'.') {
        return None;
    }
    let rest = bytes.get(n1 + 1..)?;
    let n2 = digits(rest);
    if n2 == 0 || n2 > 9 {
        return None;
    }
    let major = std::str::from_utf8(bytes.get(..n1)?).ok()?.parse().ok()?;
    let minor = std::str::from_utf8(rest.get(..n2)?).ok()?.parse().ok()?;
    Some(GlibcVersion { major, minor })
}

/// Positions of `needle` in `haystack` (linear scan, no allocation).
fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    memchr::memmem::find_iter(haystack, needle)
}

/// The version in libc.so.6's banner, e.g. `GNU C Library (Debian GLIBC 2.36-9) stable
/// release version 2.36.`; older banners end `version 2.31.` or `version 2.17, by ...`.
/// Scans the given bytes once per marker; callers bound the input (the ELF file cap).
pub fn version_from_banner(libc_bytes: &[u8]) -> Option<GlibcVersion> {
    const RELEASE: &[u8] = b"release version ";
    if let Some(v) = find_all(libc_bytes, RELEASE)
        .find_map(|i| version_prefix(libc_bytes.get(i + RELEASE.len()..)?))
    {
        return Some(v);
    }
    // Banners without "release": "GNU C Library ... version 2.31."
    const LIBRARY: &[u8] = b"GNU C Library";
    const VERSION: &[u8] = b"version ";
    find_all(libc_bytes, LIBRARY).find_map(|i| {
        // The version follows within the banner's first line.
        let window = libc_bytes.get(i..)?;
        let window = window.get(..window.len().min(256))?;
        let line_end = window.iter().position(|&b| b == b'\n' || b == 0)?;
        let line = window.get(..line_end)?;
        find_all(line, VERSION).find_map(|j| version_prefix(line.get(j + VERSION.len()..)?))
    })
}

/// Pre-2.34 glibc file names: `libc-2.31.so`, `ld-2.31.so`, `libpthread-2.31.so`, ...
/// (a leading directory is ignored).
pub fn version_from_file_name(name: &str) -> Option<GlibcVersion> {
    let base = name.rsplit('/').next()?;
    let stem = base.strip_suffix(".so")?;
    let (prefix, version) = stem.rsplit_once('-')?;
    let glibc_prefix = prefix == "ld"
        || GLIBC_SONAMES.iter().any(|s| {
            s.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with(".so."))
        });
    if !glibc_prefix {
        return None;
    }
    parse_numbers(version, false)
}

/// The glibc version of the ldconfig that wrote a cache, from its generator string,
/// e.g. `ldconfig (Debian GLIBC 2.36-9+deb12u14) stable release version 2.36`.
pub fn version_from_generator(generator: &str) -> Option<GlibcVersion> {
    let bytes = generator.as_bytes();
    if let Some(v) = version_from_banner(bytes) {
        return Some(v);
    }
    const GLIBC: &[u8] = b"GLIBC ";
    find_all(bytes, GLIBC).find_map(|i| version_prefix(bytes.get(i + GLIBC.len()..)?))
}

/// Highest `GLIBC_x.y` an object defines (for libc.so.6: a lower bound of its release,
/// as releases that add no symbol add no version node).
pub fn max_verdef_version(facts: &ElfFacts) -> Option<GlibcVersion> {
    facts
        .verdef
        .iter()
        .filter_map(|v| GlibcVersion::from_symbol_version(v))
        .max()
}

/// Sonames of glibc's own libraries and dynamic loaders: objects that must come from one
/// glibc release together.
pub const GLIBC_SONAMES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libresolv.so.2",
    "libutil.so.1",
    "libanl.so.1",
    "libBrokenLocale.so.1",
    "libmvec.so.1",
    "libnsl.so.1",
    "libthread_db.so.1",
    "libc_malloc_debug.so.0",
    "libmemusage.so",
    "libpcprofile.so",
    "libcidn.so.1",
    "libcrypt.so.1",
    "libnss_files.so.2",
    "libnss_dns.so.2",
    "libnss_compat.so.2",
    "libnss_db.so.2",
    "libnss_hesiod.so.2",
    "libnss_nis.so.2",
    "libnss_nisplus.so.2",
    // Dynamic loaders.
    "ld-linux-x86-64.so.2",
    "ld-linux-x32.so.2",
    "ld-linux.so.2",
    "ld-linux.so.3",
    "ld-linux-armhf.so.3",
    "ld-linux-aarch64.so.1",
    "ld-linux-aarch64_be.so.1",
    "ld64.so.1",
    "ld64.so.2",
    "ld.so.1",
    "ld-linux-riscv64-lp64d.so.1",
    "ld-linux-riscv64-lp64.so.1",
    "ld-linux-riscv32-ilp32d.so.1",
    "ld-linux-riscv32-ilp32.so.1",
    "ld-linux-loongarch-lp64d.so.1",
    "ld-linux-loongarch-lp64s.so.1",
    "ld-linux-ia64.so.2",
    "ld-linux-mipsn8.so.1",
];

/// Whether `s` is the soname of a glibc library or dynamic loader.
pub fn is_glibc_soname(s: &str) -> bool {
    GLIBC_SONAMES.contains(&s) || (s.starts_with("ld-linux-") && s.contains(".so."))
}

/// `GLIBC_ABI_DT_RELR`: the object uses DT_RELR relocations, supported from glibc 2.36.
const DT_RELR_VERSION: GlibcVersion = GlibcVersion::new(2, 36);

/// What an object requires of glibc, from its version needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlibcNeed {
    /// Minimum glibc: the highest non-weak `GLIBC_x.y` (or 2.36 for `GLIBC_ABI_DT_RELR`)
    /// needed from a glibc library; `None` when it needs no versioned glibc symbol.
    pub max: Option<GlibcVersion>,
    /// The version name that gave `max` (`GLIBC_2.34`, `GLIBC_ABI_DT_RELR`).
    pub max_name: Option<String>,
    /// The glibc library `max` is needed from (`libc.so.6`, ...).
    pub max_from: Option<String>,
    /// Needs `GLIBC_PRIVATE`: tied to one exact glibc build.
    pub private: bool,
    /// Weak needs above `max` (file, version): missing them only warns.
    pub weak_only_above: Vec<(String, GlibcVersion)>,
    /// Soname of the object these needs belong to.
    pub needed_by: Option<String>,
}

impl GlibcNeed {
    /// Whether a glibc of `version` provides every non-weak versioned need
    /// (`GLIBC_PRIVATE` is not judged here: it needs the very same build).
    pub fn is_satisfied_by(&self, version: GlibcVersion) -> bool {
        self.max.is_none_or(|m| m <= version)
    }
}

/// The glibc an object needs: max `GLIBC_x.y` over its version needs on glibc sonames.
pub fn glibc_need(facts: &ElfFacts) -> GlibcNeed {
    let mut need = GlibcNeed {
        needed_by: facts.soname.clone(),
        ..GlibcNeed::default()
    };
    let mut weak = Vec::new();
    for vn in facts.verneed.iter().filter(|vn| is_glibc_soname(&vn.file)) {
        for aux in &vn.versions {
            let version = if aux.name == "GLIBC_PRIVATE" {
                if !aux.weak {
                    need.private = true;
                }
                continue;
            } else if aux.name == "GLIBC_ABI_DT_RELR" {
                DT_RELR_VERSION
            } else if let Some(v) = GlibcVersion::from_symbol_version(&aux.name) {
                v
            } else {
                continue;
            };
            if aux.weak {
                weak.push((vn.file.clone(), version));
            } else if need.max.is_none_or(|m| version > m) {
                need.max = Some(version);
                need.max_name = Some(aux.name.clone());
                need.max_from = Some(vn.file.clone());
            }
        }
    }
    need.weak_only_above = weak
        .into_iter()
        .filter(|(_, v)| need.max.is_none_or(|m| *v > m))
        .collect();
    need
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{self, VerNeed, VerNeedAux};
    use proptest::prelude::*;
    use std::path::Path;
    use std::process::Command;

    const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";
    const LIBMPICH: &str = "/lib/x86_64-linux-gnu/libmpich.so.12";

    fn v(major: u32, minor: u32) -> GlibcVersion {
        GlibcVersion::new(major, minor)
    }

    fn stdout(cmd: &mut Command) -> String {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The host glibc according to `ldd --version` (first line ends with the version).
    fn ldd_version() -> GlibcVersion {
        let text = stdout(Command::new("ldd").arg("--version"));
        let first = text.lines().next().expect("ldd output");
        first
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("cannot read a version in {first:?}"))
    }

    #[test]
    fn version_parsing_and_display() {
        assert_eq!("2.34".parse::<GlibcVersion>(), Ok(v(2, 34)));
        assert_eq!("2.2.5".parse::<GlibcVersion>(), Ok(v(2, 2)));
        for bad in [
            "",
            "2",
            "2.",
            ".3",
            "2.x",
            "2.34.",
            "2.3.4.5",
            "+2.3",
            "2. 3",
            "99999999999.1",
        ] {
            assert!(bad.parse::<GlibcVersion>().is_err(), "{bad:?}");
        }
        assert!("x"
            .parse::<GlibcVersion>()
            .unwrap_err()
            .to_string()
            .contains("\"x\""));
        assert_eq!(v(2, 34).to_string(), "2.34");
        assert!(v(2, 9) < v(2, 10) && v(2, 34) < v(3, 0));
        assert_eq!(
            GlibcVersion::from_symbol_version("GLIBC_2.34"),
            Some(v(2, 34))
        );
        assert_eq!(
            GlibcVersion::from_symbol_version("GLIBC_2.2.5"),
            Some(v(2, 2))
        );
        for none in [
            "GLIBC_PRIVATE",
            "GLIBC_ABI_DT_RELR",
            "GLIBCXX_3.4",
            "GCC_3.0",
            "2.34",
            "GLIBC_",
        ] {
            assert_eq!(GlibcVersion::from_symbol_version(none), None, "{none}");
        }
    }

    #[test]
    fn banners() {
        let cases: &[(&[u8], Option<GlibcVersion>)] = &[
            (b"\0GNU C Library (Debian GLIBC 2.36-9+deb12u14) stable release version 2.36.\nCopyright", Some(v(2, 36))),
            (b"GNU C Library (Ubuntu GLIBC 2.23-0ubuntu11) stable release version 2.23, by Roland McGrath et al.", Some(v(2, 23))),
            (b"GNU C Library (GNU libc) development release version 2.36.9000.", Some(v(2, 36))),
            (b"GNU C Library (GNU libc) version 2.31.\n", Some(v(2, 31))),
            (b"release version \0 ... release version 2.17,", Some(v(2, 17))),
            (b"GNU C Library, no version here\n", None),
            (b"release version 2.", None),
            (b"release version 1234567890.1", None),
            (b"", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                version_from_banner(bytes),
                *want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn host_libc_banner_and_verdef_match_ldd() {
        let host = ldd_version();
        let bytes = std::fs::read(LIBC).expect("host libc.so.6");
        assert_eq!(version_from_banner(&bytes), Some(host));
        let facts = elf::parse(&bytes).unwrap();
        let max = max_verdef_version(&facts).expect("libc defines GLIBC_x.y");
        assert!(
            max <= host && max >= v(2, 34),
            "verdef max {max}, ldd {host}"
        );
    }

    #[test]
    fn file_names() {
        assert_eq!(version_from_file_name("libc-2.31.so"), Some(v(2, 31)));
        assert_eq!(version_from_file_name("ld-2.31.so"), Some(v(2, 31)));
        assert_eq!(
            version_from_file_name("/lib/x86_64-linux-gnu/libpthread-2.17.so"),
            Some(v(2, 17))
        );
        assert_eq!(
            version_from_file_name("libnss_files-2.28.so"),
            Some(v(2, 28))
        );
        for none in [
            "libc.so.6",
            "libfoo-1.2.so",
            "libc-2.31.so.bak",
            "libc-2.31.1.so",
            "libc-.so",
            "ld-linux-x86-64.so.2",
            "",
        ] {
            assert_eq!(version_from_file_name(none), None, "{none}");
        }
    }

    #[test]
    fn generator_strings() {
        assert_eq!(
            version_from_generator(
                "ldconfig (Debian GLIBC 2.36-9+deb12u14) stable release version 2.36"
            ),
            Some(v(2, 36))
        );
        assert_eq!(
            version_from_generator("ldconfig (Ubuntu GLIBC 2.39-0ubuntu8)"),
            Some(v(2, 39))
        );
        assert_eq!(version_from_generator("ldconfig"), None);
        // The host cache's generator against ldd.
        let file = std::fs::File::open("/etc/ld.so.cache").unwrap();
        let cache = crate::ldcache::read_file(&file).unwrap();
        let generator = cache.generator.expect("host cache has a generator");
        assert_eq!(version_from_generator(&generator), Some(ldd_version()));
    }

    #[test]
    fn glibc_sonames() {
        for s in [
            "libc.so.6",
            "libm.so.6",
            "ld-linux-x86-64.so.2",
            "ld64.so.2",
            "ld-linux-riscv64-lp64d.so.1",
            "libnss_dns.so.2",
        ] {
            assert!(is_glibc_soname(s), "{s}");
        }
        for s in [
            "libz.so.1",
            "libstdc++.so.6",
            "libc.so",
            "ld-musl-x86_64.so.1",
            "libmpich.so.12",
        ] {
            assert!(!is_glibc_soname(s), "{s}");
        }
    }

    fn facts_with(needs: &[(&str, &[(&str, bool)])]) -> ElfFacts {
        let mut facts = elf::parse(&std::fs::read(LIBC).unwrap()).unwrap();
        facts.soname = Some("libx.so.1".into());
        facts.verneed = needs
            .iter()
            .map(|(file, vers)| VerNeed {
                file: file.to_string(),
                versions: vers
                    .iter()
                    .map(|(name, weak)| VerNeedAux {
                        name: name.to_string(),
                        weak: *weak,
                    })
                    .collect(),
            })
            .collect();
        facts
    }

    #[test]
    fn need_rules() {
        let n = glibc_need(&facts_with(&[
            (
                "libc.so.6",
                &[
                    ("GLIBC_2.2.5", false),
                    ("GLIBC_2.34", false),
                    ("GLIBC_2.38", true),
                ],
            ),
            ("libm.so.6", &[("GLIBC_2.29", false), ("GLIBC_2.30", true)]),
            ("libfoo.so.1", &[("GLIBC_9.99", false)]),
            ("ld-linux-x86-64.so.2", &[("GLIBC_2.3", false)]),
        ]));
        assert_eq!(n.max, Some(v(2, 34)));
        assert_eq!(n.max_name.as_deref(), Some("GLIBC_2.34"));
        assert_eq!(n.max_from.as_deref(), Some("libc.so.6"));
        assert!(!n.private);
        assert_eq!(n.weak_only_above, [("libc.so.6".to_string(), v(2, 38))]);
        assert_eq!(n.needed_by.as_deref(), Some("libx.so.1"));
        assert!(n.is_satisfied_by(v(2, 34)) && !n.is_satisfied_by(v(2, 33)));

        let n = glibc_need(&facts_with(&[(
            "libc.so.6",
            &[
                ("GLIBC_2.17", false),
                ("GLIBC_ABI_DT_RELR", false),
                ("GLIBC_PRIVATE", false),
            ],
        )]));
        assert_eq!(n.max, Some(v(2, 36)));
        assert_eq!(n.max_name.as_deref(), Some("GLIBC_ABI_DT_RELR"));
        assert!(n.private);

        let n = glibc_need(&facts_with(&[("libz.so.1", &[("ZLIB_1.2.9", false)])]));
        assert_eq!(n.max, None);
        assert!(n.is_satisfied_by(v(2, 17)));
    }

    /// Max GLIBC_x.y over glibc files in `readelf -V` (the oracle), plus GLIBC_PRIVATE.
    fn readelf_need(path: &Path) -> (Option<GlibcVersion>, bool) {
        let text = stdout(Command::new("readelf").arg("-V").arg("--wide").arg(path));
        let needs = text.split("Version needs section").nth(1).unwrap_or("");
        let mut file_is_glibc = false;
        let mut max = None;
        let mut private = false;
        for line in needs.lines() {
            if let Some(rest) = line.split("File: ").nth(1) {
                file_is_glibc = is_glibc_soname(rest.split_whitespace().next().unwrap());
            } else if let Some(rest) = line.split("Name: ").nth(1) {
                let name = rest.split_whitespace().next().unwrap();
                if file_is_glibc && !line.contains("WEAK") {
                    private |= name == "GLIBC_PRIVATE";
                    let ver = if name == "GLIBC_ABI_DT_RELR" {
                        Some(v(2, 36))
                    } else {
                        GlibcVersion::from_symbol_version(name)
                    };
                    max = max.max(ver);
                }
            }
        }
        (max, private)
    }

    #[test]
    fn host_library_needs_match_readelf() {
        let mut checked = 0;
        for path in [
            LIBMPICH,
            "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/lib/x86_64-linux-gnu/libz.so.1",
            LIBC,
        ] {
            let path = Path::new(path);
            if !path.exists() {
                eprintln!("{} is missing: not checked", path.display());
                continue;
            }
            let facts = elf::read_file(&std::fs::File::open(path).unwrap(), 1 << 30).unwrap();
            let need = glibc_need(&facts);
            let (max, private) = readelf_need(path);
            assert_eq!(
                (need.max, need.private),
                (max, private),
                "{}",
                path.display()
            );
            checked += 1;
        }
        assert!(checked >= 2);
        if Path::new(LIBMPICH).exists() {
            let facts = elf::read_file(&std::fs::File::open(LIBMPICH).unwrap(), 1 << 30).unwrap();
            let need = glibc_need(&facts);
            assert!(need.max >= Some(v(2, 34)), "{need:?}");
            assert_eq!(need.needed_by.as_deref(), Some("libmpich.so.12"));
        } else {
            eprintln!("{LIBMPICH} is missing (package libmpich12): its need not checked");
        }
    }

    proptest! {
        #[test]
        fn string_parsers_never_panic(s in ".{0,64}", bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = s.parse::<GlibcVersion>();
            let _ = GlibcVersion::from_symbol_version(&s);
            let _ = GlibcVersion::from_symbol_version(&format!("GLIBC_{s}"));
            let _ = version_from_file_name(&s);
            let _ = version_from_file_name(&format!("libc-{s}.so"));
            let _ = version_from_generator(&s);
            let _ = version_from_banner(&bytes);
            let _ = version_from_banner(&[b"release version ".as_slice(), &bytes].concat());
            let _ = version_from_banner(&[b"GNU C Library ".as_slice(), &bytes].concat());
            let _ = is_glibc_soname(&s);
        }

        #[test]
        fn display_round_trips(major in 0u32..1_000_000_000, minor in 0u32..1_000_000_000) {
            let ver = GlibcVersion::new(major, minor);
            prop_assert_eq!(ver.to_string().parse::<GlibcVersion>(), Ok(ver));
            prop_assert_eq!(GlibcVersion::from_symbol_version(&format!("GLIBC_{ver}")), Some(ver));
            prop_assert_eq!(version_from_banner(format!("release version {ver}.").as_bytes()), Some(ver));
        }
    }
}
