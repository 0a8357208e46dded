//! X25519 (RFC 7748, section 5): the one function every Diffie-Hellman in ratchetbox goes
//! through (X3DH and PQXDH setup on both sides, and the Double Ratchet's steps), computed on
//! the fastest constant-time path curve25519-dalek offers on this machine.
//!
//! Two paths give the same 32 bytes for every input (the tests check both against RFC 7748,
//! every Wycheproof vector and each other):
//!
//! - **Edwards**: map u to the twisted Edwards curve (`MontgomeryPoint::to_edwards`), multiply
//!   by the clamped scalar there (`EdwardsPoint::mul_clamped`, which goes through
//!   curve25519-dalek's AVX2 or AVX-512 IFMA backend when the CPU has it), map back
//!   (`to_montgomery`). The scalar is the clamped integer, not reduced modulo the group order,
//!   so a public key with a small-order component gives the same result as the ladder.
//! - **Ladder**: the Montgomery ladder (`MontgomeryPoint::mul_clamped`, exactly what
//!   x25519-dalek's `diffie_hellman` runs), on serial field arithmetic whatever the CPU.
//!
//! The Edwards path is used where it is faster, which is where curve25519-dalek has a vector
//! backend: on x86_64 with AVX2, measured 1.1x faster than the ladder with AVX2 and 1.6x with
//! AVX-512 IFMA (docs/bench-notes/x25519.md; the AVX-512 backend is compiled in only when the
//! final build passes `--cfg curve25519_dalek_backend="avx512"`, as this repository's
//! `.cargo/config.toml` does for its own builds). With serial arithmetic
//! (what WebAssembly, aarch64 and every other target get) its two extra conversions made it
//! 0.9x of the ladder (measured on x86_64 with `--cfg curve25519_dalek_backend="serial"`), so
//! the ladder stays there, and in `no_std` builds, which cannot ask the CPU for AVX2. The
//! ladder is also the fallback for
//! every u that `to_edwards` refuses: u = -1 and the points on the quadratic twist, which
//! X25519 accepts.

use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::clamp_integer;
use zeroize::Zeroizing;

use crate::keys::KEY_LEN;

/// X25519(k, u) as RFC 7748 section 5 defines it: the u-coordinate of the clamped scalar `k`
/// times the point with u-coordinate `u` (bit 255 of `u` ignored, u taken modulo p). The
/// output may be all zero (a low-order `u`); the caller checks that.
///
/// Constant time in `scalar`. Which path runs depends only on the CPU and on the public `u`.
pub(crate) fn x25519(scalar: &[u8; KEY_LEN], u: &[u8; KEY_LEN]) -> Zeroizing<MontgomeryPoint> {
    let scalar = Zeroizing::new(clamp_integer(*scalar));
    let u = MontgomeryPoint(*u);
    // Falling back depends only on the public `u`: see `edwards`.
    if edwards_is_faster()
        && let Some(shared) = edwards(&scalar, &u)
    {
        return shared;
    }
    ladder(&scalar, &u)
}

/// The Edwards path, or `None` when `u` has no point on the Edwards curve (u = -1, or u on
/// the twist).
///
/// The branch on `to_edwards`'s result depends only on `u`, a public key, never on the
/// secret scalar; the multiplication itself runs in constant time in the scalar.
fn edwards(
    scalar: &Zeroizing<[u8; KEY_LEN]>,
    u: &MontgomeryPoint,
) -> Option<Zeroizing<MontgomeryPoint>> {
    // Sign 0: a point and its negative share u, and so do their multiples.
    let point = u.to_edwards(0)?;
    let product = Zeroizing::new(point.mul_clamped(**scalar));
    Some(Zeroizing::new(product.to_montgomery()))
}

/// The Montgomery ladder, defined for every u.
fn ladder(scalar: &Zeroizing<[u8; KEY_LEN]>, u: &MontgomeryPoint) -> Zeroizing<MontgomeryPoint> {
    Zeroizing::new(u.mul_clamped(**scalar))
}

/// Whether curve25519-dalek runs its variable-base multiplication on a vector backend here,
/// by the same rule its build script and run-time selection follow: x86_64 with 64-bit
/// arithmetic, no backend forced to serial or fiat, and AVX2 on the CPU (every AVX-512 IFMA
/// CPU has AVX2). Detecting the CPU needs `std`; a `no_std` build keeps the ladder.
fn edwards_is_faster() -> bool {
    #[cfg(all(
        target_arch = "x86_64",
        feature = "std",
        not(curve25519_dalek_bits = "32"),
        not(curve25519_dalek_backend = "serial"),
        not(curve25519_dalek_backend = "fiat"),
    ))]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        feature = "std",
        not(curve25519_dalek_bits = "32"),
        not(curve25519_dalek_backend = "serial"),
        not(curve25519_dalek_backend = "fiat"),
    )))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    use curve25519_dalek::EdwardsPoint;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use proptest::prelude::*;
    use serde_json::Value;

    fn arr(hex_str: &str) -> [u8; KEY_LEN] {
        hex::decode(hex_str)
            .expect("test vector hex")
            .try_into()
            .expect("32 bytes")
    }

    /// The reference: x25519-dalek's `x25519`, the Montgomery ladder, an implementation
    /// independent of the Edwards path.
    fn reference(k: &[u8; KEY_LEN], u: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
        x25519_dalek::x25519(*k, *u)
    }

    fn clamped(k: &[u8; KEY_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(clamp_integer(*k))
    }

    /// The Edwards path alone, or `None` where it defers to the ladder.
    fn edwards_only(k: &[u8; KEY_LEN], u: &[u8; KEY_LEN]) -> Option<[u8; KEY_LEN]> {
        edwards(&clamped(k), &MontgomeryPoint(*u)).map(|p| p.to_bytes())
    }

    fn ladder_only(k: &[u8; KEY_LEN], u: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
        ladder(&clamped(k), &MontgomeryPoint(*u)).to_bytes()
    }

    /// Every path gives `expected`; returns whether the Edwards path took this input.
    fn check_all_paths(k: &[u8; KEY_LEN], u: &[u8; KEY_LEN], expected: &[u8; KEY_LEN]) -> bool {
        assert_eq!(&x25519(k, u).to_bytes(), expected, "x25519, u = {u:02x?}");
        assert_eq!(&ladder_only(k, u), expected, "ladder, u = {u:02x?}");
        match edwards_only(k, u) {
            Some(out) => {
                assert_eq!(&out, expected, "Edwards path, u = {u:02x?}");
                true
            }
            None => false,
        }
    }

    // RFC 7748, section 5.2: the two scalar multiplication vectors.
    #[test]
    fn rfc7748_section_5_2_vectors_on_every_path() {
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
        for (k, u, out) in cases {
            check_all_paths(&arr(k), &arr(u), &arr(out));
        }
    }

    // RFC 7748, section 5.2: k = u = 9, then k, u = X25519(k, u), k; after 1 and 1,000
    // iterations. (The 1,000,000-iteration value is left to the slow CI, not run here.)
    #[test]
    fn rfc7748_iterated_vector_on_every_path() {
        let after_1 = arr("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
        let after_1000 = arr("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
        type Path = fn(&[u8; KEY_LEN], &[u8; KEY_LEN]) -> [u8; KEY_LEN];
        let paths: [(&str, Path); 3] = [
            ("x25519", |k, u| x25519(k, u).to_bytes()),
            ("ladder", ladder_only),
            // Every output of X25519 on a curve point is a curve point: no fallback needed.
            ("edwards", |k, u| edwards_only(k, u).expect("a curve point")),
        ];
        for (name, path) in paths {
            let mut nine = [0u8; KEY_LEN];
            nine[0] = 9;
            let (mut k, mut u) = (nine, nine);
            for i in 1..=1000 {
                let next = path(&k, &u);
                u = k;
                k = next;
                if i == 1 {
                    assert_eq!(k, after_1, "{name}, 1 iteration");
                }
            }
            assert_eq!(k, after_1000, "{name}, 1,000 iterations");
        }
    }

    /// One Wycheproof X25519 vector (tests/data/wycheproof/x25519_test.json, Apache-2.0).
    struct Vector {
        id: u64,
        private: [u8; KEY_LEN],
        public: [u8; KEY_LEN],
        shared: [u8; KEY_LEN],
        /// Flagged "Twist": the public key is a point on the quadratic twist.
        twist: bool,
    }

    fn wycheproof() -> Vec<Vector> {
        let file: Value =
            serde_json::from_str(include_str!("../tests/data/wycheproof/x25519_test.json"))
                .expect("wycheproof json");
        let mut out = Vec::new();
        for group in file["testGroups"].as_array().expect("groups") {
            for t in group["tests"].as_array().expect("tests") {
                let field = |key: &str| arr(t[key].as_str().expect("hex field"));
                let flags = t["flags"].as_array().expect("flags");
                out.push(Vector {
                    id: t["tcId"].as_u64().expect("tcId"),
                    private: field("private"),
                    public: field("public"),
                    shared: field("shared"),
                    twist: flags.iter().any(|f| f.as_str() == Some("Twist")),
                });
            }
        }
        out
    }

    #[test]
    fn every_wycheproof_vector_on_every_path() {
        let (mut edwards_taken, mut fallback) = (0, 0);
        for v in wycheproof() {
            let id = v.id;
            // All-zero outputs (low-order public keys) are compared byte for byte too: the
            // caller's contributory check is tested in keys.rs and primitive_vectors.rs.
            if check_all_paths(&v.private, &v.public, &v.shared) {
                edwards_taken += 1;
            } else {
                // `to_edwards` refuses exactly the public keys Wycheproof marks as points on
                // the twist (u = -1, which it also refuses, is a twist point).
                assert!(v.twist, "tcId {id} refused, not a twist point");
                fallback += 1;
            }
            if v.twist {
                assert_eq!(
                    edwards_only(&v.private, &v.public),
                    None,
                    "tcId {id}: a twist point accepted"
                );
            }
        }
        assert_eq!(edwards_taken + fallback, 518);
        assert_eq!(fallback, 221, "the vectors flagged Twist");
    }

    /// The u-coordinates of the points of order 1, 2, 4 and 8, with their non-canonical
    /// aliases p, p + 1 (from libsodium's blocklist, crypto_scalarmult/curve25519/ref10/
    /// x25519_ref10.c, `has_small_order`).
    const SMALL_ORDER: [&str; 7] = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];

    #[test]
    fn small_order_points_give_zero_on_every_path() {
        let k = arr("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
        for hex_u in SMALL_ORDER {
            for top in [0, 0x80] {
                let mut u = arr(hex_u);
                u[31] |= top;
                check_all_paths(&k, &u, &[0u8; KEY_LEN]);
            }
        }
    }

    /// The clamped scalar is used as an integer, not reduced modulo the group order l: for a
    /// point with a torsion component the two differ. A curve point plus each 8-torsion point.
    #[test]
    fn points_with_a_torsion_component_match_the_ladder() {
        let base = EdwardsPoint::mul_base_clamped([7u8; KEY_LEN]);
        let k = arr("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d");
        let mut taken = 0;
        for torsion in EIGHT_TORSION {
            let u = (base + torsion).to_montgomery().to_bytes();
            taken += usize::from(check_all_paths(&k, &u, &reference(&k, &u)));
        }
        assert_eq!(taken, 8);
    }

    #[test]
    fn bit_255_of_u_is_ignored_and_every_other_bit_counts() {
        let k = arr("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
        let u = arr("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
        let base = x25519(&k, &u).to_bytes();
        for bit in 0..256 {
            let mut flipped = u;
            flipped[bit / 8] ^= 1 << (bit % 8);
            let out = x25519(&k, &flipped).to_bytes();
            assert_eq!(out, reference(&k, &flipped), "bit {bit}");
            assert_eq!(out == base, bit == 255, "bit {bit}");
        }
    }

    #[test]
    fn clamped_scalar_bits_are_ignored_and_every_other_bit_counts() {
        let k = arr("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d");
        let u = arr("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493");
        let base = x25519(&k, &u).to_bytes();
        for bit in 0..256 {
            let mut flipped = k;
            flipped[bit / 8] ^= 1 << (bit % 8);
            let out = x25519(&flipped, &u).to_bytes();
            assert_eq!(out, reference(&flipped, &u), "bit {bit}");
            // RFC 7748 section 5: clamping clears bits 0, 1, 2 and 255 and sets bit 254.
            let ignored = matches!(bit, 0 | 1 | 2 | 254 | 255);
            assert_eq!(out == base, ignored, "bit {bit}");
        }
    }

    /// u-coordinates of every kind: any 32 bytes (half of them on the twist, some with bit
    /// 255 set), canonical curve points, curve points with a torsion component, the
    /// non-canonical values p .. 2^255 - 1, the small-order points, and 0, 1, p - 1, each
    /// with bit 255 set or not.
    fn any_u() -> impl Strategy<Value = [u8; KEY_LEN]> {
        let special = prop::sample::select(SMALL_ORDER.to_vec()).prop_map(arr);
        let non_canonical = (0xedu8..=0xff).prop_map(|low| {
            let mut u = [0xff; KEY_LEN];
            u[0] = low;
            u[31] = 0x7f;
            u
        });
        let curve_point = (any::<[u8; KEY_LEN]>(), 0usize..8).prop_map(|(k, t)| {
            (EdwardsPoint::mul_base_clamped(k) + EIGHT_TORSION[t])
                .to_montgomery()
                .to_bytes()
        });
        (
            prop_oneof![any::<[u8; KEY_LEN]>(), special, non_canonical, curve_point],
            any::<bool>(),
        )
            .prop_map(|(mut u, top)| {
                if top {
                    u[31] |= 0x80;
                }
                u
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_the_ladder_reference(k in any::<[u8; KEY_LEN]>(), u in any_u()) {
            let expected = reference(&k, &u);
            prop_assert_eq!(x25519(&k, &u).to_bytes(), expected);
            prop_assert_eq!(ladder_only(&k, &u), expected);
            if let Some(out) = edwards_only(&k, &u) {
                prop_assert_eq!(out, expected);
            }
            let mut flipped = u;
            flipped[31] ^= 0x80;
            prop_assert_eq!(x25519(&k, &flipped).to_bytes(), expected);
        }
    }
}
