//! gpu-hook's planning against fixture trees, as an unprivileged user: a CDI spec for a
//! fake driver root, an image with CUDA forward-compat libraries, and requests with
//! different capabilities, each compared with a golden plan (edits as YAML;
//! `UPDATE_GOLDEN=1 cargo test -p gpu-hook --test plan_golden` rewrites them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gpu_hook::plan::{plan, PlanOptions};
use gpu_hook::policy::Policy;
use gpu_hook::request::from_config;
use gpu_hook::resolve::{resolve, ResolveOptions, Source};
use hooks_core::plan::glibc::GlibcAction;
use hooks_core::plan::View;
use hooks_core::rootfs::Rootfs;
use test_support::gcc_shared;

struct Fixture {
    _tmp: tempfile::TempDir,
    driver: PathBuf,
    specs: PathBuf,
    rootfs: PathBuf,
}

/// A driver root with libcuda 550.54.15 and an EGL library, a spec naming them with the
/// hooks nvidia-ctk writes, and a Debian-like image (glibc 2.31) whose CUDA compat
/// directory has libcuda 560.28.03.
fn fixture() -> Fixture {
    let tmp = tempfile::Builder::new()
        .prefix("gpu-plan")
        .tempdir()
        .unwrap();
    let driver = tmp.path().join("driver");
    let specs = tmp.path().join("cdi");
    let rootfs = tmp.path().join("rootfs");
    let src = tmp.path().join("src");
    let lib = driver.join("usr/lib/x86_64-linux-gnu");
    for d in [&lib, &specs, &src, &rootfs.join("usr/local/cuda/compat")] {
        std::fs::create_dir_all(d).unwrap();
    }
    gcc_shared(
        "int cuInit(unsigned f) { return (int)f; }\n",
        &lib.join("libcuda.so.550.54.15"),
        "libcuda.so.1",
    );
    gcc_shared(
        "int egl(void) { return 0; }\n",
        &lib.join("libEGL_nvidia.so.550.54.15"),
        "libEGL_nvidia.so.0",
    );
    std::fs::write(
        rootfs.join("usr/local/cuda/compat/libcuda.so.560.28.03"),
        b"compat",
    )
    .unwrap();
    let ilib = rootfs.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&ilib).unwrap();
    let banner = "const char b[] = \"GNU C Library (Debian GLIBC 2.31-13) stable release version 2.31.\\n\";\n";
    gcc_shared(banner, &ilib.join("libc-2.31.so"), "libc.so.6");
    std::os::unix::fs::symlink("libc-2.31.so", ilib.join("libc.so.6")).unwrap();
    let d = driver.display();
    let spec = format!(
        r#"cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
      type: c
      major: 195
      minor: 0
      permissions: rw
- name: all
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
      type: c
      major: 195
      minor: 0
containerEdits:
  deviceNodes:
  - path: /dev/nvidiactl
    type: c
    major: 195
    minor: 255
  mounts:
  - hostPath: {d}/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15
    containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15
    options: [ro, nosuid, nodev, bind]
  - hostPath: {d}/usr/lib/x86_64-linux-gnu/libEGL_nvidia.so.550.54.15
    containerPath: /usr/lib/x86_64-linux-gnu/libEGL_nvidia.so.550.54.15
    options: [ro, nosuid, nodev, bind]
  hooks:
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args: [nvidia-cdi-hook, create-symlinks, --link, libcuda.so.550.54.15::/usr/lib/x86_64-linux-gnu/libcuda.so.1, --link, libEGL_nvidia.so.550.54.15::/usr/lib/x86_64-linux-gnu/libEGL_nvidia.so.0]
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args: [nvidia-cdi-hook, enable-cuda-compat, --host-driver-version=550.54.15]
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args: [nvidia-cdi-hook, update-ldcache, --folder, /usr/lib/x86_64-linux-gnu]
"#
    );
    std::fs::write(specs.join("nvidia.yaml"), spec).unwrap();
    Fixture {
        _tmp: tmp,
        driver,
        specs,
        rootfs,
    }
}
fn check_golden(name: &str, expected: &str, got: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    test_support::check_golden(&dir, name, expected, got);
}

/// Plans the request in `env` against the fixture; the YAML has `$DRIVER` for the root.
fn plan_for(f: &Fixture, env: &[&str]) -> (String, Vec<String>) {
    let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
    let req = from_config(&env, &HashMap::new(), &Policy::default(), true)
        .unwrap()
        .request;
    let opts = ResolveOptions {
        source: Source::Spec,
        spec_dirs: vec![f.specs.clone()],
        roots: Default::default(),
        nvml_lib: None,
        nvml_helper: PathBuf::from("/nonexistent/cdi-gen"),
        discovery: Default::default(),
        hook_path: "/usr/libexec/hpc-hooks/gpu-hook".into(),
    };
    let resolved = resolve(&req.devices, &opts).unwrap();
    let rootfs = Rootfs::open(&f.rootfs).unwrap();
    let view = View {
        rootfs: &rootfs,
        mounts: &[],
    };
    let p = plan(
        view,
        &req,
        resolved,
        &PlanOptions {
            hook_path: opts.hook_path.clone(),
            glibc_action: GlibcAction::Refuse,
            glibc_libs: None,
        },
    )
    .unwrap();
    let yaml = test_support::plan_yaml(&p.plan, &f.driver, "$DRIVER");
    (yaml, p.log)
}

#[test]
fn compute_request_with_newer_compat_libraries() {
    let f = fixture();
    let (yaml, log) = plan_for(
        &f,
        &[
            "NVIDIA_VISIBLE_DEVICES=0",
            "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
            "NVIDIA_REQUIRE_CUDA=cuda>=12.4",
        ],
    );
    check_golden(
        "compute-compat",
        include_str!("golden/compute-compat.yaml"),
        &yaml,
    );
    assert!(
        log.iter().any(|l| l
            == "CUDA compat: the image's /usr/local/cuda/compat/libcuda.so.560.28.3 is newer than the host driver 550.54.15; it takes precedence"),
        "{log:#?}"
    );
    assert!(
        log.iter().any(
            |l| l == "1 driver files or links left out by NVIDIA_DRIVER_CAPABILITIES"
                || l.starts_with("2 driver files")
        ),
        "{log:#?}"
    );
}

#[test]
fn graphics_request_keeps_the_egl_library() {
    let f = fixture();
    let (yaml, _) = plan_for(
        &f,
        &[
            "NVIDIA_VISIBLE_DEVICES=all",
            "NVIDIA_DRIVER_CAPABILITIES=all",
        ],
    );
    check_golden("all-caps", include_str!("golden/all-caps.yaml"), &yaml);
}
