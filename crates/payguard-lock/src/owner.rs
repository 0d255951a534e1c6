//! Who holds a lock.

use std::fmt;
use std::sync::OnceLock;

/// This process's identity in lock records: 16 random bytes drawn once per
/// process. Never the hostname: two hosts (or two containers) with the same
/// name must not share locks.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId([u8; 16]);

impl ProcessId {
    /// The id of this process (random, drawn on first use).
    pub fn current() -> Self {
        static CURRENT: OnceLock<ProcessId> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let (high, low) = (payguard_core::entropy(), payguard_core::entropy());
            Self((u128::from(high) << 64 | u128::from(low)).to_be_bytes())
        })
    }

    /// A given id, for tests that need two lockers to claim the same one.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcessId({self})")
    }
}

/// One acquisition's owner: the process id plus a random per-acquisition
/// nonce, so two acquisitions never share ownership, even by processes
/// configured with the same id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    /// A fresh owner for one acquisition by `process`.
    pub fn new(process: ProcessId) -> Self {
        Self(format!("{process}:{:016x}", payguard_core::entropy()))
    }

    /// The owner as stored (`<process id>:<nonce>`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_differ_per_acquisition_even_with_one_process_id() {
        let process = ProcessId::from_bytes([7; 16]);
        assert_ne!(Owner::new(process), Owner::new(process));
        assert!(Owner::new(process).as_str().starts_with("07070707"));
        assert_eq!(ProcessId::current(), ProcessId::current());
    }
}
