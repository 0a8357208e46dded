#![no_main]
//! `ratchetbox::fuzzing::initial_message`: see its documentation and docs/FUZZING.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetbox::fuzzing::initial_message(data));
