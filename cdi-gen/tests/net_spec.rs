//! `cdi-gen net` (issue 15): the spec of the CDI device hpc-hooks.io/net=host and the
//! `--print-config` lines hpc-hooks-configure reads, against this machine's network
//! stack (Debian 12: libfabric 1.17, UCX 1.13, MPICH and Open MPI) and fake device nodes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use test_support::{stderr, stdout};

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

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn file_names(list: &str) -> Vec<String> {
    list.split(':')
        .filter(|p| !p.is_empty())
        .map(|p| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// `--print-config` on this machine: the four lines, in order, and nothing else.
fn print_config(extra: &[&str]) -> Vec<(String, String)> {
    let o = ok(
        cdi_gen()
            .args(["net", "--print-config"])
            .args(extra)
            .output()
            .unwrap(),
        "cdi-gen net --print-config",
    );
    let text = stdout(&o);
    let lines: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    let keys: Vec<&str> = lines.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["NET_LIBS", "NET_DEPENDENCY_LIBS", "NET_DIRS", "NET_DEVICES"],
        "{text}"
    );
    assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{text:?}");
    lines
}

#[test]
fn print_config_on_this_host() {
    // MPICH links libucp; Open MPI's mca_mtl_ofi.so links libfabric (test prerequisites:
    // mpich, openmpi-bin, libfabric1, libucx0).
    let c = print_config(&[]);
    assert_eq!(
        file_names(&c[0].1),
        [
            "libfabric.so.1",
            "libucp.so.0",
            "libuct.so.0",
            "libucs.so.0",
            "libucm.so.0"
        ],
        "{c:?}"
    );
    let deps = file_names(&c[1].1);
    for want in ["libibverbs.so.1", "librdmacm.so.1", "libnuma.so.1"] {
        assert!(deps.iter().any(|d| d == want), "{want}: {deps:?}");
    }
    assert!(
        !deps
            .iter()
            .any(|d| d.starts_with("libc.so") || d.starts_with("libucp")),
        "{deps:?}"
    );
    assert_eq!(
        c[2].1,
        "/usr/lib/x86_64-linux-gnu/ucx:/usr/lib/x86_64-linux-gnu/libibverbs:/etc/libibverbs.d"
    );
    for p in c
        .iter()
        .flat_map(|(_, v)| v.split(':'))
        .filter(|p| !p.is_empty())
    {
        assert!(Path::new(p).exists(), "{p} does not exist: {c:?}");
    }
    // `auto` is the same as the flag left out.
    let auto = print_config(&[
        "--net-libs",
        "auto",
        "--net-dependency-libs",
        "auto",
        "--net-dirs",
        "auto",
        "--net-devices",
        "auto",
        "--mpi-libs",
        "auto",
    ]);
    assert_eq!(auto, c);
}

#[test]
fn given_values_are_kept_and_the_rest_derived_from_net_libs() {
    // MPICH alone links UCX, not libfabric.
    let c = print_config(&["--mpi-libs", "/lib/x86_64-linux-gnu/libmpich.so.12"]);
    assert_eq!(
        file_names(&c[0].1),
        ["libucp.so.0", "libuct.so.0", "libucs.so.0", "libucm.so.0"]
    );
    // A given NET_LIBS: its dependencies and directories follow from it.
    let c = print_config(&["--net-libs", "/lib/x86_64-linux-gnu/libfabric.so.1"]);
    assert_eq!(c[0].1, "/lib/x86_64-linux-gnu/libfabric.so.1");
    assert!(
        file_names(&c[1].1).contains(&"libefa.so.1".to_string()),
        "{c:?}"
    );
    assert!(!c[2].1.contains("/ucx"), "{c:?}");
    // Empty given values stay empty.
    let c = print_config(&[
        "--net-libs",
        "",
        "--net-dependency-libs",
        "",
        "--net-dirs",
        "",
        "--net-devices",
        "",
    ]);
    assert!(c.iter().all(|(_, v)| v.is_empty()), "{c:?}");
}

fn mknod(p: &Path, major: u32, minor: u32) {
    let ok = Command::new("mknod")
        .arg(p)
        .args(["c", &major.to_string(), &minor.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mknod {} (the tests run as root)", p.display());
}

#[test]
fn the_spec_stages_libraries_binds_dirs_and_has_device_nodes_and_one_hook() {
    let t = tempfile::tempdir().unwrap();
    let dev = t.path().join("dev");
    std::fs::create_dir_all(dev.join("infiniband")).unwrap();
    mknod(&dev.join("infiniband/uverbs0"), 231, 192);
    mknod(&dev.join("infiniband/rdma_cm"), 10, 58);
    mknod(&dev.join("cxi0"), 1, 3);
    let nccl = t.path().join("nccl");
    std::fs::create_dir(&nccl).unwrap();
    let out = t.path().join("hpc-hooks-net.json");
    ok(
        cdi_gen()
            .arg("net")
            .arg("--dev-root")
            .arg(&dev)
            .arg("--nccl-plugin-dir")
            .arg(&nccl)
            .args(["--nccl-plugin-mismatch", "refuse", "--hook-dir", "/opt/h"])
            .args(["--hook-log-level", "info", "--output"])
            .arg(&out)
            .output()
            .unwrap(),
        "cdi-gen net --output",
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(spec["kind"], "hpc-hooks.io/net");
    assert_eq!(spec["devices"].as_array().unwrap().len(), 1);
    let device = &spec["devices"][0];
    assert_eq!(device["name"], "host");
    let edits = &device["containerEdits"];

    // The hook: mpi-hook --cdi --net-only with the detected values and the NCCL settings.
    let hooks = edits["hooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let hook = &hooks[0];
    assert_eq!(hook["hookName"], "createContainer");
    assert_eq!(hook["path"], "/opt/h/mpi-hook");
    assert_eq!(
        strs(&hook["args"]),
        [
            "mpi-hook",
            "--cdi",
            "--net-only",
            "--log-file",
            "/var/log/hpc-hooks.log",
            "--log-level",
            "info"
        ]
    );
    let config = print_config(&["--dev-root", dev.to_str().unwrap()]);
    let mut want: Vec<String> = config.iter().map(|(k, v)| format!("{k}={v}")).collect();
    want.push(format!("NCCL_PLUGIN_DIR={}", nccl.display()));
    want.push("NCCL_PLUGIN_MISMATCH=refuse".into());
    assert_eq!(strs(&hook["env"]), want, "the hook's env is explicit");
    assert_eq!(
        config[3].1,
        format!(
            "{}:{}",
            dev.join("infiniband").display(),
            dev.join("cxi0").display()
        )
    );

    // Device nodes: the directory's nodes (sorted) and the node, with their numbers.
    let nodes: Vec<(String, String, i64, i64)> = edits["deviceNodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["path"].as_str().unwrap().to_string(),
                n["type"].as_str().unwrap().to_string(),
                n["major"].as_i64().unwrap(),
                n["minor"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut want_nodes = vec![
        (dev.join("infiniband/rdma_cm"), 10, 58),
        (dev.join("infiniband/uverbs0"), 231, 192),
        (dev.join("cxi0"), 1, 3),
    ]
    .into_iter()
    .map(|(p, ma, mi)| (p.display().to_string(), "c".to_string(), ma, mi))
    .collect::<Vec<_>>();
    let mut got_nodes = nodes.clone();
    got_nodes.sort();
    want_nodes.sort();
    assert_eq!(got_nodes, want_nodes);

    // Mounts: every library staged read-only by file name (its real file), every
    // directory bound read-only at its path.
    let mounts: Vec<(String, String, Vec<String>)> = edits["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["hostPath"].as_str().unwrap().to_string(),
                m["containerPath"].as_str().unwrap().to_string(),
                strs(&m["options"]),
            )
        })
        .collect();
    let ro = ["ro", "nosuid", "nodev", "bind"].map(String::from).to_vec();
    for lib in config[0].1.split(':').chain(config[1].1.split(':')) {
        let real = std::fs::canonicalize(lib).unwrap();
        let staged = format!(
            "/run/hpc-hooks-staging/net/{}",
            Path::new(lib).file_name().unwrap().to_string_lossy()
        );
        assert!(
            mounts.contains(&(real.display().to_string(), staged.clone(), ro.clone())),
            "{lib} not staged at {staged}: {mounts:?}"
        );
    }
    for d in config[2].1.split(':') {
        assert!(
            mounts.contains(&(d.to_string(), d.to_string(), ro.clone())),
            "{d} not bound: {mounts:?}"
        );
    }
    let libs = config[0].1.split(':').count() + config[1].1.split(':').count();
    assert_eq!(mounts.len(), libs + config[2].1.split(':').count());

    // It loads as podman 4.3 (CDI 0.5.x) would, and `list` shows the device.
    ok(
        cdi_gen()
            .args(["validate", "--max-version", "0.5.0"])
            .arg(&out)
            .output()
            .unwrap(),
        "cdi-gen validate --max-version 0.5.0",
    );
    let o = ok(
        cdi_gen()
            .arg("list")
            .arg("--spec-dir")
            .arg(t.path())
            .output()
            .unwrap(),
        "cdi-gen list",
    );
    assert!(
        stdout(&o).contains("hpc-hooks.io/net=host"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn yaml_to_standard_output_by_default() {
    let o = ok(
        cdi_gen()
            .args(["net", "--net-devices", ""])
            .output()
            .unwrap(),
        "cdi-gen net",
    );
    let text = stdout(&o);
    assert!(text.contains("kind: hpc-hooks.io/net"), "{text}");
    assert!(
        text.contains("containerPath: /run/hpc-hooks-staging/net/libfabric.so.1"),
        "{text}"
    );
    assert!(text.contains("- --net-only"), "{text}");
}

#[test]
fn errors_name_the_object_and_the_way_out() {
    let o = cdi_gen()
        .args(["net", "--net-libs", "/nonexistent/libfabric.so.1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--net-libs: /nonexistent/libfabric.so.1 does not exist on this node"),
        "{}",
        stderr(&o)
    );
    let o = cdi_gen()
        .args(["net", "--print-config", "--net-dirs", "relative/ucx"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--net-dirs: relative/ucx is not an absolute path"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty(), "nothing printed on failure");
    let t = tempfile::tempdir().unwrap();
    let cache: PathBuf = t.path().join("ld.so.cache");
    std::fs::write(&cache, b"").unwrap();
    let o = cdi_gen()
        .args(["net", "--print-config", "--ld-cache"])
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
    // Nothing to carry: no spec (mpi-hook would refuse the device), exit 3.
    let o = cdi_gen()
        .args(["net", "--net-libs", "", "--net-devices", ""])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no host network stack found: no libfabric.so.1 or UCX library in the host's loader cache /etc/ld.so.cache and no fabric device under /dev; install libfabric or UCX"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty(), "no spec written");
    // Every value given: no cache is read.
    ok(
        cdi_gen()
            .args(["net", "--print-config", "--ld-cache"])
            .arg(&cache)
            .args([
                "--net-libs",
                "",
                "--net-dependency-libs",
                "",
                "--net-dirs",
                "",
                "--net-devices",
                "",
            ])
            .output()
            .unwrap(),
        "cdi-gen net with every value given",
    );
}
