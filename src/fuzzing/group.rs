//! Fuzz targets for group messages (src/group/): one per wire type, one for the persisted
//! states, and a stateful `group` target where members join, leave, send, and messages are
//! delivered out of order, duplicated and corrupted, with devices persisted and restored,
//! checked against a model of who must be able to read what.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use rand_chacha::ChaCha20Rng;

use super::rng;
use crate::group::{
    GroupDistribution, GroupError, GroupId, GroupLimits, GroupMessage, GroupReceiver, GroupSender,
};

const GROUP: GroupId = GroupId([0x47; 32]);

/// A sender and a receiver that holds its key, made deterministically.
fn fixture() -> (GroupSender, GroupReceiver) {
    let mut rng = rng(0x6709);
    let sender = GroupSender::new(&mut rng, GROUP);
    let mut receiver = GroupReceiver::new(GROUP);
    receiver
        .process_distribution(&sender.distribution(), &GroupLimits::default())
        .expect("the fixture's own distribution");
    (sender, receiver)
}

/// `GroupMessage::from_bytes`: whatever decodes re-encodes to the same bytes; decrypting it
/// with the fixture's receiver either succeeds (then it is the fixture sender's message) or
/// fails with the state unchanged.
pub fn group_message(data: &[u8]) {
    let Ok(message) = GroupMessage::from_bytes(data) else {
        return;
    };
    assert_eq!(message.to_bytes(), data, "decoded group message re-encodes");
    let (_, mut receiver) = fixture();
    let before = receiver.to_bytes();
    match receiver.decrypt(&message, &GroupLimits::default()) {
        Ok(_) => assert_ne!(receiver.to_bytes(), before),
        Err(_) => assert_eq!(receiver.to_bytes(), before, "a failure changed the state"),
    }
}

/// `GroupDistribution::from_bytes`: whatever decodes re-encodes to the same bytes, and a
/// receiver of its group takes it in (a second time changes nothing).
pub fn group_distribution(data: &[u8]) {
    let Ok(distribution) = GroupDistribution::from_bytes(data) else {
        return;
    };
    assert_eq!(distribution.to_bytes().as_slice(), data);
    let mut receiver = GroupReceiver::new(*distribution.group_id());
    let limits = GroupLimits::default();
    assert_eq!(
        receiver.process_distribution(&distribution, &limits),
        Ok(true)
    );
    let after = receiver.to_bytes();
    assert_eq!(
        receiver.process_distribution(&distribution, &limits),
        Ok(false)
    );
    assert_eq!(receiver.to_bytes(), after);
}

/// The persisted sender and receiver states (the first byte picks which): whatever decodes
/// re-encodes to the same bytes.
pub fn group_state(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        if let Ok(sender) = GroupSender::from_bytes(rest) {
            assert_eq!(sender.to_bytes().as_slice(), rest);
        }
    } else if let Ok(receiver) = GroupReceiver::from_bytes(rest) {
        assert_eq!(receiver.to_bytes().as_slice(), rest);
    }
}

/// The most devices of the stateful target, and the most operations it runs.
const DEVICES: usize = 4;
const MAX_OPS: usize = 1_000;

struct Device {
    sender: GroupSender,
    /// Receiving state per other device.
    receivers: BTreeMap<usize, GroupReceiver>,
}

impl Device {
    fn persist_and_restore(&mut self) {
        let sender = self.sender.to_bytes();
        self.sender = GroupSender::from_bytes(&sender).expect("own state restores");
        assert_eq!(self.sender.to_bytes(), sender);
        for receiver in self.receivers.values_mut() {
            let bytes = receiver.to_bytes();
            *receiver = GroupReceiver::from_bytes(&bytes).expect("own state restores");
            assert_eq!(receiver.to_bytes(), bytes);
        }
    }
}

struct Sent {
    from: usize,
    key_id: u32,
    iteration: u32,
    wire: Vec<u8>,
    plaintext: Vec<u8>,
    /// The members (other than the sender) when it was sent.
    recipients: BTreeSet<usize>,
}

/// The model: which sender keys each device holds from each other device, as
/// `(key id, first iteration)`, newest first, at most `max_generations`.
type Held = BTreeMap<(usize, usize), Vec<(u32, u32)>>;

struct World {
    rng: ChaCha20Rng,
    devices: Vec<Device>,
    members: BTreeSet<usize>,
    held: Held,
    sent: Vec<Sent>,
    /// `(device, message index)` decrypted.
    read: BTreeSet<(usize, usize)>,
    limits: GroupLimits,
}

impl World {
    /// Gives `to` the current sender key of `from` (as the pairwise session would).
    fn distribute(&mut self, from: usize, to: usize) {
        let distribution = self.devices[from].sender.distribution();
        let limits = self.limits;
        let receiver = self.devices[to]
            .receivers
            .entry(from)
            .or_insert_with(|| GroupReceiver::new(GROUP));
        let new = receiver
            .process_distribution(&distribution, &limits)
            .expect("a member's distribution is accepted");
        let held = self.held.entry((to, from)).or_default();
        assert_eq!(new, !held.iter().any(|(k, _)| *k == distribution.key_id()));
        if new {
            held.insert(0, (distribution.key_id(), distribution.iteration()));
            held.truncate(limits.max_generations);
        }
        assert_eq!(
            receiver.key_ids(),
            held.iter().map(|(k, _)| *k).collect::<Vec<_>>()
        );
    }

    fn add(&mut self, device: usize) {
        if !self.members.insert(device) {
            return;
        }
        let others: Vec<usize> = self
            .members
            .iter()
            .copied()
            .filter(|&m| m != device)
            .collect();
        for &m in &others {
            self.distribute(m, device);
            self.distribute(device, m);
        }
    }

    fn remove(&mut self, device: usize) {
        if !self.members.remove(&device) {
            return;
        }
        let remaining: Vec<usize> = self.members.iter().copied().collect();
        for &m in &remaining {
            // The remaining devices forget the removed one and rotate.
            self.devices[m].receivers.remove(&device);
            self.held.remove(&(m, device));
            let rotated = self.devices[m].sender.rotate(&mut self.rng);
            self.devices[m].sender = rotated;
        }
        for &m in &remaining {
            for &n in &remaining {
                if m != n {
                    self.distribute(m, n);
                }
            }
        }
    }

    fn send(&mut self, from: usize) {
        if !self.members.contains(&from) {
            return;
        }
        let plaintext = format!("message {} from {from}", self.sent.len()).into_bytes();
        let message = self.devices[from]
            .sender
            .encrypt(&plaintext)
            .expect("far from exhausted");
        self.sent.push(Sent {
            from,
            key_id: message.key_id(),
            iteration: message.iteration(),
            wire: message.to_bytes(),
            plaintext,
            recipients: self
                .members
                .iter()
                .copied()
                .filter(|&m| m != from)
                .collect(),
        });
    }

    /// What delivering message `index` to `to` must give.
    fn expected(&self, index: usize, to: usize) -> Result<(), GroupError> {
        let s = &self.sent[index];
        let held = self.held.get(&(to, s.from));
        let Some(&(_, first)) = held.and_then(|h| h.iter().find(|(k, _)| *k == s.key_id)) else {
            return Err(GroupError::UnknownSenderKey { key_id: s.key_id });
        };
        if s.iteration < first {
            return Err(GroupError::BeforeDistribution {
                key_id: s.key_id,
                iteration: s.iteration,
                first,
            });
        }
        if self.read.contains(&(to, index)) {
            return Err(GroupError::Duplicate {
                key_id: s.key_id,
                iteration: s.iteration,
            });
        }
        Ok(())
    }

    fn deliver(&mut self, index: usize, to: usize, corrupt: Option<usize>) {
        if to == self.sent[index].from {
            return;
        }
        let mut wire = self.sent[index].wire.clone();
        if let Some(bit) = corrupt {
            let bit = bit % (wire.len() * 8);
            wire[bit / 8] ^= 1 << (bit % 8);
        }
        let from = self.sent[index].from;
        let limits = self.limits;
        let expected = self.expected(index, to);
        let device = &mut self.devices[to];
        let Some(receiver) = device.receivers.get_mut(&from) else {
            assert!(expected.is_err(), "a holder of the key has no receiver");
            return;
        };
        let before = receiver.to_bytes();
        let got = GroupMessage::from_bytes(&wire)
            .map_err(GroupError::from)
            .and_then(|m| receiver.decrypt(&m, &limits));
        if corrupt.is_some() {
            assert!(got.is_err(), "a corrupted message decrypted");
            assert_eq!(receiver.to_bytes(), before, "a failure changed the state");
            return;
        }
        match (expected, got) {
            (Ok(()), Ok(plaintext)) => {
                assert_eq!(plaintext.as_slice(), self.sent[index].plaintext.as_slice());
                if self.sent[index].recipients.contains(&to) {
                    // Fine: it was a member when the message was sent.
                } else {
                    panic!("device {to} read a message sent while it was not a member");
                }
                self.read.insert((to, index));
            }
            (Err(e), Err(g)) => {
                assert_eq!(g, e);
                assert_eq!(receiver.to_bytes(), before, "a failure changed the state");
            }
            (e, g) => panic!(
                "delivering {index} to {to}: expected {e:?}, got {:?}",
                g.map(|_| ())
            ),
        }
    }
}

/// The stateful `group` target: each pair of input bytes is one operation.
pub fn group(data: &[u8]) {
    let mut rng = rng(0x9a0u64);
    let devices = (0..DEVICES)
        .map(|_| Device {
            sender: GroupSender::new(&mut rng, GROUP),
            receivers: BTreeMap::new(),
        })
        .collect();
    let mut world = World {
        rng,
        devices,
        members: BTreeSet::new(),
        held: BTreeMap::new(),
        sent: Vec::new(),
        read: BTreeSet::new(),
        limits: GroupLimits {
            max_generations: 3,
            ..GroupLimits::default()
        },
    };
    world.add(0);
    world.add(1);
    for op in data.chunks_exact(2).take(MAX_OPS) {
        let (kind, arg) = (op[0] % 8, usize::from(op[1]));
        let device = arg % DEVICES;
        match kind {
            0 | 1 => world.send(device),
            2 | 3 if !world.sent.is_empty() => {
                let index = world.sent.len() - 1 - (arg / DEVICES) % world.sent.len();
                world.deliver(index, device, None);
            }
            4 => world.add(device),
            5 => world.remove(device),
            6 => world.devices[device].persist_and_restore(),
            7 if !world.sent.is_empty() => {
                let index = (arg / DEVICES) % world.sent.len();
                world.deliver(index, (device + 1) % DEVICES, Some(arg * 131 + index));
            }
            _ => {}
        }
    }
    // Every message reaches every member it was sent to that still holds its key.
    for index in 0..world.sent.len() {
        for to in world.sent[index].recipients.clone() {
            world.deliver(index, to, None);
        }
    }
}

/// Seeds: a group message and a distribution of the fixture, both persisted states, and a
/// scenario for the stateful target.
pub(crate) fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let (mut sender, receiver) = fixture();
    let distribution = sender.distribution().to_bytes().to_vec();
    let message = sender.encrypt(b"seed").expect("fresh").to_bytes();
    let mut sender_state = alloc::vec![0u8];
    sender_state.extend_from_slice(&sender.to_bytes());
    let mut receiver_state = alloc::vec![1u8];
    receiver_state.extend_from_slice(&receiver.to_bytes());
    let scenario = alloc::vec![
        0, 0, 1, 1, 0, 0, 2, 1, 4, 2, 0, 2, 3, 5, 2, 6, 5, 1, 0, 0, 2, 2, 7, 9, 6, 0, 2, 5, 0, 3,
        4, 1, 1, 1, 3, 4, 2, 8,
    ];
    alloc::vec![
        ("group_message", String::from("fixture"), message),
        ("group_distribution", String::from("fixture"), distribution),
        ("group_state", String::from("sender"), sender_state),
        ("group_state", String::from("receiver"), receiver_state),
        ("group", String::from("scenario"), scenario),
    ]
}
