//! The recovery key: 256 random bits, shown to the person as 13 groups of 5 characters.
//!
//! Encoding (docs/PROTOCOL.md, section "Backup"): the 32 key bytes, followed by 4 zero bits,
//! are read as 52 five-bit values, most significant bit first. Each value is written as one
//! character of the alphabet `0123456789ABCDEFGHJKMNPQRSTVWXYZ` (Crockford's base 32: no
//! `I`, `L`, `O`, `U`). The 52 characters are cut into 13 groups of 4, and each group gets a
//! fifth, check character: a Damm check over the quasigroup `x * y = 2x + y` in GF(32)
//! (polynomial `x^5 + x^2 + 1`), started from the group's index (0 to 12). The groups are
//! shown joined by `-`.
//!
//! What the check guarantees, within each group (proved by the exhaustive tests below): any
//! single wrong character, and any swap of two neighbouring different characters, is
//! detected. Across a group boundary a swap changes one character of each group, so it is
//! detected too; so is a whole group typed in the place of another (the check depends on the
//! group's index).

use alloc::string::String;
use core::fmt;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The recovery key's length in bytes.
pub const RECOVERY_KEY_LEN: usize = 32;
/// How many groups the code has.
pub const GROUPS: usize = 13;
/// Characters per group: 4 carrying the key, then 1 check character.
pub const GROUP_LEN: usize = 5;
/// The code's length without separators.
pub const CODE_LEN: usize = GROUPS * GROUP_LEN;

/// The 32 characters, value 0 to 31.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// The data characters: 52 five-bit values hold 256 bits and 4 zero bits.
const DATA_CHARS: usize = GROUPS * (GROUP_LEN - 1);

/// A recovery key could not be read from what the person typed. Groups and positions count
/// from 1, as a person counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryKeyError {
    /// Not 65 characters once spaces and dashes are removed.
    #[error(
        "a recovery key has {expected} characters (13 groups of 5) without spaces and dashes; this one has {found}"
    )]
    WrongLength {
        /// How many characters were found.
        found: usize,
        /// How many a recovery key has (65).
        expected: usize,
    },
    /// A character that is not in the alphabet (`I`, `L`, `O`, `U`, or not a letter or digit).
    #[error(
        "character {position} of group {group} is {found:?}, which a recovery key never contains (it uses 0-9 and A-Z without I, L, O, U)"
    )]
    InvalidCharacter {
        /// The group, from 1.
        group: usize,
        /// The position in the group, from 1.
        position: usize,
        /// The character found.
        found: char,
    },
    /// A group's check character does not match: one of its 5 characters is mistyped.
    #[error("group {group} has a typo: one of its five characters is wrong or two are swapped")]
    Checksum {
        /// The group, from 1.
        group: usize,
    },
    /// The last group's checks pass but its padding bits are not zero: not a code this
    /// library wrote.
    #[error("group {group} is not part of a valid recovery key (its unused bits are set)")]
    NonCanonical {
        /// The group, from 1 (always the last one).
        group: usize,
    },
}

/// A recovery key: 256 random bits that seal a backup. Show it to the person once with
/// [`to_code`](Self::to_code) and have them write it down; read it back with
/// [`from_code`](Self::from_code).
///
/// ```
/// use ratchetbox::backup::RecoveryKey;
/// let mut rng = ratchetbox::OsRng::new();
/// let key = RecoveryKey::generate(&mut rng);
/// let code = key.to_code();
/// assert_eq!(code.len(), 13 * 5 + 12);
/// // Lowercase, spaces and dashes are accepted.
/// let typed = code.to_lowercase().replace('-', " ");
/// assert_eq!(RecoveryKey::from_code(&typed)?, key);
/// # Ok::<(), ratchetbox::backup::RecoveryKeyError>(())
/// ```
#[derive(Clone)]
pub struct RecoveryKey(Zeroizing<[u8; RECOVERY_KEY_LEN]>);

impl RecoveryKey {
    /// A fresh random recovery key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Self(Zeroizing::new([0; RECOVERY_KEY_LEN]));
        rng.fill_bytes(&mut key.0[..]);
        key
    }

    /// Wraps 32 secret bytes (for tests and for apps that keep the key in binary form).
    pub fn from_bytes(bytes: [u8; RECOVERY_KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes.
    pub(crate) fn secret(&self) -> &[u8; RECOVERY_KEY_LEN] {
        &self.0
    }

    /// The code to show: 13 groups of 5 characters joined by `-` (77 characters).
    pub fn to_code(&self) -> Zeroizing<String> {
        let mut values = Zeroizing::new([0u8; DATA_CHARS]);
        for (i, value) in values.iter_mut().enumerate() {
            let mut v = 0u8;
            for bit in 5 * i..5 * i + 5 {
                v = (v << 1) | bit_at(&self.0, bit);
            }
            *value = v;
        }
        let mut out = Zeroizing::new(String::with_capacity(CODE_LEN + GROUPS - 1));
        for (group, chunk) in values.chunks(GROUP_LEN - 1).enumerate() {
            if group > 0 {
                out.push('-');
            }
            for &v in chunk {
                out.push(char::from(ALPHABET[usize::from(v)]));
            }
            out.push(char::from(
                ALPHABET[usize::from(check_value(group as u8, chunk))],
            ));
        }
        out
    }

    /// Reads a code written by [`to_code`](Self::to_code). ASCII spaces and `-` anywhere are
    /// ignored and lowercase letters read as uppercase; nothing else is accepted (in
    /// particular `O`, `I` and `L` are not read as digits).
    ///
    /// # Errors
    /// [`RecoveryKeyError::WrongLength`] if there are not 65 characters left;
    /// [`RecoveryKeyError::InvalidCharacter`] naming the first character outside the
    /// alphabet; [`RecoveryKeyError::Checksum`] naming the first group whose check fails;
    /// [`RecoveryKeyError::NonCanonical`] if the 4 unused bits are not zero.
    pub fn from_code(code: &str) -> Result<Self, RecoveryKeyError> {
        let mut values = Zeroizing::new([0u8; CODE_LEN]);
        let mut n = 0usize;
        for c in code.chars() {
            if c == ' ' || c == '-' {
                continue;
            }
            if n < CODE_LEN {
                values[n] = match decode_char(c) {
                    Some(v) => v,
                    None => {
                        return Err(RecoveryKeyError::InvalidCharacter {
                            group: n / GROUP_LEN + 1,
                            position: n % GROUP_LEN + 1,
                            found: c,
                        });
                    }
                };
            }
            n += 1;
        }
        if n != CODE_LEN {
            return Err(RecoveryKeyError::WrongLength {
                found: n,
                expected: CODE_LEN,
            });
        }
        for (group, chunk) in values.chunks(GROUP_LEN).enumerate() {
            let mut interim = group as u8;
            for &v in chunk {
                interim = step(interim, v);
            }
            if interim != 0 {
                return Err(RecoveryKeyError::Checksum { group: group + 1 });
            }
        }
        let mut key = Zeroizing::new([0u8; RECOVERY_KEY_LEN]);
        let mut data = values
            .chunks(GROUP_LEN)
            .flat_map(|g| g[..GROUP_LEN - 1].iter().copied());
        let mut bit = 0usize;
        let mut padding = 0u8;
        for _ in 0..DATA_CHARS {
            let v = data.next().unwrap_or(0);
            for shift in (0..5).rev() {
                let b = (v >> shift) & 1;
                if bit < 8 * RECOVERY_KEY_LEN {
                    key[bit / 8] |= b << (7 - bit % 8);
                } else {
                    padding |= b;
                }
                bit += 1;
            }
        }
        if padding != 0 {
            return Err(RecoveryKeyError::NonCanonical { group: GROUPS });
        }
        Ok(Self(key))
    }
}

fn bit_at(bytes: &[u8; RECOVERY_KEY_LEN], bit: usize) -> u8 {
    bytes.get(bit / 8).map_or(0, |b| (b >> (7 - bit % 8)) & 1)
}

fn decode_char(c: char) -> Option<u8> {
    let upper = c.to_ascii_uppercase();
    if !upper.is_ascii() {
        return None;
    }
    ALPHABET
        .iter()
        .position(|&a| char::from(a) == upper)
        .map(|p| p as u8)
}

/// Multiplication by 2 in GF(32) with the polynomial `x^5 + x^2 + 1`.
fn times_two(x: u8) -> u8 {
    let shifted = x << 1;
    if shifted & 0x20 != 0 {
        shifted ^ 0x25
    } else {
        shifted
    }
}

/// One Damm step: `interim * v = 2 * interim + v` in GF(32).
fn step(interim: u8, v: u8) -> u8 {
    times_two(interim) ^ v
}

/// The check value of a group's 4 data values: the one that brings the Damm interim from
/// the group's index to 0.
fn check_value(group: u8, data: &[u8]) -> u8 {
    let interim = data.iter().fold(group, |i, &v| step(i, v));
    times_two(interim)
}

impl PartialEq for RecoveryKey {
    /// Constant time.
    fn eq(&self, other: &Self) -> bool {
        self.0[..].ct_eq(&other.0[..]).into()
    }
}

impl Eq for RecoveryKey {}

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec::Vec;

    fn key(seed: u8) -> RecoveryKey {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = seed
                .wrapping_mul(31)
                .wrapping_add((i as u8).wrapping_mul(97));
        }
        RecoveryKey::from_bytes(bytes)
    }

    fn plain(code: &str) -> Vec<u8> {
        code.bytes().filter(|&c| c != b'-').collect()
    }

    fn join(chars: &[u8]) -> String {
        String::from_utf8(chars.to_vec()).expect("ascii")
    }

    #[test]
    fn keys_are_equal_only_when_every_byte_is() {
        let a = RecoveryKey::from_bytes([7; 32]);
        assert_eq!(a, RecoveryKey::from_bytes([7; 32]));
        // Every single bit of either side counts.
        for byte in 0..32 {
            for bit in 0..8 {
                let mut bytes = [7u8; 32];
                bytes[byte] ^= 1 << bit;
                assert_ne!(a, RecoveryKey::from_bytes(bytes), "byte {byte}, bit {bit}");
            }
        }
    }

    #[test]
    fn the_code_round_trips_and_has_its_documented_shape() {
        for seed in 0..20u8 {
            let k = key(seed);
            let code = k.to_code();
            assert_eq!(code.len(), 77);
            for (i, group) in code.split('-').enumerate() {
                assert_eq!(group.len(), 5, "group {i}");
                assert!(group.bytes().all(|c| ALPHABET.contains(&c)));
            }
            assert_eq!(RecoveryKey::from_code(&code).expect("parses"), k);
        }
        // All zero bits, all one bits.
        for bytes in [[0u8; 32], [0xff; 32]] {
            let k = RecoveryKey::from_bytes(bytes);
            assert_eq!(RecoveryKey::from_code(&k.to_code()).expect("parses"), k);
        }
    }

    #[test]
    fn a_zero_key_has_the_hand_computed_code() {
        // Every data value is 0; group g's check is 2 * (2^4 * g) in GF(32): for g = 0 it is
        // 0, for g = 1 it is 2^5 = x^2 + 1 = 5, for g = 2 it is 2^6 = x^3 + x = 10 ('A').
        let code = RecoveryKey::from_bytes([0; 32]).to_code();
        assert!(code.starts_with("00000-00005-0000A-"), "{}", &*code);
    }

    #[test]
    fn lowercase_spaces_and_dashes_are_accepted_and_nothing_else() {
        let k = key(3);
        let code = k.to_code();
        let spaced = code.replace('-', " ").to_lowercase();
        assert_eq!(RecoveryKey::from_code(&spaced).expect("parses"), k);
        let packed = join(&plain(&code));
        assert_eq!(RecoveryKey::from_code(&packed).expect("parses"), k);
        let tabbed = code.replace('-', "\t");
        assert_eq!(
            RecoveryKey::from_code(&tabbed),
            Err(RecoveryKeyError::InvalidCharacter {
                group: 2,
                position: 1,
                found: '\t'
            })
        );
    }

    #[test]
    fn every_single_substitution_is_detected_and_names_its_group() {
        for seed in [0u8, 7, 200] {
            let code = plain(&key(seed).to_code());
            for pos in 0..CODE_LEN {
                for &sub in ALPHABET.iter() {
                    if sub == code[pos] {
                        continue;
                    }
                    let mut typo = code.clone();
                    typo[pos] = sub;
                    assert_eq!(
                        RecoveryKey::from_code(&join(&typo)),
                        Err(RecoveryKeyError::Checksum {
                            group: pos / GROUP_LEN + 1
                        }),
                        "position {pos}, substitute {}",
                        char::from(sub)
                    );
                }
            }
        }
    }

    #[test]
    fn every_adjacent_transposition_is_detected() {
        for seed in 0..40u8 {
            let code = plain(&key(seed).to_code());
            for pos in 0..CODE_LEN - 1 {
                if code[pos] == code[pos + 1] {
                    continue;
                }
                let mut typo = code.clone();
                typo.swap(pos, pos + 1);
                // Within a group: that group; across a boundary: the first of the two.
                assert_eq!(
                    RecoveryKey::from_code(&join(&typo)),
                    Err(RecoveryKeyError::Checksum {
                        group: pos / GROUP_LEN + 1
                    }),
                    "seed {seed} position {pos}"
                );
            }
        }
    }

    #[test]
    fn the_check_detects_every_swap_of_every_pair_of_values_at_every_place() {
        // Independent of any key: for every start, every pair x != y and every place in a
        // group, the swapped group fails the check.
        for group in 0..GROUPS as u8 {
            for x in 0..32u8 {
                for y in 0..32u8 {
                    if x == y {
                        continue;
                    }
                    for place in 0..GROUP_LEN - 1 {
                        let mut data = [1u8, 2, 3, 4, 0];
                        data[place] = x;
                        data[place + 1] = y;
                        let check = check_value(group, &data[..4]);
                        let mut full = data;
                        full[4] = check;
                        let mut swapped = full;
                        swapped.swap(place, place + 1);
                        let interim = swapped.iter().fold(group, |i, &v| step(i, v));
                        if full[place] != full[place + 1] {
                            assert_ne!(interim, 0, "group {group} x {x} y {y} place {place}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn groups_in_the_wrong_place_are_detected() {
        let code = plain(&key(9).to_code());
        let mut swapped = code.clone();
        swapped[..5].copy_from_slice(&code[5..10]);
        swapped[5..10].copy_from_slice(&code[..5]);
        assert_eq!(
            RecoveryKey::from_code(&join(&swapped)),
            Err(RecoveryKeyError::Checksum { group: 1 })
        );
    }

    #[test]
    fn invalid_characters_name_their_group_and_position() {
        let code = plain(&key(1).to_code());
        for (pos, bad) in [(0, 'I'), (13, 'l'), (64, 'O'), (30, 'U'), (7, 'é')] {
            let mut typed: Vec<char> = code.iter().map(|&c| char::from(c)).collect();
            typed[pos] = bad;
            let typed: String = typed.into_iter().collect();
            assert_eq!(
                RecoveryKey::from_code(&typed),
                Err(RecoveryKeyError::InvalidCharacter {
                    group: pos / 5 + 1,
                    position: pos % 5 + 1,
                    found: bad
                })
            );
        }
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let code = plain(&key(1).to_code());
        for len in [0, 1, 64, 66, 130] {
            let typed: String = code
                .iter()
                .cycle()
                .take(len)
                .map(|&c| char::from(c))
                .collect();
            assert_eq!(
                RecoveryKey::from_code(&typed),
                Err(RecoveryKeyError::WrongLength {
                    found: len,
                    expected: 65
                })
            );
        }
    }

    #[test]
    fn set_padding_bits_are_refused() {
        // The last data character holds the key's last bit and 4 padding bits; a code with
        // any padding bit set, and a correct check, is refused.
        let code = plain(&RecoveryKey::from_bytes([0; 32]).to_code());
        for padding in 1..16u8 {
            let mut typo = code.clone();
            let last = &mut typo[60..65];
            let data = [0u8, 0, 0, padding];
            for (slot, &v) in last.iter_mut().zip(&data) {
                *slot = ALPHABET[usize::from(v)];
            }
            last[4] = ALPHABET[usize::from(check_value(12, &data))];
            assert_eq!(
                RecoveryKey::from_code(&join(&typo)),
                Err(RecoveryKeyError::NonCanonical { group: 13 })
            );
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let k = RecoveryKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{k:?}"), "RecoveryKey(..)");
    }
}
