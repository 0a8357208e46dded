//! An independent model of one session's receiving rules, for the conversation target's
//! tight mode: written from docs/PROTOCOL.md (receiving, errors, the skipped-key store) in
//! terms of message headers only, like the model in `tests/properties.rs`, and sharing no
//! code with `crate::ratchet`. It predicts the exact outcome of every delivery: decrypted, or
//! the exact `TooFarAhead`, `Expired`, `Duplicate` or `AuthenticationFailed`.

use alloc::collections::{BTreeSet, VecDeque};
use alloc::vec::Vec;

use prost::Message as _;

use crate::wire::generated as pb;
use crate::{DecryptError, Timestamp};

/// Finished receiving chains a session remembers (PROTOCOL.md, the skipped-key store).
const REMEMBERED_CHAINS: usize = 32;

/// The header fields the model needs, read with the schema's protobuf types (not the crate's
/// decoder): (ratchet key, counter, previous counter), or `None` if `wire` is not a message.
pub(crate) fn header(wire: &[u8]) -> Option<(Vec<u8>, u32, u32)> {
    let message = pb::Message::decode(wire.get(1..)?).ok()?;
    let ratchet = match message.body? {
        pb::message::Body::Ratchet(r) => r,
        pb::message::Body::Initial(i) => i.message?,
    };
    Some((
        ratchet.ratchet_key,
        ratchet.counter,
        ratchet.previous_counter,
    ))
}

/// A finished or current receiving chain as the model remembers it.
#[derive(Clone, Debug)]
struct Chain {
    ratchet_key: Vec<u8>,
    /// Messages of the chain derived (received or skipped); set when the chain is finished.
    length: u32,
    /// Skipped keys of the chain below this counter were evicted or pruned.
    evicted_below: u32,
}

/// A skipped message key: its chain, its counter, when it was stored.
#[derive(Clone, Debug)]
struct Stored {
    ratchet_key: Vec<u8>,
    counter: u32,
    at: Timestamp,
}

/// The receiving side of one session.
#[derive(Clone, Debug)]
pub(crate) struct Receiver {
    max_skip: u32,
    max_skipped_keys: usize,
    /// Whether the receiver holds a ratchet key pair that no received chain answered yet (it
    /// sent since its last DH step, or it is the responder before the first message).
    pub(crate) has_key_pair: bool,
    /// The current receiving chain and the next counter expected on it.
    current: Option<(Chain, u32)>,
    /// Finished chains, oldest first.
    history: VecDeque<Chain>,
    /// Skipped keys, oldest first.
    store: VecDeque<Stored>,
    /// Every ratchet key that was ever a receiving chain here.
    seen: BTreeSet<Vec<u8>>,
}

impl Receiver {
    /// A receiver with these limits.
    pub(crate) fn new(max_skip: u32, max_skipped_keys: u32, has_key_pair: bool) -> Self {
        Self {
            max_skip,
            max_skipped_keys: max_skipped_keys as usize,
            has_key_pair,
            current: None,
            history: VecDeque::new(),
            store: VecDeque::new(),
            seen: BTreeSet::new(),
        }
    }

    /// The outcome of receiving a message with this header at `now`, and the model as it is
    /// after a successful delivery (the caller keeps it only if the crate accepted).
    pub(crate) fn receive(
        &self,
        key: &[u8],
        n: u32,
        pn: u32,
        now: Timestamp,
    ) -> Result<Self, DecryptError> {
        let mut next = self.clone();
        next.apply(key, n, pn, now)?;
        Ok(next)
    }

    fn too_far(&self, counter: u32, skip: u32) -> DecryptError {
        DecryptError::TooFarAhead {
            counter,
            skip: u64::from(skip),
            max_skip: self.max_skip,
        }
    }

    fn apply(&mut self, key: &[u8], n: u32, pn: u32, now: Timestamp) -> Result<(), DecryptError> {
        // 1. The current chain.
        if let Some((chain, next)) = &mut self.current
            && chain.ratchet_key == key
        {
            if n >= *next {
                let skip = n - *next;
                if skip > self.max_skip {
                    return Err(self.too_far(n, skip));
                }
                let skipped: Vec<u32> = (*next..n).collect();
                *next = n + 1;
                self.insert(key, &skipped, now);
                return Ok(());
            }
            return self.use_stored(key, n);
        }
        // 2. A stored key.
        if self.stored(key, n).is_some() {
            return self.use_stored(key, n);
        }
        // 3. A remembered finished chain.
        if let Some(chain) = self.history.iter().rev().find(|c| c.ratchet_key == key) {
            if n < chain.length {
                return Err(self.missing(key, n));
            }
            return Err(DecryptError::AuthenticationFailed);
        }
        // 4. A new chain (or one forgotten, which fails like an unknown one).
        if !self.has_key_pair {
            return Err(DecryptError::AuthenticationFailed);
        }
        let mut previous: Vec<u32> = Vec::new();
        let mut finished_length = 0;
        if let Some((_, next)) = &self.current {
            let skip = pn.saturating_sub(*next);
            if skip > self.max_skip {
                return Err(self.too_far(pn, skip));
            }
            previous.extend(*next..pn);
            finished_length = (*next).max(pn);
        }
        if n > self.max_skip {
            return Err(self.too_far(n, n));
        }
        if self.seen.contains(key) {
            return Err(DecryptError::AuthenticationFailed);
        }
        let previous_key = self.current.as_ref().map(|(c, _)| c.ratchet_key.clone());
        if let Some((mut finished, _)) = self.current.take() {
            finished.length = finished_length;
            if self.history.len() == REMEMBERED_CHAINS {
                self.history.pop_front();
            }
            self.history.push_back(finished);
        }
        self.current = Some((
            Chain {
                ratchet_key: key.to_vec(),
                length: 0,
                evicted_below: 0,
            },
            n + 1,
        ));
        self.seen.insert(key.to_vec());
        let skipped: Vec<u32> = (0..n).collect();
        if let Some(previous_key) = previous_key {
            self.insert(&previous_key, &previous, now);
        }
        self.insert(key, &skipped, now);
        self.has_key_pair = false;
        Ok(())
    }

    fn stored(&self, key: &[u8], n: u32) -> Option<usize> {
        self.store
            .iter()
            .position(|s| s.ratchet_key == key && s.counter == n)
    }

    fn use_stored(&mut self, key: &[u8], n: u32) -> Result<(), DecryptError> {
        match self.stored(key, n) {
            Some(at) => {
                self.store.remove(at);
                Ok(())
            }
            None => Err(self.missing(key, n)),
        }
    }

    fn chain_mut(&mut self, key: &[u8]) -> Option<&mut Chain> {
        match &mut self.current {
            Some((chain, _)) if chain.ratchet_key == key => Some(chain),
            _ => self.history.iter_mut().rev().find(|c| c.ratchet_key == key),
        }
    }

    /// Why a remembered chain's key is missing: evicted or pruned (below the chain's mark),
    /// or used.
    fn missing(&self, key: &[u8], n: u32) -> DecryptError {
        let evicted_below = match &self.current {
            Some((chain, _)) if chain.ratchet_key == key => chain.evicted_below,
            _ => self
                .history
                .iter()
                .rev()
                .find(|c| c.ratchet_key == key)
                .map_or(0, |c| c.evicted_below),
        };
        if n < evicted_below {
            DecryptError::Expired { counter: n }
        } else {
            DecryptError::Duplicate { counter: n }
        }
    }

    /// Stores skipped keys of chain `key`, then evicts the oldest beyond the bound.
    fn insert(&mut self, key: &[u8], counters: &[u32], now: Timestamp) {
        self.store.extend(counters.iter().map(|&counter| Stored {
            ratchet_key: key.to_vec(),
            counter,
            at: now,
        }));
        while self.store.len() > self.max_skipped_keys {
            let Some(oldest) = self.store.pop_front() else {
                break;
            };
            self.forget(&oldest);
        }
    }

    fn forget(&mut self, key: &Stored) {
        if let Some(chain) = self.chain_mut(&key.ratchet_key) {
            chain.evicted_below = chain.evicted_below.max(key.counter.saturating_add(1));
        }
    }

    /// Drops every key stored before `cutoff` (each by its own time: the clock may have gone
    /// back).
    pub(crate) fn prune(&mut self, cutoff: Timestamp) {
        let (keep, drop): (VecDeque<Stored>, VecDeque<Stored>) =
            self.store.drain(..).partition(|s| s.at >= cutoff);
        self.store = keep;
        for key in &drop {
            self.forget(key);
        }
    }
}
