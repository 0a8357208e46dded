//! The two AES-256-GCM backends against each other and against Project Wycheproof's vectors
//! (`tests/data/wycheproof/aes_gcm_test.json`, Apache-2.0). Built only with `fast-aes`, the
//! one configuration that has both in one binary: `cargo test --features fast-aes --lib aead`.

use alloc::vec;
use alloc::vec::Vec;

use serde_json::Value;

use super::aws_lc::Cipher as AwsLc;
use super::rust_crypto::Cipher as RustCrypto;
use super::{AeadError, KEY_LEN, NONCE_LEN, TAG_LEN};

/// Lengths around the AES block (16), GHASH's and the assembly's wider strides, a 64 KiB
/// attachment chunk with its tag, and over 1 MiB.
const LENGTHS: [usize; 18] = [
    0,
    1,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    65,
    127,
    255,
    257,
    4095,
    4097,
    65536 + 16,
    (1 << 20) + 3,
];
const AD_LENGTHS: [usize; 6] = [0, 1, 13, 16, 17, 100];

/// Deterministic, varied bytes (not from either backend).
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn key(seed: u8) -> [u8; KEY_LEN] {
    bytes(KEY_LEN, seed).try_into().expect("32 bytes")
}

fn nonce(seed: u8) -> [u8; NONCE_LEN] {
    bytes(NONCE_LEN, seed).try_into().expect("12 bytes")
}

/// The same operations in both backends' inherent methods, so one test runs through each.
macro_rules! seal_both_ways {
    ($cipher:expr, $nonce:expr, $ad:expr, $plain:expr) => {{
        let mut in_place = $plain.clone();
        let tag = $cipher
            .seal_in_place($nonce, $ad, &mut in_place)
            .expect("seal");
        let mut into = vec![0xEE; $plain.len()];
        let tag_into = $cipher
            .seal_into($nonce, $ad, &$plain, &mut into)
            .expect("seal_into");
        assert_eq!(
            (&into, tag_into),
            (&in_place, tag),
            "seal_into != seal_in_place"
        );
        (in_place, tag)
    }};
}

macro_rules! open_both_ways {
    ($cipher:expr, $nonce:expr, $ad:expr, $ct:expr, $tag:expr) => {{
        let mut in_place = $ct.clone();
        $cipher
            .open_in_place($nonce, $ad, &mut in_place, $tag)
            .expect("open_in_place");
        let mut into = vec![0xEE; $ct.len()];
        $cipher
            .open_into($nonce, $ad, &$ct, $tag, &mut into)
            .expect("open_into");
        assert_eq!(into, in_place, "open_into != open_in_place");
        in_place
    }};
}

#[test]
fn sealed_by_one_backend_opens_with_the_other_byte_for_byte() {
    let mut cases = 0;
    for (i, &len) in LENGTHS.iter().enumerate() {
        for (j, &ad_len) in AD_LENGTHS.iter().enumerate() {
            let seed = (i * AD_LENGTHS.len() + j) as u8;
            let (k, n) = (key(seed), nonce(seed ^ 0x55));
            let (plain, ad) = (bytes(len, seed), bytes(ad_len, seed ^ 0xAA));
            let (rc, fast) = (RustCrypto::new(&k), AwsLc::new(&k));
            let (ct_rc, tag_rc) = seal_both_ways!(rc, &n, &ad, plain);
            let (ct_fast, tag_fast) = seal_both_ways!(fast, &n, &ad, plain);
            assert_eq!(
                (&ct_fast, tag_fast),
                (&ct_rc, tag_rc),
                "len {len}, ad {ad_len}"
            );
            assert_ne!(tag_rc, [0; TAG_LEN]);
            if len > 0 {
                assert_ne!(ct_rc, plain, "len {len}: nothing was encrypted");
            }
            assert_eq!(open_both_ways!(fast, &n, &ad, ct_rc, &tag_rc), plain);
            assert_eq!(open_both_ways!(rc, &n, &ad, ct_fast, &tag_fast), plain);
            cases += 1;
        }
    }
    assert_eq!(cases, LENGTHS.len() * AD_LENGTHS.len());
}

/// A changed bit anywhere (ciphertext, tag, associated data, nonce) fails in both backends,
/// and neither leaves plaintext: RustCrypto keeps the ciphertext, AWS-LC leaves zeros.
#[test]
fn every_changed_bit_fails_in_both_backends_without_leaving_plaintext() {
    let (k, n) = (key(1), nonce(2));
    let (plain, ad) = (bytes(40, 3), bytes(5, 4));
    let (rc, fast) = (RustCrypto::new(&k), AwsLc::new(&k));
    let (ct, tag) = seal_both_ways!(rc, &n, &ad, plain);
    let mut sealed = [ct.as_slice(), &tag, &ad, &n].concat();
    for bit in 0..sealed.len() * 8 {
        sealed[bit / 8] ^= 1 << (bit % 8);
        let (c, rest) = sealed.split_at(ct.len());
        let (t, rest) = rest.split_at(TAG_LEN);
        let (a, nn) = rest.split_at(ad.len());
        let t: &[u8; TAG_LEN] = t.try_into().expect("tag");
        let nn: &[u8; NONCE_LEN] = nn.try_into().expect("nonce");
        let mut buf = c.to_vec();
        assert_eq!(
            rc.open_in_place(nn, a, &mut buf, t),
            Err(AeadError),
            "bit {bit}"
        );
        assert_eq!(buf, c, "RustCrypto must leave the ciphertext, bit {bit}");
        let mut out = vec![0xEE; c.len()];
        assert_eq!(rc.open_into(nn, a, c, t, &mut out), Err(AeadError));
        assert_eq!(
            out,
            vec![0xEE; c.len()],
            "RustCrypto must leave out as it was"
        );
        let mut buf = c.to_vec();
        assert_eq!(
            fast.open_in_place(nn, a, &mut buf, t),
            Err(AeadError),
            "bit {bit}"
        );
        assert_eq!(
            buf,
            vec![0; c.len()],
            "AWS-LC must zero the buffer, bit {bit}"
        );
        let mut out = vec![0xEE; c.len()];
        assert_eq!(fast.open_into(nn, a, c, t, &mut out), Err(AeadError));
        assert_eq!(out, vec![0; c.len()], "AWS-LC must zero out, bit {bit}");
        sealed[bit / 8] ^= 1 << (bit % 8);
    }
}

#[test]
fn mismatched_lengths_are_refused_by_both_backends() {
    let (rc, fast) = (RustCrypto::new(&key(5)), AwsLc::new(&key(5)));
    let n = nonce(6);
    let mut out = [0xEE; 4];
    assert_eq!(rc.seal_into(&n, &[], &[1; 5], &mut out), Err(AeadError));
    assert_eq!(fast.seal_into(&n, &[], &[1; 5], &mut out), Err(AeadError));
    assert_eq!(
        rc.open_into(&n, &[], &[1; 5], &[0; 16], &mut out),
        Err(AeadError)
    );
    assert_eq!(
        fast.open_into(&n, &[], &[1; 5], &[0; 16], &mut out),
        Err(AeadError)
    );
    assert_eq!(out, [0xEE; 4], "a refused length writes nothing");
}

fn unhex(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().expect("string field")).expect("test vector hex")
}

/// Runs the 256-bit key, 96-bit nonce, 128-bit tag Wycheproof vectors through one backend;
/// returns (vectors run, invalid ones among them).
macro_rules! wycheproof {
    ($backend:ty, $zeroes_on_failure:expr) => {{
        let file: Value = serde_json::from_str(include_str!(
            "../../tests/data/wycheproof/aes_gcm_test.json"
        ))
        .expect("wycheproof json");
        let (mut run, mut invalid) = (0, 0);
        for group in file["testGroups"].as_array().expect("groups") {
            if group["keySize"] != 256 || group["ivSize"] != 96 || group["tagSize"] != 128 {
                continue;
            }
            for t in group["tests"].as_array().expect("tests") {
                let id = &t["tcId"];
                let k: [u8; KEY_LEN] = unhex(t, "key").try_into().expect("key length");
                let n: [u8; NONCE_LEN] = unhex(t, "iv").try_into().expect("iv length");
                let tag: [u8; TAG_LEN] = unhex(t, "tag").try_into().expect("tag length");
                let (ad, msg, ct) = (unhex(t, "aad"), unhex(t, "msg"), unhex(t, "ct"));
                let cipher = <$backend>::new(&k);
                let valid = t["result"] == "valid";
                if valid {
                    let (sealed, sealed_tag) = seal_both_ways!(cipher, &n, &ad, msg);
                    assert_eq!((sealed, sealed_tag), (ct.clone(), tag), "tcId {id}");
                    assert_eq!(open_both_ways!(cipher, &n, &ad, ct, &tag), msg, "tcId {id}");
                } else {
                    invalid += 1;
                    let mut buf = ct.clone();
                    let opened = cipher.open_in_place(&n, &ad, &mut buf, &tag);
                    assert_eq!(opened, Err(AeadError), "tcId {id}");
                    let left = if $zeroes_on_failure {
                        vec![0; ct.len()]
                    } else {
                        ct.clone()
                    };
                    assert_eq!(buf, left, "tcId {id}");
                    let mut out = vec![0xEE; ct.len()];
                    assert_eq!(
                        cipher.open_into(&n, &ad, &ct, &tag, &mut out),
                        Err(AeadError)
                    );
                }
                run += 1;
            }
        }
        (run, invalid)
    }};
}

// The counts are those of the JSON file's groups with keySize 256, ivSize 96, tagSize 128.
#[test]
fn wycheproof_aes_256_gcm_through_rust_crypto() {
    assert_eq!(wycheproof!(RustCrypto, false), (66, 27));
}

#[test]
fn wycheproof_aes_256_gcm_through_aws_lc() {
    assert_eq!(wycheproof!(AwsLc, true), (66, 27));
}
