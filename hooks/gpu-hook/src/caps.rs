//! `NVIDIA_DRIVER_CAPABILITIES`: which driver libraries, binaries and files a container
//! gets. Files are classified by name (as the NVIDIA Container Toolkit does); files of no
//! known class (firmware, sockets, other vendors' files) always go in.

use std::collections::BTreeSet;

/// Capability names the toolkit defines.
pub const KNOWN: [&str; 8] = [
    "compute", "compat32", "graphics", "utility", "video", "display", "ngx", "all",
];

/// A set of driver capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caps {
    all: bool,
    set: BTreeSet<String>,
}

impl Caps {
    /// Every capability.
    pub fn all() -> Caps {
        Caps {
            all: true,
            set: BTreeSet::new(),
        }
    }

    /// The default when `NVIDIA_DRIVER_CAPABILITIES` is unset: `utility,compute`.
    pub fn default_env() -> Caps {
        Caps::parse("utility,compute")
    }

    /// Parses a comma-separated list (`all` = everything; unknown names are kept and
    /// reported by [`Caps::unknown`]). An empty value means the default.
    pub fn parse(s: &str) -> Caps {
        let set: BTreeSet<String> = s
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        if set.is_empty() {
            return Caps::default_env();
        }
        Caps {
            all: set.contains("all"),
            set,
        }
    }

    /// Names that are not capabilities.
    pub fn unknown(&self) -> Vec<String> {
        self.set
            .iter()
            .filter(|c| !KNOWN.contains(&c.as_str()))
            .cloned()
            .collect()
    }

    /// True when `cap` is in the set.
    pub fn has(&self, cap: &str) -> bool {
        self.all || self.set.contains(cap)
    }

    /// Whether a file at container path `path` goes in.
    pub fn allows_path(&self, path: &str) -> bool {
        if self.all {
            return true;
        }
        if is_32bit_dir(path) && !self.has("compat32") {
            return false;
        }
        match class_of(path) {
            Some(c) => self.has(c),
            None => true,
        }
    }
}

fn is_32bit_dir(path: &str) -> bool {
    ["/i386-linux-gnu/", "/lib32/", "/usr/lib32/"]
        .iter()
        .any(|d| path.contains(d))
}

/// The capability a driver file belongs to, by its name; `None` when unknown.
pub fn class_of(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name.split(".so").next().unwrap_or(name);
    const TABLE: &[(&str, &[&str])] = &[
        (
            "utility",
            &[
                "libnvidia-ml",
                "libnvidia-cfg",
                "nvidia-smi",
                "nvidia-debugdump",
                "nvidia-persistenced",
            ],
        ),
        (
            "compute",
            &[
                "libcuda",
                "libcudadebugger",
                "libnvidia-ptxjitcompiler",
                "libnvidia-nvvm",
                "libnvidia-opencl",
                "libnvidia-gpucomp",
                "nvidia-cuda-mps-control",
                "nvidia-cuda-mps-server",
                "nvidia.icd",
            ],
        ),
        (
            "video",
            &[
                "libvdpau_nvidia",
                "libnvcuvid",
                "libnvidia-encode",
                "libnvidia-opticalflow",
            ],
        ),
        (
            "graphics",
            &[
                "libEGL_nvidia",
                "libGLX_nvidia",
                "libGLESv1_CM_nvidia",
                "libGLESv2_nvidia",
                "libnvidia-glcore",
                "libnvidia-tls",
                "libnvidia-glsi",
                "libnvidia-eglcore",
                "libnvidia-glvkspirv",
                "libnvidia-rtcore",
                "libnvoptix",
                "libnvidia-fbc",
                "libnvidia-allocator",
                "libnvidia-egl-gbm",
                "libnvidia-egl-wayland",
                "nvidia_icd.json",
                "10_nvidia.json",
                "15_nvidia_gbm.json",
                "nvidia_layers.json",
                "nvoptix.bin",
            ],
        ),
        (
            "display",
            &[
                "nvidia_drv",
                "libglxserver_nvidia",
                "nvidia-drm-outputclass.conf",
                "10-nvidia.conf",
            ],
        ),
        ("ngx", &["libnvidia-ngx", "nvidia-ngx-updater"]),
    ];
    TABLE
        .iter()
        .find(|(_, names)| names.iter().any(|n| stem == *n || name == *n))
        .map(|(c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        let c = Caps::default_env();
        assert!(c.allows_path("/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14"));
        assert!(c.allows_path("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"));
        assert!(c.allows_path("/usr/bin/nvidia-smi"));
        assert!(!c.allows_path("/usr/lib/x86_64-linux-gnu/libEGL_nvidia.so.550.54.14"));
        assert!(!c.allows_path("/usr/lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.1"));
        assert!(!c.allows_path("/usr/lib/i386-linux-gnu/libcuda.so.550.54.14"));
        assert!(c.allows_path("/lib/firmware/nvidia/550.54.14/gsp_ga10x.bin"));
        assert!(Caps::parse("all").allows_path("/usr/lib/i386-linux-gnu/libcuda.so.1"));
        let g = Caps::parse("graphics");
        assert!(g.allows_path("/etc/vulkan/icd.d/nvidia_icd.json"));
        assert!(!g.allows_path("/usr/lib/x86_64-linux-gnu/libcuda.so"));
        assert_eq!(Caps::parse("compute,bogus").unknown(), ["bogus"]);
        // nvidia-ctk's graphics and display files.
        assert!(g.allows_path("/usr/share/nvidia/nvoptix.bin"));
        assert!(g.allows_path("/usr/lib/x86_64-linux-gnu/libnvidia-egl-gbm.so.1.1.1"));
        assert!(!g.allows_path("/usr/lib/xorg/modules/drivers/nvidia_drv.so"));
        let d = Caps::parse("display");
        assert!(d.allows_path("/usr/lib/xorg/modules/drivers/nvidia_drv.so"));
        assert!(d.allows_path("/usr/share/X11/xorg.conf.d/nvidia-drm-outputclass.conf"));
        assert!(d.allows_path("/usr/lib/xorg/modules/extensions/libglxserver_nvidia.so.550.54.14"));
        assert!(!c.allows_path("/usr/share/nvidia/nvoptix.bin"));
        assert_eq!(Caps::parse(""), Caps::default_env());
    }
}
