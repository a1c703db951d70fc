//! PMIx directories of the job (as Sarus does): when the container's environment names
//! a PMIx server directory (`PMIX_SERVER_TMPDIR`, `PMIX_SYSTEM_TMPDIR`, the dstore base
//! paths, Slurm's `pmix.<job>.<step>` spool directory), it is bind-mounted at the same
//! path so that the rank can reach its PMIx server (unix socket, shared-memory store).
//!
//! The environment belongs to whoever starts the container, so a directory is only
//! mounted when it exists, is a real directory reached without symlinks, its name starts
//! with `pmix` (Slurm `pmix.J.S`, OpenPMIx `pmix-PID`, `pmix_dstor_*`), it is owned by
//! root or by the container's user, and no config.json mount already covers it (the
//! hpc-rank launcher binds it read-write itself). Others are skipped with a log line.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Environment variables naming PMIx directories.
pub const PMIX_DIR_VARS: &[&str] = &[
    "PMIX_SERVER_TMPDIR",
    "PMIX_SYSTEM_TMPDIR",
    "PMIX_DSTORE_ESH_BASE_PATH",
    "PMIX_DSTORE_21_BASE_PATH",
];

/// PMIx directories to bind for a container with environment `env` (`K=V`), process
/// uid `uid` and config.json mount destinations `mounted`.
pub fn pmix_dirs(env: &[String], uid: u32, mounted: &[PathBuf]) -> Vec<PathBuf> {
    let get = |k: &str| {
        env.iter()
            .find_map(|e| e.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
    };
    let mut cands: Vec<PathBuf> = PMIX_DIR_VARS
        .iter()
        .filter_map(|k| get(k))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .collect();
    // Slurm's mpi/pmix: <SlurmdSpoolDir>/pmix.<job>.<step>, next to PMIX_SERVER_TMPDIR's
    // parent when the variable points inside it.
    if let (Some(job), Some(step), Some(srv)) = (
        get("SLURM_JOB_ID"),
        get("SLURM_STEP_ID"),
        get("PMIX_SERVER_TMPDIR"),
    ) {
        let name = format!("pmix.{job}.{step}");
        for a in Path::new(srv).ancestors() {
            if a.file_name().is_some_and(|n| n == name.as_str()) {
                cands.push(a.to_path_buf());
            }
        }
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for c in cands {
        match check(&c, uid, mounted) {
            Ok(p) => {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            Err(why) => tracing::info!("PMIx directory {} not bound: {why}", c.display()),
        }
    }
    // A directory inside another one to bind is covered by it.
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    out
}

fn check(p: &Path, uid: u32, mounted: &[PathBuf]) -> Result<PathBuf, String> {
    if !p.is_absolute() {
        return Err("not an absolute path".into());
    }
    let real = p.canonicalize().map_err(|e| e.to_string())?;
    if real != p.components().collect::<PathBuf>() {
        return Err(format!("reached through a symlink ({})", real.display()));
    }
    let md = std::fs::symlink_metadata(&real).map_err(|e| e.to_string())?;
    if !md.is_dir() {
        return Err("not a directory".into());
    }
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.starts_with("pmix") {
        return Err("its name does not start with `pmix`".into());
    }
    if md.uid() != 0 && md.uid() != uid {
        return Err(format!(
            "owned by uid {}, neither root nor the container's user {uid}",
            md.uid()
        ));
    }
    if mounted.iter().any(|m| real.starts_with(m)) {
        return Err("already mounted by config.json".into());
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_only_safe_pmix_dirs() {
        let t = tempfile::tempdir().unwrap();
        let spool = t.path().canonicalize().unwrap();
        let step = spool.join("pmix.7.0");
        std::fs::create_dir_all(step.join("sub")).unwrap();
        let other = spool.join("secret");
        std::fs::create_dir(&other).unwrap();
        let link = spool.join("pmix-link");
        std::os::unix::fs::symlink(&other, &link).unwrap();
        let env = vec![
            format!("PMIX_SERVER_TMPDIR={}", step.join("sub").display()),
            format!("PMIX_SYSTEM_TMPDIR={}", other.display()),
            format!("PMIX_DSTORE_21_BASE_PATH={}", link.display()),
            "SLURM_JOB_ID=7".to_string(),
            "SLURM_STEP_ID=0".to_string(),
        ];
        // The step dir covers PMIX_SERVER_TMPDIR; "secret" and the symlink are refused.
        assert_eq!(pmix_dirs(&env, 0, &[]), vec![step.clone()]);
        // Already bound by the launcher: nothing to do.
        assert!(pmix_dirs(&env, 0, std::slice::from_ref(&step)).is_empty());
        assert!(pmix_dirs(&["PMIX_SERVER_TMPDIR=rel/pmix".into()], 0, &[]).is_empty());
        assert!(pmix_dirs(&[], 0, &[]).is_empty());
    }
}
