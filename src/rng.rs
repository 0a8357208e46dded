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

#[cfg(test)]
mod tests {
    use rand_core::Rng;

    use super::OsRng;

    /// Each way of drawing reaches the operating system: four draws are not all equal
    /// (a chance of 2^-96 for `u32`) and 64 filled bytes are not all zero.
    #[test]
    fn every_draw_comes_from_the_system() {
        let mut rng = OsRng::new();
        let small: [u32; 4] = core::array::from_fn(|_| rng.next_u32());
        assert!(small.iter().any(|&x| x != small[0]), "{small:?}");
        let large: [u64; 4] = core::array::from_fn(|_| rng.next_u64());
        assert!(large.iter().any(|&x| x != large[0]), "{large:?}");
        let mut bytes = [0u8; 64];
        rng.fill_bytes(&mut bytes);
        assert!(bytes.iter().any(|&b| b != 0));
    }
}
