#![no_main]
//! libFuzzer over pgpatrol::fuzz::history (invariants in crates/pgpatrol/src/fuzz.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| pgpatrol::fuzz::history(data));
