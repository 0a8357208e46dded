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
    max_skipped_key_age: u64,
    allow_classical_setup: bool,
}

impl SessionConfig {
    /// Default for [`max_skip`](Self::max_skip).
    pub const DEFAULT_MAX_SKIP: u32 = 2_000;
    /// Default for [`max_skipped_keys`](Self::max_skipped_keys).
    pub const DEFAULT_MAX_SKIPPED_KEYS: u32 = 4_000;
    /// Default for [`max_previous_sessions`](Self::max_previous_sessions).
    pub const DEFAULT_MAX_PREVIOUS_SESSIONS: u32 = 8;
    /// Default for [`max_skipped_key_age`](Self::max_skipped_key_age): 30 days.
    pub const DEFAULT_MAX_SKIPPED_KEY_AGE: u64 = 30 * 24 * 60 * 60;
    /// Hard ceiling for [`max_skip`](Self::max_skip) and
    /// [`max_skipped_keys`](Self::max_skipped_keys): an authentic message can make a session
    /// derive at most twice this many keys (about 0.2 s of work and 14 MB of memory); what a
    /// message costs before it is authenticated is bounded in docs/PROTOCOL.md section 6.7.
    pub const LIMIT_KEYS: u32 = 100_000;
    /// Hard ceiling for [`max_previous_sessions`](Self::max_previous_sessions).
    pub const LIMIT_PREVIOUS_SESSIONS: u32 = 64;

    /// The most message keys one message may make a chain skip (MAX_SKIP). A message further
    /// ahead is rejected with [`DecryptError::TooFarAhead`](crate::DecryptError::TooFarAhead).
    pub fn max_skip(&self) -> u32 {
        self.max_skip
    }

    /// The most message keys a message may make a *previous* session of a record skip at the
    /// start of a new receiving chain: [`max_skip`](Self::max_skip) divided by twice
    /// [`max_previous_sessions`](Self::max_previous_sessions) (rounded down; 125 at the
    /// defaults), so that a message no session can authenticate makes the previous sessions
    /// together walk about `max_skip / 2` chain steps at most (docs/PROTOCOL.md section
    /// 6.7). A message further ahead is rejected by that session with
    /// [`DecryptError::TooFarAhead`](crate::DecryptError::TooFarAhead) naming this bound.
    /// The current session's chains, and a previous session's current receiving chain, keep
    /// the full [`max_skip`](Self::max_skip).
    pub fn max_skip_previous(&self) -> u32 {
        self.max_skip / self.max_previous_sessions.max(1).saturating_mul(2)
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

    /// Seconds after which [`SessionRecord::prune`](crate::SessionRecord::prune) erases the
    /// key of a message that never arrived.
    pub fn max_skipped_key_age(&self) -> u64 {
        self.max_skipped_key_age
    }

    /// Whether classical (X3DH without ML-KEM) session setups are allowed. Off by default:
    /// an initiator then refuses bundles without a post-quantum prekey, and a responder
    /// refuses classical initial messages, so neither side can be downgraded.
    pub fn classical_setup_allowed(&self) -> bool {
        self.allow_classical_setup
    }

    /// Allows (or refuses) classical X3DH setups, for peers without post-quantum prekeys.
    #[must_use]
    pub fn with_classical_setup_allowed(mut self, allowed: bool) -> Self {
        self.allow_classical_setup = allowed;
        self
    }

    /// Sets [`max_skipped_key_age`](Self::max_skipped_key_age).
    #[must_use]
    pub fn with_max_skipped_key_age(mut self, seconds: u64) -> Self {
        self.max_skipped_key_age = seconds;
        self
    }

    /// Sets [`max_skip`](Self::max_skip), at most [`LIMIT_KEYS`](Self::LIMIT_KEYS).
    #[must_use]
    pub fn with_max_skip(mut self, max_skip: u32) -> Self {
        self.max_skip = max_skip.min(Self::LIMIT_KEYS);
        self
    }

    /// Sets [`max_skipped_keys`](Self::max_skipped_keys), at most
    /// [`LIMIT_KEYS`](Self::LIMIT_KEYS).
    #[must_use]
    pub fn with_max_skipped_keys(mut self, max_skipped_keys: u32) -> Self {
        self.max_skipped_keys = max_skipped_keys.min(Self::LIMIT_KEYS);
        self
    }

    /// Sets [`max_previous_sessions`](Self::max_previous_sessions), at most
    /// [`LIMIT_PREVIOUS_SESSIONS`](Self::LIMIT_PREVIOUS_SESSIONS).
    #[must_use]
    pub fn with_max_previous_sessions(mut self, max_previous_sessions: u32) -> Self {
        self.max_previous_sessions = max_previous_sessions.min(Self::LIMIT_PREVIOUS_SESSIONS);
        self
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_skip: Self::DEFAULT_MAX_SKIP,
            max_skipped_keys: Self::DEFAULT_MAX_SKIPPED_KEYS,
            max_previous_sessions: Self::DEFAULT_MAX_PREVIOUS_SESSIONS,
            max_skipped_key_age: Self::DEFAULT_MAX_SKIPPED_KEY_AGE,
            allow_classical_setup: false,
        }
    }
}

pub(crate) fn limits_to_proto(config: &SessionConfig) -> crate::wire::generated::SessionLimits {
    crate::wire::generated::SessionLimits {
        max_skip: config.max_skip,
        max_skipped_keys: config.max_skipped_keys,
        max_previous_sessions: config.max_previous_sessions,
        max_skipped_key_age: config.max_skipped_key_age,
        allow_classical_setup: config.allow_classical_setup,
    }
}

pub(crate) fn limits_from_proto(
    p: &crate::wire::generated::SessionLimits,
) -> Result<SessionConfig, crate::error::DecodeError> {
    for (field, value, ceiling) in [
        ("max_skip", p.max_skip, SessionConfig::LIMIT_KEYS),
        (
            "max_skipped_keys",
            p.max_skipped_keys,
            SessionConfig::LIMIT_KEYS,
        ),
        (
            "max_previous_sessions",
            p.max_previous_sessions,
            SessionConfig::LIMIT_PREVIOUS_SESSIONS,
        ),
    ] {
        if value > ceiling {
            return Err(crate::error::DecodeError::InvalidValue {
                object: "SessionLimits",
                field,
                reason: "above its hard ceiling",
            });
        }
    }
    Ok(SessionConfig {
        max_skip: p.max_skip,
        max_skipped_keys: p.max_skipped_keys,
        max_previous_sessions: p.max_previous_sessions,
        max_skipped_key_age: p.max_skipped_key_age,
        allow_classical_setup: p.allow_classical_setup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_capped_at_their_ceilings() {
        let config = SessionConfig::default()
            .with_max_skip(u32::MAX)
            .with_max_skipped_keys(u32::MAX)
            .with_max_previous_sessions(u32::MAX);
        assert_eq!(config.max_skip(), SessionConfig::LIMIT_KEYS);
        assert_eq!(config.max_skipped_keys(), SessionConfig::LIMIT_KEYS);
        assert_eq!(
            config.max_previous_sessions(),
            SessionConfig::LIMIT_PREVIOUS_SESSIONS
        );
        let at_ceilings = limits_to_proto(&config);
        assert_eq!(limits_from_proto(&at_ceilings), Ok(config));
    }

    /// Persisted limits are checked one by one: each above its ceiling (100,000 keys, 64
    /// previous sessions) is refused alone, the others at theirs, and the error names it.
    #[test]
    fn each_persisted_limit_above_its_ceiling_is_refused_alone() {
        let ceilings = limits_to_proto(
            &SessionConfig::default()
                .with_max_skip(u32::MAX)
                .with_max_skipped_keys(u32::MAX)
                .with_max_previous_sessions(u32::MAX),
        );
        assert_eq!(
            (
                ceilings.max_skip,
                ceilings.max_skipped_keys,
                ceilings.max_previous_sessions
            ),
            (100_000, 100_000, 64)
        );
        type Raise = fn(&mut crate::wire::generated::SessionLimits);
        let over: [(&str, Raise); 3] = [
            ("max_skip", |p| p.max_skip = 100_001),
            ("max_skipped_keys", |p| p.max_skipped_keys = 100_001),
            ("max_previous_sessions", |p| p.max_previous_sessions = 65),
        ];
        for (field, raise) in over {
            let mut p = ceilings;
            raise(&mut p);
            assert_eq!(
                limits_from_proto(&p),
                Err(crate::error::DecodeError::InvalidValue {
                    object: "SessionLimits",
                    field,
                    reason: "above its hard ceiling",
                }),
            );
        }
    }
}
