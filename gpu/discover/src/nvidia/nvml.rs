//! NVIDIA facts through NVML (`nvml-wrapper`, which dlopens `libnvidia-ml.so.1` at run
//! time, so cdi-gen starts on hosts without the driver). Only a handful of calls are made:
//! init, driver/CUDA version, device count and handles, minor, UUID, name, PCI info, MIG
//! mode and MIG device handles with their GPU/compute instance ids. The in-process calls
//! need the cargo feature `nvml`; the library lookup and the error type are always here
//! (the helper child, [`super::helper`], reports through them).

use std::ffi::OsString;
use std::path::PathBuf;

use hpc_facts::ldcache::{CacheArch, LdCache};
#[cfg(feature = "nvml")]
use nvml_wrapper::error::{nvml_try, NvmlError};
#[cfg(feature = "nvml")]
use nvml_wrapper::{Device, Nvml};
use thiserror::Error;

use super::facts::GpuFacts;
#[cfg(feature = "nvml")]
use super::facts::{cuda_version_string, normalize_bus_id, Gpu, Mig, Source};
use super::files::STANDARD_LIB_DIRS;
use crate::roots::Roots;

/// The SONAME of NVML.
pub const NVML_SONAME: &str = "libnvidia-ml.so.1";

/// Why NVML could not be used (cdi-gen then falls back to procfs/sysfs).
#[derive(Debug, Error)]
pub enum NvmlBackendError {
    /// The library cannot be loaded.
    #[error("cannot load {lib}: {message}")]
    Load {
        /// The library path or name.
        lib: String,
        /// The loader's message.
        message: String,
    },
    /// `nvmlInit` failed.
    #[cfg(feature = "nvml")]
    #[error("NVML ({lib}) failed to initialize: {source}")]
    Init {
        /// The library path or name.
        lib: String,
        /// NVML's error.
        source: NvmlError,
    },
    /// A query failed.
    #[cfg(feature = "nvml")]
    #[error("NVML call {call} failed{}: {source}", .gpu.map(|g| format!(" for GPU {g}")).unwrap_or_default())]
    Call {
        /// The NVML function.
        call: &'static str,
        /// The GPU index, if the call was about one.
        gpu: Option<u32>,
        /// NVML's error.
        source: NvmlError,
    },
    /// The NVML helper process (`cdi-gen nvml-facts`) failed.
    #[error("NVML helper {helper} failed: {message}")]
    Helper {
        /// The helper's path.
        helper: String,
        /// Why.
        message: String,
    },
    /// This program was built without in-process NVML (the static hooks): NVML is only
    /// reached through the helper.
    #[error("cannot load {lib}: this program queries NVML only through the cdi-gen helper (nvml-facts); give its path (GPU_HOOK_CDI_GEN / --cdi-gen), or use procfs/sysfs discovery")]
    NotBuiltIn {
        /// The library path or name.
        lib: String,
    },
    /// NVML returned a value cdi-gen cannot use.
    #[error("NVML returned {what}")]
    Bad {
        /// What.
        what: String,
    },
}

/// The library to load: `explicit` (`--nvml-lib`), else `libnvidia-ml.so.1` found through
/// the driver root's ld.so.cache or in its standard library directories, else the name
/// alone for the default loader.
pub fn library_path(
    roots: &Roots,
    explicit: Option<&PathBuf>,
    cache: Option<&LdCache>,
) -> OsString {
    if let Some(p) = explicit {
        return p.clone().into_os_string();
    }
    if let Some(cache) = cache {
        // Only a library of this process's architecture can be loaded.
        let native = if cfg!(target_arch = "x86_64") {
            Some(CacheArch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(CacheArch::AArch64)
        } else {
            None
        };
        let ours = |e: &&hpc_facts::ldcache::CacheEntry| native.is_none_or(|a| e.arch() == a);
        for e in cache
            .entries
            .iter()
            .filter(|e| e.soname == NVML_SONAME)
            .filter(ours)
        {
            if let Some(real) = roots.resolve_in_driver_root(&e.path) {
                return roots.driver(&real).into_os_string();
            }
        }
    }
    for dir in STANDARD_LIB_DIRS {
        let p = format!("{dir}/{NVML_SONAME}");
        if let Some(real) = roots.resolve_in_driver_root(&p) {
            return roots.driver(&real).into_os_string();
        }
    }
    OsString::from(NVML_SONAME)
}

/// Loads and initializes NVML from `lib` and reads the GPU facts. Without the cargo
/// feature `nvml`, always [`NvmlBackendError::NotBuiltIn`].
#[cfg(not(feature = "nvml"))]
pub fn discover(lib: &OsString) -> Result<GpuFacts, NvmlBackendError> {
    Err(NvmlBackendError::NotBuiltIn {
        lib: lib.to_string_lossy().into_owned(),
    })
}

/// Loads and initializes NVML from `lib` and reads the GPU facts.
#[cfg(feature = "nvml")]
pub fn discover(lib: &OsString) -> Result<GpuFacts, NvmlBackendError> {
    let name = lib.to_string_lossy().into_owned();
    let nvml = Nvml::builder()
        .lib_path(lib.as_os_str())
        .init()
        .map_err(|e| match e {
            NvmlError::LibloadingError(l) => NvmlBackendError::Load {
                lib: name.clone(),
                message: l.to_string(),
            },
            NvmlError::FailedToLoadSymbol(s) => NvmlBackendError::Load {
                lib: name.clone(),
                message: format!("missing symbol: {s}"),
            },
            source => NvmlBackendError::Init {
                lib: name.clone(),
                source,
            },
        })?;
    read(&nvml)
}

#[cfg(feature = "nvml")]
fn call<T>(
    call: &'static str,
    gpu: Option<u32>,
    r: Result<T, NvmlError>,
) -> Result<T, NvmlBackendError> {
    r.map_err(|source| NvmlBackendError::Call { call, gpu, source })
}

#[cfg(feature = "nvml")]
fn read(nvml: &Nvml) -> Result<GpuFacts, NvmlBackendError> {
    let driver_version = call(
        "nvmlSystemGetDriverVersion",
        None,
        nvml.sys_driver_version(),
    )?;
    let cuda_version = nvml.sys_cuda_driver_version().ok().map(cuda_version_string);
    let count = call("nvmlDeviceGetCount", None, nvml.device_count())?;
    let mut gpus = Vec::with_capacity(count as usize);
    for index in 0..count {
        let g = Some(index);
        let dev = call("nvmlDeviceGetHandleByIndex", g, nvml.device_by_index(index))?;
        let minor = call("nvmlDeviceGetMinorNumber", g, dev.minor_number())?;
        let uuid = call("nvmlDeviceGetUUID", g, dev.uuid())?;
        let name = call("nvmlDeviceGetName", g, dev.name())?;
        let pci = call("nvmlDeviceGetPciInfo", g, dev.pci_info())?;
        let bus_id = normalize_bus_id(&pci.bus_id).ok_or_else(|| NvmlBackendError::Bad {
            what: format!("PCI bus id {:?} for GPU {index}", pci.bus_id),
        })?;
        let mig_enabled = match dev.mig_mode() {
            Ok(m) => m.current == 1,
            Err(NvmlError::NotSupported) => false,
            Err(source) => {
                return Err(NvmlBackendError::Call {
                    call: "nvmlDeviceGetMigMode",
                    gpu: g,
                    source,
                })
            }
        };
        let migs = if mig_enabled {
            migs(nvml, &dev, index)?
        } else {
            Vec::new()
        };
        gpus.push(Gpu {
            index,
            minor,
            uuid,
            name,
            bus_id,
            mig_enabled,
            migs,
        });
    }
    Ok(GpuFacts {
        source: Source::Nvml,
        driver_version: Some(driver_version),
        cuda_version,
        gpus,
    })
}

#[cfg(feature = "nvml")]
fn migs(nvml: &Nvml, dev: &Device<'_>, index: u32) -> Result<Vec<Mig>, NvmlBackendError> {
    let g = Some(index);
    let max = call("nvmlDeviceGetMaxMigDeviceCount", g, dev.mig_device_count())?;
    let mut out = Vec::new();
    for j in 0..max {
        let mig = match dev.mig_device_by_index(j) {
            Ok(m) => m,
            Err(NvmlError::NotFound) => continue,
            Err(source) => {
                return Err(NvmlBackendError::Call {
                    call: "nvmlDeviceGetMigDeviceHandleByIndex",
                    gpu: g,
                    source,
                })
            }
        };
        let gi = instance_id(nvml, &mig, InstanceKind::Gpu, index)?;
        let ci = instance_id(nvml, &mig, InstanceKind::Compute, index)?;
        let uuid = call("nvmlDeviceGetUUID", g, mig.uuid())?;
        out.push(Mig {
            index: j,
            gi,
            ci,
            uuid: Some(uuid),
        });
    }
    Ok(out)
}

#[cfg(feature = "nvml")]
#[derive(Clone, Copy)]
enum InstanceKind {
    Gpu,
    Compute,
}

#[cfg(feature = "nvml")]
/// `nvmlDeviceGetGpuInstanceId` / `nvmlDeviceGetComputeInstanceId`, which nvml-wrapper
/// does not wrap: called through the symbols it resolved.
fn instance_id(
    nvml: &Nvml,
    mig: &Device<'_>,
    kind: InstanceKind,
    gpu: u32,
) -> Result<u32, NvmlBackendError> {
    let lib = nvml.lib();
    let (name, sym) = match kind {
        InstanceKind::Gpu => (
            "nvmlDeviceGetGpuInstanceId",
            lib.nvmlDeviceGetGpuInstanceId.as_ref(),
        ),
        InstanceKind::Compute => (
            "nvmlDeviceGetComputeInstanceId",
            lib.nvmlDeviceGetComputeInstanceId.as_ref(),
        ),
    };
    let f = sym.map_err(|e| NvmlBackendError::Load {
        lib: "NVML".to_string(),
        message: format!("missing symbol {name}: {e}"),
    })?;
    let mut id: u32 = 0;
    // SAFETY: `f` is the library's own symbol with NVML's prototype
    // `nvmlReturn_t (nvmlDevice_t, unsigned int *)`; the handle comes from the same, still
    // initialized library (`nvml` outlives `mig`), and `id` is a valid out pointer.
    let rc = unsafe { f(mig.handle(), &mut id) };
    call(name, Some(gpu), nvml_try(rc))?;
    Ok(id)
}

#[cfg(all(test, not(feature = "nvml")))]
mod tests {
    use super::*;

    /// Without the feature, nothing is loaded in-process: the error says so and names the
    /// way out (the helper, or procfs/sysfs).
    #[test]
    fn without_the_feature_nvml_is_refused_with_the_way_out() {
        let e = discover(&OsString::from("/x/libnvidia-ml.so.1")).unwrap_err();
        assert!(matches!(e, NvmlBackendError::NotBuiltIn { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "cannot load /x/libnvidia-ml.so.1: this program queries NVML only through the cdi-gen helper (nvml-facts); give its path (GPU_HOOK_CDI_GEN / --cdi-gen), or use procfs/sysfs discovery"
        );
    }
}
