//! The device's row for one group (table 5, docs/PROTOCOL.md 16.7): the other member
//! devices, this device's sender key and to whom it went, the receiving state per sender
//! device, and the group's disappearing-message setting.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

use zeroize::Zeroizing;

use crate::address::Address;
use crate::error::DecodeError;
use crate::expiry::ExpiryTimer;
use crate::group::{GroupId, GroupReceiver, GroupSender};
use crate::wire::{self, generated as pb};

const OBJECT: &str = "group record";

pub(super) struct GroupRecord {
    pub(super) group_id: GroupId,
    /// The other member devices.
    pub(super) members: BTreeSet<Address>,
    pub(super) sender: Option<GroupSender>,
    /// Members that were sent the current sender key.
    pub(super) distributed: BTreeSet<Address>,
    /// Replace the sender key before the next message (a member was removed).
    pub(super) rotate: bool,
    pub(super) receivers: BTreeMap<Address, GroupReceiver>,
    pub(super) timer: ExpiryTimer,
}

impl GroupRecord {
    pub(super) fn new(group_id: GroupId) -> Self {
        Self {
            group_id,
            members: BTreeSet::new(),
            sender: None,
            distributed: BTreeSet::new(),
            rotate: false,
            receivers: BTreeMap::new(),
            timer: ExpiryTimer::OFF,
        }
    }

    pub(super) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let proto = pb::GroupRecordState {
            group_id: self.group_id.as_bytes().to_vec(),
            members: self.members.iter().map(member).collect(),
            sender: self
                .sender
                .as_ref()
                .map(|s| core::mem::take(&mut *s.to_bytes()))
                .unwrap_or_default(),
            distributed: self.distributed.iter().map(member).collect(),
            rotate: self.rotate,
            receivers: self
                .receivers
                .iter()
                .map(|(address, receiver)| pb::GroupReceiverEntry {
                    sender: Some(member(address)),
                    state: core::mem::take(&mut *receiver.to_bytes()),
                })
                .collect(),
            timer: Some(pb::DisappearingTimer {
                seconds: self.timer.seconds(),
                version: self.timer.version(),
            }),
        };
        Zeroizing::new(wire::encode(&proto))
    }

    pub(super) fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto: pb::GroupRecordState = wire::decode(bytes, OBJECT)?;
        let group_id = GroupId::from_bytes(wire::fixed::<32>(&proto.group_id, OBJECT, "group_id")?);
        let members = sorted_set(&proto.members, "members")?;
        let distributed = sorted_set(&proto.distributed, "distributed")?;
        if !distributed.is_subset(&members) {
            return Err(invalid(
                "distributed",
                "names a device that is not a member",
            ));
        }
        let sender = if proto.sender.is_empty() {
            None
        } else {
            let sender = GroupSender::from_bytes(&proto.sender)?;
            if sender.group_id() != &group_id {
                return Err(invalid("sender", "belongs to another group"));
            }
            Some(sender)
        };
        let mut receivers = BTreeMap::new();
        let mut previous: Option<Address> = None;
        for entry in &proto.receivers {
            let address = address(wire::required(
                entry.sender.as_ref(),
                OBJECT,
                "receivers.sender",
            )?)?;
            if previous.as_ref().is_some_and(|p| *p >= address) || !members.contains(&address) {
                return Err(invalid(
                    "receivers",
                    "senders must be sorted, distinct and members",
                ));
            }
            let receiver = GroupReceiver::from_bytes(&entry.state)?;
            if receiver.group_id() != &group_id {
                return Err(invalid("receivers", "a receiver belongs to another group"));
            }
            previous = Some(address.clone());
            receivers.insert(address, receiver);
        }
        let timer = wire::required(proto.timer, OBJECT, "timer")?;
        let timer = ExpiryTimer::new(timer.seconds, timer.version)
            .map_err(|_| invalid("timer", "not a valid disappearing-message setting"))?;
        Ok(Self {
            group_id,
            members,
            sender,
            distributed,
            rotate: proto.rotate,
            receivers,
            timer,
        })
    }
}

fn member(address: &Address) -> pb::GroupMember {
    pb::GroupMember {
        user_id: String::from(address.user_id()),
        device_id: address.device_id(),
    }
}

fn address(member: &pb::GroupMember) -> Result<Address, DecodeError> {
    Address::new(member.user_id.clone(), member.device_id)
        .map_err(|_| invalid("members", "not a valid address"))
}

fn sorted_set(
    members: &[pb::GroupMember],
    field: &'static str,
) -> Result<BTreeSet<Address>, DecodeError> {
    let mut out = BTreeSet::new();
    let mut previous: Option<Address> = None;
    for m in members {
        let a = address(m)?;
        if previous.as_ref().is_some_and(|p| *p >= a) {
            return Err(invalid(field, "addresses must be sorted and distinct"));
        }
        previous = Some(a.clone());
        out.insert(a);
    }
    Ok(out)
}

fn invalid(field: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::InvalidValue {
        object: OBJECT,
        field,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn a(user: &str, device: u32) -> Address {
        Address::new(user, device).unwrap()
    }

    fn record() -> GroupRecord {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let group = GroupId::random(&mut rng);
        let mut r = GroupRecord::new(group);
        r.members = [a("bob", 1), a("carol", 2), a("carol", 10)].into();
        let sender = GroupSender::new(&mut rng, group);
        let mut receiver = GroupReceiver::new(group);
        receiver
            .process_distribution(
                &sender.distribution(),
                &crate::group::GroupLimits::default(),
            )
            .unwrap();
        r.receivers.insert(a("carol", 2), receiver);
        r.sender = Some(sender);
        r.distributed = [a("bob", 1)].into();
        r.rotate = true;
        r.timer = ExpiryTimer::new(60, 3).unwrap();
        r
    }

    fn proto(r: &GroupRecord) -> pb::GroupRecordState {
        wire::decode(&r.to_bytes(), OBJECT).unwrap()
    }

    fn refused(p: &pb::GroupRecordState, field: &'static str) {
        match GroupRecord::from_bytes(&wire::encode(p)) {
            Err(DecodeError::InvalidValue { field: f, .. }) => assert_eq!(f, field),
            Err(other) => panic!("{field}: {other:?}"),
            Ok(_) => panic!("{field}: accepted"),
        }
    }

    #[test]
    fn round_trips_and_refuses_every_broken_invariant() {
        let r = record();
        let bytes = r.to_bytes();
        let back = GroupRecord::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.members, r.members);
        assert_eq!(back.distributed, r.distributed);
        assert!(back.rotate);
        assert_eq!(back.timer, r.timer);

        let good = proto(&r);
        let mut p = good.clone();
        p.members.swap(1, 2); // ("carol", 10) before ("carol", 2)
        refused(&p, "members");
        let mut p = good.clone();
        p.members.push(p.members[2].clone());
        refused(&p, "members");
        let mut p = good.clone();
        p.distributed.push(pb::GroupMember {
            user_id: "dave".into(),
            device_id: 1,
        });
        refused(&p, "distributed");
        let mut p = good.clone();
        p.receivers[0].sender = Some(pb::GroupMember {
            user_id: "dave".into(),
            device_id: 1,
        });
        refused(&p, "receivers");
        let mut p = good.clone();
        p.timer = Some(pb::DisappearingTimer {
            seconds: 60,
            version: 0,
        });
        refused(&p, "timer");
        let mut p = good.clone();
        p.members[0].user_id = String::new();
        refused(&p, "members");
        let mut p = good;
        p.timer = None;
        assert_eq!(
            GroupRecord::from_bytes(&wire::encode(&p)).map(|_| ()),
            Err(DecodeError::MissingField {
                object: OBJECT,
                field: "timer"
            })
        );
    }
}
