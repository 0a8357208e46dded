//! The primitives, checked through ratchetbox's own wrappers against their published test
//! vectors: RFC 7748 (X25519), RFC 8032 (Ed25519), RFC 5869 (HKDF-SHA256), RFC 4231
//! (HMAC-SHA256), and Project Wycheproof's vectors for all of them plus AES-256-GCM
//! (`tests/data/wycheproof/`, Apache-2.0).

use alloc::string::String;
use alloc::vec::Vec;

use serde_json::Value;

use crate::aead::Cipher;
use crate::kdf::{hkdf_sha256_into, hmac_sha256};
use crate::keys::{IdentityKey, IdentityKeyPair, X25519KeyPair};

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test vector hex")
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().expect("test vector length")
}

fn tests_of(json: &str) -> Vec<(Value, Value)> {
    let file: Value = serde_json::from_str(json).expect("wycheproof json");
    let mut out = Vec::new();
    for group in file["testGroups"].as_array().expect("groups") {
        for test in group["tests"].as_array().expect("tests") {
            out.push((group.clone(), test.clone()));
        }
    }
    out
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().expect("string field")
}

// RFC 7748, section 5.2: scalar multiplication test vectors.
#[test]
fn x25519_rfc7748_section_5_2() {
    let cases = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ];
    for (scalar, u, out) in cases {
        let pair = X25519KeyPair::from_secret_bytes(&arr(scalar));
        let shared = pair
            .diffie_hellman(&x25519_dalek::PublicKey::from(arr::<32>(u)))
            .expect("contributory");
        assert_eq!(shared.as_bytes(), &arr::<32>(out));
    }
}

// RFC 7748, section 6.1: the Diffie-Hellman example.
#[test]
fn x25519_rfc7748_section_6_1() {
    let alice = X25519KeyPair::from_secret_bytes(&arr(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    ));
    let bob = X25519KeyPair::from_secret_bytes(&arr(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    ));
    assert_eq!(
        alice.public_key().to_bytes(),
        arr::<32>("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    );
    assert_eq!(
        bob.public_key().to_bytes(),
        arr::<32>("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    );
    let expected = arr::<32>("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    let ab = alice
        .diffie_hellman(&bob.public_key().to_dalek())
        .expect("ok");
    let ba = bob
        .diffie_hellman(&alice.public_key().to_dalek())
        .expect("ok");
    assert_eq!(ab.as_bytes(), &expected);
    assert_eq!(ba.as_bytes(), &expected);
}

#[test]
fn x25519_wycheproof() {
    let mut checked = 0;
    for (_, t) in tests_of(include_str!("../tests/data/wycheproof/x25519_test.json")) {
        let pair = X25519KeyPair::from_secret_bytes(&arr(s(&t, "private")));
        let public = x25519_dalek::PublicKey::from(arr::<32>(s(&t, "public")));
        let shared = arr::<32>(s(&t, "shared"));
        let result = pair.diffie_hellman(&public);
        if shared == [0u8; 32] {
            // Low-order public keys: the all-zero output must be rejected.
            assert!(
                result.is_err(),
                "tcId {} accepted a zero shared secret",
                t["tcId"]
            );
        } else {
            assert_eq!(
                result.map(|r| *r.as_bytes()).ok(),
                Some(shared),
                "tcId {}",
                t["tcId"]
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 518);
}

// RFC 8032, section 7.1, tests 1 to 3.
#[test]
fn ed25519_rfc8032_section_7_1() {
    let cases = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];
    for (secret, public, message, signature) in cases {
        let pair = IdentityKeyPair::from_seed(&arr(secret));
        assert_eq!(pair.public_key().to_bytes(), arr::<32>(public));
        let message = unhex(message);
        let signature = arr::<64>(signature);
        assert_eq!(pair.sign(&message), signature);
        let key = IdentityKey::from_bytes(&arr(public)).expect("valid key");
        assert!(key.verify(&message, &signature));
    }
}

#[test]
fn ed25519_wycheproof_strict_verification() {
    let mut checked = 0;
    for (group, t) in tests_of(include_str!("../tests/data/wycheproof/ed25519_test.json")) {
        let key = IdentityKey::from_bytes(&arr(s(&group["publicKey"], "pk"))).expect("group key");
        let message = unhex(s(&t, "msg"));
        let verified = <[u8; 64]>::try_from(unhex(s(&t, "sig")).as_slice())
            .is_ok_and(|sig| key.verify(&message, &sig));
        let valid = s(&t, "result") == "valid";
        assert_eq!(verified, valid, "tcId {}: {}", t["tcId"], s(&t, "comment"));
        checked += 1;
    }
    assert!(checked > 100, "only {checked} Ed25519 vectors ran");
}

// RFC 5869, appendix A, test cases 1 to 3.
#[test]
fn hkdf_rfc5869_appendix_a() {
    let cases = [
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
            "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
            "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
        ),
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "",
            "",
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ];
    for (ikm, salt, info, okm) in cases {
        let expected = unhex(okm);
        let mut out = alloc::vec![0u8; expected.len()];
        hkdf_sha256_into(&unhex(salt), &[&unhex(ikm)], &[&unhex(info)], &mut out).expect("ok");
        assert_eq!(out, expected);
    }
}

#[test]
fn hkdf_wycheproof() {
    let mut checked = 0;
    for (_, t) in tests_of(include_str!(
        "../tests/data/wycheproof/hkdf_sha256_test.json"
    )) {
        let size = t["size"].as_u64().expect("size") as usize;
        let mut out = alloc::vec![0u8; size];
        let result = hkdf_sha256_into(
            &unhex(s(&t, "salt")),
            &[&unhex(s(&t, "ikm"))],
            &[&unhex(s(&t, "info"))],
            &mut out,
        );
        if s(&t, "result") == "valid" {
            assert!(result.is_ok(), "tcId {}", t["tcId"]);
            assert_eq!(out, unhex(s(&t, "okm")), "tcId {}", t["tcId"]);
        } else {
            assert!(result.is_err(), "tcId {} should be rejected", t["tcId"]);
        }
        checked += 1;
    }
    assert_eq!(checked, 86);
}

// RFC 4231, test cases 1 to 4 (keys of at most 32 bytes, zero-padded: HMAC pads keys shorter
// than the block with zeros, so the result must not change).
#[test]
fn hmac_rfc4231() {
    let cases = [
        (
            String::from("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
            hex::encode("Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            hex::encode("Jefe"),
            hex::encode("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            "aa".repeat(20),
            "dd".repeat(50),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        (
            String::from("0102030405060708090a0b0c0d0e0f10111213141516171819"),
            "cd".repeat(50),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
    ];
    for (key, data, mac) in cases {
        let mut padded = [0u8; 32];
        let key = unhex(&key);
        padded[..key.len()].copy_from_slice(&key);
        assert_eq!(hmac_sha256(&padded, &unhex(&data)), arr::<32>(mac));
    }
}

#[test]
fn hmac_wycheproof_keys_up_to_32_bytes() {
    let mut checked = 0;
    for (group, t) in tests_of(include_str!(
        "../tests/data/wycheproof/hmac_sha256_test.json"
    )) {
        let key = unhex(s(&t, "key"));
        // The wrapper takes 32-byte keys (ratchetbox only keys HMAC with chain keys); longer
        // keys are hashed by HMAC first and are out of scope.
        if key.len() > 32 {
            continue;
        }
        let mut padded = [0u8; 32];
        padded[..key.len()].copy_from_slice(&key);
        let tag_len = group["tagSize"].as_u64().expect("tag size") as usize / 8;
        let mac = hmac_sha256(&padded, &unhex(s(&t, "msg")));
        let matches = mac[..tag_len] == unhex(s(&t, "tag"))[..];
        assert_eq!(matches, s(&t, "result") == "valid", "tcId {}", t["tcId"]);
        checked += 1;
    }
    assert_eq!(checked, 168);
}

#[test]
fn aes_256_gcm_wycheproof() {
    let mut checked = 0;
    for (group, t) in tests_of(include_str!("../tests/data/wycheproof/aes_gcm_test.json")) {
        if group["keySize"] != 256 || group["ivSize"] != 96 || group["tagSize"] != 128 {
            continue;
        }
        let cipher = Cipher::new(&arr(s(&t, "key")));
        let nonce = arr::<12>(s(&t, "iv"));
        let aad = unhex(s(&t, "aad"));
        let msg = unhex(s(&t, "msg"));
        let ct = unhex(s(&t, "ct"));
        let tag = arr::<16>(s(&t, "tag"));
        let valid = s(&t, "result") == "valid";
        if valid {
            let mut buf = msg.clone();
            let sealed_tag = cipher.seal_in_place(&nonce, &aad, &mut buf).expect("seal");
            assert_eq!(
                (buf.as_slice(), sealed_tag),
                (ct.as_slice(), tag),
                "tcId {}",
                t["tcId"]
            );
        }
        let mut buf = ct.clone();
        let opened = cipher.open_in_place(&nonce, &aad, &mut buf, &tag);
        assert_eq!(opened.is_ok(), valid, "tcId {}", t["tcId"]);
        if valid {
            assert_eq!(buf, msg, "tcId {}", t["tcId"]);
        } else if cfg!(feature = "fast-aes") {
            assert_eq!(
                buf,
                alloc::vec![0; ct.len()],
                "AWS-LC (fast-aes) zeroes the buffer of a failed open"
            );
        } else {
            assert_eq!(buf, ct, "a failed open must leave the buffer untouched");
        }
        checked += 1;
    }
    assert!(checked > 50, "only {checked} AES-256-GCM vectors ran");
}

/// An RNG that returns fixed bytes: it feeds ML-KEM's encapsulation message `m` from a
/// test vector through the crate's own `encapsulate(rng)`.
struct FixedBytes(Vec<u8>);

impl rand_core::TryRng for FixedBytes {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unreachable!("ML-KEM draws bytes")
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        unreachable!("ML-KEM draws bytes")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        assert_eq!(dst.len(), self.0.len(), "ML-KEM drew an unexpected length");
        dst.copy_from_slice(&self.0);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for FixedBytes {}

// Wycheproof ML-KEM-1024 decapsulation vectors, including NIST's FIPS 203 vectors: key
// generation from the 64-byte seed, and decapsulation (with implicit rejection).
#[test]
fn ml_kem_1024_keygen_and_decapsulation() {
    use crate::kem::{KEM_CIPHERTEXT_LEN, KemKeyPair};
    let mut valid = 0;
    for (_, t) in tests_of(include_str!(
        "../tests/data/wycheproof/mlkem_1024_test.json"
    )) {
        let seed = unhex(s(&t, "seed"));
        let ciphertext = unhex(s(&t, "c"));
        let (Ok(seed), Ok(ciphertext)) = (
            <[u8; 64]>::try_from(seed.as_slice()),
            <[u8; KEM_CIPHERTEXT_LEN]>::try_from(ciphertext.as_slice()),
        ) else {
            // Wrong-length seeds and ciphertexts cannot even be represented by the wrapper's
            // types; the vectors mark all of them invalid.
            assert_eq!(s(&t, "result"), "invalid", "tcId {}", t["tcId"]);
            continue;
        };
        let pair = KemKeyPair::from_seed(&seed);
        assert_eq!(
            alloc::format!("{pair:?}"),
            alloc::format!(
                "KemKeyPair {{ public: KemPublicKey({}..), .. }}",
                &s(&t, "ek")[..16].to_lowercase()
            ),
            "tcId {}: no seed in Debug",
            t["tcId"]
        );
        assert_eq!(
            pair.public_key().to_bytes().to_vec(),
            unhex(s(&t, "ek")),
            "tcId {}",
            t["tcId"]
        );
        assert_eq!(
            pair.decapsulate(&ciphertext).0.to_vec(),
            unhex(s(&t, "K")),
            "tcId {}",
            t["tcId"]
        );
        valid += 1;
    }
    assert_eq!(valid, 153);
}

// Wycheproof ML-KEM-1024 encapsulation vectors (FIPS 203 and unreduced-key checks).
#[test]
fn ml_kem_1024_encapsulation_and_key_validation() {
    use crate::kem::KemPublicKey;
    let (mut valid, mut rejected) = (0, 0);
    for (_, t) in tests_of(include_str!(
        "../tests/data/wycheproof/mlkem_1024_encaps_test.json"
    )) {
        let key = KemPublicKey::from_bytes(&unhex(s(&t, "ek")));
        if s(&t, "result") == "invalid" {
            assert!(key.is_none(), "tcId {} accepted an invalid key", t["tcId"]);
            rejected += 1;
            continue;
        }
        let key = key.expect("valid key");
        // `Debug` shows the key's first 8 bytes, as the vector spells them.
        assert_eq!(
            alloc::format!("{key:?}"),
            alloc::format!("KemPublicKey({}..)", &s(&t, "ek")[..16].to_lowercase()),
            "tcId {}",
            t["tcId"]
        );
        let (ciphertext, shared) = key.encapsulate(&mut FixedBytes(unhex(s(&t, "m"))));
        assert_eq!(ciphertext.to_vec(), unhex(s(&t, "c")), "tcId {}", t["tcId"]);
        assert_eq!(shared.0.to_vec(), unhex(s(&t, "K")), "tcId {}", t["tcId"]);
        valid += 1;
    }
    assert_eq!((valid, rejected), (133, 136));
}
