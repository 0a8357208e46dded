//! Group messaging with sender keys (docs/PROTOCOL.md section 16).
//!
//! Each device that sends to a group holds a [`GroupSender`] for it: a chain key, the
//! iteration of its next message and an Ed25519 signing key. It hands the chain key and the
//! public signing key to every other member device as a [`GroupDistribution`], inside
//! pairwise-encrypted content; after that, each group message is encrypted once (AES-256-GCM
//! under a key derived from the chain) and signed once, whatever the size of the group.
//! Each receiving device keeps a [`GroupReceiver`] per (group, sender device), holding a
//! bounded number of that sender's keys (generations) and of keys for messages that have
//! not arrived yet ([`GroupLimits`]).
//!
//! Removing a member means every remaining device [rotates](GroupSender::rotate) its sender
//! key and distributes the new one to the remaining members only. A new member receives the
//! current sender keys, at their current iteration: it cannot read earlier messages.
//!
//! This is the sans-IO core: it does not know addresses, sessions or storage. Every failed
//! call leaves the state exactly as it was.
//!
//! ```
//! use ratchetbox::group::{GroupDistribution, GroupId, GroupLimits, GroupMessage, GroupReceiver, GroupSender};
//!
//! let mut rng = ratchetbox::OsRng::new();
//! let group = GroupId::random(&mut rng);
//!
//! // Alice creates her sender key and sends its distribution to Bob (pairwise-encrypted).
//! let mut alice = GroupSender::new(&mut rng, group);
//! let distribution = alice.distribution().to_bytes();
//!
//! // Bob takes it in.
//! let limits = GroupLimits::default();
//! let mut bob_from_alice = GroupReceiver::new(group);
//! bob_from_alice.process_distribution(&GroupDistribution::from_bytes(&distribution)?, &limits)?;
//!
//! // One message for the whole group.
//! let wire = alice.encrypt(b"hello group")?.to_bytes();
//! let message = GroupMessage::from_bytes(&wire)?;
//! assert_eq!(bob_from_alice.decrypt(&message, &limits)?.as_slice(), b"hello group");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chain;
mod distribution;
mod error;
mod message;
mod state;

#[cfg(test)]
mod tests;

use core::fmt;

use rand_core::CryptoRng;

pub use distribution::GroupDistribution;
pub use error::GroupError;
pub use message::GroupMessage;
pub use state::{GroupReceiver, GroupSender};

/// Length of a group id.
pub const GROUP_ID_LEN: usize = 32;

/// Names a group: 32 bytes, drawn at random by its creator.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub(crate) [u8; GROUP_ID_LEN]);

impl GroupId {
    /// A fresh random group id.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; GROUP_ID_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The group id with these bytes.
    pub fn from_bytes(bytes: [u8; GROUP_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; GROUP_ID_LEN] {
        &self.0
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupId(")?;
        crate::keys::write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

/// The id in hex, as error messages show it to people.
impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::keys::write_hex(f, &self.0)
    }
}

/// How much a [`GroupReceiver`] keeps per sender. The defaults are libsignal's
/// (rust/protocol/src/consts.rs: `MAX_SENDER_KEY_STATES`, `MAX_MESSAGE_KEYS`,
/// `MAX_FORWARD_JUMPS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Sender keys (generations) kept per sender device; the oldest is dropped when a new
    /// one arrives beyond this. At least 1 (0 is treated as 1). Default 5.
    pub max_generations: usize,
    /// Keys kept per sender key for messages that have not arrived yet; the lowest
    /// iterations are dropped beyond this. Default 2,000.
    pub max_message_keys: usize,
    /// How far ahead of the next expected message a message may be (the number of message
    /// keys skipped to reach it). Default 25,000.
    pub max_forward_jumps: u32,
}

/// Default of [`GroupLimits::max_generations`].
pub const DEFAULT_MAX_GENERATIONS: usize = 5;
/// Default of [`GroupLimits::max_message_keys`].
pub const DEFAULT_MAX_MESSAGE_KEYS: usize = 2_000;
/// Default of [`GroupLimits::max_forward_jumps`].
pub const DEFAULT_MAX_FORWARD_JUMPS: u32 = 25_000;

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            max_generations: DEFAULT_MAX_GENERATIONS,
            max_message_keys: DEFAULT_MAX_MESSAGE_KEYS,
            max_forward_jumps: DEFAULT_MAX_FORWARD_JUMPS,
        }
    }
}
