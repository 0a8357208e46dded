//! What can go wrong with a group message or a sender key.

use thiserror::Error;

use crate::error::DecodeError;

/// A group operation failed. Every failure leaves the sender or receiver state exactly as it
/// was before the call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The bytes are not a valid group message or distribution message (empty, truncated,
    /// another version, not canonical, a field of the wrong length, a non-canonical or
    /// small-order signing key).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The message or distribution names another group than this state's.
    #[error("the message belongs to another group than this state's")]
    WrongGroup,
    /// No sender key with this id is held for this sender: its distribution message has not
    /// arrived, it was evicted (only the newest few are kept), or the message is from another
    /// sender.
    #[error(
        "no sender key {key_id} is held for this sender: its distribution has not arrived or was evicted, or the message is from another sender"
    )]
    UnknownSenderKey {
        /// The sender-key id named by the message.
        key_id: u32,
    },
    /// The signature does not verify under the sender key's signing key: the message was
    /// altered or forged (possibly by another member, who knows the chain key).
    #[error("the group message's signature does not verify: it was altered or forged")]
    ForgedSignature,
    /// The signature verified but the ciphertext did not decrypt: the sender itself produced
    /// a bad message.
    #[error("the group message is signed by the sender but its ciphertext does not decrypt")]
    AuthenticationFailed,
    /// This message was already decrypted.
    #[error(
        "duplicate group message: iteration {iteration} of sender key {key_id} was already decrypted"
    )]
    Duplicate {
        /// The sender-key id.
        key_id: u32,
        /// The message's iteration.
        iteration: u32,
    },
    /// The message's key was dropped to keep at most the configured number of stored keys
    /// (or the message was decrypted before that): it can no longer be read.
    #[error(
        "group message {iteration} of sender key {key_id} is too old: its key was evicted to keep at most {max} stored keys"
    )]
    KeyEvicted {
        /// The sender-key id.
        key_id: u32,
        /// The message's iteration.
        iteration: u32,
        /// The configured number of stored message keys per sender key.
        max: usize,
    },
    /// The message precedes the sender key's distribution to this device (for example it
    /// was sent before this device joined the group): it was never readable here.
    #[error(
        "group message {iteration} of sender key {key_id} was sent before this device received that key (from iteration {first})"
    )]
    BeforeDistribution {
        /// The sender-key id.
        key_id: u32,
        /// The message's iteration.
        iteration: u32,
        /// The first iteration readable here.
        first: u32,
    },
    /// The message is further ahead of the last one received than the configured limit.
    #[error(
        "group message {iteration} is {jump} messages ahead of the next expected one ({expected}); at most {max} are allowed"
    )]
    TooFarAhead {
        /// The message's iteration.
        iteration: u32,
        /// The next iteration expected in order.
        expected: u32,
        /// How many message keys would have to be skipped.
        jump: u32,
        /// The configured limit.
        max: u32,
    },
    /// A distribution names a sender-key id already held with another signing key.
    #[error(
        "a distribution for sender key {key_id} carries a different signing key than the one held"
    )]
    ConflictingSenderKey {
        /// The sender-key id.
        key_id: u32,
    },
    /// The plaintext is larger than AES-256-GCM can encrypt under one key (about 64 GiB).
    #[error("the group message is too large for AES-256-GCM")]
    MessageTooLarge,
    /// The sender key has sent its last message (iteration 2^32 - 2); rotate it.
    #[error("the sender key is exhausted (2^32 - 1 messages); rotate it")]
    ChainExhausted,
}
