//! Message content: what the high-level API sends inside the ratchet. A body, attachment
//! pointers, the sender's disappearing-message setting and its send time, padded to a size
//! bucket so that message lengths leak little.
//!
//! Every ratchet plaintext starts with a kind byte that says what follows it
//! (docs/PROTOCOL.md section 11): [`KIND_RAW`] for the bytes of
//! [`SessionRecord::encrypt`](crate::SessionRecord::encrypt), [`KIND_CONTENT`] for content.
//! The byte is inside the authenticated plaintext, so the server never sees it, and each
//! decrypting function refuses the other kind with its own error before anything is
//! committed. Content plaintext:
//!
//! ```text
//! 0x01 || protobuf Content || 0x80 || 0x00 * k
//! ```
//!
//! where `k` makes the total `max(256, PADME(len + 1))` bytes, `len` being the length of
//! `0x01 || Content` (docs/PROTOCOL.md, "Message content"). Every content of up to 255 bytes
//! pads to 256 bytes; above that PADME leaks O(log log n) bits of the length, with at most
//! about 6% overhead.

use alloc::vec::Vec;
use core::fmt;

use prost::Message as _;
use zeroize::{Zeroize, Zeroizing};

use crate::attachment::AttachmentPointer;
use crate::error::{ContentError, DecryptError};
use crate::expiry::{ExpiryTimer, TimerChange};
use crate::group::GroupDistribution;
use crate::padding;
use crate::time::Timestamp;
use crate::wire::{self, generated as pb};

/// The kind byte of a raw plaintext: `0x00 || the bytes given to encrypt`.
pub(crate) const KIND_RAW: u8 = 0x00;
/// The kind byte of content: the content format's version byte (version 1).
pub(crate) const KIND_CONTENT: u8 = wire::VERSION;

/// What a decrypting function accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// Raw bytes (`decrypt`).
    Raw,
    /// Content (`receive`).
    Content,
}

/// Checks the kind byte of a decrypted plaintext against what the caller accepts: the other
/// kind, an unknown kind byte and a plaintext without one are each their own error.
pub(crate) fn check_kind(plaintext: &[u8], expected: Kind) -> Result<(), DecryptError> {
    match (plaintext.first().copied(), expected) {
        (None, _) => Err(DecryptError::EmptyPlaintext),
        (Some(KIND_RAW), Kind::Raw) | (Some(KIND_CONTENT), Kind::Content) => Ok(()),
        (Some(KIND_CONTENT), Kind::Raw) => Err(DecryptError::ContentMessage),
        (Some(KIND_RAW), Kind::Content) => Err(DecryptError::RawMessage),
        (Some(kind), _) => Err(DecryptError::UnknownPlaintextKind { kind }),
    }
}

/// Removes the kind byte from a checked raw plaintext, in place: the bytes move down by
/// one and the last one, left over past the end, is zeroed before the length shrinks.
pub(crate) fn strip_kind(mut plaintext: Vec<u8>) -> Vec<u8> {
    if let Some(last) = plaintext.len().checked_sub(1) {
        plaintext.copy_within(1.., 0);
        plaintext[last] = 0;
        plaintext.truncate(last);
    }
    plaintext
}

/// The most attachments one message may carry.
pub const MAX_ATTACHMENTS: usize = 32;

/// Padded content is never shorter than this.
const MIN_PADDED_LEN: u64 = 256;

/// The byte that ends the content and starts the padding.
const PADDING_MARKER: u8 = 0x80;

/// What a message says: a body (opaque bytes, for example UTF-8 text) and attachment
/// pointers. The body zeroizes on drop.
///
/// ```
/// use ratchetbox::Content;
/// let content = Content::new("See you at 10");
/// assert_eq!(content.body(), b"See you at 10");
/// assert!(content.attachments().is_empty());
/// ```
#[derive(Clone, Default)]
pub struct Content {
    body: Vec<u8>,
    attachments: Vec<AttachmentPointer>,
    /// A sender key for a group, in pairwise content only (docs/PROTOCOL.md 16.7).
    group_distribution: Option<GroupDistribution>,
}

impl Content {
    /// Content with this body and no attachments.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            attachments: Vec::new(),
            group_distribution: None,
        }
    }

    /// Empty content carrying a group sender key (sent by the device layer).
    #[cfg(feature = "std")] // only the device layer sends it
    pub(crate) fn with_group_distribution(distribution: GroupDistribution) -> Self {
        Self {
            body: Vec::new(),
            attachments: Vec::new(),
            group_distribution: Some(distribution),
        }
    }

    /// The group sender key this pairwise message carried, if any. The device layer takes it
    /// in (`Device::receive`); such a message has no body for the person.
    pub fn group_distribution(&self) -> Option<&GroupDistribution> {
        self.group_distribution.as_ref()
    }

    /// Adds an attachment pointer (see [`attachment`](crate::attachment)). At most
    /// [`MAX_ATTACHMENTS`] per message.
    pub fn add_attachment(&mut self, pointer: AttachmentPointer) -> Result<(), ContentError> {
        if self.attachments.len() >= MAX_ATTACHMENTS {
            return Err(ContentError::TooManyAttachments {
                count: self.attachments.len() + 1,
                max: MAX_ATTACHMENTS,
            });
        }
        self.attachments.push(pointer);
        Ok(())
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The attachment pointers.
    pub fn attachments(&self) -> &[AttachmentPointer] {
        &self.attachments
    }

    /// Takes the attachment pointers out.
    pub fn take_attachments(&mut self) -> Vec<AttachmentPointer> {
        core::mem::take(&mut self.attachments)
    }
}

impl Drop for Content {
    fn drop(&mut self) {
        self.body.zeroize();
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Content")
            .field("body_len", &self.body.len())
            .field("attachments", &self.attachments)
            .field("group_distribution", &self.group_distribution)
            .finish()
    }
}

/// Content as decoded from a message, with the metadata the sender attached.
pub(crate) struct Envelope {
    pub(crate) content: Content,
    pub(crate) timer: ExpiryTimer,
    pub(crate) sent_at: Timestamp,
}

/// The padded length for `len` bytes of encoded content (plus the marker byte).
fn padded_len(len: usize) -> Option<usize> {
    let with_marker = u64::try_from(len).ok()?.checked_add(1)?;
    usize::try_from(padding::padded_len(with_marker, MIN_PADDED_LEN)?).ok()
}

/// Encodes and pads content for encryption.
pub(crate) fn encode_padded(
    content: &Content,
    timer: ExpiryTimer,
    sent_at: Timestamp,
) -> Result<Zeroizing<Vec<u8>>, ContentError> {
    // `add_attachment` and `decode_padded` refuse more, so no `Content` holds more.
    debug_assert!(content.attachments.len() <= MAX_ATTACHMENTS);
    // The body is field 1, so it comes first: it is written straight from `content` below,
    // and the rest of the message (with an empty body, which proto3 omits) after it.
    let proto = pb::Content {
        body: Vec::new(),
        attachments: content
            .attachments
            .iter()
            .map(|a| core::mem::take(&mut *a.to_bytes()))
            .collect(),
        timer: Some(pb::DisappearingTimer {
            seconds: timer.seconds(),
            version: timer.version(),
        }),
        sent_at: sent_at.as_unix_secs(),
        group_distribution: content
            .group_distribution
            .as_ref()
            .map(|d| core::mem::take(&mut *d.to_bytes()))
            .unwrap_or_default(),
    };
    let body_len = if content.body.is_empty() {
        0
    } else {
        prost::encoding::bytes::encoded_len(1, &content.body)
    };
    let len = 1 + body_len + proto.encoded_len();
    let padded = padded_len(len).ok_or(ContentError::BadPadding)?;
    let mut out = Zeroizing::new(Vec::with_capacity(padded));
    out.push(wire::VERSION);
    if !content.body.is_empty() {
        prost::encoding::bytes::encode(1, &content.body, &mut *out);
    }
    proto.encode_raw(&mut *out);
    out.push(PADDING_MARKER);
    out.resize(padded, 0);
    Ok(out)
}

/// Removes and checks the padding, then decodes and validates the content.
pub(crate) fn decode_padded(plaintext: &[u8]) -> Result<Envelope, ContentError> {
    const OBJECT: &str = "Content";
    let marker = plaintext
        .iter()
        .rposition(|&b| b != 0)
        .ok_or(ContentError::BadPadding)?;
    if plaintext.get(marker) != Some(&PADDING_MARKER) || padded_len(marker) != Some(plaintext.len())
    {
        return Err(ContentError::BadPadding);
    }
    let encoded = plaintext.get(..marker).ok_or(ContentError::BadPadding)?;
    let mut proto: pb::Content = wire::decode(encoded, OBJECT)?;
    if proto.attachments.len() > MAX_ATTACHMENTS {
        return Err(ContentError::TooManyAttachments {
            count: proto.attachments.len(),
            max: MAX_ATTACHMENTS,
        });
    }
    let timer = wire::required(proto.timer, OBJECT, "timer")?;
    let timer = ExpiryTimer::new(timer.seconds, timer.version)?;
    let attachments = proto
        .attachments
        .iter()
        .map(|bytes| AttachmentPointer::from_bytes(bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let group_distribution = if proto.group_distribution.is_empty() {
        None
    } else {
        Some(GroupDistribution::from_bytes(&proto.group_distribution)?)
    };
    Ok(Envelope {
        content: Content {
            body: core::mem::take(&mut proto.body),
            attachments,
            group_distribution,
        },
        timer,
        sent_at: Timestamp::from_unix_secs(proto.sent_at),
    })
}

/// A message sent with [`SessionRecord::send`](crate::SessionRecord::send): the bytes to
/// deliver, and when the message expires on this device.
#[derive(Debug)]
pub struct SentMessage {
    wire: Vec<u8>,
    sent_at: Timestamp,
    timer: ExpiryTimer,
}

impl SentMessage {
    pub(crate) fn new(wire: Vec<u8>, sent_at: Timestamp, timer: ExpiryTimer) -> Self {
        Self {
            wire,
            sent_at,
            timer,
        }
    }

    /// The message bytes to deliver to the peer.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// The message bytes, owned.
    pub fn into_wire(self) -> Vec<u8> {
        self.wire
    }

    /// The local time it was sent (the `now` given to `send`).
    pub fn sent_at(&self) -> Timestamp {
        self.sent_at
    }

    /// The disappearing-message timer it was sent under.
    pub fn timer(&self) -> ExpiryTimer {
        self.timer
    }

    /// When the sender's copy expires: local send time + timer. `None` if the timer is off.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.timer.deadline(self.sent_at)
    }
}

/// A message received with [`SessionRecord::receive`](crate::SessionRecord::receive).
#[derive(Debug)]
pub struct ReceivedMessage {
    content: Content,
    sent_at: Timestamp,
    received_at: Timestamp,
    timer: ExpiryTimer,
    timer_change: TimerChange,
}

impl ReceivedMessage {
    pub(crate) fn new(
        envelope: Envelope,
        received_at: Timestamp,
        timer_change: TimerChange,
    ) -> Self {
        Self {
            // A send time in the future (by our clock) is clamped to the time of receipt.
            sent_at: envelope.sent_at.min(received_at),
            content: envelope.content,
            received_at,
            timer: envelope.timer,
            timer_change,
        }
    }

    /// The content.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// The content, owned.
    pub fn into_content(self) -> Content {
        self.content
    }

    /// The sender's claimed send time, never later than [`received_at`](Self::received_at).
    /// For display and ordering only: it comes from the peer's clock.
    pub fn sent_at(&self) -> Timestamp {
        self.sent_at
    }

    /// The local time the message was received (the `now` given to `receive`).
    pub fn received_at(&self) -> Timestamp {
        self.received_at
    }

    /// The timer the sender attached to this message. The message expires by this timer,
    /// whatever the conversation's setting becomes.
    pub fn timer(&self) -> ExpiryTimer {
        self.timer
    }

    /// What the message did to the conversation's disappearing-message setting.
    pub fn timer_change(&self) -> TimerChange {
        self.timer_change
    }

    /// When this message expires on this device, if the user reads it at `read_at` (local
    /// time): `read_at + timer`, with `read_at` clamped to no earlier than the time of
    /// receipt. `None` if the timer is off.
    pub fn expires_at(&self, read_at: Timestamp) -> Option<Timestamp> {
        self.timer.deadline(read_at.max(self.received_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn envelope(body: &[u8]) -> Zeroizing<Vec<u8>> {
        encode_padded(
            &Content::new(body),
            ExpiryTimer::new(30, 2).unwrap(),
            Timestamp::from_unix_secs(7),
        )
        .unwrap()
    }

    #[test]
    fn short_contents_all_pad_to_the_same_length() {
        let lengths: Vec<usize> = [0usize, 1, 50, 200]
            .iter()
            .map(|&n| envelope(&vec![b'x'; n]).len())
            .collect();
        assert!(lengths.iter().all(|&l| l == 256), "{lengths:?}");
        // Longer content follows PADME: never more than ~6% overhead above 256 bytes.
        for n in [300usize, 1000, 5000, 70_000] {
            let padded = envelope(&vec![0u8; n]).len();
            assert!(
                padded > n && (padded as f64) < (n as f64 + 12.0) * 1.07,
                "{n} -> {padded}"
            );
        }
    }

    #[test]
    fn every_first_byte_has_its_outcome_on_both_paths() {
        for byte in 0..=u8::MAX {
            let plaintext = [byte, 7, 8];
            let (raw, content) = match byte {
                0x00 => (Ok(()), Err(DecryptError::RawMessage)),
                0x01 => (Err(DecryptError::ContentMessage), Ok(())),
                kind => (
                    Err(DecryptError::UnknownPlaintextKind { kind }),
                    Err(DecryptError::UnknownPlaintextKind { kind }),
                ),
            };
            assert_eq!(check_kind(&plaintext, Kind::Raw), raw, "{byte:#04x}");
            assert_eq!(
                check_kind(&plaintext, Kind::Content),
                content,
                "{byte:#04x}"
            );
        }
        for kind in [Kind::Raw, Kind::Content] {
            assert_eq!(check_kind(&[], kind), Err(DecryptError::EmptyPlaintext));
        }
    }

    #[test]
    fn stripping_the_kind_byte_keeps_the_rest_in_place() {
        let stripped = strip_kind(vec![0, 1, 2, 3]);
        assert_eq!(stripped, [1, 2, 3]);
        // In place: the allocation is the decrypted buffer's (no copy of the plaintext).
        assert_eq!(stripped.capacity(), 4);
        assert_eq!(strip_kind(vec![0]), Vec::<u8>::new());
        assert_eq!(strip_kind(Vec::new()), Vec::<u8>::new());
    }

    #[test]
    fn padding_round_trips_and_is_checked() {
        let padded = envelope(b"hello\0\0");
        let decoded = decode_padded(&padded).unwrap();
        assert_eq!(decoded.content.body(), b"hello\0\0");
        assert_eq!(decoded.timer, ExpiryTimer::new(30, 2).unwrap());
        assert_eq!(decoded.sent_at, Timestamp::from_unix_secs(7));

        let mut extra_zero = padded.to_vec();
        extra_zero.push(0);
        assert_eq!(
            decode_padded(&extra_zero).err(),
            Some(ContentError::BadPadding)
        );
        let mut short = padded.to_vec();
        short.pop();
        assert_eq!(decode_padded(&short).err(), Some(ContentError::BadPadding));
        let mut nonzero = padded.to_vec();
        *nonzero.last_mut().unwrap() = 1;
        assert_eq!(
            decode_padded(&nonzero).err(),
            Some(ContentError::BadPadding)
        );
        assert_eq!(
            decode_padded(&[0u8; 256]).err(),
            Some(ContentError::BadPadding)
        );
        assert_eq!(decode_padded(&[]).err(), Some(ContentError::BadPadding));
    }
}
