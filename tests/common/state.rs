//! A hand-written mirror of the account messages of `proto/state.proto`, independent of the
//! crate's generated code, so tests can craft persisted accounts field by field.

#![allow(dead_code)]

#[derive(Clone, PartialEq, prost::Message)]
pub struct SignedPreKeyState {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(uint64, tag = "2")]
    pub created_at: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub secret: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub signature: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OneTimePreKeyState {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub secret: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub created_at: u64,
    #[prost(uint64, optional, tag = "4")]
    pub replaced_at: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UsedSetup {
    #[prost(uint32, tag = "1")]
    pub signed_prekey_id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub base_key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KemPreKeyState {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(uint64, tag = "2")]
    pub created_at: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub seed: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub signature: Vec<u8>,
    #[prost(uint64, optional, tag = "5")]
    pub replaced_at: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AccountState {
    #[prost(bytes = "vec", tag = "1")]
    pub identity_seed: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    pub signed_prekeys: Vec<SignedPreKeyState>,
    #[prost(message, repeated, tag = "3")]
    pub one_time_prekeys: Vec<OneTimePreKeyState>,
    #[prost(uint32, tag = "4")]
    pub next_signed_prekey_id: u32,
    #[prost(uint32, tag = "5")]
    pub next_one_time_prekey_id: u32,
    #[prost(message, repeated, tag = "6")]
    pub used_setups: Vec<UsedSetup>,
    #[prost(message, repeated, tag = "7")]
    pub last_resort_kem_prekeys: Vec<KemPreKeyState>,
    #[prost(message, repeated, tag = "8")]
    pub one_time_kem_prekeys: Vec<KemPreKeyState>,
    #[prost(uint32, tag = "9")]
    pub next_kem_prekey_id: u32,
    #[prost(uint32, repeated, tag = "10")]
    pub removed_last_resort_kem_ids: Vec<u32>,
}

/// Decodes `0x01 || protobuf` persisted account bytes into the mirror.
pub fn decode_account(bytes: &[u8]) -> AccountState {
    assert_eq!(bytes[0], 1, "version byte");
    prost::Message::decode(&bytes[1..]).expect("an AccountState")
}

/// Encodes the mirror as persisted account bytes (`0x01 || protobuf`).
pub fn encode_account(state: &AccountState) -> Vec<u8> {
    let mut out = vec![1];
    prost::Message::encode(state, &mut out).expect("encodes");
    out
}
