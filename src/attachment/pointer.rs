//! The file key, the sender's metadata and the pointer that carries them to the receiver.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::error::{AttachmentError, DecodeError, FileNameRule};
use crate::keys::write_hex;
use crate::wire::{self, generated};

use super::format::{ChunkSize, FORMAT_VERSION, Layout, MAX_PLAINTEXT_LEN};

/// Length of a file key.
pub const FILE_KEY_LEN: usize = 32;
/// Length of the root of a sealed file's hash tree, as carried in the pointer.
pub const ROOT_LEN: usize = super::tree::HASH_LEN;
/// Longest content type, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
/// Longest file name, in bytes.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Longest locator, in bytes.
pub const MAX_LOCATOR_LEN: usize = 2048;

const OBJECT: &str = "attachment pointer";

/// The 32-byte secret that opens one sealed attachment.
///
/// Sealing draws a fresh one from the random number generator for every attachment; there
/// is no way to seal with a key of one's choosing, so a key is never reused. It zeroizes on
/// drop and its `Debug` does not show it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct FileKey([u8; FILE_KEY_LEN]);

impl FileKey {
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Self([0u8; FILE_KEY_LEN]);
        rng.fill_bytes(&mut key.0);
        key
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; FILE_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(..)")
    }
}

/// What the sender says about a file: its content type and name, plus the chunk size to seal
/// it with. Validated on construction, and again when a pointer is decoded.
///
/// ```
/// use ratchetbox::AttachmentError;
/// use ratchetbox::attachment::{AttachmentMetadata, ChunkSize, FileNameRule};
///
/// let meta = AttachmentMetadata::new("image/jpeg", "cat.jpg")?;
/// assert_eq!(meta.chunk_size(), ChunkSize::DEFAULT);
/// assert!(matches!(
///     AttachmentMetadata::new("image/jpeg", "../../etc/passwd"),
///     Err(AttachmentError::InvalidFileName { rule: FileNameRule::PathSeparator })
/// ));
/// # Ok::<(), ratchetbox::AttachmentError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachmentMetadata {
    content_type: String,
    file_name: String,
    chunk_size: ChunkSize,
}

impl AttachmentMetadata {
    /// Metadata with the default 64 KiB chunk size. Both strings may be empty.
    ///
    /// The content type must be at most 255 bytes without control characters. The file name
    /// must be safe to use as one file name in a folder on every common system: at most 255
    /// bytes; no control, format (Unicode Cf) or line separator characters; none of
    /// `/ \ : < > " | ? *`; not `.` or `..`; no whitespace at the start, no dot or whitespace
    /// at the end; not a Windows device name such as `CON` or `com1.txt`. The first rule
    /// broken is reported as [`AttachmentError::InvalidFileName`] with its [`FileNameRule`]
    /// (`docs/PROTOCOL.md` section 13.4 has the exact rules).
    pub fn new(content_type: &str, file_name: &str) -> Result<Self, AttachmentError> {
        check_content_type(content_type).map_err(|reason| AttachmentError::InvalidMetadata {
            field: "content type",
            reason,
        })?;
        check_file_name(file_name).map_err(|rule| AttachmentError::InvalidFileName { rule })?;
        Ok(Self {
            content_type: content_type.into(),
            file_name: file_name.into(),
            chunk_size: ChunkSize::DEFAULT,
        })
    }

    /// The same metadata, sealed with another chunk size.
    #[must_use]
    pub fn with_chunk_size(mut self, chunk_size: ChunkSize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// The content type (MIME type).
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The file name.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// The chunk size the file will be sealed with.
    pub fn chunk_size(&self) -> ChunkSize {
        self.chunk_size
    }

    /// The length of the sealed file for a `plaintext_len`-byte plaintext sealed with this
    /// metadata ([`Layout::sealed_len`] as a `usize`): the capacity to reserve for
    /// [`seal_in_place`](super::seal_in_place) to seal without reallocating.
    ///
    /// ```
    /// use ratchetbox::attachment::AttachmentMetadata;
    ///
    /// let meta = AttachmentMetadata::default();
    /// // 70-byte prefix, 100_352 padded bytes in two chunks with their tags, three hashes.
    /// assert_eq!(meta.sealed_len(100_000)?, 70 + 100_352 + 2 * 16 + 3 * 32);
    /// # Ok::<(), ratchetbox::AttachmentError>(())
    /// ```
    ///
    /// # Errors
    /// [`AttachmentError::TooLarge`] if the plaintext exceeds the format's 2^50-byte limit or
    /// the sealed file would not fit in memory.
    pub fn sealed_len(&self, plaintext_len: usize) -> Result<usize, AttachmentError> {
        let len = u64::try_from(plaintext_len)
            .map_err(|_| AttachmentError::TooLarge { len: u64::MAX })?;
        let sealed_len = Layout::new(len, self.chunk_size)?.sealed_len();
        usize::try_from(sealed_len).map_err(|_| AttachmentError::TooLarge { len })
    }
}

fn check_content_type(value: &str) -> Result<(), &'static str> {
    if value.len() > MAX_CONTENT_TYPE_LEN {
        return Err("longer than 255 bytes");
    }
    if value.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    Ok(())
}

/// Checks `name` against the file name rules of `docs/PROTOCOL.md` section 13.4, in the
/// order of [`FileNameRule`], and returns the first rule it breaks. The empty name passes.
pub(crate) fn check_file_name(name: &str) -> Result<(), FileNameRule> {
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(FileNameRule::TooLong);
    }
    // The characters' rules come first in `FileNameRule`'s order: report the first one.
    if let Some(rule) = name.chars().filter_map(character_rule).min() {
        return Err(rule);
    }
    if name == "." || name == ".." {
        return Err(FileNameRule::DotName);
    }
    if name.starts_with(char::is_whitespace) {
        return Err(FileNameRule::LeadingWhitespace);
    }
    if name.ends_with(|c: char| c == '.' || c.is_whitespace()) {
        return Err(FileNameRule::TrailingDotOrWhitespace);
    }
    if is_device_name(name) {
        return Err(FileNameRule::ReservedDeviceName);
    }
    Ok(())
}

/// The rule a single character of a file name breaks wherever it stands, if any.
fn character_rule(c: char) -> Option<FileNameRule> {
    match c {
        _ if c.is_control() => Some(FileNameRule::ControlCharacter),
        _ if c.general_category() == GeneralCategory::Format => Some(FileNameRule::FormatCharacter),
        '\u{2028}' | '\u{2029}' => Some(FileNameRule::LineSeparator),
        '/' | '\\' => Some(FileNameRule::PathSeparator),
        ':' => Some(FileNameRule::Colon),
        '<' | '>' | '"' | '|' | '?' | '*' => Some(FileNameRule::ReservedCharacter),
        _ => None,
    }
}

/// Windows device names: a name whose part before the first dot, without trailing spaces,
/// is one of these in any case opens the device, not a file (`con.txt`, `CON .txt`).
/// U+00B9, U+00B2 and U+00B3 are the superscript digits 1, 2 and 3.
const DEVICE_NAMES: [&str; 32] = [
    "CON",
    "PRN",
    "AUX",
    "NUL",
    "CONIN$",
    "CONOUT$",
    "COM0",
    "COM1",
    "COM2",
    "COM3",
    "COM4",
    "COM5",
    "COM6",
    "COM7",
    "COM8",
    "COM9",
    "COM\u{B9}",
    "COM\u{B2}",
    "COM\u{B3}",
    "LPT0",
    "LPT1",
    "LPT2",
    "LPT3",
    "LPT4",
    "LPT5",
    "LPT6",
    "LPT7",
    "LPT8",
    "LPT9",
    "LPT\u{B9}",
    "LPT\u{B2}",
    "LPT\u{B3}",
];

/// Whether the part of `name` before its first dot, without trailing U+0020 spaces and
/// uppercased (Unicode default case mapping, so `ı` counts as `I`), is a device name.
fn is_device_name(name: &str) -> bool {
    let stem = name
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches(' ');
    let upper = stem.chars().flat_map(char::to_uppercase);
    DEVICE_NAMES
        .iter()
        .any(|device| upper.clone().eq(device.chars()))
}

fn check_locator(value: &[u8]) -> Result<(), &'static str> {
    if value.len() > MAX_LOCATOR_LEN {
        return Err("longer than 2048 bytes");
    }
    Ok(())
}

/// What travels inside the conversation to let the receiver fetch and open a sealed file:
/// the file key, the plaintext size, the root that commits to every chunk of the sealed
/// file (and to its header), the format
/// version, the sender's content type and file name, and an opaque locator the app fills in
/// (where it uploaded the sealed file).
///
/// Encoded as `0x01 || protobuf(AttachmentPointer)` (`proto/attachment.proto`). It holds the
/// file key: it is not `Clone`, its `Debug` omits the key, and it zeroizes on drop; the bytes
/// from [`to_bytes`](Self::to_bytes) zeroize on drop too.
///
/// ```
/// use ratchetbox::attachment::{self, AttachmentMetadata, AttachmentPointer};
///
/// let mut rng = ratchetbox::OsRng::new();
/// let meta = AttachmentMetadata::new("text/plain", "notes.txt")?;
/// let (mut pointer, sealed) = attachment::seal(&mut rng, b"hello", meta)?;
/// pointer.set_locator(b"https://cdn.example/abc".to_vec())?;
///
/// // The pointer travels inside the ratchet; the sealed bytes travel anywhere.
/// let received = AttachmentPointer::from_bytes(&pointer.to_bytes())?;
/// assert_eq!(received.file_name(), "notes.txt");
/// assert_eq!(received.locator(), b"https://cdn.example/abc");
/// assert_eq!(attachment::open(&received, &sealed)?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentPointer {
    file_key: FileKey,
    plaintext_len: u64,
    root: [u8; ROOT_LEN],
    content_type: String,
    file_name: String,
    locator: Vec<u8>,
}

impl AttachmentPointer {
    pub(crate) fn new(
        file_key: FileKey,
        plaintext_len: u64,
        root: [u8; ROOT_LEN],
        metadata: AttachmentMetadata,
    ) -> Self {
        Self {
            file_key,
            plaintext_len,
            root,
            content_type: metadata.content_type,
            file_name: metadata.file_name,
            locator: Vec::new(),
        }
    }

    /// Decodes and validates a pointer: version byte, canonical encoding, format version 2,
    /// 32-byte key and root, plaintext size within [`MAX_PLAINTEXT_LEN`], the metadata
    /// rules of [`AttachmentMetadata::new`] (a file name that breaks one is
    /// [`DecodeError::InvalidFileName`]) and a locator of at most 2048 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut message: generated::AttachmentPointer = wire::decode(bytes, OBJECT)?;
        // The decoded copy of the key is wiped on every path out of here.
        let key_bytes = Zeroizing::new(core::mem::take(&mut message.file_key));
        if message.version != u32::from(FORMAT_VERSION) {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "version",
                reason: "unsupported attachment format version (this build reads version 2)",
            });
        }
        let file_key = FileKey(*Zeroizing::new(wire::fixed::<FILE_KEY_LEN>(
            &key_bytes, OBJECT, "file_key",
        )?));
        let root = wire::fixed::<ROOT_LEN>(&message.root, OBJECT, "root")?;
        if message.plaintext_size > MAX_PLAINTEXT_LEN {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "plaintext_size",
                reason: "larger than 2^50 bytes",
            });
        }
        let invalid = |field| {
            move |reason| DecodeError::InvalidValue {
                object: OBJECT,
                field,
                reason,
            }
        };
        check_content_type(&message.content_type).map_err(invalid("content_type"))?;
        check_file_name(&message.file_name)
            .map_err(|rule| DecodeError::InvalidFileName { rule })?;
        check_locator(&message.locator).map_err(invalid("locator"))?;
        Ok(Self {
            file_key,
            plaintext_len: message.plaintext_size,
            root,
            content_type: core::mem::take(&mut message.content_type),
            file_name: core::mem::take(&mut message.file_name),
            locator: core::mem::take(&mut message.locator),
        })
    }

    /// Encodes the pointer as `0x01 || protobuf`. The bytes hold the file key and zeroize
    /// on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut message = generated::AttachmentPointer {
            version: u32::from(FORMAT_VERSION),
            file_key: self.file_key.0.to_vec(),
            plaintext_size: self.plaintext_len,
            root: self.root.to_vec(),
            content_type: self.content_type.clone(),
            file_name: self.file_name.clone(),
            locator: self.locator.clone(),
        };
        let bytes = Zeroizing::new(wire::encode(&message));
        // The message's copy of the key is not left behind in freed memory.
        message.file_key.zeroize();
        bytes
    }

    /// The format version of the sealed file (2).
    pub fn version(&self) -> u8 {
        FORMAT_VERSION
    }

    /// The file key.
    pub fn file_key(&self) -> &FileKey {
        &self.file_key
    }

    /// The plaintext size in bytes.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// The root that commits to the sealed file: BLAKE3 over its header, key commitment and
    /// the root of the hash tree over its chunks (`docs/PROTOCOL.md` section 13). Every
    /// opener checks each chunk against it before releasing any of it; an app or server can
    /// check a download against it without the key.
    pub fn root(&self) -> &[u8; ROOT_LEN] {
        &self.root
    }

    /// The content type the sender gave (untrusted: the sender chose it).
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The file name the sender gave. The sender chose it, but it passed the file name rules
    /// of [`AttachmentMetadata::new`] when the pointer was decoded: it is a single file name
    /// (no path, drive, stream or device) without invisible characters, or empty when the
    /// sender gave none. It is not normalized, and it can still imitate another name with
    /// look-alike letters or claim any extension: show it as the sender's words.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Where the app put the sealed file; empty until set.
    pub fn locator(&self) -> &[u8] {
        &self.locator
    }

    /// Sets the locator (at most 2048 bytes), typically after uploading the sealed file.
    pub fn set_locator(&mut self, locator: Vec<u8>) -> Result<(), AttachmentError> {
        check_locator(&locator).map_err(|reason| AttachmentError::InvalidMetadata {
            field: "locator",
            reason,
        })?;
        self.locator.zeroize();
        self.locator = locator;
        Ok(())
    }

    /// The length the sealed file has if it was sealed with `chunk_size` chunks (the chunk
    /// size is in the sealed file's header; [`seal`](super::seal) uses
    /// [`ChunkSize::DEFAULT`] unless the metadata says otherwise).
    pub fn sealed_len(&self, chunk_size: ChunkSize) -> Result<u64, AttachmentError> {
        Layout::new(self.plaintext_len, chunk_size).map(|layout| layout.sealed_len())
    }
}

impl fmt::Debug for AttachmentPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Hex<'a>(&'a [u8]);
        impl fmt::Debug for Hex<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, self.0)
            }
        }
        f.debug_struct("AttachmentPointer")
            .field("version", &FORMAT_VERSION)
            .field("plaintext_len", &self.plaintext_len)
            .field("root", &Hex(&self.root))
            .field("content_type", &self.content_type)
            .field("file_name", &self.file_name)
            .field("locator_len", &self.locator.len())
            .finish_non_exhaustive()
    }
}
