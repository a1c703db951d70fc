//! The dependency rules of the crates that show the pipeline (issue 10), checked:
//! the static gpu-hook compiles in no NVML and no man-page generator, cdi-gen drags in
//! none of the hooks' runtime, and only hooks-core mounts or creates device nodes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `cargo tree -p PACKAGE -e normal --prefix none`: one line per dependency, as
/// `name vX.Y.Z (...)`.
fn normal_tree(package: &str) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
        ])
        .arg(package)
        .output()
        .expect("cannot run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

/// The crate names of a tree, each once.
fn crate_names(tree: &str) -> Vec<String> {
    let mut names: Vec<String> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn assert_absent(package: &str, forbidden: &[&str], why: &str) {
    let names = crate_names(&normal_tree(package));
    assert!(
        names.iter().any(|n| n == package),
        "cargo tree -p {package} did not list {package} itself: {names:?}"
    );
    let found: Vec<&&str> = forbidden
        .iter()
        .filter(|f| names.iter().any(|n| n == **f))
        .collect();
    assert!(
        found.is_empty(),
        "`cargo tree -p {package} -e normal` lists {found:?}: {why} (see `cargo tree -p {package} -e normal -i CRATE` for the path)"
    );
}

#[test]
fn gpu_hook_has_no_nvml_and_no_man_page_generator() {
    assert_absent(
        "gpu-hook",
        &["nvml-wrapper", "nvml-wrapper-sys", "clap_mangen", "cdi-gen"],
        "the static hook must not compile in NVML (it queries NVML through the cdi-gen \
         helper child: depend on gpu-discover without its `nvml` feature) nor cdi-gen's or \
         xtask's tooling",
    );
}

#[test]
fn cdi_gen_has_none_of_the_hooks_runtime() {
    assert_absent(
        "cdi-gen",
        &["hooks-core", "pathrs", "nix"],
        "cdi-gen reads host facts through hpc-facts and gpu-discover; the hooks' runtime \
         (hooks-core, pathrs, nix) is for hooks that act in a container",
    );
}

#[test]
fn the_facts_crate_stays_small() {
    let names = crate_names(&normal_tree("hpc-facts"));
    let direct_and_below: Vec<&String> = names
        .iter()
        .filter(|n| {
            ![
                "hpc-facts",
                "goblin",
                "log",
                "plain",
                "scroll",
                "scroll_derive",
                "proc-macro2",
                "quote",
                "syn",
                "unicode-ident",
                "memchr",
                "thiserror",
                "thiserror-impl",
            ]
            .contains(&n.as_str())
        })
        .collect();
    assert!(
        direct_and_below.is_empty(),
        "hpc-facts depends on goblin/memchr/thiserror only, but its tree has {direct_and_below:?}"
    );
}

/// A call that mounts, creates a device node or moves a mount, as it appears in code:
/// libc/nix/rustix paths (called, or imported in a `{..}` group), raw syscall numbers,
/// pathrs' mknod (`InodeType::*Device`, `Fifo`).
const PRIVILEGED_CALL: &str = r"\b(?:libc::(?:mount|umount2?|mknod|mknodat|open_tree|move_mount|mount_setattr|fsopen|fsmount)\s*\(|libc::\{[^}]*\b(?:mount|umount2?|mknod|mknodat)\b|nix::mount\b|nix::\{[^}]*\bmount::|nix::sys::stat::mknod|nix::sys::stat::\{[^}]*\bmknod|rustix::mount\b|rustix::fs::mknodat\b|SYS_(?:mount|umount2|open_tree|move_mount|mount_setattr|fsopen|fsmount|mknodat?)\b|InodeType::(?:CharacterDevice|BlockDevice|Fifo)\b)";

/// The `src/` trees of the workspace's crates other than hooks-core and the end-to-end
/// test harness (tests/, benches/ and fuzz targets set up fixtures and are not scanned).
fn shipped_sources() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if name.starts_with('.') || name == "target" || name == "fuzz" || name == "demo" {
                continue;
            }
            let rel = p.strip_prefix(&root).unwrap_or(&p);
            if rel == Path::new("hooks/core") || rel == Path::new("tests/e2e") {
                continue;
            }
            if name == "src" && d.join("Cargo.toml").is_file() {
                collect_rs(&p, &mut out);
            } else if name != "tests" && name != "benches" {
                dirs.push(p);
            }
        }
    }
    out.sort();
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_scan_sees_the_crates() {
    let files = shipped_sources();
    let root = workspace_root();
    for must in [
        "hooks/gpu-hook/src/main.rs",
        "gpu/discover/src/lib.rs",
        "cdi-gen/src/main.rs",
        "launcher/src/main.rs",
    ] {
        assert!(
            files.contains(&root.join(must)),
            "the source scan misses {must}"
        );
    }
    assert!(
        !files.iter().any(|f| f.starts_with(root.join("hooks/core"))),
        "the source scan must leave hooks/core out"
    );
    let re = regex::Regex::new(PRIVILEGED_CALL).unwrap();
    for hit in [
        "libc::mount(a, b, c, d, e)",
        "use nix::mount::{mount, MsFlags};",
        "libc::syscall(libc::SYS_open_tree, fd)",
        "InodeType::CharacterDevice(perm, rdev)",
        "unsafe { libc::mknod(p, m, d) }",
        "let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);",
        "use nix::{mount::MsFlags, sched::unshare};",
        "use nix::sys::stat::{mknod, Mode, SFlag};",
        "use libc::{c_int, mount};",
        "rustix::fs::mknodat(dir, p, k, m, d)",
        "libc::syscall(libc::SYS_mount_setattr, fd)",
    ] {
        assert!(
            re.is_match(hit),
            "{hit:?} is not recognised as a privileged call"
        );
    }
    for miss in [
        "edits.mounts.push(mount(root, host, c, &RO))",
        "// mknod applies the umask",
        "hooks_core::mount::bind(&h, &t)",
        "mount::mount_tmpfs_at(scratch, \"hpc-rank\", \"mode=0700\")",
        "mount::mount_overlay(&lower_opt, &upper, &work, &merged).with_context(|| {",
        "let _ = mount::unmount_path(&merged, true);",
        "use hooks_core::mount;",
        "use libc::{c_int, pid_t};",
    ] {
        assert!(
            !re.is_match(miss),
            "{miss:?} is taken for a privileged call"
        );
    }
}

#[test]
fn only_hooks_core_mounts_or_makes_device_nodes() {
    let re = regex::Regex::new(PRIVILEGED_CALL).unwrap();
    let root = workspace_root();
    let mut hits = Vec::new();
    for f in shipped_sources() {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if re.is_match(line) {
                let rel = f.strip_prefix(&root).unwrap_or(&f);
                hits.push(format!("{}:{}: {}", rel.display(), i + 1, code));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "only hooks-core may mount, mknod, open_tree, move_mount or mount_setattr (the one \
         live engine, hooks_core::engine, behind its Sys seam); call it instead of:\n{}",
        hits.join("\n")
    );
}
