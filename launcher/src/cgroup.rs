//! Where rank cgroups go: under hpc-rank's own cgroup (the Slurm step's), so the job's
//! CPU, memory and device limits apply to the rank; and finding leftovers for the epilog.

use std::path::{Path, PathBuf};

/// Name of the directory, under hpc-rank's own cgroup, that holds the rank cgroups.
pub const PARENT: &str = "hpc-rank";

/// runc's `cgroupsPath` for container `id`: relative, so that runc (cgroupfs driver, v1
/// and v2) creates it under its own cgroup in each hierarchy; runc is hpc-rank's child
/// and shares its cgroups.
pub fn runc_cgroups_path(id: &str) -> String {
    format!("{PARENT}/{id}")
}

/// hpc-rank's own cgroup from the text of /proc/self/cgroup: on cgroup v1 the memory
/// controller's (where Slurm's job memory limit lives), else the first controller whose
/// path is not `/`; on v2 the unified path. None when nothing usable is found.
pub fn own_cgroup(proc_self_cgroup: &str) -> Option<String> {
    let mut v1_first: Option<&str> = None;
    let mut v2: Option<&str> = None;
    let mut memory: Option<&str> = None;
    for l in proc_self_cgroup.lines() {
        let mut it = l.splitn(3, ':');
        let (Some(_), Some(ctls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if ctls.is_empty() {
            v2 = Some(path);
        } else if ctls.split(',').any(|c| c == "memory") {
            memory = Some(path);
        } else if v1_first.is_none() && path != "/" && !ctls.starts_with("name=") {
            v1_first = Some(path);
        }
    }
    let any_v1 = proc_self_cgroup
        .lines()
        .any(|l| l.split(':').nth(1).is_some_and(|c| !c.is_empty()));
    let p = if any_v1 {
        memory.or(v1_first).or(Some("/"))
    } else {
        v2
    }?;
    valid(p).then(|| p.to_string())
}

fn valid(p: &str) -> bool {
    p.starts_with('/')
        && !p.split('/').any(|c| c == ".." || c == ".")
        && !p.chars().any(|c| c.is_control() || c == ':' || c == ',')
}

/// podman's `--cgroup-parent` (cgroupfs manager: an absolute path, the same in every
/// hierarchy): `<own cgroup>/hpc-rank`.
pub fn podman_parent(own: &str) -> String {
    format!("{}/{PARENT}", own.trim_end_matches('/'))
}

/// Directories named like a container of ours (`wanted(name)`) below `root` (the cgroup
/// mount, e.g. /sys/fs/cgroup), at most `depth` levels deep, deepest first.
pub fn find_named(root: &Path, wanted: &dyn Fn(&str) -> bool, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(root, wanted, depth, &mut out);
    out
}

fn walk(dir: &Path, wanted: &dyn Fn(&str) -> bool, depth: usize, out: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        // file_type() does not follow symlinks: only real directories are walked.
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let p = e.path();
        walk(&p, wanted, depth - 1, out);
        if wanted(&e.file_name().to_string_lossy()) {
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_SLURM: &str = "12:pids:/slurm/uid_1000/job_7/step_0/task_0\n\
        9:name=systemd:/\n\
        4:memory:/slurm/uid_1000/job_7/step_0\n\
        3:cpu,cpuacct:/\n\
        1:cpuset:/slurm/uid_1000/job_7/step_0\n\
        0::/\n";

    #[test]
    fn v1_prefers_the_memory_controller() {
        assert_eq!(
            own_cgroup(V1_SLURM).as_deref(),
            Some("/slurm/uid_1000/job_7/step_0")
        );
        let no_mem = "3:cpu,cpuacct:/\n2:cpuset:/a/b\n1:name=systemd:/user.slice\n";
        assert_eq!(own_cgroup(no_mem).as_deref(), Some("/a/b"));
        assert_eq!(own_cgroup("3:cpu:/\n").as_deref(), Some("/"));
    }

    #[test]
    fn v2_uses_the_unified_path_and_bad_paths_are_refused() {
        assert_eq!(
            own_cgroup("0::/system.slice/slurmstepd.scope/job_7/step_0/user/task_0\n").as_deref(),
            Some("/system.slice/slurmstepd.scope/job_7/step_0/user/task_0")
        );
        assert_eq!(own_cgroup("0::/a/../b\n"), None);
        assert_eq!(own_cgroup("0::relative\n"), None);
        assert_eq!(own_cgroup(""), None);
    }

    #[test]
    fn paths_for_runc_and_podman() {
        assert_eq!(
            runc_cgroups_path("hpcrank-7.0-1-99"),
            "hpc-rank/hpcrank-7.0-1-99"
        );
        assert_eq!(podman_parent("/"), "/hpc-rank");
        assert_eq!(podman_parent("/slurm/job_7"), "/slurm/job_7/hpc-rank");
    }

    #[test]
    fn finds_named_directories_deepest_first() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("memory/slurm/job_7/hpc-rank/hpcrank-7.0-1-2");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(d.path().join("cpu/hpc-rank/other")).unwrap();
        let found = find_named(d.path(), &|n| n.starts_with("hpcrank-7."), 8);
        assert_eq!(found, vec![a.clone()]);
        assert!(find_named(d.path(), &|n| n.starts_with("hpcrank-7."), 3).is_empty());
    }
}
