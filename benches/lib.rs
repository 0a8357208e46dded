//! The benchmarks of ratchetbox: the criterion benches `protocol.rs` and `attachment.rs` and
//! the throughput tools in `examples/` (see docs/BENCHMARKS.md). The library itself holds
//! only [`report`]: the throughput tool's saved measurements and the results table and SVG
//! charts drawn from them, which can be tested without timing anything
//! (`cargo test -p ratchetbox-bench --lib`).

#![forbid(unsafe_code)]

pub mod report;
