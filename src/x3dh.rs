//! X3DH key agreement (Signal's X3DH specification), as functions of keys.
//!
//! Initiator A, responder B:
//! DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B) and, when B's bundle
//! had a one-time prekey, DH4 = DH(EK_A, OPK_B).
//! SK = HKDF-SHA256(salt = 0^32, IKM = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4],
//! info = "ratchetbox v1 X3DH"). AD = IK_A || IK_B (Ed25519 encodings).
//! Every DH output is checked not to be all zero.

use rand_core::CryptoRng;

use crate::error::SetupError;
use crate::kdf;
use crate::keys::{
    IdentityKey, IdentityKeyPair, KEY_LEN, LowOrderPoint, SecretBytes, X25519KeyPair,
};
use crate::wire::bundle::PreKeyBundle;
use crate::wire::message::InitialSetup;

/// Length of the associated data: both identity keys.
pub(crate) const ASSOCIATED_DATA_LEN: usize = 2 * KEY_LEN;

/// The X3DH associated data: `IK_initiator || IK_responder`.
pub(crate) fn associated_data(
    initiator: &IdentityKey,
    responder: &IdentityKey,
) -> [u8; ASSOCIATED_DATA_LEN] {
    let mut ad = [0u8; ASSOCIATED_DATA_LEN];
    ad[..KEY_LEN].copy_from_slice(initiator.as_bytes());
    ad[KEY_LEN..].copy_from_slice(responder.as_bytes());
    ad
}

/// The initiator's result: the setup to send, and the shared secret SK.
pub(crate) struct Initiated {
    pub(crate) setup: InitialSetup,
    pub(crate) shared_secret: SecretBytes,
}

/// Runs X3DH as the initiator against `bundle`. Verifies the signed prekey's signature first.
pub(crate) fn initiate<R: CryptoRng + ?Sized>(
    rng: &mut R,
    identity: &IdentityKeyPair,
    bundle: &PreKeyBundle,
) -> Result<Initiated, SetupError> {
    let their_identity = bundle.identity_key();
    if their_identity == identity.public_key() {
        return Err(SetupError::OwnBundle);
    }
    let signed_prekey = bundle.signed_prekey();
    if !signed_prekey.verify(&their_identity) {
        return Err(SetupError::BadSignature);
    }
    let ephemeral = X25519KeyPair::generate(rng);
    let spk = signed_prekey.public_key().to_dalek();
    let low_order = |_: LowOrderPoint| SetupError::LowOrderKey;
    let dh1 = identity.diffie_hellman(&spk).map_err(low_order)?;
    let dh2 = ephemeral
        .diffie_hellman(their_identity.dh_public())
        .map_err(low_order)?;
    let dh3 = ephemeral.diffie_hellman(&spk).map_err(low_order)?;
    let shared_secret = match bundle.one_time_prekey() {
        Some(opk) => {
            let dh4 = ephemeral
                .diffie_hellman(&opk.public_key().to_dalek())
                .map_err(low_order)?;
            kdf::x3dh_secret(&[
                dh1.as_bytes(),
                dh2.as_bytes(),
                dh3.as_bytes(),
                dh4.as_bytes(),
            ])
        }
        None => kdf::x3dh_secret(&[dh1.as_bytes(), dh2.as_bytes(), dh3.as_bytes()]),
    };
    Ok(Initiated {
        setup: InitialSetup {
            identity_key: identity.public_key(),
            base_key: ephemeral.public_key(),
            signed_prekey_id: signed_prekey.id(),
            one_time_prekey_id: bundle.one_time_prekey().map(|o| o.id()),
        },
        shared_secret: shared_secret.into(),
    })
}

/// Runs X3DH as the responder: the same SK from the private halves of the prekeys the
/// initial message names.
pub(crate) fn respond(
    identity: &IdentityKeyPair,
    signed_prekey: &X25519KeyPair,
    one_time_prekey: Option<&X25519KeyPair>,
    setup: &InitialSetup,
) -> Result<SecretBytes, LowOrderPoint> {
    let base_key = setup.base_key.to_dalek();
    let dh1 = signed_prekey.diffie_hellman(setup.identity_key.dh_public())?;
    let dh2 = identity.diffie_hellman(&base_key)?;
    let dh3 = signed_prekey.diffie_hellman(&base_key)?;
    let shared_secret = match one_time_prekey {
        Some(opk) => {
            let dh4 = opk.diffie_hellman(&base_key)?;
            kdf::x3dh_secret(&[
                dh1.as_bytes(),
                dh2.as_bytes(),
                dh3.as_bytes(),
                dh4.as_bytes(),
            ])
        }
        None => kdf::x3dh_secret(&[dh1.as_bytes(), dh2.as_bytes(), dh3.as_bytes()]),
    };
    Ok(shared_secret.into())
}
