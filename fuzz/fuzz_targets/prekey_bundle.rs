#![no_main]
//! `ratchetbox::fuzzing::prekey_bundle`: see its documentation and docs/FUZZING.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetbox::fuzzing::prekey_bundle(data));
