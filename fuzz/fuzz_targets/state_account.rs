#![no_main]
//! `ratchetbox::fuzzing::state_account`: see its documentation and docs/FUZZING.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetbox::fuzzing::state_account(data));
