//! X3DH (Signal's X3DH specification) and its post-quantum extension PQXDH (Signal's PQXDH
//! specification), as functions of keys.
//!
//! Initiator A, responder B:
//! DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B) and, when B's bundle
//! had a one-time prekey, DH4 = DH(EK_A, OPK_B). With a KEM prekey (PQXDH), A also
//! encapsulates to it with ML-KEM-1024: (CT, SS) = Encaps(PQPK_B).
//! SK = HKDF-SHA256(salt = 0^32, IKM = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4] [|| SS],
//! info = "ratchetbox v1 X3DH", or "ratchetbox v1 PQXDH ML-KEM-1024" with SS).
//! AD = IK_A || IK_B (Ed25519 encodings). Every DH output is checked not to be all zero.
//! From the same input, with its own label, the session's exporter secret
//! (docs/PROTOCOL.md section 14): "ratchetbox v1 X3DH exporter secret", or
//! "ratchetbox v1 PQXDH ML-KEM-1024 exporter secret" with SS.

use rand_core::CryptoRng;

use crate::error::SetupError;
use crate::kdf;
use crate::kem::{KemCiphertext, KemKeyPair};
use crate::keys::{
    IdentityKey, IdentityKeyPair, KEY_LEN, LowOrderPoint, SecretBytes, SharedSecret, X25519KeyPair,
};
use crate::wire::bundle::PreKeyBundle;
use crate::wire::message::{InitialSetup, KemSetup};

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

/// What both sides of a setup derive: SK, the first root key, and the session's exporter
/// secret.
pub(crate) struct SetupSecrets {
    pub(crate) shared_secret: SecretBytes,
    pub(crate) exporter_secret: SecretBytes,
}

/// The initiator's result: the setup to send, and the secrets.
pub(crate) struct Initiated {
    pub(crate) setup: InitialSetup,
    pub(crate) secrets: SetupSecrets,
}

/// SK and the exporter secret from the DH outputs (3 or 4) and the optional KEM shared
/// secret.
fn session_keys(
    dh1: &SharedSecret,
    dh2: &SharedSecret,
    dh3: &SharedSecret,
    dh4: Option<&SharedSecret>,
    kem_secret: Option<&SecretBytes>,
) -> SetupSecrets {
    let kem = kem_secret.map(|s| &s.0);
    let (shared_secret, exporter_secret) = match dh4 {
        Some(dh4) => kdf::x3dh_secrets(
            &[
                dh1.as_bytes(),
                dh2.as_bytes(),
                dh3.as_bytes(),
                dh4.as_bytes(),
            ],
            kem,
        ),
        None => kdf::x3dh_secrets(&[dh1.as_bytes(), dh2.as_bytes(), dh3.as_bytes()], kem),
    };
    SetupSecrets {
        shared_secret: shared_secret.into(),
        exporter_secret: exporter_secret.into(),
    }
}

/// Runs PQXDH (or, if `allow_classical` and the bundle has no KEM prekey, X3DH) as the
/// initiator against `bundle`. Verifies the prekey signatures first. A KEM prekey in the
/// bundle is always used.
pub(crate) fn initiate<R: CryptoRng + ?Sized>(
    rng: &mut R,
    identity: &IdentityKeyPair,
    bundle: &PreKeyBundle,
    allow_classical: bool,
) -> Result<Initiated, SetupError> {
    let their_identity = bundle.identity_key();
    if their_identity == identity.public_key() {
        return Err(SetupError::OwnBundle);
    }
    let signed_prekey = bundle.signed_prekey();
    if !signed_prekey.verify(&their_identity) {
        return Err(SetupError::BadSignature);
    }
    let kem_prekey = match bundle.kem_prekey() {
        Some(kem) if kem.verify(&their_identity) => Some(kem),
        Some(_) => return Err(SetupError::BadKemSignature),
        None if allow_classical => None,
        None => return Err(SetupError::ClassicalSetupRefused),
    };
    let ephemeral = X25519KeyPair::generate(rng);
    let spk = signed_prekey.public_key().to_dalek();
    let low_order = |_: LowOrderPoint| SetupError::LowOrderKey;
    let dh1 = identity.diffie_hellman(&spk).map_err(low_order)?;
    // A bundle's identity key was decoded from a peer's bytes, so it has its X25519 form; a
    // key without one is refused like a low-order key.
    let their_dh = their_identity.dh_public().ok_or(SetupError::LowOrderKey)?;
    let dh2 = ephemeral.diffie_hellman(&their_dh).map_err(low_order)?;
    let dh3 = ephemeral.diffie_hellman(&spk).map_err(low_order)?;
    let dh4 = bundle
        .one_time_prekey()
        .map(|opk| ephemeral.diffie_hellman(&opk.public_key().to_dalek()))
        .transpose()
        .map_err(low_order)?;
    let (kem, kem_secret) = match kem_prekey {
        Some(prekey) => {
            let (ciphertext, secret) = prekey.public_key().encapsulate(rng);
            let setup = KemSetup {
                prekey_id: prekey.id(),
                ciphertext,
            };
            (Some(setup), Some(secret))
        }
        None => (None, None),
    };
    let secrets = session_keys(&dh1, &dh2, &dh3, dh4.as_ref(), kem_secret.as_ref());
    Ok(Initiated {
        setup: InitialSetup {
            identity_key: identity.public_key(),
            base_key: ephemeral.public_key(),
            signed_prekey_id: signed_prekey.id(),
            one_time_prekey_id: bundle.one_time_prekey().map(|o| o.id()),
            kem,
        },
        secrets,
    })
}

/// Runs the responder's side: the same SK and exporter secret from the private halves of
/// the prekeys the initial message names (and, for PQXDH, the decapsulated KEM secret).
pub(crate) fn respond(
    identity: &IdentityKeyPair,
    signed_prekey: &X25519KeyPair,
    one_time_prekey: Option<&X25519KeyPair>,
    kem: Option<(&KemKeyPair, &KemCiphertext)>,
    setup: &InitialSetup,
) -> Result<SetupSecrets, LowOrderPoint> {
    let base_key = setup.base_key.to_dalek();
    // Decoded from the initial message, so it has its X25519 form; a key without one is
    // refused like a low-order key.
    let dh1 =
        signed_prekey.diffie_hellman(&setup.identity_key.dh_public().ok_or(LowOrderPoint)?)?;
    let dh2 = identity.diffie_hellman(&base_key)?;
    let dh3 = signed_prekey.diffie_hellman(&base_key)?;
    let dh4 = one_time_prekey
        .map(|opk| opk.diffie_hellman(&base_key))
        .transpose()?;
    let kem_secret = kem.map(|(pair, ciphertext)| pair.decapsulate(ciphertext));
    Ok(session_keys(
        &dh1,
        &dh2,
        &dh3,
        dh4.as_ref(),
        kem_secret.as_ref(),
    ))
}
