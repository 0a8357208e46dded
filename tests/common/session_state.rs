//! A hand-written mirror of the session messages of `proto/state.proto` (object kind 3, the
//! session record, with everything inside it), independent of the crate's generated code, so
//! tests can craft persisted session state field by field (for example a chain counter next
//! to `u32::MAX`, which no test could reach by sending 4 billion messages).

#![allow(dead_code)]

#[derive(Clone, PartialEq, prost::Message)]
pub struct SkippedRun {
    #[prost(bytes = "vec", tag = "1")]
    pub ratchet_key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub first_counter: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub message_keys: Vec<u8>,
    #[prost(uint64, tag = "4")]
    pub stored_at: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChainHistory {
    #[prost(bytes = "vec", tag = "1")]
    pub ratchet_key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub length: u32,
    #[prost(uint32, tag = "3")]
    pub evicted_below: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SendingChainState {
    #[prost(bytes = "vec", tag = "1")]
    pub chain_key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub counter: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReceivingChainState {
    #[prost(bytes = "vec", tag = "1")]
    pub chain_key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub counter: u32,
    #[prost(uint32, tag = "3")]
    pub evicted_below: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RatchetState {
    #[prost(bytes = "vec", tag = "1")]
    pub root_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub our_ratchet_secret: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub their_ratchet_key: Vec<u8>,
    #[prost(message, optional, tag = "4")]
    pub sending: Option<SendingChainState>,
    #[prost(message, optional, tag = "5")]
    pub receiving: Option<ReceivingChainState>,
    #[prost(uint32, tag = "6")]
    pub previous_sending_length: u32,
    #[prost(message, repeated, tag = "7")]
    pub skipped: Vec<SkippedRun>,
    #[prost(message, repeated, tag = "8")]
    pub history: Vec<ChainHistory>,
    #[prost(bytes = "vec", tag = "9")]
    pub our_ratchet_key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLimits {
    #[prost(uint32, tag = "1")]
    pub max_skip: u32,
    #[prost(uint32, tag = "2")]
    pub max_skipped_keys: u32,
    #[prost(uint32, tag = "3")]
    pub max_previous_sessions: u32,
    #[prost(uint64, tag = "4")]
    pub max_skipped_key_age: u64,
    #[prost(bool, tag = "5")]
    pub allow_classical_setup: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionKemState {
    #[prost(uint32, tag = "1")]
    pub prekey_id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub ciphertext_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub ciphertext: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionState {
    #[prost(bytes = "vec", tag = "1")]
    pub local_identity: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub remote_identity: Vec<u8>,
    #[prost(bool, tag = "3")]
    pub initiator: bool,
    #[prost(bytes = "vec", tag = "4")]
    pub base_key: Vec<u8>,
    #[prost(uint32, tag = "5")]
    pub signed_prekey_id: u32,
    #[prost(uint32, optional, tag = "6")]
    pub one_time_prekey_id: Option<u32>,
    #[prost(bool, tag = "7")]
    pub awaiting_reply: bool,
    #[prost(message, optional, tag = "8")]
    pub ratchet: Option<RatchetState>,
    #[prost(message, optional, tag = "9")]
    pub limits: Option<SessionLimits>,
    #[prost(message, optional, tag = "10")]
    pub kem: Option<SessionKemState>,
    #[prost(bytes = "vec", tag = "11")]
    pub exporter_secret: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerIdentity {
    #[prost(bytes = "vec", tag = "1")]
    pub identity_key: Vec<u8>,
    /// `TrustLevel` (an enum on the wire: a varint).
    #[prost(int32, tag = "2")]
    pub trust: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DisappearingTimer {
    #[prost(uint32, tag = "1")]
    pub seconds: u32,
    #[prost(uint32, tag = "2")]
    pub version: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionRecordState {
    #[prost(message, optional, tag = "1")]
    pub current: Option<SessionState>,
    #[prost(message, repeated, tag = "2")]
    pub previous: Vec<SessionState>,
    #[prost(message, optional, tag = "3")]
    pub limits: Option<SessionLimits>,
    #[prost(message, optional, tag = "4")]
    pub peer: Option<PeerIdentity>,
    #[prost(message, optional, tag = "5")]
    pub timer: Option<DisappearingTimer>,
    #[prost(bool, tag = "6")]
    pub skipped_keys_apart: bool,
}

/// Decodes `0x01 || protobuf` persisted record bytes into the mirror.
pub fn decode_record(bytes: &[u8]) -> SessionRecordState {
    assert_eq!(bytes[0], 1, "version byte");
    prost::Message::decode(&bytes[1..]).expect("a SessionRecordState")
}

/// Encodes the mirror as persisted record bytes (`0x01 || protobuf`).
pub fn encode_record(state: &SessionRecordState) -> Vec<u8> {
    let mut out = vec![1];
    prost::Message::encode(state, &mut out).expect("encodes");
    out
}

/// Applies `edit` to the ratchet of the record's current session and re-encodes the record.
pub fn edit_current_ratchet(record: &[u8], edit: impl FnOnce(&mut RatchetState)) -> Vec<u8> {
    let mut state = decode_record(record);
    let ratchet = state
        .current
        .as_mut()
        .expect("a current session")
        .ratchet
        .as_mut()
        .expect("a ratchet");
    edit(ratchet);
    encode_record(&state)
}
