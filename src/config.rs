//! Limits that bound what a peer can make a session store.

/// Bounds on out-of-order delivery and on what a [`SessionRecord`](crate::SessionRecord)
/// keeps.
///
/// The defaults: a message may skip at most 2,000 messages of its chain
/// ([`max_skip`](Self::max_skip)), a session keeps at most 4,000 skipped message keys in
/// total, evicting the oldest first ([`max_skipped_keys`](Self::max_skipped_keys)), and a
/// record keeps 8 previous sessions besides the current one.
///
/// ```
/// use ratchetbox::SessionConfig;
/// let config = SessionConfig::default().with_max_skip(500).with_max_skipped_keys(1_000);
/// assert_eq!(config.max_skip(), 500);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    max_skip: u32,
    max_skipped_keys: u32,
    max_previous_sessions: u32,
}

impl SessionConfig {
    /// Default for [`max_skip`](Self::max_skip).
    pub const DEFAULT_MAX_SKIP: u32 = 2_000;
    /// Default for [`max_skipped_keys`](Self::max_skipped_keys).
    pub const DEFAULT_MAX_SKIPPED_KEYS: u32 = 4_000;
    /// Default for [`max_previous_sessions`](Self::max_previous_sessions).
    pub const DEFAULT_MAX_PREVIOUS_SESSIONS: u32 = 8;

    /// The most message keys one message may make a chain skip (MAX_SKIP). A message further
    /// ahead is rejected with [`DecryptError::TooFarAhead`](crate::DecryptError::TooFarAhead).
    pub fn max_skip(&self) -> u32 {
        self.max_skip
    }

    /// The most skipped message keys a session stores; beyond it the oldest are evicted.
    pub fn max_skipped_keys(&self) -> u32 {
        self.max_skipped_keys
    }

    pub(crate) fn max_skipped_keys_usize(&self) -> usize {
        self.max_skipped_keys as usize
    }

    /// The most previous sessions a record keeps besides its current one.
    pub fn max_previous_sessions(&self) -> u32 {
        self.max_previous_sessions
    }

    /// Sets [`max_skip`](Self::max_skip).
    #[must_use]
    pub fn with_max_skip(mut self, max_skip: u32) -> Self {
        self.max_skip = max_skip;
        self
    }

    /// Sets [`max_skipped_keys`](Self::max_skipped_keys).
    #[must_use]
    pub fn with_max_skipped_keys(mut self, max_skipped_keys: u32) -> Self {
        self.max_skipped_keys = max_skipped_keys;
        self
    }

    /// Sets [`max_previous_sessions`](Self::max_previous_sessions).
    #[must_use]
    pub fn with_max_previous_sessions(mut self, max_previous_sessions: u32) -> Self {
        self.max_previous_sessions = max_previous_sessions;
        self
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_skip: Self::DEFAULT_MAX_SKIP,
            max_skipped_keys: Self::DEFAULT_MAX_SKIPPED_KEYS,
            max_previous_sessions: Self::DEFAULT_MAX_PREVIOUS_SESSIONS,
        }
    }
}

pub(crate) fn limits_to_proto(config: &SessionConfig) -> crate::wire::generated::SessionLimits {
    crate::wire::generated::SessionLimits {
        max_skip: config.max_skip,
        max_skipped_keys: config.max_skipped_keys,
        max_previous_sessions: config.max_previous_sessions,
    }
}

pub(crate) fn limits_from_proto(p: &crate::wire::generated::SessionLimits) -> SessionConfig {
    SessionConfig {
        max_skip: p.max_skip,
        max_skipped_keys: p.max_skipped_keys,
        max_previous_sessions: p.max_previous_sessions,
    }
}
