#![no_main]
//! `ratchetbox::fuzzing::sealed_state`: see its documentation and docs/FUZZING.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetbox::fuzzing::sealed_state(data));
