//! The cdi-gen binary under test; the fake GPU machines (driver root, mock NVML, procfs,
//! sysfs) come from the test-support crate.

use std::path::PathBuf;

/// The cdi-gen binary cargo built for this test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cdi-gen"))
}
