//! Test code shared by cdi-gen's and gpu-hook's tests and benchmarks: fake GPU machines
//! built at run time (driver root, mock NVML, device nodes, procfs/sysfs) and the pieces
//! gpu-hook's container tests put around them (cached rootfs, hook objects, node listings),
//! and golden files with gcc-built stub libraries for the planning tests; and the one
//! table of CDI composition cases run through every engine (cdi-specs' and hooks-core's).
//! Prerequisites missing make the tests FAIL, never skip.

mod compose_cases;
mod container;
mod golden;
mod machine;
mod output;
mod stubs;

pub use compose_cases::{completed, compose_cases};
pub use container::{
    add_compat, add_raw_hook, cached_rootfs, cdi_gen_bin, hook_args, hook_env, hook_object,
    hook_under_test, out_log, parse_stat, DLOPEN_PROG, LIST_NODES, WHICH_PROG,
};
pub use e2e_tests::{gcc_shared, gcc_shared_needing};
pub use golden::{check_golden, plan_yaml};
pub use machine::{
    build_machine, mig_minor, mig_minors_text, FakeMachine, GpuSpec, MachineSpec, MigSpec,
    CAPS_MAJOR, DRIVER, EXTRAS_COUNT, GDRDRV_MAJOR, IMEX_MAJOR, KFD_MAJOR, MISC_MAJOR,
    NVIDIA_FS_MAJOR, NVIDIA_MAJOR, NVSWITCH_MAJOR, RDMA_CM_MINOR, UVM_MAJOR, VERBS_MAJOR,
};
pub use output::{stderr, stdout};
pub use stubs::mock_nvml_source;
