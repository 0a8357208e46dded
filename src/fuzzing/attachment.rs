//! The attachment target: opening arbitrary bytes under a fixed pointer, and seal/open round
//! trips of fuzzer-chosen sizes, chunk sizes, metadata, ranges and tampering.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;
use std::io::Cursor;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use rand_core::Rng;

use super::rng;
use crate::attachment::{
    self, AttachmentMetadata, AttachmentPointer, ChunkSize, PREFIX_LEN, RandomAccess, StreamOpener,
};
use crate::{AttachmentError, DecodeError};

/// A sealed file of 3,000 bytes in 1 KiB chunks (three chunks, the last one padded).
pub(crate) struct Fixture {
    pub(crate) pointer: AttachmentPointer,
    pub(crate) sealed: Vec<u8>,
    pub(crate) plaintext: Vec<u8>,
}

pub(crate) fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let plaintext: Vec<u8> = (0..3000u32).map(|i| (i * 7 + i / 256) as u8).collect();
        let metadata = AttachmentMetadata::new("application/octet-stream", "fixture.bin")
            .expect("metadata")
            .with_chunk_size(ChunkSize::from_log2(10).expect("1 KiB"));
        let (pointer, sealed) =
            attachment::seal(&mut rng(0xa77a), &plaintext, metadata).expect("seal");
        Fixture {
            pointer,
            sealed,
            plaintext,
        }
    })
}

/// The encoding of a pointer whose file name is `name` and whose other fields are valid
/// (the content type is empty, so that only the name can be refused).
fn pointer_named(name: &str) -> Vec<u8> {
    let message = crate::wire::generated::AttachmentPointer {
        version: 2,
        file_key: alloc::vec![7; attachment::FILE_KEY_LEN],
        plaintext_size: 1,
        root: alloc::vec![9; attachment::ROOT_LEN],
        content_type: String::new(),
        file_name: name.into(),
        locator: Vec::new(),
    };
    crate::wire::encode(&message)
}

/// The largest plaintext of a round trip.
const MAX_LEN: usize = 12_000;

/// A seal/open round trip, as the fuzzer chooses it.
#[derive(Arbitrary, Debug)]
struct RoundTrip {
    seed: u64,
    len: u16,
    /// 1 KiB to 4 KiB chunks, so that small files have several.
    chunk_log2: u8,
    content_type: String,
    file_name: String,
    locator: Vec<u8>,
    ranges: Vec<(u16, u16)>,
    tamper: Option<(u32, u8)>,
}

/// The first input byte chooses: even, open the rest under the fixture's pointer; odd, a
/// seal/open round trip described by the rest (`arbitrary`).
///
/// Opening arbitrary bytes (whole, as a stream, and by random access) must fail unless the
/// bytes are the fixture's sealed file; whatever comes out must be the fixture's plaintext.
/// Every whole-file opener (`open`, `open_in_place`, with `parallel` their `_parallel`
/// counterparts) must give the same plaintext or the same error. Sealing in place, and with
/// `parallel` streaming on all cores, must give `seal`'s bytes for the same random draws, and
/// `open_stream_parallel` the result of `open_stream`, for the file and for a changed one.
/// A file name that metadata refuses must be refused, for the same rule, in a decoded
/// pointer. A round trip must give back the plaintext whole, streamed and for every range,
/// through a pointer that went through its encoding; a file with one byte changed must not
/// open, and random access must fail exactly for the ranges whose chunks hold the change.
pub fn attachment(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        open_arbitrary(rest);
    } else if let Ok(round_trip) = RoundTrip::arbitrary_take_rest(Unstructured::new(rest)) {
        seal_open(&round_trip);
    }
}

/// Opens `sealed` with `open` and with every function that opens a whole file in memory,
/// asserts that they all give the same result (the same plaintext or the same error), and
/// returns it.
fn open_whole(pointer: &AttachmentPointer, sealed: &[u8]) -> Result<Vec<u8>, AttachmentError> {
    let opened = attachment::open(pointer, sealed);
    let expected = format!("{opened:?}");
    let in_place = attachment::open_in_place(pointer, sealed.to_vec());
    assert_eq!(
        format!("{in_place:?}"),
        expected,
        "open_in_place disagrees with open"
    );
    #[cfg(feature = "parallel")]
    {
        let parallel = attachment::open_parallel(pointer, sealed);
        assert_eq!(
            format!("{parallel:?}"),
            expected,
            "open_parallel disagrees with open"
        );
        let in_place = attachment::open_in_place_parallel(pointer, sealed.to_vec());
        assert_eq!(
            format!("{in_place:?}"),
            expected,
            "open_in_place_parallel disagrees with open"
        );
    }
    opened
}

fn open_arbitrary(sealed: &[u8]) {
    let f = fixture();
    if let Ok(plaintext) = open_whole(&f.pointer, sealed) {
        assert_eq!(plaintext, f.plaintext, "opened to another plaintext");
        assert_eq!(
            sealed, f.sealed,
            "another file opened under the fixture's key"
        );
    }
    if let Ok(mut opener) = StreamOpener::new(&f.pointer, Cursor::new(sealed)) {
        let mut offset = 0;
        while let Ok(Some(chunk)) = opener.next_chunk() {
            assert_eq!(
                Some(chunk),
                f.plaintext.get(offset..offset + chunk.len()),
                "the stream opened to another plaintext"
            );
            offset += chunk.len();
        }
    }
    if let Ok(access) = RandomAccess::new(&f.pointer, sealed, sealed.len() as u64) {
        assert_eq!(sealed.get(..PREFIX_LEN), f.sealed.get(..PREFIX_LEN));
        for range in [0..3000u64, 1000..2048, 2999..3000, 5..5] {
            let plan = access.plan(range.clone()).expect("a range of the file");
            let start = plan.sealed_offset() as usize;
            let mut fetched = sealed[start..start + plan.sealed_len() as usize].to_vec();
            if let Ok(plaintext) = access.decrypt(&plan, &mut fetched, &hashes_of(&plan, sealed)) {
                assert_eq!(
                    plaintext,
                    &f.plaintext[range.start as usize..range.end as usize]
                );
            }
        }
    }
}

/// The hashes `plan` needs, concatenated from `sealed` (fewer if `sealed` is too short).
fn hashes_of(plan: &attachment::FetchPlan, sealed: &[u8]) -> Vec<u8> {
    plan.hash_ranges()
        .iter()
        .flat_map(|r| {
            sealed
                .get(r.start as usize..r.end as usize)
                .unwrap_or_default()
        })
        .copied()
        .collect()
}

fn seal_open(case: &RoundTrip) {
    let len = usize::from(case.len) % (MAX_LEN + 1);
    let mut rng = rng(case.seed);
    let mut plaintext = alloc::vec![0u8; len];
    rng.fill_bytes(&mut plaintext);
    let chunk_size = ChunkSize::from_log2(10 + case.chunk_log2 % 3).expect("chunk size");
    let metadata = match AttachmentMetadata::new(&case.content_type, &case.file_name) {
        Ok(metadata) => metadata,
        Err(AttachmentError::InvalidFileName { rule }) => {
            // The sender's rule is the receiver's: a pointer carrying this name is refused
            // on decoding, for the same reason.
            assert_eq!(
                AttachmentPointer::from_bytes(&pointer_named(&case.file_name)).err(),
                Some(DecodeError::InvalidFileName { rule }),
                "decoding and construction disagree on {:?}",
                case.file_name
            );
            return;
        }
        Err(_) => return,
    };
    let metadata = metadata.with_chunk_size(chunk_size);
    // Sealing in place draws the same key and salt from the same generator state: the same
    // bytes as `seal`, whether the buffer has room for them or must grow.
    let mut buffer = Vec::with_capacity(if case.seed.is_multiple_of(2) {
        0
    } else {
        len + 4096
    });
    buffer.extend_from_slice(&plaintext);
    let in_place = attachment::seal_in_place(&mut rng.clone(), &mut buffer, metadata.clone())
        .expect("seal_in_place");
    #[cfg(feature = "parallel")]
    let in_place_parallel = {
        let mut buffer = plaintext.clone();
        let pointer =
            attachment::seal_in_place_parallel(&mut rng.clone(), &mut buffer, metadata.clone())
                .expect("seal_in_place_parallel");
        (pointer, buffer)
    };
    #[cfg(feature = "parallel")]
    let stream_parallel = {
        let mut output = Vec::new();
        let pointer = attachment::seal_stream_parallel(
            &mut rng.clone(),
            &mut plaintext.as_slice(),
            &mut output,
            metadata.clone(),
        )
        .expect("seal_stream_parallel");
        (pointer, output)
    };
    let (mut pointer, sealed) = attachment::seal(&mut rng, &plaintext, metadata).expect("seal");
    assert_eq!(buffer, sealed, "seal_in_place sealed other bytes");
    assert_eq!(in_place.root(), pointer.root());
    #[cfg(feature = "parallel")]
    {
        assert_eq!(
            in_place_parallel.1, sealed,
            "seal_in_place_parallel sealed other bytes"
        );
        assert_eq!(in_place_parallel.0.root(), pointer.root());
        assert_eq!(
            stream_parallel.1, sealed,
            "seal_stream_parallel sealed other bytes"
        );
        assert_eq!(stream_parallel.0.root(), pointer.root());
    }
    assert_eq!(
        pointer.sealed_len(chunk_size).ok(),
        Some(sealed.len() as u64)
    );
    if pointer.set_locator(case.locator.clone()).is_err() {
        assert!(case.locator.len() > attachment::MAX_LOCATOR_LEN);
    }
    // The receiver's pointer went through its encoding.
    let pointer = AttachmentPointer::from_bytes(&pointer.to_bytes()).expect("pointer decodes");
    assert_eq!(pointer.content_type(), case.content_type);
    assert_eq!(pointer.file_name(), case.file_name);

    assert_eq!(open_whole(&pointer, &sealed).expect("open"), plaintext);
    let mut streamed = Vec::new();
    let n = attachment::open_stream(&pointer, &mut Cursor::new(&sealed), &mut streamed)
        .expect("stream");
    assert_eq!(n, len as u64);
    assert_eq!(streamed, plaintext);
    #[cfg(feature = "parallel")]
    {
        let mut streamed = Vec::new();
        let n =
            attachment::open_stream_parallel(&pointer, &mut Cursor::new(&sealed), &mut streamed)
                .expect("open_stream_parallel");
        assert_eq!(n, len as u64);
        assert_eq!(streamed, plaintext);
    }

    let access = RandomAccess::new(&pointer, &sealed, sealed.len() as u64).expect("random access");
    let ranges: Vec<Range<u64>> = case
        .ranges
        .iter()
        .take(8)
        .map(|&(a, b)| {
            let (a, b) = (
                u64::from(a) % (len as u64 + 1),
                u64::from(b) % (len as u64 + 1),
            );
            a.min(b)..a.max(b)
        })
        .collect();
    for range in &ranges {
        let plan = access.plan(range.clone()).expect("plan");
        let start = plan.sealed_offset() as usize;
        let mut fetched = sealed[start..start + plan.sealed_len() as usize].to_vec();
        let got = access
            .decrypt(&plan, &mut fetched, &hashes_of(&plan, &sealed))
            .expect("decrypt a range");
        assert_eq!(got, &plaintext[range.start as usize..range.end as usize]);
    }

    let Some((position, xor)) = case.tamper else {
        return;
    };
    let position = position as usize % sealed.len();
    let mut tampered = sealed.clone();
    tampered[position] ^= xor.max(1);
    assert!(
        open_whole(&pointer, &tampered).is_err(),
        "a file with byte {position} changed opened"
    );
    let mut sink = Vec::new();
    let streamed = attachment::open_stream(&pointer, &mut Cursor::new(&tampered), &mut sink);
    // On all cores, the same result: the same count or the first error in stream order (what
    // each wrote before an error may differ: the parallel one holds back a failing batch).
    #[cfg(feature = "parallel")]
    {
        let parallel = attachment::open_stream_parallel(
            &pointer,
            &mut Cursor::new(&tampered),
            &mut Vec::new(),
        );
        assert_eq!(
            format!("{parallel:?}"),
            format!("{streamed:?}"),
            "open_stream_parallel disagrees with open_stream"
        );
    }
    // A stream reads the stored leaves and only the upper nodes that prove its windows of
    // 1024 leaves: for these small files, none. A change there is not read, and what the
    // stream releases is still exactly the plaintext; any other change must fail it.
    let access = RandomAccess::new(&pointer, &sealed, sealed.len() as u64).expect("intact");
    let layout = access.layout();
    let upper_levels = layout.tree_offset() + 32 * layout.chunk_count();
    if position as u64 >= upper_levels && layout.chunk_count() <= 1024 {
        if streamed.is_ok() {
            assert_eq!(sink, plaintext, "a stream released other bytes");
        }
    } else {
        assert!(
            streamed.is_err(),
            "a stream with byte {position} changed opened"
        );
    }
    let Ok(access) = RandomAccess::new(&pointer, &tampered, tampered.len() as u64) else {
        assert!(
            position < PREFIX_LEN,
            "random access refused an intact prefix"
        );
        return;
    };
    assert!(
        position >= PREFIX_LEN,
        "random access accepted a changed prefix"
    );
    for range in &ranges {
        let plan = access.plan(range.clone()).expect("plan");
        let start = plan.sealed_offset() as usize;
        let end = start + plan.sealed_len() as usize;
        let mut fetched = tampered[start..end].to_vec();
        let result = access.decrypt(&plan, &mut fetched, &hashes_of(&plan, &tampered));
        let in_hashes = plan
            .hash_ranges()
            .iter()
            .any(|r| r.contains(&(position as u64)));
        if (start..end).contains(&position) || in_hashes {
            assert!(result.is_err(), "a range over the changed byte decrypted");
        } else {
            assert_eq!(
                result.expect("a range away from the changed byte"),
                &plaintext[range.start as usize..range.end as usize]
            );
        }
    }
}
