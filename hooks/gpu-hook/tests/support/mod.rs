//! Shared pieces of gpu-hook's end-to-end tests: the fake GPU machines of cdi-gen's tests
//! (reused from `cdi-gen/tests/common/mod.rs`, mock NVML included), a small cached
//! busybox + glibc rootfs with a dlopen program, and helpers to run gpu-hook from runc
//! bundles and podman hooks.d. Prerequisites missing make the tests FAIL, never skip.
#![allow(dead_code)]

#[path = "../../../../cdi-gen/tests/common/mod.rs"]
pub mod machine;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e_tests::{require_command, Bundle, Overlay, RunOutput, Scratch};
use serde_json::{json, Value};

pub use machine::{FakeMachine, MachineSpec};

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

fn run(cmd: &mut Command) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

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

/// Builds a fake machine (cdi-gen's fixture) and makes its stub binaries executable.
pub fn build_machine(spec: &MachineSpec) -> FakeMachine {
    use std::os::unix::fs::PermissionsExt;
    let m = FakeMachine::build(spec);
    for e in std::fs::read_dir(m.root.join("usr/bin")).unwrap().flatten() {
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // gpu-hook queries NVML through `cdi-gen nvml-facts` with a scrubbed environment, so
    // the mock finds its machine description beside itself, not in $MOCK_NVML_CONFIG.
    for dir in ["usr/lib/x86_64-linux-gnu", "usr/lib/i386-linux-gnu"] {
        let d = m.root.join(dir);
        if d.is_dir() {
            std::fs::copy(&m.nvml_config, d.join("mock-nvml.conf")).unwrap();
        }
    }
    m
}

/// The cdi-gen binary gpu-hook runs for NVML (`--cdi-gen`).
pub fn cdi_gen_bin() -> PathBuf {
    e2e_tests::hook_bin_dir().join("cdi-gen")
}

/// The gpu-hook binary under test: the one in `$HPC_HOOKS_BIN_DIR` when set (run-all.sh
/// points it at the static builds that are shipped), else the one cargo built for this test.
pub fn gpu_hook_bin() -> PathBuf {
    match std::env::var_os("HPC_HOOKS_BIN_DIR") {
        Some(d) => PathBuf::from(d).join("gpu-hook"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_gpu-hook")),
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

/// OCI hook object running gpu-hook.
pub fn hook_json(args: Vec<String>, env: Vec<String>) -> Value {
    json!({ "path": gpu_hook_bin(), "args": args, "env": env, "timeout": 60 })
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

/// One runc container with gpu-hook at `stage` on a fresh overlay of [`cached_rootfs`].
pub struct Case<'a> {
    pub machine: &'a FakeMachine,
    pub env: Vec<String>,
    pub extra_args: Vec<String>,
    pub script: String,
    pub stage: &'a str,
    /// Changes the image (through the overlay's merged dir) before the run.
    pub prepare: Option<&'a dyn Fn(&Path)>,
    /// Extra hooks (stage, hook object) after gpu-hook.
    pub more_hooks: Vec<(&'a str, serde_json::Value)>,
    /// Leave gpu-hook itself out (for subcommand-only runs).
    pub no_inject: bool,
    /// Changes config.json (capabilities, annotations) before the run.
    pub config: Option<&'a dyn Fn(&mut Value)>,
}

impl<'a> Case<'a> {
    /// A case with `env` in the container; gpu-hook gets `--env-requests always` (the
    /// containers are unprivileged), so the env is a request.
    pub fn new(machine: &'a FakeMachine, env: &[&str], script: &str) -> Case<'a> {
        Case {
            machine,
            env: env.iter().map(|s| s.to_string()).collect(),
            extra_args: vec!["--env-requests".into(), "always".into()],
            config: None,
            script: script.to_string(),
            stage: "createRuntime",
            prepare: None,
            more_hooks: Vec::new(),
            no_inject: false,
        }
    }

    /// Runs the case on an overlay of the cached rootfs; returns the output and the upper dir.
    pub fn run(&self, scratch: &Scratch, name: &str) -> (RunOutput, Overlay) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = &format!(
            "{name}{}",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let rootfs = cached_rootfs();
        let ov = Overlay::new(scratch.path(), name, &rootfs);
        if let Some(p) = self.prepare {
            p(&ov.merged);
        }
        let mut b = Bundle::new(
            scratch.path(),
            &format!("{name}-bundle"),
            &ov.merged,
            &["sh", "-c", &self.script],
        );
        for e in &self.env {
            b.add_env(e);
        }
        if let Some(f) = self.config {
            f(&mut b.config);
        }
        let no_specs = scratch.subdir(&format!("{name}-nospecs"));
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let args = hook_args(self.machine, &no_specs.display().to_string(), &extra);
        let env = hook_env(b.hook_log());
        if !self.no_inject {
            add_raw_hook(&mut b, self.stage, hook_json(args, env));
        }
        for (stage, h) in &self.more_hooks {
            add_raw_hook(&mut b, stage, h.clone());
        }
        let out = b.run_runc();
        (out, ov)
    }
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
