//! Wall-clock time as the app reports it. ratchetbox never reads a clock itself.

use core::fmt;

#[cfg(feature = "std")]
use crate::error::TimestampError;

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

/// The system time, in whole seconds since the Unix epoch (a fraction of a second is dropped,
/// rounding down). A time before the epoch is refused with [`TimestampError::BeforeEpoch`]
/// (a `Timestamp` cannot express it; [`Timestamp::now`] reads it as the epoch instead). Every
/// later time fits: a `u64` of seconds is what `SystemTime` measures from the epoch.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use ratchetbox::{Timestamp, TimestampError};
/// let t = UNIX_EPOCH + Duration::from_millis(1_764_000_000_999);
/// assert_eq!(Timestamp::try_from(t), Ok(Timestamp::from_unix_secs(1_764_000_000)));
/// let before = UNIX_EPOCH - Duration::from_nanos(1);
/// assert_eq!(Timestamp::try_from(before), Err(TimestampError::BeforeEpoch));
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[cfg(feature = "std")]
impl TryFrom<std::time::SystemTime> for Timestamp {
    type Error = TimestampError;

    fn try_from(time: std::time::SystemTime) -> Result<Self, Self::Error> {
        time.duration_since(std::time::UNIX_EPOCH)
            .map(|since| Self(since.as_secs()))
            .map_err(|_| TimestampError::BeforeEpoch)
    }
}

/// The timestamp as a system time. A time later than `SystemTime` can hold on this platform
/// is refused with [`TimestampError::Overflow`] (on Unix, `SystemTime` holds up to `i64::MAX`
/// seconds after the epoch, so [`Timestamp::MAX`] does not fit).
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use ratchetbox::{Timestamp, TimestampError};
/// let t = Timestamp::from_unix_secs(1_764_000_000);
/// assert_eq!(SystemTime::try_from(t), Ok(UNIX_EPOCH + Duration::from_secs(1_764_000_000)));
/// assert_eq!(
///     SystemTime::try_from(Timestamp::MAX),
///     Err(TimestampError::Overflow { secs: u64::MAX })
/// );
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[cfg(feature = "std")]
impl TryFrom<Timestamp> for std::time::SystemTime {
    type Error = TimestampError;

    fn try_from(time: Timestamp) -> Result<Self, Self::Error> {
        std::time::UNIX_EPOCH
            .checked_add(core::time::Duration::from_secs(time.0))
            .ok_or(TimestampError::Overflow { secs: time.0 })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use std::string::ToString;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::Timestamp;
    use crate::error::TimestampError;

    #[test]
    fn system_time_to_timestamp_rounds_down_and_refuses_times_before_the_epoch() {
        assert_eq!(Timestamp::try_from(UNIX_EPOCH), Ok(Timestamp::EPOCH));
        let almost_two = UNIX_EPOCH + Duration::new(1, 999_999_999);
        assert_eq!(
            Timestamp::try_from(almost_two),
            Ok(Timestamp::from_unix_secs(1))
        );
        assert_eq!(
            Timestamp::try_from(UNIX_EPOCH - Duration::from_nanos(1)),
            Err(TimestampError::BeforeEpoch)
        );
        assert_eq!(
            Timestamp::try_from(UNIX_EPOCH - Duration::from_secs(86_400)),
            Err(TimestampError::BeforeEpoch)
        );
    }

    #[test]
    fn timestamp_to_system_time_refuses_what_the_platform_cannot_hold() {
        assert_eq!(SystemTime::try_from(Timestamp::EPOCH), Ok(UNIX_EPOCH));
        let t = Timestamp::from_unix_secs(1_764_000_000);
        let system = SystemTime::try_from(t).unwrap();
        assert_eq!(system, UNIX_EPOCH + Duration::from_secs(1_764_000_000));
        assert_eq!(Timestamp::try_from(system), Ok(t));
        assert_eq!(
            SystemTime::try_from(Timestamp::MAX),
            Err(TimestampError::Overflow { secs: u64::MAX })
        );
        assert_eq!(
            TimestampError::Overflow { secs: u64::MAX }.to_string(),
            "18446744073709551615 s after the Unix epoch is later than std::time::SystemTime can hold on this platform"
        );
    }

    #[test]
    fn now_reads_the_system_clock_in_whole_seconds() {
        let secs = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_secs()
        };
        let before = secs();
        let now = Timestamp::now().as_unix_secs();
        let after = secs();
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
        // After 2026-01-01, whatever machine runs this.
        assert!(now > 1_767_225_600);
    }

    #[test]
    fn a_timestamp_displays_as_seconds() {
        assert_eq!(
            Timestamp::from_unix_secs(1_764_000_000).to_string(),
            "1764000000s"
        );
        assert_eq!(Timestamp::EPOCH.to_string(), "0s");
    }

    /// On Unix, `SystemTime` holds whole seconds up to `i64::MAX`: the exact boundary.
    #[cfg(unix)]
    #[test]
    fn the_unix_boundary_is_i64_max_seconds() {
        let last = Timestamp::from_unix_secs(i64::MAX as u64);
        assert_eq!(
            SystemTime::try_from(last).map(Timestamp::try_from),
            Ok(Ok(last))
        );
        let first_too_late = i64::MAX as u64 + 1;
        assert_eq!(
            SystemTime::try_from(Timestamp::from_unix_secs(first_too_late)),
            Err(TimestampError::Overflow {
                secs: first_too_late
            })
        );
    }
}
