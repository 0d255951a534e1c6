//! [`ConfigError`]: the one shape of "this setting cannot work".

use std::borrow::Cow;

/// A setting that cannot work, refused when the value is built: which
/// setting, and what it must be. Every payguard builder's `build()` returns
/// it, so a misconfiguration surfaces at start-up, never at the first call.
///
/// ```
/// use payguard_core::ConfigError;
///
/// let error = ConfigError::new("max_attempts", "at least 1");
/// assert_eq!(error.setting(), "max_attempts");
/// assert_eq!(error.to_string(), "invalid configuration: `max_attempts` must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: `{setting}` must be {expected}")]
pub struct ConfigError {
    setting: &'static str,
    expected: Cow<'static, str>,
}

impl ConfigError {
    /// `setting` must be `expected` (a phrase: "at least 1", "between 0
    /// and 1", "no longer than `lease`").
    pub fn new(setting: &'static str, expected: impl Into<Cow<'static, str>>) -> Self {
        Self {
            setting,
            expected: expected.into(),
        }
    }

    /// The stable code `invalid_configuration`.
    pub fn code(&self) -> &'static str {
        "invalid_configuration"
    }

    /// The setting's name, as its builder method spells it.
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// What the setting must be.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}
