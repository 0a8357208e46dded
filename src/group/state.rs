//! Sender-key state: this device's [`GroupSender`] per group, and a [`GroupReceiver`] per
//! (group, sender device) (docs/PROTOCOL.md 16.5 and 16.6).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::error::DecodeError;
use crate::kdf::LABEL_GROUP_SIGNATURE;
use crate::keys::{IdentityKey, IdentityKeyPair, KEY_LEN, SecretBytes};
use crate::wire::{self, generated};

use super::chain::{self, SenderChain};
use super::{GroupDistribution, GroupError, GroupId, GroupLimits, GroupMessage};

/// This device's sender key for one group: the group, the key id, the chain key at the next
/// message's iteration and the Ed25519 signing key. Secret: wiped on drop, never shown by
/// `Debug`.
pub struct GroupSender {
    group_id: GroupId,
    key_id: u32,
    pub(super) chain: SenderChain,
    pub(super) signing: IdentityKeyPair,
}

impl GroupSender {
    /// A fresh sender key for `group_id`: a random key id, chain key and signing key, at
    /// iteration 0.
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R, group_id: GroupId) -> Self {
        let key_id = rng.next_u32();
        Self::fresh(rng, group_id, key_id)
    }

    pub(super) fn fresh<R: CryptoRng + ?Sized>(
        rng: &mut R,
        group_id: GroupId,
        key_id: u32,
    ) -> Self {
        let mut chain_key = SecretBytes([0u8; KEY_LEN]);
        rng.fill_bytes(&mut chain_key.0);
        Self {
            group_id,
            key_id,
            chain: SenderChain {
                iteration: 0,
                key: chain_key,
            },
            signing: IdentityKeyPair::generate(rng),
        }
    }

    /// The next sender key of this device for the same group: key id + 1 (mod 2^32), a fresh
    /// chain key and signing key, at iteration 0. Nothing derived from this key reveals the
    /// next one: a device removed from the group cannot read messages under it.
    pub fn rotate<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Self {
        Self::fresh(rng, self.group_id, self.key_id.wrapping_add(1))
    }

    /// The group.
    pub fn group_id(&self) -> &GroupId {
        &self.group_id
    }

    /// The sender key's id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The iteration of the next message.
    pub fn iteration(&self) -> u32 {
        self.chain.iteration
    }

    /// The distribution message for this sender key at its current iteration: a device that
    /// processes it reads this device's messages from the next one on, not earlier ones.
    pub fn distribution(&self) -> GroupDistribution {
        GroupDistribution {
            group_id: self.group_id,
            key_id: self.key_id,
            iteration: self.chain.iteration,
            chain_key: self.chain.key.clone(),
            signing_key: self.signing.public_key(),
        }
    }

    /// Encrypts and signs one message for the whole group; the chain moves forward.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<GroupMessage, GroupError> {
        if self.chain.iteration == u32::MAX {
            return Err(GroupError::ChainExhausted);
        }
        let iteration = self.chain.iteration;
        let mut next = self.chain.clone();
        let seed = next.step();
        let ciphertext = chain::seal(&seed, &self.group_id, self.key_id, iteration, plaintext)
            .map_err(|_| GroupError::MessageTooLarge)?;
        let signing = &self.signing;
        let message = GroupMessage::seal(&self.group_id, self.key_id, iteration, ciphertext, |m| {
            sign(signing, m)
        });
        self.chain = next;
        Ok(message)
    }

    /// The persisted form, `0x01 || GroupSenderState` (secret: seal it before storing).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let proto = generated::GroupSenderState {
            group_id: self.group_id.0.to_vec(),
            key_id: self.key_id,
            iteration: self.chain.iteration,
            chain_key: self.chain.key.0.to_vec(),
            signing_seed: self.signing.seed().to_vec(),
        };
        Zeroizing::new(wire::encode(&proto))
    }

    /// Restores the persisted form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        const OBJECT: &str = "group sender state";
        let proto: generated::GroupSenderState = wire::decode(bytes, OBJECT)?;
        let group_id = GroupId(wire::fixed::<32>(&proto.group_id, OBJECT, "group_id")?);
        let chain_key = SecretBytes(wire::fixed::<32>(&proto.chain_key, OBJECT, "chain_key")?);
        let seed = Zeroizing::new(wire::fixed::<32>(
            &proto.signing_seed,
            OBJECT,
            "signing_seed",
        )?);
        Ok(Self {
            group_id,
            key_id: proto.key_id,
            chain: SenderChain {
                iteration: proto.iteration,
                key: chain_key,
            },
            signing: IdentityKeyPair::from_seed(&seed),
        })
    }
}

fn sign(signing: &IdentityKeyPair, signed_part: &[u8]) -> [u8; 64] {
    let mut message = Vec::with_capacity(LABEL_GROUP_SIGNATURE.len() + signed_part.len());
    message.extend_from_slice(LABEL_GROUP_SIGNATURE);
    message.extend_from_slice(signed_part);
    signing.sign(&message)
}

#[cfg(test)]
pub(super) fn sign_for_tests(sender: &GroupSender, signed_part: &[u8]) -> [u8; 64] {
    sign(&sender.signing, signed_part)
}

impl fmt::Debug for GroupSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupSender")
            .field("group_id", &self.group_id)
            .field("key_id", &self.key_id)
            .field("iteration", &self.chain.iteration)
            .field("signing_key", &self.signing.public_key())
            .finish_non_exhaustive()
    }
}

/// One sender key of another device, as this device holds it.
#[derive(Clone)]
struct Generation {
    key_id: u32,
    signing_key: IdentityKey,
    /// The chain at the next iteration not yet received in order.
    chain: SenderChain,
    /// Seeds of messages below `chain.iteration` not yet received, in increasing iteration
    /// order.
    skipped: VecDeque<(u32, SecretBytes)>,
    /// Every iteration below this that is not in `skipped` was evicted (or used).
    evicted_below: u32,
    /// The iteration of the distribution: earlier messages were never readable here.
    first_iteration: u32,
}

/// What this device holds of one other device's sender keys in one group: up to
/// [`GroupLimits::max_generations`] of them, newest first. Secret: wiped on drop, never
/// shown by `Debug`.
#[derive(Clone)]
pub struct GroupReceiver {
    group_id: GroupId,
    generations: Vec<Generation>,
}

impl GroupReceiver {
    /// No sender key yet for `group_id`.
    pub fn new(group_id: GroupId) -> Self {
        Self {
            group_id,
            generations: Vec::new(),
        }
    }

    /// The group.
    pub fn group_id(&self) -> &GroupId {
        &self.group_id
    }

    /// Whether the sender key `key_id` is held.
    pub fn has_key(&self, key_id: u32) -> bool {
        self.generations.iter().any(|g| g.key_id == key_id)
    }

    /// The ids of the sender keys held, newest first.
    pub fn key_ids(&self) -> Vec<u32> {
        self.generations.iter().map(|g| g.key_id).collect()
    }

    /// Takes in a sender key received (through a pairwise session) from the sender device
    /// this receiver is for. Returns `true` if it was new; a sender key already held with the
    /// same signing key changes nothing and returns `false`. A new one becomes the newest;
    /// beyond [`GroupLimits::max_generations`] the oldest is dropped.
    pub fn process_distribution(
        &mut self,
        distribution: &GroupDistribution,
        limits: &GroupLimits,
    ) -> Result<bool, GroupError> {
        if distribution.group_id != self.group_id {
            return Err(GroupError::WrongGroup);
        }
        if let Some(held) = self
            .generations
            .iter()
            .find(|g| g.key_id == distribution.key_id)
        {
            if held.signing_key != distribution.signing_key {
                return Err(GroupError::ConflictingSenderKey {
                    key_id: distribution.key_id,
                });
            }
            return Ok(false);
        }
        self.generations.insert(
            0,
            Generation {
                key_id: distribution.key_id,
                signing_key: distribution.signing_key,
                chain: SenderChain {
                    iteration: distribution.iteration,
                    key: distribution.chain_key.clone(),
                },
                skipped: VecDeque::new(),
                evicted_below: distribution.iteration,
                first_iteration: distribution.iteration,
            },
        );
        self.generations.truncate(limits.max_generations.max(1));
        Ok(true)
    }

    /// Verifies and decrypts a group message from the sender device this receiver is for.
    /// Messages may arrive out of order and be missing within `limits`; on any error the
    /// state is unchanged.
    pub fn decrypt(
        &mut self,
        message: &GroupMessage,
        limits: &GroupLimits,
    ) -> Result<Zeroizing<Vec<u8>>, GroupError> {
        if message.group_id() != &self.group_id {
            return Err(GroupError::WrongGroup);
        }
        let key_id = message.key_id();
        let iteration = message.iteration();
        let index = self
            .generations
            .iter()
            .position(|g| g.key_id == key_id)
            .ok_or(GroupError::UnknownSenderKey { key_id })?;
        let generation = &self.generations[index];
        let mut signed =
            Vec::with_capacity(LABEL_GROUP_SIGNATURE.len() + message.signed_part().len());
        signed.extend_from_slice(LABEL_GROUP_SIGNATURE);
        signed.extend_from_slice(message.signed_part());
        if !generation.signing_key.verify(&signed, message.signature()) {
            return Err(GroupError::ForgedSignature);
        }

        if iteration < generation.chain.iteration {
            let position = generation
                .skipped
                .binary_search_by_key(&iteration, |(i, _)| *i)
                .map_err(|_| {
                    if iteration < generation.first_iteration {
                        GroupError::BeforeDistribution {
                            key_id,
                            iteration,
                            first: generation.first_iteration,
                        }
                    } else if iteration < generation.evicted_below {
                        GroupError::KeyEvicted {
                            key_id,
                            iteration,
                            max: limits.max_message_keys,
                        }
                    } else {
                        GroupError::Duplicate { key_id, iteration }
                    }
                })?;
            let seed = &generation.skipped[position].1;
            let plaintext = chain::open(
                seed,
                &self.group_id,
                key_id,
                iteration,
                message.ciphertext(),
            )
            .map_err(|_| GroupError::AuthenticationFailed)?;
            self.generations[index].skipped.remove(position);
            return Ok(plaintext);
        }

        let expected = generation.chain.iteration;
        let jump = iteration - expected;
        if jump > limits.max_forward_jumps {
            return Err(GroupError::TooFarAhead {
                iteration,
                expected,
                jump,
                max: limits.max_forward_jumps,
            });
        }
        // Walk a copy of the chain; keep the seeds of the skipped messages that will be
        // stored (the newest `max_message_keys`), skip the others' seeds entirely.
        let mut walk = generation.chain.clone();
        let keep_from =
            iteration.saturating_sub(u32::try_from(limits.max_message_keys).unwrap_or(u32::MAX));
        let mut new_skipped = Vec::new();
        while walk.iteration < iteration {
            if walk.iteration >= keep_from {
                let at = walk.iteration;
                new_skipped.push((at, walk.step()));
            } else {
                walk.skip();
            }
        }
        let seed = walk.step();
        let plaintext = chain::open(
            &seed,
            &self.group_id,
            key_id,
            iteration,
            message.ciphertext(),
        )
        .map_err(|_| GroupError::AuthenticationFailed)?;

        // Authentic: commit.
        let generation = &mut self.generations[index];
        if keep_from > expected {
            generation.evicted_below = generation.evicted_below.max(keep_from);
        }
        generation.chain = walk;
        generation.skipped.extend(new_skipped);
        while generation.skipped.len() > limits.max_message_keys {
            if let Some((evicted, _)) = generation.skipped.pop_front() {
                generation.evicted_below = generation.evicted_below.max(evicted + 1);
            }
        }
        Ok(plaintext)
    }

    /// The persisted form, `0x01 || GroupReceiverState` (secret: seal it before storing).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let proto = generated::GroupReceiverState {
            group_id: self.group_id.0.to_vec(),
            generations: self
                .generations
                .iter()
                .map(|g| generated::GroupReceiverGeneration {
                    key_id: g.key_id,
                    iteration: g.chain.iteration,
                    chain_key: g.chain.key.0.to_vec(),
                    signing_key: g.signing_key.to_bytes().to_vec(),
                    skipped: g
                        .skipped
                        .iter()
                        .map(|(iteration, seed)| generated::GroupSkippedKey {
                            iteration: *iteration,
                            seed: seed.0.to_vec(),
                        })
                        .collect(),
                    evicted_below: g.evicted_below,
                    first_iteration: g.first_iteration,
                })
                .collect(),
        };
        Zeroizing::new(wire::encode(&proto))
    }

    /// Restores the persisted form, checking its invariants (distinct key ids, skipped
    /// iterations increasing and below the chain's, `evicted_below` not above it).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        const OBJECT: &str = "group receiver state";
        let proto: generated::GroupReceiverState = wire::decode(bytes, OBJECT)?;
        let group_id = GroupId(wire::fixed::<32>(&proto.group_id, OBJECT, "group_id")?);
        let mut generations: Vec<Generation> = Vec::with_capacity(proto.generations.len());
        for g in &proto.generations {
            if generations.iter().any(|held| held.key_id == g.key_id) {
                return Err(invalid(
                    OBJECT,
                    "generations",
                    "two generations share a key id",
                ));
            }
            let mut skipped = VecDeque::with_capacity(g.skipped.len());
            let mut previous: Option<u32> = None;
            for s in &g.skipped {
                if previous.is_some_and(|p| s.iteration <= p) || s.iteration >= g.iteration {
                    return Err(invalid(
                        OBJECT,
                        "skipped",
                        "iterations must increase and stay below the chain's",
                    ));
                }
                previous = Some(s.iteration);
                skipped.push_back((
                    s.iteration,
                    SecretBytes(wire::fixed::<32>(&s.seed, OBJECT, "skipped.seed")?),
                ));
            }
            if g.evicted_below > g.iteration || g.first_iteration > g.evicted_below {
                return Err(invalid(
                    OBJECT,
                    "evicted_below",
                    "must lie between first_iteration and the chain's iteration",
                ));
            }
            if skipped.front().is_some_and(|(i, _)| *i < g.evicted_below) {
                return Err(invalid(
                    OBJECT,
                    "skipped",
                    "a kept key lies below evicted_below",
                ));
            }
            generations.push(Generation {
                key_id: g.key_id,
                signing_key: wire::identity_key(&g.signing_key, OBJECT, "signing_key")?,
                chain: SenderChain {
                    iteration: g.iteration,
                    key: SecretBytes(wire::fixed::<32>(&g.chain_key, OBJECT, "chain_key")?),
                },
                skipped,
                evicted_below: g.evicted_below,
                first_iteration: g.first_iteration,
            });
        }
        Ok(Self {
            group_id,
            generations,
        })
    }
}

fn invalid(object: &'static str, field: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::InvalidValue {
        object,
        field,
        reason,
    }
}

impl fmt::Debug for GroupReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_struct("GroupReceiver");
        list.field("group_id", &self.group_id);
        list.field("key_ids", &self.key_ids());
        list.finish_non_exhaustive()
    }
}
