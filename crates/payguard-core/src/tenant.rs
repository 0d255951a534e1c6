//! [`Tenant`]: whose request this is, shared by the layers that scope by it.

/// The tenant a request belongs to. An authentication layer puts it in the
/// request's extensions; payguard-idempotency scopes keys by it and
/// payguard-ratelimit limits by it, so one value serves both.
///
/// ```
/// use payguard_core::Tenant;
///
/// let tenant = Tenant::new("acme");
/// assert_eq!(tenant.as_str(), "acme");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant(String);

impl Tenant {
    /// The tenant named `id`.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// Its id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
