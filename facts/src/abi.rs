//! Library names and Sarus's ABI compatibility rules.
//!
//! `libmpich.so.12.1.10` -> linker name `libmpich.so`, version `12.1.10`; vendor names met
//! through a symlink chain (`libmpi.so.12 -> libmpich_gnu_91.so.12.0.1`) give the longest
//! consistent version along the chain. Patch levels never matter.

use std::fmt;

/// A library file name split into linker name and numeric version tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibName {
    /// Everything up to and including the last `.so` (`libmpich.so`).
    pub linker_name: String,
    /// Leading numeric tokens after `.so.` (`[12, 1, 10]`); non-numeric tokens end it.
    pub version: Vec<u32>,
}

/// Splits a file name (no directories) like `libfoo.so.1.2.3`. `None` when the name has
/// no `.so` component.
pub fn parse_lib_name(file_name: &str) -> Option<LibName> {
    let idx = file_name.rfind(".so")?;
    let (head, tail) = file_name.split_at(idx + 3);
    if head.len() <= 3 {
        return None;
    }
    let version = if tail.is_empty() {
        Vec::new()
    } else {
        let rest = tail.strip_prefix('.')?;
        let mut v = Vec::new();
        for tok in rest.split('.') {
            match tok.parse::<u32>() {
                Ok(n) if !tok.is_empty() && tok.bytes().all(|b| b.is_ascii_digit()) => v.push(n),
                _ => break,
            }
        }
        v
    };
    Some(LibName {
        linker_name: head.to_string(),
        version,
    })
}

/// The longest version along a chain of names (first name = the one looked up), keeping
/// only versions consistent with the ones before (each a prefix of the longer).
pub fn version_from_chain<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<u32> {
    let mut best: Vec<u32> = Vec::new();
    for n in names {
        let Some(p) = parse_lib_name(n) else { continue };
        let v = p.version;
        let common = best.len().min(v.len());
        if best[..common] != v[..common] {
            break;
        }
        if v.len() > best.len() {
            best = v;
        }
    }
    best
}

pub fn version_string(v: &[u32]) -> String {
    if v.is_empty() {
        return "(no version)".into();
    }
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

/// `MPI_COMPATIBILITY_TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatType {
    #[default]
    Major,
    Full,
    Strict,
    Dependencies,
}

impl std::str::FromStr for CompatType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "major" => Ok(CompatType::Major),
            "full" => Ok(CompatType::Full),
            "strict" => Ok(CompatType::Strict),
            "dependencies" => Ok(CompatType::Dependencies),
            other => Err(format!(
                "unknown MPI compatibility type '{other}'; use one of major, full, strict, dependencies"
            )),
        }
    }
}

impl fmt::Display for CompatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompatType::Major => "major",
            CompatType::Full => "full",
            CompatType::Strict => "strict",
            CompatType::Dependencies => "dependencies",
        })
    }
}

/// Outcome of comparing a host library version with a container one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Replace the container library with the host one.
    Compatible,
    /// Replace, but tell the user why it may misbehave.
    CompatibleWithWarning(String),
    /// Do not replace; put the host library beside the container one (dependencies only).
    Beside(String),
    /// Refuse: container start must fail.
    Incompatible(String),
}

/// Sarus's rules (patch ignored): see the table in the README.
pub fn check(host: &[u32], container: &[u32], ty: CompatType) -> Verdict {
    let hv = version_string(host);
    let cv = version_string(container);
    let (Some(hmaj), Some(cmaj)) = (host.first(), container.first()) else {
        let why = format!("cannot compare ABI versions: host {hv}, container {cv}");
        return match ty {
            CompatType::Strict => Verdict::Incompatible(why),
            CompatType::Dependencies => Verdict::Beside(why),
            _ => Verdict::CompatibleWithWarning(why),
        };
    };
    if hmaj != cmaj {
        let why = format!("major versions differ (host {hv}, container {cv})");
        return match ty {
            CompatType::Dependencies => Verdict::Beside(why),
            _ => Verdict::Incompatible(why),
        };
    }
    if ty == CompatType::Major {
        return Verdict::Compatible;
    }
    match (host.get(1), container.get(1)) {
        (Some(hmin), Some(cmin)) => match ty {
            CompatType::Strict if hmin != cmin => Verdict::Incompatible(format!(
                "minor versions differ (host {hv}, container {cv}) and the compatibility type is strict"
            )),
            CompatType::Full | CompatType::Dependencies if hmin < cmin => {
                Verdict::CompatibleWithWarning(format!(
                    "the host library is older than the container's (host {hv}, container {cv}); \
                     symbols the application needs may be missing"
                ))
            }
            _ => Verdict::Compatible,
        },
        _ => match ty {
            CompatType::Strict => Verdict::Incompatible(format!(
                "minor versions unknown (host {hv}, container {cv}) and the compatibility type is strict"
            )),
            _ => Verdict::CompatibleWithWarning(format!(
                "minor versions unknown (host {hv}, container {cv}); only the major version was checked"
            )),
        },
    }
}

/// The MPI ABI families a host library can replace within. Across families nothing is
/// compatible: an image built on Open MPI cannot run on MPICH, whatever the versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MpiFamily {
    /// The MPICH ABI (ABI 12): MPICH >= 3.1, Cray MPICH, Intel MPI, MVAPICH2 and others
    /// (`libmpi.so.12`, `libmpich.so.12`, vendor names like `libmpich_gnu_91.so.12`,
    /// `libmpi_cray.so.12`).
    Mpich,
    /// Open MPI (`libmpi.so.40` for 3.x to 5.x, `libmpi.so.20` for 2.x), recognised by its
    /// companion libraries (`libopen-pal`, `libopen-rte`) or those sonames.
    OpenMpi,
}

impl fmt::Display for MpiFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MpiFamily::Mpich => "MPICH ABI",
            MpiFamily::OpenMpi => "Open MPI",
        })
    }
}

/// The MPI family of a library named `linker_name` (`libmpi.so`) with `version` that
/// needs `needed` (its DT_NEEDED), or `None` for a library that is not an MPI.
pub fn mpi_family(linker_name: &str, version: &[u32], needed: &[String]) -> Option<MpiFamily> {
    // The MPI itself, not its language bindings (libmpichcxx, libmpichfort, libmpi_cxx,
    // libmpi_mpifh, libmpi_usempif08, ...), which follow the library they need.
    let bindings = ["libmpichcxx", "libmpichfort", "libmpichf90"];
    let is_mpi_name = linker_name == "libmpi.so"
        || (linker_name.starts_with("libmpich")
            && !bindings.iter().any(|b| linker_name.starts_with(b)))
        || linker_name.starts_with("libmpi_cray");
    if !is_mpi_name {
        return None;
    }
    let open_mpi_companion = needed.iter().any(|n| {
        n.starts_with("libopen-pal.so")
            || n.starts_with("libopen-rte.so")
            || n.starts_with("libprrte.so")
    });
    if open_mpi_companion {
        return Some(MpiFamily::OpenMpi);
    }
    if linker_name.starts_with("libmpich") || linker_name.starts_with("libmpi_cray") {
        return Some(MpiFamily::Mpich);
    }
    match (linker_name, version.first()) {
        ("libmpi.so", Some(12)) => Some(MpiFamily::Mpich),
        ("libmpi.so", Some(20 | 40)) => Some(MpiFamily::OpenMpi),
        _ => None,
    }
}

/// The release series a library version points at, where the family documents it
/// (Open MPI's libtool versions: `40.30.x` is 4.1.x), for messages.
pub fn release_hint(family: MpiFamily, version: &[u32]) -> Option<&'static str> {
    match (family, version) {
        (MpiFamily::OpenMpi, [40, 0, ..]) => Some("Open MPI 3.0.x"),
        (MpiFamily::OpenMpi, [40, 10, ..]) => Some("Open MPI 3.1.x"),
        (MpiFamily::OpenMpi, [40, 20, ..]) => Some("Open MPI 4.0.x"),
        (MpiFamily::OpenMpi, [40, 30, ..]) => Some("Open MPI 4.1.x"),
        (MpiFamily::OpenMpi, [40, 40, ..]) => Some("Open MPI 5.0.x"),
        (MpiFamily::OpenMpi, [20, ..]) => Some("Open MPI 2.x"),
        _ => None,
    }
}

/// `Open MPI (libmpi.so.40.30.0, Open MPI 4.1.x)` / `MPICH ABI (libmpich.so.12.1.10)`.
pub fn describe_mpi(family: MpiFamily, file_name: &str, version: &[u32]) -> String {
    match release_hint(family, version) {
        Some(h) => format!("{family} ({file_name}, {h})"),
        None => format!("{family} ({file_name})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpi_families() {
        let none: Vec<String> = vec![];
        let opal = vec!["libopen-pal.so.40".to_string(), "libc.so.6".to_string()];
        let fam = |n: &str, v: &[u32], needed: &[String]| mpi_family(n, v, needed);
        assert_eq!(
            fam("libmpich.so", &[12, 1, 10], &none),
            Some(MpiFamily::Mpich)
        );
        assert_eq!(fam("libmpi.so", &[12], &none), Some(MpiFamily::Mpich));
        assert_eq!(
            fam("libmpich_gnu_91.so", &[12, 0, 1], &none),
            Some(MpiFamily::Mpich)
        );
        assert_eq!(fam("libmpi_cray.so", &[12], &none), Some(MpiFamily::Mpich));
        assert_eq!(
            fam("libmpi.so", &[40, 30, 0], &opal),
            Some(MpiFamily::OpenMpi)
        );
        assert_eq!(fam("libmpi.so", &[40], &none), Some(MpiFamily::OpenMpi));
        assert_eq!(fam("libmpi.so", &[20, 10], &none), Some(MpiFamily::OpenMpi));
        // Open MPI 1.10 also called its library libmpi.so.12: its companions tell.
        assert_eq!(
            fam("libmpi.so", &[12, 0, 2], &opal),
            Some(MpiFamily::OpenMpi)
        );
        // Not MPIs: bindings, unrelated names, an unknown libmpi major.
        assert_eq!(fam("libmpichcxx.so", &[12], &none), None);
        assert_eq!(fam("libmpichfort.so", &[12], &none), None);
        assert_eq!(fam("libmpi_cxx.so", &[40], &opal), None);
        assert_eq!(fam("libmpi_mpifh.so", &[40], &opal), None);
        assert_eq!(fam("libfabric.so", &[1], &none), None);
        assert_eq!(fam("libmpi.so", &[3], &none), None);
        assert_eq!(
            describe_mpi(MpiFamily::OpenMpi, "libmpi.so.40.30.0", &[40, 30, 0]),
            "Open MPI (libmpi.so.40.30.0, Open MPI 4.1.x)"
        );
        assert_eq!(
            describe_mpi(MpiFamily::Mpich, "libmpich.so.12.1.10", &[12, 1, 10]),
            "MPICH ABI (libmpich.so.12.1.10)"
        );
    }
    use proptest::prelude::*;

    #[test]
    fn names() {
        let n = parse_lib_name("libmpich.so.12.1.10").unwrap();
        assert_eq!(n.linker_name, "libmpich.so");
        assert_eq!(n.version, vec![12, 1, 10]);
        assert_eq!(
            parse_lib_name("libmpich.so").unwrap().version,
            Vec::<u32>::new()
        );
        assert_eq!(parse_lib_name("libfoo.so.1.x.3").unwrap().version, vec![1]);
        assert_eq!(
            parse_lib_name("libfoo.so.").unwrap().version,
            Vec::<u32>::new()
        );
        assert_eq!(parse_lib_name("libfoo.sox"), None);
        assert_eq!(
            parse_lib_name("libc-2.31.so").unwrap().linker_name,
            "libc-2.31.so"
        );
        assert_eq!(parse_lib_name(".so"), None);
        assert_eq!(
            parse_lib_name("libfoo.so.99999999999").unwrap().version,
            Vec::<u32>::new()
        );
    }

    #[test]
    fn chains() {
        assert_eq!(
            version_from_chain(["libmpi.so.12", "libmpich_gnu_91.so.12.0.1"]),
            vec![12, 0, 1]
        );
        assert_eq!(
            version_from_chain(["libmpich.so.12", "libmpich.so.12.1.10"]),
            vec![12, 1, 10]
        );
        assert_eq!(
            version_from_chain(["libmpi.so.12", "libother.so.40.1"]),
            vec![12]
        );
        assert_eq!(
            version_from_chain(["libmpi.so", "libmpich.so.12.1"]),
            vec![12, 1]
        );
    }

    #[test]
    fn sarus_table() {
        use CompatType::*;
        assert_eq!(check(&[12, 2, 2], &[12, 1, 10], Major), Verdict::Compatible);
        assert!(matches!(
            check(&[13, 0], &[12, 1], Major),
            Verdict::Incompatible(_)
        ));
        assert_eq!(check(&[12, 2], &[12, 1], Full), Verdict::Compatible);
        assert!(matches!(
            check(&[12, 1], &[12, 2], Full),
            Verdict::CompatibleWithWarning(_)
        ));
        assert!(matches!(
            check(&[13, 1], &[12, 2], Full),
            Verdict::Incompatible(_)
        ));
        assert_eq!(check(&[12, 1, 7], &[12, 1, 0], Strict), Verdict::Compatible);
        assert!(matches!(
            check(&[12, 2], &[12, 1], Strict),
            Verdict::Incompatible(_)
        ));
        assert!(matches!(
            check(&[3, 0], &[2, 0], Dependencies),
            Verdict::Beside(_)
        ));
        assert!(matches!(
            check(&[2, 0], &[2, 1], Dependencies),
            Verdict::CompatibleWithWarning(_)
        ));
        assert_eq!(check(&[2, 1], &[2, 1], Dependencies), Verdict::Compatible);
        // The case proptest-regressions/abi.txt recorded for the former patch_is_ignored
        // property: a patch level must not change the verdict.
        for ty in [Major, Full, Strict, Dependencies] {
            assert_eq!(
                std::mem::discriminant(&check(&[0, 0, 0], &[0, 1, 0], ty)),
                std::mem::discriminant(&check(&[0, 0], &[0, 1], ty)),
                "{ty}"
            );
        }
    }

    /// The decisions of the reference table (Sarus's `MPI_COMPATIBILITY_TYPE`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Decision {
        Accept,
        Warn,
        Refuse,
        /// dependencies: "never refused: injected beside".
        Beside,
    }

    fn decision(v: &Verdict) -> Decision {
        match v {
            Verdict::Compatible => Decision::Accept,
            Verdict::CompatibleWithWarning(_) => Decision::Warn,
            Verdict::Incompatible(_) => Decision::Refuse,
            Verdict::Beside(_) => Decision::Beside,
        }
    }

    const TYPES: [CompatType; 4] = [
        CompatType::Major,
        CompatType::Full,
        CompatType::Strict,
        CompatType::Dependencies,
    ];

    /// The table in shared/reference/sarus-hooks.md, restated for versions with a major and
    /// a minor (patch ignored):
    ///
    /// | type | accepted | accepted with warning | refused |
    /// | major | same major | | different major |
    /// | full | same major and host minor >= container minor | same major, host minor older | different major |
    /// | strict | same major and same minor | | otherwise |
    /// | dependencies | as full | as full | never refused: injected beside |
    fn table(ty: CompatType, (hmaj, hmin): (u32, u32), (cmaj, cmin): (u32, u32)) -> Decision {
        use Decision::*;
        match ty {
            CompatType::Major if hmaj == cmaj => Accept,
            CompatType::Major => Refuse,
            CompatType::Full if hmaj != cmaj => Refuse,
            CompatType::Full if hmin >= cmin => Accept,
            CompatType::Full => Warn,
            CompatType::Strict if hmaj == cmaj && hmin == cmin => Accept,
            CompatType::Strict => Refuse,
            CompatType::Dependencies => match table(CompatType::Full, (hmaj, hmin), (cmaj, cmin)) {
                Refuse => Beside,
                d => d,
            },
        }
    }

    /// What the table leaves open, when a side has no major or no minor (a library named
    /// `libfoo.so` or `libfoo.so.12`): decided where the table's words decide (a different
    /// major is refused, major needs only the major, strict accepts only what it can show is
    /// the same major and minor, dependencies are never refused); otherwise not silently
    /// accepted: a warning, or for dependencies with no major to compare, beside.
    fn table_partial(ty: CompatType, host: &[u32], container: &[u32]) -> Decision {
        use Decision::*;
        match (host, container) {
            ([hmaj, hmin, ..], [cmaj, cmin, ..]) => table(ty, (*hmaj, *hmin), (*cmaj, *cmin)),
            ([hmaj, ..], [cmaj, ..]) if hmaj != cmaj => match ty {
                CompatType::Dependencies => Beside,
                _ => Refuse,
            },
            ([_, ..], [_, ..]) => match ty {
                CompatType::Major => Accept,
                CompatType::Strict => Refuse,
                CompatType::Full | CompatType::Dependencies => Warn,
            },
            _ => match ty {
                CompatType::Strict => Refuse,
                CompatType::Dependencies => Beside,
                CompatType::Major | CompatType::Full => Warn,
            },
        }
    }

    /// A version token: small values so that equal majors and minors are frequent.
    fn token() -> impl Strategy<Value = u32> {
        prop_oneof![4 => 0u32..4, 1 => any::<u32>()]
    }

    /// (host, container) with 0 to 4 tokens each; the container often shares the host's
    /// major or major and minor.
    fn version_pair() -> impl Strategy<Value = (Vec<u32>, Vec<u32>)> {
        (
            proptest::collection::vec(token(), 0..5),
            proptest::collection::vec(token(), 0..5),
            0u8..3,
        )
            .prop_map(|(h, mut c, share)| {
                let n = (share as usize).min(h.len()).min(c.len());
                c[..n].copy_from_slice(&h[..n]);
                (h, c)
            })
    }

    fn file_name(linker: &str, v: &[u32]) -> String {
        let mut s = linker.to_string();
        for t in v {
            s.push_str(&format!(".{t}"));
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        // Every type, versions with a major and a minor (and any patch levels): the verdict
        // is the table's.
        #[test]
        fn check_is_the_reference_table(
            (hmaj, hmin, cmaj, cmin) in (token(), token(), token(), token()),
            same_major in any::<bool>(),
            hpatch in proptest::collection::vec(token(), 0..3),
            cpatch in proptest::collection::vec(token(), 0..3),
        ) {
            let cmaj = if same_major { hmaj } else { cmaj };
            let mut host = vec![hmaj, hmin];
            host.extend(&hpatch);
            let mut container = vec![cmaj, cmin];
            container.extend(&cpatch);
            for ty in TYPES {
                prop_assert_eq!(
                    decision(&check(&host, &container, ty)),
                    table(ty, (hmaj, hmin), (cmaj, cmin)),
                    "{} host {:?} container {:?}", ty, host, container
                );
            }
        }

        // Any pair, including versions without a minor or without any version, read from
        // library file names as the MPI hook reads them (container side through a
        // symlink chain).
        #[test]
        fn check_on_names_follows_the_table((host, container) in version_pair()) {
            let h = parse_lib_name(&file_name("libmpich.so", &host)).unwrap().version;
            let c = version_from_chain([
                file_name("libmpi.so", &container[..container.len().min(1)]).as_str(),
                file_name("libmpich_gnu_91.so", &container).as_str(),
            ]);
            prop_assert_eq!(&h, &host);
            prop_assert_eq!(&c, &container);
            for ty in TYPES {
                prop_assert_eq!(
                    decision(&check(&h, &c, ty)),
                    table_partial(ty, &host, &container),
                    "{} host {:?} container {:?}", ty, host, container
                );
            }
        }
    }

    proptest! {
        #[test]
        fn name_parser_never_panics(s in ".{0,64}") {
            let _ = parse_lib_name(&s);
        }

        #[test]
        fn chain_version_is_consistent(a in proptest::collection::vec(0u32..20, 0..4), extra in proptest::collection::vec(0u32..20, 0..3)) {
            let mut long = a.clone();
            long.extend(&extra);
            let n1 = format!("libx.so{}", a.iter().map(|x| format!(".{x}")).collect::<String>());
            let n2 = format!("liby.so{}", long.iter().map(|x| format!(".{x}")).collect::<String>());
            prop_assert_eq!(version_from_chain([n1.as_str(), n2.as_str()]), long);
        }
    }
}
