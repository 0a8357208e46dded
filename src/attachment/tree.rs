//! The hash tree that commits the pointer to every chunk of a sealed file (format 2).
//!
//! ```text
//! leaf_i   = BLAKE3(0x00 || i as u64 big-endian || last flag (0x01 final chunk, else 0x00)
//!                   || sealed chunk_i (ciphertext || tag))
//! node     = BLAKE3(0x01 || left || right)
//! level 0  = leaf_0 .. leaf_{n-1}; level k+1 pairs level k left to right, and a lone last
//!            node (odd length) moves up unchanged; the top level has one node, the tree root
//!            (the shape is RFC 6962's Merkle tree: split at the largest power of two below n)
//! root     = BLAKE3(0x02 || header || key commitment || tree root)          in the pointer
//! stored   = level 0 || level 1 || ... || level h (the top, the tree root, included),
//!            32 bytes a node, after the last chunk
//! ```
//!
//! The three prefixes keep leaves, inner nodes and the pointer's root apart, so no value of
//! one kind can stand for another. A leaf binds its chunk's index and last-chunk flag, so a
//! chunk moved, duplicated or cut off changes the root even before its tag is checked.
//!
//! Openers verify a *window* of stored leaves (a contiguous run of level 0) against the
//! pointer's root with the few stored nodes beside it (at most two a level), then compare
//! each chunk's own leaf hash with the verified one before decrypting it.

use alloc::vec::Vec;

use subtle::ConstantTimeEq;

use crate::error::AttachmentError;

/// Length of every hash in the tree and of the pointer's root.
pub const HASH_LEN: usize = 32;

/// One hash of the tree.
pub(crate) type Hash = [u8; HASH_LEN];

const LEAF: u8 = 0x00;
const NODE: u8 = 0x01;
const ROOT: u8 = 0x02;

/// The leaf hash of sealed chunk `index` (its ciphertext and tag).
pub(crate) fn leaf_hash(index: u64, last: bool, sealed_chunk: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    let mut head = [0u8; 10];
    head[0] = LEAF;
    head[1..9].copy_from_slice(&index.to_be_bytes());
    head[9] = u8::from(last);
    hasher.update(&head);
    hasher.update(sealed_chunk);
    *hasher.finalize().as_bytes()
}

/// The hash of an inner node.
pub(crate) fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut input = [0u8; 1 + 2 * HASH_LEN];
    input[0] = NODE;
    input[1..1 + HASH_LEN].copy_from_slice(left);
    input[1 + HASH_LEN..].copy_from_slice(right);
    *blake3::hash(&input).as_bytes()
}

/// The pointer's root: the tree root bound to the file's prefix (header and key
/// commitment).
pub(crate) fn pointer_root(prefix: &[u8], tree_root: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[ROOT]);
    hasher.update(prefix);
    hasher.update(tree_root);
    *hasher.finalize().as_bytes()
}

/// Number of nodes at `level` of a tree over `n >= 1` leaves.
pub(crate) const fn level_len(n: u64, level: u32) -> u64 {
    // ceil(n / 2^level), without overflow.
    if level >= 64 {
        return 1;
    }
    n.div_ceil(1u64 << level)
}

/// Number of levels below the top (0 for a single leaf).
pub(crate) const fn height(n: u64) -> u32 {
    // The smallest h with ceil(n / 2^h) = 1.
    if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    }
}

/// Number of stored nodes: every level, the top included.
pub(crate) fn stored_nodes(n: u64) -> u64 {
    (0..=height(n)).map(|level| level_len(n, level)).sum()
}

/// Index of the first node of `level` in the stored tree.
pub(crate) fn level_start(n: u64, level: u32) -> u64 {
    (0..level).map(|k| level_len(n, k)).sum()
}

/// Computes the next level up from `level` (pairs hashed, a lone last node moved up).
pub(crate) fn parent_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => node_hash(left, right),
            [lone] => *lone,
            _ => [0u8; HASH_LEN],
        })
        .collect()
}

/// Replaces `level` by the next level up, in place.
pub(crate) fn parent_level_in_place(level: &mut Vec<Hash>) {
    let parents = level.len().div_ceil(2);
    for i in 0..parents {
        // 2i and 2i + 1 are at or after i: read before written.
        let parent = match (level.get(2 * i), level.get(2 * i + 1)) {
            (Some(left), Some(right)) => node_hash(left, right),
            (Some(lone), None) => *lone,
            _ => [0u8; HASH_LEN],
        };
        if let Some(slot) = level.get_mut(i) {
            *slot = parent;
        }
    }
    level.truncate(parents);
}

/// Writes the stored tree over `leaves` (level 0 first, the top last) to `write`, and
/// returns the tree root.
pub(crate) fn write_tree<E>(
    mut level: Vec<Hash>,
    mut write: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Hash, E> {
    loop {
        for node in &level {
            write(node)?;
        }
        if level.len() <= 1 {
            return Ok(level.first().copied().unwrap_or([0u8; HASH_LEN]));
        }
        level = parent_level(&level);
    }
}

/// Writes the stored tree over `leaves` into `stored` (exactly its length, from the layout)
/// and returns the tree root.
pub(crate) fn store_tree(leaves: Vec<Hash>, stored: &mut [u8]) -> Hash {
    let mut rest = stored;
    write_tree::<core::convert::Infallible>(leaves, |node| {
        if let Some((room, tail)) = core::mem::take(&mut rest).split_at_mut_checked(node.len()) {
            room.copy_from_slice(node);
            rest = tail;
        }
        Ok(())
    })
    .unwrap_or_else(|never| match never {})
}

/// Checks a whole stored tree (`stored`, all of it) against the pointer's root: its upper
/// levels must be exactly the ones computed from its level 0, and the top must give `root`.
/// Returns the verified level 0.
pub(crate) fn verify_stored_tree<'s>(
    n: u64,
    stored: &'s [u8],
    prefix: &[u8],
    root: &Hash,
) -> Result<&'s [u8], AttachmentError> {
    let leaves_len = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_mul(HASH_LEN))
        .ok_or(AttachmentError::RootMismatch)?;
    let (level0, mut upper) = stored
        .split_at_checked(leaves_len)
        .ok_or(AttachmentError::RootMismatch)?;
    let mut level: Vec<Hash> = level0
        .chunks_exact(HASH_LEN)
        .map(|c| c.try_into().unwrap_or([0u8; HASH_LEN]))
        .collect();
    while level.len() > 1 {
        parent_level_in_place(&mut level);
        let (stored_level, rest) = upper
            .split_at_checked(level.len() * HASH_LEN)
            .ok_or(AttachmentError::RootMismatch)?;
        if !level.iter().flatten().eq(stored_level.iter()) {
            return Err(AttachmentError::RootMismatch);
        }
        upper = rest;
    }
    let tree_root = level.first().ok_or(AttachmentError::RootMismatch)?;
    if !upper.is_empty() {
        return Err(AttachmentError::RootMismatch);
    }
    check_root(&pointer_root(prefix, tree_root), root)?;
    Ok(level0)
}

/// Compares a computed pointer root with the pointer's, in constant time.
pub(crate) fn check_root(computed: &Hash, expected: &Hash) -> Result<(), AttachmentError> {
    if bool::from(computed.ct_eq(expected)) {
        Ok(())
    } else {
        Err(AttachmentError::RootMismatch)
    }
}

/// Compares chunk `index`'s computed leaf with its verified stored leaf.
pub(crate) fn check_leaf(
    index: u64,
    computed: &Hash,
    verified: &[u8],
) -> Result<(), AttachmentError> {
    if bool::from(computed.as_slice().ct_eq(verified)) {
        Ok(())
    } else {
        Err(AttachmentError::ChunkNotCommitted { index })
    }
}

/// The stored nodes that prove a window of leaves `first..=last` of a tree over `n` leaves:
/// the window's level-0 run widened by its neighbours, then at most two nodes a level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WindowProof {
    n: u64,
    first: u64,
    last: u64,
}

impl WindowProof {
    /// The proof for leaves `first..=last` (`first <= last < n`).
    pub(crate) fn new(n: u64, first: u64, last: u64) -> Self {
        Self { n, first, last }
    }

    /// The nodes to fetch, as runs `(level, first index, count)`, in fetch order: the
    /// level-0 run (window and neighbours) first, then the upper levels' nodes, each level
    /// left before right.
    pub(crate) fn runs(&self) -> Vec<(u32, u64, u64)> {
        let mut runs = Vec::new();
        let (mut lo, mut hi) = (self.first, self.last);
        for level in 0..=height(self.n) {
            let len = level_len(self.n, level);
            let left = lo % 2 == 1;
            let right = hi.is_multiple_of(2) && hi + 1 < len;
            if level == 0 {
                let start = lo - u64::from(left);
                let end = hi + u64::from(right);
                runs.push((0, start, end - start + 1));
            } else {
                if left {
                    runs.push((level, lo - 1, 1));
                }
                if right {
                    runs.push((level, hi + 1, 1));
                }
            }
            lo /= 2;
            hi /= 2;
        }
        runs
    }

    /// Total bytes of the proof.
    pub(crate) fn len_bytes(&self) -> u64 {
        self.runs().iter().map(|r| r.2).sum::<u64>() * HASH_LEN as u64
    }

    /// Where the window's own leaves sit in the fetched proof bytes.
    pub(crate) fn window_in_proof(&self) -> core::ops::Range<usize> {
        let start = usize::from(self.first % 2 == 1) * HASH_LEN;
        let count = (self.last - self.first + 1) as usize;
        start..start + count * HASH_LEN
    }

    /// Computes the pointer root from the fetched proof bytes (`proof`, the runs in order)
    /// and checks it.
    pub(crate) fn verify(
        &self,
        proof: &[u8],
        prefix: &[u8],
        root: &Hash,
    ) -> Result<(), AttachmentError> {
        if proof.len() as u64 != self.len_bytes() {
            return Err(AttachmentError::RootMismatch);
        }
        let mut nodes = proof
            .chunks_exact(HASH_LEN)
            .map(|c| <Hash>::try_from(c).unwrap_or([0u8; HASH_LEN]));
        let runs = self.runs();
        let mut level: Vec<Hash> = match runs.first() {
            Some(&(0, _, count)) => nodes.by_ref().take(count as usize).collect(),
            _ => Vec::new(),
        };
        let (mut lo, mut hi) = (self.first, self.last);
        for k in 0..height(self.n) {
            if k > 0 {
                let len = level_len(self.n, k);
                if lo % 2 == 1 {
                    level.insert(0, nodes.next().ok_or(AttachmentError::RootMismatch)?);
                }
                if hi.is_multiple_of(2) && hi + 1 < len {
                    level.push(nodes.next().ok_or(AttachmentError::RootMismatch)?);
                }
            }
            parent_level_in_place(&mut level);
            lo /= 2;
            hi /= 2;
        }
        match level.as_slice() {
            [tree_root] => check_root(&pointer_root(prefix, tree_root), root),
            _ => Err(AttachmentError::RootMismatch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(i, i + 1 == n, &[i as u8; 3]))
            .collect()
    }

    #[test]
    fn shape_arithmetic() {
        assert_eq!(
            (height(1), height(2), height(3), height(4), height(5)),
            (0, 1, 2, 2, 3)
        );
        assert_eq!(stored_nodes(1), 1);
        assert_eq!(stored_nodes(5), 5 + 3 + 2 + 1);
        assert_eq!(stored_nodes(16_384), 32_767);
        assert_eq!(level_start(5, 2), 8);
    }

    #[test]
    fn every_window_verifies_against_the_full_tree_and_no_other() {
        let prefix = [7u8; 70];
        for n in 1..=19u64 {
            let mut stored = Vec::new();
            let tree_root = write_tree::<()>(leaves(n), |b| {
                stored.extend_from_slice(b);
                Ok(())
            })
            .expect("infallible");
            assert_eq!(stored.len() as u64, stored_nodes(n) * 32);
            let root = pointer_root(&prefix, &tree_root);
            verify_stored_tree(n, &stored, &prefix, &root).expect("whole tree");
            for first in 0..n {
                for last in first..n {
                    let proof = WindowProof::new(n, first, last);
                    let mut bytes = Vec::new();
                    for (level, start, count) in proof.runs() {
                        let at = ((level_start(n, level) + start) * 32) as usize;
                        bytes.extend_from_slice(&stored[at..at + count as usize * 32]);
                    }
                    let window = &bytes[proof.window_in_proof()];
                    let at = (first * 32) as usize;
                    assert_eq!(window, &stored[at..at + window.len()]);
                    proof.verify(&bytes, &prefix, &root).expect("verifies");
                    if let Some(byte) = bytes.first_mut() {
                        *byte ^= 1;
                        assert!(matches!(
                            proof.verify(&bytes, &prefix, &root),
                            Err(AttachmentError::RootMismatch)
                        ));
                    }
                }
            }
        }
    }
}
