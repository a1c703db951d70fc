//! What gpu-hook's container tests put around a fake machine: a small cached busybox +
//! glibc rootfs with dlopen programs, gpu-hook's arguments, environment and OCI hook object,
//! and readers of what the container saw (device node listings, hook logs).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e_tests::{require_command, Bundle, Scratch};
use serde_json::{json, Value};

use crate::machine::FakeMachine;
use crate::output::run;

/// dlopen()s each argument and prints `ok NAME` or the loader error; exit 1 on failure.
pub const DLOPEN_PROG: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        void *h = dlopen(argv[i], RTLD_NOW);
        if (!h) { printf("FAIL %s: %s\n", argv[i], dlerror()); rc = 1; continue; }
        int (*cu_init)(unsigned) = (int (*)(unsigned))dlsym(h, "cuInit");
        printf("ok %s%s\n", argv[i], cu_init ? " cuInit" : "");
    }
    return rc;
}
"#;

/// Same, resolving `libcuda.so.1` and printing the file the loader picked (dlinfo).
pub const WHICH_PROG: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
int main(int argc, char **argv) {
    const char *lib = argc > 1 ? argv[1] : "libcuda.so.1";
    void *h = dlopen(lib, RTLD_NOW);
    if (!h) { printf("FAIL %s: %s\n", lib, dlerror()); return 1; }
    struct link_map *m = 0;
    if (dlinfo(h, RTLD_DI_LINKMAP, &m) != 0 || !m) { printf("FAIL dlinfo\n"); return 1; }
    printf("resolved %s -> %s\n", lib, m->l_name);
    return 0;
}
"#;
/// A busybox-static rootfs with the test programs, the host's libc and loader and an
/// ld.so.cache (`ldconfig -r`), built once and cached under /var/cache/hpc-hooks-tests
/// by a hash of its recipe. Never modified: containers run on overlays of it.
pub fn cached_rootfs() -> PathBuf {
    require_command("gcc");
    require_command("ldconfig");
    let mut h = DefaultHasher::new();
    DLOPEN_PROG.hash(&mut h);
    WHICH_PROG.hash(&mut h);
    "recipe-v1: busybox-static, gpu-dlopen, gpu-which, libc+ld, ldconfig -r".hash(&mut h);
    let bb = std::fs::metadata("/bin/busybox")
        .expect("PREREQUISITE MISSING: /bin/busybox (apt-get install busybox-static)");
    (bb.len(), bb.modified().ok()).hash(&mut h);
    let dir = PathBuf::from(format!(
        "/var/cache/hpc-hooks-tests/gpu-hook-rootfs-{:016x}",
        h.finish()
    ));
    if dir.join(".complete").exists() {
        return dir;
    }
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "etc",
        "tmp",
        "run",
        "usr/lib/x86_64-linux-gnu",
        "usr/bin",
    ] {
        std::fs::create_dir_all(tmp.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", tmp.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "stat", "ls", "cat", "echo", "readlink", "wc", "grep", "env", "test", "[", "true",
        "mount",
    ] {
        std::os::unix::fs::symlink("busybox", tmp.join("bin").join(applet)).unwrap();
    }
    let mut libs = Vec::new();
    for (name, src) in [("gpu-dlopen", DLOPEN_PROG), ("gpu-which", WHICH_PROG)] {
        let c = tmp.join(format!("{name}.c"));
        std::fs::write(&c, src).unwrap();
        let prog = tmp.join("bin").join(name);
        run(Command::new("gcc")
            .arg("-O1")
            .arg("-o")
            .arg(&prog)
            .arg(&c)
            .arg("-ldl"));
        std::fs::remove_file(&c).unwrap();
        let out = run(Command::new("ldd").arg(&prog));
        libs.extend(
            out.lines()
                .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
                .map(PathBuf::from),
        );
    }
    for lib in libs {
        let dst = tmp.join(lib.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&lib, &dst).unwrap();
    }
    std::fs::write(tmp.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    std::fs::write(tmp.join("etc/ld.so.conf"), "/usr/lib/x86_64-linux-gnu\n").unwrap();
    run(Command::new("ldconfig").arg("-r").arg(&tmp));
    std::fs::write(tmp.join(".complete"), "").unwrap();
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => dir,
        Err(_) if dir.join(".complete").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            dir
        }
        Err(e) => panic!("cannot install {}: {e}", dir.display()),
    }
}

/// The cdi-gen binary gpu-hook runs for NVML (`--cdi-gen`).
pub fn cdi_gen_bin() -> PathBuf {
    e2e_tests::hook_bin_dir().join("cdi-gen")
}

/// A binary under test: the one in `$HPC_HOOKS_BIN_DIR` when set (run-all.sh points it at
/// the static builds that are shipped), else `cargo_built`, the one cargo built for the
/// calling test (its `env!("CARGO_BIN_EXE_<name>")`).
pub fn hook_under_test(name: &str, cargo_built: &str) -> PathBuf {
    match std::env::var_os("HPC_HOOKS_BIN_DIR") {
        Some(d) => PathBuf::from(d).join(name),
        None => PathBuf::from(cargo_built),
    }
}

/// gpu-hook's arguments for a fake machine (live discovery unless spec dirs are given).
pub fn hook_args(m: &FakeMachine, spec_dirs: &str, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "gpu-hook".to_string(),
        "--driver-root".into(),
        m.root.display().to_string(),
        "--sysfs-root".into(),
        m.sys.display().to_string(),
        "--procfs-root".into(),
        m.proc.display().to_string(),
        "--spec-dirs".into(),
        spec_dirs.to_string(),
        "--cdi-gen".into(),
        cdi_gen_bin().display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// gpu-hook's environment for a fake machine.
pub fn hook_env(log: &Path) -> Vec<String> {
    vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        "HPC_HOOKS_LOG_LEVEL=debug".into(),
        format!("HPC_HOOKS_LOG_FILE={}", log.display()),
    ]
}

/// OCI hook object running the hook binary `hook`.
pub fn hook_object(hook: &Path, args: Vec<String>, env: Vec<String>) -> Value {
    json!({ "path": hook, "args": args, "env": env, "timeout": 60 })
}

/// Appends a raw hook object to a bundle at `stage`.
pub fn add_raw_hook(b: &mut Bundle, stage: &str, hook: Value) {
    if !b.config["hooks"].is_object() {
        b.config["hooks"] = json!({});
    }
    if !b.config["hooks"][stage].is_array() {
        b.config["hooks"][stage] = json!([]);
    }
    b.config["hooks"][stage].as_array_mut().unwrap().push(hook);
}

/// Parses `stat -c '%n %F %t %T %a'` lines: path -> (type, major, minor, mode).
pub fn parse_stat(out: &str) -> std::collections::BTreeMap<String, (String, u32, u32, String)> {
    let mut m = std::collections::BTreeMap::new();
    for l in out.lines() {
        let Some(rest) = l.strip_prefix("NODE ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // busybox prints "character special file" (3 words).
        if f.len() < 5 {
            continue;
        }
        let n = f.len();
        let major = u32::from_str_radix(f[n - 3], 16).unwrap();
        let minor = u32::from_str_radix(f[n - 2], 16).unwrap();
        m.insert(
            f[0].to_string(),
            (f[1..n - 3].join(" "), major, minor, f[n - 1].to_string()),
        );
    }
    m
}

/// Shell snippet printing every GPU node as `NODE path type major minor mode`.
pub const LIST_NODES: &str = "for f in /dev/nvidia* /dev/nvidia-caps/* /dev/dri/* /dev/kfd; do [ -e \"$f\" ] && [ ! -d \"$f\" ] && stat -c 'NODE %n %F %t %T %a' \"$f\"; done; true";

/// Puts a stub compat `libcuda.so.<version>` (and its SONAME link) into the image.
pub fn add_compat(merged: &Path, version: &str) {
    let dir = merged.join("usr/local/cuda/compat");
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("stub.c");
    std::fs::write(
        &c,
        "int cuInit(unsigned f) { (void)f; return 0; }\nconst char *compat_stub = \"compat\";\n",
    )
    .unwrap();
    let lib = dir.join(format!("libcuda.so.{version}"));
    let st = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"])
        .arg(&lib)
        .arg(&c)
        .status()
        .unwrap();
    assert!(st.success(), "gcc compat stub");
    std::fs::remove_file(&c).unwrap();
    std::os::unix::fs::symlink(format!("libcuda.so.{version}"), dir.join("libcuda.so.1")).unwrap();
}

/// The hook log of the last case named `name` (names get a counter suffix).
pub fn out_log(scratch: &Scratch, name: &str) -> std::path::PathBuf {
    let mut found: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(name) && n.ends_with("-bundle")
        })
        .collect();
    found.sort();
    found.pop().unwrap_or_default().join("hooks.log")
}
