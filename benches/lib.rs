//! No library code: this package holds the benchmarks of ratchetbox (the criterion benches
//! `protocol.rs` and `attachment.rs`, and the throughput tools in `examples/`; see
//! docs/BENCHMARKS.md). Cargo needs a library or binary target in every package, so this
//! file is that target.

#![forbid(unsafe_code)]
