//! CUDA versions: `NVIDIA_REQUIRE_CUDA` constraints, the CUDA version a driver branch
//! provides, and CUDA forward compatibility (`/usr/local/cuda/compat/libcuda.so.*` in the
//! image, newer than the host driver, takes precedence).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use hooks_core::rootfs::Rootfs;

/// Directory of the CUDA forward-compatibility libraries in CUDA images.
pub const COMPAT_DIR: &str = "/usr/local/cuda/compat";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CudaError {
    #[error("NVIDIA_REQUIRE_CUDA={constraint:?} is not satisfied: the container needs {constraint} but the host driver {driver} provides CUDA {cuda}{compat}; upgrade the host driver, run an image built for CUDA {cuda} or older, or set NVIDIA_DISABLE_REQUIRE=1 to skip the check")]
    Unsatisfied {
        constraint: String,
        driver: String,
        cuda: String,
        compat: String,
    },
    #[error("NVIDIA_REQUIRE_CUDA={constraint:?} cannot be checked: the host's CUDA version is unknown ({why}); make NVML usable (--nvml-lib), or set NVIDIA_DISABLE_REQUIRE=1")]
    Unknown { constraint: String, why: String },
    #[error("NVIDIA_REQUIRE_CUDA={constraint:?}: cannot parse {term:?}; expected terms like cuda>=12.4 or driver>=535 (space: alternatives, comma: all of)")]
    Parse { constraint: String, term: String },
}

/// A dotted version (`12.4`, `550.54.14`); missing components count as 0.
#[derive(Debug, Clone)]
pub struct Ver(pub Vec<u32>);

impl PartialEq for Ver {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ver {}

impl Ver {
    pub fn parse(s: &str) -> Option<Ver> {
        let parts: Option<Vec<u32>> = s.trim().split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty() && p.len() <= 4).map(Ver)
    }
}

impl PartialOrd for Ver {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ver {
    /// Missing components count as 0 (`12.4` == `12.4.0`).
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        for i in 0..n {
            let a = self.0.get(i).copied().unwrap_or(0);
            let b = other.0.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        Ordering::Equal
    }
}

impl std::fmt::Display for Ver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s: Vec<String> = self.0.iter().map(|x| x.to_string()).collect();
        f.write_str(&s.join("."))
    }
}

/// The newest CUDA version a driver branch supports (NVIDIA's compatibility table).
pub fn cuda_of_driver(driver: &Ver) -> Option<Ver> {
    let major = *driver.0.first()?;
    const TABLE: &[(u32, &str)] = &[
        (580, "13.0"),
        (575, "12.9"),
        (570, "12.8"),
        (565, "12.7"),
        (560, "12.6"),
        (555, "12.5"),
        (550, "12.4"),
        (545, "12.3"),
        (535, "12.2"),
        (530, "12.1"),
        (525, "12.0"),
        (520, "11.8"),
        (515, "11.7"),
        (510, "11.6"),
        (495, "11.5"),
        (470, "11.4"),
        (465, "11.3"),
        (460, "11.2"),
        (455, "11.1"),
        (450, "11.0"),
    ];
    TABLE
        .iter()
        .find(|(b, _)| major >= *b)
        .and_then(|(_, c)| Ver::parse(c))
}

/// What the requirement is judged against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCuda {
    /// Driver version (`550.54.14`).
    pub driver: Option<Ver>,
    /// CUDA version the driver (or the compat libraries) provide.
    pub cuda: Option<Ver>,
    /// Set when the CUDA version comes from the image's compat libraries.
    pub compat: Option<Ver>,
}

fn eval(op: &str, have: &Ver, want: &Ver) -> bool {
    match op {
        ">=" => have >= want,
        "<=" => have <= want,
        ">" => have > want,
        "<" => have < want,
        "=" | "==" => have == want,
        "!=" => have != want,
        _ => false,
    }
}

/// Checks `NVIDIA_REQUIRE_CUDA`. Space-separated alternatives, each a comma-separated list
/// of conditions (`cuda>=12.4`, `driver>=535`, `brand=tesla`, `arch=8.0`); conditions on
/// facts the hook does not know (brand, arch) are false.
pub fn check_requirement(constraint: &str, host: &HostCuda) -> Result<(), CudaError> {
    let mut needs_cuda = false;
    let mut any = false;
    for alt in constraint.split_whitespace() {
        let mut ok = true;
        for term in alt.split(',').filter(|t| !t.is_empty()) {
            let pos = term
                .find(['<', '>', '=', '!'])
                .ok_or_else(|| CudaError::Parse {
                    constraint: constraint.into(),
                    term: term.into(),
                })?;
            let (key, rest) = term.split_at(pos);
            let oplen = rest
                .bytes()
                .take_while(|b| matches!(b, b'<' | b'>' | b'=' | b'!'))
                .count();
            let (op, val) = rest.split_at(oplen);
            let res = match key.trim().to_ascii_lowercase().as_str() {
                "cuda" => {
                    needs_cuda = true;
                    let want = Ver::parse(val).ok_or_else(|| CudaError::Parse {
                        constraint: constraint.into(),
                        term: term.into(),
                    })?;
                    host.cuda.as_ref().is_some_and(|h| eval(op, h, &want))
                }
                "driver" => {
                    let want = Ver::parse(val).ok_or_else(|| CudaError::Parse {
                        constraint: constraint.into(),
                        term: term.into(),
                    })?;
                    host.driver.as_ref().is_some_and(|h| eval(op, h, &want))
                }
                "brand" | "arch" => false,
                _ => {
                    return Err(CudaError::Parse {
                        constraint: constraint.into(),
                        term: term.into(),
                    })
                }
            };
            ok &= res;
        }
        any |= ok;
    }
    if any {
        return Ok(());
    }
    if needs_cuda && host.cuda.is_none() {
        return Err(CudaError::Unknown {
            constraint: constraint.into(),
            why: "neither NVML nor the driver version gave it".into(),
        });
    }
    let show = |v: &Option<Ver>| v.as_ref().map_or("unknown".to_string(), |v| v.to_string());
    Err(CudaError::Unsatisfied {
        constraint: constraint.into(),
        driver: show(&host.driver),
        cuda: show(&host.cuda),
        compat: host
            .compat
            .as_ref()
            .map(|c| format!(" (with the image's CUDA compat libraries {c})"))
            .unwrap_or_default(),
    })
}

/// The image's compat `libcuda.so.<version>` files, newest first: (container path, version).
pub fn image_compat_libs(rootfs: &Rootfs) -> Vec<(PathBuf, Ver)> {
    let Ok(names) = hooks_core::ldcache_update::list_dir(rootfs, Path::new(COMPAT_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Ver)> = names
        .iter()
        .filter_map(|n| {
            let v = Ver::parse(n.strip_prefix("libcuda.so.")?)?;
            // libcuda.so.1 is the SONAME link, not a version.
            (v.0.len() >= 2).then(|| (Path::new(COMPAT_DIR).join(n), v))
        })
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1));
    out
}

/// The compat version to use: the newest image compat library when it is newer than the
/// host driver, else `None` (older compat libraries are ignored).
pub fn compat_to_use(rootfs: &Rootfs, driver: Option<&Ver>) -> Option<Ver> {
    let (_, v) = image_compat_libs(rootfs).into_iter().next()?;
    match driver {
        Some(d) if v > *d => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(d: &str) -> HostCuda {
        let driver = Ver::parse(d);
        HostCuda {
            cuda: driver.as_ref().and_then(cuda_of_driver),
            driver,
            compat: None,
        }
    }

    #[test]
    fn versions() {
        assert!(Ver::parse("12.4").unwrap() == Ver::parse("12.4.0").unwrap());
        assert!(Ver::parse("12.10").unwrap() > Ver::parse("12.9").unwrap());
        assert_eq!(
            cuda_of_driver(&Ver::parse("550.54.14").unwrap()),
            Ver::parse("12.4")
        );
        assert_eq!(Ver::parse("x"), None);
    }

    #[test]
    fn requirements() {
        let h = host("550.54.14");
        assert!(check_requirement("cuda>=12.4", &h).is_ok());
        assert!(check_requirement("cuda>=12.0 brand=tesla,driver>=470,driver<471", &h).is_ok());
        let e = check_requirement("cuda>=12.9", &h).unwrap_err().to_string();
        assert!(
            e.contains("cuda>=12.9") && e.contains("CUDA 12.4") && e.contains("550.54.14"),
            "{e}"
        );
        assert!(check_requirement("cuda>=12.9 brand=tesla,driver>=550,driver<551", &h).is_err());
        assert!(check_requirement("cuda>=12.9 driver>=550,driver<551", &h).is_ok());
        assert!(matches!(
            check_requirement("cuda~12", &h),
            Err(CudaError::Parse { .. })
        ));
        let none = HostCuda {
            driver: None,
            cuda: None,
            compat: None,
        };
        assert!(matches!(
            check_requirement("cuda>=12.0", &none),
            Err(CudaError::Unknown { .. })
        ));
    }
}
