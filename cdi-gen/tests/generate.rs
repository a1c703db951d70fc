//! Golden and behaviour tests of the cdi-gen binary on fake machines (mock NVML, stub
//! driver libraries, mknod'ed nodes, fake procfs/sysfs). Golden files are rewritten with
//! UPDATE_GOLDEN=1. Every generated spec is loaded back and validated with cdi_specs.

mod common;

use std::path::Path;

use common::bin;
use test_support::{stderr, stdout, FakeMachine, MachineSpec};

/// Runs cdi-gen for `m` with `args`; asserts success and returns (spec text, stderr).
fn generate(m: &FakeMachine, args: &[&str]) -> (String, String) {
    let o = m.command(&bin()).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "cdi-gen {args:?} failed: {}",
        stderr(&o)
    );
    let text = stdout(&o);
    check_loads(&text, cdi_specs::Format::Yaml.extension());
    (text, stderr(&o))
}

/// The spec parses strictly and validates; its version is the minimum.
fn check_loads(text: &str, ext: &str) {
    let format = if ext == "json" {
        cdi_specs::Format::Json
    } else {
        cdi_specs::Format::Yaml
    };
    let spec = cdi_specs::parse::from_str(text, format, None).expect("generated spec parses");
    let v = cdi_specs::validate(&spec, None).expect("generated spec validates");
    assert_eq!(v, cdi_specs::minimum_version(&spec).version);
    assert_eq!(
        spec.cdi_version, "0.5.0",
        "podman 4.x must be able to load it"
    );
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n  golden: {a}\n  actual: {b}", i + 1))
            .collect();
        panic!(
            "{} differs from the generated spec (UPDATE_GOLDEN=1 rewrites it):\n{}\n(lengths {} vs {})",
            path.display(),
            diff.join("\n"),
            expected.len(),
            actual.len()
        );
    }
}

/// Runs NVML and procfs discovery; both must give the same spec; returns it.
fn nvml_and_procfs_agree(m: &FakeMachine, args: &[&str]) -> String {
    let (nvml, err) = generate(m, args);
    assert!(!err.contains("WARN"), "unexpected warnings: {err}");
    // Without MOCK_NVML_CONFIG the mock's nvmlInit fails like a host without the driver.
    let o = m
        .command(&bin())
        .args(args)
        .env_remove("MOCK_NVML_CONFIG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("NVML is not usable") && stderr(&o).contains("procfs/sysfs"),
        "the fallback must say which source it used: {}",
        stderr(&o)
    );
    assert_eq!(
        nvml,
        stdout(&o),
        "NVML and procfs/sysfs facts give different specs"
    );
    // Explicit procfs mode too, without any NVML warning.
    let o = m
        .command(&bin())
        .args(args)
        .args(["--discovery", "procfs"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(nvml, stdout(&o));
    m.normalize(&nvml)
}

#[test]
fn one_gpu_golden_nvml_and_procfs() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    let spec = nvml_and_procfs_agree(&m, &[]);
    golden("nvidia-1gpu.yaml", &spec);
}

#[test]
fn eight_gpus_golden_nvml_and_procfs() {
    let m = FakeMachine::build(&MachineSpec::nvidia(8));
    let spec = nvml_and_procfs_agree(&m, &[]);
    // Minor numbers come from NVML/procfs, not the index: GPU 1 has minor 3.
    assert!(
        spec.contains("- name: '1'") || spec.contains("name: \"1\""),
        "{spec}"
    );
    golden("nvidia-8gpu.yaml", &spec);
}

#[test]
fn mig_golden_and_procfs_agree_on_index_names() {
    let m = FakeMachine::build(&MachineSpec::mig(2, 1, 3));
    let (spec, err) = generate(
        &m,
        &[
            "--device-name-strategy",
            "index",
            "--device-name-strategy",
            "uuid",
            "--device-name-strategy",
            "type-index",
        ],
    );
    assert!(!err.contains("WARN"), "{err}");
    let spec = m.normalize(&spec);
    // The MIG GPU is offered through its MIG devices and whole (index and UUID, as
    // nvidia-ctk does).
    assert!(
        spec.contains("MIG-b0000000-aaaa-bbbb-cccc-000000000002"),
        "{spec}"
    );
    for name in [
        "name: GPU-a0000000-1111-2222-3333-000000000000",
        "name: gpu0",
    ] {
        assert!(
            spec.contains(name),
            "a GPU in MIG mode is offered whole: {spec}"
        );
    }
    let cap = test_support::mig_minor(0, 7, None);
    assert!(
        spec.contains(&format!("/dev/nvidia-caps/nvidia-cap{cap}")),
        "{spec}"
    );
    golden("nvidia-mig.yaml", &spec);
    // procfs has no MIG UUIDs: compare index and type-index names.
    nvml_and_procfs_agree(
        &m,
        &[
            "--device-name-strategy",
            "index",
            "--device-name-strategy",
            "type-index",
        ],
    );
}

#[test]
fn amd_golden() {
    let m = FakeMachine::amd(2);
    let o = m
        .command(&bin())
        .args([
            "--vendor",
            "amd",
            "--device-name-strategy",
            "index",
            "--device-name-strategy",
            "uuid",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("WARN"), "{}", stderr(&o));
    let text = stdout(&o);
    check_loads(&text, "yaml");
    let spec = m.normalize(&text);
    assert!(spec.contains("kind: amd.com/gpu"), "{spec}");
    assert!(
        spec.contains("/dev/kfd") && spec.contains("/dev/dri/renderD129"),
        "{spec}"
    );
    golden("amd-2gpu.yaml", &spec);
}

#[test]
fn json_output_file_is_atomic_deterministic_and_0644() {
    use std::os::unix::fs::PermissionsExt;
    let m = FakeMachine::build(&MachineSpec::mig(2, 1, 2));
    let out = m.dir.path().join("out/nvidia.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut texts = Vec::new();
    for _ in 0..2 {
        let o = m
            .command(&bin())
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
        texts.push(std::fs::read_to_string(&out).unwrap());
    }
    assert_eq!(
        texts[0], texts[1],
        "same input must give a byte-identical file"
    );
    assert!(
        texts[0].starts_with('{'),
        "format follows the .json extension"
    );
    check_loads(&texts[0], "json");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file may remain");
    // --format wins over the extension.
    let o = m
        .command(&bin())
        .args(["--format", "yaml"])
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .starts_with("cdiVersion"));
}

#[test]
fn finds_every_driver_file_and_writes_hooks() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    let (spec, _) = generate(&m, &["--hook-path", "/opt/hooks/gpu-hook"]);
    let spec = m.normalize(&spec);
    let v = test_support::DRIVER;
    for want in [
        format!("/usr/lib/x86_64-linux-gnu/libcuda.so.{v}"),
        format!("/usr/lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.{v}"),
        format!("/usr/lib/i386-linux-gnu/libcuda.so.{v}"),
        format!("/usr/lib/x86_64-linux-gnu/libnvidia-glcore.so.{v}"),
        "/usr/bin/nvidia-smi".to_string(),
        "/run/nvidia-persistenced/socket".to_string(),
        format!("/usr/lib/firmware/nvidia/{v}/gsp_ga10x.bin"),
        "/etc/vulkan/icd.d/nvidia_icd.json".to_string(),
        "/usr/share/glvnd/egl_vendor.d/10_nvidia.json".to_string(),
        "/etc/OpenCL/vendors/nvidia.icd".to_string(),
        "/dev/nvidiactl".to_string(),
        "/dev/nvidia-uvm-tools".to_string(),
        "/dev/nvidia-modeset".to_string(),
        "/dev/dri/renderD128".to_string(),
        "/opt/hooks/gpu-hook".to_string(),
        format!("libcuda.so.{v}::/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
        "libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so".to_string(),
        "../card1::/dev/dri/by-path/pci-0000:18:00.0-card".to_string(),
        "update-ldcache".to_string(),
        "NVIDIA_VISIBLE_DEVICES=void".to_string(),
    ] {
        assert!(spec.contains(&want), "missing {want} in:\n{spec}");
    }
    assert!(
        !spec.contains("libfoo"),
        "a non-driver library was injected"
    );
    // Canonical paths: the /lib -> usr/lib symlink does not duplicate mounts.
    assert!(!spec.contains("containerPath: /lib/"), "{spec}");
}

#[test]
fn disabled_hooks_become_soname_mounts() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    let (spec, _) = generate(&m, &["--disable-hook", "all"]);
    assert!(!spec.contains("hooks:"), "{spec}");
    assert!(
        spec.contains("containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.1"),
        "{spec}"
    );
}

#[test]
fn library_search_path_finds_unusual_directories() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    let extra = m.root.join("opt/nvidia/lib");
    std::fs::create_dir_all(&extra).unwrap();
    let name = format!("libnvidia-extra.so.{}", test_support::DRIVER);
    std::fs::write(extra.join(&name), b"").unwrap();
    let (spec, _) = generate(&m, &[]);
    assert!(!spec.contains(&name));
    let (spec, _) = generate(&m, &["--library-search-path", "/opt/nvidia/lib"]);
    assert!(spec.contains(&format!("/opt/nvidia/lib/{name}")), "{spec}");
}

#[test]
fn missing_control_nodes_are_reported_not_dropped() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    std::fs::remove_file(m.root.join("dev/nvidia-uvm-tools")).unwrap();
    let (spec, err) = generate(&m, &[]);
    assert!(err.contains("nvidia-uvm-tools does not exist"), "{err}");
    assert!(
        spec.contains("path: /dev/nvidia-uvm-tools"),
        "kept from /proc/devices: {spec}"
    );
    // Without nvidia-uvm loaded at all, the nodes are left out, with a warning.
    std::fs::remove_file(m.root.join("dev/nvidia-uvm")).unwrap();
    let devices = std::fs::read_to_string(m.proc.join("devices")).unwrap();
    std::fs::write(
        m.proc.join("devices"),
        devices.replace("nvidia-uvm\n", "other\n"),
    )
    .unwrap();
    let (spec, err) = generate(&m, &[]);
    assert!(err.contains("left out"), "{err}");
    assert!(!spec.contains("/dev/nvidia-uvm"), "{spec}");
}

#[test]
fn no_libcuda_is_a_clear_error() {
    let mut s = MachineSpec::nvidia(1);
    s.with_libcuda = false;
    let m = FakeMachine::build(&s);
    let o = m.command(&bin()).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no libcuda.so.550.54.14 in the driver root"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn nvml_init_failure() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    let conf = std::fs::read_to_string(&m.nvml_config).unwrap();
    std::fs::write(&m.nvml_config, format!("{conf}init_error 9\n")).unwrap();
    // --discovery nvml: an error naming NVML and the way out.
    let o = m
        .command(&bin())
        .args(["--discovery", "nvml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("failed to initialize"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--discovery auto"), "{}", stderr(&o));
    // auto: falls back with a warning.
    let o = m.command(&bin()).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("NVML is not usable"), "{}", stderr(&o));
    // A library that is not NVML at all.
    let o = m
        .command(&bin())
        .args([
            "--nvml-lib",
            "/nonexistent/libnvidia-ml.so.1",
            "--discovery",
            "nvml",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("cannot load /nonexistent/libnvidia-ml.so.1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn corrupt_information_files() {
    let m = FakeMachine::build(&MachineSpec::nvidia(2));
    let info = m.proc.join("driver/nvidia/gpus/0000:1a:00.0/information");
    for (bad, want) in [
        (
            "Model: x\nGPU UUID: GPU-1\nBus Location: 0000:1a:00.0\nDevice Minor: lots\n",
            "\"Device Minor\" is \"lots\"",
        ),
        ("\u{0}\u{1}garbage", "\"Device Minor\" is missing"),
        (
            "Model: x\nGPU UUID: nope\nBus Location: 0000:1a:00.0\nDevice Minor: 1\n",
            "not GPU-<uuid>",
        ),
    ] {
        std::fs::write(&info, bad).unwrap();
        let o = m
            .command(&bin())
            .args(["--discovery", "procfs"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&info.display().to_string()) && err.contains(want),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::write(&info, [0xffu8, 0xfe, 0x00]).unwrap();
    let o = m
        .command(&bin())
        .args(["--discovery", "procfs"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("not UTF-8"), "{}", stderr(&o));
    // Corrupt mig-minors: MIG devices are left out with a warning, not a crash; the
    // MIG-enabled GPU is still offered whole.
    let m = FakeMachine::build(&MachineSpec::mig(1, 1, 2));
    std::fs::write(
        m.proc.join("driver/nvidia-caps/mig-minors"),
        "gpu0/gi/access x\n\u{7f}\n",
    )
    .unwrap();
    let o = m.command(&bin()).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has no capability minor"),
        "{}",
        stderr(&o)
    );
    let spec = stdout(&o);
    assert!(
        spec.contains("name: '0'") || spec.contains("name: \"0\""),
        "{spec}"
    );
    assert!(
        !spec.contains("name: '0:0'") && !spec.contains("MIG-"),
        "{spec}"
    );
}

#[test]
fn no_gpus_and_no_driver() {
    let m = FakeMachine::build(&MachineSpec::nvidia(0));
    let o = m.command(&bin()).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("no NVIDIA GPU found (NVML reports none)"),
        "{}",
        stderr(&o)
    );
    let o = std::process::Command::new(bin())
        .arg("--driver-root")
        .arg(&m.root)
        .arg("--procfs-root")
        .arg(m.dir.path().join("nothing"))
        .env_remove("MOCK_NVML_CONFIG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(
        err.contains("cannot read") && err.contains("NVML was not usable either"),
        "{err}"
    );
}

#[test]
fn spec_version_too_old_names_the_field() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    let o = m
        .command(&bin())
        .args(["--spec-version", "0.4.0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs cdiVersion 0.5.0"),
        "{}",
        stderr(&o)
    );
    let (spec, _) = {
        let o = m
            .command(&bin())
            .args(["--spec-version", "0.6.0"])
            .output()
            .unwrap();
        assert!(o.status.success());
        (stdout(&o), ())
    };
    assert!(spec.starts_with("cdiVersion: \"0.6.0\""), "{spec}");
    let o = m
        .command(&bin())
        .args(["--spec-version", "9.9.9"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn validate_and_list() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good.yaml");
    std::fs::write(&good, "cdiVersion: 0.5.0\nkind: example.com/gpu\ndevices:\n- name: '0'\n  containerEdits:\n    deviceNodes:\n    - path: /dev/null\n      hostPath: /dev/null\n").unwrap();
    let old = d.path().join("old.yaml");
    std::fs::write(&old, "cdiVersion: 0.3.0\nkind: example.com/gpu\ndevices:\n- name: x\n  containerEdits:\n    deviceNodes:\n    - path: /dev/null\n      hostPath: /dev/null\n").unwrap();
    let new = d.path().join("new.json");
    std::fs::write(&new, r#"{"cdiVersion":"0.7.0","kind":"example.com/net","devices":[{"name":"a","containerEdits":{"additionalGids":[5]}}]}"#).unwrap();
    let needs_new = d.path().join("needs.json");
    std::fs::write(&needs_new, r#"{"cdiVersion":"0.5.0","kind":"example.com/net","devices":[{"name":"a","containerEdits":{"additionalGids":[5]}}]}"#).unwrap();
    let run = |args: &[&Path], extra: &[&str]| {
        let mut c = std::process::Command::new(bin());
        c.arg("validate").args(extra).args(args);
        c.output().unwrap()
    };
    let o = run(&[&good], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("ok: cdiVersion 0.5.0"));
    let o = run(&[&good, &old], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("needs cdiVersion 0.5.0, declares 0.3.0"),
        "{}",
        stderr(&o)
    );
    let o = run(&[&needs_new], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("needs cdiVersion 0.7.0, declares 0.5.0"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("podman 4.x accepts at most 0.5.0"),
        "{}",
        stderr(&o)
    );
    let o = run(&[&new], &[]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("podman 4.x accepts at most 0.5.0"),
        "{}",
        stderr(&o)
    );
    let o = run(&[&new], &["--max-version", "0.5.0"]);
    assert_eq!(o.status.code(), Some(1));
    // list: good devices and every bad file with its reason; unreadable files too.
    let unknown = d.path().join("unknown.yaml");
    std::fs::write(
        &unknown,
        "cdiVersion: 0.5.0\nkind: a.com/b\nbogus: 1\ndevices: []\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(d.path().join("gone"), d.path().join("dangling.yaml")).unwrap();
    std::fs::write(d.path().join("ignored.yml"), "x").unwrap();
    let o = std::process::Command::new(bin())
        .arg("list")
        .arg("--spec-dir")
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(out.contains("example.com/gpu=0"), "{out}");
    assert!(
        out.contains("example.com/net=a") && out.contains("podman 4.x accepts at most 0.5.0"),
        "{out}"
    );
    assert!(err.contains("bogus"), "{err}");
    assert!(err.contains("dangling.yaml"), "{err}");
    assert!(
        err.contains("needs cdiVersion 0.5.0, declares 0.3.0"),
        "{err}"
    );
    assert!(!err.contains("ignored.yml"), "{err}");
}

#[test]
fn warns_about_nodes_ordinary_users_cannot_open() {
    let m = FakeMachine::build(&MachineSpec::nvidia(1));
    let (_, err) = generate(&m, &[]);
    assert!(
        !err.contains("not accessible to ordinary users"),
        "0644 nodes: no warning: {err}"
    );
    let node = m.root.join("dev/nvidia0");
    std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o660)).unwrap();
    let (_, err) = generate(&m, &[]);
    let want = format!(
        "device node {} (mode 0660, uid 0 gid 0) is not accessible to ordinary users: rootless containers (rootless podman --device) bind it but cannot open it; give users access (the NVIDIA driver's default is 0666: NVreg_DeviceFileMode, NVreg_DeviceFileGID) if rootless containers should use it",
        node.display()
    );
    assert_eq!(
        err.matches("not accessible to ordinary users").count(),
        1,
        "one warning, for nvidia0 only: {err}"
    );
    assert!(err.contains(&want), "{err}");
}
