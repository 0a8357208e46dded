//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer), compiled with the
//! `fuzzing` feature. Not part of the API for applications.
//!
//! Each `pub fn target(data: &[u8])` takes the raw fuzzer input, runs the code under test and
//! checks its invariants. It returns normally for every input that the crate handles
//! correctly (decoded or rejected) and panics only when an invariant is violated: that is
//! the finding. The same functions replay the committed corpora and crash reproducers in
//! `cargo test` (`tests/fuzz_corpus.rs`), so every input that ever failed stays a regression
//! test.
//!
//! Nothing here weakens the crate: there is no `cfg(fuzzing)` anywhere in ratchetbox, and
//! every authentication check runs in fuzz builds exactly as in release builds. The
//! conversation and decrypt targets work with real keys and real ciphertexts.
//!
//! The targets and what they check are listed in `docs/FUZZING.md`.

mod attachment;
mod backup;
mod conversation;
mod decode;
mod decrypt;
mod device;
mod group;
mod model;
mod seeds;

pub use attachment::attachment;
pub use backup::backup;
pub use conversation::{Stats as ConversationStats, conversation, conversation_stats};
pub use decode::{
    attachment_header, attachment_pointer, content, initial_message, prekey_bundle,
    ratchet_message, sealed_state, state_account, state_record, state_session,
};
pub use decrypt::{decrypt_plaintext, encrypt_plaintext, session_decrypt};
pub use device::device;
pub use group::{group, group_distribution, group_message, group_state};
pub use seeds::seeds;

use alloc::vec::Vec;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::{Account, SessionRecord, Timestamp};

/// The name of every target, as in `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/`.
pub const TARGETS: &[&str] = &[
    "prekey_bundle",
    "initial_message",
    "ratchet_message",
    "content",
    "attachment_pointer",
    "attachment_header",
    "state_session",
    "state_record",
    "state_account",
    "sealed_state",
    "session_decrypt",
    "conversation",
    "attachment",
    "device",
    "backup",
    "group_message",
    "group_distribution",
    "group_state",
    "group",
];

/// Runs the target called `name` on `data`. Returns `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    let target: fn(&[u8]) = match name {
        "prekey_bundle" => prekey_bundle,
        "initial_message" => initial_message,
        "ratchet_message" => ratchet_message,
        "content" => content,
        "attachment_pointer" => attachment_pointer,
        "attachment_header" => attachment_header,
        "state_session" => state_session,
        "state_record" => state_record,
        "state_account" => state_account,
        "sealed_state" => sealed_state,
        "session_decrypt" => session_decrypt,
        "conversation" => conversation,
        "attachment" => attachment,
        "device" => device,
        "backup" => backup,
        "group_message" => group_message,
        "group_distribution" => group_distribution,
        "group_state" => group_state,
        "group" => group,
        _ => return false,
    };
    target(data);
    true
}

/// The fixed clock of the fixtures.
pub(crate) const T0: Timestamp = Timestamp::from_unix_secs(1_764_000_000);

/// A deterministic random number generator (the fixtures and the conversation target must
/// replay exactly).
pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Serialized account and record: equal bytes mean equal state.
pub(crate) fn snapshot(account: &Account, record: &SessionRecord) -> (Vec<u8>, Vec<u8>) {
    (account.to_bytes().to_vec(), record.to_bytes().to_vec())
}
