//! ELF files from the image and the host (`elf::parse`: class, machine, soname, needed
//! libraries, version needs and definitions), and the glibc facts derived from them.
#![no_main]

use hpc_facts::{elf, glibc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(facts) = elf::parse(data) {
        let _ = elf::machine_name(facts.machine);
        let _ = glibc::glibc_need(&facts);
        let _ = glibc::max_verdef_version(&facts);
        for n in &facts.verneed {
            let _ = facts.versions_needed_from(&n.file).count();
        }
    }
    // glibc-hook reads the image's libc version from its banner.
    let _ = glibc::version_from_banner(data);
});
