//! The breaker's state, packed into one `u64` so every transition is a
//! single compare-and-swap.
//!
//! | bits | field |
//! |---|---|
//! | 0–2 | [`State`] |
//! | 3–22 | generation, bumped by every transition (wraps at 2^20) |
//! | 23–63 | for `Open`: when it may half-open, in ms since the breaker's origin |

use std::fmt;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls flow and their outcomes are counted.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A limited number of probe calls test whether the downstream recovered.
    HalfOpen,
    /// Rejecting every call until [`CircuitBreaker::reset`](crate::CircuitBreaker::reset).
    ForcedOpen,
    /// Admitting every call and counting outcomes, never opening.
    ForcedClosed,
    /// Admitting every call, counting nothing.
    Disabled,
}

impl State {
    /// A short snake_case name, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::ForcedClosed => "forced_closed",
            State::Disabled => "disabled",
        }
    }

    /// A number for gauges: 0 closed, 1 open, 2 half-open, 3 forced open,
    /// 4 forced closed, 5 disabled.
    pub const fn as_gauge(self) -> u8 {
        self as u8
    }

    /// Whether calls are being rejected in this state (half-open rejects
    /// only beyond its probes).
    pub const fn is_open(self) -> bool {
        matches!(self, State::Open | State::ForcedOpen)
    }

    #[inline]
    const fn from_bits(bits: u64) -> Self {
        match bits & 0b111 {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            4 => State::ForcedClosed,
            _ => State::Disabled,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced open",
            State::ForcedClosed => "forced closed",
            State::Disabled => "disabled",
        })
    }
}

const GENERATION_BITS: u32 = 20;
pub(crate) const GENERATION_MASK: u64 = (1 << GENERATION_BITS) - 1;
const UNTIL_SHIFT: u32 = 3 + GENERATION_BITS;

/// One value of the state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    pub(crate) const fn new(state: State, generation: u64, until_ms: u64) -> Self {
        Self(state as u64 | ((generation & GENERATION_MASK) << 3) | (until_ms << UNTIL_SHIFT))
    }

    #[inline]
    pub(crate) const fn state(self) -> State {
        State::from_bits(self.0)
    }

    #[inline]
    pub(crate) const fn generation(self) -> u64 {
        (self.0 >> 3) & GENERATION_MASK
    }

    /// When an `Open` breaker may half-open (ms since origin).
    #[inline]
    pub(crate) const fn until_ms(self) -> u64 {
        self.0 >> UNTIL_SHIFT
    }

    /// The word after a transition to `state`.
    pub(crate) const fn next(self, state: State, until_ms: u64) -> Self {
        Self::new(state, self.generation() + 1, until_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let until = (1 << 41) - 1; // 69 years in ms fits
        let word = Word::new(State::Open, 12345, until);
        assert_eq!(word.state(), State::Open);
        assert_eq!(word.generation(), 12345);
        assert_eq!(word.until_ms(), until);
        let next = word.next(State::HalfOpen, 0);
        assert_eq!(
            (next.state(), next.generation(), next.until_ms()),
            (State::HalfOpen, 12346, 0)
        );
        let wrapped = Word::new(State::Closed, GENERATION_MASK, 0).next(State::Open, 7);
        assert_eq!((wrapped.generation(), wrapped.until_ms()), (0, 7));
    }
}
