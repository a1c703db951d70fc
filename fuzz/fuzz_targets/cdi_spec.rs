//! CDI specs (`cdi_specs::parse::from_json` / `from_yaml`, then `validate` and
//! `minimum_version`). A spec that validates must serialise and parse back to itself.
#![no_main]

use cdi_specs::parse;
use libfuzzer_sys::fuzz_target;

fn check(spec: cdi_specs::Spec) {
    let _ = cdi_specs::minimum_version(&spec);
    let _ = cdi_specs::validate::problems(&spec, None);
    if cdi_specs::validate(&spec, None).is_ok() {
        let json = parse::to_json(&spec).expect("a valid spec serialises to JSON");
        let back = parse::from_json(&json, None).expect("its JSON parses again");
        assert_eq!(back, spec, "JSON round trip changed the spec");
        let yaml = parse::to_yaml(&spec).expect("a valid spec serialises to YAML");
        let back = parse::from_yaml(&yaml, None).expect("its YAML parses again");
        assert_eq!(back, spec, "YAML round trip changed the spec");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = parse::from_json(text, None) {
        check(spec);
    }
    if let Ok(spec) = parse::from_yaml(text, None) {
        check(spec);
    }
});
