//! The operating system's random number generator, behind the `std` feature.

use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng, UnwrapErr};

/// The operating system's cryptographically secure random number generator (`getrandom`).
///
/// Every ratchetbox function that needs randomness takes `&mut impl CryptoRng`, so tests and
/// fuzzers can pass a seeded generator; this is the convenience for everything else. It
/// panics if the operating system cannot provide randomness, which on supported platforms
/// does not happen after boot.
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Debug, Default)]
pub struct OsRng(UnwrapErr<getrandom::SysRng>);

impl OsRng {
    /// The OS generator.
    pub fn new() -> Self {
        Self(UnwrapErr(getrandom::SysRng))
    }
}

impl TryRng for OsRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.0.try_next_u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0.try_next_u64()
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.try_fill_bytes(dst)
    }
}

impl TryCryptoRng for OsRng {}
