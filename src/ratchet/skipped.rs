//! The bounded store of skipped message keys.
//!
//! When a message arrives ahead of others, the keys of the messages in between are derived
//! and kept here until those messages arrive. There is one store per session, bounded in
//! total (oldest keys evicted first), with O(1) lookup by (chain, counter). It does not care
//! how many ratchet turns ago a chain was: a late message from any earlier chain decrypts
//! while its key is in the store.
//!
//! Each key carries the time it was stored: the `now` of the decryption that skipped it,
//! exactly as the app reported it, never a later time. Pruning by age compares each key's own
//! time, so a clock that jumped ahead once does not keep later keys alive, and a clock that
//! went back only makes the keys stored meanwhile look older. Because the app's clock can go
//! back, these times need not grow in insertion order: eviction follows insertion order,
//! pruning scans every key.
//!
//! The store also remembers, for the current receiving chain and the last
//! [`HISTORY_LEN`] finished ones, how long each chain was and below which counter its keys
//! were evicted or pruned, so a missing key can be reported as a duplicate or as expired.
//!
//! For a store that persists each skipped key as a row of its own (docs/PROTOCOL.md section
//! 8.3), the store keeps a journal of the keys it inserted, used, evicted or pruned since the
//! rows were last written ([`SkippedKeys::changes`]), so that one message writes O(1) rows,
//! not all of them.

use alloc::boxed::Box;
use alloc::collections::{BTreeSet, VecDeque};
use alloc::vec::Vec;

use hashbrown::HashMap;
use prost::Message as _;
use zeroize::Zeroizing;

use super::chain::MessageKey;
use crate::error::DecodeError;
use crate::keys::{KEY_LEN, SecretBytes, X25519PublicKey};
use crate::session::SessionId;
use crate::time::Timestamp;
use crate::wire::{self, generated as pb};

/// How many finished receiving chains the store remembers for classifying missing keys.
pub(crate) const HISTORY_LEN: usize = 32;

/// A skipped message: the chain's remote ratchet key and the message number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct SlotId {
    pub(crate) ratchet_key: X25519PublicKey,
    pub(crate) counter: u32,
}

/// Hashes all 36 bytes as four words and the counter: the same input as the derived `Hash`
/// (equal ids hash equally), without the length prefix and byte-slice path, which made
/// hashing most of the cost of loading a store of keys.
impl core::hash::Hash for SlotId {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        let key = self.ratchet_key.as_bytes();
        for word in key.chunks_exact(8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            state.write_u64(u64::from_le_bytes(bytes));
        }
        state.write_u32(self.counter);
    }
}

/// Identifies one skipped key of one session of a record, as the key of its row
/// (docs/PROTOCOL.md section 8.3): session id (32 bytes) || remote ratchet key (32 bytes) ||
/// counter (4 bytes, big-endian) = 68 bytes, so the rows of one session share a 32-byte
/// prefix. It holds only public values.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) struct SkippedKeyId {
    pub(crate) session: SessionId,
    pub(crate) slot: SlotId,
}

// For the device layer's store, which reads and writes the rows (the fuzz targets and tests
// use it meanwhile).
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
impl SkippedKeyId {
    /// The length of the byte form.
    pub(crate) const LEN: usize = 2 * KEY_LEN + 4;

    /// The 68-byte row id.
    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..KEY_LEN].copy_from_slice(&self.session.to_bytes());
        out[KEY_LEN..2 * KEY_LEN].copy_from_slice(self.slot.ratchet_key.as_bytes());
        out[2 * KEY_LEN..].copy_from_slice(&self.slot.counter.to_be_bytes());
        out
    }

    /// Reads a row id: `None` unless it is 68 bytes whose two keys are canonical X25519
    /// public keys (the only ones [`to_bytes`](Self::to_bytes) writes).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        let (session, rest) = bytes.split_at(KEY_LEN);
        let (ratchet_key, counter) = rest.split_at(KEY_LEN);
        Some(Self {
            session: SessionId(X25519PublicKey::from_bytes(session.try_into().ok()?)?),
            slot: SlotId {
                ratchet_key: X25519PublicKey::from_bytes(ratchet_key.try_into().ok()?)?,
                counter: u32::from_be_bytes(counter.try_into().ok()?),
            },
        })
    }
}

// For the device layer's store, which reads and writes the rows (the fuzz targets and tests
// use it meanwhile).
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
/// One change to the skipped-key rows of a record (see
/// [`SessionRecord::take_skipped_changes`](crate::SessionRecord::take_skipped_changes)),
/// applied in order: write (insert or replace) a row, delete a row (absent or not), or delete
/// every row of a session.
pub(crate) enum SkippedChange {
    /// Write this row: the key is stored, with this row value.
    Put(SkippedKeyId, Zeroizing<Vec<u8>>),
    /// Delete this row if it exists: the key was used, evicted or pruned.
    Delete(SkippedKeyId),
    /// Delete every row of this session: it left the record, or all its rows follow.
    DeleteSession(SessionId),
}

impl core::fmt::Debug for SkippedChange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Put(id, _) => f.debug_tuple("Put").field(id).finish_non_exhaustive(),
            Self::Delete(id) => f.debug_tuple("Delete").field(id).finish(),
            Self::DeleteSession(id) => f.debug_tuple("DeleteSession").field(id).finish(),
        }
    }
}

/// Changes the journal holds at most beyond the store's bound before it gives up the list
/// and asks for every row to be rewritten (which then writes no more rows than the list).
const JOURNAL_SLACK: usize = 64;

/// What changed in the store since its rows were last written.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Journal {
    /// Every row must be written again: delete the session's rows, then write every stored
    /// key. A store starts so (a new session, one loaded from the complete form), and falls
    /// back to it when its list grows past `max_keys + JOURNAL_SLACK`, so the journal never
    /// holds more than that.
    Rewrite,
    /// The keys inserted, used, evicted or pruned since the rows were written: a key still
    /// stored is written, one that is gone is deleted.
    Changes(BTreeSet<SlotId>),
}

/// Notes that the key `id` was inserted or removed.
fn touch(journal: &mut Journal, max_keys: usize, id: &SlotId) {
    if let Journal::Changes(changed) = journal {
        changed.insert(*id);
        if changed.len() > max_keys.saturating_add(JOURNAL_SLACK) {
            *journal = Journal::Rewrite;
        }
    }
}

/// A row value: `0x01 || protobuf SkippedKeyRow` (docs/PROTOCOL.md section 8.3).
fn row_value(key: &MessageKey, entry: &Entry) -> Zeroizing<Vec<u8>> {
    let row = pb::SkippedKeyRow {
        message_key: key.as_bytes().to_vec(),
        sequence: entry.seq,
        stored_at: entry.stored_at.as_unix_secs(),
    };
    let mut out = Zeroizing::new(Vec::with_capacity(1 + row.encoded_len()));
    out.push(wire::VERSION);
    row.encode_raw(&mut *out);
    out
}

/// A decoded row (docs/PROTOCOL.md section 8.3): a key and its place in the store, before
/// [`SkippedKeys::load_rows`] takes it in.
#[derive(Clone)]
pub(crate) struct Slot {
    /// Boxed so that the key stays in one place (and is zeroized there) while the rows are
    /// collected in growing vectors.
    pub(crate) key: Box<MessageKey>,
    /// Insertion order within the store.
    pub(crate) seq: u64,
    /// The `now` of the insert that stored the key.
    pub(crate) stored_at: Timestamp,
}

/// What the map holds for a stored key: where the key is in the [`KeySlab`], its insertion
/// order and time. No secret, so the map may grow and move its entries freely.
#[derive(Clone, Copy)]
struct Entry {
    /// The key's index in the slab.
    index: u32,
    /// Insertion order within the store.
    seq: u64,
    /// The `now` of the insert that stored the key.
    stored_at: Timestamp,
}

/// Keys per block of the [`KeySlab`]: 64 keys, 2 KiB.
const BLOCK: usize = 64;

/// The stored message keys, in blocks of [`BLOCK`] keys, so that storing or loading a key
/// allocates nothing of its own (one allocation per 64 keys). A key stays where it was put
/// until it is freed: growing adds a block and moves no key, so no copy of a key is left in
/// freed memory. A freed place is wiped at once and reused before a block is added.
#[derive(Clone, Default)]
struct KeySlab {
    // Boxed on purpose: growing `blocks` moves only the pointers, never a key.
    #[allow(clippy::vec_box)]
    blocks: Vec<Box<[MessageKey; BLOCK]>>,
    /// Places handed out so far (the next new one is `len`).
    len: usize,
    /// Indices of wiped places, reused first.
    free: Vec<u32>,
}

/// The value a free place holds.
fn wiped() -> MessageKey {
    MessageKey::from_bytes(SecretBytes([0; KEY_LEN]))
}

impl KeySlab {
    /// A slab with blocks for `capacity` keys.
    fn with_capacity(capacity: usize) -> Self {
        Self {
            blocks: Vec::with_capacity(capacity.div_ceil(BLOCK)),
            len: 0,
            free: Vec::new(),
        }
    }

    fn place(&mut self, index: u32) -> &mut MessageKey {
        let index = index as usize;
        &mut self.blocks[index / BLOCK][index % BLOCK]
    }

    fn get(&self, index: u32) -> &MessageKey {
        // Every index the store holds was returned by `put` and not yet freed.
        let index = index as usize;
        &self.blocks[index / BLOCK][index % BLOCK]
    }

    /// Stores a copy of `key` and returns its index.
    fn put(&mut self, key: &MessageKey) -> u32 {
        // At most the store's bound plus one decryption's keys are held, far below 2^32.
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                if self.len == self.blocks.len() * BLOCK {
                    self.blocks
                        .push(Box::new(core::array::from_fn(|_| wiped())));
                }
                self.len += 1;
                (self.len - 1) as u32
            }
        };
        // The place held a wiped key, which is dropped.
        *self.place(index) = key.clone();
        index
    }

    /// Wipes the key at `index` (its old value zeroizes on drop) and frees its place.
    fn free(&mut self, index: u32) {
        *self.place(index) = wiped();
        self.free.push(index);
    }
}

/// What the store knows about a receiving chain.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct ChainRecord {
    pub(crate) ratchet_key: X25519PublicKey,
    /// Messages derived in this chain (received or skipped); unused for the current chain.
    pub(crate) length: u32,
    /// Skipped keys of this chain below this counter were evicted or pruned.
    pub(crate) evicted_below: u32,
}

/// Keys derived while skipping, not yet committed to the store. Each key is boxed where it
/// is derived and keeps that place until it is used or dropped (and zeroized there): the
/// vector itself holds only pointers, so growing it or moving its entries into the store
/// leaves no copy of a key behind in freed memory.
pub(crate) type PendingKeys = Vec<(SlotId, Box<MessageKey>)>;

/// Why a message's key is not available.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Missing {
    /// The message was already decrypted.
    Duplicate,
    /// The key was evicted or pruned.
    Expired,
}

#[derive(Clone)]
pub(crate) struct SkippedKeys {
    slots: HashMap<SlotId, Entry>,
    /// The keys themselves, where the entries of `slots` point.
    keys: KeySlab,
    /// Insertion order, oldest first. Entries whose slot was used (removed from `slots`, or
    /// replaced by a later slot with another `seq`) are stale and skipped.
    order: VecDeque<(SlotId, u64)>,
    next_seq: u64,
    max_keys: usize,
    current: Option<ChainRecord>,
    /// Finished chains, oldest first, at most `HISTORY_LEN`.
    history: VecDeque<ChainRecord>,
    journal: Journal,
}

impl SkippedKeys {
    pub(crate) fn new(max_keys: usize) -> Self {
        Self {
            slots: HashMap::new(),
            keys: KeySlab::default(),
            order: VecDeque::new(),
            next_seq: 0,
            max_keys,
            current: None,
            history: VecDeque::new(),
            journal: Journal::Rewrite,
        }
    }

    /// Number of stored keys.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn get(&self, id: &SlotId) -> Option<&MessageKey> {
        self.slots.get(id).map(|entry| self.keys.get(entry.index))
    }

    /// Removes a key after its message decrypted (the key is zeroized on drop).
    pub(crate) fn remove(&mut self, id: &SlotId) {
        if let Some(entry) = self.slots.remove(id) {
            self.keys.free(entry.index);
            touch(&mut self.journal, self.max_keys, id);
        }
        self.compact_if_sparse();
    }

    /// Adds keys (in chain order) stored at `now`, evicting the oldest keys beyond the bound.
    pub(crate) fn insert(&mut self, keys: PendingKeys, now: Timestamp) {
        if keys.is_empty() {
            return;
        }
        for (id, key) in keys {
            let seq = self.next_seq;
            self.next_seq += 1;
            touch(&mut self.journal, self.max_keys, &id);
            self.order.push_back((id, seq));
            // The boxed key is copied into the slab and zeroizes as the box drops.
            let index = self.keys.put(&key);
            let entry = Entry {
                index,
                seq,
                stored_at: now,
            };
            if let Some(replaced) = self.slots.insert(id, entry) {
                self.keys.free(replaced.index);
            }
        }
        while self.slots.len() > self.max_keys {
            if !self.pop_oldest() {
                break;
            }
        }
        self.compact_if_sparse();
    }

    /// Removes the oldest live key (by insertion); returns whether there was one.
    fn pop_oldest(&mut self) -> bool {
        while let Some((id, seq)) = self.order.pop_front() {
            if self.slots.get(&id).is_some_and(|entry| entry.seq == seq) {
                if let Some(entry) = self.slots.remove(&id) {
                    self.keys.free(entry.index);
                }
                touch(&mut self.journal, self.max_keys, &id);
                note_evicted(&mut self.current, &mut self.history, &id);
                return true;
            }
        }
        false
    }

    /// Drops every key stored before `cutoff`; returns how many. Stored times need not grow
    /// in insertion order (the clock may have gone back), so this looks at every key: O(n)
    /// in the number of stored keys, which is bounded by the session's limit.
    pub(crate) fn prune_stored_before(&mut self, cutoff: Timestamp) -> usize {
        let before = self.slots.len();
        let Self {
            slots,
            keys,
            current,
            history,
            journal,
            max_keys,
            ..
        } = self;
        slots.retain(|id, entry| {
            let keep = entry.stored_at >= cutoff;
            if !keep {
                keys.free(entry.index);
                touch(journal, *max_keys, id);
                note_evicted(current, history, id);
            }
            keep
        });
        let pruned = before - self.slots.len();
        self.compact_if_sparse();
        pruned
    }

    /// Keeps `order` within a constant factor of the live keys.
    fn compact_if_sparse(&mut self) {
        if self.order.len() > 2 * self.slots.len() + 64 {
            let slots = &self.slots;
            self.order
                .retain(|(id, seq)| slots.get(id).is_some_and(|slot| slot.seq == *seq));
        }
    }

    /// Starts tracking a new current receiving chain; the previous current chain, if any,
    /// is finished with `previous_length` messages.
    pub(crate) fn start_chain(&mut self, ratchet_key: X25519PublicKey, previous_length: u32) {
        if let Some(mut finished) = self.current.take() {
            finished.length = previous_length;
            if self.history.len() == HISTORY_LEN {
                self.history.pop_front();
            }
            self.history.push_back(finished);
        }
        self.current = Some(ChainRecord {
            ratchet_key,
            length: 0,
            evicted_below: 0,
        });
    }

    /// A finished chain the store remembers.
    pub(crate) fn finished_chain(&self, ratchet_key: &X25519PublicKey) -> Option<&ChainRecord> {
        self.history
            .iter()
            .rev()
            .find(|c| &c.ratchet_key == ratchet_key)
    }

    /// Why the key of message `counter` of a chain is not here.
    pub(crate) fn classify_missing(&self, ratchet_key: &X25519PublicKey, counter: u32) -> Missing {
        let evicted_below = match &self.current {
            Some(c) if &c.ratchet_key == ratchet_key => c.evicted_below,
            _ => self
                .finished_chain(ratchet_key)
                .map_or(0, |c| c.evicted_below),
        };
        if counter < evicted_below {
            Missing::Expired
        } else {
            Missing::Duplicate
        }
    }

    /// The stored keys, oldest first: id, entry and key.
    fn live(&self) -> impl Iterator<Item = (&SlotId, &Entry, &MessageKey)> {
        self.order.iter().filter_map(|(id, seq)| {
            self.slots
                .get_key_value(id)
                .filter(|(_, entry)| entry.seq == *seq)
                .map(|(id, entry)| (id, entry, self.keys.get(entry.index)))
        })
    }

    /// Every stored key as a row of session `session`, oldest first (docs/PROTOCOL.md
    /// section 8.3).
    pub(crate) fn rows(&self, session: SessionId) -> impl Iterator<Item = RowOf> + '_ {
        self.live().map(move |(id, entry, key)| {
            (SkippedKeyId { session, slot: *id }, row_value(key, entry))
        })
    }

    /// Appends to `out` the changes to the rows of session `session` since they were last
    /// written.
    pub(crate) fn changes(&self, session: SessionId, out: &mut Vec<SkippedChange>) {
        match &self.journal {
            Journal::Rewrite => {
                out.push(SkippedChange::DeleteSession(session));
                out.extend(
                    self.rows(session)
                        .map(|(id, value)| SkippedChange::Put(id, value)),
                );
            }
            Journal::Changes(changed) => {
                for slot in changed {
                    let id = SkippedKeyId {
                        session,
                        slot: *slot,
                    };
                    out.push(match self.slots.get(slot) {
                        Some(stored) => {
                            SkippedChange::Put(id, row_value(self.keys.get(stored.index), stored))
                        }
                        None => SkippedChange::Delete(id),
                    });
                }
            }
        }
    }

    /// Starts a new, empty journal: the rows were written.
    pub(crate) fn clear_changes(&mut self) {
        self.journal = Journal::Changes(BTreeSet::new());
    }

    /// Replaces the (empty) store's keys by `rows`, its decoded rows in any order, at most
    /// the store's bound of them (the caller counts them as it decodes), and starts an empty
    /// journal: the rows are what is written. Fails on a key stored twice, two keys with one
    /// sequence number, or a sequence number that leaves no room for the next one.
    pub(crate) fn load_rows(&mut self, mut rows: Vec<(SlotId, Slot)>) -> Result<(), DecodeError> {
        const ROW: &str = "SkippedKeyRow";
        debug_assert!(rows.len() <= self.max_keys, "the caller checks the bound");
        rows.sort_unstable_by_key(|(_, slot)| slot.seq);
        if rows.windows(2).any(|w| w[0].1.seq == w[1].1.seq) {
            return Err(DecodeError::InvalidValue {
                object: ROW,
                field: "sequence",
                reason: "two keys of one session have the same sequence number",
            });
        }
        let mut slots = HashMap::with_capacity(rows.len());
        let mut keys = KeySlab::with_capacity(rows.len());
        let mut order = VecDeque::with_capacity(rows.len());
        let mut next_seq = 0;
        for (id, slot) in rows {
            order.push_back((id, slot.seq));
            next_seq = slot.seq.checked_add(1).ok_or(DecodeError::InvalidValue {
                object: ROW,
                field: "sequence",
                reason: "the sequence number overflows",
            })?;
            let entry = Entry {
                index: keys.put(&slot.key),
                seq: slot.seq,
                stored_at: slot.stored_at,
            };
            if slots.insert(id, entry).is_some() {
                return Err(DecodeError::InvalidValue {
                    object: ROW,
                    field: "id",
                    reason: "the same message key is stored twice",
                });
            }
        }
        self.slots = slots;
        self.keys = keys;
        self.order = order;
        self.next_seq = next_seq;
        self.journal = Journal::Changes(BTreeSet::new());
        Ok(())
    }

    /// The parts of `RatchetState` the store holds: the runs of stored keys (none if not
    /// `with_keys`, for the form without skipped keys), the chain history, and the current
    /// chain's eviction mark.
    pub(crate) fn to_proto(
        &self,
        with_keys: bool,
    ) -> (Vec<pb::SkippedRun>, Vec<pb::ChainHistory>, u32) {
        // Live keys in storage order, grouped into runs of consecutive counters of one chain
        // stored at the same time. Each run's key bytes are allocated at their exact size
        // once: a growing buffer would leave copies of keys in the memory it frees.
        let live: Vec<(&SlotId, &Entry, &MessageKey)> = if with_keys {
            self.live().collect()
        } else {
            Vec::new()
        };
        let mut runs: Vec<pb::SkippedRun> = Vec::new();
        let mut rest = live.as_slice();
        while let Some(&(first, first_entry, _)) = rest.first() {
            let length = rest
                .iter()
                .enumerate()
                .take_while(|(i, (id, entry, _))| {
                    id.ratchet_key == first.ratchet_key
                        && entry.stored_at == first_entry.stored_at
                        && u64::from(first.counter) + *i as u64 == u64::from(id.counter)
                })
                .count();
            let (run, after) = rest.split_at(length);
            let mut message_keys = Vec::with_capacity(length * KEY_LEN);
            for (_, _, key) in run {
                message_keys.extend_from_slice(key.as_bytes());
            }
            runs.push(pb::SkippedRun {
                ratchet_key: first.ratchet_key.to_bytes().to_vec(),
                first_counter: first.counter,
                message_keys,
                stored_at: first_entry.stored_at.as_unix_secs(),
            });
            rest = after;
        }
        let history = self
            .history
            .iter()
            .map(|c| pb::ChainHistory {
                ratchet_key: c.ratchet_key.to_bytes().to_vec(),
                length: c.length,
                evicted_below: c.evicted_below,
            })
            .collect();
        let current_evicted_below = self.current.map_or(0, |c| c.evicted_below);
        (runs, history, current_evicted_below)
    }

    pub(crate) fn from_proto(
        max_keys: usize,
        runs: &[pb::SkippedRun],
        history: &[pb::ChainHistory],
        current: Option<(X25519PublicKey, u32)>,
    ) -> Result<Self, DecodeError> {
        const RUN: &str = "SkippedRun";
        let mut store = Self::new(max_keys);
        // Size the map once instead of letting it grow (every growth rehashes every key). The
        // count comes from the input but is capped by the session's limit, which is itself
        // bounded (`SessionConfig::LIMIT_KEYS`).
        let stored: usize = runs.iter().map(|r| r.message_keys.len() / KEY_LEN).sum();
        let capacity = stored.min(max_keys);
        store.slots.reserve(capacity);
        store.keys = KeySlab::with_capacity(capacity);
        store.order.reserve(capacity);
        for run in runs {
            let ratchet_key = crate::wire::x25519_key(&run.ratchet_key, RUN, "ratchet_key")?;
            if run.message_keys.is_empty() || run.message_keys.len() % KEY_LEN != 0 {
                return Err(DecodeError::InvalidValue {
                    object: RUN,
                    field: "message_keys",
                    reason: "not a non-empty multiple of 32 bytes",
                });
            }
            // Runs are in storage order; their times need not grow (the clock may have gone
            // back), so any order of times is valid.
            let stored_at = Timestamp::from_unix_secs(run.stored_at);
            for (i, key) in run.message_keys.chunks_exact(KEY_LEN).enumerate() {
                let counter = u32::try_from(i)
                    .ok()
                    .and_then(|i| run.first_counter.checked_add(i))
                    .ok_or(DecodeError::InvalidValue {
                        object: RUN,
                        field: "first_counter",
                        reason: "counter overflows",
                    })?;
                let id = SlotId {
                    ratchet_key,
                    counter,
                };
                let key = MessageKey::from_bytes(SecretBytes::from_slice(key).ok_or(
                    DecodeError::InvalidLength {
                        object: RUN,
                        field: "message_keys",
                        expected: KEY_LEN,
                        found: key.len(),
                    },
                )?);
                let seq = store.next_seq;
                store.next_seq += 1;
                let entry = Entry {
                    index: store.keys.put(&key),
                    seq,
                    stored_at,
                };
                if store.slots.insert(id, entry).is_some() {
                    return Err(DecodeError::InvalidValue {
                        object: RUN,
                        field: "first_counter",
                        reason: "the same message key is stored twice",
                    });
                }
                store.order.push_back((id, seq));
                if store.slots.len() > max_keys {
                    return Err(DecodeError::InvalidValue {
                        object: RUN,
                        field: "message_keys",
                        reason: "more stored keys than the session's limit",
                    });
                }
            }
        }
        if history.len() > HISTORY_LEN {
            return Err(DecodeError::InvalidValue {
                object: "RatchetState",
                field: "history",
                reason: "longer than the history the store keeps",
            });
        }
        for c in history {
            store.history.push_back(ChainRecord {
                ratchet_key: crate::wire::x25519_key(
                    &c.ratchet_key,
                    "ChainHistory",
                    "ratchet_key",
                )?,
                length: c.length,
                evicted_below: c.evicted_below,
            });
        }
        store.current = current.map(|(ratchet_key, evicted_below)| ChainRecord {
            ratchet_key,
            length: 0,
            evicted_below,
        });
        Ok(store)
    }
}

/// A row: its id and value.
pub(crate) type RowOf = (SkippedKeyId, Zeroizing<Vec<u8>>);

/// Decodes a row value (docs/PROTOCOL.md section 8.3): `0x01 || protobuf SkippedKeyRow`,
/// canonical, with a 32-byte message key.
pub(crate) fn decode_row(value: &[u8]) -> Result<Slot, DecodeError> {
    const ROW: &str = "SkippedKeyRow";
    let row: pb::SkippedKeyRow = wire::decode(value, ROW)?;
    let key = SecretBytes(wire::fixed(&row.message_key, ROW, "message_key")?);
    Ok(Slot {
        key: Box::new(MessageKey::from_bytes(key)),
        seq: row.sequence,
        stored_at: Timestamp::from_unix_secs(row.stored_at),
    })
}

/// Raises the watermark of the key's chain (if the store remembers it) above the key, which
/// was evicted or pruned.
fn note_evicted(
    current: &mut Option<ChainRecord>,
    history: &mut VecDeque<ChainRecord>,
    id: &SlotId,
) {
    let below = id.counter.saturating_add(1);
    let record = match current {
        Some(c) if c.ratchet_key == id.ratchet_key => Some(c),
        _ => history
            .iter_mut()
            .rev()
            .find(|c| c.ratchet_key == id.ratchet_key),
    };
    if let Some(record) = record {
        record.evicted_below = record.evicted_below.max(below);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn key(n: u8) -> Box<MessageKey> {
        Box::new(MessageKey::from_bytes(SecretBytes([n; 32])))
    }

    fn id(chain: u8, counter: u32) -> SlotId {
        SlotId {
            ratchet_key: X25519PublicKey::from_bytes([chain; 32]).expect("canonical"),
            counter,
        }
    }

    #[test]
    fn evicts_oldest_first_and_tracks_the_watermark() {
        let mut store = SkippedKeys::new(3);
        store.start_chain(X25519PublicKey::from_bytes([1; 32]).expect("canonical"), 0);
        store.insert(
            (0..5).map(|c| (id(1, c), key(c as u8))).collect(),
            Timestamp::EPOCH,
        );
        assert_eq!(store.len(), 3);
        assert!(store.get(&id(1, 0)).is_none());
        assert!(store.get(&id(1, 1)).is_none());
        assert_eq!(store.get(&id(1, 2)).map(|k| k.as_bytes()[0]), Some(2));
        assert_eq!(
            store.classify_missing(&id(1, 0).ratchet_key, 1),
            Missing::Expired
        );
        assert_eq!(
            store.classify_missing(&id(1, 0).ratchet_key, 2),
            Missing::Duplicate
        );
    }

    #[test]
    fn stale_order_entries_are_compacted() {
        let mut store = SkippedKeys::new(10_000);
        for round in 0..100u32 {
            let ids: Vec<_> = (0..50).map(|c| id(2, round * 50 + c)).collect();
            store.insert(ids.iter().map(|i| (*i, key(0))).collect(), Timestamp::EPOCH);
            for i in &ids {
                store.remove(i);
            }
        }
        assert_eq!(store.len(), 0);
        assert!(
            store.order.len() <= 64 + 50,
            "order grew to {}",
            store.order.len()
        );
    }

    #[test]
    fn compaction_waits_until_stale_entries_pay_for_it() {
        // Compacting scans every entry, so it runs only once the order holds more than twice
        // the live keys plus 64: each scan follows at least as many removals as it looks at
        // entries (amortized O(1) per removal), never one scan per removal.
        let mut store = SkippedKeys::new(1_000);
        let ids: Vec<_> = (0..200).map(|c| id(6, c)).collect();
        store.insert(ids.iter().map(|i| (*i, key(0))).collect(), Timestamp::EPOCH);
        // 200 entries for 68 live keys: 200 > 2 * 68 + 64 does not hold yet.
        for i in &ids[..132] {
            store.remove(i);
        }
        assert_eq!((store.len(), store.order.len()), (68, 200));
        // One more removal: 200 > 2 * 67 + 64, so the stale entries go.
        store.remove(&ids[132]);
        assert_eq!((store.len(), store.order.len()), (67, 67));
        let live: Vec<_> = store.live().map(|(id, _, _)| *id).collect();
        assert_eq!(live, ids[133..]);
    }

    #[test]
    fn compaction_keeps_eviction_oldest_first_and_bounded() {
        let mut store = SkippedKeys::new(100);
        // Keep every fifth key and use the rest, so that compaction runs often.
        let mut kept = Vec::new();
        for round in 0..40u32 {
            let ids: Vec<_> = (0..10).map(|c| id(4, round * 10 + c)).collect();
            store.insert(ids.iter().map(|i| (*i, key(0))).collect(), Timestamp::EPOCH);
            for (n, i) in ids.iter().enumerate() {
                if n % 5 == 0 {
                    kept.push(*i);
                } else {
                    store.remove(i);
                }
            }
        }
        assert_eq!(store.len(), 80);
        assert!(
            store.order.len() <= 2 * 80 + 64,
            "order grew to {}",
            store.order.len()
        );
        // Filling the store evicts exactly the oldest kept keys and never exceeds the bound.
        store.insert(
            (0..30).map(|c| (id(5, c), key(0))).collect(),
            Timestamp::EPOCH,
        );
        assert_eq!(store.len(), 100);
        for (n, i) in kept.iter().enumerate() {
            assert_eq!(store.get(i).is_some(), n >= 10, "kept key {n}");
        }
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_unix_secs(secs)
    }

    fn stored(store: &SkippedKeys, chain: u8, counters: core::ops::Range<u32>) -> Vec<bool> {
        counters
            .map(|c| store.get(&id(chain, c)).is_some())
            .collect()
    }

    #[test]
    fn a_far_future_reading_does_not_keep_later_keys_alive() {
        let mut store = SkippedKeys::new(100);
        store.insert(vec_keys(3, 0), Timestamp::MAX);
        // The clock is back to normal: these keys carry 100 and 200, not Timestamp::MAX.
        store.insert(vec_keys(3, 3), at(100));
        store.insert(vec_keys(3, 6), at(200));
        assert_eq!(store.prune_stored_before(at(100)), 0);
        assert_eq!(store.prune_stored_before(at(101)), 3);
        assert_eq!(
            stored(&store, 3, 0..9),
            [[true; 3], [false; 3], [true; 3]].concat()
        );
        assert_eq!(store.prune_stored_before(at(201)), 3);
        assert_eq!(
            stored(&store, 3, 0..9),
            [true, true, true, false, false, false, false, false, false]
        );
        // Keys stored while the clock read Timestamp::MAX carry that time.
        assert_eq!(store.prune_stored_before(Timestamp::MAX), 0);
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn after_the_clock_went_back_each_key_is_pruned_by_its_own_time() {
        let mut store = SkippedKeys::new(100);
        store.insert(vec_keys(3, 0), at(100));
        // The clock went back: these keys carry 50, not 100.
        store.insert(vec_keys(3, 3), at(50));
        store.insert(vec_keys(3, 6), at(200));
        assert_eq!(store.prune_stored_before(at(50)), 0);
        assert_eq!(store.prune_stored_before(at(51)), 3);
        assert_eq!(
            stored(&store, 3, 0..9),
            [[true; 3], [false; 3], [true; 3]].concat()
        );
        assert_eq!(store.prune_stored_before(at(101)), 3);
        assert_eq!(
            stored(&store, 3, 0..9),
            [false, false, false, false, false, false, true, true, true]
        );
        assert_eq!(store.prune_stored_before(at(u64::MAX)), 3);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn eviction_is_by_insertion_order_whatever_the_times() {
        let mut store = SkippedKeys::new(6);
        store.insert(vec_keys(1, 0), at(200));
        store.insert(vec_keys(2, 0), at(100));
        store.insert(vec_keys(3, 0), Timestamp::MAX);
        // The first three, stored first, were evicted, although the next three are older.
        assert_eq!(stored(&store, 1, 0..3), [false; 3]);
        assert_eq!(stored(&store, 2, 0..3), [true; 3]);
        assert_eq!(stored(&store, 3, 0..3), [true; 3]);
        store.insert(vec_keys(4, 0), at(0));
        assert_eq!(stored(&store, 2, 0..3), [false; 3]);
        assert_eq!(store.len(), 6);
    }

    #[test]
    fn pruning_keys_out_of_insertion_order_keeps_the_watermark_and_eviction_right() {
        let mut store = SkippedKeys::new(8);
        store.start_chain(id(1, 0).ratchet_key, 0);
        store.insert(vec_keys(1, 0), at(200));
        store.insert(vec_keys(1, 3), at(50)); // the clock went back
        assert_eq!(store.prune_stored_before(at(100)), 3);
        assert_eq!(stored(&store, 1, 0..6), [[true; 3], [false; 3]].concat());
        // Missing keys up to the pruned ones count as expired (the keys still stored decrypt
        // first; a duplicate among them would also be reported as expired).
        assert_eq!(
            store.classify_missing(&id(1, 0).ratchet_key, 5),
            Missing::Expired
        );
        assert_eq!(
            store.classify_missing(&id(1, 0).ratchet_key, 6),
            Missing::Duplicate
        );
        // Eviction skips the pruned keys' stale order entries and still takes the oldest.
        store.insert((6..12).map(|c| (id(1, c), key(0))).collect(), at(60));
        assert_eq!(store.len(), 8);
        assert_eq!(stored(&store, 1, 0..3), [false, true, true]);
        assert_eq!(stored(&store, 1, 6..12), [true; 6]);
    }

    #[test]
    fn stored_times_in_any_order_survive_persistence() {
        let mut store = SkippedKeys::new(100);
        store.insert(vec_keys(3, 0), Timestamp::MAX);
        store.insert(vec_keys(3, 3), at(100));
        store.insert(vec_keys(4, 0), at(0));
        let (runs, history, current) = store.to_proto(true);
        assert_eq!(
            runs.iter().map(|r| r.stored_at).collect::<Vec<_>>(),
            [u64::MAX, 100, 0]
        );
        let mut restored = SkippedKeys::from_proto(100, &runs, &history, None).unwrap();
        assert!(restored.to_proto(true) == (runs, history, current));
        assert_eq!(restored.prune_stored_before(at(101)), 6);
        assert_eq!(stored(&restored, 3, 0..3), [true; 3]);
    }

    fn run(chain: u8, first_counter: u32, keys: usize) -> pb::SkippedRun {
        pb::SkippedRun {
            ratchet_key: vec![chain; 32],
            first_counter,
            message_keys: vec![7; keys * KEY_LEN],
            stored_at: 0,
        }
    }

    #[test]
    fn the_store_remembers_the_last_finished_chains_and_their_lengths() {
        let mut store = SkippedKeys::new(100);
        // Chains 0..=40: starting chain c finishes chain c - 1 with 100 + c messages.
        for c in 0..=40u8 {
            store.start_chain(id(c, 0).ratchet_key, 100 + u32::from(c));
        }
        assert_eq!(store.history.len(), HISTORY_LEN);
        for c in 0..=40u8 {
            let length = store
                .finished_chain(&id(c, 0).ratchet_key)
                .map(|r| r.length);
            let expected = (8..=39).contains(&c).then_some(101 + u32::from(c));
            assert_eq!(length, expected, "chain {c}");
        }
        let (_, history, _) = store.to_proto(false);
        assert!(history == chain_history(8..=39));
    }

    fn chain_history(chains: core::ops::RangeInclusive<u8>) -> Vec<pb::ChainHistory> {
        chains
            .map(|c| pb::ChainHistory {
                ratchet_key: vec![c; 32],
                length: 101 + u32::from(c),
                evicted_below: 0,
            })
            .collect()
    }

    #[test]
    fn a_store_loads_up_to_its_bounds_and_not_past_them() {
        let load = |runs: &[pb::SkippedRun], history: &[pb::ChainHistory]| {
            SkippedKeys::from_proto(100, runs, history, None).map(|s| s.len())
        };
        // Exactly the session's limit of keys, over two runs, and exactly HISTORY_LEN chains.
        assert_eq!(
            load(&[run(1, 0, 60), run(2, 5, 40)], &chain_history(0..=31)),
            Ok(100)
        );
        assert!(matches!(
            load(&[run(1, 0, 60), run(2, 5, 41)], &[]),
            Err(DecodeError::InvalidValue {
                field: "message_keys",
                reason: "more stored keys than the session's limit",
                ..
            })
        ));
        assert!(matches!(
            load(&[], &chain_history(0..=32)),
            Err(DecodeError::InvalidValue {
                field: "history",
                ..
            })
        ));
    }

    #[test]
    fn a_loaded_store_is_sized_once_for_the_keys_it_holds() {
        // Loading sizes each container for the keys it holds, once: not for the session's
        // limit (memory), and not by growing as keys arrive (each growth of the map rehashes
        // every key). Doubling from empty would end at 2048 entries and 32 block pointers.
        let store = SkippedKeys::from_proto(4_000, &[run(1, 0, 1_100)], &[], None).unwrap();
        assert_eq!(store.len(), 1_100);
        let order = store.order.capacity();
        assert!((1_100..1_500).contains(&order), "order holds {order}");
        let slots = store.slots.capacity();
        assert!((1_100..2_000).contains(&slots), "the map holds {slots}");
        let blocks = store.keys.blocks.capacity();
        assert!(
            (18..24).contains(&blocks),
            "{blocks} block pointers for 18 blocks"
        );
        // Loading rows sizes the slab the same way.
        let mut rows_store = SkippedKeys::new(4_000);
        let rows = (0..1_100u32)
            .map(|c| {
                let slot = Slot {
                    key: key(7),
                    seq: u64::from(c),
                    stored_at: Timestamp::EPOCH,
                };
                (id(1, c), slot)
            })
            .collect();
        rows_store.load_rows(rows).unwrap();
        let blocks = rows_store.keys.blocks.capacity();
        assert!(
            (18..24).contains(&blocks),
            "{blocks} block pointers for 18 blocks"
        );
    }

    /// A hasher that keeps everything it is given, so a test sees a hash's whole input.
    #[derive(Default)]
    struct Recorder(Vec<u8>);

    impl core::hash::Hasher for Recorder {
        fn write(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
        fn finish(&self) -> u64 {
            0
        }
    }

    fn hash_input(id: &SlotId) -> Vec<u8> {
        let mut recorder = Recorder::default();
        core::hash::Hash::hash(id, &mut recorder);
        recorder.0
    }

    #[test]
    fn a_slot_id_hashes_every_bit_of_its_key_and_counter() {
        // The map's lookups stay O(1) only if ids that differ anywhere hash differently: an
        // id whose key or counter differs in any one bit must give the hasher other input.
        let base = SlotId {
            ratchet_key: X25519PublicKey::from_bytes([0x11; 32]).expect("canonical"),
            counter: 0x0102_0304,
        };
        let input = hash_input(&base);
        assert_eq!(input.len(), 36, "the 32 key bytes and the 4 counter bytes");
        assert_eq!(hash_input(&base), input, "equal ids hash equally");
        let mut tried = 0;
        for bit in 0..256 {
            let mut bytes = [0x11; 32];
            bytes[bit / 8] ^= 1 << (bit % 8);
            // The top bit makes a non-canonical key, which no id holds.
            let Some(ratchet_key) = X25519PublicKey::from_bytes(bytes) else {
                continue;
            };
            let other = SlotId {
                ratchet_key,
                ..base
            };
            assert_ne!(hash_input(&other), input, "key bit {bit}");
            tried += 1;
        }
        assert_eq!(tried, 255);
        for bit in 0..32 {
            let other = SlotId {
                counter: base.counter ^ (1 << bit),
                ..base
            };
            assert_ne!(hash_input(&other), input, "counter bit {bit}");
        }
    }

    #[test]
    fn the_slab_reuses_wiped_places_and_grows_a_block_at_a_time() {
        let mut slab = KeySlab::with_capacity(0);
        let count = BLOCK as u32 + 1;
        let indices: Vec<u32> = (0..count).map(|n| slab.put(&key(n as u8 + 1))).collect();
        assert_eq!(indices, (0..count).collect::<Vec<_>>());
        assert_eq!(slab.blocks.len(), 2);
        slab.free(3);
        assert_eq!(
            slab.get(3).as_bytes(),
            &[0; 32],
            "a freed place is wiped at once"
        );
        assert_eq!(slab.put(&key(200)), 3, "a freed place is reused first");
        assert_eq!(slab.blocks.len(), 2);
        for n in 0..count {
            let expected = if n == 3 { 200 } else { n as u8 + 1 };
            assert_eq!(slab.get(n).as_bytes(), &[expected; 32], "place {n}");
        }
        assert_eq!(slab.put(&key(201)), count);
    }

    #[test]
    fn a_store_that_turns_over_keeps_its_places_bounded_and_its_keys_right() {
        let mut store = SkippedKeys::new(100);
        for round in 0..50u32 {
            store.insert(
                (0..60)
                    .map(|c| (id(6, round * 60 + c), key(c as u8)))
                    .collect(),
                at(0),
            );
            assert!(store.keys.len <= 100 + 60, "{} places", store.keys.len);
        }
        assert_eq!(store.len(), 100);
        for counter in 0..50 * 60 {
            let expected = (counter >= 50 * 60 - 100).then_some((counter % 60) as u8);
            assert_eq!(
                store.get(&id(6, counter)).map(|k| k.as_bytes()[0]),
                expected,
                "counter {counter}"
            );
        }
        // A key stored again under the same id frees its old place.
        let places = store.keys.len;
        store.insert(alloc::vec![(id(6, 2999), key(77))], at(0));
        store.insert(alloc::vec![(id(6, 2999), key(78))], at(0));
        assert_eq!(store.get(&id(6, 2999)).map(|k| k.as_bytes()[0]), Some(78));
        assert_eq!(store.keys.len, places);
        // Used, evicted and pruned keys all free their places for reuse.
        store.remove(&id(6, 2999));
        assert_eq!(store.prune_stored_before(at(1)), 99);
        assert_eq!(store.keys.free.len(), places);
        store.insert((0..100).map(|c| (id(7, c), key(c as u8))).collect(), at(5));
        assert_eq!(store.keys.len, places, "no place added while some are free");
        assert_eq!(store.get(&id(7, 99)).map(|k| k.as_bytes()[0]), Some(99));
    }

    fn vec_keys(chain: u8, start: u32) -> PendingKeys {
        (start..start + 3).map(|c| (id(chain, c), key(0))).collect()
    }
}
