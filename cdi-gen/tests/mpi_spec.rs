//! `cdi-gen mpi` (issue 14): the specs of the CDI devices hpc-hooks.io/mpi=host and
//! hpc-hooks.io/glibc=host, against gcc-built stub libraries (golden files, which
//! `cdi_oracle.rs` also loads in the `container-device-interface` crate) and against this
//! machine's MPICH (discovery, `list`, `validate --max-version 0.5.0` for podman 4.3).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use test_support::{check_golden, gcc_shared, stderr, stdout};

fn cdi_gen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cdi-gen"))
}

fn ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    o
}

/// A host MPI of stubs: libmpich.so.12 -> libmpich.so.12.2.2 and libfabric.so.1.
fn stub_mpi(dir: &Path) -> (PathBuf, PathBuf) {
    gcc_shared(
        "int MPI_Init(int *c, char ***v) { (void)c; (void)v; return 0; }\n",
        &dir.join("libmpich.so.12.2.2"),
        "libmpich.so.12",
    );
    std::os::unix::fs::symlink("libmpich.so.12.2.2", dir.join("libmpich.so.12")).unwrap();
    gcc_shared(
        "int fi_getinfo(void) { return 0; }\n",
        &dir.join("libfabric.so.1.18.0"),
        "libfabric.so.1",
    );
    std::os::unix::fs::symlink("libfabric.so.1.18.0", dir.join("libfabric.so.1")).unwrap();
    (dir.join("libmpich.so.12"), dir.join("libfabric.so.1"))
}

#[test]
fn mpi_and_glibc_specs_golden() {
    let t = tempfile::tempdir().unwrap();
    let host = t.path().join("host");
    let out = t.path().join("cdi");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let host = host.canonicalize().unwrap();
    let (mpich, fabric) = stub_mpi(&host);
    ok(
        cdi_gen()
            .arg("mpi")
            .arg("--mpi-libs")
            .arg(&mpich)
            .arg("--mpi-dependency-libs")
            .arg(&fabric)
            .args(["--bind-mounts", "", "--hook-log-level", "info"])
            .arg("--output")
            .arg(out.join("hpc-hooks-mpi.yaml"))
            .output()
            .unwrap(),
        "cdi-gen mpi",
    );
    // Two files: CDI allows one kind per spec; the glibc spec goes beside the MPI one.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["hpc-hooks-glibc.yaml", "hpc-hooks-mpi.yaml"]);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let host_s = host.display().to_string();
    let read = |n: &str| {
        std::fs::read_to_string(out.join(n))
            .unwrap()
            .replace(&host_s, "/opt/host-mpi")
    };
    check_golden(
        &golden,
        "hpc-hooks-mpi",
        include_str!("golden/hpc-hooks-mpi.yaml"),
        &read("hpc-hooks-mpi.yaml"),
    );
    check_golden(
        &golden,
        "hpc-hooks-glibc",
        include_str!("golden/hpc-hooks-glibc.yaml"),
        &read("hpc-hooks-glibc.yaml"),
    );
    // Both load in our registry as podman 4.3 (CDI 0.5.x) would: no newer field.
    let o = ok(
        cdi_gen()
            .args(["validate", "--max-version", "0.5.0"])
            .arg(out.join("hpc-hooks-mpi.yaml"))
            .arg(out.join("hpc-hooks-glibc.yaml"))
            .output()
            .unwrap(),
        "cdi-gen validate --max-version 0.5.0",
    );
    drop(o);
    // `cdi-gen list` shows both devices.
    let o = ok(
        cdi_gen()
            .arg("list")
            .arg("--spec-dir")
            .arg(&out)
            .output()
            .unwrap(),
        "cdi-gen list",
    );
    let listed = stdout(&o);
    assert!(listed.contains("hpc-hooks.io/mpi=host"), "{listed}");
    assert!(listed.contains("hpc-hooks.io/glibc=host"), "{listed}");
}

fn strs(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn hooks_get_an_explicit_env_and_their_cdi_arguments() {
    let t = tempfile::tempdir().unwrap();
    let (mpich, fabric) = stub_mpi(t.path());
    let o = ok(
        cdi_gen()
            .arg("mpi")
            .arg("--mpi-libs")
            .arg(&mpich)
            .arg("--mpi-dependency-libs")
            .arg(&fabric)
            .args([
                "--format",
                "json",
                "--mode",
                "hybrid",
                "--hook-dir",
                "/opt/h",
            ])
            .output()
            .unwrap(),
        "cdi-gen mpi to stdout",
    );
    // Without --output: the MPI spec, then the glibc spec.
    let text = stdout(&o);
    let mut docs = serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>();
    let mpi = docs.next().unwrap().unwrap();
    let glibc = docs.next().unwrap().unwrap();
    assert!(docs.next().is_none());
    let hook = &mpi["devices"][0]["containerEdits"]["hooks"][0];
    assert_eq!(hook["hookName"], "createContainer");
    assert_eq!(hook["path"], "/opt/h/mpi-hook");
    assert_eq!(
        strs(&hook["args"])[0..4],
        ["mpi-hook", "--cdi", "--mode", "hybrid"]
    );
    let env = strs(&hook["env"]);
    assert_eq!(
        env[0],
        format!("MPI_LIBS={}", mpich.display()),
        "the hook's env is the admin's, never the container's"
    );
    let ghook = &glibc["devices"][0]["containerEdits"]["hooks"][0];
    assert_eq!(ghook["path"], "/opt/h/glibc-hook");
    assert_eq!(strs(&ghook["args"])[0..2], ["glibc-hook", "--cdi"]);
    assert!(
        !ghook["env"].as_array().unwrap().is_empty(),
        "an empty env would hand the hook the container's environment"
    );
    assert_eq!(
        glibc["devices"][0]["containerEdits"]["env"][0],
        "HPC_HOOKS_CDI_GLIBC=host"
    );
}

#[test]
fn host_mpich_is_discovered() {
    let o = ok(
        cdi_gen().arg("mpi").output().unwrap(),
        "cdi-gen mpi on this machine (needs the mpich package)",
    );
    let text = stdout(&o);
    assert!(
        text.contains("MPI_LIBS=/lib/x86_64-linux-gnu/libmpich.so.12")
            || text.contains("MPI_LIBS=/usr/lib/x86_64-linux-gnu/libmpich.so.12"),
        "{text}"
    );
    assert!(
        text.contains("containerPath: /run/hpc-hooks-staging/mpi/libmpich.so.12"),
        "{text}"
    );
}

#[test]
fn errors_name_the_object_and_the_way_out() {
    let o = cdi_gen()
        .args(["mpi", "--mpi-libs", "/nonexistent/libmpich.so.12"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--mpi-libs: /nonexistent/libmpich.so.12 does not exist on this node"),
        "{}",
        stderr(&o)
    );
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("ld.so.cache");
    std::fs::write(&cache, b"").unwrap();
    let o = cdi_gen()
        .args(["mpi", "--ld-cache"])
        .arg(&cache)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "cannot read the host's loader cache {}",
            cache.display()
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn auto_is_the_default() {
    let plain = ok(cdi_gen().arg("mpi").output().unwrap(), "cdi-gen mpi");
    let auto = ok(
        cdi_gen()
            .args(["mpi", "--mpi-libs", "auto", "--mpi-dependency-libs", "auto"])
            .args(["--bind-mounts", "auto"])
            .output()
            .unwrap(),
        "cdi-gen mpi with auto",
    );
    assert_eq!(stdout(&plain), stdout(&auto));
}

/// The refresh unit's command line, with its default Environment= (the conf file's
/// defaults) expanded as systemd does, runs and writes both specs.
#[test]
fn the_refresh_units_command_line_writes_both_specs() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/systemd/cdi-gen-mpi-refresh.service"),
    )
    .unwrap();
    let mut vars = std::collections::BTreeMap::new();
    for l in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        for kv in l.split_whitespace() {
            let (k, v) = kv.split_once('=').unwrap();
            vars.insert(format!("${{{k}}}"), v.to_string());
        }
    }
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().display().to_string();
    let argv: Vec<String> = exec
        .split_whitespace()
        .map(|w| {
            vars.get(w)
                .cloned()
                .unwrap_or_else(|| w.replace("/var/run/cdi", &dir))
        })
        .collect();
    assert_eq!(argv[0], "/usr/bin/cdi-gen");
    assert!(!argv.iter().any(|a| a.contains("${")), "{argv:?}");
    ok(
        cdi_gen().args(&argv[1..]).output().unwrap(),
        "the unit's ExecStart",
    );
    for f in ["hpc-hooks-mpi.yaml", "hpc-hooks-glibc.yaml"] {
        assert!(t.path().join(f).is_file(), "{f} not written");
    }
}
