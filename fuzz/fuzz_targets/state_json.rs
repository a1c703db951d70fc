//! The OCI state JSON a runtime writes on a hook's stdin (`HookState::parse` and the
//! size-capped `read_from`). Any input must give `Ok` or `Err`, never a panic.
#![no_main]

use hooks_core::state::HookState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = HookState::parse(data);
    let read = HookState::read_from(data);
    if let Ok(state) = &parsed {
        assert!(!state.id.is_empty(), "accepted a state without id");
        assert!(
            !state.bundle.as_os_str().is_empty(),
            "accepted a state without bundle"
        );
        assert!(state.pid.is_none_or(|p| p > 0), "non-positive pid kept");
    }
    // `read_from` is `parse` behind a size cap far above libFuzzer's input sizes.
    assert_eq!(parsed.is_ok(), read.is_ok());
    if let (Ok(a), Ok(b)) = (parsed, read) {
        assert_eq!(a, b);
    }
});
