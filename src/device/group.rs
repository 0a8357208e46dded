//! Groups in the high-level layer: membership, the fan-out of sender keys over the pairwise
//! sessions, and group messages carrying [`Content`] (docs/PROTOCOL.md 16.7).
//!
//! Membership is the app's: every member device is told the member list (by the app's
//! group-management channel) and calls [`Device::set_group_members`]. This device then
//! hands its sender key to the members that lack it with its next
//! [`send_group`](Device::send_group), and takes in the other members' keys as they arrive
//! through [`receive`](Device::receive).

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use rand_core::CryptoRng;

use super::{Error, Op, Outgoing};
use crate::address::Address;
use crate::content::{self, Content, ReceivedMessage};
use crate::error::{ContentError, DecodeError};
use crate::expiry::{self, ExpiryTimer};
use crate::group::{
    GroupDistribution, GroupError, GroupId, GroupLimits, GroupMessage, GroupSender,
};
use crate::store::Table;
use crate::time::Timestamp;

mod record;

use record::GroupRecord;

/// What [`Device::send_group`](super::Device::send_group) produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSent {
    /// The group message: deliver the same bytes to every member device.
    pub message: Vec<u8>,
    /// Pairwise messages carrying this device's current sender key to the members that lack
    /// it; deliver each before (or with) the group message.
    pub distributions: Vec<Outgoing>,
    /// The send time (the `now` given).
    pub sent_at: Timestamp,
    /// When this device's copy expires under the group's timer, if it is on.
    pub expires_at: Option<Timestamp>,
}

/// What a group send carries.
#[derive(Clone, Copy)]
enum GroupPayload<'a> {
    Content(&'a Content),
    Timer(u32),
}

impl super::Device {
    /// Creates a group with a fresh random id and these other member devices (this device's
    /// own address is ignored if listed). Give the id and the member list to the members
    /// through the app; each calls [`set_group_members`](Self::set_group_members).
    pub fn create_group<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        members: &[Address],
    ) -> Result<GroupId, Error> {
        let group = GroupId::random(rng);
        self.set_group_members(rng, &group, members)?;
        Ok(group)
    }

    /// Sets the member devices of `group` (creating the group on this device if it does not
    /// know it); this device's own address is ignored if listed. A device that is no longer
    /// listed loses its sender keys here, and this device replaces its own sender key before
    /// its next group message, so that the removed device cannot read anything sent after
    /// this call. A new device receives this device's current sender key with the next
    /// [`send_group`](Self::send_group): it cannot read earlier messages. A user's new device,
    /// or a device that left, is a change of this list like any other.
    pub fn set_group_members<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        group: &GroupId,
        members: &[Address],
    ) -> Result<(), Error> {
        let listed: BTreeSet<Address> = members
            .iter()
            .filter(|a| **a != self.address)
            .cloned()
            .collect();
        self.run(rng, |op, _| {
            let mut record = load_group(op, group)?.unwrap_or_else(|| GroupRecord::new(*group));
            let removed: Vec<Address> = record.members.difference(&listed).cloned().collect();
            if !removed.is_empty() {
                record.rotate = true;
            }
            for gone in &removed {
                record.receivers.remove(gone);
                record.distributed.remove(gone);
            }
            record.members = listed.clone();
            stage_group(op, &record);
            Ok(())
        })
    }

    /// The other member devices of `group`.
    pub fn group_members(&mut self, group: &GroupId) -> Result<Vec<Address>, Error> {
        self.read(|op| {
            let record = load_group(op, group)?.ok_or(Error::UnknownGroup(*group))?;
            Ok(record.members.iter().cloned().collect())
        })
    }

    /// The group's disappearing-message setting.
    pub fn group_timer(&mut self, group: &GroupId) -> Result<ExpiryTimer, Error> {
        self.read(|op| {
            Ok(load_group(op, group)?
                .ok_or(Error::UnknownGroup(*group))?
                .timer)
        })
    }

    /// Encrypts `content` once for the whole group, under the group's timer. Returns the
    /// group message and the pairwise messages that carry this device's sender key to the
    /// members that do not have it yet (all members after a rotation). If one of those has
    /// no session, nothing is encrypted or stored and [`Error::MissingSessions`] names them.
    pub fn send_group<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        group: &GroupId,
        content: &Content,
        now: Timestamp,
    ) -> Result<GroupSent, Error> {
        self.group_send(rng, group, GroupPayload::Content(content), now)
    }

    /// Changes the group's disappearing-message timer to `seconds` (0 turns it off) and
    /// returns the group message announcing it (empty content), as
    /// [`send_group`](Self::send_group) does.
    pub fn set_group_timer<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        group: &GroupId,
        seconds: u32,
        now: Timestamp,
    ) -> Result<GroupSent, Error> {
        self.group_send(rng, group, GroupPayload::Timer(seconds), now)
    }

    fn group_send<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        group: &GroupId,
        payload: GroupPayload<'_>,
        now: Timestamp,
    ) -> Result<GroupSent, Error> {
        self.run(rng, |op, rng| {
            let mut record = load_group(op, group)?.ok_or(Error::UnknownGroup(*group))?;
            if let GroupPayload::Timer(seconds) = payload {
                record.timer = record.timer.changed_to(seconds).map_err(Error::Timer)?;
            }
            let sender = match record.sender.take() {
                Some(sender) if !record.rotate => sender,
                previous => {
                    record.distributed.clear();
                    record.rotate = false;
                    match previous {
                        Some(old) => old.rotate(rng),
                        None => GroupSender::new(rng, *group),
                    }
                }
            };
            let owed: Vec<Address> = record
                .members
                .iter()
                .filter(|a| !record.distributed.contains(*a))
                .cloned()
                .collect();
            for to in &owed {
                op.load(to)?;
            }
            let missing: Vec<Address> = owed
                .iter()
                .filter(|a| !op.has_session(a))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(Error::MissingSessions { addresses: missing });
            }
            // The distribution at the current iteration, before this message: the members
            // read this message and the later ones.
            let carrier = Content::with_group_distribution(sender.distribution());
            let mut distributions = Vec::with_capacity(owed.len());
            for to in &owed {
                let session = op
                    .record_mut(to)?
                    .ok_or_else(|| Error::NoSession(to.clone()))?;
                let sent = session
                    .send(rng, &carrier, now)
                    .map_err(|source| Error::Encrypt {
                        to: to.clone(),
                        source,
                    })?;
                distributions.push(Outgoing {
                    to: to.clone(),
                    message: sent.into_wire(),
                });
            }
            let empty = Content::default();
            let body = match payload {
                GroupPayload::Content(content) => content,
                GroupPayload::Timer(_) => &empty,
            };
            let group_error = |source| Error::Group {
                group: *group,
                source,
            };
            let plaintext = content::encode_padded(body, record.timer, now)
                .map_err(|_| group_error(GroupError::MessageTooLarge))?;
            let mut sender = sender;
            let message = sender.encrypt(&plaintext).map_err(group_error)?;
            record.sender = Some(sender);
            record.distributed.extend(owed);
            stage_group(op, &record);
            Ok(GroupSent {
                message: message.to_bytes(),
                distributions,
                sent_at: now,
                expires_at: record.timer.deadline(now),
            })
        })
    }

    /// Verifies and decrypts a group message from the member device `from` (as the server
    /// reported it), decodes its content and applies the group timer it carries. On error
    /// nothing is stored; [`Error::action`] says what to do (a message whose sender key has
    /// not arrived yet is [`Action::RetryLater`](super::Action::RetryLater)).
    pub fn receive_group<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        from: &Address,
        message: &[u8],
        now: Timestamp,
    ) -> Result<ReceivedMessage, Error> {
        self.refuse_own(from)?;
        let message = GroupMessage::from_bytes(message)?;
        let group = *message.group_id();
        self.run(rng, |op, _| {
            let mut record = load_group(op, &group)?.ok_or(Error::UnknownGroup(group))?;
            if !record.members.contains(from) {
                return Err(Error::NotGroupMember {
                    group,
                    address: from.clone(),
                });
            }
            let group_error = |source| Error::Group { group, source };
            let receiver = record.receivers.get_mut(from).ok_or(group_error(
                GroupError::UnknownSenderKey {
                    key_id: message.key_id(),
                },
            ))?;
            let plaintext = receiver
                .decrypt(&message, &GroupLimits::default())
                .map_err(group_error)?;
            let invalid = |source| Error::InvalidGroupContent {
                group,
                from: from.clone(),
                source,
            };
            let envelope = content::decode_padded(&plaintext).map_err(invalid)?;
            if envelope.content.group_distribution().is_some() {
                return Err(invalid(ContentError::Decode(DecodeError::InvalidValue {
                    object: "Content",
                    field: "group_distribution",
                    reason: "a sender key travels only in pairwise messages",
                })));
            }
            let change = expiry::observe(&mut record.timer, envelope.timer);
            stage_group(op, &record);
            Ok(ReceivedMessage::new(envelope, now, change))
        })
    }
}

/// Takes in a sender key that arrived in pairwise content from `from` (called by
/// [`Device::receive`](super::Device::receive), in its transaction).
pub(super) fn accept_distribution(
    op: &mut Op<'_>,
    from: &Address,
    distribution: &GroupDistribution,
) -> Result<(), Error> {
    let group = *distribution.group_id();
    let mut record = load_group(op, &group)?.ok_or(Error::UnknownGroup(group))?;
    if !record.members.contains(from) {
        return Err(Error::NotGroupMember {
            group,
            address: from.clone(),
        });
    }
    let receiver = record
        .receivers
        .entry(from.clone())
        .or_insert_with(|| crate::group::GroupReceiver::new(group));
    receiver
        .process_distribution(distribution, &GroupLimits::default())
        .map_err(|source| Error::Group { group, source })?;
    stage_group(op, &record);
    Ok(())
}

/// The group's row, as staged in this call or as stored.
fn load_group(op: &mut Op<'_>, group: &GroupId) -> Result<Option<GroupRecord>, Error> {
    let key = op.keys.group_key(group.as_bytes());
    let plain = if let Some(staged) = op.group_rows.get(key.as_slice()) {
        staged.clone()
    } else {
        let Some(sealed) = op.tx.get(Table::Group, &key)? else {
            return Ok(None);
        };
        op.keys
            .open(Table::Group, &key, &sealed)
            .ok_or(Error::StoredState {
                what: "group",
                source: crate::error::StateError::UnsealFailed,
            })?
    };
    let record = GroupRecord::from_bytes(&plain).map_err(|source| Error::StoredState {
        what: "group",
        source: source.into(),
    })?;
    if record.group_id != *group {
        return Err(super::corrupt(
            "a group row names another group than its key",
        ));
    }
    Ok(Some(record))
}

/// Stages the group's row to be written when the call commits.
fn stage_group(op: &mut Op<'_>, record: &GroupRecord) {
    let key = op.keys.group_key(record.group_id.as_bytes());
    op.group_rows.insert(key.to_vec(), record.to_bytes());
}
