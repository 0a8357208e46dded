//! Wall-clock time as the app reports it. ratchetbox never reads a clock itself.

use core::fmt;

/// A point in time: whole seconds since the Unix epoch (1970-01-01T00:00:00Z).
///
/// Every ratchetbox call that needs the time takes it as an argument, so the library works
/// without `std`, and tests and fuzzers control the clock.
///
/// ```
/// use ratchetbox::Timestamp;
/// let t = Timestamp::from_unix_secs(1_764_000_000);
/// assert_eq!(t.as_unix_secs(), 1_764_000_000);
/// assert_eq!(t.saturating_add_secs(u64::MAX), Timestamp::MAX);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);
    /// The largest representable time.
    pub const MAX: Self = Self(u64::MAX);

    /// A timestamp `secs` seconds after the Unix epoch.
    pub const fn from_unix_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// Seconds since the Unix epoch.
    pub const fn as_unix_secs(self) -> u64 {
        self.0
    }

    /// `self + secs`, saturating at [`Timestamp::MAX`].
    pub const fn saturating_add_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// `self - secs`, saturating at [`Timestamp::EPOCH`].
    pub const fn saturating_sub_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_sub(secs))
    }

    /// The current time from the operating system clock (a time before 1970 reads as the epoch).
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    #[cfg(feature = "std")]
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self(secs)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}
