//! Length padding that hides the exact size of a payload.
//!
//! PADME (Nikitin, Barman, Lueks, Underwood, Bootle, Ford, "Reducing Metadata Leakage from
//! Encrypted Files and Communication with PURBs", PETS 2019, section 4.3): a length `L >= 2`
//! is rounded up to a multiple of `2^z`, where
//!
//! ```text
//! E = floor(log2 L)          (L has E + 1 significant bits)
//! S = floor(log2 E) + 1      (E itself has S bits)
//! z = E - S                  (so only the top S bits of the padded length may be non-zero)
//! padded = (L + 2^z - 1) with its low z bits cleared
//! ```
//!
//! The padded length then takes one of O(log L) values per power of two, so it reveals
//! O(log log L) bits about `L`. The overhead is below 2^z / L <= 1/2^S: under 6.25% from
//! 256 bytes, 3.2% from 64 KiB, 1.6% from 4 GiB.
//!
//! The functions are generic over what is padded: attachments use them now, message content
//! will later. Padding bytes are zeros and are checked on removal.

/// PADME: the padded length of a payload of `len` bytes, or `None` if it does not fit a `u64`.
///
/// Lengths 0 and 1 are returned unchanged (their `E` is 0 and `log2 E` is undefined; no
/// padding is possible below two bytes anyway).
pub(crate) fn padme(len: u64) -> Option<u64> {
    if len < 2 {
        return Some(len);
    }
    let e = u64::from(len.ilog2()); // floor(log2 L), >= 1
    let s = u64::from(e.ilog2()) + 1; // floor(log2 E) + 1, <= e
    let z = e - s; // low bits to clear, < 64
    let mask = (1u64 << z) - 1;
    Some(len.checked_add(mask)? & !mask)
}

/// The padded length of `len` bytes with a floor: PADME applied to `max(len, min)`, so every
/// payload of at most `min` bytes looks the same.
pub(crate) fn padded_len(len: u64, min: u64) -> Option<u64> {
    padme(len.max(min))
}

/// True if every byte of `padding` is zero.
///
/// Not constant time: padding is checked only after it authenticated, and its content is
/// chosen by the sender, not secret from the receiver.
pub(crate) fn is_zero(padding: &[u8]) -> bool {
    padding.iter().fold(0u8, |acc, b| acc | b) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PADME transcribed literally from the paper's pseudocode with floating-point logs,
    /// as an independent reference for lengths where f64 is exact.
    fn padme_reference(len: u64) -> u64 {
        if len < 2 {
            return len;
        }
        let l = len as f64;
        let e = l.log2().floor();
        let s = e.log2().floor() + 1.0;
        let last_bits = (e - s) as u32;
        let bit_mask = (1u64 << last_bits) - 1;
        (len + bit_mask) & !bit_mask
    }

    #[test]
    fn matches_the_papers_pseudocode() {
        for len in 0..70_000u64 {
            assert_eq!(padme(len), Some(padme_reference(len)), "len {len}");
        }
        let mut len = 70_000u64;
        while len < (1u64 << 50) {
            assert_eq!(padme(len), Some(padme_reference(len)), "len {len}");
            len = len * 3 / 2 + 7;
        }
    }

    #[test]
    fn known_values() {
        // Hand-computed: L = 9 -> E = 3, S = 2, z = 1 -> 10.
        assert_eq!(padme(9), Some(10));
        // L = 100 -> E = 6, S = 3, z = 3 -> 104.
        assert_eq!(padme(100), Some(104));
        // L = 1000 -> E = 9, S = 4, z = 5 -> 1024.
        assert_eq!(padme(1000), Some(1024));
        // L = 65537 -> E = 16, S = 5, z = 11 -> 65536 + 2048.
        assert_eq!(padme(65_537), Some(67_584));
        // Powers of two are already padded.
        for k in 0..63 {
            assert_eq!(padme(1u64 << k), Some(1u64 << k));
        }
    }

    #[test]
    fn never_shrinks_is_monotonic_and_bounded() {
        let mut prev = 0;
        for len in 0..200_000u64 {
            let p = padme(len).unwrap_or(0);
            assert!(p >= len && p >= prev, "len {len}");
            // Overhead below 1/2^S: 1/16 from L >= 256 (S >= 4), 1/32 from 2^16 (S >= 5).
            if len >= 256 {
                assert!((p - len) * 16 < len, "len {len} padded {p}");
            }
            if len >= 1 << 16 {
                assert!((p - len) * 32 < len, "len {len} padded {p}");
            }
            prev = p;
        }
    }

    #[test]
    fn leaks_few_distinct_lengths() {
        // Between 2^20 and 2^21 (E = 20, S = 5, z = 15) the padded lengths are the 32
        // multiples of 2^15 from 2^20 up, plus 2^21 itself: 33 values instead of 2^20.
        let mut values: alloc::vec::Vec<u64> = ((1u64 << 20)..(1u64 << 21))
            .step_by(97)
            .filter_map(padme)
            .collect();
        values.dedup();
        assert_eq!(values.len(), 33);
    }

    #[test]
    fn overflow_is_reported() {
        assert_eq!(padme(u64::MAX), None);
        assert_eq!(padme(u64::MAX - (1 << 40)), None);
        assert_eq!(padme(1u64 << 63), Some(1u64 << 63));
    }

    #[test]
    fn floor_and_zero_check() {
        assert_eq!(padded_len(0, 256), Some(256));
        assert_eq!(padded_len(255, 256), Some(256));
        // L = 257 -> E = 8, S = 4, z = 4 -> 272.
        assert_eq!(padded_len(257, 256), Some(272));
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 5]));
        assert!(!is_zero(&[0, 0, 0x80, 0]));
        // Every non-zero byte, alone and twice (where an xor would cancel it out).
        for b in 1..=255u8 {
            assert!(!is_zero(&[b]), "{b}");
            assert!(!is_zero(&[0, b, b]), "{b} twice");
        }
    }
}
