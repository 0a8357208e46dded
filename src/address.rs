//! Who a peer is: a user and one of that user's devices.

use alloc::string::String;
use core::fmt;

/// The longest user id an [`Address`] accepts, in bytes.
pub const MAX_USER_ID_LEN: usize = 256;

/// A device number, chosen by the app's server; unique among one user's devices.
pub type DeviceId = u32;

/// One device of one user: the unit a session is kept for.
///
/// A user id is any non-empty UTF-8 string of at most [`MAX_USER_ID_LEN`] bytes (a phone
/// number, a UUID, an account name: whatever the app's server uses).
///
/// ```
/// use ratchetbox::Address;
/// let bob_phone = Address::new("bob", 1)?;
/// assert_eq!(bob_phone.user_id(), "bob");
/// assert_eq!(bob_phone.device_id(), 1);
/// assert_eq!(bob_phone.to_string(), "bob.1");
/// # Ok::<(), ratchetbox::AddressError>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Address {
    user_id: String,
    device_id: DeviceId,
}

/// A user id that an [`Address`] does not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The user id is empty.
    #[error("a user id must not be empty")]
    EmptyUserId,
    /// The user id is longer than [`MAX_USER_ID_LEN`] bytes.
    #[error("a user id is at most {max} bytes long, found {len}")]
    UserIdTooLong {
        /// The length found.
        len: usize,
        /// [`MAX_USER_ID_LEN`].
        max: usize,
    },
}

impl Address {
    /// The address of device `device_id` of user `user_id`.
    pub fn new(user_id: impl Into<String>, device_id: DeviceId) -> Result<Self, AddressError> {
        let user_id = user_id.into();
        check_user_id(&user_id)?;
        Ok(Self { user_id, device_id })
    }

    /// The user.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The device.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }
}

/// Checks a user id against the rules of [`Address`].
pub(crate) fn check_user_id(user_id: &str) -> Result<(), AddressError> {
    if user_id.is_empty() {
        return Err(AddressError::EmptyUserId);
    }
    if user_id.len() > MAX_USER_ID_LEN {
        return Err(AddressError::UserIdTooLong {
            len: user_id.len(),
            max: MAX_USER_ID_LEN,
        });
    }
    Ok(())
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.user_id, self.device_id)
    }
}
