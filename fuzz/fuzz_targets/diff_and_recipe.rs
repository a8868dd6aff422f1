//! The judge's diff parsing on arbitrary bytes: git2's patch parser plus the
//! allowlist check, and the syn scan of recipe source. None may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(diff) = git2::Diff::from_buffer(data) {
        let _ = karpa_bot::allowlist::check_patch(&diff);
    }
    if let Ok(source) = std::str::from_utf8(data) {
        let _ = karpa_bot::judge::scan::scan_file("recipe/src/fuzz.rs", source);
    }
});
