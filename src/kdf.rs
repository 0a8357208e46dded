//! Every key derivation of the protocol and every domain-separation label, in one place.
//!
//! docs/PROTOCOL.md specifies each of these byte for byte; the test vectors in
//! `tests/vectors.rs` pin them, and the unit tests in `src/primitive_vectors.rs` check HKDF
//! and HMAC against RFC 5869, RFC 4231 and Wycheproof through these functions.

use hkdf::{Hkdf, HkdfExtract};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// HKDF info for the X3DH shared secret.
pub(crate) const LABEL_X3DH: &[u8] = b"ratchetbox v1 X3DH";
/// HKDF info for the PQXDH shared secret (X3DH plus an ML-KEM-1024 shared secret).
pub(crate) const LABEL_PQXDH: &[u8] = b"ratchetbox v1 PQXDH ML-KEM-1024";
/// Ed25519 signature context prefix for signed ML-KEM prekeys.
pub(crate) const LABEL_SIGNED_KEM_PREKEY: &[u8] = b"ratchetbox v1 signed kem prekey";
/// HKDF info for the exporter secret of a classical X3DH session (same input as its SK).
pub(crate) const LABEL_X3DH_EXPORTER: &[u8] = b"ratchetbox v1 X3DH exporter secret";
/// HKDF info for the exporter secret of a PQXDH session (same input as its SK).
pub(crate) const LABEL_PQXDH_EXPORTER: &[u8] = b"ratchetbox v1 PQXDH ML-KEM-1024 exporter secret";
/// First piece of the HKDF-Expand info of every exported key (src/exporter.rs).
pub(crate) const LABEL_EXPORTER: &[u8] = b"ratchetbox v1 exporter";
/// HKDF info for the root-chain step of the Double Ratchet.
pub(crate) const LABEL_ROOT: &[u8] = b"ratchetbox v1 root chain";
/// Ed25519 signature context prefix for signed prekeys.
pub(crate) const LABEL_SIGNED_PREKEY: &[u8] = b"ratchetbox v1 signed prekey";
/// HKDF info prefix for the key that seals persisted state (followed by the object kind).
pub(crate) const LABEL_STATE_SEAL: &[u8] = b"ratchetbox v1 sealed state ";
/// Prefix of the first input of a party's safety-number hash chain (src/fingerprint.rs).
pub(crate) const LABEL_SAFETY_NUMBER: &[u8] = b"ratchetbox v1 safety number";
/// Prefix of the identifier digest in a scannable fingerprint (src/fingerprint.rs).
pub(crate) const LABEL_SCANNABLE_IDENTIFIER: &[u8] = b"ratchetbox v1 scannable identifier";

/// Symmetric-chain HMAC input that yields the message key (Double Ratchet spec, section 5.2).
const MESSAGE_KEY_INPUT: u8 = 0x01;
/// Symmetric-chain HMAC input that yields the next chain key.
const CHAIN_KEY_INPUT: u8 = 0x02;

/// The X3DH prefix F: 32 bytes of 0xFF for X25519 (X3DH spec, section 2.2).
const X3DH_PREFIX: [u8; 32] = [0xFF; 32];

type HmacSha256 = Hmac<Sha256>;

/// The requested HKDF output is longer than 255 * 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputTooLong;

/// HKDF-SHA256 (RFC 5869) into `okm`, with the input keying material and the info given as
/// pieces that are concatenated.
pub(crate) fn hkdf_sha256_into(
    salt: &[u8],
    ikm: &[&[u8]],
    info: &[&[u8]],
    okm: &mut [u8],
) -> Result<(), OutputTooLong> {
    let mut extract = HkdfExtract::<Sha256>::new(Some(salt));
    for piece in ikm {
        extract.input_ikm(piece);
    }
    let (_, hkdf): (_, Hkdf<Sha256>) = extract.finalize();
    hkdf.expand_multi_info(info, okm).map_err(|_| OutputTooLong)
}

/// HKDF-SHA256 with a fixed output length `N`, which is at most 255 * 32 (checked at compile
/// time), so expansion cannot fail.
pub(crate) fn hkdf_sha256<const N: usize>(
    salt: &[u8],
    ikm: &[&[u8]],
    info: &[&[u8]],
) -> Zeroizing<[u8; N]> {
    const { assert!(N <= 255 * 32, "HKDF-SHA256 output is limited to 8160 bytes") };
    let mut okm = Zeroizing::new([0u8; N]);
    let expanded = hkdf_sha256_into(salt, ikm, info, okm.as_mut_slice());
    debug_assert!(expanded.is_ok(), "N is bounded at compile time");
    okm
}

/// HMAC-SHA256 keyed with a 32-byte key, ready for input.
///
/// HMAC pads a key shorter than the 64-byte block with zeros (RFC 2104, section 2), so
/// zero-padding here and using the infallible fixed-size constructor is the same function.
fn hmac_with_key(key: &[u8; 32]) -> HmacSha256 {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mac = <HmacSha256 as KeyInit>::new(&block.into());
    block.zeroize();
    mac
}

/// HMAC-SHA256 of `data` under a 32-byte key.
#[cfg(test)]
pub(crate) fn hmac_sha256(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut mac = hmac_with_key(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The session key SK from the DH outputs DH1 || DH2 || DH3 [|| DH4] and, for PQXDH, the
/// ML-KEM shared secret SS:
/// HKDF-SHA256(salt = 32 zero bytes, IKM = 0xFF * 32 || DH outputs [|| SS],
/// info = LABEL_X3DH, or LABEL_PQXDH when SS is present).
#[cfg(test)]
pub(crate) fn x3dh_secret(
    dh_outputs: &[&[u8; 32]],
    kem_secret: Option<&[u8; 32]>,
) -> Zeroizing<[u8; 32]> {
    x3dh_secrets(dh_outputs, kem_secret).0
}

/// SK (as in `x3dh_secret`) and, from the same input and salt with its own label, the
/// session's exporter secret:
/// HKDF-SHA256(salt = 32 zero bytes, IKM as for SK,
/// info = LABEL_X3DH_EXPORTER, or LABEL_PQXDH_EXPORTER when SS is present).
/// One extract, two expands: the same outputs as two separate HKDF computations.
pub(crate) fn x3dh_secrets(
    dh_outputs: &[&[u8; 32]],
    kem_secret: Option<&[u8; 32]>,
) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let mut extract = HkdfExtract::<Sha256>::new(Some(&[0u8; 32]));
    extract.input_ikm(&X3DH_PREFIX);
    for dh in dh_outputs {
        extract.input_ikm(dh.as_slice());
    }
    if let Some(secret) = kem_secret {
        extract.input_ikm(secret.as_slice());
    }
    let (_, hkdf): (_, Hkdf<Sha256>) = extract.finalize();
    let (label, exporter_label) = if kem_secret.is_some() {
        (LABEL_PQXDH, LABEL_PQXDH_EXPORTER)
    } else {
        (LABEL_X3DH, LABEL_X3DH_EXPORTER)
    };
    let mut root = Zeroizing::new([0u8; 32]);
    let mut exporter = Zeroizing::new([0u8; 32]);
    let root_ok = hkdf.expand(label, root.as_mut_slice());
    let exporter_ok = hkdf.expand(exporter_label, exporter.as_mut_slice());
    debug_assert!(
        root_ok.is_ok() && exporter_ok.is_ok(),
        "32 bytes are within HKDF-SHA256's output limit"
    );
    (root, exporter)
}

/// An exported key (src/exporter.rs): HKDF-Expand(PRK = exporter secret, info =
/// LABEL_EXPORTER || u16be(out.len()) || u8(label length) || label || u16be(context length)
/// || context, L = out.len()). The caller has checked the lengths: the label is 1 to 255
/// bytes, the context at most 65,535, and `out` 1 to 255 * 32 bytes.
pub(crate) fn export_key(
    exporter_secret: &[u8; 32],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<(), OutputTooLong> {
    let out_len = u16::try_from(out.len()).map_err(|_| OutputTooLong)?;
    let label_len = u8::try_from(label.len()).map_err(|_| OutputTooLong)?;
    let context_len = u16::try_from(context.len()).map_err(|_| OutputTooLong)?;
    // A 32-byte PRK is HKDF-SHA256's hash length, so `from_prk` accepts it.
    let hkdf = Hkdf::<Sha256>::from_prk(exporter_secret).map_err(|_| OutputTooLong)?;
    hkdf.expand_multi_info(
        &[
            LABEL_EXPORTER,
            &out_len.to_be_bytes(),
            &[label_len],
            label,
            &context_len.to_be_bytes(),
            context,
        ],
        out,
    )
    .map_err(|_| OutputTooLong)
}

/// KDF_RK: HKDF-SHA256(salt = root key, IKM = DH output, info = LABEL_ROOT), 64 bytes split
/// into the next root key and a chain key.
pub(crate) fn root_step(
    root_key: &[u8; 32],
    dh_output: &[u8; 32],
) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let okm = hkdf_sha256::<64>(root_key, &[dh_output], &[LABEL_ROOT]);
    let mut next_root = Zeroizing::new([0u8; 32]);
    let mut chain = Zeroizing::new([0u8; 32]);
    next_root.copy_from_slice(&okm[..32]);
    chain.copy_from_slice(&okm[32..]);
    (next_root, chain)
}

/// KDF_CK: message key = HMAC-SHA256(ck, 0x01), next chain key = HMAC-SHA256(ck, 0x02).
///
/// Both MACs share one key schedule (the HMAC state after absorbing the padded key), which
/// gives the same outputs as two independent HMAC computations.
pub(crate) fn chain_step(chain_key: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let keyed = hmac_with_key(chain_key);
    let mut mac = keyed.clone();
    mac.update(&[CHAIN_KEY_INPUT]);
    let next_chain = Zeroizing::new(mac.finalize().into_bytes().into());
    let mut mac = keyed;
    mac.update(&[MESSAGE_KEY_INPUT]);
    let message_key = Zeroizing::new(mac.finalize().into_bytes().into());
    (next_chain, message_key)
}

/// The next chain key alone: HMAC-SHA256(ck, 0x02), the first output of
/// [`chain_step`]. Walking a chain with it skips the message keys, for reaching one message's
/// key before it is known whether the message is authentic.
pub(crate) fn next_chain_key(chain_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut mac = hmac_with_key(chain_key);
    mac.update(&[CHAIN_KEY_INPUT]);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// The one-time key that seals a persisted object:
/// HKDF-SHA256(salt, IKM = storage key, info = LABEL_STATE_SEAL || kind name).
pub(crate) fn state_seal_key(
    storage_key: &[u8; 32],
    salt: &[u8; 32],
    kind: &str,
) -> Zeroizing<[u8; 32]> {
    hkdf_sha256::<32>(salt, &[storage_key], &[LABEL_STATE_SEAL, kind.as_bytes()])
}

/// HKDF info prefix for an attachment's payload key (followed by the attachment header).
pub(crate) const LABEL_ATTACHMENT_PAYLOAD: &[u8] = b"ratchetbox v1 attachment payload key";
/// HKDF info prefix for an attachment's key commitment (followed by the attachment header).
pub(crate) const LABEL_ATTACHMENT_COMMITMENT: &[u8] = b"ratchetbox v1 attachment key commitment";

/// The payload key and the key commitment of a sealed attachment:
/// HKDF-SHA256(salt = header salt, IKM = file key, info = label || header), once with
/// LABEL_ATTACHMENT_PAYLOAD and once with LABEL_ATTACHMENT_COMMITMENT.
///
/// Both are bound to every header byte (magic, version, chunk size, salt), so a changed
/// header yields a different commitment and a different payload key.
pub(crate) fn attachment_keys(
    file_key: &[u8; 32],
    salt: &[u8; 32],
    header: &[u8],
) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    // Same salt and IKM: one extract, two expands (as `chain_step` shares its key schedule).
    let (_, hkdf) = Hkdf::<Sha256>::extract(Some(salt), file_key);
    let mut payload = Zeroizing::new([0u8; 32]);
    let mut commitment = [0u8; 32];
    let payload_ok =
        hkdf.expand_multi_info(&[LABEL_ATTACHMENT_PAYLOAD, header], payload.as_mut_slice());
    let commitment_ok =
        hkdf.expand_multi_info(&[LABEL_ATTACHMENT_COMMITMENT, header], &mut commitment);
    debug_assert!(
        payload_ok.is_ok() && commitment_ok.is_ok(),
        "32 bytes are within HKDF-SHA256's output limit"
    );
    (payload, commitment)
}

/// HKDF info prefix for a group message's AES-256-GCM key and nonce (docs/PROTOCOL.md 16.2).
pub(crate) const LABEL_GROUP_MESSAGE_KEY: &[u8] = b"ratchetbox v1 group message key";
/// Ed25519 signature prefix of a group message (docs/PROTOCOL.md 16.3).
pub(crate) const LABEL_GROUP_SIGNATURE: &[u8] = b"ratchetbox v1 group message";

/// A group message's AES-256-GCM key and nonce from its message-key seed (HMAC(ck, 0x01)):
/// HKDF-SHA256(salt = 32 zero bytes, IKM = seed, info = LABEL_GROUP_MESSAGE_KEY || group id
/// || u32be(key id) || u32be(iteration), L = 44), split 32 || 12.
pub(crate) fn group_message_key(
    seed: &[u8; 32],
    group_id: &[u8; 32],
    key_id: u32,
    iteration: u32,
) -> (Zeroizing<[u8; 32]>, [u8; 12]) {
    let okm = hkdf_sha256::<44>(
        &[0u8; 32],
        &[seed],
        &[
            LABEL_GROUP_MESSAGE_KEY,
            group_id,
            &key_id.to_be_bytes(),
            &iteration.to_be_bytes(),
        ],
    );
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_step_equals_two_independent_hmacs() {
        let ck = [7u8; 32];
        let (next, mk) = chain_step(&ck);
        assert_eq!(*next, hmac_sha256(&ck, &[0x02]));
        assert_eq!(*mk, hmac_sha256(&ck, &[0x01]));
        assert_ne!(*next, *mk);
        assert_eq!(*next_chain_key(&ck), hmac_sha256(&ck, &[0x02]));
    }

    #[test]
    fn x3dh_secret_depends_on_every_input_and_its_position() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let c = [3u8; 32];
        let d = [4u8; 32];
        let base = x3dh_secret(&[&a, &b, &c], None);
        assert_ne!(*base, *x3dh_secret(&[&a, &b, &c, &d], None));
        assert_ne!(*base, *x3dh_secret(&[&b, &a, &c], None));
        assert_ne!(*base, *x3dh_secret(&[&a, &b, &d], None));
        // The KEM secret is an input, and the mode changes the label: a PQ secret equal to
        // what would have been DH4 still gives a different key.
        assert_ne!(
            *x3dh_secret(&[&a, &b, &c], Some(&d)),
            *x3dh_secret(&[&a, &b, &c, &d], None)
        );
        assert_ne!(
            *x3dh_secret(&[&a, &b, &c], Some(&d)),
            *x3dh_secret(&[&a, &b, &c], Some(&a))
        );
    }
}
