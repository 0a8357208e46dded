//! Disappearing messages: the per-conversation timer, how honest peers agree on it, and
//! deadlines computed from local events only.
//!
//! Every message's content carries the sender's current timer (seconds, 0 = off) and its
//! version. Changing the timer bumps the version to `current + 1`. On receipt a higher
//! version is adopted, a lower one is ignored for the conversation (the message itself still
//! expires by its own timer), and two different timers with the same version converge on the
//! more private one (the shorter timer; "off" counts as infinitely long). Ordering settings by
//! (version, privacy) makes "apply an update" a maximum in a total order, so any two honest
//! peers that have applied the same updates, in any order and with any duplicates, hold the
//! same setting.
//!
//! Versions go up to [`ExpiryTimer::MAX_VERSION`] (2^32 - 2); a received timer with a higher
//! version is invalid metadata and the message is rejected. A setting at `MAX_VERSION` can no
//! longer be changed. Honest peers add one per change and never get there, but the order has
//! a top: a peer that sends `MAX_VERSION` pins the setting (as it could override any change
//! by answering with a higher version anyway).
//!
//! What this guarantees, and what it does not: the setting is end-to-end encrypted and
//! authenticated, honest clients agree on it, and ratchetbox erases its own keys on schedule
//! (see [`SessionRecord::prune`](crate::SessionRecord::prune)). Deleting messages is the app's
//! job, and nobody can force a peer to delete: a modified client, a screenshot or a camera can
//! keep anything it was able to read.

use core::fmt;

pub use crate::error::ExpiryError;
use crate::time::Timestamp;

/// The longest allowed timer: 365 days.
pub const MAX_TIMER_SECS: u32 = 365 * 24 * 60 * 60;

/// A disappearing-message timer and its version.
///
/// `seconds == 0` means off. Valid timers: off with a version of at most
/// [`MAX_VERSION`](Self::MAX_VERSION), or 1 to [`MAX_TIMER_SECS`] seconds with a version from
/// 1 to [`MAX_VERSION`](Self::MAX_VERSION).
///
/// ```
/// use ratchetbox::ExpiryTimer;
/// let hour = ExpiryTimer::new(3600, 1)?;
/// assert_eq!(hour.seconds(), 3600);
/// assert!(ExpiryTimer::new(3600, 0).is_err()); // a timer needs a version
/// assert!(ExpiryTimer::new(3600, u32::MAX).is_err()); // above MAX_VERSION
/// # Ok::<(), ratchetbox::ExpiryError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExpiryTimer {
    seconds: u32,
    version: u32,
}

impl ExpiryTimer {
    /// Disappearing messages off, never changed.
    pub const OFF: Self = Self {
        seconds: 0,
        version: 0,
    };

    /// The largest valid version, 2^32 - 2. Version 2^32 - 1 is invalid (received, it is
    /// rejected with [`ExpiryError::VersionOverflow`]), so `version + 1` of a valid timer
    /// always fits in 32 bits. Once the setting is at this version it can no longer be changed
    /// ([`ExpiryError::VersionExhausted`]).
    pub const MAX_VERSION: u32 = u32::MAX - 1;

    /// A timer of `seconds` (0 = off) with `version`, validated.
    pub fn new(seconds: u32, version: u32) -> Result<Self, ExpiryError> {
        if seconds > MAX_TIMER_SECS {
            return Err(ExpiryError::TimerOutOfRange {
                seconds,
                max: MAX_TIMER_SECS,
            });
        }
        if seconds > 0 && version == 0 {
            return Err(ExpiryError::TimerWithoutVersion { seconds });
        }
        if version > Self::MAX_VERSION {
            return Err(ExpiryError::VersionOverflow {
                version,
                max: Self::MAX_VERSION,
            });
        }
        Ok(Self { seconds, version })
    }

    /// The timer in seconds; 0 means off.
    pub fn seconds(&self) -> u32 {
        self.seconds
    }

    /// The version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Whether messages disappear.
    pub fn is_on(&self) -> bool {
        self.seconds > 0
    }

    /// When a message under this timer expires, counting from `start` (the local send time
    /// for a sent message, the local time it was read for a received one). `None` if off.
    pub fn deadline(&self, start: Timestamp) -> Option<Timestamp> {
        self.is_on()
            .then(|| start.saturating_add_secs(u64::from(self.seconds)))
    }

    /// The order in which settings win: higher version first, then the more private timer
    /// (shorter; off is the least private).
    fn rank(&self) -> (u32, u32) {
        let privacy = if self.seconds == 0 {
            0
        } else {
            MAX_TIMER_SECS - self.seconds + 1
        };
        (self.version, privacy)
    }

    /// The setting both peers converge on.
    pub(crate) fn merge(self, other: Self) -> Self {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// The timer that replaces this one when the user changes it to `seconds`: the version
    /// goes up by one, and never beyond [`MAX_VERSION`](Self::MAX_VERSION).
    pub(crate) fn changed_to(self, seconds: u32) -> Result<Self, ExpiryError> {
        if self.version >= Self::MAX_VERSION {
            return Err(ExpiryError::VersionExhausted);
        }
        // `self.version < MAX_VERSION < u32::MAX`: no overflow.
        Self::new(seconds, self.version + 1)
    }
}

impl fmt::Display for ExpiryTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seconds == 0 {
            write!(f, "off (version {})", self.version)
        } else {
            write!(f, "{} s (version {})", self.seconds, self.version)
        }
    }
}

/// What receiving a message did to the conversation's timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerChange {
    /// The setting did not change.
    Unchanged,
    /// The peer's setting replaced ours.
    Changed {
        /// The setting before.
        from: ExpiryTimer,
        /// The setting now.
        to: ExpiryTimer,
    },
}

/// Applies a received timer to the conversation's setting.
pub(crate) fn observe(setting: &mut ExpiryTimer, received: ExpiryTimer) -> TimerChange {
    let merged = setting.merge(received);
    if merged == *setting {
        TimerChange::Unchanged
    } else {
        let from = core::mem::replace(setting, merged);
        TimerChange::Changed { from, to: merged }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn timer() -> impl Strategy<Value = ExpiryTimer> {
        (0..=MAX_TIMER_SECS, 0..5u32).prop_filter_map("valid", |(s, v)| {
            let s = if s % 3 == 0 { 0 } else { s % 100 };
            ExpiryTimer::new(s, v).ok()
        })
    }

    /// At one version the shorter timer wins, and any timer beats off, up to the longest
    /// (the random timers of the properties below stay under 100 s): 365 days against off,
    /// and against 365 days less one second, in both orders.
    #[test]
    fn at_one_version_the_shorter_timer_wins_up_to_the_longest() {
        let timer = |seconds| ExpiryTimer::new(seconds, 7).expect("a valid timer");
        let (off, longest, one_less, second) =
            (timer(0), timer(31_536_000), timer(31_535_999), timer(1));
        for (a, b, winner) in [
            (off, longest, longest),
            (longest, one_less, one_less),
            (one_less, second, second),
            (off, second, second),
        ] {
            assert_eq!(a.merge(b), winner, "{a} against {b}");
            assert_eq!(b.merge(a), winner, "{b} against {a}");
        }
    }

    #[test]
    fn a_timer_displays_its_seconds_and_version() {
        let shown = |seconds, version| {
            alloc::format!(
                "{}",
                ExpiryTimer::new(seconds, version).expect("a valid timer")
            )
        };
        assert_eq!(shown(0, 0), "off (version 0)");
        assert_eq!(shown(0, 4), "off (version 4)");
        assert_eq!(shown(3600, 2), "3600 s (version 2)");
    }

    #[test]
    fn validation() {
        assert!(ExpiryTimer::new(0, 0).is_ok());
        assert!(ExpiryTimer::new(0, 7).is_ok());
        assert_eq!(
            ExpiryTimer::new(5, 0),
            Err(ExpiryError::TimerWithoutVersion { seconds: 5 })
        );
        assert_eq!(
            ExpiryTimer::new(MAX_TIMER_SECS + 1, 1),
            Err(ExpiryError::TimerOutOfRange {
                seconds: MAX_TIMER_SECS + 1,
                max: MAX_TIMER_SECS
            })
        );
        assert!(ExpiryTimer::new(MAX_TIMER_SECS, ExpiryTimer::MAX_VERSION).is_ok());
        assert!(ExpiryTimer::new(0, ExpiryTimer::MAX_VERSION).is_ok());
        for seconds in [0, 60, MAX_TIMER_SECS] {
            assert_eq!(
                ExpiryTimer::new(seconds, u32::MAX),
                Err(ExpiryError::VersionOverflow {
                    version: u32::MAX,
                    max: u32::MAX - 1
                }),
                "{seconds} s"
            );
        }
        // Out of range wins over the other checks.
        assert!(matches!(
            ExpiryTimer::new(u32::MAX, u32::MAX),
            Err(ExpiryError::TimerOutOfRange { .. })
        ));
    }

    #[test]
    fn changes_count_up_to_the_last_version_and_never_produce_an_invalid_one() {
        let before_last = ExpiryTimer::new(60, ExpiryTimer::MAX_VERSION - 1).unwrap();
        let last = before_last.changed_to(30).unwrap();
        assert_eq!(
            last,
            ExpiryTimer::new(30, ExpiryTimer::MAX_VERSION).unwrap()
        );
        assert_eq!(last.changed_to(30), Err(ExpiryError::VersionExhausted));
        assert_eq!(last.changed_to(0), Err(ExpiryError::VersionExhausted));
        assert_eq!(
            ExpiryTimer::OFF.changed_to(5),
            Ok(ExpiryTimer::new(5, 1).unwrap())
        );
        assert!(matches!(
            ExpiryTimer::OFF.changed_to(MAX_TIMER_SECS + 1),
            Err(ExpiryError::TimerOutOfRange { .. })
        ));
    }

    #[test]
    fn equal_versions_converge_on_the_shorter_timer_and_off_loses() {
        let a = ExpiryTimer::new(60, 3).unwrap();
        let b = ExpiryTimer::new(30, 3).unwrap();
        let off = ExpiryTimer::new(0, 3).unwrap();
        assert_eq!(a.merge(b), b);
        assert_eq!(b.merge(a), b);
        assert_eq!(off.merge(a), a);
        assert_eq!(a.merge(off), a);
        // A higher version wins whatever its timer.
        let later_off = ExpiryTimer::new(0, 4).unwrap();
        assert_eq!(b.merge(later_off), later_off);
    }

    #[test]
    fn deadlines_saturate() {
        let t = ExpiryTimer::new(MAX_TIMER_SECS, 1).unwrap();
        assert_eq!(t.deadline(Timestamp::MAX), Some(Timestamp::MAX));
        assert_eq!(
            t.deadline(Timestamp::EPOCH),
            Some(Timestamp::from_unix_secs(u64::from(MAX_TIMER_SECS)))
        );
        assert_eq!(ExpiryTimer::OFF.deadline(Timestamp::EPOCH), None);
    }

    proptest! {
        #[test]
        fn merge_is_a_semilattice(a in timer(), b in timer(), c in timer()) {
            prop_assert_eq!(a.merge(b), b.merge(a));
            prop_assert_eq!(a.merge(b).merge(c), a.merge(b.merge(c)));
            prop_assert_eq!(a.merge(a), a);
        }

        #[test]
        fn any_order_and_duplicates_give_the_same_setting(
            updates in proptest::collection::vec(timer(), 0..20),
            order in proptest::collection::vec(any::<usize>(), 0..40),
        ) {
            let mut in_order = ExpiryTimer::OFF;
            for u in &updates {
                observe(&mut in_order, *u);
            }
            // Another peer sees the updates in another order, some twice.
            let mut shuffled = ExpiryTimer::OFF;
            let mut seen = vec![false; updates.len()];
            for i in order {
                if let Some(u) = updates.get(i % updates.len().max(1)) {
                    observe(&mut shuffled, *u);
                    seen[i % updates.len()] = true;
                }
            }
            for (u, s) in updates.iter().zip(&seen) {
                if !s {
                    observe(&mut shuffled, *u);
                }
            }
            prop_assert_eq!(in_order, shuffled);
        }
    }
}
