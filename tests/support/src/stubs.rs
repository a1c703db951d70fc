//! gcc-built stub libraries for the fake driver roots: the mock `libnvidia-ml.so.1` (C
//! source in tests/support/mock-nvml) and one-symbol stubs with the real SONAMEs, compiled
//! once per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::output::run;

/// Directory of compiled stubs shared by every machine of this process.
fn stub_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Compiled per process: a directory left by an earlier process with the same pid
        // would hand out stale stubs, so it is emptied first.
        let d = std::env::temp_dir().join(format!("cdi-gen-stubs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// Path of `tests/support/mock-nvml/mock_nvml.c`, the mock NVML's C source.
pub fn mock_nvml_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mock-nvml/mock_nvml.c")
}

/// Compiles (once per process) a stub library with `soname`: the mock NVML for
/// `libnvidia-ml.so.1`, else a stub with `cuInit` and one symbol naming the SONAME.
pub(crate) fn stub(soname: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = stub_dir().join(format!("stub-{soname}"));
    if out.exists() {
        return out;
    }
    let tmp = stub_dir().join(format!("stub-{soname}.tmp"));
    let mut cmd = Command::new("gcc");
    cmd.args([
        "-shared",
        "-fPIC",
        "-O1",
        &format!("-Wl,-soname,{soname}"),
        "-o",
    ])
    .arg(&tmp);
    if soname == "libnvidia-ml.so.1" {
        cmd.arg(mock_nvml_source());
    } else {
        let c = stub_dir().join(format!("{soname}.c"));
        let sym = soname.split('.').next().unwrap().replace('-', "_");
        std::fs::write(
            &c,
            format!("int cuInit(unsigned f) {{ (void)f; return 0; }}\nconst char *{sym}_stub = \"{soname}\";\n"),
        )
        .unwrap();
        cmd.arg(c);
    }
    run(&mut cmd);
    std::fs::rename(&tmp, &out).unwrap();
    out
}
