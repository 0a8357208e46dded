#![no_main]
//! `ratchetbox::fuzzing::session_decrypt`: see its documentation and docs/FUZZING.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetbox::fuzzing::session_decrypt(data));
