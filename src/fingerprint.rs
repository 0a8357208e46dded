//! Safety numbers and scannable fingerprints: how two people check that the identity key
//! each app uses for the other is the other's real key, and not one a server substituted.
//!
//! The design follows libsignal's numeric fingerprint (`rust/protocol/src/fingerprint.rs`
//! in signalapp/libsignal, and `NumericFingerprintGenerator` in its Java client): per party,
//! an iterated SHA-512 over a version, the identity key and a stable identifier, 5,200
//! iterations as in Signal's clients; 30 digits per party from six 5-byte chunks taken
//! modulo 100,000; the two halves sorted so that both phones show the same 60 digits; and a
//! scannable protobuf carrying both parties' fingerprints. ratchetbox's own choices: a
//! domain-separation label, a length prefix on the identifier, a cap on identifier length,
//! the 32-byte Ed25519 key encoding, and identifier digests in the scannable form so that a
//! code from the wrong contact is told apart from a key mismatch.
//!
//! docs/PROTOCOL.md, section 10 "Safety numbers", specifies every byte; `tests/data/safety_number.py` is an
//! independent implementation of that specification.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use prost::Message as _;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::error::{DecodeError, FingerprintError};
use crate::kdf::{LABEL_SAFETY_NUMBER, LABEL_SCANNABLE_IDENTIFIER};
use crate::keys::{IdentityKey, KEY_LEN};
use crate::wire::{self, generated as pb};

/// Bytes of a party's iterated hash that the scannable form carries (libsignal: 32).
const FINGERPRINT_LEN: usize = 32;
/// Bytes of the identifier digest in the scannable form.
const IDENTIFIER_DIGEST_LEN: usize = 16;
/// Digits per party (libsignal: 30, from six 5-byte chunks).
const HALF_DIGITS: usize = 30;
/// Digits in the displayed safety number.
const DIGITS: usize = 2 * HALF_DIGITS;
/// Digits per displayed group, and bytes per chunk of the hash that makes one group.
const GROUP: usize = 5;

/// The safety number of a conversation between two parties, each named by an identity key
/// and a stable identifier.
///
/// Both phones compute it, each from its own point of view (`local` is the phone's owner,
/// `remote` the contact), and get the same 60 digits, which the two people compare, in
/// person or over another trusted channel. Or one phone shows [`scannable`](Self::scannable)
/// as a QR code and the other checks it with [`compare_scanned`](Self::compare_scanned).
///
/// The stable identifier is whatever the app uses to name an account (a user id, a
/// username): bytes chosen by the app, the same on both phones for the same person, at most
/// [`MAX_IDENTIFIER_LEN`](Self::MAX_IDENTIFIER_LEN) bytes. It binds the key to the person, so
/// that a key cannot be passed off as someone else's.
///
/// ```
/// use ratchetbox::{IdentityKeyPair, SafetyNumber, ScanResult};
///
/// let mut rng = ratchetbox::OsRng::new();
/// let alice = IdentityKeyPair::generate(&mut rng).public_key();
/// let bob = IdentityKeyPair::generate(&mut rng).public_key();
///
/// // Each phone computes the number from its own point of view.
/// let on_alice = SafetyNumber::new(b"alice", &alice, b"bob", &bob)?;
/// let on_bob = SafetyNumber::new(b"bob", &bob, b"alice", &alice)?;
/// assert_eq!(on_alice.display(), on_bob.display());
/// assert_eq!(on_alice.display().len(), 12 * 5 + 11); // 12 groups of 5 digits
///
/// // Bob's phone shows a QR code of these bytes; Alice's phone scans and checks it.
/// let qr = on_bob.scannable();
/// assert_eq!(on_alice.compare_scanned(&qr)?, ScanResult::Match);
///
/// // Had the server given Alice another key for Bob, the check would fail.
/// let mallory = IdentityKeyPair::generate(&mut rng).public_key();
/// let fooled = SafetyNumber::new(b"alice", &alice, b"bob", &mallory)?;
/// assert_ne!(fooled.display(), on_bob.display());
/// assert_eq!(fooled.compare_scanned(&qr)?, ScanResult::Mismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SafetyNumber {
    local: Party,
    remote: Party,
}

/// What one phone derives about one party.
#[derive(Clone, Copy)]
struct Party {
    /// The first bytes of SHA-512 over the identifier alone (for "wrong contact").
    identifier_digest: [u8; IDENTIFIER_DIGEST_LEN],
    /// The first bytes of the party's iterated hash: the first 30 make the party's digits,
    /// the first 32 go into the scannable form.
    fingerprint: [u8; FINGERPRINT_LEN],
}

/// The outcome of checking a scanned code against one's own safety number.
///
/// Only [`Match`](Self::Match) means the keys are verified. Every other result means they
/// are not, and the app must not mark the contact as verified.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanResult {
    /// The code is the contact's, and both phones use the same keys for both parties.
    Match,
    /// The code is the contact's (both identifiers agree), but a key differs: one of the
    /// phones uses a key for the other party that is not that party's. Either someone's key
    /// changed (a reinstall) and the other phone has not seen the new one yet, or a key was
    /// substituted: an attack. Do not trust the conversation until the numbers match.
    Mismatch,
    /// The code was made by a different safety-number version; the two phones cannot
    /// compare. Updating both apps fixes it.
    DifferentVersion {
        /// The version of the scanned code.
        theirs: u32,
        /// This build's version, [`SafetyNumber::VERSION`].
        ours: u32,
    },
    /// The code is for a different pair of people: the identifiers in it are not this
    /// contact's and one's own (say, the code of another contact, or one's own code).
    WrongContact,
}

impl ScanResult {
    /// Whether the scan verified the keys (only [`ScanResult::Match`] does).
    pub fn is_match(&self) -> bool {
        matches!(self, Self::Match)
    }
}

/// The result of decoding a scanned code.
enum Scanned {
    /// A code of this build's version: the party who shows it, then the one it is shown to.
    Current { local: Party, remote: Party },
    /// A code of another safety-number version; nothing else in it was read.
    OtherVersion(u32),
}

impl SafetyNumber {
    /// The safety-number version: hashed into every fingerprint and carried in the
    /// scannable form. A different version means a different number.
    pub const VERSION: u32 = 1;

    /// SHA-512 invocations per party. libsignal's numeric fingerprint uses 5,200 iterations
    /// in Signal's clients: each party's 30 digits hold log2(10^30) ≈ 99.7 bits, and the
    /// iterations add log2(5200) ≈ 12.3 bits of work, so finding a key whose digits match a
    /// given party's costs about 2^112 SHA-512 computations.
    pub const ITERATIONS: u32 = 5200;

    /// The longest stable identifier accepted, in bytes. It is encoded with a 2-byte length
    /// prefix; user ids, phone numbers, UUIDs and usernames are all far shorter.
    pub const MAX_IDENTIFIER_LEN: usize = 1024;

    /// Computes the safety number between the local party (this phone's owner) and the
    /// remote party (the contact), from their stable identifiers and identity keys.
    ///
    /// This runs 2 × [`ITERATIONS`](Self::ITERATIONS) SHA-512 computations (a few
    /// milliseconds): compute it when the user opens the verification screen, not per
    /// message.
    ///
    /// # Errors
    /// [`FingerprintError::IdentifierTooLong`] if an identifier is longer than
    /// [`MAX_IDENTIFIER_LEN`](Self::MAX_IDENTIFIER_LEN) bytes.
    pub fn new(
        local_id: &[u8],
        local_key: &IdentityKey,
        remote_id: &[u8],
        remote_key: &IdentityKey,
    ) -> Result<Self, FingerprintError> {
        // Both lengths are checked before any hashing.
        let local_len = length_prefix(local_id, "local")?;
        let remote_len = length_prefix(remote_id, "remote")?;
        Ok(Self {
            local: Party::new(local_key.as_bytes(), local_id, local_len),
            remote: Party::new(remote_key.as_bytes(), remote_id, remote_len),
        })
    }

    /// The 60 digits as 12 groups of 5 separated by single spaces, the same on both phones:
    /// `"12345 67890 ... 24680"`. The same string as the [`Display`](fmt::Display) form.
    pub fn display(&self) -> String {
        self.to_string()
    }

    /// The bytes to show as a QR code for the contact's phone to scan:
    /// `0x01 || protobuf ScannableFingerprint` (docs/PROTOCOL.md, "Safety numbers").
    ///
    /// The code is different on the two phones (each lists itself first). It holds no
    /// secret, but it does let whoever reads it check a guess of either identifier (see
    /// docs/PROTOCOL.md).
    pub fn scannable(&self) -> Vec<u8> {
        wire::encode(&pb::ScannableFingerprint {
            version: Self::VERSION,
            local: Some(self.local.to_proto()),
            remote: Some(self.remote.to_proto()),
        })
    }

    /// Checks a code scanned from the contact's phone (the bytes of its
    /// [`scannable`](Self::scannable)) against this safety number.
    ///
    /// The rule, in order:
    /// 1. the code's safety-number version differs from [`VERSION`](Self::VERSION):
    ///    [`ScanResult::DifferentVersion`];
    /// 2. the code's two identifier digests are not those of this number's remote and
    ///    local identifiers, in that order: [`ScanResult::WrongContact`];
    /// 3. the code's two fingerprints are not this number's remote and local ones, in that
    ///    order: [`ScanResult::Mismatch`];
    /// 4. otherwise [`ScanResult::Match`].
    ///
    /// Digests and fingerprints are compared in constant time.
    ///
    /// # Errors
    /// [`FingerprintError::Decode`] if the bytes are not a ratchetbox scannable fingerprint
    /// (empty, another wire format version, not valid canonical protobuf, or a field missing
    /// or of the wrong size). Nothing was compared.
    pub fn compare_scanned(&self, scanned: &[u8]) -> Result<ScanResult, FingerprintError> {
        let (their_local, their_remote) = match decode_scanned(scanned)? {
            Scanned::Current { local, remote } => (local, remote),
            Scanned::OtherVersion(theirs) => {
                return Ok(ScanResult::DifferentVersion {
                    theirs,
                    ours: Self::VERSION,
                });
            }
        };
        // The phone that made the code is our remote party, and we are its remote party.
        let same_people = their_local
            .identifier_digest
            .ct_eq(&self.remote.identifier_digest)
            & their_remote
                .identifier_digest
                .ct_eq(&self.local.identifier_digest);
        let same_keys = their_local.fingerprint.ct_eq(&self.remote.fingerprint)
            & their_remote.fingerprint.ct_eq(&self.local.fingerprint);
        Ok(if !bool::from(same_people) {
            ScanResult::WrongContact
        } else if !bool::from(same_keys) {
            ScanResult::Mismatch
        } else {
            ScanResult::Match
        })
    }

    /// The 60 digits: the two parties' 30-digit halves, the smaller first.
    fn digits(&self) -> [u8; DIGITS] {
        let local = self.local.digits();
        let remote = self.remote.digits();
        let (first, second) = if local <= remote {
            (local, remote)
        } else {
            (remote, local)
        };
        let mut out = [0u8; DIGITS];
        let (head, tail) = out.split_at_mut(HALF_DIGITS);
        head.copy_from_slice(&first);
        tail.copy_from_slice(&second);
        out
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.digits().chunks_exact(GROUP).enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            for &digit in group {
                f.write_char(char::from(digit))?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SafetyNumber")
            .field(&format_args!("{self}"))
            .finish()
    }
}

impl Party {
    fn new(key: &[u8; KEY_LEN], id: &[u8], id_len: [u8; 2]) -> Self {
        let chain = iterated_hash(key, id, id_len);
        let digest: [u8; 64] = Sha512::new()
            .chain_update(LABEL_SCANNABLE_IDENTIFIER)
            .chain_update(id_len)
            .chain_update(id)
            .finalize()
            .into();
        Self {
            identifier_digest: prefix(&digest),
            fingerprint: prefix(&chain),
        }
    }

    /// The party's 30 digits: bytes 0..30 of the iterated hash as six 5-byte big-endian
    /// integers, each reduced modulo 100,000 and written as 5 decimal digits (libsignal's
    /// encoding). 2^40 is not a multiple of 100,000; the bias is below 10^-7 per group.
    fn digits(&self) -> [u8; HALF_DIGITS] {
        let mut out = [b'0'; HALF_DIGITS];
        for (chunk, group) in self
            .fingerprint
            .chunks_exact(GROUP)
            .zip(out.chunks_exact_mut(GROUP))
        {
            let mut be = [0u8; 8];
            be[8 - GROUP..].copy_from_slice(chunk);
            // Writing the five low decimal digits is the reduction modulo 100,000.
            let mut n = u64::from_be_bytes(be);
            for digit in group.iter_mut().rev() {
                *digit = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
        out
    }

    fn to_proto(self) -> pb::FingerprintParty {
        pb::FingerprintParty {
            identifier_digest: self.identifier_digest.to_vec(),
            fingerprint: self.fingerprint.to_vec(),
        }
    }

    fn from_proto(p: &pb::FingerprintParty) -> Result<Self, DecodeError> {
        const OBJECT: &str = "FingerprintParty";
        Ok(Self {
            identifier_digest: wire::fixed(&p.identifier_digest, OBJECT, "identifier_digest")?,
            fingerprint: wire::fixed(&p.fingerprint, OBJECT, "fingerprint")?,
        })
    }
}

/// The 2-byte big-endian length prefix of an identifier, or the error for one that is too
/// long.
fn length_prefix(id: &[u8], party: &'static str) -> Result<[u8; 2], FingerprintError> {
    match u16::try_from(id.len()) {
        Ok(len) if id.len() <= SafetyNumber::MAX_IDENTIFIER_LEN => Ok(len.to_be_bytes()),
        _ => Err(FingerprintError::IdentifierTooLong {
            party,
            len: id.len(),
            max: SafetyNumber::MAX_IDENTIFIER_LEN,
        }),
    }
}

/// A party's iterated hash (libsignal's structure, ratchetbox's encoding):
///
/// ```text
/// H_0 = "ratchetbox v1 safety number" || u32be(VERSION) || key || u16be(len(id)) || id
/// H_i = SHA-512(H_{i-1} || key)    for i = 1 ..= ITERATIONS
/// ```
///
/// and the result is H_ITERATIONS. Every field of H_0 has a fixed length except the
/// identifier, which has a length prefix, so the bytes hashed first determine every field.
fn iterated_hash(key: &[u8; KEY_LEN], id: &[u8], id_len: [u8; 2]) -> [u8; 64] {
    let mut hash: [u8; 64] = Sha512::new()
        .chain_update(LABEL_SAFETY_NUMBER)
        .chain_update(SafetyNumber::VERSION.to_be_bytes())
        .chain_update(key)
        .chain_update(id_len)
        .chain_update(id)
        .chain_update(key)
        .finalize()
        .into();
    for _ in 1..SafetyNumber::ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(key)
            .finalize()
            .into();
    }
    hash
}

/// The first `N` bytes of a SHA-512 output.
fn prefix<const N: usize>(hash: &[u8; 64]) -> [u8; N] {
    const { assert!(N <= 64, "a prefix of a SHA-512 output") };
    let mut out = [0u8; N];
    out.copy_from_slice(&hash[..N]);
    out
}

/// Decodes `0x01 || protobuf ScannableFingerprint`.
///
/// This is [`wire::decode`] with one step moved: the safety-number version is read before
/// the canonical-encoding check, so that a code of a later version, which may add fields,
/// is reported as a version difference rather than as non-canonical. A code of this build's
/// version gets every check.
fn decode_scanned(bytes: &[u8]) -> Result<Scanned, DecodeError> {
    const OBJECT: &str = "ScannableFingerprint";
    let (&version, body) = bytes
        .split_first()
        .ok_or(DecodeError::Empty { object: OBJECT })?;
    if version != wire::VERSION {
        return Err(DecodeError::UnsupportedVersion {
            object: OBJECT,
            found: version,
            supported: wire::VERSION,
        });
    }
    let p = pb::ScannableFingerprint::decode(body)
        .map_err(|_| DecodeError::Malformed { object: OBJECT })?;
    if p.version == 0 {
        return Err(DecodeError::MissingField {
            object: OBJECT,
            field: "version",
        });
    }
    if p.version != SafetyNumber::VERSION {
        return Ok(Scanned::OtherVersion(p.version));
    }
    wire::check_canonical(&p, body, OBJECT)?;
    let local = wire::required(p.local.as_ref(), OBJECT, "local")?;
    let remote = wire::required(p.remote.as_ref(), OBJECT, "remote")?;
    Ok(Scanned::Current {
        local: Party::from_proto(local)?,
        remote: Party::from_proto(remote)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party_with_fingerprint(fingerprint: [u8; FINGERPRINT_LEN]) -> Party {
        Party {
            identifier_digest: [0; IDENTIFIER_DIGEST_LEN],
            fingerprint,
        }
    }

    /// Every bit of the raw key bytes enters the chain, including flips that are not valid
    /// identity keys and so cannot reach `SafetyNumber::new` (tests/fingerprint.rs flips the
    /// valid ones through the public API).
    #[test]
    fn every_raw_key_bit_changes_the_party_digits() {
        let key = [0x5a; KEY_LEN];
        let id = b"alice";
        let len = [0, 5];
        let base = Party::new(&key, id, len);
        for bit in 0..KEY_LEN * 8 {
            let mut flipped = key;
            flipped[bit / 8] ^= 1 << (bit % 8);
            let other = Party::new(&flipped, id, len);
            assert_ne!(other.digits(), base.digits(), "key bit {bit}");
            assert_eq!(other.identifier_digest, base.identifier_digest);
        }
    }

    #[test]
    fn every_identifier_bit_changes_the_identifier_digest() {
        let key = [0x5a; KEY_LEN];
        let base = Party::new(&key, b"bob", [0, 3]);
        for bit in 0..24 {
            let mut id = *b"bob";
            id[bit / 8] ^= 1 << (bit % 8);
            let other = Party::new(&key, &id, [0, 3]);
            assert_ne!(other.identifier_digest, base.identifier_digest, "bit {bit}");
            assert_ne!(other.fingerprint, base.fingerprint, "bit {bit}");
        }
    }

    #[test]
    fn digits_are_five_byte_chunks_modulo_100000() {
        assert_eq!(
            &party_with_fingerprint([0; 32]).digits(),
            b"000000000000000000000000000000"
        );
        // 2^40 - 1 = 1099511627775.
        assert_eq!(
            &party_with_fingerprint([0xff; 32]).digits(),
            b"277752777527775277752777527775"
        );
        // Leading zeros are kept; bytes 30 and 31 do not count.
        let mut fp = [0; 32];
        fp[4] = 42; // chunk 0 = 42
        fp[9] = 0xa0; // chunk 1 = 160 + 0x86 * 256 = 34464
        fp[8] = 0x86;
        fp[14] = 1; // chunk 2 = 2^32 + 1 = 4294967297 -> 67297
        fp[10] = 1;
        fp[30] = 0xff;
        fp[31] = 0xff;
        assert_eq!(
            &party_with_fingerprint(fp).digits(),
            b"000423446467297000000000000000"
        );
    }

    #[test]
    fn halves_are_sorted_whichever_party_is_local() {
        let small = party_with_fingerprint([0; 32]);
        let large = party_with_fingerprint([0xff; 32]);
        let a = SafetyNumber {
            local: small,
            remote: large,
        };
        let b = SafetyNumber {
            local: large,
            remote: small,
        };
        let expected = "00000 00000 00000 00000 00000 00000 27775 27775 27775 27775 27775 27775";
        assert_eq!(a.display(), expected);
        assert_eq!(b.display(), expected);
    }

    #[test]
    fn identifier_length_limit_is_inclusive() {
        let max = [0u8; SafetyNumber::MAX_IDENTIFIER_LEN];
        assert_eq!(length_prefix(&max, "local"), Ok([0x04, 0x00]));
        assert_eq!(length_prefix(&[], "local"), Ok([0, 0]));
        assert_eq!(length_prefix(&[0; 300], "local"), Ok([0x01, 0x2c]));
        assert!(length_prefix(&[0; SafetyNumber::MAX_IDENTIFIER_LEN + 1], "local").is_err());
    }
}
