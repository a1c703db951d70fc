//! The gpu-hook binary under test and its OCI hook object, for gpu-hook's end-to-end tests;
//! fake machines, the cached rootfs and the other helpers come from the test-support crate.

use std::path::PathBuf;

use serde_json::Value;

/// The gpu-hook binary under test: the one in `$HPC_HOOKS_BIN_DIR` when set (run-all.sh
/// points it at the static builds that are shipped), else the one cargo built for this test.
pub fn gpu_hook_bin() -> PathBuf {
    test_support::hook_under_test("gpu-hook", env!("CARGO_BIN_EXE_gpu-hook"))
}

/// OCI hook object running gpu-hook.
pub fn hook_json(args: Vec<String>, env: Vec<String>) -> Value {
    test_support::hook_object(&gpu_hook_bin(), args, env)
}
