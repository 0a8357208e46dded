#![no_main]
//! `ratchetbox::fuzzing::device`: see its documentation and docs/FUZZING.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetbox::fuzzing::device(data));
