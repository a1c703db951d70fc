//! Fake GPU machines: a driver root with stub libraries (real SONAMEs) and an ld.so.cache
//! from `ldconfig -r`, the mock NVML's machine description, `mknod` device nodes (tests
//! run as root), and the procfs/sysfs trees a real NVIDIA or AMD host has.

use std::fmt::Write as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::output::run;
use crate::stubs::stub;

pub const DRIVER: &str = "550.54.14";
pub const NVIDIA_MAJOR: u32 = 195;
pub const UVM_MAJOR: u32 = 510;
pub const CAPS_MAJOR: u32 = 511;
pub const KFD_MAJOR: u32 = 235;
/// Majors of the HPC device classes on the fake machine ([`MachineSpec::with_extras`]),
/// as `/proc/devices` lists them (dynamic on a real node, except the verbs' 231).
pub const IMEX_MAJOR: u32 = 508;
pub const NVSWITCH_MAJOR: u32 = 509;
pub const NVIDIA_FS_MAJOR: u32 = 507;
pub const GDRDRV_MAJOR: u32 = 506;
pub const VERBS_MAJOR: u32 = 231;
pub const MISC_MAJOR: u32 = 10;
/// Minor of `/dev/infiniband/rdma_cm` (a misc device).
pub const RDMA_CM_MINOR: u32 = 58;
/// How many of each HPC node the fake machine has (channels, switches, nvidia-fs, uverbs).
pub const EXTRAS_COUNT: u32 = 2;

/// One MIG device of the mock.
#[derive(Clone, Debug)]
pub struct MigSpec {
    pub gi: u32,
    pub ci: u32,
    pub uuid: String,
}

/// One GPU of the mock.
#[derive(Clone, Debug)]
pub struct GpuSpec {
    pub index: u32,
    pub minor: u32,
    pub uuid: String,
    pub name: String,
    /// sysfs form, `0000:18:00.0`.
    pub bus_id: String,
    pub mig_mode: bool,
    pub migs: Vec<MigSpec>,
}

/// A machine to build.
#[derive(Clone, Debug)]
pub struct MachineSpec {
    pub driver: String,
    pub cuda: i32,
    pub gpus: Vec<GpuSpec>,
    pub with_libcuda: bool,
    /// nvidia-ctk's graphics/display files (EGL GBM/Wayland libraries, X server modules
    /// and configs, nvoptix.bin) and the HPC nodes: IMEX channels, NVSwitches, GPUDirect
    /// Storage, GDRCopy, RDMA verbs and rdma_cm (with their majors in /proc/devices).
    pub extras: bool,
}

impl MachineSpec {
    /// `n` GPUs; minors are a permutation of the indices when n > 1 (minor != index).
    pub fn nvidia(n: u32) -> MachineSpec {
        let gpus = (0..n)
            .map(|i| GpuSpec {
                index: i,
                minor: if n > 1 && !n.is_multiple_of(3) {
                    (i * 3) % n
                } else {
                    i
                },
                uuid: format!("GPU-{:08x}-1111-2222-3333-{:012x}", 0xa0000000u32 + i, i),
                name: "NVIDIA H100 80GB HBM3".to_string(),
                bus_id: format!("0000:{:02x}:00.0", 0x18 + 2 * i),
                mig_mode: false,
                migs: Vec::new(),
            })
            .collect();
        MachineSpec {
            driver: DRIVER.to_string(),
            cuda: 12040,
            gpus,
            with_libcuda: true,
            extras: false,
        }
    }

    /// The same machine with the graphics files and HPC nodes of [`MachineSpec::extras`].
    pub fn with_extras(mut self) -> MachineSpec {
        self.extras = true;
        self
    }

    /// `n` GPUs, the first `mig_gpus` in MIG mode with `per_gpu` MIG devices each.
    pub fn mig(n: u32, mig_gpus: u32, per_gpu: u32) -> MachineSpec {
        let mut m = MachineSpec::nvidia(n);
        for g in m.gpus.iter_mut().take(mig_gpus as usize) {
            g.mig_mode = true;
            g.migs = (0..per_gpu)
                .map(|j| MigSpec {
                    gi: 7 + j,
                    ci: 0,
                    uuid: format!(
                        "MIG-{:08x}-aaaa-bbbb-cccc-{:012x}",
                        0xb0000000u32 + g.index,
                        j
                    ),
                })
                .collect();
        }
        m
    }

    /// The mock NVML's config file text.
    pub fn nvml_config(&self) -> String {
        let mut s = format!("driver {}\ncuda {}\n", self.driver, self.cuda);
        for g in &self.gpus {
            let nvml_bus = format!("0000{}", g.bus_id.to_uppercase());
            writeln!(
                s,
                "gpu {} {} {} {} {} {}",
                g.index,
                g.minor,
                nvml_bus,
                g.uuid,
                u32::from(g.mig_mode),
                g.name
            )
            .unwrap();
            for m in &g.migs {
                writeln!(s, "mig {} {} {} {}", g.index, m.gi, m.ci, m.uuid).unwrap();
            }
        }
        s
    }
}

/// Driver libraries: (directory under the root, file name, SONAME).
fn driver_libs(v: &str, with_libcuda: bool, extras: bool) -> Vec<(&'static str, String, String)> {
    let lib = "usr/lib/x86_64-linux-gnu";
    let mut l = vec![
        (
            lib,
            format!("libnvidia-ml.so.{v}"),
            "libnvidia-ml.so.1".to_string(),
        ),
        (
            lib,
            format!("libnvidia-ptxjitcompiler.so.{v}"),
            "libnvidia-ptxjitcompiler.so.1".to_string(),
        ),
        (
            lib,
            format!("libnvidia-opencl.so.{v}"),
            "libnvidia-opencl.so.1".to_string(),
        ),
        (
            lib,
            format!("libEGL_nvidia.so.{v}"),
            "libEGL_nvidia.so.0".to_string(),
        ),
        (
            lib,
            format!("libGLX_nvidia.so.{v}"),
            "libGLX_nvidia.so.0".to_string(),
        ),
        (
            lib,
            format!("libnvidia-glcore.so.{v}"),
            format!("libnvidia-glcore.so.{v}"),
        ),
        (
            "usr/lib/x86_64-linux-gnu/vdpau",
            format!("libvdpau_nvidia.so.{v}"),
            "libvdpau_nvidia.so.1".to_string(),
        ),
        // 32-bit directory (a 64-bit stub stands in; only names matter here).
        (
            "usr/lib/i386-linux-gnu",
            format!("libnvidia-ml.so.{v}"),
            "libnvidia-ml.so.1".to_string(),
        ),
        // Not a driver library: must not be injected.
        (lib, "libfoo.so.1.0".to_string(), "libfoo.so.1".to_string()),
    ];
    if extras {
        // Versioned on their own, not with the driver.
        l.push((
            lib,
            "libnvidia-egl-gbm.so.1.1.1".to_string(),
            "libnvidia-egl-gbm.so.1".to_string(),
        ));
        l.push((
            lib,
            "libnvidia-egl-wayland.so.1.1.13".to_string(),
            "libnvidia-egl-wayland.so.1".to_string(),
        ));
    }
    if with_libcuda {
        l.push((lib, format!("libcuda.so.{v}"), "libcuda.so.1".to_string()));
        l.push((
            "usr/lib/i386-linux-gnu",
            format!("libcuda.so.{v}"),
            "libcuda.so.1".to_string(),
        ));
    }
    l
}

fn mknod(path: &Path, major: u32, minor: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path; mknod has no other memory effects.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    };
    assert_eq!(
        rc,
        0,
        "mknod {} (tests must run as root): {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The graphics/display files and HPC nodes of [`MachineSpec::extras`] (libraries are
/// added by `driver_libs`, before ldconfig runs).
fn build_extras(root: &Path, v: &str) {
    write(
        &root.join("usr/lib/xorg/modules/drivers/nvidia_drv.so"),
        "xorg driver",
    );
    write(
        &root.join(format!(
            "usr/lib/xorg/modules/extensions/libglxserver_nvidia.so.{v}"
        )),
        "glx",
    );
    write(
        &root.join("usr/share/X11/xorg.conf.d/nvidia-drm-outputclass.conf"),
        "Section \"OutputClass\"\nEndSection\n",
    );
    write(&root.join("usr/share/nvidia/nvoptix.bin"), "optix");
    let dev = root.join("dev");
    for i in 0..EXTRAS_COUNT {
        mknod(
            &dev.join(format!("nvidia-caps-imex-channels/channel{i}")),
            IMEX_MAJOR,
            i,
        );
        mknod(&dev.join(format!("nvidia-nvswitch{i}")), NVSWITCH_MAJOR, i);
        mknod(&dev.join(format!("nvidia-fs{i}")), NVIDIA_FS_MAJOR, i);
        mknod(
            &dev.join(format!("infiniband/uverbs{i}")),
            VERBS_MAJOR,
            192 + i,
        );
    }
    mknod(&dev.join("nvidia-nvswitchctl"), NVSWITCH_MAJOR, 255);
    mknod(&dev.join("gdrdrv"), GDRDRV_MAJOR, 0);
    mknod(&dev.join("infiniband/rdma_cm"), MISC_MAJOR, RDMA_CM_MINOR);
}

/// A built fake machine.
pub struct FakeMachine {
    pub dir: tempfile::TempDir,
    /// Driver root and dev root.
    pub root: PathBuf,
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub nvml_config: PathBuf,
    pub spec: MachineSpec,
}

/// `/proc/driver/nvidia-caps/mig-minors` as the driver writes it: every possible GPU
/// instance (0-14) and compute instance (0-7) of GPUs 0..max(32, n).
pub fn mig_minors_text(ngpus: u32) -> String {
    let mut s = String::from("config 1\nmonitor 2\n");
    let mut minor = 3;
    for gpu in 0..ngpus.max(32) {
        for gi in 0..15 {
            writeln!(s, "gpu{gpu}/gi{gi}/access {minor}").unwrap();
            minor += 1;
            for ci in 0..8 {
                writeln!(s, "gpu{gpu}/gi{gi}/ci{ci}/access {minor}").unwrap();
                minor += 1;
            }
        }
    }
    s
}

/// The minors `mig_minors_text` gives gpu/gi and gpu/gi/ci.
pub fn mig_minor(gpu: u32, gi: u32, ci: Option<u32>) -> u32 {
    3 + gpu * 15 * 9 + gi * 9 + ci.map(|c| c + 1).unwrap_or(0)
}

impl FakeMachine {
    pub fn build(spec: &MachineSpec) -> FakeMachine {
        let dir = tempfile::Builder::new()
            .prefix("cdi-gen-machine")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        let proc = dir.path().join("proc");
        let sys = dir.path().join("sys");
        let v = &spec.driver;
        // Driver root: libraries + ld.so.cache.
        std::fs::create_dir_all(root.join("etc")).unwrap();
        for (d, file, soname) in driver_libs(v, spec.with_libcuda, spec.extras) {
            let dst = root.join(d).join(&file);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(stub(&soname), &dst).unwrap();
        }
        write(&root.join("etc/ld.so.conf"), "/usr/lib/i386-linux-gnu\n");
        run(Command::new("ldconfig").arg("-r").arg(&root));
        // Merged /usr like Debian: /lib -> usr/lib.
        symlink("usr/lib", root.join("lib")).unwrap();
        for b in [
            "nvidia-smi",
            "nvidia-persistenced",
            "nvidia-cuda-mps-control",
        ] {
            write(&root.join("usr/bin").join(b), "#!/bin/sh\necho stub\n");
        }
        // A real unix socket, as the daemon leaves it (gpu-hook checks the kind).
        let sock = root.join("run/nvidia-persistenced/socket");
        std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        for fw in ["gsp_ga10x.bin", "gsp_tu10x.bin"] {
            write(
                &root.join(format!("usr/lib/firmware/nvidia/{v}/{fw}")),
                "fw",
            );
        }
        write(&root.join("etc/vulkan/icd.d/nvidia_icd.json"), "{}\n");
        write(
            &root.join("usr/share/glvnd/egl_vendor.d/10_nvidia.json"),
            "{}\n",
        );
        write(
            &root.join("etc/OpenCL/vendors/nvidia.icd"),
            "libnvidia-opencl.so.1\n",
        );
        // Device nodes.
        let dev = root.join("dev");
        mknod(&dev.join("nvidiactl"), NVIDIA_MAJOR, 255);
        mknod(&dev.join("nvidia-modeset"), NVIDIA_MAJOR, 254);
        mknod(&dev.join("nvidia-uvm"), UVM_MAJOR, 0);
        mknod(&dev.join("nvidia-uvm-tools"), UVM_MAJOR, 1);
        let mut extra_majors = String::new();
        if spec.extras {
            extra_majors = format!("{MISC_MAJOR} misc\n{VERBS_MAJOR} infiniband_verbs\n{GDRDRV_MAJOR} gdrdrv\n{NVIDIA_FS_MAJOR} nvidia-fs\n{IMEX_MAJOR} nvidia-caps-imex-channels\n{NVSWITCH_MAJOR} nvidia-nvswitch\n");
            build_extras(&root, v);
        }
        // procfs.
        write(
            &proc.join("devices"),
            &format!("Character devices:\n  1 mem\n  4 /dev/vc/0\n{NVIDIA_MAJOR} nvidia-frontend\n226 drm\n{UVM_MAJOR} nvidia-uvm\n{CAPS_MAJOR} nvidia-caps\n{extra_majors}\nBlock devices:\n  8 sd\n"),
        );
        write(
            &proc.join("driver/nvidia/version"),
            &format!("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  Thu Feb 22 01:44:30 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"),
        );
        let ngpus = u32::try_from(spec.gpus.len()).unwrap();
        write(
            &proc.join("driver/nvidia-caps/mig-minors"),
            &mig_minors_text(ngpus),
        );
        for g in &spec.gpus {
            mknod(
                &dev.join(format!("nvidia{}", g.minor)),
                NVIDIA_MAJOR,
                g.minor,
            );
            write(
                &proc.join(format!("driver/nvidia/gpus/{}/information", g.bus_id)),
                &format!("Model: \t\t {}\nIRQ:   \t\t 42\nGPU UUID: \t {}\nVideo BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\nBus Location: \t {}\nDevice Minor: \t {}\nGPU Excluded:\t No\n", g.name, g.uuid, g.bus_id, g.minor),
            );
            let card = g.index + 1;
            let render = 128 + g.index;
            let drm = sys.join(format!("bus/pci/devices/{}/drm", g.bus_id));
            std::fs::create_dir_all(drm.join(format!("card{card}"))).unwrap();
            std::fs::create_dir_all(drm.join(format!("renderD{render}"))).unwrap();
            mknod(&dev.join(format!("dri/card{card}")), 226, card);
            mknod(&dev.join(format!("dri/renderD{render}")), 226, render);
            for m in &g.migs {
                let gi_dir = proc.join(format!(
                    "driver/nvidia/capabilities/gpu{}/mig/gi{}",
                    g.minor, m.gi
                ));
                write(
                    &gi_dir.join("access"),
                    &format!("DeviceFileMinor: {}\n", mig_minor(g.minor, m.gi, None)),
                );
                write(
                    &gi_dir.join(format!("ci{}/access", m.ci)),
                    &format!(
                        "DeviceFileMinor: {}\n",
                        mig_minor(g.minor, m.gi, Some(m.ci))
                    ),
                );
                for minor in [
                    mig_minor(g.minor, m.gi, None),
                    mig_minor(g.minor, m.gi, Some(m.ci)),
                ] {
                    let p = dev.join(format!("nvidia-caps/nvidia-cap{minor}"));
                    if !p.exists() {
                        mknod(&p, CAPS_MAJOR, minor);
                    }
                }
            }
        }
        let nvml_config = dir.path().join("nvml.conf");
        std::fs::write(&nvml_config, spec.nvml_config()).unwrap();
        FakeMachine {
            dir,
            root,
            proc,
            sys,
            nvml_config,
            spec: spec.clone(),
        }
    }

    /// A fake AMD machine with `n` GPUs bound to amdgpu and a KFD topology.
    pub fn amd(n: u32) -> FakeMachine {
        let dir = tempfile::Builder::new()
            .prefix("cdi-gen-amd")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        let proc = dir.path().join("proc");
        let sys = dir.path().join("sys");
        let dev = root.join("dev");
        mknod(&dev.join("kfd"), KFD_MAJOR, 0);
        write(
            &proc.join("devices"),
            &format!("Character devices:\n226 drm\n{KFD_MAJOR} kfd\n\nBlock devices:\n"),
        );
        write(
            &sys.join("class/kfd/kfd/topology/nodes/0/properties"),
            "cpu_cores_count 16\nsimd_count 0\ndrm_render_minor 0\n",
        );
        for i in 0..n {
            let bus = format!("0000:{:02x}:00.0", 0x43 + i);
            let pci = sys.join(format!("bus/pci/devices/{bus}"));
            std::fs::create_dir_all(pci.join(format!("drm/card{i}"))).unwrap();
            std::fs::create_dir_all(pci.join(format!("drm/renderD{}", 128 + i))).unwrap();
            write(
                &pci.join("unique_id"),
                &format!("{:016x}\n", 0x1234_5678_0000_0000u64 + u64::from(i)),
            );
            let drv = sys.join("module/amdgpu/drivers/pci:amdgpu");
            std::fs::create_dir_all(&drv).unwrap();
            symlink(format!("../../../../bus/pci/devices/{bus}"), drv.join(&bus)).unwrap();
            write(
                &sys.join(format!("class/kfd/kfd/topology/nodes/{}/properties", i + 1)),
                &format!("cpu_cores_count 0\nsimd_count 304\ndrm_render_minor {}\ngfx_target_version 90402\n", 128 + i),
            );
            mknod(&dev.join(format!("dri/card{i}")), 226, i);
            mknod(&dev.join(format!("dri/renderD{}", 128 + i)), 226, 128 + i);
        }
        // "module" and "bind" entries real drivers have besides the bus ids.
        write(&sys.join("module/amdgpu/drivers/pci:amdgpu/bind"), "");
        let nvml_config = dir.path().join("nvml.conf");
        FakeMachine {
            dir,
            root,
            proc,
            sys,
            nvml_config,
            spec: MachineSpec::nvidia(0),
        }
    }

    /// A cdi-gen command for this machine (NVML mock configured).
    pub fn command(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        c.arg("--driver-root")
            .arg(&self.root)
            .arg("--sysfs-root")
            .arg(&self.sys)
            .arg("--procfs-root")
            .arg(&self.proc)
            .env("MOCK_NVML_CONFIG", &self.nvml_config)
            .env_remove("CDI_GEN_LOG")
            .env_remove("CDI_GEN_LOG_LEVEL")
            .env_remove("CDI_GEN_DRIVER_ROOT")
            .env_remove("RUST_LOG");
        c
    }

    /// Replaces the machine's temporary directory with `/FAKE` (for golden files).
    pub fn normalize(&self, text: &str) -> String {
        text.replace(&self.dir.path().display().to_string(), "/FAKE")
    }
}

/// Builds a fake machine for gpu-hook: stub binaries executable, and the mock NVML
/// configured by a `mock-nvml.conf` beside the library.
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
