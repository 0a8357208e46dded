#![no_main]
//! `ratchetbox::fuzzing::backup`: see its documentation and docs/FUZZING.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetbox::fuzzing::backup(data));
