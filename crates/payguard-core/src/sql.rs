//! [`SqlTimeouts`]: the bounds every payguard statement runs under.

use std::time::Duration;

/// How long a payguard statement may wait for a row or table lock, and how
/// long it may run at all, on PostgreSQL.
///
/// The crates that keep state in PostgreSQL (locks, idempotency records)
/// run each operation in a short transaction that begins with
/// [`begin_sql`](Self::begin_sql): `SET LOCAL` ends with the transaction,
/// so a pooler in transaction mode (PgBouncer) hands a clean connection to
/// its next client. A statement that hits a bound fails with SQLSTATE
/// `55P03` (lock) or `57014` (statement), which the crates answer as a
/// typed busy or unavailable result instead of waiting.
///
/// The caller also stops waiting on its own after
/// [`client_deadline`](Self::client_deadline), for when the server or the
/// network stops answering altogether.
///
/// Opening that transaction costs two round trips more than the statement
/// alone. Where the role or database already sets both bounds (`ALTER ROLE
/// app SET lock_timeout = '1s'; ALTER ROLE app SET statement_timeout =
/// '5s'`), [`inherited`](Self::inherited) sends each statement alone.
///
/// # Default
///
/// `lock_timeout` 1 s, `statement_timeout` 5 s, set per transaction.
///
/// ```
/// use payguard_core::SqlTimeouts;
/// use std::time::Duration;
///
/// let timeouts = SqlTimeouts::default().lock_timeout(Duration::from_millis(250));
/// assert_eq!(
///     timeouts.begin_sql().as_deref(),
///     Some("BEGIN; SET LOCAL lock_timeout = 250; SET LOCAL statement_timeout = 5000")
/// );
/// assert_eq!(timeouts.inherited().begin_sql(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlTimeouts {
    lock: Duration,
    statement: Duration,
    inherited: bool,
}

impl Default for SqlTimeouts {
    fn default() -> Self {
        Self {
            lock: Duration::from_secs(1),
            statement: Duration::from_secs(5),
            inherited: false,
        }
    }
}

impl SqlTimeouts {
    /// The longest wait for a lock (`lock_timeout`); at least 1 ms, at most
    /// `i32::MAX` ms.
    #[must_use]
    pub const fn lock_timeout(mut self, wait: Duration) -> Self {
        self.lock = wait;
        self
    }

    /// The longest a statement may run (`statement_timeout`); at least
    /// 1 ms, at most `i32::MAX` ms.
    #[must_use]
    pub const fn statement_timeout(mut self, run: Duration) -> Self {
        self.statement = run;
        self
    }

    /// The server already bounds every statement (the role's or the
    /// database's `lock_timeout` and `statement_timeout`): statements are
    /// sent alone, without a transaction around them, and the durations
    /// here only set the [`client_deadline`](Self::client_deadline) and the
    /// bounds `payguard` sets inside your own transactions.
    #[must_use]
    pub const fn inherited(mut self) -> Self {
        self.inherited = true;
        self
    }

    /// The lock bound.
    pub const fn lock(&self) -> Duration {
        self.lock
    }

    /// The statement bound.
    pub const fn statement(&self) -> Duration {
        self.statement
    }

    /// When the caller gives up on a whole operation (its connection, its
    /// statements, its commit) whose server never answers (a dead network,
    /// a hung connection, a commit waiting for a synchronous standby that
    /// is gone, which `statement_timeout` does not cancel): the statement
    /// bound plus one second, so that a server that does answer reports its
    /// own timeout first. An operation the client gave up on is never
    /// taken as done.
    pub fn client_deadline(&self) -> Duration {
        self.statement.saturating_add(Duration::from_secs(1))
    }

    /// `BEGIN` and the two `SET LOCAL`s, in milliseconds, as one simple
    /// query: the opening of a bounded transaction in one round trip;
    /// `None` when the bounds are [`inherited`](Self::inherited).
    pub fn begin_sql(&self) -> Option<String> {
        (!self.inherited).then(|| {
            format!(
                "BEGIN; SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}",
                millis(self.lock),
                millis(self.statement)
            )
        })
    }

    /// Whether a PostgreSQL SQLSTATE says a bound was hit or the statement
    /// lost a race it may win on a later try: `55P03` lock not available,
    /// `57014` statement timeout, `40001` serialization failure, `40P01`
    /// deadlock.
    pub fn is_contention(sqlstate: &str) -> bool {
        matches!(sqlstate, "55P03" | "57014" | "40001" | "40P01")
    }
}

/// Milliseconds for a `SET`: at least 1 (0 would mean "no bound"), at most
/// what PostgreSQL accepts (`i32::MAX`).
fn millis(duration: Duration) -> u64 {
    const MAX: u64 = 2_147_483_647;
    u64::try_from(duration.as_millis()).map_or(MAX, |ms| ms.clamp(1, MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_never_turns_a_bound_off() {
        let timeouts = SqlTimeouts::default()
            .lock_timeout(Duration::ZERO)
            .statement_timeout(Duration::from_micros(10));
        assert_eq!(
            timeouts.begin_sql().as_deref(),
            Some("BEGIN; SET LOCAL lock_timeout = 1; SET LOCAL statement_timeout = 1")
        );
        assert_eq!(
            SqlTimeouts::default().client_deadline(),
            Duration::from_secs(6)
        );
        assert!(SqlTimeouts::is_contention("55P03"));
        assert!(!SqlTimeouts::is_contention("23505"));
    }
}
