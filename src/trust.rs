//! What a record knows about its peer's identity key: which key the conversation was built
//! with, whether the user verified it, and the typed outcome when it changes.

use core::fmt;

use crate::error::FingerprintError;
use crate::fingerprint::SafetyNumber;
use crate::keys::IdentityKey;
use crate::wire::generated as pb;

/// How far the app trusts a peer's identity key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trust {
    /// The key was accepted the first time it was seen, without verification (trust on
    /// first use).
    FirstUse,
    /// The user compared safety numbers (or scanned the peer's code) and marked the key
    /// verified.
    Verified,
    /// The peer's key changed and the user accepted the new key, but has not verified it.
    /// A verified contact whose key changes drops to this level.
    Changed,
}

/// The peer's identity key as the record knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    key: IdentityKey,
    trust: Trust,
}

impl PeerIdentity {
    pub(crate) fn first_use(key: IdentityKey) -> Self {
        Self {
            key,
            trust: Trust::FirstUse,
        }
    }

    /// The identity key.
    pub fn key(&self) -> IdentityKey {
        self.key
    }

    /// The trust level.
    pub fn trust(&self) -> Trust {
        self.trust
    }

    pub(crate) fn verify(&mut self) {
        self.trust = Trust::Verified;
    }

    pub(crate) fn changed_to(key: IdentityKey) -> Self {
        Self {
            key,
            trust: Trust::Changed,
        }
    }

    pub(crate) fn to_proto(self) -> pb::PeerIdentity {
        pb::PeerIdentity {
            identity_key: self.key.to_bytes().to_vec(),
            trust: match self.trust {
                Trust::FirstUse => pb::TrustLevel::FirstUse,
                Trust::Verified => pb::TrustLevel::Verified,
                Trust::Changed => pb::TrustLevel::Changed,
            }
            .into(),
        }
    }

    pub(crate) fn from_proto(p: &pb::PeerIdentity) -> Result<Self, crate::error::DecodeError> {
        const OBJECT: &str = "PeerIdentity";
        let key = crate::wire::stored_identity_key(&p.identity_key, OBJECT, "identity_key")?;
        let trust = match pb::TrustLevel::try_from(p.trust) {
            Ok(pb::TrustLevel::FirstUse) => Trust::FirstUse,
            Ok(pb::TrustLevel::Verified) => Trust::Verified,
            Ok(pb::TrustLevel::Changed) => Trust::Changed,
            _ => {
                return Err(crate::error::DecodeError::InvalidValue {
                    object: OBJECT,
                    field: "trust",
                    reason: "not a known trust level",
                });
            }
        };
        Ok(Self { key, trust })
    }
}

/// The peer presented a different identity key than the one this conversation was built
/// with. ratchetbox never replaces the key silently: the app shows the change (with the old
/// and new safety numbers) and, if the user accepts it,
/// [`SessionRecord::accept_identity_change`](crate::SessionRecord::accept_identity_change)
/// installs the new key at trust level [`Trust::Changed`], and the same message or bundle can
/// be used again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityChange {
    previous: PeerIdentity,
    new: IdentityKey,
}

impl IdentityChange {
    pub(crate) fn new(previous: PeerIdentity, new: IdentityKey) -> Self {
        Self { previous, new }
    }

    /// The key the conversation was built with, and how far it was trusted.
    pub fn previous(&self) -> PeerIdentity {
        self.previous
    }

    /// The key the peer presents now.
    pub fn new_key(&self) -> IdentityKey {
        self.new
    }

    /// The safety numbers before and after the change, to show side by side. `local_id` and
    /// `remote_id` are the stable identifiers the app uses for safety numbers.
    pub fn safety_numbers(
        &self,
        local_id: &[u8],
        local_key: &IdentityKey,
        remote_id: &[u8],
    ) -> Result<(SafetyNumber, SafetyNumber), FingerprintError> {
        Ok((
            SafetyNumber::new(local_id, local_key, remote_id, &self.previous.key)?,
            SafetyNumber::new(local_id, local_key, remote_id, &self.new)?,
        ))
    }
}

impl fmt::Display for IdentityChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the peer's identity key changed from {} ({}) to {}",
            self.previous.key,
            trust_in_words(self.previous.trust),
            self.new
        )
    }
}

/// How far the previous key was trusted, in words for messages (never the `Debug` form).
fn trust_in_words(trust: Trust) -> &'static str {
    match trust {
        Trust::FirstUse => "trusted on first use",
        Trust::Verified => "verified",
        Trust::Changed => "accepted after a change, not verified",
    }
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::String;

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::keys::IdentityKeyPair;

    fn hex(key: &IdentityKey) -> String {
        key.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The message names the previous trust level in words, not as `Debug` (`Verified`).
    #[test]
    fn identity_change_message_names_the_trust_level_in_words() {
        let mut rng = ChaCha20Rng::seed_from_u64(14);
        let old = IdentityKeyPair::generate(&mut rng).public_key();
        let new = IdentityKeyPair::generate(&mut rng).public_key();
        for (trust, words) in [
            (Trust::FirstUse, "trusted on first use"),
            (Trust::Verified, "verified"),
            (Trust::Changed, "accepted after a change, not verified"),
        ] {
            let change = IdentityChange::new(PeerIdentity { key: old, trust }, new);
            assert_eq!(
                format!("{change}"),
                format!(
                    "the peer's identity key changed from {} ({words}) to {}",
                    hex(&old),
                    hex(&new)
                )
            );
        }
    }
}
