//! Streams N bytes of generated data through `attachment::seal_stream` (and optionally back
//! through `attachment::open_stream`) to measure throughput and peak memory.
//!
//! ```text
//! cargo build --release --example seal_stream
//! /usr/bin/time -v target/release/examples/seal_stream baseline 1GiB   # generator only
//! /usr/bin/time -v target/release/examples/seal_stream seal 1GiB       # seal to a sink
//! /usr/bin/time -v target/release/examples/seal_stream open 1GiB /tmp/sealed.bin
//!     # seal into the file, then open it from the file, checking every byte
//! cargo build --release --example seal_stream --features parallel
//! /usr/bin/time -v target/release/examples/seal_stream seal-parallel 1GiB
//! /usr/bin/time -v target/release/examples/seal_stream open-parallel 1GiB /tmp/sealed.bin
//! target/release/examples/seal_stream range 1GiB /tmp/sealed.bin
//!     # seal into the file, then read one 64 KiB range by random access: bytes and time
//! ```
//! Compare "Maximum resident set size" of `seal`/`open` with `baseline`: the difference
//! is what sealing or opening costs in memory, whatever N is.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::time::Instant;

use ratchetbox::attachment::{self, AttachmentMetadata};

/// N bytes of cheap deterministic data (xorshift64 words), produced on demand, never
/// stored. The byte stream does not depend on how it is read.
struct Generator {
    remaining: u64,
    state: u64,
    /// Bytes of the current word not yet returned (the last `pending` bytes of `word`).
    word: [u8; 8],
    pending: usize,
}

impl Generator {
    fn new(len: u64) -> Self {
        Self {
            remaining: len,
            state: 0x9E37_79B9_7F4A_7C15,
            word: [0; 8],
            pending: 0,
        }
    }

    fn next_word(&mut self) -> [u8; 8] {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state.to_le_bytes()
    }
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let mut out = &mut buf[..n];
        // Leftover bytes of the previous word first.
        let take = self.pending.min(out.len());
        out[..take].copy_from_slice(&self.word[8 - self.pending..8 - self.pending + take]);
        self.pending -= take;
        out = &mut out[take..];
        let mut words = out.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_word());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            self.word = self.next_word();
            tail.copy_from_slice(&self.word[..tail.len()]);
            self.pending = 8 - tail.len();
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A writer that compares everything written with a second generator.
struct Verifier {
    expected: Generator,
    buf: Vec<u8>,
    written: u64,
}

impl Write for Verifier {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.resize(data.len(), 0);
        self.expected.read_exact(&mut self.buf)?;
        if self.buf != data {
            return Err(io::Error::other(format!(
                "plaintext differs near offset {}",
                self.written
            )));
        }
        self.written += data.len() as u64;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A sink that counts bytes.
#[derive(Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0 += data.len() as u64;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().ok()?;
    let mult = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

/// Reports a seal of `len` bytes into `sink` that began at `started`; `how` follows the
/// sealed size (" on all cores", say).
fn print_sealed(
    len: u64,
    sink: &Counter,
    how: &str,
    started: Instant,
    pointer: &attachment::AttachmentPointer,
) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sealed {len} bytes into {} bytes{how} in {secs:.2} s ({:.0} MiB/s of plaintext)",
        sink.0,
        mib_per_s(len, secs)
    );
    let root: String = pointer.root().iter().map(|b| format!("{b:02x}")).collect();
    println!("root {root}");
}

/// `open_stream_parallel`, or an error without the `parallel` feature.
fn open_parallel(
    pointer: &attachment::AttachmentPointer,
    file: &mut BufReader<File>,
    verifier: &mut Verifier,
) -> Result<u64, Box<dyn std::error::Error>> {
    #[cfg(feature = "parallel")]
    return Ok(attachment::open_stream_parallel(pointer, file, verifier)?);
    #[cfg(not(feature = "parallel"))]
    {
        let _ = (pointer, file, verifier);
        Err("open-parallel needs --features parallel".into())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: seal_stream (baseline|seal|seal-parallel|open|open-parallel|range) SIZE [FILE]   (SIZE like 1GiB)";
    let mode = args.get(1).ok_or(usage)?.as_str();
    let len = args.get(2).and_then(|s| parse_size(s)).ok_or(usage)?;
    let mut rng = ratchetbox::OsRng::new();
    let started = Instant::now();
    match mode {
        "baseline" => {
            let copied = io::copy(&mut Generator::new(len), &mut Counter::default())?;
            let secs = started.elapsed().as_secs_f64();
            println!("generated {copied} bytes in {secs:.2} s");
        }
        "seal" => {
            let mut sink = Counter::default();
            let pointer = attachment::seal_stream(
                &mut rng,
                &mut Generator::new(len),
                &mut sink,
                AttachmentMetadata::default(),
            )?;
            print_sealed(len, &sink, "", started, &pointer);
        }
        #[cfg(feature = "parallel")]
        "seal-parallel" => {
            let mut sink = Counter::default();
            let pointer = attachment::seal_stream_parallel(
                &mut rng,
                &mut Generator::new(len),
                &mut sink,
                AttachmentMetadata::default(),
            )?;
            print_sealed(len, &sink, " on all cores", started, &pointer);
        }
        "open" | "open-parallel" => {
            let parallel = mode == "open-parallel";
            let path = args.get(3).ok_or(usage)?;
            let pointer = {
                let mut file = BufWriter::new(File::create(path)?);
                attachment::seal_stream(
                    &mut rng,
                    &mut Generator::new(len),
                    &mut file,
                    AttachmentMetadata::default(),
                )?
            };
            let sealed_secs = started.elapsed().as_secs_f64();
            let opening = Instant::now();
            let mut verifier = Verifier {
                expected: Generator::new(len),
                buf: Vec::new(),
                written: 0,
            };
            let mut file = BufReader::new(File::open(path)?);
            let opened = if parallel {
                open_parallel(&pointer, &mut file, &mut verifier)?
            } else {
                attachment::open_stream(&pointer, &mut file, &mut verifier)?
            };
            let open_secs = opening.elapsed().as_secs_f64();
            std::fs::remove_file(path)?;
            println!(
                "sealed {len} bytes to {path} in {sealed_secs:.2} s; opened and checked {opened} bytes in {open_secs:.2} s ({:.0} MiB/s)",
                mib_per_s(opened, open_secs)
            );
        }
        "range" => {
            use std::os::unix::fs::FileExt;
            let path = args.get(3).ok_or(usage)?;
            let pointer = {
                let mut file = BufWriter::new(File::create(path)?);
                attachment::seal_stream(
                    &mut rng,
                    &mut Generator::new(len),
                    &mut file,
                    AttachmentMetadata::default(),
                )?
            };
            let file = File::open(path)?;
            let sealed_len = file.metadata()?.len();
            let reading = Instant::now();
            let mut prefix = [0u8; attachment::PREFIX_LEN];
            file.read_exact_at(&mut prefix, 0)?;
            let access = attachment::RandomAccess::new(&pointer, &prefix, sealed_len)?;
            // A 64 KiB range aligned on a chunk in the middle of the file.
            let start = (len / 2) & !0xFFFF;
            let (fetched, reads) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u32));
            let range = access.read_range(start..start + 65_536, |offset, buf| {
                fetched.set(fetched.get() + buf.len() as u64);
                reads.set(reads.get() + 1);
                file.read_exact_at(buf, offset)
            })?;
            let secs = reading.elapsed().as_secs_f64();
            std::fs::remove_file(path)?;
            let mut expected = Generator::new(start + 65_536);
            io::copy(&mut (&mut expected).take(start), &mut io::sink())?;
            let mut want = Vec::new();
            expected.read_to_end(&mut want)?;
            assert_eq!(range, want, "the range's plaintext");
            println!(
                "read {} plaintext bytes at {start} of a {len}-byte file: fetched {} bytes in {} reads \
                 (+{} prefix bytes), {:.3} ms from the open file, checked",
                range.len(),
                fetched.get(),
                reads.get(),
                attachment::PREFIX_LEN,
                secs * 1000.0
            );
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
