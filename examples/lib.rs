//! No library code: this package holds the examples of ratchetbox (`chat.rs`,
//! `seal_stream.rs`; see `README.md` here). Cargo needs a library or binary target in every
//! package, so this file is that target.

#![forbid(unsafe_code)]
