//! cdi-gen's command-line compatibility: nvidia-ctk `cdi generate` flags give the same
//! spec as ours, the consistent environment names (`CDI_GEN_LOG_LEVEL`,
//! `CDI_GEN_DRIVER_ROOT`) and their older aliases, and `list --spec-dir` with `:` lists.

mod common;

use common::bin;
use test_support::{stderr, stdout, FakeMachine, MachineSpec};

/// Runs cdi-gen on `m` with `args`; asserts success; returns (spec, stderr).
fn run_ok(m: &FakeMachine, args: &[&str]) -> (String, String) {
    let o = m.command(&bin()).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "cdi-gen {args:?} failed: {}",
        stderr(&o)
    );
    (stdout(&o), stderr(&o))
}

#[test]
fn nvidia_ctk_flags_give_the_same_spec_as_ours() {
    let m = FakeMachine::build(&MachineSpec::nvidia(2));
    let (ours, _) = run_ok(
        &m,
        &[
            "--vendor",
            "nvidia",
            "--class",
            "gpu",
            "--discovery",
            "nvml",
            "--hook-path",
            "/opt/hooks/gpu-hook",
            "--disable-hook",
            "enable-cuda-compat",
        ],
    );
    assert!(ours.contains("kind: nvidia.com/gpu"), "{ours}");
    assert!(ours.contains("/opt/hooks/gpu-hook"), "{ours}");
    let (ctk, err) = run_ok(
        &m,
        &[
            "--vendor=nvidia.com",
            "--cdi-class",
            "gpu",
            "--mode",
            "nvml",
            "--nvidia-cdi-hook-path",
            "/opt/hooks/gpu-hook",
            "--disable-hooks",
            "enable-cuda-compat",
            "--ldconfig-path",
            "/sbin/ldconfig",
            "--csv.file",
            "/etc/nvidia-container-runtime/host-files-for-container.d/devices.csv",
        ],
    );
    assert_eq!(ours, ctk, "nvidia-ctk's flags give a different spec");
    // --csv.file is a warning (what was asked is not done); --ldconfig-path only info.
    assert!(
        err.contains("WARN --csv.file /etc/nvidia-container-runtime/host-files-for-container.d/devices.csv is ignored: cdi-gen has no CSV (Tegra) mode"),
        "{err}"
    );
    assert!(!err.contains("ldconfig"), "{err}");
    let (_, err) = run_ok(
        &m,
        &["--ldconfig-path", "/sbin/ldconfig", "--log-level", "info"],
    );
    assert!(
        err.contains("INFO --ldconfig-path /sbin/ldconfig is ignored: the spec's update-ldcache hook is gpu-hook"),
        "{err}"
    );

    // The other spellings: --discovery-mode auto, --nvidia-ctk-path, --cdi-vendor.
    let (ours, _) = run_ok(&m, &["--discovery", "auto", "--hook-path", "/x/gpu-hook"]);
    let (ctk, _) = run_ok(
        &m,
        &[
            "--cdi-vendor",
            "nvidia.com",
            "--discovery-mode",
            "auto",
            "--nvidia-ctk-path",
            "/x/gpu-hook",
        ],
    );
    assert_eq!(ours, ctk);
    // A hook path naming NVIDIA's binaries is accepted but warned about.
    let (spec, err) = run_ok(&m, &["--nvidia-ctk-path", "/usr/bin/nvidia-ctk"]);
    assert!(spec.contains("/usr/bin/nvidia-ctk"), "{spec}");
    assert!(
        err.contains("--hook-path /usr/bin/nvidia-ctk: the spec's hooks take gpu-hook's arguments"),
        "{err}"
    );
}

#[test]
fn nvidia_ctk_modes_without_an_equivalent_are_refused_clearly() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    for mode in ["csv", "wsl", "management"] {
        let o = m.command(&bin()).args(["--mode", mode]).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!(
                "nvidia-ctk's discovery mode '{mode}' is not supported by cdi-gen"
            )),
            "{}",
            stderr(&o)
        );
        assert!(stdout(&o).is_empty());
    }
    let o = m
        .command(&bin())
        .args(["--discovery-mode", "bogus"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected auto, nvml or procfs"),
        "{}",
        stderr(&o)
    );
    let o = m
        .command(&bin())
        .args(["--vendor", "intel.com"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn driver_root_and_log_level_from_the_environment() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    let (want, _) = run_ok(&m, &[]);
    // Not FakeMachine::command, which passes --driver-root.
    let base = || {
        let mut c = std::process::Command::new(bin());
        c.arg("--sysfs-root")
            .arg(&m.sys)
            .arg("--procfs-root")
            .arg(&m.proc)
            .env("MOCK_NVML_CONFIG", &m.nvml_config)
            .env_remove("CDI_GEN_LOG")
            .env_remove("CDI_GEN_LOG_LEVEL")
            .env_remove("RUST_LOG");
        c
    };
    let o = base().env("CDI_GEN_DRIVER_ROOT", &m.root).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), want, "CDI_GEN_DRIVER_ROOT is not --driver-root");

    // CDI_GEN_LOG_LEVEL, the older CDI_GEN_LOG, and the flag over both.
    for (var, value) in [
        ("CDI_GEN_LOG_LEVEL", "info"),
        ("CDI_GEN_LOG", "info"),
        ("CDI_GEN_LOG_LEVEL", "1"),
    ] {
        let o = base()
            .env("CDI_GEN_DRIVER_ROOT", &m.root)
            .env(var, value)
            .output()
            .unwrap();
        assert!(o.status.success(), "{var}={value}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("INFO"),
            "{var}={value} did not enable info: {}",
            stderr(&o)
        );
    }
    let o = base()
        .env("CDI_GEN_DRIVER_ROOT", &m.root)
        .env("CDI_GEN_LOG_LEVEL", "info")
        .env("CDI_GEN_LOG", "bogus")
        .args(["--log-level", "off"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "--log-level off must win over the env");
    // An unknown level is warned about, naming where it came from, and `warn` is used
    // (as the hooks and hpc-rank do): never a silent default.
    for (args, var, shown) in [
        (
            &["--log-level", "verbose"][..],
            None,
            "--log-level \"verbose\"",
        ),
        (
            &[][..],
            Some("CDI_GEN_LOG_LEVEL"),
            "CDI_GEN_LOG_LEVEL \"verbose\"",
        ),
        (&[][..], Some("CDI_GEN_LOG"), "CDI_GEN_LOG \"verbose\""),
    ] {
        let mut c = base();
        c.env("CDI_GEN_DRIVER_ROOT", &m.root).args(args);
        if let Some(v) = var {
            c.env(v, "verbose");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        let first = err.lines().next().unwrap_or("");
        assert_eq!(
            first,
            format!("cdi-gen: warning: {shown} is not a log level (off, error, warn, info, debug, trace, or 0-4); using warn")
        );
        assert!(!err.contains("INFO"), "warn is used: {err}");
    }
}

#[test]
fn list_spec_dir_splits_on_colons_and_warns_about_missing_directories() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    let b = d.path().join("b");
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let spec = |kind: &str| {
        format!("cdiVersion: 0.5.0\nkind: {kind}\ndevices:\n- name: '0'\n  containerEdits:\n    deviceNodes:\n    - path: /dev/null\n      hostPath: /dev/null\n")
    };
    std::fs::write(a.join("a.yaml"), spec("example.com/a")).unwrap();
    std::fs::write(b.join("b.yaml"), spec("example.com/b")).unwrap();
    let missing = d.path().join("missing");
    let list = |arg: String| {
        std::process::Command::new(bin())
            .env_remove("CDI_GEN_LOG")
            .env_remove("CDI_GEN_LOG_LEVEL")
            .args(["list", "--spec-dir", &arg])
            .output()
            .unwrap()
    };
    let o = list(format!("{}:{}", a.display(), b.display()));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("example.com/a=0"), "{out}");
    assert!(out.contains("example.com/b=0"), "{out}");
    assert_eq!(stderr(&o), "");

    let o = list(format!("{}:{}::", missing.display(), a.display()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("example.com/a=0"));
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            " WARN spec directory {} does not exist or is not a directory",
            missing.display()
        )
    );
}
