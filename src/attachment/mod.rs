//! Sealed file attachments: streaming, chunked, padded, key-committed, with random access
//! and (feature `parallel`) on all cores.
//!
//! A photo, a voice note or a multi-gigabyte video travels outside the conversation: the
//! app uploads the sealed file anywhere. What travels inside the ratchet is a small
//! [`AttachmentPointer`] holding the key, the plaintext size, the root of a hash tree that
//! commits to every chunk of the sealed file, the sender's content type and file name, and a
//! locator the app fills in.
//!
//! ```
//! use ratchetbox::attachment::{self, AttachmentMetadata, AttachmentPointer};
//!
//! let mut rng = ratchetbox::OsRng::new();
//!
//! // Alice seals a file, uploads `sealed` and sends the pointer through the session.
//! let photo = vec![0x42u8; 250_000];
//! let meta = AttachmentMetadata::new("image/png", "sunset.png")?;
//! let (mut pointer, sealed) = attachment::seal(&mut rng, &photo, meta)?;
//! pointer.set_locator(b"blob/7f3a".to_vec())?;
//! let pointer_bytes = pointer.to_bytes(); // goes into the message content
//!
//! // Bob decodes the pointer, downloads `sealed` from the locator and opens it.
//! let received = AttachmentPointer::from_bytes(&pointer_bytes)?;
//! assert_eq!(received.content_type(), "image/png");
//! assert_eq!(attachment::open(&received, &sealed)?, photo);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Format
//! ```text
//! sealed     = header || commitment || chunk_0 || ... || chunk_{n-1} || tree
//! header     = "RBXA" || 0x02 || log2(chunk size) || salt (32 random bytes)      38 bytes
//! commitment = HKDF-SHA256(salt, file key,
//!                          "ratchetbox v1 attachment key commitment" || header)  32 bytes
//! payload key= HKDF-SHA256(salt, file key, "ratchetbox v1 attachment payload key" || header)
//! payload    = plaintext || zero bytes, padded to PADME(max(len, 256))
//! chunk_i    = AES-256-GCM(payload key, nonce_i, no AD, i-th chunk-size slice of payload)
//! nonce_i    = i as 11-byte big-endian || 0x01 for the final chunk, else 0x00
//! leaf_i     = BLAKE3(0x00 || i as u64 big-endian || last flag || chunk_i)
//! node       = BLAKE3(0x01 || left || right)   (RFC 6962 shape; a lone last node moves up)
//! tree       = every level of the tree, leaves first, tree root last, 32 bytes a node
//! root       = BLAKE3(0x02 || header || commitment || tree root)          in the pointer
//! ```
//! `docs/PROTOCOL.md` (section 13, "Sealed attachments") specifies it byte for byte, with test
//! vectors computed by an independent implementation (`tests/data/attachment_vectors.py`).
//!
//! # What is checked, in order
//! 1. The header: magic ([`MalformedHeader`]), version ([`UnsupportedVersion`]), chunk size
//!    (a power of two from 1 KiB to 1 MiB, checked before any buffer is allocated).
//! 2. The key commitment, in constant time ([`CommitmentMismatch`]): the file was sealed
//!    under the pointer's key with exactly this header.
//! 3. The sealed length the pointer's plaintext size implies, known before any chunk is
//!    read (streams seek to the end of their source) ([`LengthMismatch`]); a file shorter
//!    than its prefix, or a source that delivers less than it reported, is [`Truncated`].
//! 4. The hashes read from the stored tree, against the pointer's root ([`RootMismatch`]),
//!    before any chunk they cover is decrypted: all of it for whole-file opens, a window of
//!    1024 leaves at a time for streams, the range's leaves and their proof for random
//!    access.
//! 5. Every chunk's own leaf hash (binding its index and last-chunk flag) against the
//!    verified one, before it is decrypted ([`ChunkNotCommitted`] with its index): a
//!    modified, moved, dropped, duplicated or spliced chunk, and a chunk re-encrypted by
//!    someone holding the file key, fail here. So every holder of one pointer gets the same
//!    bytes, on every path.
//! 6. Every chunk's tag at its position, with the last-chunk flag only on the final one
//!    ([`ChunkAuthentication`] with its index): only a sender can produce a committed chunk
//!    that fails here. Output from a failed chunk is never returned, nor written to a
//!    stream's output; a failed [`RandomAccess::decrypt`] leaves the caller's buffer all
//!    zero. Every buffer of ratchetbox's own that held plaintext (decrypted chunks, the
//!    output being assembled, a streaming opener's chunk buffer, the batches of the parallel
//!    functions, a stream sealer's chunk buffer, the plaintext an in-place function keeps
//!    aside) is wiped before it is freed, on success and
//!    on every error, and so is the sealed buffer an in-place opener took, on error; what a
//!    call returns or writes to the caller's `Write` is the caller's to wipe.
//! 7. The padding after the plaintext is zero ([`BadPadding`]).
//!
//! # Which function
//! | need | function |
//! | --- | --- |
//! | bytes in memory, fastest: in the caller's buffer, no allocation the size of the file | [`seal_in_place`], [`open_in_place`] |
//! | bytes in memory, into a new allocation | [`seal`], [`open`] |
//! | any `Read` to any `Write` (`std`) | [`seal_stream`] |
//! | `Read + Seek` to any `Write`, constant memory (`std`) | [`open_stream`] |
//! | progressive playback from `Read + Seek` (`std`) | [`StreamOpener`] |
//! | seek: decrypt a byte range | [`RandomAccess`] (sans-IO), [`RandomAccess::read_range`] (callback), [`SeekableOpener`] (`Read + Seek`) |
//! | all cores (`parallel`) | `seal_in_place_parallel`, `open_in_place_parallel`, `seal_parallel`, `open_parallel` (memory); `seal_stream_parallel`, `open_stream_parallel` (streams); `RandomAccess::read_range_parallel` (seekable) |
//!
//! [`MalformedHeader`]: AttachmentError::MalformedHeader
//! [`UnsupportedVersion`]: AttachmentError::UnsupportedVersion
//! [`CommitmentMismatch`]: AttachmentError::CommitmentMismatch
//! [`LengthMismatch`]: AttachmentError::LengthMismatch
//! [`Truncated`]: AttachmentError::Truncated
//! [`ChunkAuthentication`]: AttachmentError::ChunkAuthentication
//! [`BadPadding`]: AttachmentError::BadPadding
//! [`RootMismatch`]: AttachmentError::RootMismatch
//! [`ChunkNotCommitted`]: AttachmentError::ChunkNotCommitted

pub(crate) mod format;
mod in_place;
mod open;
#[cfg(feature = "parallel")]
mod parallel;
mod pointer;
mod random_access;
mod seal;
mod tree;

pub use crate::error::{AttachmentError, FileNameRule};
pub use format::{
    CHUNK_TAG_LEN, COMMITMENT_LEN, ChunkSize, FORMAT_VERSION, HEADER_LEN, Layout, MAGIC,
    MAX_PLAINTEXT_LEN, MIN_PADDED_LEN, PREFIX_LEN,
};
pub use in_place::{open_in_place, seal_in_place};
pub use open::open;
#[cfg(feature = "std")]
pub use open::{StreamOpener, open_stream};
#[cfg(feature = "parallel")]
pub use parallel::{
    open_in_place_parallel, open_parallel, open_stream_parallel, seal_in_place_parallel,
    seal_parallel, seal_stream_parallel,
};
pub use pointer::{
    AttachmentMetadata, AttachmentPointer, FILE_KEY_LEN, FileKey, MAX_CONTENT_TYPE_LEN,
    MAX_FILE_NAME_LEN, MAX_LOCATOR_LEN, ROOT_LEN,
};
#[cfg(feature = "std")]
pub use random_access::SeekableOpener;
pub use random_access::{FetchPlan, RandomAccess};
pub use seal::seal;
#[cfg(feature = "std")]
pub use seal::seal_stream;
