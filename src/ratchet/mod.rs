//! The Double Ratchet state machine (Signal's Double Ratchet specification).
//!
//! Root chain: KDF_RK = HKDF-SHA256 keyed by the root key. Symmetric chains: KDF_CK = HMAC-SHA256
//! with inputs 0x01 (message key) and 0x02 (next chain key). Messages: AES-256-GCM under the
//! message key with a fresh random 96-bit nonce carried in the header, and associated data
//! `AD || header` (see [`RatchetHeader::authenticated_bytes`]).
//!
//! One deliberate difference from the specification: a new ratchet key pair is generated when
//! the first message of a new sending chain is *sent*, not when the peer's new ratchet key
//! arrives. The private key that receiving needs is then used once and erased, so a stolen
//! copy of the state holds no private key for the next sending chain and is locked out after
//! one round trip instead of one and a half.
//!
//! Decryption is transactional: everything is computed on copies and committed only after the
//! AES-GCM tag verified. A failed call leaves the state exactly as it was.

pub(crate) mod chain;
pub(crate) mod skipped;

use alloc::boxed::Box;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use zeroize::Zeroize;

use self::chain::{ChainKey, MessageKey, RootKey};
use self::skipped::{Missing, PendingKeys, SkippedKeys, SlotId};
use crate::aead::{NONCE_LEN, split_tag};
use crate::config::SessionConfig;
use crate::error::{DecodeError, DecryptError, EncryptError};
use crate::keys::{SecretBytes, X25519KeyPair, X25519PublicKey};
use crate::time::Timestamp;
use crate::wire::generated as pb;
use crate::wire::message::{InitialSetup, MessageWriter, RatchetHeader, RatchetMessage};
use crate::x3dh::ASSOCIATED_DATA_LEN;

/// The largest plaintext AES-GCM can encrypt under one nonce: 2^36 - 32 bytes. It counts
/// the kind byte in front of every plaintext (PROTOCOL.md section 11).
const MAX_PLAINTEXT_LEN: u64 = (1 << 36) - 32;

/// Whether a plaintext of `prefix_len + body_len` bytes fits in one message; the error
/// names the caller's part, `body_len`.
fn check_plaintext_len(prefix_len: usize, body_len: usize) -> Result<usize, EncryptError> {
    let too_large = EncryptError::MessageTooLarge { len: body_len };
    let total = prefix_len.checked_add(body_len).ok_or(too_large.clone())?;
    if total as u64 > MAX_PLAINTEXT_LEN {
        return Err(too_large);
    }
    Ok(total)
}

/// What a decryption does with its plaintext before anything is committed: a check that,
/// if it fails, fails the decryption with the state unchanged (used to validate message
/// content), and where the plaintext is written.
pub(crate) trait Acceptor {
    /// Checks the decrypted plaintext.
    fn check(&mut self, plaintext: &[u8]) -> Result<(), DecryptError>;

    /// The buffer to decrypt into; its contents are overwritten. A new one by default.
    fn buffer(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// Takes back the buffer of a decryption that failed, wiped and empty, so that a retry
    /// (another session of the record) reuses it. By default it is dropped.
    fn recycle(&mut self, _buffer: Vec<u8>) {}
}

/// A closure is a check that decrypts into a new buffer.
impl<F: FnMut(&[u8]) -> Result<(), DecryptError>> Acceptor for F {
    fn check(&mut self, plaintext: &[u8]) -> Result<(), DecryptError> {
        self(plaintext)
    }
}

/// See [`Acceptor`].
pub(crate) type Accept<'a> = &'a mut dyn Acceptor;

/// Which bound applies to a message that would start a new receiving chain in a session
/// (PROTOCOL.md section 6.7): the current session may skip up to
/// [`SessionConfig::max_skip`], a previous one only up to
/// [`SessionConfig::max_skip_previous`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Budget {
    /// The record's current session (or a session on its own).
    Current,
    /// A previous session of a record.
    Previous,
}

/// Work done for a message before its authentication tag was checked: what a forged message
/// can cost. Counted by every decryption; the record's unit tests check the bound with it.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct Work {
    /// Chain-key steps (KDF_CK or its chain-key half).
    pub(crate) chain_steps: u64,
    /// X25519 operations (each followed by one KDF_RK).
    pub(crate) dh: u64,
}

/// Length of the full associated data: X3DH AD followed by the authenticated header.
const FULL_AD_LEN: usize = ASSOCIATED_DATA_LEN + RatchetHeader::AUTHENTICATED_LEN;

#[derive(Clone)]
struct SendingChain {
    key_pair: X25519KeyPair,
    chain: ChainKey,
    /// Number of the next message to send.
    counter: u32,
}

/// Our side of the DH ratchet.
#[derive(Clone)]
enum OurRatchet {
    /// No key pair: the next message sent starts a new sending chain with a fresh key pair.
    Idle,
    /// A key pair that is not yet sending (a responder's signed prekey, until the initial
    /// message has been received).
    KeyOnly(X25519KeyPair),
    Sending(SendingChain),
}

#[derive(Clone)]
struct ReceivingChain {
    chain: ChainKey,
    /// Number of the next message expected.
    counter: u32,
}

#[derive(Clone)]
pub(crate) struct Ratchet {
    root: RootKey,
    ours: OurRatchet,
    /// The peer's current ratchet public key (for an initiator, at first the signed prekey).
    their_key: Option<X25519PublicKey>,
    /// The receiving chain of `their_key`, once a message on it arrived.
    receiving: Option<ReceivingChain>,
    previous_sending_length: u32,
    skipped: SkippedKeys,
    config: SessionConfig,
}

fn too_far_ahead(counter: u32, skip: u64, config: &SessionConfig) -> DecryptError {
    DecryptError::TooFarAhead {
        counter,
        skip,
        max_skip: config.max_skip(),
    }
}

impl Ratchet {
    /// The initiator's ratchet: root key SK, and the responder's signed prekey as its first
    /// remote ratchet key. The first sending chain starts with the first message.
    pub(crate) fn new_initiator(
        shared_secret: SecretBytes,
        their_signed_prekey: X25519PublicKey,
        config: SessionConfig,
    ) -> Self {
        Self {
            root: RootKey::new(shared_secret),
            ours: OurRatchet::Idle,
            their_key: Some(their_signed_prekey),
            receiving: None,
            previous_sending_length: 0,
            skipped: SkippedKeys::new(config.max_skipped_keys_usize()),
            config,
        }
    }

    /// The responder's ratchet: root key SK, and the signed prekey as its ratchet key pair
    /// until the initiator's first ratchet key arrives.
    pub(crate) fn new_responder(
        shared_secret: SecretBytes,
        signed_prekey: X25519KeyPair,
        config: SessionConfig,
    ) -> Self {
        Self {
            root: RootKey::new(shared_secret),
            ours: OurRatchet::KeyOnly(signed_prekey),
            their_key: None,
            receiving: None,
            previous_sending_length: 0,
            skipped: SkippedKeys::new(config.max_skipped_keys_usize()),
            config,
        }
    }

    pub(crate) fn config(&self) -> SessionConfig {
        self.config
    }

    /// Number of skipped message keys currently stored.
    pub(crate) fn skipped_keys(&self) -> usize {
        self.skipped.len()
    }

    pub(crate) fn prune_skipped_keys(&mut self, stored_before: Timestamp) -> usize {
        self.skipped.prune_stored_before(stored_before)
    }

    /// The store of skipped keys.
    pub(crate) fn skipped_store(&self) -> &SkippedKeys {
        &self.skipped
    }

    /// The store of skipped keys, to take its journal or load its rows.
    pub(crate) fn skipped_store_mut(&mut self) -> &mut SkippedKeys {
        &mut self.skipped
    }

    /// Whether a message with this header is on a chain this session knows: its current
    /// receiving chain, a chain with the message's key stored, or a remembered finished
    /// chain. Only such a session can decrypt it without a DH ratchet step.
    pub(crate) fn knows_chain(&self, header: &RatchetHeader) -> bool {
        let key = header.ratchet_key;
        (self.their_key == Some(key) && self.receiving.is_some())
            || self
                .skipped
                .get(&SlotId {
                    ratchet_key: key,
                    counter: header.counter,
                })
                .is_some()
            || self.skipped.finished_chain(&key).is_some()
    }

    /// Whether this session holds a ratchet key pair, without which a message on a new chain
    /// cannot be for it.
    pub(crate) fn can_start_chain(&self) -> bool {
        matches!(self.ours, OurRatchet::KeyOnly(_) | OurRatchet::Sending(_))
    }

    /// Encrypts one message whose plaintext is `prefix || body` (the prefix is the kind
    /// byte, or empty when `body` already starts with it). `setup` is written in front of it
    /// while the initiator has not heard back.
    pub(crate) fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        associated_data: &[u8; ASSOCIATED_DATA_LEN],
        version: u8,
        setup: Option<&InitialSetup>,
        prefix: &[u8],
        body: &[u8],
    ) -> Result<Vec<u8>, EncryptError> {
        let plaintext_len = check_plaintext_len(prefix.len(), body.len())?;
        if let OurRatchet::Sending(s) = &self.ours
            && s.counter == u32::MAX
        {
            return Err(EncryptError::ChainExhausted);
        }
        let sending = self.sending_chain(rng)?;
        let message_key = sending.chain.next_message_key();
        let counter = sending.counter;
        sending.counter += 1; // < u32::MAX, checked above
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let header = RatchetHeader {
            version,
            ratchet_key: sending.key_pair.public_key(),
            counter,
            previous_counter: self.previous_sending_length,
            nonce,
        };
        let ad = full_associated_data(associated_data, &header);
        let cipher = message_key.cipher();
        let (mut writer, sealed) = if prefix.is_empty() {
            // Straight from the caller's buffer into the message.
            let mut writer = MessageWriter::new(setup, &header, plaintext_len);
            let (payload, _) = writer.payload_and_tag_mut();
            let sealed = cipher.seal_into(&nonce, &ad, body, payload);
            (writer, sealed)
        } else {
            // The plaintext is assembled in the message buffer (written once, not zeroed
            // first) and encrypted there; should that fail, no copy of it is left behind.
            let mut writer = MessageWriter::with_plaintext(setup, &header, prefix, body);
            let (payload, _) = writer.payload_and_tag_mut();
            let sealed = cipher.seal_in_place(&nonce, &ad, payload);
            if sealed.is_err() {
                payload.zeroize();
            }
            (writer, sealed)
        };
        let (_, tag_out) = writer.payload_and_tag_mut();
        let tag = sealed.map_err(|_| EncryptError::MessageTooLarge { len: body.len() })?;
        tag_out.copy_from_slice(&tag);
        Ok(writer.finish())
    }

    /// The current sending chain, starting a new one (fresh key pair, DH ratchet step) if the
    /// conversation has turned since we last sent.
    fn sending_chain<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
    ) -> Result<&mut SendingChain, EncryptError> {
        if !matches!(self.ours, OurRatchet::Sending(_)) {
            let their_key = self.their_key.ok_or(EncryptError::NotReady)?;
            let key_pair = X25519KeyPair::generate(rng);
            let dh = key_pair
                .diffie_hellman(&their_key.to_dalek())
                .map_err(|_| EncryptError::LowOrderKey)?;
            let (root, chain) = self.root.advance(&dh);
            self.root = root;
            self.ours = OurRatchet::Sending(SendingChain {
                key_pair,
                chain,
                counter: 0,
            });
        }
        match &mut self.ours {
            OurRatchet::Sending(s) => Ok(s),
            OurRatchet::Idle | OurRatchet::KeyOnly(_) => Err(EncryptError::NotReady),
        }
    }

    /// Decrypts one message into a new buffer (the only allocation on the steady-state path).
    /// `budget` bounds a new chain's skip; the work done before the tag is checked is added
    /// to `work`. On failure the state has not changed.
    pub(crate) fn decrypt(
        &mut self,
        associated_data: &[u8; ASSOCIATED_DATA_LEN],
        message: &RatchetMessage<'_>,
        now: Timestamp,
        accept: Accept<'_>,
        budget: Budget,
        work: &mut Work,
    ) -> Result<Vec<u8>, DecryptError> {
        let header = message.header;
        if self.their_key == Some(header.ratchet_key)
            && let Some(receiving) = &self.receiving
        {
            if header.counter >= receiving.counter {
                return self.decrypt_in_current_chain(associated_data, message, now, accept, work);
            }
            return self.decrypt_with_stored_key(associated_data, message, accept);
        }
        let id = SlotId {
            ratchet_key: header.ratchet_key,
            counter: header.counter,
        };
        if self.skipped.get(&id).is_some() {
            return self.decrypt_with_stored_key(associated_data, message, accept);
        }
        if let Some(finished) = self.skipped.finished_chain(&header.ratchet_key) {
            if header.counter < finished.length {
                return Err(self.missing_key_error(&header));
            }
            // A genuine peer never sends past the end of a chain it has left.
            return Err(DecryptError::AuthenticationFailed);
        }
        self.decrypt_in_new_chain(associated_data, message, now, accept, budget, work)
    }

    fn missing_key_error(&self, header: &RatchetHeader) -> DecryptError {
        match self
            .skipped
            .classify_missing(&header.ratchet_key, header.counter)
        {
            Missing::Duplicate => DecryptError::Duplicate {
                counter: header.counter,
            },
            Missing::Expired => DecryptError::Expired {
                counter: header.counter,
            },
        }
    }

    fn decrypt_with_stored_key(
        &mut self,
        associated_data: &[u8; ASSOCIATED_DATA_LEN],
        message: &RatchetMessage<'_>,
        accept: Accept<'_>,
    ) -> Result<Vec<u8>, DecryptError> {
        let id = SlotId {
            ratchet_key: message.header.ratchet_key,
            counter: message.header.counter,
        };
        let key = self
            .skipped
            .get(&id)
            .ok_or_else(|| self.missing_key_error(&message.header))?;
        let plaintext = open(key, associated_data, message, accept)?;
        self.skipped.remove(&id);
        Ok(plaintext)
    }

    fn decrypt_in_current_chain(
        &mut self,
        associated_data: &[u8; ASSOCIATED_DATA_LEN],
        message: &RatchetMessage<'_>,
        now: Timestamp,
        accept: Accept<'_>,
        work: &mut Work,
    ) -> Result<Vec<u8>, DecryptError> {
        let header = message.header;
        let Some(receiving) = &self.receiving else {
            return Err(DecryptError::AuthenticationFailed);
        };
        let skip = header
            .counter
            .checked_sub(receiving.counter)
            .ok_or(DecryptError::AuthenticationFailed)?;
        if skip > self.config.max_skip() {
            return Err(too_far_ahead(header.counter, u64::from(skip), &self.config));
        }
        let next = header
            .counter
            .checked_add(1)
            .ok_or(DecryptError::AuthenticationFailed)?;
        // Before authentication, only walk the chain keys to the message's key; the skipped
        // message keys are derived once the message is known to be authentic.
        let mut chain = receiving.chain.clone();
        skip_chain(&mut chain, skip, work);
        let message_key = chain.next_message_key();
        work.chain_steps += 1;
        let plaintext = open(&message_key, associated_data, message, accept)?;

        let mut pending = PendingKeys::new();
        let mut skipped_chain = receiving.chain.clone();
        derive_skipped(
            &mut skipped_chain,
            header.ratchet_key,
            receiving.counter,
            header.counter,
            &mut pending,
        );
        self.receiving = Some(ReceivingChain {
            chain,
            counter: next,
        });
        self.skipped.insert(pending, now);
        Ok(plaintext)
    }

    fn decrypt_in_new_chain(
        &mut self,
        associated_data: &[u8; ASSOCIATED_DATA_LEN],
        message: &RatchetMessage<'_>,
        now: Timestamp,
        accept: Accept<'_>,
        budget: Budget,
        work: &mut Work,
    ) -> Result<Vec<u8>, DecryptError> {
        let header = message.header;
        let our_key = match &self.ours {
            OurRatchet::KeyOnly(key_pair) | OurRatchet::Sending(SendingChain { key_pair, .. }) => {
                key_pair
            }
            // We have not sent since the peer's last new ratchet key, so a genuine peer cannot
            // have a newer one.
            OurRatchet::Idle => return Err(DecryptError::AuthenticationFailed),
        };
        // Finish the current receiving chain up to the sender's previous chain length.
        let mut finished_length = 0;
        let mut finishing = None;
        if let (Some(their_key), Some(receiving)) = (self.their_key, &self.receiving) {
            let skip = header.previous_counter.saturating_sub(receiving.counter);
            if skip > self.config.max_skip() {
                return Err(too_far_ahead(
                    header.previous_counter,
                    u64::from(skip),
                    &self.config,
                ));
            }
            finishing = Some((their_key, receiving, skip));
            finished_length = receiving.counter.max(header.previous_counter);
        }
        let max_new_chain_skip = match budget {
            Budget::Current => self.config.max_skip(),
            Budget::Previous => self.config.max_skip_previous(),
        };
        if header.counter > max_new_chain_skip {
            return Err(DecryptError::TooFarAhead {
                counter: header.counter,
                skip: u64::from(header.counter),
                max_skip: max_new_chain_skip,
            });
        }
        let next = header
            .counter
            .checked_add(1)
            .ok_or(DecryptError::AuthenticationFailed)?;
        let dh = our_key
            .diffie_hellman(&header.ratchet_key.to_dalek())
            .map_err(|_| DecryptError::LowOrderKey)?;
        work.dh += 1;
        let (root, new_chain) = self.root.advance(&dh);
        // Before authentication, only walk the new chain's keys to the message's key: the
        // skipped keys of both chains are derived once the message is known to be authentic.
        let mut chain = new_chain.clone();
        skip_chain(&mut chain, header.counter, work);
        let message_key = chain.next_message_key();
        work.chain_steps += 1;
        let plaintext = open(&message_key, associated_data, message, accept)?;

        // The skipped keys of both chains, in one allocation (both counts are at most
        // MAX_SKIP).
        let finishing_skip = finishing.map_or(0, |(_, _, skip)| skip);
        let mut pending =
            PendingKeys::with_capacity(finishing_skip as usize + header.counter as usize);
        if let Some((their_key, receiving, _)) = finishing {
            let mut old_chain = receiving.chain.clone();
            derive_skipped(
                &mut old_chain,
                their_key,
                receiving.counter,
                header.previous_counter,
                &mut pending,
            );
        }
        let mut skipped_chain = new_chain;
        derive_skipped(
            &mut skipped_chain,
            header.ratchet_key,
            0,
            header.counter,
            &mut pending,
        );

        self.root = root;
        self.skipped
            .start_chain(header.ratchet_key, finished_length);
        self.skipped.insert(pending, now);
        self.their_key = Some(header.ratchet_key);
        self.receiving = Some(ReceivingChain {
            chain,
            counter: next,
        });
        if let OurRatchet::Sending(s) = &self.ours {
            self.previous_sending_length = s.counter;
        }
        // The private key is no longer needed: erase it now (forward secrecy); the next
        // message we send starts a new chain with a fresh key pair.
        self.ours = OurRatchet::Idle;
        Ok(plaintext)
    }

    /// The state; without the skipped keys themselves unless `with_skipped_keys` (the form
    /// of PROTOCOL.md section 8.3 stores them apart).
    pub(crate) fn to_proto(&self, with_skipped_keys: bool) -> pb::RatchetState {
        let (skipped, history, current_evicted_below) = self.skipped.to_proto(with_skipped_keys);
        let (key_pair, sending) = match &self.ours {
            OurRatchet::Idle => (None, None),
            OurRatchet::KeyOnly(key_pair) => (Some(key_pair), None),
            OurRatchet::Sending(s) => (
                Some(&s.key_pair),
                Some(pb::SendingChainState {
                    chain_key: s.chain.as_bytes().to_vec(),
                    counter: s.counter,
                }),
            ),
        };
        let (our_ratchet_secret, our_ratchet_key) =
            key_pair.map_or((Vec::new(), Vec::new()), |k| {
                (
                    k.secret_bytes().to_vec(),
                    k.public_key().to_bytes().to_vec(),
                )
            });
        pb::RatchetState {
            root_key: self.root.as_bytes().to_vec(),
            our_ratchet_secret,
            our_ratchet_key,
            their_ratchet_key: self
                .their_key
                .map(|k| k.to_bytes().to_vec())
                .unwrap_or_default(),
            sending,
            receiving: self.receiving.as_ref().map(|r| pb::ReceivingChainState {
                chain_key: r.chain.as_bytes().to_vec(),
                counter: r.counter,
                evicted_below: current_evicted_below,
            }),
            previous_sending_length: self.previous_sending_length,
            skipped,
            history,
        }
    }

    pub(crate) fn from_proto(
        p: &pb::RatchetState,
        config: SessionConfig,
    ) -> Result<Self, DecodeError> {
        use crate::wire::{fixed, x25519_key};
        const OBJECT: &str = "RatchetState";
        let secret = |bytes: &[u8], object, field| -> Result<SecretBytes, DecodeError> {
            fixed::<32>(bytes, object, field).map(SecretBytes)
        };
        let root = RootKey::new(secret(&p.root_key, OBJECT, "root_key")?);
        // The public key is stored next to the private key, not recomputed (PROTOCOL.md
        // section 8.1 says why a pair that does not match is safe).
        let our_key = match (
            p.our_ratchet_secret.is_empty(),
            p.our_ratchet_key.is_empty(),
        ) {
            (true, true) => None,
            (false, false) => {
                let bytes = secret(&p.our_ratchet_secret, OBJECT, "our_ratchet_secret")?;
                let public = x25519_key(&p.our_ratchet_key, OBJECT, "our_ratchet_key")?;
                Some(X25519KeyPair::from_stored(&bytes.0, public))
            }
            (false, true) => {
                return Err(DecodeError::MissingField {
                    object: OBJECT,
                    field: "our_ratchet_key",
                });
            }
            (true, false) => {
                return Err(DecodeError::InvalidValue {
                    object: OBJECT,
                    field: "our_ratchet_key",
                    reason: "a ratchet public key without its private key",
                });
            }
        };
        let ours = match (our_key, &p.sending) {
            (None, None) => OurRatchet::Idle,
            (Some(key_pair), None) => OurRatchet::KeyOnly(key_pair),
            (Some(key_pair), Some(s)) => OurRatchet::Sending(SendingChain {
                key_pair,
                chain: ChainKey::new(secret(&s.chain_key, "SendingChainState", "chain_key")?),
                counter: s.counter,
            }),
            (None, Some(_)) => {
                return Err(DecodeError::MissingField {
                    object: OBJECT,
                    field: "our_ratchet_secret",
                });
            }
        };
        let their_key = if p.their_ratchet_key.is_empty() {
            None
        } else {
            Some(x25519_key(
                &p.their_ratchet_key,
                OBJECT,
                "their_ratchet_key",
            )?)
        };
        let receiving = p
            .receiving
            .as_ref()
            .map(|r| {
                Ok::<_, DecodeError>(ReceivingChain {
                    chain: ChainKey::new(secret(&r.chain_key, "ReceivingChainState", "chain_key")?),
                    counter: r.counter,
                })
            })
            .transpose()?;
        match (&ours, their_key, &receiving) {
            (_, None, Some(_)) | (OurRatchet::Idle | OurRatchet::Sending(_), None, None) => {
                return Err(DecodeError::MissingField {
                    object: OBJECT,
                    field: "their_ratchet_key",
                });
            }
            _ => {}
        }
        let current = match (their_key, &p.receiving) {
            (Some(key), Some(r)) => Some((key, r.evicted_below)),
            _ => None,
        };
        let skipped = SkippedKeys::from_proto(
            config.max_skipped_keys_usize(),
            &p.skipped,
            &p.history,
            current,
        )?;
        Ok(Self {
            root,
            ours,
            their_key,
            receiving,
            previous_sending_length: p.previous_sending_length,
            skipped,
            config,
        })
    }
}

/// Moves `chain` forward `steps` chain keys without deriving their message keys.
fn skip_chain(chain: &mut ChainKey, steps: u32, work: &mut Work) {
    for _ in 0..steps {
        chain.skip_one();
    }
    work.chain_steps += u64::from(steps);
}

/// Derives the message keys `from..to` of a chain into `pending`, advancing `chain`. Each key
/// is boxed as it is derived (see [`PendingKeys`]).
fn derive_skipped(
    chain: &mut ChainKey,
    ratchet_key: X25519PublicKey,
    from: u32,
    to: u32,
    pending: &mut PendingKeys,
) {
    if to > from {
        pending.reserve((to - from) as usize);
        for counter in from..to {
            let id = SlotId {
                ratchet_key,
                counter,
            };
            pending.push((id, Box::new(chain.next_message_key())));
        }
    }
}

fn full_associated_data(
    associated_data: &[u8; ASSOCIATED_DATA_LEN],
    header: &RatchetHeader,
) -> [u8; FULL_AD_LEN] {
    let mut ad = [0u8; FULL_AD_LEN];
    ad[..ASSOCIATED_DATA_LEN].copy_from_slice(associated_data);
    ad[ASSOCIATED_DATA_LEN..].copy_from_slice(&header.authenticated_bytes());
    ad
}

/// Verifies and decrypts `message` under `key` into `accept`'s buffer, then runs `accept`'s
/// check on the plaintext. On failure the buffer is wiped and handed back to `accept`: no
/// plaintext of a message that failed to authenticate, or that the check rejected, is left
/// in memory.
fn open(
    key: &MessageKey,
    associated_data: &[u8; ASSOCIATED_DATA_LEN],
    message: &RatchetMessage<'_>,
    accept: Accept<'_>,
) -> Result<Vec<u8>, DecryptError> {
    let (ciphertext, tag) =
        split_tag(&message.ciphertext).ok_or(DecryptError::AuthenticationFailed)?;
    let ad = full_associated_data(associated_data, &message.header);
    let mut plaintext = accept.buffer();
    fit(&mut plaintext, ciphertext.len());
    let opened = key
        .cipher()
        .open_into(&message.header.nonce, &ad, ciphertext, tag, &mut plaintext)
        .map_err(|_| DecryptError::AuthenticationFailed)
        .and_then(|()| accept.check(&plaintext));
    if let Err(error) = opened {
        plaintext.zeroize();
        accept.recycle(plaintext);
        return Err(error);
    }
    Ok(plaintext)
}

/// Makes `buffer` exactly `len` bytes long for a decryption to overwrite: a reused buffer
/// that is long enough is only shortened (its cut-off tail wiped), so decrypting into it
/// writes no zeros first and, holding its pages already, takes none from the system. One
/// too small is wiped and replaced by a zeroed allocation (which the allocator may take
/// zeroed from the system instead of writing zeros).
fn fit(buffer: &mut Vec<u8>, len: usize) {
    if buffer.len() >= len {
        buffer[len..].zeroize();
        buffer.truncate(len);
    } else if buffer.capacity() >= len {
        buffer.resize(len, 0);
    } else {
        buffer.zeroize();
        *buffer = alloc::vec![0u8; len];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// A responder's ratchet after its first message: receiving chain, peer key, no key pair.
    fn responder_after_first_message() -> (Ratchet, Ratchet) {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let config = SessionConfig::default();
        let bob_spk = X25519KeyPair::generate(&mut rng);
        let mut alice = Ratchet::new_initiator(SecretBytes([3; 32]), bob_spk.public_key(), config);
        let mut bob = Ratchet::new_responder(SecretBytes([3; 32]), bob_spk, config);
        let ad = [0u8; ASSOCIATED_DATA_LEN];
        let wire = alice
            .encrypt(&mut rng, &ad, crate::VERSION, None, &[], b"hi")
            .unwrap();
        deliver(&mut bob, &parse(&wire)).unwrap();
        (alice, bob)
    }

    /// A ratchet message's wire bytes, decoded.
    fn parse(wire: &[u8]) -> RatchetMessage<'_> {
        let crate::wire::message::Body::Ratchet(message) =
            crate::wire::message::Body::parse(wire).unwrap()
        else {
            unreachable!("a ratchet message")
        };
        message
    }

    /// Decrypts with the all-zero associated data the helpers encrypt with, at the epoch.
    fn deliver(to: &mut Ratchet, message: &RatchetMessage<'_>) -> Result<Vec<u8>, DecryptError> {
        to.decrypt(
            &[0u8; ASSOCIATED_DATA_LEN],
            message,
            Timestamp::EPOCH,
            &mut |_: &[u8]| Ok(()),
            Budget::Current,
            &mut Work::default(),
        )
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_plaintext_limit_counts_the_kind_byte() {
        let max = MAX_PLAINTEXT_LEN as usize;
        assert_eq!(max, (1 << 36) - 32);
        // Raw bytes: one byte less than AES-GCM's limit.
        assert_eq!(check_plaintext_len(1, max - 1), Ok(max));
        assert_eq!(
            check_plaintext_len(1, max),
            Err(EncryptError::MessageTooLarge { len: max })
        );
        // Content, which carries its kind byte: AES-GCM's limit itself.
        assert_eq!(check_plaintext_len(0, max), Ok(max));
        assert_eq!(
            check_plaintext_len(0, max + 1),
            Err(EncryptError::MessageTooLarge { len: max + 1 })
        );
        assert_eq!(
            check_plaintext_len(1, usize::MAX),
            Err(EncryptError::MessageTooLarge { len: usize::MAX })
        );
        assert_eq!(check_plaintext_len(1, 0), Ok(1));
    }

    #[test]
    fn inconsistent_state_is_rejected() {
        let (alice, bob) = responder_after_first_message();
        let config = SessionConfig::default();
        assert!(Ratchet::from_proto(&bob.to_proto(true), config).is_ok());
        assert!(Ratchet::from_proto(&alice.to_proto(true), config).is_ok());

        // A receiving chain without the peer's key.
        let mut p = bob.to_proto(true);
        p.their_ratchet_key.clear();
        assert!(Ratchet::from_proto(&p, config).is_err());
        // No key pair and no peer key: could never send.
        let mut p = alice.to_proto(true);
        p.their_ratchet_key.clear();
        assert!(Ratchet::from_proto(&p, config).is_err());
        // A sending chain without its key pair.
        let mut p = alice.to_proto(true);
        p.our_ratchet_secret.clear();
        p.our_ratchet_key.clear();
        assert!(Ratchet::from_proto(&p, config).is_err());
    }

    #[test]
    fn our_ratchet_public_key_is_stored_and_read_back_as_it_is() {
        let (mut alice, bob) = responder_after_first_message();
        let config = SessionConfig::default();
        let OurRatchet::Sending(sending) = &alice.ours else {
            unreachable!("alice has sent")
        };
        let public = sending.key_pair.public_key().to_bytes();
        let p = alice.to_proto(true);
        assert_eq!(p.our_ratchet_key, public);
        assert_eq!(p.our_ratchet_secret, sending.key_pair.secret_bytes());
        // Bob erased his key pair with the DH ratchet step: neither half is stored.
        let q = bob.to_proto(true);
        assert!(q.our_ratchet_secret.is_empty() && q.our_ratchet_key.is_empty());

        // Read back, not recomputed: another canonical key in the field is the key used in
        // the next header (PROTOCOL.md section 8.1 says what that does).
        let other = X25519KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(10)).public_key();
        let mut p = alice.to_proto(true);
        p.our_ratchet_key = other.to_bytes().to_vec();
        let mut restored = Ratchet::from_proto(&p, config).expect("decodes");
        assert!(restored.to_proto(true).our_ratchet_key == other.to_bytes());
        let ad = [0u8; ASSOCIATED_DATA_LEN];
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let wire = restored
            .encrypt(&mut rng, &ad, crate::VERSION, None, &[], b"x")
            .expect("encrypts");
        let crate::wire::message::Body::Ratchet(message) =
            crate::wire::message::Body::parse(&wire).expect("parses")
        else {
            unreachable!("a ratchet message")
        };
        assert_eq!(message.header.ratchet_key, other);
        let wire = alice
            .encrypt(&mut rng, &ad, crate::VERSION, None, &[], b"x")
            .expect("encrypts");
        let crate::wire::message::Body::Ratchet(message) =
            crate::wire::message::Body::parse(&wire).expect("parses")
        else {
            unreachable!("a ratchet message")
        };
        assert_eq!(message.header.ratchet_key.to_bytes(), public);
    }

    #[test]
    fn our_ratchet_public_key_must_come_with_its_secret_and_be_canonical() {
        let (alice, bob) = responder_after_first_message();
        let config = SessionConfig::default();
        let error = |p: &pb::RatchetState| Ratchet::from_proto(p, config).err();
        // The secret without its public key.
        let mut p = alice.to_proto(true);
        p.our_ratchet_key.clear();
        assert_eq!(
            error(&p),
            Some(DecodeError::MissingField {
                object: "RatchetState",
                field: "our_ratchet_key",
            })
        );
        // A public key without a secret.
        let mut p = bob.to_proto(true);
        p.our_ratchet_key = alice.to_proto(true).our_ratchet_key.clone();
        assert_eq!(
            error(&p),
            Some(DecodeError::InvalidValue {
                object: "RatchetState",
                field: "our_ratchet_key",
                reason: "a ratchet public key without its private key",
            })
        );
        // Not 32 bytes, or not canonical (bit 255 set).
        let mut p = alice.to_proto(true);
        p.our_ratchet_key.pop();
        assert_eq!(
            error(&p),
            Some(DecodeError::InvalidLength {
                object: "RatchetState",
                field: "our_ratchet_key",
                expected: 32,
                found: 31,
            })
        );
        let mut p = alice.to_proto(true);
        p.our_ratchet_key[31] |= 0x80;
        assert_eq!(
            error(&p),
            Some(DecodeError::NonCanonicalKey {
                object: "RatchetState",
                field: "our_ratchet_key",
            })
        );
    }

    /// A message on a chain the peer has left, at or past the chain's length, cannot be
    /// genuine: it is refused as forged, while one below the length is a duplicate.
    #[test]
    fn a_message_at_the_end_of_a_finished_chain_is_refused_as_forged() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let ad = [0u8; ASSOCIATED_DATA_LEN];
        // Alice's first chain: the helper's message (counter 0) and `a1` (counter 1), both
        // read by Bob. Bob replies, Alice starts her second chain with `a2`, whose header says
        // her first chain held 2 messages: Bob finishes it with length 2.
        let (mut alice, mut bob) = responder_after_first_message();
        let a1 = alice
            .encrypt(&mut rng, &ad, crate::VERSION, None, &[], b"hi")
            .unwrap();
        assert_eq!(parse(&a1).header.counter, 1);
        deliver(&mut bob, &parse(&a1)).unwrap();
        let b0 = bob
            .encrypt(&mut rng, &ad, crate::VERSION, None, &[], b"yo")
            .unwrap();
        deliver(&mut alice, &parse(&b0)).unwrap();
        let a2 = alice
            .encrypt(&mut rng, &ad, crate::VERSION, None, &[], b"ok")
            .unwrap();
        assert_eq!(parse(&a2).header.previous_counter, 2);
        deliver(&mut bob, &parse(&a2)).unwrap();

        // `a1` with its counter changed: at the first chain's length, past it, and below it.
        let before = bob.to_proto(true);
        let with_counter = |counter| {
            let mut message = parse(&a1);
            message.header.counter = counter;
            message
        };
        for counter in [2, 3, u32::MAX] {
            assert_eq!(
                deliver(&mut bob, &with_counter(counter)),
                Err(DecryptError::AuthenticationFailed),
                "counter {counter}"
            );
        }
        for counter in [0, 1] {
            assert_eq!(
                deliver(&mut bob, &with_counter(counter)),
                Err(DecryptError::Duplicate { counter }),
                "counter {counter}"
            );
        }
        assert!(
            bob.to_proto(true) == before,
            "the refused messages changed the state"
        );
    }

    /// The keys of messages skipped deep into a chain: the reservation counts the skipped
    /// messages, not the counter they start at (a chain at message 1,000,000 skipping 2
    /// reserves 2 entries), and a range at the top of the counter space does not overflow.
    #[test]
    fn skipped_keys_are_reserved_by_the_number_skipped() {
        let ratchet_key = X25519KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(11)).public_key();
        for (from, to) in [(1_000_000, 1_000_002), (u32::MAX - 2, u32::MAX)] {
            let mut chain = ChainKey::new(SecretBytes([5; 32]));
            let mut reference = ChainKey::new(SecretBytes([5; 32]));
            let mut pending = PendingKeys::new();
            derive_skipped(&mut chain, ratchet_key, from, to, &mut pending);
            assert_eq!(pending.len(), 2);
            assert!(pending.capacity() < 64, "reserved {}", pending.capacity());
            for (i, (id, key)) in pending.iter().enumerate() {
                assert_eq!(id.counter, from + i as u32);
                assert_eq!(key.as_bytes(), reference.next_message_key().as_bytes());
            }
            assert_eq!(chain.as_bytes(), reference.as_bytes());
        }
        // An empty or reversed range derives nothing and leaves the chain where it was.
        let mut chain = ChainKey::new(SecretBytes([5; 32]));
        let mut pending = PendingKeys::new();
        derive_skipped(&mut chain, ratchet_key, 7, 7, &mut pending);
        derive_skipped(&mut chain, ratchet_key, 8, 7, &mut pending);
        assert!(pending.is_empty());
        assert_eq!(
            chain.as_bytes(),
            ChainKey::new(SecretBytes([5; 32])).as_bytes()
        );
    }
}
