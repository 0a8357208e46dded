//! The key exporter: keys for other channels (a call's media keys, a file transfer outside
//! the conversation) derived from a session, like a TLS exporter (RFC 5705, RFC 8446 section
//! 7.5). docs/PROTOCOL.md section 14 specifies it byte for byte.
//!
//! Each session holds an exporter secret, derived at setup from the same input as its first
//! root key under its own label and never changed afterwards, so both peers derive the same
//! keys whatever the state of their ratchets. An exported key is
//! `HKDF-Expand(exporter secret, info, L)` with an unambiguous info: a fixed prefix, the
//! output length, then the label and the context, each after its length.

use crate::error::ExportError;
use crate::kdf;
use crate::keys::SecretBytes;

/// The longest exporter label, in bytes (its length is written in one byte).
pub const MAX_EXPORTER_LABEL_LEN: usize = u8::MAX as usize;

/// The longest exporter context, in bytes (its length is written in two bytes).
pub const MAX_EXPORTER_CONTEXT_LEN: usize = u16::MAX as usize;

/// The longest exported key, in bytes: what HKDF-SHA256 can produce, 255 * 32.
pub const MAX_EXPORTED_KEY_LEN: usize = 255 * 32;

/// Checks the lengths, then fills `out` with the key for `label` and `context`. On error
/// `out` is untouched.
pub(crate) fn export(
    secret: &SecretBytes,
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<(), ExportError> {
    if label.is_empty() {
        return Err(ExportError::EmptyLabel);
    }
    if label.len() > MAX_EXPORTER_LABEL_LEN {
        return Err(ExportError::LabelTooLong {
            len: label.len(),
            max: MAX_EXPORTER_LABEL_LEN,
        });
    }
    if context.len() > MAX_EXPORTER_CONTEXT_LEN {
        return Err(ExportError::ContextTooLong {
            len: context.len(),
            max: MAX_EXPORTER_CONTEXT_LEN,
        });
    }
    let invalid_length = ExportError::InvalidOutputLength {
        len: out.len(),
        max: MAX_EXPORTED_KEY_LEN,
    };
    if out.is_empty() || out.len() > MAX_EXPORTED_KEY_LEN {
        return Err(invalid_length);
    }
    kdf::export_key(&secret.0, label, context, out).map_err(|_| invalid_length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use hkdf::Hkdf;
    use sha2::Sha256;

    const SECRET: SecretBytes = SecretBytes([0x42; 32]);

    /// The derivation written out from docs/PROTOCOL.md section 14 with the `hkdf` crate's
    /// expand and a hand-built info.
    fn expected(label: &[u8], context: &[u8], len: usize) -> vec::Vec<u8> {
        let mut info = b"ratchetbox v1 exporter".to_vec();
        info.extend_from_slice(&(len as u16).to_be_bytes());
        info.push(label.len() as u8);
        info.extend_from_slice(label);
        info.extend_from_slice(&(context.len() as u16).to_be_bytes());
        info.extend_from_slice(context);
        let mut out = vec![0u8; len];
        Hkdf::<Sha256>::from_prk(&[0x42; 32])
            .unwrap()
            .expand(&info, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn the_key_is_hkdf_expand_of_the_documented_info() {
        for (label, context, len) in [
            (&b"media"[..], &b"call 1"[..], 32),
            (b"m", b"", 1),
            (&[7u8; 255][..], &[9u8; 65_535][..], MAX_EXPORTED_KEY_LEN),
        ] {
            let mut out = vec![0u8; len];
            export(&SECRET, label, context, &mut out).unwrap();
            assert_eq!(out, expected(label, context, len));
        }
    }

    #[test]
    fn label_context_and_length_are_not_ambiguous() {
        let key = |label: &[u8], context: &[u8], len: usize| {
            let mut out = vec![0u8; len];
            export(&SECRET, label, context, &mut out).unwrap();
            out
        };
        // Moving a byte between label and context changes the key.
        assert_ne!(key(b"ab", b"c", 32), key(b"a", b"bc", 32));
        // A shorter key is not a prefix of a longer one: the length is in the info.
        assert_ne!(key(b"a", b"", 16)[..], key(b"a", b"", 32)[..16]);
        assert_ne!(key(b"a", b"", 32), key(b"b", b"", 32));
        assert_ne!(key(b"a", b"x", 32), key(b"a", b"y", 32));
    }

    #[test]
    fn every_refusal_leaves_the_output_untouched() {
        let mut out = [0xEEu8; 32];
        assert_eq!(
            export(&SECRET, b"", b"", &mut out),
            Err(ExportError::EmptyLabel)
        );
        assert_eq!(
            export(&SECRET, &[1; 256], b"", &mut out),
            Err(ExportError::LabelTooLong { len: 256, max: 255 })
        );
        assert_eq!(
            export(&SECRET, b"a", &vec![1; 65_536], &mut out),
            Err(ExportError::ContextTooLong {
                len: 65_536,
                max: 65_535
            })
        );
        assert_eq!(out, [0xEE; 32]);
        assert_eq!(
            export(&SECRET, b"a", b"", &mut []),
            Err(ExportError::InvalidOutputLength { len: 0, max: 8160 })
        );
        let mut long = vec![0xEEu8; 8161];
        assert_eq!(
            export(&SECRET, b"a", b"", &mut long),
            Err(ExportError::InvalidOutputLength {
                len: 8161,
                max: 8160
            })
        );
        assert!(long.iter().all(|&b| b == 0xEE));
    }
}
