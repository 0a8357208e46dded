//! Safety numbers and scannable fingerprints (issue 8).
//!
//! The expected values come from outside the crate: `reference_hash` below recomputes the
//! hash chain with `sha2::Sha512` directly from the encoding documented in docs/PROTOCOL.md
//! ("Safety numbers"), and the fixed vector in `tests/data/safety_number.txt` was printed by
//! `tests/data/safety_number.py`, an independent Python (hashlib-only) implementation of the
//! same document.

mod common;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ratchetbox::{
    DecodeError, FingerprintError, IdentityKey, IdentityKeyPair, SafetyNumber, ScanResult,
};
use sha2::{Digest, Sha512};

// ---------------------------------------------------------------------------------------
// An independent implementation of the documented algorithm (not the crate's code).

const LABEL: &[u8] = b"ratchetbox v1 safety number";
const ID_LABEL: &[u8] = b"ratchetbox v1 scannable identifier";

/// H_0 = label || u32be(1) || key || u16be(len(id)) || id; H_i = SHA-512(H_{i-1} || key).
fn reference_hash(key: &[u8; 32], id: &[u8], iterations: u32) -> [u8; 64] {
    let mut h: Vec<u8> = Vec::new();
    h.extend_from_slice(LABEL);
    h.extend_from_slice(&1u32.to_be_bytes());
    h.extend_from_slice(key);
    h.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
    h.extend_from_slice(id);
    for _ in 0..iterations {
        let mut sha = Sha512::new();
        sha.update(&h);
        sha.update(key);
        h = sha.finalize().to_vec();
    }
    h.try_into().unwrap()
}

fn reference_identifier_digest(id: &[u8]) -> [u8; 16] {
    let mut sha = Sha512::new();
    sha.update(ID_LABEL);
    sha.update(u16::try_from(id.len()).unwrap().to_be_bytes());
    sha.update(id);
    sha.finalize()[..16].try_into().unwrap()
}

fn reference_half(hash: &[u8; 64]) -> String {
    hash[..30]
        .chunks(5)
        .map(|c| {
            let n = c.iter().fold(0u64, |acc, &b| acc * 256 + u64::from(b));
            format!("{:05}", n % 100_000)
        })
        .collect()
}

fn reference_display(a: &[u8; 64], b: &[u8; 64]) -> String {
    let mut halves = [reference_half(a), reference_half(b)];
    halves.sort();
    let digits = halves.concat();
    digits
        .as_bytes()
        .chunks(5)
        .map(|g| std::str::from_utf8(g).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The scannable bytes, encoded by hand (protobuf field by field).
fn reference_scannable(
    version: u32,
    local: (&[u8], &[u8]),
    remote: (&[u8], &[u8]),
    extra: &[u8],
) -> Vec<u8> {
    fn field(tag: u8, value: &[u8]) -> Vec<u8> {
        assert!(value.len() < 128);
        let mut out = vec![tag, u8::try_from(value.len()).unwrap()];
        out.extend_from_slice(value);
        out
    }
    fn party((digest, fingerprint): (&[u8], &[u8])) -> Vec<u8> {
        [field(0x0a, digest), field(0x12, fingerprint)].concat()
    }
    let mut out = vec![0x01, 0x08];
    let mut v = version;
    while v >= 0x80 {
        out.push(u8::try_from(v & 0x7f).unwrap() | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).unwrap());
    out.extend(field(0x12, &party(local)));
    out.extend(field(0x1a, &party(remote)));
    out.extend_from_slice(extra);
    out
}

// ---------------------------------------------------------------------------------------

fn key(seed: u64) -> IdentityKey {
    IdentityKeyPair::generate(&mut ChaCha20Rng::seed_from_u64(seed)).public_key()
}

struct Pair {
    alice: IdentityKey,
    bob: IdentityKey,
    on_alice: SafetyNumber,
    on_bob: SafetyNumber,
}

const ALICE: &[u8] = b"alice";
const BOB: &[u8] = b"bob";

fn pair() -> Pair {
    let alice = key(1);
    let bob = key(2);
    Pair {
        alice,
        bob,
        on_alice: SafetyNumber::new(ALICE, &alice, BOB, &bob).unwrap(),
        on_bob: SafetyNumber::new(BOB, &bob, ALICE, &alice).unwrap(),
    }
}

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn parameters_are_the_documented_ones() {
    assert_eq!(SafetyNumber::VERSION, 1);
    assert_eq!(SafetyNumber::ITERATIONS, 5200);
    assert_eq!(SafetyNumber::MAX_IDENTIFIER_LEN, 1024);
}

/// The expected values were printed by tests/data/safety_number.py (Python, hashlib only),
/// an implementation written from docs/PROTOCOL.md ("Safety numbers"), not from this
/// crate; tests/data/safety_number.txt is its output, committed unchanged.
#[test]
fn fixed_vector_from_the_independent_python_implementation() {
    let vector: std::collections::HashMap<&str, &str> = include_str!("data/safety_number.txt")
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let v = |name: &str| {
        *vector
            .get(name)
            .unwrap_or_else(|| panic!("{name} in vector"))
    };
    let alice_key = IdentityKey::from_bytes(&hex(v("alice_key")).try_into().unwrap()).unwrap();
    let bob_key = IdentityKey::from_bytes(&hex(v("bob_key")).try_into().unwrap()).unwrap();
    let alice_id = v("alice_id").as_bytes();
    let bob_id = v("bob_id").as_bytes();
    assert_eq!(v("iterations"), "5200");

    let on_alice = SafetyNumber::new(alice_id, &alice_key, bob_id, &bob_key).unwrap();
    let on_bob = SafetyNumber::new(bob_id, &bob_key, alice_id, &alice_key).unwrap();
    assert_eq!(
        v("display"),
        "36246 50989 00967 95539 64507 23475 47247 64438 05394 22736 66778 18894"
    );
    assert_eq!(on_alice.display(), v("display"));
    assert_eq!(on_bob.display(), v("display"));
    assert_eq!(hex::encode(on_alice.scannable()), v("alice_scannable"));
    assert_eq!(hex::encode(on_bob.scannable()), v("bob_scannable"));

    // The Rust reference agrees with the Python one on every intermediate value.
    let alice_hash = reference_hash(alice_key.as_bytes(), alice_id, 5200);
    let bob_hash = reference_hash(bob_key.as_bytes(), bob_id, 5200);
    assert_eq!(hex::encode(alice_hash), v("alice_hash"));
    assert_eq!(hex::encode(bob_hash), v("bob_hash"));
    assert_eq!(
        hex::encode(reference_identifier_digest(alice_id)),
        v("alice_identifier_digest")
    );
    assert_eq!(
        hex::encode(reference_identifier_digest(bob_id)),
        v("bob_identifier_digest")
    );
}

#[test]
fn both_sides_compute_the_same_number() {
    for seed in 0..8u64 {
        let _seed = common::SeedGuard(seed);
        let a = key(100 + 2 * seed);
        let b = key(101 + 2 * seed);
        let a_id = format!("user-{seed}-a");
        let b_id = format!("user-{seed}-b");
        let on_a = SafetyNumber::new(a_id.as_bytes(), &a, b_id.as_bytes(), &b).unwrap();
        let on_b = SafetyNumber::new(b_id.as_bytes(), &b, a_id.as_bytes(), &a).unwrap();
        assert_eq!(on_a.display(), on_b.display());
        assert_eq!(on_a.to_string(), on_b.to_string());
        // And each phone can check the other's code.
        assert_eq!(
            on_a.compare_scanned(&on_b.scannable()),
            Ok(ScanResult::Match)
        );
        assert_eq!(
            on_b.compare_scanned(&on_a.scannable()),
            Ok(ScanResult::Match)
        );
        // The codes differ: each lists its own party first.
        assert_ne!(on_a.scannable(), on_b.scannable());
    }
}

#[test]
fn display_is_12_groups_of_5_digits() {
    let p = pair();
    let shown = p.on_alice.display();
    assert_eq!(shown.len(), 71);
    let groups: Vec<&str> = shown.split(' ').collect();
    assert_eq!(groups.len(), 12);
    for g in &groups {
        assert_eq!(g.len(), 5, "{shown}");
        assert!(g.bytes().all(|b| b.is_ascii_digit()), "{shown}");
    }
    assert_eq!(format!("{}", p.on_alice), shown);
    assert_eq!(
        format!("{:?}", p.on_alice),
        format!("SafetyNumber({shown})")
    );
    // The smaller 30-digit half comes first.
    let digits: String = groups.concat();
    assert!(digits[..30] <= digits[30..]);
}

/// The crate's number is the one the documented chain gives with exactly 5,200 iterations,
/// computed here with `sha2::Sha512` directly; 5,199 and 5,201 give other numbers.
#[test]
fn iteration_count_is_honoured() {
    let p = pair();
    let shown = p.on_alice.display();
    let at = |n: u32| {
        reference_display(
            &reference_hash(p.alice.as_bytes(), ALICE, n),
            &reference_hash(p.bob.as_bytes(), BOB, n),
        )
    };
    assert_eq!(shown, at(SafetyNumber::ITERATIONS));
    assert_eq!(shown, at(5200));
    assert_ne!(shown, at(5199));
    assert_ne!(shown, at(5201));

    // The scannable form carries the first 32 bytes of the same chains and the identifier
    // digests, in the documented protobuf layout.
    let alice_hash = reference_hash(p.alice.as_bytes(), ALICE, 5200);
    let bob_hash = reference_hash(p.bob.as_bytes(), BOB, 5200);
    let expected = reference_scannable(
        1,
        (&reference_identifier_digest(ALICE), &alice_hash[..32]),
        (&reference_identifier_digest(BOB), &bob_hash[..32]),
        &[],
    );
    assert_eq!(p.on_alice.scannable(), expected);
    let off_by_one = reference_hash(p.alice.as_bytes(), ALICE, 5201);
    assert_ne!(alice_hash[..32], off_by_one[..32]);
}

/// Flips every bit of a 32-byte key. Where the result is a valid identity key (a canonical
/// point of large order), the safety number must change; the other flips cannot be passed
/// to `SafetyNumber::new` at all (the unit tests in src/fingerprint.rs flip every bit of
/// the raw key bytes fed to the hash chain).
///
/// Returns the bit positions whose flip gave a valid key. About half of them do; bit 255,
/// the sign of x, always does (it negates the point).
fn for_each_valid_key_flip(
    key: &IdentityKey,
    mut check: impl FnMut(usize, IdentityKey),
) -> Vec<usize> {
    let mut valid = Vec::new();
    for bit in 0..256 {
        let mut bytes = key.to_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        if let Some(flipped) = IdentityKey::from_bytes(&bytes) {
            valid.push(bit);
            check(bit, flipped);
        }
    }
    assert!(
        valid.len() >= 64 && valid.contains(&255),
        "valid flips: {valid:?}"
    );
    valid
}

#[test]
fn every_bit_flip_of_the_local_key_changes_the_number() {
    let p = pair();
    let shown = p.on_alice.display();
    let bob_code = p.on_bob.scannable();
    for_each_valid_key_flip(&p.alice, |bit, flipped| {
        let n = SafetyNumber::new(ALICE, &flipped, BOB, &p.bob).unwrap();
        assert_ne!(n.display(), shown, "local key bit {bit}");
        assert_eq!(n.compare_scanned(&bob_code), Ok(ScanResult::Mismatch));
    });
}

#[test]
fn every_bit_flip_of_the_remote_key_changes_the_number() {
    let p = pair();
    let shown = p.on_alice.display();
    let bob_code = p.on_bob.scannable();
    for_each_valid_key_flip(&p.bob, |bit, flipped| {
        let n = SafetyNumber::new(ALICE, &p.alice, BOB, &flipped).unwrap();
        assert_ne!(n.display(), shown, "remote key bit {bit}");
        assert_eq!(n.compare_scanned(&bob_code), Ok(ScanResult::Mismatch));
    });
}

#[test]
fn every_bit_flip_of_either_identifier_changes_the_number() {
    let p = pair();
    let shown = p.on_alice.display();
    let bob_code = p.on_bob.scannable();
    for bit in 0..ALICE.len() * 8 {
        let mut id = ALICE.to_vec();
        id[bit / 8] ^= 1 << (bit % 8);
        let n = SafetyNumber::new(&id, &p.alice, BOB, &p.bob).unwrap();
        assert_ne!(n.display(), shown, "local identifier bit {bit}");
        assert_eq!(n.compare_scanned(&bob_code), Ok(ScanResult::WrongContact));
    }
    for bit in 0..BOB.len() * 8 {
        let mut id = BOB.to_vec();
        id[bit / 8] ^= 1 << (bit % 8);
        let n = SafetyNumber::new(ALICE, &p.alice, &id, &p.bob).unwrap();
        assert_ne!(n.display(), shown, "remote identifier bit {bit}");
        assert_eq!(n.compare_scanned(&bob_code), Ok(ScanResult::WrongContact));
    }
    // Length changes too: a trailing zero byte, and the empty identifier.
    for id in [&b"alice\0"[..], b"", b"alic"] {
        let n = SafetyNumber::new(id, &p.alice, BOB, &p.bob).unwrap();
        assert_ne!(n.display(), shown, "{id:?}");
    }
}

#[test]
fn substituted_keys_are_a_mismatch_in_both_directions() {
    let p = pair();
    let mallory = key(66);
    // The server gave Alice Mallory's key for Bob.
    let fooled_alice = SafetyNumber::new(ALICE, &p.alice, BOB, &mallory).unwrap();
    assert_ne!(fooled_alice.display(), p.on_bob.display());
    assert_eq!(
        fooled_alice.compare_scanned(&p.on_bob.scannable()),
        Ok(ScanResult::Mismatch)
    );
    assert_eq!(
        p.on_bob.compare_scanned(&fooled_alice.scannable()),
        Ok(ScanResult::Mismatch)
    );
    // A full man in the middle: each side has Mallory's keys for the other.
    let mallory2 = key(67);
    let fooled_bob = SafetyNumber::new(BOB, &p.bob, ALICE, &mallory2).unwrap();
    assert_ne!(fooled_alice.display(), fooled_bob.display());
    assert_eq!(
        fooled_alice.compare_scanned(&fooled_bob.scannable()),
        Ok(ScanResult::Mismatch)
    );
    assert_eq!(
        fooled_bob.compare_scanned(&fooled_alice.scannable()),
        Ok(ScanResult::Mismatch)
    );
}

#[test]
fn a_code_for_another_pair_of_people_is_the_wrong_contact() {
    let p = pair();
    let carol = key(3);
    // Alice is looking at Bob's screen but scans Carol's code (Carol's view of Alice).
    let on_carol = SafetyNumber::new(b"carol", &carol, ALICE, &p.alice).unwrap();
    assert_eq!(
        p.on_alice.compare_scanned(&on_carol.scannable()),
        Ok(ScanResult::WrongContact)
    );
    // A code between two strangers.
    let dave = key(4);
    let strangers = SafetyNumber::new(b"carol", &carol, b"dave", &dave).unwrap();
    assert_eq!(
        p.on_alice.compare_scanned(&strangers.scannable()),
        Ok(ScanResult::WrongContact)
    );
    // One's own code (say, a screenshot) is not the contact's.
    assert_eq!(
        p.on_alice.compare_scanned(&p.on_alice.scannable()),
        Ok(ScanResult::WrongContact)
    );
    // Bob's code with the same keys but under another identifier for Bob.
    let renamed = SafetyNumber::new(b"bobby", &p.bob, ALICE, &p.alice).unwrap();
    assert_eq!(
        p.on_alice.compare_scanned(&renamed.scannable()),
        Ok(ScanResult::WrongContact)
    );
    assert!(!ScanResult::WrongContact.is_match());
    assert!(!ScanResult::Mismatch.is_match());
    assert!(ScanResult::Match.is_match());
}

#[test]
fn a_code_of_another_version_is_reported_as_such() {
    let p = pair();
    let alice_hash = reference_hash(p.alice.as_bytes(), ALICE, 5200);
    let bob_hash = reference_hash(p.bob.as_bytes(), BOB, 5200);
    let bob_party = (&reference_identifier_digest(BOB)[..], &bob_hash[..32]);
    let alice_party = (&reference_identifier_digest(ALICE)[..], &alice_hash[..32]);
    // The reference encoder reproduces Bob's real code at version 1.
    assert_eq!(
        reference_scannable(1, bob_party, alice_party, &[]),
        p.on_bob.scannable()
    );
    for theirs in [2u32, 300, u32::MAX] {
        let code = reference_scannable(theirs, bob_party, alice_party, &[]);
        assert_eq!(
            p.on_alice.compare_scanned(&code),
            Ok(ScanResult::DifferentVersion { theirs, ours: 1 })
        );
        assert!(!ScanResult::DifferentVersion { theirs, ours: 1 }.is_match());
    }
    // A later version may add fields; it is still recognised as another version.
    let code = reference_scannable(2, bob_party, alice_party, &[0x22, 0x01, 0x00]);
    assert_eq!(
        p.on_alice.compare_scanned(&code),
        Ok(ScanResult::DifferentVersion { theirs: 2, ours: 1 })
    );
    // Version 1 with an added field is not canonical.
    let code = reference_scannable(1, bob_party, alice_party, &[0x22, 0x01, 0x00]);
    assert_eq!(
        p.on_alice.compare_scanned(&code),
        Err(FingerprintError::Decode(DecodeError::NonCanonical {
            object: "ScannableFingerprint"
        }))
    );
}

#[test]
fn malformed_codes_are_typed_errors() {
    let p = pair();
    let decode_err = |bytes: &[u8]| match p.on_alice.compare_scanned(bytes) {
        Err(FingerprintError::Decode(e)) => e,
        other => panic!("expected a decode error for {bytes:02x?}, got {other:?}"),
    };
    assert_eq!(
        decode_err(&[]),
        DecodeError::Empty {
            object: "ScannableFingerprint"
        }
    );
    // Another wire format version, e.g. a libsignal code (a bare protobuf starting 0x08).
    let mut code = p.on_bob.scannable();
    code[0] = 0x02;
    assert_eq!(
        decode_err(&code),
        DecodeError::UnsupportedVersion {
            object: "ScannableFingerprint",
            found: 2,
            supported: 1
        }
    );
    assert!(matches!(
        decode_err(&p.on_bob.scannable()[1..]),
        DecodeError::UnsupportedVersion { found: 0x08, .. }
    ));
    // Not protobuf.
    assert_eq!(
        decode_err(&[0x01, 0xff, 0xff]),
        DecodeError::Malformed {
            object: "ScannableFingerprint"
        }
    );
    // No version field (version 0).
    assert_eq!(
        decode_err(&[0x01]),
        DecodeError::MissingField {
            object: "ScannableFingerprint",
            field: "version"
        }
    );
    // Missing parties.
    assert_eq!(
        decode_err(&[0x01, 0x08, 0x01]),
        DecodeError::MissingField {
            object: "ScannableFingerprint",
            field: "local"
        }
    );
    // Wrong sizes.
    let digest = [7u8; 16];
    let fp = [9u8; 32];
    for (local, field, expected, found) in [
        ((&digest[..15], &fp[..]), "identifier_digest", 16, 15),
        ((&digest[..], &fp[..31]), "fingerprint", 32, 31),
        ((&digest[..], &[9u8; 33][..]), "fingerprint", 32, 33),
    ] {
        let code = reference_scannable(1, local, (&digest, &fp), &[]);
        assert_eq!(
            decode_err(&code),
            DecodeError::InvalidLength {
                object: "FingerprintParty",
                field,
                expected,
                found
            }
        );
    }
    // Every truncation of a real code is an error (never a match, never a panic): cut
    // between two fields, the next is missing (the code is the version byte, `08 01`, the
    // local party in 2 + 52 bytes, then the remote party); cut inside one, it is malformed.
    let code = p.on_bob.scannable();
    for len in 0..code.len() {
        let object = "ScannableFingerprint";
        let expected = match len {
            0 => DecodeError::Empty { object },
            1 => DecodeError::MissingField {
                object,
                field: "version",
            },
            3 => DecodeError::MissingField {
                object,
                field: "local",
            },
            57 => DecodeError::MissingField {
                object,
                field: "remote",
            },
            _ => DecodeError::Malformed { object },
        };
        assert_eq!(
            p.on_alice.compare_scanned(&code[..len]).err(),
            Some(FingerprintError::Decode(expected)),
            "truncated to {len}"
        );
    }
    // Every single-bit corruption is rejected or reported as not matching.
    for bit in 0..code.len() * 8 {
        let mut bad = code.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_ne!(
            p.on_alice.compare_scanned(&bad),
            Ok(ScanResult::Match),
            "bit {bit}"
        );
    }
}

#[test]
fn identifiers_are_capped_with_a_typed_error() {
    let p = pair();
    let max = vec![b'x'; SafetyNumber::MAX_IDENTIFIER_LEN];
    let long = vec![b'x'; SafetyNumber::MAX_IDENTIFIER_LEN + 1];
    let at_max = SafetyNumber::new(&max, &p.alice, &max, &p.bob).unwrap();
    // The documented encoding holds at the limit too.
    assert_eq!(
        at_max.display(),
        reference_display(
            &reference_hash(p.alice.as_bytes(), &max, 5200),
            &reference_hash(p.bob.as_bytes(), &max, 5200)
        )
    );
    let err = SafetyNumber::new(&long, &p.alice, BOB, &p.bob).unwrap_err();
    assert_eq!(
        err,
        FingerprintError::IdentifierTooLong {
            party: "local",
            len: 1025,
            max: 1024
        }
    );
    assert_eq!(
        err.to_string(),
        "the local identifier is 1025 bytes long; at most 1024 bytes are allowed"
    );
    assert_eq!(
        SafetyNumber::new(ALICE, &p.alice, &long, &p.bob).unwrap_err(),
        FingerprintError::IdentifierTooLong {
            party: "remote",
            len: 1025,
            max: 1024
        }
    );
    let huge = vec![0u8; 70_000];
    assert!(matches!(
        SafetyNumber::new(ALICE, &p.alice, &huge, &p.bob),
        Err(FingerprintError::IdentifierTooLong { len: 70_000, .. })
    ));
    // Empty identifiers are allowed.
    let empty = SafetyNumber::new(b"", &p.alice, b"", &p.bob).unwrap();
    let other = SafetyNumber::new(b"", &p.bob, b"", &p.alice).unwrap();
    assert_eq!(empty.display(), other.display());
}
