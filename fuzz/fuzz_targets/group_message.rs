#![no_main]
//! `ratchetbox::fuzzing::group_message`: see its documentation and docs/FUZZING.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetbox::fuzzing::group_message(data));
