//! What a server keeps of one device's prekeys, and the bundles it hands out: the prekey
//! workflow of docs/PROTOCOL.md sections 3.4 and 3.5 from the server's side, for tests.
//!
//! Include it with `#[path = "common/server.rs"] mod server;`.

#![allow(dead_code)]

use rand_core::CryptoRng;
use ratchetbox::{
    Device, IdentityKey, KemPreKey, OneTimePreKey, PreKeyBundle, PreKeyUpload, ServerPreKeyStatus,
    SignedPreKey, Timestamp,
};

/// One device's published prekeys, as its server stores them (no secret).
pub struct Published {
    identity: IdentityKey,
    signed: SignedPreKey,
    last_resort: KemPreKey,
    one_time: Vec<OneTimePreKey>,
    one_time_kem: Vec<KemPreKey>,
}

impl Published {
    /// The first upload of a new device (the server has nothing for it).
    pub fn publish<R: CryptoRng + ?Sized>(
        device: &mut Device,
        rng: &mut R,
        now: Timestamp,
    ) -> Self {
        let bytes = device
            .prekey_maintenance(rng, now, ServerPreKeyStatus::default())
            .expect("maintenance")
            .expect("a first upload");
        let upload = PreKeyUpload::from_bytes(&bytes).expect("a valid upload");
        Self {
            identity: upload.identity_key(),
            signed: upload.signed_prekey().expect("a signed prekey").clone(),
            last_resort: upload
                .last_resort_kem_prekey()
                .expect("a last-resort KEM prekey")
                .clone(),
            one_time: upload.one_time_prekeys().iter().rev().copied().collect(),
            one_time_kem: upload
                .one_time_kem_prekeys()
                .iter()
                .rev()
                .cloned()
                .collect(),
        }
    }

    /// A bundle with the next one-time prekey and one-time KEM prekey (each handed out once),
    /// falling back to the last-resort KEM prekey.
    pub fn bundle(&mut self) -> Vec<u8> {
        let one_time = self.one_time.pop();
        let kem = self.one_time_kem.pop();
        PreKeyBundle::assemble(
            self.identity,
            &self.signed,
            one_time,
            Some(kem.as_ref().unwrap_or(&self.last_resort)),
        )
        .expect("stored keys are signed")
        .to_bytes()
    }
}
