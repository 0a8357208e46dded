//! Prekey maintenance: the policy that keeps a device's prekeys on its server plentiful and
//! fresh (docs/PROTOCOL.md section 3.5), as plain functions of the account's and the
//! server's numbers, so that [`Account::prekey_maintenance`](crate::Account::prekey_maintenance)
//! and [`Account::prekey_maintenance_plan`](crate::Account::prekey_maintenance_plan) share
//! one decision.
//!
//! The numbers are Signal's (Signal-Android, `PreKeysSyncJob.kt` and `PreKeyUtil.java`):
//! refill below 10 one-time keys of a kind, in batches of 100; rotate the signed prekey and
//! the last-resort KEM prekey every 2 days; delete a replaced signed or last-resort prekey 30
//! days after it was replaced. Signal keeps replaced one-time keys for 90 days (and at least
//! 200 of them); ratchetbox uses the 30 days of the other kinds, because its account holds at
//! most 100 one-time KEM prekeys ([`MAX_ONE_TIME_KEM_PREKEYS`](crate::MAX_ONE_TIME_KEM_PREKEYS)).

use crate::time::Timestamp;
use crate::wire::bundle::{KemPreKeyId, OneTimePreKeyId, SignedPreKeyId};

/// A one-time kind is refilled when the server holds fewer than this many keys of it that
/// the account can use (Signal's `ONE_TIME_PREKEY_MINIMUM`, for both kinds).
pub const ONE_TIME_PREKEY_LOW_WATER: u32 = 10;

/// How many keys a refill creates, limits permitting (Signal's `BATCH_SIZE`): the batch
/// replaces the server's pool of that kind.
pub const ONE_TIME_PREKEY_TARGET: u32 = 100;

/// The signed prekey and the last-resort KEM prekey are rotated when their creation time is
/// at least this far from `now`, in either direction: 2 days (Signal's `REFRESH_INTERVAL`).
pub const PREKEY_ROTATION_PERIOD_SECS: u64 = 2 * 86_400;

/// A replaced prekey of any kind is deleted this long after it was replaced: 30 days
/// (Signal's `ARCHIVE_AGE` for signed and last-resort prekeys). With a rotation every
/// [`PREKEY_ROTATION_PERIOD_SECS`], an account then holds at most 15 replaced signed prekeys
/// and 15 replaced last-resort KEM prekeys besides the current ones, within
/// [`MAX_SIGNED_PREKEYS`](crate::MAX_SIGNED_PREKEYS) and
/// [`MAX_LAST_RESORT_KEM_PREKEYS`](crate::MAX_LAST_RESORT_KEM_PREKEYS).
pub const REPLACED_PREKEY_GRACE_SECS: u64 = 30 * 86_400;

/// What the server reports about one device's prekeys: the input of
/// [`Account::prekey_maintenance`](crate::Account::prekey_maintenance).
///
/// `ServerPreKeyStatus::default()` describes a server that has nothing for the device (a new
/// device, or a server that lost its data): maintenance then uploads everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServerPreKeyStatus {
    /// The id of the signed prekey the server hands out, if it has one.
    pub signed_prekey_id: Option<SignedPreKeyId>,
    /// The id of the last-resort KEM prekey the server hands out, if it has one.
    pub last_resort_kem_prekey_id: Option<KemPreKeyId>,
    /// How many one-time prekeys the server still holds (not yet handed out).
    pub one_time_prekeys: u32,
    /// The highest id of the last batch of one-time prekeys the server stored, whether or not
    /// it still holds keys of it; `None` if it never stored one.
    pub newest_one_time_prekey_id: Option<OneTimePreKeyId>,
    /// How many one-time KEM prekeys the server still holds.
    pub one_time_kem_prekeys: u32,
    /// The highest id of the last batch of one-time KEM prekeys the server stored, whether or
    /// not it still holds keys of it; `None` if it never stored one.
    pub newest_one_time_kem_prekey_id: Option<KemPreKeyId>,
}

/// What a maintenance call would do at a given time: the report of
/// [`Account::prekey_maintenance_plan`](crate::Account::prekey_maintenance_plan), for apps that
/// want to decide themselves, and exactly what
/// [`Account::prekey_maintenance`](crate::Account::prekey_maintenance) then does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PreKeyMaintenance {
    /// How many replaced prekeys (signed, last-resort KEM, one-time and one-time KEM) have
    /// outlived [`REPLACED_PREKEY_GRACE_SECS`] and are deleted first.
    pub replaced_prekeys_to_delete: u32,
    /// Whether the signed prekey is rotated: its age is at least
    /// [`PREKEY_ROTATION_PERIOD_SECS`] in either direction, or
    /// [`Account::signed_prekey_rotation_due`](crate::Account::signed_prekey_rotation_due).
    pub rotate_signed_prekey: bool,
    /// Whether the upload carries the (new or current) signed prekey: it is rotated, or the
    /// server does not hand out the current one.
    pub upload_signed_prekey: bool,
    /// Whether the last-resort KEM prekey is rotated: its age is at least
    /// [`PREKEY_ROTATION_PERIOD_SECS`] in either direction.
    pub rotate_last_resort_kem_prekey: bool,
    /// Whether the upload carries the (new or current) last-resort KEM prekey.
    pub upload_last_resort_kem_prekey: bool,
    /// How many one-time prekeys of the account's current batch are uploaded again, because
    /// the server never stored that batch (the upload was lost).
    pub resend_one_time_prekeys: u32,
    /// How many one-time prekeys are created and uploaded, replacing the server's pool.
    pub new_one_time_prekeys: u32,
    /// Whether a refill of one-time prekeys was due but the account's limit allowed fewer than
    /// [`ONE_TIME_PREKEY_TARGET`] (possibly none, see docs/PROTOCOL.md section 3.5).
    pub one_time_prekeys_capped: bool,
    /// How many one-time KEM prekeys of the account's current batch are uploaded again.
    pub resend_one_time_kem_prekeys: u32,
    /// How many one-time KEM prekeys are created and uploaded, replacing the server's pool.
    pub new_one_time_kem_prekeys: u32,
    /// Whether a refill of one-time KEM prekeys was due but the account's limit allowed fewer
    /// than [`ONE_TIME_PREKEY_TARGET`].
    pub one_time_kem_prekeys_capped: bool,
}

impl PreKeyMaintenance {
    /// Whether maintenance would produce an upload.
    pub fn needs_upload(&self) -> bool {
        self.upload_signed_prekey
            || self.upload_last_resort_kem_prekey
            || self.resend_one_time_prekeys > 0
            || self.new_one_time_prekeys > 0
            || self.resend_one_time_kem_prekeys > 0
            || self.new_one_time_kem_prekeys > 0
    }
}

/// Whether a prekey created at `created_at` is due for rotation at `now`: the two are at
/// least [`PREKEY_ROTATION_PERIOD_SECS`] apart, in either direction. A clock that went back
/// by a whole period or more rotates once (the new prekey is stamped with that `now`); a
/// smaller step back rotates nothing.
pub(crate) fn rotation_due(created_at: Timestamp, now: Timestamp) -> bool {
    now.as_unix_secs().abs_diff(created_at.as_unix_secs()) >= PREKEY_ROTATION_PERIOD_SECS
}

/// What maintenance does for one one-time kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OneTimeStep {
    /// Nothing; `capped` if a refill was due but the account's limit left no useful batch.
    Nothing { capped: bool },
    /// Upload the account's current batch again: the server never stored it.
    Resend,
    /// Create and upload a new batch of this many keys, replacing the current one; `capped`
    /// if the account's limit made it smaller than [`ONE_TIME_PREKEY_TARGET`].
    Refill { batch: u32, capped: bool },
}

/// The account's side of one one-time kind, for [`one_time_step`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct OneTimeKind {
    /// The lowest id of the account's current batch: the unused keys not marked replaced.
    /// `None` if it holds none.
    pub(crate) current_batch_first_id: Option<u32>,
    /// The next id the account issues for this kind.
    pub(crate) next_id: u32,
    /// How many keys of the kind the account holds after deleting expired ones.
    pub(crate) held: usize,
    /// The account's limit for the kind.
    pub(crate) max: usize,
}

/// The decision for one one-time kind (docs/PROTOCOL.md section 3.5, step 4), given how many
/// keys the server holds and the highest id of the last batch it stored.
///
/// The server's keys are *usable* if its last batch is the account's current one: its highest
/// id is at least the current batch's first id and below the account's next id. If the server
/// never stored the current batch (no batch, or an older one), the batch is sent again. If the
/// server holds keys but the account has no current batch, or names an id the account never
/// issued, none is usable. A refill is due when fewer than [`ONE_TIME_PREKEY_LOW_WATER`] keys
/// are usable; the batch is [`ONE_TIME_PREKEY_TARGET`] keys, or the room left under the limit
/// if that is less; a batch that would not give the server more usable keys than it has is
/// not made.
pub(crate) fn one_time_step(
    server_count: u32,
    server_newest_id: Option<u32>,
    account: OneTimeKind,
) -> OneTimeStep {
    let usable = match account.current_batch_first_id {
        Some(first) if server_newest_id.is_none_or(|newest| newest < first) => {
            return OneTimeStep::Resend;
        }
        Some(_) if server_newest_id.is_some_and(|newest| newest < account.next_id) => server_count,
        _ => 0,
    };
    if usable >= ONE_TIME_PREKEY_LOW_WATER {
        return OneTimeStep::Nothing { capped: false };
    }
    let room = account.max.saturating_sub(account.held);
    let batch = u32::try_from(room).map_or(ONE_TIME_PREKEY_TARGET, |room| {
        room.min(ONE_TIME_PREKEY_TARGET)
    });
    let capped = batch < ONE_TIME_PREKEY_TARGET;
    if batch > usable {
        OneTimeStep::Refill { batch, capped }
    } else {
        OneTimeStep::Nothing { capped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_is_due_a_whole_period_away_in_either_direction() {
        let t = Timestamp::from_unix_secs(1_000_000);
        let period = PREKEY_ROTATION_PERIOD_SECS;
        assert!(!rotation_due(t, t));
        assert!(!rotation_due(t, t.saturating_add_secs(period - 1)));
        assert!(rotation_due(t, t.saturating_add_secs(period)));
        assert!(!rotation_due(t, t.saturating_sub_secs(period - 1)));
        assert!(rotation_due(t, t.saturating_sub_secs(period)));
        assert!(rotation_due(Timestamp::EPOCH, Timestamp::MAX));
        assert!(rotation_due(Timestamp::MAX, Timestamp::EPOCH));
    }

    #[test]
    fn an_upload_is_needed_for_any_key_to_send_and_only_then() {
        let nothing = PreKeyMaintenance {
            replaced_prekeys_to_delete: 7,
            one_time_prekeys_capped: true,
            one_time_kem_prekeys_capped: true,
            ..PreKeyMaintenance::default()
        };
        assert!(!nothing.needs_upload());
        let each: [fn(&mut PreKeyMaintenance); 6] = [
            |p| p.upload_signed_prekey = true,
            |p| p.upload_last_resort_kem_prekey = true,
            |p| p.resend_one_time_prekeys = 1,
            |p| p.new_one_time_prekeys = 1,
            |p| p.resend_one_time_kem_prekeys = 1,
            |p| p.new_one_time_kem_prekeys = 1,
        ];
        for set in each {
            let mut plan = nothing;
            set(&mut plan);
            assert!(plan.needs_upload(), "{plan:?}");
        }
    }

    /// The account's current batch is 101..=200 (the next id is 201), it holds `held` keys.
    fn kind(held: usize, max: usize) -> OneTimeKind {
        OneTimeKind {
            current_batch_first_id: Some(101),
            next_id: 201,
            held,
            max,
        }
    }

    fn refill(batch: u32, capped: bool) -> OneTimeStep {
        OneTimeStep::Refill { batch, capped }
    }

    #[test]
    fn refill_boundaries() {
        let nothing = OneTimeStep::Nothing { capped: false };
        // The server holds the current batch. Plenty of room: below the low-water mark a full
        // batch, at it nothing.
        assert_eq!(
            one_time_step(9, Some(200), kind(9, 10_000)),
            refill(100, false)
        );
        assert_eq!(one_time_step(10, Some(200), kind(10, 10_000)), nothing);
        // Room for exactly the target.
        assert_eq!(
            one_time_step(0, Some(200), kind(0, 100)),
            refill(100, false)
        );
        // Room for one less: capped.
        assert_eq!(one_time_step(5, Some(200), kind(1, 100)), refill(99, true));
        // A capped batch must exceed what the server still has.
        assert_eq!(
            one_time_step(5, Some(200), kind(95, 100)),
            OneTimeStep::Nothing { capped: true }
        );
        assert_eq!(one_time_step(5, Some(200), kind(94, 100)), refill(6, true));
        // Full account: nothing, capped.
        assert_eq!(
            one_time_step(0, Some(200), kind(100, 100)),
            OneTimeStep::Nothing { capped: true }
        );
        // More held than the limit (cannot happen, but never wraps).
        assert_eq!(
            one_time_step(0, Some(200), kind(200, 100)),
            OneTimeStep::Nothing { capped: true }
        );
        // A room larger than u32 is still one batch.
        assert_eq!(
            one_time_step(0, Some(200), kind(0, usize::MAX)),
            refill(100, false)
        );
    }

    #[test]
    fn which_server_batch_counts() {
        // The server's last batch ended at the first id of the current batch or later, below
        // the next id: it is the current batch.
        assert_eq!(
            one_time_step(50, Some(101), kind(50, 10_000)),
            OneTimeStep::Nothing { capped: false }
        );
        assert_eq!(
            one_time_step(50, Some(200), kind(50, 10_000)),
            OneTimeStep::Nothing { capped: false }
        );
        // It never stored the current batch: send it again, whatever its count.
        assert_eq!(one_time_step(0, None, kind(100, 100)), OneTimeStep::Resend);
        assert_eq!(
            one_time_step(50, Some(100), kind(100, 100)),
            OneTimeStep::Resend
        );
        // It names an id the account never issued: nothing there is usable.
        assert_eq!(
            one_time_step(50, Some(201), kind(50, 10_000)),
            refill(100, false)
        );
        // The account has no current batch: whatever the server holds is not usable.
        let none = OneTimeKind {
            current_batch_first_id: None,
            next_id: 201,
            held: 0,
            max: 10_000,
        };
        assert_eq!(one_time_step(50, Some(200), none), refill(100, false));
        assert_eq!(one_time_step(0, None, none), refill(100, false));
    }
}
