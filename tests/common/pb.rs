//! A hand-written mirror of `proto/wire.proto`, independent of the crate's generated code,
//! so tests can build, inspect and tamper with wire objects field by field.

#![allow(dead_code)]

#[derive(Clone, PartialEq, prost::Message)]
pub struct SignedPreKey {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(uint64, tag = "2")]
    pub created_at: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub signature: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OneTimePreKey {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KemPreKey {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(uint64, tag = "2")]
    pub created_at: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub signature: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PreKeyBundle {
    #[prost(bytes = "vec", tag = "1")]
    pub identity_key: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub signed_prekey: Option<SignedPreKey>,
    #[prost(message, optional, tag = "3")]
    pub one_time_prekey: Option<OneTimePreKey>,
    #[prost(message, optional, tag = "4")]
    pub kem_prekey: Option<KemPreKey>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PreKeyUpload {
    #[prost(bytes = "vec", tag = "1")]
    pub identity_key: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub signed_prekey: Option<SignedPreKey>,
    #[prost(message, optional, tag = "3")]
    pub last_resort_kem_prekey: Option<KemPreKey>,
    #[prost(message, repeated, tag = "4")]
    pub one_time_prekeys: Vec<OneTimePreKey>,
    #[prost(bytes = "vec", tag = "5")]
    pub one_time_prekeys_signature: Vec<u8>,
    #[prost(message, repeated, tag = "6")]
    pub one_time_kem_prekeys: Vec<KemPreKey>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KemSetup {
    #[prost(uint32, tag = "1")]
    pub prekey_id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub ciphertext: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RatchetMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub ratchet_key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub counter: u32,
    #[prost(uint32, tag = "3")]
    pub previous_counter: u32,
    #[prost(bytes = "vec", tag = "4")]
    pub nonce: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub ciphertext: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InitialMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub identity_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub base_key: Vec<u8>,
    #[prost(uint32, tag = "3")]
    pub signed_prekey_id: u32,
    #[prost(uint32, optional, tag = "4")]
    pub one_time_prekey_id: Option<u32>,
    #[prost(message, optional, tag = "5")]
    pub kem: Option<KemSetup>,
    #[prost(message, optional, tag = "6")]
    pub message: Option<RatchetMessage>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    #[prost(message, tag = "1")]
    Ratchet(RatchetMessage),
    #[prost(message, tag = "2")]
    Initial(InitialMessage),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(oneof = "Body", tags = "1, 2")]
    pub body: Option<Body>,
}

/// Decodes `version || protobuf` into the mirror type (version 1, or 2 for the messages of
/// a PQXDH session).
pub fn decode<M: prost::Message + Default>(bytes: &[u8]) -> M {
    assert!(matches!(bytes.first(), Some(1 | 2)), "version byte");
    M::decode(&bytes[1..]).expect("valid protobuf")
}

/// Encodes the mirror type as `0x01 || protobuf`.
pub fn encode<M: prost::Message>(message: &M) -> Vec<u8> {
    encode_versioned(1, message)
}

/// Encodes the mirror type as `version || protobuf`.
pub fn encode_versioned<M: prost::Message>(version: u8, message: &M) -> Vec<u8> {
    let mut out = vec![version];
    message.encode(&mut out).expect("encode");
    out
}

impl Message {
    /// The ratchet message inside, whichever the kind.
    pub fn ratchet_mut(&mut self) -> &mut RatchetMessage {
        match self.body.as_mut().expect("body") {
            Body::Ratchet(r) => r,
            Body::Initial(i) => i.message.as_mut().expect("inner message"),
        }
    }

    pub fn initial_mut(&mut self) -> Option<&mut InitialMessage> {
        match self.body.as_mut().expect("body") {
            Body::Initial(i) => Some(i),
            Body::Ratchet(_) => None,
        }
    }
}

/// Applies `edit` to the decoded message and re-encodes it with the same version byte.
pub fn edit_message(wire: &[u8], edit: impl FnOnce(&mut Message)) -> Vec<u8> {
    edit_message_version(wire, wire[0], edit)
}

/// Applies `edit` to the decoded message and re-encodes it with the version byte `version`.
pub fn edit_message_version(wire: &[u8], version: u8, edit: impl FnOnce(&mut Message)) -> Vec<u8> {
    let mut message: Message = decode(wire);
    edit(&mut message);
    encode_versioned(version, &message)
}

/// A named modification of a decoded wire object.
pub type Edit<T> = (&'static str, Box<dyn Fn(&mut T)>);

#[derive(Clone, PartialEq, prost::Message)]
pub struct DisappearingTimer {
    #[prost(uint32, tag = "1")]
    pub seconds: u32,
    #[prost(uint32, tag = "2")]
    pub version: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Content {
    #[prost(bytes = "vec", tag = "1")]
    pub body: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub attachments: Vec<Vec<u8>>,
    #[prost(message, optional, tag = "3")]
    pub timer: Option<DisappearingTimer>,
    #[prost(uint64, tag = "4")]
    pub sent_at: u64,
}

/// PADME (Nikitin et al., PETS 2019), written from the paper's formula independently of
/// the crate: E = floor(log2 L), S = floor(log2 E) + 1, z = E - S, round L up to 2^z.
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - len.leading_zeros() as u64;
    let s = (63 - e.leading_zeros() as u64) + 1;
    let z = e - s;
    let mask = (1u64 << z) - 1;
    (len + mask) & !mask
}

/// The content plaintext as docs/PROTOCOL.md specifies it: `0x01 || Content || 0x80 || 0*`,
/// padded to max(256, PADME(len + 1)).
pub fn padded_content(content: &Content) -> Vec<u8> {
    let mut out = encode(content);
    let target = padme((out.len() as u64 + 1).max(256)) as usize;
    out.push(0x80);
    out.resize(target, 0);
    out
}
