//! Where the container's dynamic loader will find the libraries of the container's program,
//! worked out in-root without running anything: the program from `process.args[0]` (and
//! the container's PATH), then each DT_NEEDED through DT_RPATH / DT_RUNPATH (`$ORIGIN`
//! expanded), the container's LD_LIBRARY_PATH, its loader cache and the default
//! directories, as glibc's `ld.so` searches. It finds an MPI the image keeps outside its
//! loader cache (Spack, EasyBuild, `/opt/...` prefixes found through RUNPATH). The image
//! (its env, its files) only selects among its own files: every lookup is in-root, every
//! ELF read bounded, the walk bounded to [`MAX_OBJECTS`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::elf::{self, ElfClass, ElfFacts};
use crate::hostlib::MAX_ELF_BYTES;
use crate::ldcache::LdCache;
use crate::rootfs::{normalize, Rootfs};

/// Most shared objects looked at for one program (a large application has a few hundred).
pub const MAX_OBJECTS: usize = 512;
/// Longest search path list taken from one source (entries beyond are ignored).
const MAX_DIRS: usize = 64;
/// The loader's built-in directories after the cache (glibc on x86-64 Debian: the
/// multiarch directories first, then the lib64 and lib ones).
const DEFAULT_DIRS: [&str; 6] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];
/// PATH used when the container's environment has none (runc's and podman's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The container's process, as config.json gives it.
#[derive(Debug, Clone, Copy)]
pub struct Process<'a> {
    /// `process.args[0]`.
    pub program: &'a str,
    /// `process.env` (`KEY=value`).
    pub env: &'a [String],
    /// `process.cwd`.
    pub cwd: &'a str,
}

impl Process<'_> {
    pub(crate) fn var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
    }
}

/// One shared object the loader would map, with the name it was needed by.
#[derive(Debug, Clone)]
pub struct Found {
    /// The DT_NEEDED name (`libmpich.so.12`).
    pub needed: String,
    /// The container path the loader opens (`/opt/mpich/lib/libmpich.so.12`).
    pub path: PathBuf,
    /// Its real file in the rootfs (symlinks resolved in-root).
    pub real: PathBuf,
    pub facts: ElfFacts,
}

/// Why the program could not be followed (the caller treats it as "nothing found").
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("the container's program {0:?} is not found in the image (looked in PATH)")]
    NoProgram(String),
    #[error("the container's program {path}: {message}")]
    Program { path: PathBuf, message: String },
}

/// The program's path in the container: as given when it has a `/` (relative to `cwd`),
/// else the first regular file of that name in the container's PATH.
pub fn find_program(rootfs: &Rootfs, p: &Process<'_>) -> Result<PathBuf, LoaderError> {
    if p.program.contains('/') {
        let path = if p.program.starts_with('/') {
            PathBuf::from(p.program)
        } else {
            Path::new(p.cwd).join(p.program)
        };
        return Ok(normalize(&path));
    }
    let path_var = p.var("PATH").unwrap_or(DEFAULT_PATH);
    for dir in path_var
        .split(':')
        .filter(|d| d.starts_with('/'))
        .take(MAX_DIRS)
    {
        let cand = normalize(&Path::new(dir).join(p.program));
        if rootfs.open_read(&cand).is_ok() {
            return Ok(cand);
        }
    }
    Err(LoaderError::NoProgram(p.program.to_string()))
}

/// Expands `$ORIGIN` / `${ORIGIN}` (and `$LIB`, `$PLATFORM` for x86-64) in one search
/// path entry; `None` for an entry the loader would not use (relative, unknown token).
fn expand(entry: &str, origin: &Path) -> Option<PathBuf> {
    let o = origin.to_string_lossy();
    let s = entry
        .replace("${ORIGIN}", &o)
        .replace("$ORIGIN", &o)
        .replace("${LIB}", "lib64")
        .replace("$LIB", "lib64")
        .replace("${PLATFORM}", "x86_64")
        .replace("$PLATFORM", "x86_64");
    (s.starts_with('/') && !s.contains('$')).then(|| normalize(Path::new(&s)))
}

/// An ELF object of the wanted class and machine at `path` in the rootfs, with its real
/// path; `None` when there is none (the loader goes on searching).
fn load(
    rootfs: &Rootfs,
    path: &Path,
    class: ElfClass,
    machine: u16,
) -> Option<(PathBuf, ElfFacts)> {
    let real = rootfs.real_path(path).ok()?;
    let file = rootfs.open_read(&real).ok()?;
    let facts = elf::read_file(&file, MAX_ELF_BYTES).ok()?;
    (facts.class == class && facts.machine == machine).then_some((real, facts))
}

/// Every shared object the program needs, transitively, as the loader would find them
/// (the first of a name wins, as the loader maps each soname once). Objects it cannot find
/// are left out (the loader would fail: not the hook's concern here).
pub fn program_libraries(
    rootfs: &Rootfs,
    cache: &LdCache,
    p: &Process<'_>,
) -> Result<Vec<Found>, LoaderError> {
    let prog = find_program(rootfs, p)?;
    let perr = |message: String| LoaderError::Program {
        path: prog.clone(),
        message,
    };
    let real = rootfs.real_path(&prog).map_err(|e| perr(e.to_string()))?;
    let file = rootfs.open_read(&real).map_err(|e| perr(e.to_string()))?;
    let exe = elf::read_file(&file, MAX_ELF_BYTES).map_err(|e| perr(e.to_string()))?;
    let (class, machine) = (exe.class, exe.machine);
    let ld_library_path: Vec<PathBuf> = p
        .var("LD_LIBRARY_PATH")
        .unwrap_or("")
        .split([':', ';'])
        .filter(|d| d.starts_with('/'))
        .take(MAX_DIRS)
        .map(|d| normalize(Path::new(d)))
        .collect();
    // The executable's DT_RPATH applies to every object without DT_RUNPATH.
    let exe_origin = real.parent().map(Path::to_path_buf).unwrap_or_default();
    let exe_rpath: Vec<PathBuf> = if exe.runpath.is_empty() {
        exe.rpath
            .iter()
            .take(MAX_DIRS)
            .filter_map(|e| expand(e, &exe_origin))
            .collect()
    } else {
        Vec::new()
    };
    let mut found: Vec<Found> = Vec::new();
    // (needed name, the needing object's dir, its rpath, its runpath)
    let mut queue: VecDeque<(String, PathBuf, Vec<String>, Vec<String>)> = exe
        .needed
        .iter()
        .map(|n| {
            (
                n.clone(),
                exe_origin.clone(),
                exe.rpath.clone(),
                exe.runpath.clone(),
            )
        })
        .collect();
    let mut looked = 0usize;
    while let Some((name, origin, rpath, runpath)) = queue.pop_front() {
        if found.iter().any(|f| f.needed == name) {
            continue;
        }
        looked += 1;
        if looked > MAX_OBJECTS {
            tracing::warn!(
                "stopped following {}'s libraries after {MAX_OBJECTS} objects",
                prog.display()
            );
            break;
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        if runpath.is_empty() {
            dirs.extend(
                rpath
                    .iter()
                    .take(MAX_DIRS)
                    .filter_map(|e| expand(e, &origin)),
            );
            dirs.extend(exe_rpath.iter().cloned());
        }
        dirs.extend(ld_library_path.iter().cloned());
        dirs.extend(
            runpath
                .iter()
                .take(MAX_DIRS)
                .filter_map(|e| expand(e, &origin)),
        );
        let mut hit = None;
        if name.contains('/') {
            // A needed name with a slash is a path, relative to the working directory.
            let path = normalize(&Path::new(p.cwd).join(&name));
            hit = load(rootfs, &path, class, machine).map(|(r, f)| (path, r, f));
        } else {
            for d in &dirs {
                let path = d.join(&name);
                if let Some((r, f)) = load(rootfs, &path, class, machine) {
                    hit = Some((path, r, f));
                    break;
                }
            }
            if hit.is_none() {
                for e in cache.lookup_elf(&name, class, machine) {
                    let path = PathBuf::from(&e.path);
                    if let Some((r, f)) = load(rootfs, &path, class, machine) {
                        hit = Some((path, r, f));
                        break;
                    }
                }
            }
            if hit.is_none() {
                for d in DEFAULT_DIRS {
                    let path = Path::new(d).join(&name);
                    if let Some((r, f)) = load(rootfs, &path, class, machine) {
                        hit = Some((path, r, f));
                        break;
                    }
                }
            }
        }
        let Some((path, real, facts)) = hit else {
            tracing::debug!(
                "{name} (needed by {}) not found in the image",
                prog.display()
            );
            continue;
        };
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for n in &facts.needed {
            queue.push_back((
                n.clone(),
                dir.clone(),
                facts.rpath.clone(),
                facts.runpath.clone(),
            ));
        }
        found.push(Found {
            needed: name,
            path,
            real,
            facts,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_and_tokens_expand_like_the_loader() {
        let o = Path::new("/opt/app/bin");
        assert_eq!(
            expand("$ORIGIN/../lib", o),
            Some(PathBuf::from("/opt/app/lib"))
        );
        assert_eq!(
            expand("${ORIGIN}/../../mpich/$LIB", o),
            Some(PathBuf::from("/opt/mpich/lib64"))
        );
        assert_eq!(expand("lib", o), None, "relative entries are not used");
        assert_eq!(expand("$UNKNOWN/lib", o), None);
    }
}
