//! Sealed attachments (format 2): test vectors from an independent implementation, round
//! trips across every API, random-access reads, every attack of issue 3 with its specific
//! error, and the chunk forged by a holder of the file key (issue 13) on every opening path.

#![cfg(feature = "std")]

use std::convert::Infallible;
use std::io::{self, Cursor, Read, Seek, SeekFrom};

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{SeedableRng, TryCryptoRng, TryRng};
use ratchetbox::attachment::{
    self, AttachmentMetadata, AttachmentPointer, ChunkSize, FileNameRule, HEADER_LEN, Layout,
    PREFIX_LEN, RandomAccess, SeekableOpener, StreamOpener,
};
use ratchetbox::{AttachmentError as E, DecodeError};
use serde_json::Value;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// Helpers

/// A "random" generator that yields exactly the given bytes: the file key, then the salt.
struct FixedRng(Vec<u8>);

impl TryRng for FixedRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        assert!(dst.len() <= self.0.len(), "FixedRng exhausted");
        let rest = self.0.split_off(dst.len());
        dst.copy_from_slice(&self.0);
        self.0 = rest;
        Ok(())
    }
}
impl TryCryptoRng for FixedRng {}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn kib_chunks() -> ChunkSize {
    ChunkSize::from_log2(10).expect("1 KiB is allowed")
}

fn meta(chunk: ChunkSize) -> AttachmentMetadata {
    AttachmentMetadata::default().with_chunk_size(chunk)
}

/// Byte i is i mod 251 (the vectors' plaintext).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn sealed_with(seed: u64, plaintext: &[u8], chunk: ChunkSize) -> (AttachmentPointer, Vec<u8>) {
    attachment::seal(&mut rng(seed), plaintext, meta(chunk)).expect("seal")
}

/// A reader that returns at most `step` bytes per call, to exercise short reads; it can
/// seek, as the streaming openers need.
struct Trickle<'a> {
    data: &'a [u8],
    position: usize,
    step: usize,
}

impl<'a> Trickle<'a> {
    fn new(data: &'a [u8], step: usize) -> Self {
        Self {
            data,
            position: 0,
            step,
        }
    }
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = self.data.get(self.position..).unwrap_or_default();
        let n = buf.len().min(self.step).min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.position += n;
        Ok(n)
    }
}

impl Seek for Trickle<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => n as i64,
            SeekFrom::End(d) => self.data.len() as i64 + d,
            SeekFrom::Current(d) => self.position as i64 + d,
        };
        self.position = usize::try_from(target).map_err(|_| io::ErrorKind::InvalidInput)?;
        Ok(self.position as u64)
    }
}

fn open_streaming(pointer: &AttachmentPointer, sealed: &[u8]) -> Result<Vec<u8>, E> {
    let mut out = Vec::new();
    attachment::open_stream(pointer, &mut Trickle::new(sealed, 777), &mut out)?;
    Ok(out)
}

/// Opens with every whole-file API and checks they agree on success or on the error;
/// returns the in-memory result and the streaming result.
fn open_all(
    pointer: &AttachmentPointer,
    sealed: &[u8],
) -> (Result<Vec<u8>, E>, Result<Vec<u8>, E>) {
    let memory = attachment::open(pointer, sealed);
    let in_place = attachment::open_in_place(pointer, sealed.to_vec());
    assert_eq!(
        format!("{memory:?}"),
        format!("{in_place:?}"),
        "open and open_in_place disagree"
    );
    #[cfg(feature = "parallel")]
    {
        let parallel = attachment::open_parallel(pointer, sealed);
        assert_eq!(
            format!("{memory:?}"),
            format!("{parallel:?}"),
            "open and open_parallel disagree"
        );
        let in_place = attachment::open_in_place_parallel(pointer, sealed.to_vec());
        assert_eq!(
            format!("{memory:?}"),
            format!("{in_place:?}"),
            "open and open_in_place_parallel disagree"
        );
    }
    let streaming = open_streaming(pointer, sealed);
    #[cfg(feature = "parallel")]
    {
        let mut out = Vec::new();
        let parallel =
            attachment::open_stream_parallel(pointer, &mut Trickle::new(sealed, 777), &mut out)
                .map(|_| out);
        assert_eq!(
            format!("{streaming:?}"),
            format!("{parallel:?}"),
            "open_stream and open_stream_parallel disagree"
        );
    }
    (memory, streaming)
}

fn chunk_bounds(layout: &Layout, index: u64) -> (usize, usize) {
    let stride = layout.chunk_size().bytes() + 16;
    let start = PREFIX_LEN + index as usize * stride;
    let end = (start + stride).min(layout.tree_offset() as usize);
    (start, end)
}

fn layout_of(pointer: &AttachmentPointer, chunk: ChunkSize) -> Layout {
    Layout::new(pointer.plaintext_len(), chunk).expect("layout")
}

/// The hashes `plan` needs, concatenated from `sealed` in the plan's order.
fn hashes_for(plan: &attachment::FetchPlan, sealed: &[u8]) -> Vec<u8> {
    plan.hash_ranges()
        .iter()
        .flat_map(|r| sealed[r.start as usize..r.end as usize].iter().copied())
        .collect()
}

// The hash tree, written here from docs/PROTOCOL.md section 13 (not with the crate's code),
// so that tests can play a sender or an attacker who builds trees of their own.

fn blake3_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

/// Every level of the tree over the sealed chunks of `sealed`, leaves first, top last.
fn tree_levels(layout: &Layout, sealed: &[u8]) -> Vec<Vec<[u8; 32]>> {
    let n = layout.chunk_count();
    let mut level: Vec<[u8; 32]> = (0..n)
        .map(|i| {
            let (start, end) = chunk_bounds(layout, i);
            let end = end.min(layout.tree_offset() as usize);
            let last = [u8::from(i + 1 == n)];
            blake3_of(&[&[0x00], &i.to_be_bytes(), &last, &sealed[start..end]])
        })
        .collect();
    let mut levels = vec![level.clone()];
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => blake3_of(&[&[0x01], l, r]),
                [lone] => *lone,
                _ => unreachable!(),
            })
            .collect();
        levels.push(level.clone());
    }
    levels
}

/// `sealed` with its stored tree replaced by the tree of its chunks (what a sender, or an
/// attacker holding the file key, writes).
fn with_tree_of_its_chunks(layout: &Layout, mut sealed: Vec<u8>) -> Vec<u8> {
    let levels = tree_levels(layout, &sealed);
    sealed.truncate(layout.tree_offset() as usize);
    for node in levels.iter().flatten() {
        sealed.extend_from_slice(node);
    }
    sealed
}

/// The pointer root that commits to `sealed` (its prefix and its chunks).
fn root_of(layout: &Layout, sealed: &[u8]) -> [u8; 32] {
    let levels = tree_levels(layout, sealed);
    let top = levels.last().expect("a level")[0];
    blake3_of(&[&[0x02], &sealed[..PREFIX_LEN], &top])
}

/// The same pointer with another root (a sender committing to other bytes).
fn with_root(pointer: &AttachmentPointer, root: &[u8; 32]) -> AttachmentPointer {
    let mut bytes = pointer.to_bytes().to_vec();
    let at = bytes
        .windows(32)
        .position(|w| w == pointer.root())
        .expect("root in the encoding");
    bytes[at..at + 32].copy_from_slice(root);
    AttachmentPointer::from_bytes(&bytes).expect("still a valid pointer")
}

fn error_name(e: &E) -> &'static str {
    match e {
        E::UnsupportedVersion { .. } => "UnsupportedVersion",
        E::MalformedHeader { .. } => "MalformedHeader",
        E::CommitmentMismatch => "CommitmentMismatch",
        E::LengthMismatch { .. } => "LengthMismatch",
        E::ChunkAuthentication { .. } => "ChunkAuthentication",
        E::Truncated { .. } => "Truncated",
        E::BadPadding { .. } => "BadPadding",
        E::RootMismatch => "RootMismatch",
        E::ChunkNotCommitted { .. } => "ChunkNotCommitted",
        _ => "other",
    }
}

fn error_index(e: &E) -> Option<u64> {
    match e {
        E::ChunkAuthentication { index }
        | E::BadPadding { index }
        | E::ChunkNotCommitted { index } => Some(*index),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Test vectors (expected values computed by tests/data/attachment_vectors.py with Python's
// `cryptography` package, from the written specification, not from this crate)

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/attachment_vectors.json")).expect("valid JSON")
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().expect("hex string")).expect("hex")
}

#[test]
fn vectors_padme_samples() {
    for sample in vectors()["padme_samples"].as_array().expect("samples") {
        let len = sample[0].as_u64().expect("len");
        let padded = sample[1].as_u64().expect("padded");
        let layout = Layout::new(len, ChunkSize::DEFAULT).expect("layout");
        assert_eq!(layout.padded_len(), padded, "PADME of {len}");
    }
}

#[test]
fn vectors_seal_to_the_independent_bytes() {
    for v in vectors()["positive"].as_array().expect("positive") {
        let name = v["name"].as_str().expect("name");
        let mut randomness = hex_field(v, "file_key");
        randomness.extend(hex_field(v, "salt"));
        let chunk = ChunkSize::from_log2(v["chunk_log2"].as_u64().expect("log2") as u8)
            .expect("valid chunk size");
        let metadata = AttachmentMetadata::new(
            v["content_type"].as_str().expect("str"),
            v["file_name"].as_str().expect("str"),
        )
        .expect("metadata")
        .with_chunk_size(chunk);
        let plaintext = pattern(v["plaintext_len"].as_u64().expect("len") as usize);
        let locator = hex_field(v, "locator");

        let check = |api: &str, mut pointer: AttachmentPointer, sealed: Vec<u8>| {
            assert_eq!(
                sealed.len() as u64,
                v["sealed_len"].as_u64().expect("len"),
                "{name} {api}"
            );
            if v.get("sealed").is_some() {
                assert_eq!(
                    hex::encode(&sealed),
                    v["sealed"].as_str().expect("hex"),
                    "{name} {api}"
                );
            }
            assert_eq!(
                hex::encode(&sealed[..HEADER_LEN]),
                v["header"].as_str().expect("hex")
            );
            assert_eq!(
                hex::encode(&sealed[HEADER_LEN..PREFIX_LEN]),
                v["commitment"].as_str().expect("hex"),
                "{name} {api}: commitment"
            );
            assert_eq!(
                hex::encode(Sha256::digest(&sealed)),
                v["sealed_sha256"].as_str().expect("hex"),
                "{name} {api}"
            );
            assert_eq!(
                hex::encode(pointer.root()),
                v["root"].as_str().expect("hex"),
                "{name} {api}: root"
            );
            let tree_offset = v["tree_offset"].as_u64().expect("offset") as usize;
            assert_eq!(
                hex::encode(&sealed[tree_offset..]),
                v["tree"].as_str().expect("hex"),
                "{name} {api}: stored tree"
            );
            pointer.set_locator(locator.clone()).expect("locator");
            assert_eq!(
                hex::encode(pointer.to_bytes().as_slice()),
                v["pointer"].as_str().expect("hex"),
                "{name} {api}: pointer encoding"
            );
        };

        let (pointer, sealed) = attachment::seal(
            &mut FixedRng(randomness.clone()),
            &plaintext,
            metadata.clone(),
        )
        .expect("seal");
        check("seal", pointer, sealed);

        let mut sealed = Vec::new();
        let pointer = attachment::seal_stream(
            &mut FixedRng(randomness.clone()),
            &mut Trickle::new(&plaintext, 1000),
            &mut sealed,
            metadata.clone(),
        )
        .expect("seal_stream");
        check("seal_stream", pointer, sealed);

        #[cfg(feature = "parallel")]
        {
            let (pointer, sealed) = attachment::seal_parallel(
                &mut FixedRng(randomness.clone()),
                &plaintext,
                metadata.clone(),
            )
            .expect("seal_parallel");
            check("seal_parallel", pointer, sealed);
            let mut sealed = Vec::new();
            let pointer = attachment::seal_stream_parallel(
                &mut FixedRng(randomness.clone()),
                &mut Trickle::new(&plaintext, 1000),
                &mut sealed,
                metadata.clone(),
            )
            .expect("seal_stream_parallel");
            check("seal_stream_parallel", pointer, sealed);
        }
    }
}

#[test]
fn vectors_open_the_independent_bytes() {
    for v in vectors()["positive"].as_array().expect("positive") {
        let Some(sealed) = v.get("sealed").map(|_| hex_field(v, "sealed")) else {
            continue;
        };
        let name = v["name"].as_str().expect("name");
        let pointer = AttachmentPointer::from_bytes(&hex_field(v, "pointer")).expect("pointer");
        let expected = pattern(v["plaintext_len"].as_u64().expect("len") as usize);
        assert_eq!(
            pointer.content_type(),
            v["content_type"].as_str().expect("str")
        );
        assert_eq!(pointer.file_name(), v["file_name"].as_str().expect("str"));
        assert_eq!(pointer.locator(), hex_field(v, "locator"));
        let (memory, streaming) = open_all(&pointer, &sealed);
        assert_eq!(memory.expect(name), expected, "{name}");
        assert_eq!(streaming.expect(name), expected, "{name}");
    }
}

#[test]
fn vectors_misbehaving_senders_get_their_specific_errors() {
    let vectors = vectors();
    let negatives = vectors["negative"].as_array().expect("negative");
    assert!(negatives.len() >= 10);
    for v in negatives {
        let name = v["name"].as_str().expect("name");
        let sealed = hex_field(v, "sealed");
        let pointer = AttachmentPointer::from_bytes(&hex_field(v, "pointer")).expect("pointer");
        let (memory, streaming) = open_all(&pointer, &sealed);
        let memory = memory.expect_err(name);
        let streaming = streaming.expect_err(name);
        assert_eq!(
            error_name(&memory),
            v["error"].as_str().expect("str"),
            "{name}: {memory:?}"
        );
        assert_eq!(
            error_name(&streaming),
            v["streaming_error"].as_str().expect("str"),
            "{name}: {streaming:?}"
        );
        if let Some(index) = v.get("index") {
            assert_eq!(error_index(&memory), index.as_u64(), "{name}");
            assert_eq!(error_index(&streaming), index.as_u64(), "{name}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Round trips

/// `seal_in_place` and `seal_in_place_parallel`, as values.
type SealInPlace =
    fn(&mut ChaCha20Rng, &mut Vec<u8>, AttachmentMetadata) -> Result<AttachmentPointer, E>;

fn in_place_sealers() -> Vec<(&'static str, SealInPlace)> {
    vec![
        ("seal_in_place", attachment::seal_in_place),
        #[cfg(feature = "parallel")]
        ("seal_in_place_parallel", attachment::seal_in_place_parallel),
    ]
}

fn round_trip_everywhere(seed: u64, plaintext: &[u8], chunk: ChunkSize) {
    let (pointer, sealed) = sealed_with(seed, plaintext, chunk);
    let layout = layout_of(&pointer, chunk);
    assert_eq!(sealed.len() as u64, layout.sealed_len());
    assert_eq!(pointer.plaintext_len(), plaintext.len() as u64);
    let (memory, streaming) = open_all(&pointer, &sealed);
    assert_eq!(memory.expect("open"), plaintext);
    assert_eq!(streaming.expect("open_stream"), plaintext);

    // Streaming seal gives the same bytes for the same randomness.
    let mut streamed = Vec::new();
    let p2 = attachment::seal_stream(
        &mut rng(seed),
        &mut Trickle::new(plaintext, 333),
        &mut streamed,
        meta(chunk),
    )
    .expect("seal_stream");
    assert_eq!(streamed, sealed);
    assert_eq!(p2.root(), pointer.root());
    // So does sealing in place, with room reserved (no reallocation) or without.
    for (name, function) in in_place_sealers() {
        let mut reserved = Vec::with_capacity(sealed.len());
        reserved.extend_from_slice(plaintext);
        let (address, capacity) = (reserved.as_ptr(), reserved.capacity());
        let p = function(&mut rng(seed), &mut reserved, meta(chunk)).expect(name);
        assert_eq!(reserved, sealed, "{name}");
        assert_eq!(
            (reserved.as_ptr(), reserved.capacity()),
            (address, capacity),
            "{name}: reallocated with exactly the room needed"
        );
        assert_eq!(p.root(), pointer.root(), "{name}");
        assert_eq!(p.file_key().as_bytes(), pointer.file_key().as_bytes());
        let mut exact = plaintext.to_vec();
        exact.shrink_to_fit();
        function(&mut rng(seed), &mut exact, meta(chunk)).expect(name);
        assert_eq!(exact, sealed, "{name}, grown");
        assert_eq!(
            exact.capacity(),
            sealed.len(),
            "{name}: grown to the sealed length"
        );
    }
    #[cfg(feature = "parallel")]
    {
        let (p3, in_parallel) =
            attachment::seal_parallel(&mut rng(seed), plaintext, meta(chunk)).expect("seal");
        assert_eq!(in_parallel, sealed);
        assert_eq!(p3.root(), pointer.root());
        let mut streamed = Vec::new();
        let p4 = attachment::seal_stream_parallel(
            &mut rng(seed),
            &mut Trickle::new(plaintext, 333),
            &mut streamed,
            meta(chunk),
        )
        .expect("seal_stream_parallel");
        assert_eq!(streamed, sealed);
        assert_eq!(p4.root(), pointer.root());
    }

    // The whole range, through random access.
    let mut seekable = SeekableOpener::new(&pointer, Cursor::new(&sealed)).expect("seekable");
    assert_eq!(
        seekable
            .read_range(0..plaintext.len() as u64)
            .expect("range"),
        plaintext
    );
}

#[test]
fn round_trips_at_the_boundaries() {
    for chunk in [kib_chunks(), ChunkSize::DEFAULT] {
        let c = chunk.bytes();
        for (i, len) in [0, 1, c - 1, c, c + 1, 2 * c, 7 * c + 123]
            .into_iter()
            .enumerate()
        {
            round_trip_everywhere(i as u64, &pattern(len), chunk);
        }
    }
}

/// Padding can outrun a batch of the parallel stream sealer: 256 KiB + 1 byte pads (PADME) to
/// 270,336 bytes, so with 1 KiB chunks the plaintext ends in chunk 256 and chunks 257 to 263
/// hold only padding, more than the rest of that batch of 4; the batches after it are sealed
/// from the padding alone.
#[test]
fn padding_chunks_past_the_batch_where_the_input_ends_are_sealed() {
    let chunk = kib_chunks();
    let plaintext = pattern((256 << 10) + 1);
    let (pointer, _) = sealed_with(21, &plaintext, chunk);
    assert_eq!(layout_of(&pointer, chunk).chunk_count(), 264);
    round_trip_everywhere(21, &plaintext, chunk);
}

#[test]
fn largest_and_smallest_chunk_sizes() {
    for log2 in [ChunkSize::MIN_LOG2, ChunkSize::MAX_LOG2] {
        let chunk = ChunkSize::from_log2(log2).expect("allowed");
        round_trip_everywhere(9, &pattern(3 * chunk.bytes() + 5), chunk);
    }
}

#[test]
fn padding_hides_the_exact_size() {
    // 1000 and 1020 bytes pad to the same 1024 bytes: their sealed files are equally long.
    let (_, a) = sealed_with(1, &pattern(1000), ChunkSize::DEFAULT);
    let (_, b) = sealed_with(2, &pattern(1020), ChunkSize::DEFAULT);
    assert_eq!(a.len(), b.len());
    // Everything up to 256 bytes looks the same.
    let (_, empty) = sealed_with(3, &[], ChunkSize::DEFAULT);
    let (_, small) = sealed_with(4, &pattern(256), ChunkSize::DEFAULT);
    assert_eq!(empty.len(), small.len());
    // One chunk: its leaf is the whole stored tree.
    assert_eq!(empty.len(), PREFIX_LEN + 256 + 16 + 32);
}

#[test]
fn every_attachment_gets_a_fresh_key_and_salt() {
    let mut r = rng(5);
    let (p1, s1) = attachment::seal(&mut r, b"same", AttachmentMetadata::default()).expect("seal");
    let (p2, s2) = attachment::seal(&mut r, b"same", AttachmentMetadata::default()).expect("seal");
    assert_ne!(p1.file_key().as_bytes(), p2.file_key().as_bytes());
    assert_ne!(s1[..HEADER_LEN], s2[..HEADER_LEN]);
    assert_ne!(s1, s2);
}

/// A reader interrupted before every read it serves (`io::ErrorKind::Interrupted`, which
/// every caller must retry, as `Read::read_exact` does) that refuses to be asked for zero
/// bytes (a streaming function asks for no more once its buffer is full).
struct Interrupting<R> {
    inner: R,
    interrupt_next: bool,
}

impl<R: Read> Read for Interrupting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Err(io::Error::other("asked for zero bytes"));
        }
        self.interrupt_next = !self.interrupt_next;
        if !self.interrupt_next {
            return Err(io::ErrorKind::Interrupted.into());
        }
        self.inner.read(buf)
    }
}

impl<R: Seek> Seek for Interrupting<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

#[test]
fn streaming_retries_interrupted_reads_and_never_asks_for_zero_bytes() {
    let chunk = kib_chunks();
    let data = pattern(5000);
    let (pointer, sealed) = sealed_with(7, &data, chunk);
    let interrupting = |bytes| Interrupting {
        inner: Trickle::new(bytes, 700),
        interrupt_next: true,
    };
    let mut streamed = Vec::new();
    attachment::seal_stream(
        &mut rng(7),
        &mut interrupting(&data),
        &mut streamed,
        meta(chunk),
    )
    .expect("seal_stream");
    assert_eq!(streamed, sealed);
    let mut out = Vec::new();
    attachment::open_stream(&pointer, &mut interrupting(&sealed), &mut out).expect("open_stream");
    assert_eq!(out, data);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prop_round_trip(data in proptest::collection::vec(any::<u8>(), 0..12_000), seed: u64, step in 1usize..3000) {
        let chunk = kib_chunks();
        let (pointer, sealed) = sealed_with(seed, &data, chunk);
        prop_assert_eq!(attachment::open(&pointer, &sealed).expect("open"), data.clone());
        let mut out = Vec::new();
        attachment::open_stream(&pointer, &mut Trickle::new(&sealed, step), &mut out).expect("open_stream");
        prop_assert_eq!(&out, &data);
        let mut streamed = Vec::new();
        attachment::seal_stream(&mut rng(seed), &mut Trickle::new(&data, step), &mut streamed, meta(chunk)).expect("seal_stream");
        prop_assert_eq!(&streamed, &sealed);
        let mut buffer = data.clone();
        let in_place = attachment::seal_in_place(&mut rng(seed), &mut buffer, meta(chunk)).expect("seal_in_place");
        prop_assert_eq!(&buffer, &sealed);
        prop_assert_eq!(in_place.root(), pointer.root());
        prop_assert_eq!(attachment::open_in_place(&pointer, buffer).expect("open_in_place"), data);
    }

    #[test]
    fn prop_random_access_equals_the_slice(
        len in 0usize..20_000,
        seed: u64,
        ranges in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..8),
    ) {
        let data: Vec<u8> = {
            let mut r = rng(seed ^ 0xdead);
            let mut d = vec![0u8; len];
            rand_core::Rng::fill_bytes(&mut r, &mut d);
            d
        };
        let (pointer, sealed) = sealed_with(seed, &data, kib_chunks());
        let access = RandomAccess::new(&pointer, &sealed[..PREFIX_LEN], sealed.len() as u64).expect("access");
        for (a, b) in ranges {
            let (mut lo, mut hi) = (a.index(len + 1), b.index(len + 1));
            if lo > hi { std::mem::swap(&mut lo, &mut hi); }
            let expected = &data[lo..hi];
            // Sans-IO plan + decrypt.
            let plan = access.plan(lo as u64..hi as u64).expect("plan");
            let start = plan.sealed_offset() as usize;
            let mut fetched = sealed[start..start + plan.sealed_len() as usize].to_vec();
            let hashes = hashes_for(&plan, &sealed);
            prop_assert_eq!(access.decrypt(&plan, &mut fetched, &hashes).expect("decrypt"), expected);
            // Read-at callback, recording what was fetched: only the touched chunks and
            // their hashes.
            let mut fetched_bytes = 0u64;
            let got = access.read_range(lo as u64..hi as u64, |offset, buf| {
                fetched_bytes += buf.len() as u64;
                let o = offset as usize;
                buf.copy_from_slice(&sealed[o..o + buf.len()]);
                Ok(())
            }).expect("read_range");
            prop_assert_eq!(&got[..], expected);
            prop_assert_eq!(fetched_bytes, plan.fetched_len());
            #[cfg(feature = "parallel")]
            {
                let got = access.read_range_parallel(lo as u64..hi as u64, |offset, buf| {
                    let o = offset as usize;
                    buf.copy_from_slice(&sealed[o..o + buf.len()]);
                    Ok(())
                }).expect("read_range_parallel");
                prop_assert_eq!(&got[..], expected);
            }
        }
    }
}

#[test]
fn random_access_fetches_only_the_touched_chunks() {
    let chunk = kib_chunks();
    let data = pattern(10 * 1024);
    let (pointer, sealed) = sealed_with(11, &data, chunk);
    let access =
        RandomAccess::new(&pointer, &sealed[..PREFIX_LEN], sealed.len() as u64).expect("access");
    let plan = access.plan(3000..5000).expect("plan");
    assert_eq!(plan.chunks(), 2..5);
    assert_eq!(plan.sealed_offset(), (PREFIX_LEN + 2 * 1040) as u64);
    assert_eq!(plan.sealed_len(), 3 * 1040);
    // Ten chunks; levels of 10, 5, 3, 2 and 1 nodes. Chunks 2..=4 need: leaves 2..=5 (the
    // window and its right neighbour) at level 0; nodes 0 and 3 at level 1 (beside the
    // computed 1 and 2); nothing at level 2 (nodes 0 and 1 are computed); node 1 (leaves
    // 8..=9) at level 3. Levels start after 10, 15 and 18 nodes.
    let tree = access.layout().tree_offset();
    assert_eq!(
        plan.hash_ranges(),
        &[
            tree + 2 * 32..tree + 6 * 32,
            tree + 10 * 32..tree + 11 * 32,
            tree + 13 * 32..tree + 14 * 32,
            tree + 19 * 32..tree + 20 * 32,
        ]
    );
    assert_eq!(plan.hashes_len(), 7 * 32);
    let empty = access.plan(500..500).expect("plan");
    assert_eq!(empty.sealed_len(), 0);
    assert!(empty.hash_ranges().is_empty());
    assert!(
        access
            .decrypt(&empty, &mut [], &[])
            .expect("empty")
            .is_empty()
    );
    assert!(matches!(
        access.plan(0..10 * 1024 + 1),
        Err(E::InvalidRange { .. })
    ));
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = access.plan(10..5);
    assert!(matches!(reversed, Err(E::InvalidRange { .. })));
    // A buffer of the wrong size is refused.
    let mut short = vec![0u8; 10];
    assert!(matches!(
        access.decrypt(&plan, &mut short, &hashes_for(&plan, &sealed)),
        Err(E::InvalidRange { .. })
    ));
    // And so are hashes of the wrong size.
    let start = plan.sealed_offset() as usize;
    let mut fetched = sealed[start..start + plan.sealed_len() as usize].to_vec();
    let hashes = hashes_for(&plan, &sealed);
    assert!(matches!(
        access.decrypt(&plan, &mut fetched, &hashes[..hashes.len() - 1]),
        Err(E::InvalidRange { .. })
    ));
}

/// The issue's figure: a 64 KiB range of a 1 GiB file (64 KiB chunks: 16,384 chunks, a
/// tree of 15 levels) fetches its chunk with its 16-byte tag, and 15 hashes: its leaf and its
/// neighbour's on level 0, one node on each of levels 1 to 13. 496 bytes beyond the
/// plaintext (and the 70-byte prefix once per `RandomAccess`), counted by hand from
/// docs/PROTOCOL.md 13.5.
#[test]
fn a_64_kib_range_of_a_1_gib_file_fetches_496_more_bytes() {
    let layout = Layout::new(1 << 30, ChunkSize::DEFAULT).expect("layout");
    assert_eq!(layout.chunk_count(), 16_384);
    let start = 65_536 * 10_000;
    let plan = layout.plan(start..start + 65_536).expect("plan");
    assert_eq!(plan.chunks(), 10_000..10_001);
    assert_eq!(plan.sealed_len(), 65_536 + 16);
    assert_eq!(
        plan.hash_ranges().len(),
        14,
        "one read on level 0, one per level above"
    );
    assert_eq!(
        plan.hash_ranges()[0].end - plan.hash_ranges()[0].start,
        2 * 32
    );
    assert_eq!(plan.hashes_len(), 15 * 32);
    assert_eq!(plan.fetched_len() - 65_536, 496);
    // Across a chunk boundary: both chunks (10,000 and 10,001, siblings), no neighbour on
    // level 0, one node on each level above.
    let plan = layout
        .plan(start + 1000..start + 1000 + 65_536)
        .expect("plan");
    assert_eq!(plan.chunks(), 10_000..10_002);
    assert_eq!(plan.fetched_len(), 2 * (65_536 + 16) + 15 * 32);
}

// ---------------------------------------------------------------------------------------
// Attacks: every bit of the header and commitment

#[test]
fn every_header_bit_flip_is_caught_before_decryption() {
    let (pointer, sealed) = sealed_with(21, &pattern(3000), kib_chunks());
    for byte in 0..HEADER_LEN {
        for bit in 0..8 {
            let mut bad = sealed.clone();
            bad[byte] ^= 1 << bit;
            let expected = match byte {
                0..=3 => "MalformedHeader",
                4 => "UnsupportedVersion",
                5 => match bad[5] {
                    10..=20 => "CommitmentMismatch",
                    _ => "MalformedHeader",
                },
                _ => "CommitmentMismatch",
            };
            let (memory, streaming) = open_all(&pointer, &bad);
            for result in [memory, streaming] {
                let e = result.expect_err("tampered header");
                assert_eq!(error_name(&e), expected, "byte {byte} bit {bit}: {e:?}");
            }
            let ra = RandomAccess::new(&pointer, &bad[..PREFIX_LEN], bad.len() as u64);
            assert_eq!(error_name(&ra.expect_err("tampered")), expected);
        }
    }
}

#[test]
fn every_commitment_bit_flip_is_caught() {
    let (pointer, sealed) = sealed_with(22, &pattern(100), kib_chunks());
    for byte in HEADER_LEN..PREFIX_LEN {
        for bit in 0..8 {
            let mut bad = sealed.clone();
            bad[byte] ^= 1 << bit;
            let (memory, streaming) = open_all(&pointer, &bad);
            assert!(matches!(memory, Err(E::CommitmentMismatch)), "byte {byte}");
            assert!(
                matches!(streaming, Err(E::CommitmentMismatch)),
                "byte {byte}"
            );
        }
    }
}

#[test]
fn the_wrong_pointer_is_a_commitment_mismatch() {
    let (pointer_a, _) = sealed_with(23, &pattern(2000), kib_chunks());
    let (_, sealed_b) = sealed_with(24, &pattern(2000), kib_chunks());
    let (memory, streaming) = open_all(&pointer_a, &sealed_b);
    assert!(matches!(memory, Err(E::CommitmentMismatch)));
    assert!(matches!(streaming, Err(E::CommitmentMismatch)));
}

// ---------------------------------------------------------------------------------------
// Attacks on chunks, tags and padding

#[test]
fn bit_flips_anywhere_in_a_chunk_name_that_chunk() {
    let chunk = kib_chunks();
    // 3000 bytes -> 3072 padded: chunk 2 holds 952 plaintext bytes and 72 padding bytes.
    let (pointer, sealed) = sealed_with(31, &pattern(3000), chunk);
    let layout = layout_of(&pointer, chunk);
    for index in 0..layout.chunk_count() {
        let (start, end) = chunk_bounds(&layout, index);
        // First, middle and last ciphertext byte, the padding region of the last chunk, and
        // every bit of every tag byte. The chunk's hash no longer matches its verified leaf:
        // caught before it is decrypted.
        let mut positions = vec![start, (start + end - 16) / 2, end - 17];
        if index == 2 {
            positions.extend([start + 952, start + 1000, end - 17]);
        }
        let tag_bits: Vec<(usize, u8)> = (end - 16..end)
            .flat_map(|p| (0..8).map(move |b| (p, b)))
            .collect();
        for (pos, bit) in positions.into_iter().map(|p| (p, 0)).chain(tag_bits) {
            let mut bad = sealed.clone();
            bad[pos] ^= 1 << bit;
            let (memory, streaming) = open_all(&pointer, &bad);
            for e in [memory.expect_err("flip"), streaming.expect_err("flip")] {
                assert!(
                    matches!(e, E::ChunkNotCommitted { index: i } if i == index),
                    "pos {pos}: {e:?}"
                );
            }
        }
    }
}

#[test]
fn dropped_chunks_are_caught() {
    let chunk = kib_chunks();
    let (pointer, sealed) = sealed_with(32, &pattern(4000), chunk);
    let layout = layout_of(&pointer, chunk);
    let n = layout.chunk_count();
    assert_eq!(n, 4);
    for index in 0..n {
        let (start, end) = chunk_bounds(&layout, index);
        let mut bad = sealed.clone();
        bad.drain(start..end);
        // Every opener knows the length before reading a chunk (streams seek to the end).
        let (memory, streaming) = open_all(&pointer, &bad);
        for e in [memory, streaming] {
            assert!(
                matches!(e, Err(E::LengthMismatch { expected, found })
                    if expected == sealed.len() as u64 && found == bad.len() as u64),
                "{e:?}"
            );
        }
        // Dropped and the stored tree shifted back into place so that the length is right:
        // the next chunk sits in the dropped one's place and is not the one committed there.
        if index + 1 < n {
            let mut shifted = bad.clone();
            shifted.splice(
                layout.tree_offset() as usize - (end - start)
                    ..layout.tree_offset() as usize - (end - start),
                sealed[chunk_bounds(&layout, n - 1).0..chunk_bounds(&layout, n - 1).1].to_vec(),
            );
            assert_eq!(shifted.len(), sealed.len());
            let (memory, streaming) = open_all(&pointer, &shifted);
            for e in [memory.expect_err("drop"), streaming.expect_err("drop")] {
                assert!(
                    matches!(e, E::ChunkNotCommitted { index: i } if i == index),
                    "{e:?}"
                );
            }
        }
    }
}

#[test]
fn duplicated_chunks_are_caught() {
    let chunk = kib_chunks();
    let (pointer, sealed) = sealed_with(33, &pattern(4000), chunk);
    let layout = layout_of(&pointer, chunk);
    let n = layout.chunk_count();
    for index in 0..n {
        let (start, end) = chunk_bounds(&layout, index);
        let mut bad = sealed.clone();
        let copy = sealed[start..end].to_vec();
        bad.splice(end..end, copy);
        let (memory, streaming) = open_all(&pointer, &bad);
        assert!(
            matches!(memory, Err(E::LengthMismatch { .. })),
            "{memory:?}"
        );
        assert!(
            matches!(streaming, Err(E::LengthMismatch { .. })),
            "{streaming:?}"
        );
        // Duplicating a chunk over the next one keeps the length: caught at that position.
        if index + 2 < n {
            let mut same_len = sealed.clone();
            let (ns, ne) = chunk_bounds(&layout, index + 1);
            same_len[ns..ne].copy_from_slice(&sealed[start..end]);
            let (memory, streaming) = open_all(&pointer, &same_len);
            for e in [memory.expect_err("dup"), streaming.expect_err("dup")] {
                assert!(
                    matches!(e, E::ChunkNotCommitted { index: i } if i == index + 1),
                    "{e:?}"
                );
            }
        }
    }
}

#[test]
fn reordered_chunks_are_caught() {
    let chunk = kib_chunks();
    let (pointer, sealed) = sealed_with(34, &pattern(5 * 1024), chunk);
    let layout = layout_of(&pointer, chunk);
    // Chunks 0..4 are full 1 KiB chunks; chunk 5 would not exist (5 KiB pads to 5 KiB).
    assert_eq!(layout.chunk_count(), 5);
    for (a, b) in [(0u64, 1u64), (1, 3), (0, 4), (3, 4)] {
        let mut bad = sealed.clone();
        let (sa, ea) = chunk_bounds(&layout, a);
        let (sb, eb) = chunk_bounds(&layout, b);
        let ca = sealed[sa..ea].to_vec();
        bad[sa..ea].copy_from_slice(&sealed[sb..eb]);
        bad[sb..eb].copy_from_slice(&ca);
        let (memory, streaming) = open_all(&pointer, &bad);
        for e in [memory.expect_err("swap"), streaming.expect_err("swap")] {
            assert!(
                matches!(e, E::ChunkNotCommitted { index } if index == a),
                "{e:?}"
            );
        }
        // The stored leaves swapped too, so that they match the chunks: the tree no longer
        // leads to the root (a leaf binds its position).
        let leaves = layout.tree_offset() as usize;
        let (la, lb) = (leaves + a as usize * 32, leaves + b as usize * 32);
        let leaf_a = bad[la..la + 32].to_vec();
        bad.copy_within(lb..lb + 32, la);
        bad[lb..lb + 32].copy_from_slice(&leaf_a);
        let (memory, streaming) = open_all(&pointer, &bad);
        for e in [memory.expect_err("swap"), streaming.expect_err("swap")] {
            assert!(matches!(e, E::RootMismatch), "{e:?}");
        }
    }
}

#[test]
fn truncation_anywhere_is_caught() {
    let chunk = kib_chunks();
    let (pointer, sealed) = sealed_with(35, &pattern(3000), chunk);
    let layout = layout_of(&pointer, chunk);
    for cut in [
        0,
        1,
        HEADER_LEN,
        PREFIX_LEN - 1,
        PREFIX_LEN,
        PREFIX_LEN + 1,
        PREFIX_LEN + 1040,
        PREFIX_LEN + 2 * 1040,
        layout.tree_offset() as usize,
        layout.tree_offset() as usize + 32,
        sealed.len() - 17,
        sealed.len() - 1,
    ] {
        let bad = &sealed[..cut];
        let (memory, streaming) = open_all(&pointer, bad);
        for result in [memory, streaming] {
            if cut < PREFIX_LEN {
                let m = (PREFIX_LEN - cut) as u64;
                assert!(
                    matches!(result, Err(E::Truncated { missing }) if missing == m),
                    "cut {cut}: {result:?}"
                );
            } else {
                assert!(
                    matches!(result, Err(E::LengthMismatch { found, .. }) if found == cut as u64),
                    "cut {cut}: {result:?}"
                );
            }
        }
    }
}

#[test]
fn appended_bytes_are_caught() {
    let (pointer, sealed) = sealed_with(36, &pattern(3000), kib_chunks());
    for extra in [1usize, 16, 32, 1040] {
        let mut bad = sealed.clone();
        bad.extend(std::iter::repeat_n(0u8, extra));
        let (memory, streaming) = open_all(&pointer, &bad);
        assert!(matches!(memory, Err(E::LengthMismatch { .. })));
        assert!(
            matches!(streaming, Err(E::LengthMismatch { .. })),
            "{streaming:?}"
        );
        let ra = RandomAccess::new(&pointer, &bad[..PREFIX_LEN], bad.len() as u64);
        assert!(matches!(ra, Err(E::LengthMismatch { .. })));
    }
}

#[test]
fn chunks_spliced_from_another_file_are_caught() {
    let chunk = kib_chunks();
    let (pointer_a, sealed_a) = sealed_with(37, &pattern(4000), chunk);
    let (_, sealed_b) = sealed_with(38, &pattern(4000), chunk);
    // Even a file sealed under the same file key (a key reuse that `seal` never makes) but
    // with its own salt.
    let mut same_key = pointer_a.file_key().as_bytes().to_vec();
    same_key.extend([0x55u8; 32]);
    let (_, sealed_c) =
        attachment::seal(&mut FixedRng(same_key), &pattern(4000), meta(chunk)).expect("seal");
    let layout = layout_of(&pointer_a, chunk);
    for other in [&sealed_b, &sealed_c] {
        for index in 0..layout.chunk_count() {
            let (s, e) = chunk_bounds(&layout, index);
            let mut bad = sealed_a.clone();
            bad[s..e].copy_from_slice(&other[s..e]);
            let (memory, streaming) = open_all(&pointer_a, &bad);
            for err in [memory.expect_err("splice"), streaming.expect_err("splice")] {
                assert!(
                    matches!(err, E::ChunkNotCommitted { index: i } if i == index),
                    "{err:?}"
                );
            }
            // With its stored tree recomputed to match, the tree misses the root.
            let bad = with_tree_of_its_chunks(&layout, bad);
            let (memory, streaming) = open_all(&pointer_a, &bad);
            for err in [memory.expect_err("splice"), streaming.expect_err("splice")] {
                assert!(matches!(err, E::RootMismatch), "{err:?}");
            }
        }
    }
}

#[test]
fn a_root_that_does_not_match_is_caught_before_any_chunk_is_released() {
    let (pointer, sealed) = sealed_with(39, &pattern(2500), kib_chunks());
    let mut root = *pointer.root();
    root[31] ^= 0x80;
    let forged = with_root(&pointer, &root);
    let (memory, streaming) = open_all(&forged, &sealed);
    assert!(matches!(memory, Err(E::RootMismatch)), "{memory:?}");
    assert!(matches!(streaming, Err(E::RootMismatch)), "{streaming:?}");
    let mut opener = StreamOpener::new(&forged, Cursor::new(&sealed)).expect("prefix");
    assert!(matches!(opener.next_chunk(), Err(E::RootMismatch)));
    let mut seekable = SeekableOpener::new(&forged, Cursor::new(&sealed)).expect("prefix");
    assert!(matches!(seekable.read_range(0..10), Err(E::RootMismatch)));
    let (result, buffer) = decrypt_range(&forged, &sealed, 1000..1100);
    assert!(matches!(result, Err(E::RootMismatch)), "{result:?}");
    assert_eq!(buffer.len(), 2 * 1040);
    assert!(buffer.iter().all(|&b| b == 0), "nothing left in the buffer");
}

// ---------------------------------------------------------------------------------------
// Progressive release

#[test]
fn progressive_release_stops_at_the_first_bad_chunk_and_never_retracts() {
    let chunk = kib_chunks();
    let data = pattern(4 * 1024);
    let (pointer, mut sealed) = sealed_with(41, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    let (s, _) = chunk_bounds(&layout, 2);
    sealed[s + 5] ^= 1;
    let mut opener = StreamOpener::new(&pointer, Cursor::new(&sealed)).expect("prefix is fine");
    assert_eq!(
        opener.next_chunk().expect("chunk 0").expect("data"),
        &data[..1024]
    );
    assert_eq!(
        opener.next_chunk().expect("chunk 1").expect("data"),
        &data[1024..2048]
    );
    assert!(matches!(
        opener.next_chunk(),
        Err(E::ChunkNotCommitted { index: 2 })
    ));
    // Nothing more is released after a failure, not even the intact chunk 3.
    assert!(matches!(opener.next_chunk(), Err(E::StreamFailed)));
}

#[test]
fn a_truncated_stream_is_refused_before_anything_is_released() {
    let chunk = kib_chunks();
    let data = pattern(3 * 1024);
    let (pointer, sealed) = sealed_with(42, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    let (_, end_of_1) = chunk_bounds(&layout, 1);
    // The opener finds the length first: a short file is refused at once.
    assert!(matches!(
        StreamOpener::new(&pointer, Cursor::new(&sealed[..end_of_1])),
        Err(E::LengthMismatch { found, .. }) if found == end_of_1 as u64
    ));
}

/// A source whose reads of bytes `fail.start..fail.end` fail (a connection that drops while
/// fetching those chunks).
struct Dropping<'a> {
    inner: Cursor<&'a [u8]>,
    fail: std::ops::Range<u64>,
}

impl Read for Dropping<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let position = self.inner.position();
        if self.fail.contains(&position) {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "dropped"));
        }
        let n = if position < self.fail.start {
            buf.len().min((self.fail.start - position) as usize)
        } else {
            buf.len()
        };
        self.inner.read(&mut buf[..n])
    }
}

impl Seek for Dropping<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

#[test]
fn a_stream_that_drops_releases_verified_chunks_then_fails() {
    let chunk = kib_chunks();
    let data = pattern(3 * 1024);
    let (pointer, sealed) = sealed_with(42, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    let (_, end_of_1) = chunk_bounds(&layout, 1);
    let source = Dropping {
        inner: Cursor::new(&sealed),
        fail: end_of_1 as u64 + 10..layout.tree_offset(),
    };
    let mut opener = StreamOpener::new(&pointer, source).expect("prefix");
    let mut released = Vec::new();
    let err = loop {
        match opener.next_chunk() {
            Ok(Some(p)) => released.extend_from_slice(p),
            Ok(None) => panic!("a dropped stream must not end successfully"),
            Err(e) => break e,
        }
    };
    assert_eq!(released, &data[..2048]);
    assert!(
        matches!(err, E::Io(ref e) if e.kind() == io::ErrorKind::ConnectionReset),
        "{err:?}"
    );
}

#[test]
fn a_stream_that_drops_in_any_batch_releases_every_chunk_before_the_drop() {
    // 60 chunks of 1 KiB: four batches of 16 for the parallel opener, whose reading of a
    // batch overlaps the decryption of the one before and the writing of the one before
    // that. The chunks read completely before the drop are verified and released, by both
    // openers, then the source's error.
    let chunk = kib_chunks();
    let data = pattern(60 * 1024 - 100);
    let (pointer, sealed) = sealed_with(86, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    assert_eq!(layout.chunk_count(), 60);
    for index in [0u64, 1, 15, 16, 17, 37, 59] {
        let (start, _) = chunk_bounds(&layout, index);
        let fail = start as u64 + 10..layout.tree_offset();
        #[cfg_attr(not(feature = "parallel"), allow(unused_mut))]
        let mut results = vec![("open_stream", {
            let mut out = Vec::new();
            let source = &mut Dropping {
                inner: Cursor::new(&sealed),
                fail: fail.clone(),
            };
            (attachment::open_stream(&pointer, source, &mut out), out)
        })];
        #[cfg(feature = "parallel")]
        results.push(("open_stream_parallel", {
            let mut out = Vec::new();
            let source = &mut Dropping {
                inner: Cursor::new(&sealed),
                fail: fail.clone(),
            };
            (
                attachment::open_stream_parallel(&pointer, source, &mut out),
                out,
            )
        }));
        for (function, (result, written)) in results {
            assert!(
                matches!(result, Err(E::Io(ref e)) if e.kind() == io::ErrorKind::ConnectionReset),
                "{function}, drop in chunk {index}: {result:?}"
            );
            assert!(
                written == data[..index as usize * 1024],
                "{function}, drop in chunk {index}: {} bytes written",
                written.len()
            );
        }
    }
}

/// Accepts `left` bytes, then fails.
struct FullDisk {
    left: usize,
}

impl io::Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("the disk is full"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that panics where a [`FullDisk`] fails.
#[cfg(feature = "parallel")]
struct PanickingWriter(FullDisk);

#[cfg(feature = "parallel")]
impl io::Write for PanickingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(self.0.write(buf).expect("the writer panics"))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that panics on one of the pool's threads stops the parallel streams: the panic
/// reaches the caller, and no other thread waits forever for the panicking one's turn.
#[cfg(feature = "parallel")]
#[test]
fn a_panicking_writer_reaches_the_caller_of_a_parallel_stream() {
    use std::sync::mpsc;
    use std::time::Duration;

    let chunk = kib_chunks();
    let data = pattern(60 * 1024 - 100);
    let (pointer, sealed) = sealed_with(88, &data, chunk);
    for left in [500usize, 20_000, 40_000] {
        let (done, finished) = mpsc::channel();
        let (data, pointer, sealed) = (data.clone(), pointer.clone(), sealed.clone());
        std::thread::spawn(move || {
            let sealing = std::panic::catch_unwind(|| {
                attachment::seal_stream_parallel(
                    &mut rng(88),
                    &mut &data[..],
                    &mut PanickingWriter(FullDisk { left }),
                    meta(chunk),
                )
                .map(drop)
            });
            let opening = std::panic::catch_unwind(|| {
                attachment::open_stream_parallel(
                    &pointer,
                    &mut Cursor::new(&sealed),
                    &mut PanickingWriter(FullDisk { left }),
                )
                .map(drop)
            });
            done.send((sealing.is_err(), opening.is_err()))
                .expect("send");
        });
        let panicked = finished
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!("a parallel stream hung after its writer panicked ({left})")
            });
        assert_eq!(panicked, (true, true), "{left} bytes before the panic");
    }
}

fn is_full_disk(result: &Result<impl std::fmt::Debug, E>) -> bool {
    matches!(result, Err(E::Io(e)) if e.to_string() == "the disk is full")
}

#[test]
fn a_failing_writer_stops_every_stream_with_its_error() {
    let chunk = kib_chunks();
    let data = pattern(60 * 1024 - 100);
    let (pointer, sealed) = sealed_with(87, &data, chunk);
    // In the prefix, in the first chunk, in a later batch, in the tree.
    for left in [10usize, 500, 40_000, sealed.len() - 5] {
        let result = attachment::seal_stream(
            &mut rng(87),
            &mut &data[..],
            &mut FullDisk { left },
            meta(chunk),
        );
        assert!(is_full_disk(&result), "seal_stream, {left}: {result:?}");
        let result =
            attachment::open_stream(&pointer, &mut Cursor::new(&sealed), &mut FullDisk { left });
        assert!(
            left >= data.len() || is_full_disk(&result),
            "open_stream, {left}: {result:?}"
        );
        #[cfg(feature = "parallel")]
        {
            let result = attachment::seal_stream_parallel(
                &mut rng(87),
                &mut &data[..],
                &mut FullDisk { left },
                meta(chunk),
            );
            assert!(
                is_full_disk(&result),
                "seal_stream_parallel, {left}: {result:?}"
            );
            let result = attachment::open_stream_parallel(
                &pointer,
                &mut Cursor::new(&sealed),
                &mut FullDisk { left },
            );
            assert!(
                left >= data.len() || is_full_disk(&result),
                "open_stream_parallel, {left}: {result:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// A holder of the file key forges a chunk (issue 13)
//
// Every recipient holds the file key, so any of them (or a server given the pointer) can
// derive the payload key and encrypt a chunk of their choosing that authenticates at any
// position. Only the root in the pointer decides which chunk bytes are genuine: every path
// must refuse the forged chunk before releasing a byte of it. Two forgeries: the stored
// tree left as it was (the forged chunk's hash differs from its verified leaf:
// `ChunkNotCommitted`), and the stored tree recomputed over the forged chunks (the tree no
// longer leads to the pointer's root: `RootMismatch`).

/// The payload key of `sealed`, derived from the pointer's file key as docs/PROTOCOL.md
/// section 13 says (HKDF-SHA256, salt from the header, info = label || header).
fn payload_cipher(pointer: &AttachmentPointer, sealed: &[u8]) -> aes_gcm::Aes256Gcm {
    use aes_gcm::KeyInit;
    let header = &sealed[..HEADER_LEN];
    let hkdf = hkdf::Hkdf::<Sha256>::new(Some(&header[6..]), pointer.file_key().as_bytes());
    let mut key = [0u8; 32];
    hkdf.expand_multi_info(&[b"ratchetbox v1 attachment payload key", header], &mut key)
        .expect("32 bytes");
    aes_gcm::Aes256Gcm::new(&key.into())
}

/// `sealed` with chunk `index` (a full chunk of plaintext) re-encrypted to `fill` bytes
/// under the file's own payload key, at its own position: a chunk that authenticates.
fn forge_chunk(
    pointer: &AttachmentPointer,
    layout: &Layout,
    sealed: &[u8],
    index: u64,
    fill: u8,
) -> Vec<u8> {
    use aes_gcm::aead::AeadInOut;
    let (start, end) = chunk_bounds(layout, index);
    assert_eq!(
        layout.chunk_size().bytes(),
        end - start - 16,
        "a full chunk"
    );
    let mut payload = vec![fill; end - start - 16];
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(index + 1 == layout.chunk_count());
    let tag = payload_cipher(pointer, sealed)
        .encrypt_inout_detached(&nonce.into(), &[], payload.as_mut_slice().into())
        .expect("encrypts");
    let mut forged = sealed.to_vec();
    forged[start..end - 16].copy_from_slice(&payload);
    forged[end - 16..end].copy_from_slice(&tag);
    forged
}

/// A 3-chunk file (3000 bytes in 1 KiB chunks) and its two forgeries of chunk 1, each with
/// the error every path must give: stored tree kept, stored tree recomputed.
struct Forgery {
    pointer: AttachmentPointer,
    data: Vec<u8>,
    forged: Vec<(&'static str, Vec<u8>)>,
}

const FORGED_FILL: u8 = 0xEE;

fn forgery() -> Forgery {
    let chunk = kib_chunks();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let (pointer, sealed) = sealed_with(131, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    let kept = forge_chunk(&pointer, &layout, &sealed, 1, FORGED_FILL);
    let recomputed = with_tree_of_its_chunks(&layout, kept.clone());
    // The forgery is real: under a pointer committing to it, it opens to the forged bytes.
    let committed = with_root(&pointer, &root_of(&layout, &recomputed));
    let opened = attachment::open(&committed, &recomputed).expect("the forged chunk authenticates");
    assert_eq!(&opened[1024..2048], &[FORGED_FILL; 1024]);
    Forgery {
        pointer,
        data,
        forged: vec![("ChunkNotCommitted", kept), ("RootMismatch", recomputed)],
    }
}

/// Asserts the error a path gave for a forgery: its name, and chunk 1 for a chunk error.
fn assert_forgery_refused(path: &str, expected: &str, result: Result<impl std::fmt::Debug, E>) {
    let e = result.expect_err(path);
    assert_eq!(error_name(&e), expected, "{path}: {e:?}");
    if expected == "ChunkNotCommitted" {
        assert_eq!(error_index(&e), Some(1), "{path}");
    }
}

/// No byte of the forged chunk was released: `released` is a prefix of the genuine data
/// that ends before chunk 1.
fn assert_nothing_forged(path: &str, data: &[u8], released: &[u8]) {
    assert!(
        released.len() <= 1024,
        "{path}: {} bytes released",
        released.len()
    );
    assert_eq!(released, &data[..released.len()], "{path}");
}

#[test]
fn a_key_holder_cannot_forge_a_chunk_for_open() {
    let f = forgery();
    for (expected, forged) in &f.forged {
        assert_forgery_refused("open", expected, attachment::open(&f.pointer, forged));
    }
}

#[cfg(feature = "parallel")]
#[test]
fn a_key_holder_cannot_forge_a_chunk_for_open_parallel() {
    let f = forgery();
    for (expected, forged) in &f.forged {
        assert_forgery_refused(
            "open_parallel",
            expected,
            attachment::open_parallel(&f.pointer, forged),
        );
    }
}

#[test]
fn a_key_holder_cannot_forge_a_chunk_for_open_in_place() {
    let f = forgery();
    for (expected, forged) in &f.forged {
        assert_forgery_refused(
            "open_in_place",
            expected,
            attachment::open_in_place(&f.pointer, forged.clone()),
        );
    }
}

#[cfg(feature = "parallel")]
#[test]
fn a_key_holder_cannot_forge_a_chunk_for_open_in_place_parallel() {
    let f = forgery();
    for (expected, forged) in &f.forged {
        assert_forgery_refused(
            "open_in_place_parallel",
            expected,
            attachment::open_in_place_parallel(&f.pointer, forged.clone()),
        );
    }
}

#[test]
fn a_key_holder_cannot_forge_a_chunk_for_the_stream_opener() {
    let f = forgery();
    for (expected, forged) in &f.forged {
        let mut opener = StreamOpener::new(&f.pointer, Cursor::new(forged)).expect("prefix");
        let mut released = Vec::new();
        let result = loop {
            match opener.next_chunk() {
                Ok(Some(plaintext)) => released.extend_from_slice(plaintext),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        assert_forgery_refused("StreamOpener", expected, result);
        assert_nothing_forged("StreamOpener", &f.data, &released);
        if *expected == "ChunkNotCommitted" {
            // The genuine chunk 0 was released before: release is progressive.
            assert_eq!(released, &f.data[..1024]);
        } else {
            // The tree is checked before chunk 0: nothing at all.
            assert!(released.is_empty());
        }
    }
}

#[test]
fn a_key_holder_cannot_forge_a_chunk_for_open_stream() {
    let f = forgery();
    for (expected, forged) in &f.forged {
        let mut out = Vec::new();
        let result = attachment::open_stream(&f.pointer, &mut Cursor::new(forged), &mut out);
        assert_forgery_refused("open_stream", expected, result);
        assert_nothing_forged("open_stream", &f.data, &out);
    }
}

#[cfg(feature = "parallel")]
#[test]
fn a_key_holder_cannot_forge_a_chunk_for_open_stream_parallel() {
    let f = forgery();
    for (expected, forged) in &f.forged {
        let mut out = Vec::new();
        let result =
            attachment::open_stream_parallel(&f.pointer, &mut Cursor::new(forged), &mut out);
        assert_forgery_refused("open_stream_parallel", expected, result);
        assert_nothing_forged("open_stream_parallel", &f.data, &out);
    }
}

/// The ranges a random-access path is asked for: chunk 1 alone, across it, and all.
const FORGED_RANGES: [std::ops::Range<u64>; 3] = [1024..2048, 1000..1100, 0..3000];

#[test]
fn a_key_holder_cannot_forge_a_chunk_for_read_range() {
    let f = forgery();
    for (expected, forged) in &f.forged {
        let access = RandomAccess::new(&f.pointer, &forged[..PREFIX_LEN], forged.len() as u64)
            .expect("prefix");
        for range in FORGED_RANGES {
            let result = access.read_range(range, |offset, buf| {
                buf.copy_from_slice(&forged[offset as usize..offset as usize + buf.len()]);
                Ok(())
            });
            assert_forgery_refused("read_range", expected, result);
        }
    }
}

#[test]
fn a_key_holder_cannot_forge_a_chunk_for_decrypt() {
    let f = forgery();
    for (expected, forged) in &f.forged {
        for range in FORGED_RANGES {
            let (result, buffer) = decrypt_range(&f.pointer, forged, range.clone());
            assert_forgery_refused("decrypt", expected, result);
            assert!(
                buffer.iter().all(|&b| b == 0),
                "decrypt {range:?}: buffer not wiped"
            );
        }
    }
}

#[test]
fn a_key_holder_cannot_forge_a_chunk_for_the_seekable_opener() {
    let f = forgery();
    for (expected, forged) in &f.forged {
        let mut opener = SeekableOpener::new(&f.pointer, Cursor::new(forged)).expect("prefix");
        for range in FORGED_RANGES {
            assert_forgery_refused("SeekableOpener", expected, opener.read_range(range));
        }
    }
}

#[cfg(feature = "parallel")]
#[test]
fn a_key_holder_cannot_forge_a_chunk_for_read_range_parallel() {
    let f = forgery();
    for (expected, forged) in &f.forged {
        let access = RandomAccess::new(&f.pointer, &forged[..PREFIX_LEN], forged.len() as u64)
            .expect("prefix");
        for range in FORGED_RANGES {
            let result = access.read_range_parallel(range, |offset, buf| {
                buf.copy_from_slice(&forged[offset as usize..offset as usize + buf.len()]);
                Ok(())
            });
            assert_forgery_refused("read_range_parallel", expected, result);
        }
    }
}

#[test]
fn a_forged_chunk_past_the_first_window_of_leaves_is_refused_by_the_streams() {
    // 2112 chunks (2112 KiB needs no padding): the streaming openers verify leaves 1024 at
    // a time; forge chunk 1500, in the second window, and chunk 2111, the last (in the
    // third).
    let chunk = kib_chunks();
    let data: Vec<u8> = (0..2112 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (pointer, sealed) = sealed_with(132, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    assert_eq!(layout.chunk_count(), 2112);
    for index in [1500u64, 2111] {
        let forged = forge_chunk(&pointer, &layout, &sealed, index, FORGED_FILL);
        let recomputed = with_tree_of_its_chunks(&layout, forged.clone());
        let start = index as usize * 1024;
        for (expected, file) in [
            ("ChunkNotCommitted", &forged),
            ("RootMismatch", &recomputed),
        ] {
            for (function, result, written) in open_streams_into(&pointer, file) {
                let e = result.expect_err(function);
                assert_eq!(error_name(&e), expected, "{function} chunk {index}: {e:?}");
                assert!(written.len() <= start, "{function}: forged bytes written");
                assert_eq!(written, &data[..written.len()], "{function}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random access under attack

#[test]
fn random_access_verifies_the_chunks_it_reads() {
    let chunk = kib_chunks();
    let data = pattern(8 * 1024);
    let (pointer, mut sealed) = sealed_with(51, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    let (s, _) = chunk_bounds(&layout, 5);
    sealed[s + 100] ^= 4;
    let mut opener = SeekableOpener::new(&pointer, Cursor::new(&sealed)).expect("prefix");
    // Ranges that avoid chunk 5 still read fine.
    assert_eq!(
        opener.read_range(0..5 * 1024).expect("before"),
        &data[..5 * 1024]
    );
    assert_eq!(
        opener.read_range(6 * 1024..8 * 1024).expect("after"),
        &data[6 * 1024..]
    );
    // Ranges that touch it fail, naming it, and return nothing.
    for range in [5 * 1024..5 * 1024 + 1, 4000..7000, 0..8 * 1024] {
        assert!(
            matches!(
                opener.read_range(range.clone()),
                Err(E::ChunkNotCommitted { index: 5 })
            ),
            "{range:?}"
        );
    }
    let access = opener.access();
    let plan = access.plan(4000..7000).expect("plan");
    let start = plan.sealed_offset() as usize;
    let mut fetched = sealed[start..start + plan.sealed_len() as usize].to_vec();
    assert!(matches!(
        access.decrypt(&plan, &mut fetched, &hashes_for(&plan, &sealed)),
        Err(E::ChunkNotCommitted { index: 5 })
    ));
    // Fetched bytes from the wrong place (chunk 4's bytes offered for chunk 5).
    let plan = access.plan(5 * 1024..5 * 1024 + 10).expect("plan");
    let (s4, e4) = chunk_bounds(&layout, 4);
    let mut wrong = sealed[s4..e4].to_vec();
    assert!(matches!(
        access.decrypt(&plan, &mut wrong, &hashes_for(&plan, &sealed)),
        Err(E::ChunkNotCommitted { index: 5 })
    ));
    // Hashes from the wrong place: they do not lead to the root.
    let mut fetched = sealed[s4 + 1040..e4 + 1040].to_vec();
    let mut hashes = hashes_for(&plan, &sealed);
    hashes.rotate_left(32);
    assert!(matches!(
        access.decrypt(&plan, &mut fetched, &hashes),
        Err(E::RootMismatch)
    ));
}

// ---------------------------------------------------------------------------------------
// Failed calls leave no plaintext behind

/// The same pointer claiming `len` plaintext bytes (a faulty sender). When `len` pads to the
/// same length, every chunk still authenticates, and the plaintext bytes from `len` on sit
/// where padding must be: non-zero padding.
fn claiming_len(pointer: &AttachmentPointer, len: u64) -> AttachmentPointer {
    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }
    let bytes = pointer.to_bytes();
    // Layout: 01 | 08 01 | 12 20 <key> | 18 <size varint> | 22 20 <digest> | ...
    assert_eq!(bytes[37], 0x18, "the size field follows the key");
    let old = varint(pointer.plaintext_len());
    assert_eq!(&bytes[38..38 + old.len()], old.as_slice());
    let mut edited = bytes[..38].to_vec();
    edited.extend(varint(len));
    edited.extend_from_slice(&bytes[38 + old.len()..]);
    let claimed = AttachmentPointer::from_bytes(&edited).expect("pointer");
    assert_eq!(claimed.plaintext_len(), len);
    claimed
}

/// Fetches the sealed bytes of `range` and decrypts them with `RandomAccess::decrypt`;
/// returns the result and the buffer as the call left it.
/// Fetches the sealed bytes of `range` and decrypts them with `RandomAccess::decrypt`;
/// returns the result and the buffer as the call left it.
fn decrypt_range(
    pointer: &AttachmentPointer,
    sealed: &[u8],
    range: std::ops::Range<u64>,
) -> (Result<Vec<u8>, E>, Vec<u8>) {
    let access =
        RandomAccess::new(pointer, &sealed[..PREFIX_LEN], sealed.len() as u64).expect("access");
    let plan = access.plan(range).expect("plan");
    let start = plan.sealed_offset() as usize;
    let mut fetched = sealed[start..start + plan.sealed_len() as usize].to_vec();
    let hashes = hashes_for(&plan, sealed);
    let result = access
        .decrypt(&plan, &mut fetched, &hashes)
        .map(<[u8]>::to_vec);
    (result, fetched)
}

fn assert_all_zero(buffer: &[u8], what: &str) {
    assert!(!buffer.is_empty(), "{what}: the call had bytes to wipe");
    if let Some(at) = buffer.iter().position(|&b| b != 0) {
        panic!(
            "{what}: byte {at} of {} is {:#04x}, the buffer must be all zero",
            buffer.len(),
            buffer[at]
        );
    }
}

#[test]
fn a_chunk_that_fails_authentication_leaves_the_random_access_buffer_all_zero() {
    let chunk = kib_chunks();
    // Bytes 1..=255, never zero: a leaked plaintext byte cannot pass for a wiped one.
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 255) as u8 + 1).collect();
    let (pointer, sealed) = sealed_with(81, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    assert_eq!(
        decrypt_range(&pointer, &sealed, 0..3000).0.expect("intact"),
        data
    );
    for bad_chunk in [2u64, 1, 0] {
        let (_, end) = chunk_bounds(&layout, bad_chunk);
        let mut bad = sealed.clone();
        bad[end - 1] ^= 1; // the chunk's tag
        // A faulty sender commits to the bad chunk: it passes the hash check and fails its
        // tag, after the chunks before it were decrypted.
        let committed = with_tree_of_its_chunks(&layout, bad.clone());
        let sender_pointer = with_root(&pointer, &root_of(&layout, &committed));
        for (pointer, file, expected) in [
            (&pointer, &bad, "ChunkNotCommitted"),
            (&sender_pointer, &committed, "ChunkAuthentication"),
        ] {
            // The whole file, a range from inside chunk 0 to inside chunk 2, and the bad
            // chunk.
            for range in [0..3000, 500..2600, bad_chunk * 1024..bad_chunk * 1024 + 10] {
                let what = format!("chunk {bad_chunk} flipped, range {range:?}, {expected}");
                let (result, buffer) = decrypt_range(pointer, file, range.clone());
                let e = result.expect_err(&what);
                assert_eq!(error_name(&e), expected, "{what}: {e:?}");
                assert_eq!(error_index(&e), Some(bad_chunk), "{what}");
                assert_all_zero(&buffer, &what);
            }
        }
    }
}

#[test]
fn bad_padding_leaves_the_random_access_buffer_all_zero() {
    let chunk = kib_chunks();
    // One chunk: 200 bytes pad to 256, and so do 199. Claiming 199 puts data[199] = 200
    // where padding must be zero.
    let small: Vec<u8> = (1..=200u8).collect();
    let (pointer, sealed) = sealed_with(82, &small, chunk);
    let (result, buffer) = decrypt_range(&claiming_len(&pointer, 199), &sealed, 0..199);
    assert!(
        matches!(result, Err(E::BadPadding { index: 0 })),
        "{result:?}"
    );
    // Before the fix, the failed chunk's plaintext was left here.
    assert_all_zero(&buffer, "one chunk with non-zero padding");

    // Three chunks: 3000 and 2999 bytes both pad to 3072; chunk 2 has the bad padding,
    // after chunks 0 and 1 verified and were decrypted into the buffer.
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 255) as u8 + 1).collect();
    let (pointer, sealed) = sealed_with(83, &data, chunk);
    let claimed = claiming_len(&pointer, 2999);
    for range in [0..2999, 1000..2100, 2048..2049] {
        let what = format!("non-zero padding in chunk 2, range {range:?}");
        let (result, buffer) = decrypt_range(&claimed, &sealed, range.clone());
        assert!(
            matches!(result, Err(E::BadPadding { index: 2 })),
            "{what}: {result:?}"
        );
        assert_all_zero(&buffer, &what);
    }
    // A range that avoids the bad chunk is served.
    assert_eq!(
        decrypt_range(&claimed, &sealed, 0..2048)
            .0
            .expect("chunks 0 and 1"),
        &data[..2048]
    );
}

#[test]
fn a_rejected_fetch_plan_leaves_the_random_access_buffer_untouched() {
    let chunk = kib_chunks();
    let data = pattern(3000);
    let (pointer, sealed) = sealed_with(84, &data, chunk);
    let access =
        RandomAccess::new(&pointer, &sealed[..PREFIX_LEN], sealed.len() as u64).expect("access");
    let plan = access.plan(0..3000).expect("plan");
    let start = plan.sealed_offset() as usize;
    let fetched = &sealed[start..start + plan.sealed_len() as usize];
    let hashes = hashes_for(&plan, &sealed);
    // One byte short (a truncated download): refused before anything is decrypted.
    let mut short = fetched[..fetched.len() - 1].to_vec();
    assert!(matches!(
        access.decrypt(&plan, &mut short, &hashes),
        Err(E::InvalidRange { .. })
    ));
    assert_eq!(short, &fetched[..fetched.len() - 1]);
    // A plan that is not this file's (the other pointer claims 2999 bytes; 0..3000 is
    // past its end): refused too.
    let forged = claiming_len(&pointer, 2999);
    let forged_access =
        RandomAccess::new(&forged, &sealed[..PREFIX_LEN], sealed.len() as u64).expect("access");
    let mut buffer = fetched.to_vec();
    assert!(matches!(
        forged_access.decrypt(&plan, &mut buffer, &hashes),
        Err(E::InvalidRange { .. })
    ));
    assert_eq!(buffer, fetched);
}

/// Opens with `open_stream` (and, with `parallel`, `open_stream_parallel`) into a buffer;
/// returns each result with what was written.
fn open_streams_into(
    pointer: &AttachmentPointer,
    sealed: &[u8],
) -> Vec<(&'static str, Result<u64, E>, Vec<u8>)> {
    let mut results = Vec::new();
    let mut out = Vec::new();
    let result = attachment::open_stream(pointer, &mut Trickle::new(sealed, 777), &mut out);
    results.push(("open_stream", result, out));
    #[cfg(feature = "parallel")]
    {
        let mut out = Vec::new();
        let result =
            attachment::open_stream_parallel(pointer, &mut Trickle::new(sealed, 777), &mut out);
        results.push(("open_stream_parallel", result, out));
    }
    results
}

#[test]
fn a_failed_chunk_is_never_written_to_the_stream_output() {
    let chunk = kib_chunks();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 255) as u8 + 1).collect();
    let (pointer, sealed) = sealed_with(85, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    let (start_of_2, end_of_2) = chunk_bounds(&layout, 2);
    let mut flipped = sealed.clone();
    flipped[end_of_2 - 1] ^= 1;
    let claiming_2999 = claiming_len(&pointer, 2999);
    let cases: [(&str, &AttachmentPointer, &[u8]); 3] = [
        ("tag of chunk 2 flipped", &pointer, &flipped),
        ("non-zero padding in chunk 2", &claiming_2999, &sealed),
        (
            "truncated inside chunk 2",
            &pointer,
            &sealed[..start_of_2 + 500],
        ),
    ];
    for (what, pointer, input) in cases {
        for (function, result, written) in open_streams_into(pointer, input) {
            let err = result.expect_err(what);
            assert!(
                matches!(
                    err,
                    E::ChunkNotCommitted { index: 2 }
                        | E::BadPadding { index: 2 }
                        | E::LengthMismatch { .. }
                ),
                "{function}, {what}: {err:?}"
            );
            // Whole verified chunks before chunk 2 may have been released, never a byte of
            // chunk 2 (data[2048..]).
            assert!(
                written.len() % 1024 == 0 && written.len() <= 2048,
                "{function}, {what}: {} bytes written",
                written.len()
            );
            assert_eq!(written, &data[..written.len()], "{function}, {what}");
        }
    }
    // The sequential opener releases chunks 0 and 1 before it fails.
    let (_, _, written) = open_streams_into(&pointer, &flipped).remove(0);
    assert_eq!(written, &data[..2048]);
}

// ---------------------------------------------------------------------------------------
// The pointer

#[test]
fn pointer_round_trips_and_hides_its_key() {
    let meta = AttachmentMetadata::new("image/jpeg", "IMG_0001.jpg").expect("metadata");
    assert_eq!(meta.content_type(), "image/jpeg");
    assert_eq!(meta.file_name(), "IMG_0001.jpg");
    let (mut pointer, sealed) = attachment::seal(&mut rng(61), b"jpeg bytes", meta).expect("seal");
    pointer
        .set_locator(vec![7; 2048])
        .expect("2048 bytes are allowed");
    assert!(matches!(
        pointer.set_locator(vec![7; 2049]),
        Err(E::InvalidMetadata { .. })
    ));
    let bytes = pointer.to_bytes();
    let back = AttachmentPointer::from_bytes(&bytes).expect("decode");
    assert_eq!(back.to_bytes().as_slice(), bytes.as_slice());
    assert_eq!(back.file_key().as_bytes(), pointer.file_key().as_bytes());
    assert_eq!(back.plaintext_len(), 10);
    assert_eq!(back.version(), 2);
    assert_eq!(
        back.sealed_len(ChunkSize::DEFAULT).unwrap(),
        sealed.len() as u64
    );
    let debug = format!("{back:?} {:?}", back.file_key());
    assert!(!debug.contains(&hex::encode(pointer.file_key().as_bytes())));
    assert!(!debug.contains(&format!("{:?}", pointer.file_key().as_bytes())));
    assert!(debug.contains("IMG_0001.jpg"));
    // The root (public: it names the sealed file) in hex.
    assert!(
        debug.contains(&format!("root: {},", hex::encode(back.root()))),
        "{debug}"
    );
    assert_eq!(format!("{:?}", back.file_key()), "FileKey(..)");
}

#[test]
fn pointer_decoding_validates_every_field() {
    let (pointer, _) = attachment::seal(
        &mut rng(62),
        b"x",
        AttachmentMetadata::new("a/b", "n").expect("m"),
    )
    .expect("seal");
    let good = pointer.to_bytes().to_vec();
    // Layout: 01 | 08 02 | 12 20 <key> | 18 01 | 22 20 <root> | 2a 03 "a/b" | 32 01 "n"
    assert_eq!(&good[..3], &[0x01, 0x08, 0x02]);
    let mut bad = good.clone();
    bad[2] = 1; // format version 1, which this build does not read
    assert_eq!(
        AttachmentPointer::from_bytes(&bad).err(),
        Some(DecodeError::InvalidValue {
            object: "attachment pointer",
            field: "version",
            reason: "unsupported attachment format version (this build reads version 2)"
        })
    );
    // The plaintext size may be 2^50 bytes, not one more: its varint replaces `01` at 38.
    assert_eq!(&good[37..39], &[0x18, 0x01]);
    let with_size = |varint: &[u8]| [&good[..38], varint, &good[39..]].concat();
    let largest = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]; // 2^50
    let pointer = AttachmentPointer::from_bytes(&with_size(&largest)).expect("2^50 bytes");
    assert_eq!(pointer.plaintext_len(), 1 << 50);
    let over = [0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]; // 2^50 + 1
    assert_eq!(
        AttachmentPointer::from_bytes(&with_size(&over)).err(),
        Some(DecodeError::InvalidValue {
            object: "attachment pointer",
            field: "plaintext_size",
            reason: "larger than 2^50 bytes"
        })
    );
    let mut bad = good.clone();
    bad[0] = 2; // wire version byte
    assert_eq!(
        AttachmentPointer::from_bytes(&bad).err(),
        Some(DecodeError::UnsupportedVersion {
            object: "attachment pointer",
            found: 2,
            supported: 1
        })
    );
    // A 31-byte key, framed as such (`12 1f` and the key's first 31 bytes), so that the
    // length check and not the protobuf framing refuses it.
    let short_key = [&good[..3], &[0x12, 0x1f], &good[5..36], &good[37..]].concat();
    assert_eq!(
        AttachmentPointer::from_bytes(&short_key).err(),
        Some(DecodeError::InvalidLength {
            object: "attachment pointer",
            field: "file_key",
            expected: 32,
            found: 31
        })
    );
    // Cutting only the length byte breaks the framing instead.
    let mut bad = good.clone();
    bad[4] = 0x1f;
    assert_eq!(
        AttachmentPointer::from_bytes(&bad).err(),
        Some(DecodeError::Malformed {
            object: "attachment pointer"
        })
    );
    let mut bad = good.clone();
    bad.extend([0x40, 0x01]); // unknown field 8
    assert_eq!(
        AttachmentPointer::from_bytes(&bad).err(),
        Some(DecodeError::NonCanonical {
            object: "attachment pointer"
        })
    );
    assert_eq!(
        AttachmentPointer::from_bytes(&[]).err(),
        Some(DecodeError::Empty {
            object: "attachment pointer"
        })
    );
    // A file name with a path separator is refused on decode, as on construction.
    let pos = good.len() - 1;
    let mut bad = good.clone();
    bad[pos] = b'/';
    assert_eq!(
        AttachmentPointer::from_bytes(&bad).err(),
        Some(DecodeError::InvalidFileName {
            rule: FileNameRule::PathSeparator
        })
    );
    assert_eq!(
        AttachmentPointer::from_bytes(&bad)
            .err()
            .map(|e| e.to_string()),
        Some(
            "attachment pointer.file_name is not allowed: contains a path separator (/ or \\)"
                .into()
        )
    );
    for (name, rule) in [
        ("a/b", FileNameRule::PathSeparator),
        ("a\\b", FileNameRule::PathSeparator),
        ("..", FileNameRule::DotName),
        (".", FileNameRule::DotName),
        ("a\u{0}b", FileNameRule::ControlCharacter),
        ("x\ny", FileNameRule::ControlCharacter),
        (&"n".repeat(256), FileNameRule::TooLong),
    ] {
        assert!(
            matches!(AttachmentMetadata::new("t", name), Err(E::InvalidFileName { rule: r }) if r == rule),
            "{name:?}"
        );
    }
    assert!(matches!(
        AttachmentMetadata::new("t\r", "ok"),
        Err(E::InvalidMetadata {
            field: "content type",
            reason: "contains control characters"
        })
    ));
    // The length bounds: 255 bytes pass, 256 do not (a two-byte character counts twice).
    assert!(AttachmentMetadata::new(&"t".repeat(255), &"n".repeat(255)).is_ok());
    for too_long in ["t".repeat(256), format!("{}é", "t".repeat(254))] {
        assert!(matches!(
            AttachmentMetadata::new(&too_long, "ok"),
            Err(E::InvalidMetadata {
                field: "content type",
                reason: "longer than 255 bytes"
            })
        ));
    }
    assert!(AttachmentMetadata::new("", "").is_ok());
    assert!(AttachmentMetadata::new("", "résumé – final.pdf").is_ok());
}

#[test]
fn a_pointer_whose_size_disagrees_with_the_file() {
    // The pointer is authentic (it came through the session, from the sender), so a wrong
    // size means a faulty sender. What each disagreement yields:
    let (pointer, sealed) = sealed_with(63, &pattern(3000), kib_chunks());
    let mut bytes = pointer.to_bytes().to_vec();
    // plaintext_size 3000 is the varint b8 17 after the field tag 0x18.
    let at = bytes
        .windows(3)
        .position(|w| w == [0x18, 0xb8, 0x17])
        .expect("size field");

    // 3128 bytes pad to 3200 (four chunks instead of three, so one more tag and a tree of
    // 4 + 2 + 1 nodes instead of 3 + 2 + 1): a different sealed length, refused before
    // decrypting, by every opener.
    bytes[at + 2] = 0x18;
    let longer = AttachmentPointer::from_bytes(&bytes).expect("pointer");
    let (memory, streaming) = open_all(&longer, &sealed);
    for result in [memory, streaming] {
        assert!(
            matches!(result, Err(E::LengthMismatch { expected, .. }) if expected == sealed.len() as u64 + 128 + 16 + 32),
            "{result:?}"
        );
    }

    // 2999 bytes pad to 3072 too: the last plaintext byte is then where padding must be,
    // and it is not zero.
    bytes[at + 1] = 0xb7;
    bytes[at + 2] = 0x17;
    let shorter = AttachmentPointer::from_bytes(&bytes).expect("pointer");
    let (memory, streaming) = open_all(&shorter, &sealed);
    assert!(matches!(memory, Err(E::BadPadding { index: 2 })));
    assert!(matches!(streaming, Err(E::BadPadding { index: 2 })));

    // 3064 bytes also pad to 3072: bytes 3000.. are zero padding, so they open as zeros.
    // The format cannot tell this from a file that ends in zeros; the sender chose both
    // the file and the pointer, so this gives it no power it did not have.
    bytes[at + 1] = 0xf8;
    let zeros = AttachmentPointer::from_bytes(&bytes).expect("pointer");
    let opened = attachment::open(&zeros, &sealed).expect("opens");
    assert_eq!(opened.len(), 3064);
    assert_eq!(&opened[..3000], &pattern(3000)[..]);
    assert!(opened[3000..].iter().all(|&b| b == 0));
}

// ---------------------------------------------------------------------------------------
// File names (docs/PROTOCOL.md 13.4, "File names")

/// The rule named in the vectors, mapped by hand (not by the code under test).
fn rule_named(name: &str) -> FileNameRule {
    match name {
        "TooLong" => FileNameRule::TooLong,
        "ControlCharacter" => FileNameRule::ControlCharacter,
        "FormatCharacter" => FileNameRule::FormatCharacter,
        "LineSeparator" => FileNameRule::LineSeparator,
        "PathSeparator" => FileNameRule::PathSeparator,
        "Colon" => FileNameRule::Colon,
        "ReservedCharacter" => FileNameRule::ReservedCharacter,
        "DotName" => FileNameRule::DotName,
        "LeadingWhitespace" => FileNameRule::LeadingWhitespace,
        "TrailingDotOrWhitespace" => FileNameRule::TrailingDotOrWhitespace,
        "ReservedDeviceName" => FileNameRule::ReservedDeviceName,
        other => panic!("unknown rule {other}"),
    }
}

/// A pointer that carries `name` as its file name, encoded by hand: the canonical encoding
/// of a real pointer with the name field (6, the last one present) replaced.
fn pointer_bytes_named(name: &str) -> Vec<u8> {
    let meta = AttachmentMetadata::new("text/plain", "").expect("metadata");
    let (pointer, _) = attachment::seal(&mut rng(64), b"x", meta).expect("seal");
    let mut bytes = pointer.to_bytes().to_vec();
    // ... | 2a 0a "text/plain": the name field goes right after it.
    assert!(bytes.ends_with(b"\x2a\x0atext/plain"));
    assert!(name.len() < 0x4000, "a two-byte length at most");
    bytes.push(0x32);
    if name.len() < 0x80 {
        bytes.push(name.len() as u8);
    } else {
        bytes.extend([(name.len() as u8) | 0x80, (name.len() >> 7) as u8]);
    }
    bytes.extend_from_slice(name.as_bytes());
    bytes
}

#[test]
fn the_review_file_names_are_refused_with_their_rule() {
    // The names of the security review, and the rule each breaks, on construction and on
    // decoding.
    let cases = [
        ("C:evil.exe", FileNameRule::Colon),
        ("a.txt:stream", FileNameRule::Colon),
        ("CON", FileNameRule::ReservedDeviceName),
        ("con.txt", FileNameRule::ReservedDeviceName),
        ("CON .txt", FileNameRule::ReservedDeviceName),
        ("LPT\u{B9}", FileNameRule::ReservedDeviceName),
        ("com0", FileNameRule::ReservedDeviceName),
        ("invoice.pdf.", FileNameRule::TrailingDotOrWhitespace),
        ("invoice.pdf ", FileNameRule::TrailingDotOrWhitespace),
        (" invoice.pdf", FileNameRule::LeadingWhitespace),
        ("invoice\u{202E}fdp.exe", FileNameRule::FormatCharacter),
        ("\u{200B}", FileNameRule::FormatCharacter),
        ("a\u{2028}b", FileNameRule::LineSeparator),
        ("what?.txt", FileNameRule::ReservedCharacter),
        ("a<b>", FileNameRule::ReservedCharacter),
        ("..", FileNameRule::DotName),
        ("../x", FileNameRule::PathSeparator),
        ("x\u{7}", FileNameRule::ControlCharacter),
        (&"é".repeat(128), FileNameRule::TooLong),
    ];
    for (name, rule) in cases {
        assert!(
            matches!(
                AttachmentMetadata::new("text/plain", name),
                Err(E::InvalidFileName { rule: r }) if r == rule
            ),
            "construction of {name:?}"
        );
        assert_eq!(
            AttachmentPointer::from_bytes(&pointer_bytes_named(name)).err(),
            Some(DecodeError::InvalidFileName { rule }),
            "decoding of {name:?}"
        );
    }
    // Good names pass both ways.
    for name in [
        "photo.jpg",
        "Grüße – 写真 🐱.png",
        "my  file.tar.gz",
        ".profile",
        "CONSOLE.txt",
        "COM10",
        &"é".repeat(127),
    ] {
        let meta = AttachmentMetadata::new("text/plain", name).expect(name);
        assert_eq!(meta.file_name(), name);
        let pointer = AttachmentPointer::from_bytes(&pointer_bytes_named(name)).expect(name);
        assert_eq!(pointer.file_name(), name);
    }
}

#[test]
fn file_name_rules_agree_with_the_independent_implementation() {
    let v = vectors();
    let cases = v["file_names"].as_array().expect("file name vectors");
    assert!(cases.len() > 80);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let pointer = AttachmentPointer::from_bytes(&hex_field(case, "pointer"));
        match case["rule"].as_str().map(rule_named) {
            None => {
                let meta = AttachmentMetadata::new("text/plain", name).expect(name);
                assert_eq!(meta.file_name(), name);
                assert_eq!(pointer.expect(name).file_name(), name);
            }
            Some(rule) => {
                assert!(
                    matches!(
                        AttachmentMetadata::new("text/plain", name),
                        Err(E::InvalidFileName { rule: r }) if r == rule
                    ),
                    "construction of {name:?} must break {rule:?}"
                );
                assert_eq!(
                    pointer.err(),
                    Some(DecodeError::InvalidFileName { rule }),
                    "decoding of {name:?}"
                );
            }
        }
    }
}

/// Code points of general category Cf assigned after Unicode 14.0: the Egyptian hieroglyph
/// format controls U+13439..U+1343F, new in Unicode 15.0 (unassigned, Cn, in Python 3.11's
/// Unicode 14.0 database).
const NEWER_FORMAT_CHARACTERS: [u32; 7] = [
    0x13439, 0x1343A, 0x1343B, 0x1343C, 0x1343D, 0x1343E, 0x1343F,
];

/// The rule that `a<c>b` breaks, if any.
fn rule_of_char(c: char) -> Option<FileNameRule> {
    match AttachmentMetadata::new("", &format!("a{c}b")) {
        Ok(_) => None,
        Err(E::InvalidFileName { rule }) => Some(rule),
        Err(e) => panic!("{e:?}"),
    }
}

#[test]
fn format_characters_agree_with_python_unicodedata() {
    // General category Cf from Python's unicodedata (tests/data/attachment_vectors.py),
    // an independent copy of the Unicode Character Database.
    let v = vectors();
    let data = &v["format_characters"];
    assert_eq!(data["unicode_version"], "14.0.0");
    let mut python = std::collections::BTreeSet::new();
    for range in data["ranges"].as_array().expect("ranges") {
        let first = range[0].as_u64().expect("first") as u32;
        let last = range[1].as_u64().expect("last") as u32;
        python.extend(first..=last);
    }
    assert!(python.len() > 150);
    let mut refused = std::collections::BTreeSet::new();
    for c in (0..=0x10FFFF).filter_map(char::from_u32) {
        if rule_of_char(c) == Some(FileNameRule::FormatCharacter) {
            refused.insert(u32::from(c));
        }
    }
    let missing: Vec<_> = python.difference(&refused).collect();
    assert!(
        missing.is_empty(),
        "Cf in Unicode 14.0 but accepted: {missing:x?}"
    );
    // Characters that became Cf after Unicode 14.0 (ratchetbox's table is Unicode 18.0):
    let newer: Vec<u32> = refused.difference(&python).copied().collect();
    assert_eq!(newer, NEWER_FORMAT_CHARACTERS, "{newer:x?}");
}

#[test]
fn attacks_on_files_of_many_batches() {
    // 60 chunks: more than three of the parallel streaming batches (16 chunks each).
    let chunk = kib_chunks();
    let data = pattern(60 * 1024 - 100);
    let (pointer, sealed) = sealed_with(71, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    assert_eq!(layout.chunk_count(), 60);
    for index in [0u64, 15, 16, 37, 59] {
        let (s, e) = chunk_bounds(&layout, index);
        let mut bad = sealed.clone();
        bad[(s + e) / 2] ^= 0x10;
        let (memory, streaming) = open_all(&pointer, &bad);
        for err in [memory.expect_err("flip"), streaming.expect_err("flip")] {
            assert!(
                matches!(err, E::ChunkNotCommitted { index: i } if i == index),
                "{err:?}"
            );
        }
        // A stored leaf flipped: the window that holds it does not verify.
        let mut bad = sealed.clone();
        bad[layout.tree_offset() as usize + index as usize * 32] ^= 1;
        let (memory, streaming) = open_all(&pointer, &bad);
        for err in [memory.expect_err("leaf"), streaming.expect_err("leaf")] {
            assert!(matches!(err, E::RootMismatch), "{err:?}");
        }
    }
    // Every node of the stored tree is checked by the whole-file openers.
    for node in [60usize, 61, 100, 118, 119] {
        let mut bad = sealed.clone();
        bad[layout.tree_offset() as usize + node * 32 + 5] ^= 1;
        let memory = attachment::open(&pointer, &bad);
        assert!(
            matches!(memory, Err(E::RootMismatch)),
            "node {node}: {memory:?}"
        );
    }
    assert_eq!(layout.tree_len(), 120 * 32);
}

/// Opens with `open` and, with `parallel`, `open_in_place_parallel`, checks that they agree
/// and returns the result.
fn open_in_memory(pointer: &AttachmentPointer, sealed: &[u8]) -> Result<Vec<u8>, E> {
    let memory = attachment::open(pointer, sealed);
    #[cfg(feature = "parallel")]
    {
        let in_place = attachment::open_in_place_parallel(pointer, sealed.to_vec());
        assert_eq!(
            format!("{memory:?}"),
            format!("{in_place:?}"),
            "open and open_in_place_parallel disagree"
        );
    }
    memory
}

#[test]
fn in_place_functions_on_files_of_many_groups() {
    // 34 chunks of 64 KiB: the in-place functions on all cores work in groups of 16 chunks
    // (1 MiB), so this file has three groups, the last one of two chunks. (The in-place
    // pipeline is checked with every small group size, chunk by chunk, by the unit tests
    // of src/attachment/in_place.rs; this is the real one.)
    let chunk = ChunkSize::DEFAULT;
    let data = pattern(34 * 65_536 - 1000);
    let (pointer, sealed) = sealed_with(72, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    assert_eq!(layout.chunk_count(), 34);
    let mut buffer = data.clone();
    let p = attachment::seal_in_place(&mut rng(72), &mut buffer, meta(chunk)).expect("seal");
    assert!(buffer == sealed, "seal_in_place");
    assert_eq!(p.root(), pointer.root());
    #[cfg(feature = "parallel")]
    {
        let mut buffer = data.clone();
        let p = attachment::seal_in_place_parallel(&mut rng(72), &mut buffer, meta(chunk))
            .expect("seal");
        assert!(buffer == sealed, "seal_in_place_parallel");
        assert_eq!(p.root(), pointer.root());
    }
    assert!(open_in_memory(&pointer, &sealed).expect("opens") == data);
    let flipped = |sealed: &[u8], indexes: &[u64]| {
        let mut bad = sealed.to_vec();
        for &index in indexes {
            let (s, e) = chunk_bounds(&layout, index);
            bad[(s + e) / 2] ^= 0x04;
        }
        bad
    };
    // One bad chunk at a group's edges; two in one group or in two groups: the first one.
    for (bad, first) in [
        (vec![0u64], 0u64),
        (vec![16], 16),
        (vec![33], 33),
        (vec![20, 17], 17),
        (vec![18, 5], 5),
    ] {
        let result = open_in_memory(&pointer, &flipped(&sealed, &bad));
        assert!(
            matches!(result, Err(E::ChunkNotCommitted { index }) if index == first),
            "chunks {bad:?}: {result:?}"
        );
    }
    // A chunk forged by a holder of the file key, in the second group.
    let forged = forge_chunk(&pointer, &layout, &sealed, 20, FORGED_FILL);
    let result = open_in_memory(&pointer, &forged);
    assert!(
        matches!(result, Err(E::ChunkNotCommitted { index: 20 })),
        "{result:?}"
    );
}

#[test]
fn open_in_place_returns_the_sealed_allocation_holding_only_the_plaintext() {
    let data = pattern(3000);
    let (pointer, sealed) = sealed_with(74, &data, kib_chunks());
    let mut buffer = Vec::with_capacity(sealed.len() + 100);
    buffer.extend_from_slice(&sealed);
    let (address, capacity) = (buffer.as_ptr(), buffer.capacity());
    let opened = attachment::open_in_place(&pointer, buffer).expect("opens");
    assert_eq!(opened, data);
    // No copy: the same allocation (tests/wiping.rs checks that the rest of it holds no
    // plaintext).
    assert_eq!((opened.as_ptr(), opened.capacity()), (address, capacity));
}

#[test]
fn sealed_len_is_the_layout_length() {
    for (len, chunk) in [
        (0usize, kib_chunks()),
        (3000, kib_chunks()),
        (100_000, ChunkSize::DEFAULT),
    ] {
        let expected = Layout::new(len as u64, chunk).expect("layout").sealed_len();
        assert_eq!(meta(chunk).sealed_len(len).expect("fits") as u64, expected);
        let (_, sealed) = sealed_with(75, &pattern(len), chunk);
        assert_eq!(sealed.len() as u64, expected);
    }
    assert!(matches!(
        AttachmentMetadata::default().sealed_len(usize::MAX),
        Err(E::TooLarge { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary edits of a sealed file never panic, and never open successfully.
    #[test]
    fn prop_mutated_files_are_rejected_without_panicking(
        len in 0usize..6000,
        seed: u64,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
    ) {
        let (pointer, sealed) = sealed_with(seed, &pattern(len), kib_chunks());
        let mut bad = sealed.clone();
        for (at, value, kind) in edits {
            let i = at.index(bad.len().max(1));
            match kind {
                0 if !bad.is_empty() => bad[i] ^= value | 1,
                1 => bad.insert(i.min(bad.len()), value),
                2 if !bad.is_empty() => { bad.remove(i); }
                _ => bad.truncate(i),
            }
        }
        prop_assume!(bad != sealed);
        let (memory, streaming) = open_all(&pointer, &bad);
        prop_assert!(memory.is_err());
        if let Ok(released) = streaming {
            // A stream reads the stored leaves and only the upper nodes that prove its
            // windows: a change to another stored node is not read, and what the stream
            // releases is still exactly the plaintext. Any other change must fail it.
            let layout = layout_of(&pointer, kib_chunks());
            let upper = (layout.tree_offset() + 32 * layout.chunk_count()) as usize;
            prop_assert_eq!(bad.len(), sealed.len());
            prop_assert!(bad[..upper] == sealed[..upper], "a change outside the upper levels");
            prop_assert_eq!(released, pattern(len));
        }
        if let Ok(access) = RandomAccess::new(&pointer, &bad, bad.len() as u64) {
            let _ = access.read_range(0..len as u64, |offset, buf| {
                let o = offset as usize;
                buf.copy_from_slice(bad.get(o..o + buf.len()).ok_or(io::ErrorKind::UnexpectedEof)?);
                Ok(())
            });
            // A failed in-place decryption leaves no plaintext in the fetched bytes.
            let plan = access.plan(0..len as u64).expect("plan");
            let start = plan.sealed_offset() as usize;
            let mut fetched = bad[start..start + plan.sealed_len() as usize].to_vec();
            let hashes: Vec<u8> = plan
                .hash_ranges()
                .iter()
                .flat_map(|r| bad.get(r.start as usize..r.end as usize).unwrap_or_default().iter().copied())
                .collect();
            if let Err(e) = access.decrypt(&plan, &mut fetched, &hashes) {
                prop_assert!(!matches!(e, E::InvalidRange { .. }), "{:?}", e);
                prop_assert!(fetched.iter().all(|&b| b == 0), "{:?} left plaintext", e);
            }
        }
    }

    /// Arbitrary bytes never panic the pointer decoder.
    #[test]
    fn prop_pointer_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = AttachmentPointer::from_bytes(&bytes);
    }
}

#[test]
fn a_pointer_and_content_clone_to_the_same_bytes() {
    use ratchetbox::Content;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0xc10e);
    let (pointer, sealed) = attachment::seal(
        &mut rng,
        b"photo",
        AttachmentMetadata::new("image/png", "a.png").unwrap(),
    )
    .unwrap();
    let copy = pointer.clone();
    assert_eq!(*copy.to_bytes(), *pointer.to_bytes());
    drop(pointer);
    // The copy owns its key: it still opens the file after the original is gone (and wiped).
    assert_eq!(attachment::open(&copy, &sealed).unwrap(), b"photo");
    let mut content = Content::new("see attached");
    content.add_attachment(copy).unwrap();
    let again = content.clone();
    assert_eq!(again.body(), content.body());
    assert_eq!(
        *again.attachments()[0].to_bytes(),
        *content.attachments()[0].to_bytes()
    );
}

/// A source that records every seek (each one costs an HTTP range request or a disk seek).
struct CountingSeeks<'a> {
    inner: Cursor<&'a [u8]>,
    seeks: Vec<SeekFrom>,
}

impl Read for CountingSeeks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Seek for CountingSeeks<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.seeks.push(to);
        self.inner.seek(to)
    }
}

/// Drains a stream opener; returns every released slice.
fn drain<R: Read + Seek>(opener: &mut StreamOpener<R>) -> Vec<Vec<u8>> {
    let mut released = Vec::new();
    while let Some(plaintext) = opener.next_chunk().expect("verifies") {
        released.push(plaintext.to_vec());
    }
    released
}

#[test]
fn the_stream_opener_fetches_each_window_of_leaves_once_and_reads_chunks_in_order() {
    let chunk = kib_chunks();
    // 3 chunks: the length (seek to the end, back to the start), the 3 leaves (one run,
    // which proves the whole tree), back to chunk 0, then chunks 1 and 2 follow on: 4 seeks.
    // 1056 chunks (PADME leaves 1056 KiB, a multiple of 32 KiB, as it is): two windows of
    // leaves. The first (leaves 0..=1023) is one run of level 0 plus node 1 of level 10;
    // the second (leaves 1024..=1055) one run of level 0 plus node 0 of level 10. Each run
    // and each return to the chunks is a seek: 2 + (2 + 1) + (2 + 1) = 8.
    for (len, seeks) in [(3 * 1024usize, 4usize), (1056 * 1024, 8)] {
        let data = pattern(len);
        let (pointer, sealed) = sealed_with(7, &data, chunk);
        assert_eq!(
            layout_of(&pointer, chunk).chunk_count() as usize,
            len / 1024
        );
        let source = CountingSeeks {
            inner: Cursor::new(&sealed),
            seeks: Vec::new(),
        };
        let mut opener = StreamOpener::new(&pointer, source).expect("prefix");
        assert_eq!(drain(&mut opener).concat(), data);
        let source = opener.into_inner();
        assert_eq!(source.seeks.len(), seeks, "{len}: {:?}", source.seeks);
        assert_eq!(
            source.seeks[..2],
            [SeekFrom::End(0), SeekFrom::Start(0)],
            "{len}"
        );
    }
}

/// A batch of the parallel opener may hold chunks of two windows of leaves: the window is
/// fetched when its first chunk is reached, as in the sequential opener. On a pool of 88
/// threads, 1056 chunks make batches of 3 (a quarter of the chunks a thread, rounded
/// down), so chunks 1023, 1024 and 1025 share one; the reads are those of the test above.
#[cfg(feature = "parallel")]
#[test]
fn a_parallel_batch_may_hold_chunks_of_two_windows_of_leaves() {
    let chunk = kib_chunks();
    let data = pattern(1056 * 1024);
    let (pointer, sealed) = sealed_with(7, &data, chunk);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(88)
        .build()
        .expect("pool");
    let mut source = CountingSeeks {
        inner: Cursor::new(&sealed),
        seeks: Vec::new(),
    };
    let mut opened = Vec::new();
    let written = pool
        .install(|| attachment::open_stream_parallel(&pointer, &mut source, &mut opened))
        .expect("opens");
    assert_eq!(written, data.len() as u64);
    assert!(opened == data);
    assert_eq!(source.seeks.len(), 8, "{:?}", source.seeks);
}

/// A source that claims the full sealed length but whose bytes end at `data.len()` (a file
/// cut while it is read, a server that ends a range early).
struct CutShort<'a> {
    inner: Cursor<&'a [u8]>,
    claimed_len: u64,
}

impl Read for CutShort<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Seek for CutShort<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match to {
            SeekFrom::End(0) => Ok(self.claimed_len),
            other => self.inner.seek(other),
        }
    }
}

#[test]
fn a_source_that_ends_early_is_truncated_by_the_missing_count() {
    let chunk = kib_chunks();
    let data = pattern(3 * 1024);
    let (pointer, sealed) = sealed_with(42, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    // The 3 leaves are read first (96 bytes at the tree offset): 40 of them arrive.
    let cut = layout.tree_offset() as usize + 40;
    let source = CutShort {
        inner: Cursor::new(&sealed[..cut]),
        claimed_len: sealed.len() as u64,
    };
    let mut opener = StreamOpener::new(&pointer, source).expect("the claimed length fits");
    assert!(
        matches!(opener.next_chunk(), Err(E::Truncated { missing: 56 })),
        "{:?}",
        opener.next_chunk()
    );
    assert!(matches!(opener.next_chunk(), Err(E::StreamFailed)));
}

#[test]
fn a_chunk_of_padding_only_releases_nothing_and_open_stream_counts_the_plaintext() {
    let chunk = kib_chunks();
    // PADME(33 * 1024 = 33792): E = 15, S = 4, so a multiple of 2^11 = 2048: 34816, and
    // chunk 33 of 34 holds padding only. The opener releases the 33 chunks of plaintext,
    // none of them empty.
    let data = pattern(33 * 1024);
    let (pointer, sealed) = sealed_with(9, &data, chunk);
    let layout = layout_of(&pointer, chunk);
    assert_eq!((layout.padded_len(), layout.chunk_count()), (34_816, 34));
    let mut opener = StreamOpener::new(&pointer, Cursor::new(&sealed)).expect("prefix");
    let released = drain(&mut opener);
    assert_eq!(released.len(), 33);
    assert!(released.iter().all(|p| p.len() == 1024));
    assert_eq!(released.concat(), data);
    let mut out = Vec::new();
    let written = attachment::open_stream(&pointer, &mut Cursor::new(&sealed), &mut out);
    assert_eq!(written.expect("opens"), 33 * 1024);
    assert_eq!(out, data);
}

#[test]
fn debug_output_shows_the_layout_and_state_and_no_key() {
    let chunk = kib_chunks();
    let data = pattern(3000);
    let (pointer, sealed) = sealed_with(5, &data, chunk);
    let layout = format!("{:?}", layout_of(&pointer, chunk));
    assert!(layout.starts_with("Layout { plaintext_len: 3000, padded_len: 3072"));
    let access =
        RandomAccess::new(&pointer, &sealed[..PREFIX_LEN], sealed.len() as u64).expect("prefix");
    assert_eq!(
        format!("{access:?}"),
        format!("RandomAccess {{ layout: {layout}, .. }}")
    );
    assert_eq!(access.plaintext_len(), 3000);
    let mut opener = StreamOpener::new(&pointer, Cursor::new(&sealed)).expect("prefix");
    assert_eq!(
        format!("{opener:?}"),
        format!("StreamOpener {{ layout: {layout}, state: Reading(0), .. }}")
    );
    drain(&mut opener);
    assert!(format!("{opener:?}").ends_with(", state: Done, .. }"));
    let mut forged = sealed.clone();
    forged[PREFIX_LEN] ^= 1;
    let mut opener = StreamOpener::new(&pointer, Cursor::new(&forged)).expect("prefix");
    assert!(matches!(
        opener.next_chunk(),
        Err(E::ChunkNotCommitted { index: 0 })
    ));
    assert!(format!("{opener:?}").ends_with(", state: Failed, .. }"));
}

#[test]
fn a_plan_of_another_layout_is_refused_before_anything_is_touched() {
    let chunk = kib_chunks();
    let data = pattern(3000);
    let (pointer, sealed) = sealed_with(5, &data, chunk);
    let access =
        RandomAccess::new(&pointer, &sealed[..PREFIX_LEN], sealed.len() as u64).expect("prefix");
    // The same plaintext range, planned for 4 KiB chunks: a valid range here, but not this
    // file's plan (one chunk of 3072 bytes, not the first of three of 1 KiB).
    let other = Layout::new(3000, ChunkSize::from_log2(12).expect("4 KiB"))
        .expect("layout")
        .plan(0..10)
        .expect("plan");
    assert_ne!(access.plan(0..10).expect("plan"), other);
    let mut fetched = vec![0xEEu8; other.sealed_len() as usize];
    let hashes = vec![0u8; other.hashes_len() as usize];
    let result = access.decrypt(&other, &mut fetched, &hashes);
    assert!(
        matches!(
            result,
            Err(E::InvalidRange {
                reason: "the fetch plan does not belong to this file"
            })
        ),
        "{result:?}"
    );
    assert!(fetched.iter().all(|&b| b == 0xEE));
}
