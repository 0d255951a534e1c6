//! Time, injected: every payguard crate reads the time through [`Clock`].

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// A source of time: a monotonic instant for measuring intervals and a wall
/// clock for timestamps that leave the process (HTTP dates, logs).
///
/// Library code never calls `Instant::now()` or `SystemTime::now()` itself; it
/// asks a `Clock`, so tests can drive time by hand ([`ManualClock`] behind the
/// `test-util` feature) or follow tokio's pausable clock (`TokioClock` behind
/// the `tokio` feature).
///
/// The trait is object safe: `Arc<dyn Clock>` is a `Clock`.
///
/// ```
/// use payguard_core::{Clock, SystemClock};
///
/// fn age_of(clock: &dyn Clock, started: std::time::Instant) -> std::time::Duration {
///     clock.now().saturating_duration_since(started)
/// }
/// let clock = SystemClock;
/// let start = clock.now();
/// assert!(age_of(&clock, start) < std::time::Duration::from_secs(60));
/// ```
pub trait Clock: fmt::Debug + Send + Sync {
    /// The current monotonic instant. Never goes backwards.
    fn now(&self) -> Instant;

    /// The current wall-clock time. May jump when the system clock is set.
    fn wall(&self) -> SystemTime;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn wall(&self) -> SystemTime {
        (**self).wall()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn wall(&self) -> SystemTime {
        (**self).wall()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn wall(&self) -> SystemTime {
        (**self).wall()
    }
}

/// The operating system's clocks: `Instant::now()` and `SystemTime::now()`.
///
/// ```
/// use payguard_core::{Clock, SystemClock};
/// let earlier = SystemClock.now();
/// assert!(SystemClock.now() >= earlier);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

#[allow(clippy::disallowed_methods)] // the one place allowed to read the OS clocks
impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

#[cfg(feature = "tokio")]
mod tokio_clock {
    use super::Clock;
    use std::time::{Instant, SystemTime};

    /// Time that follows tokio's clock, so `tokio::time::pause()` and
    /// `#[tokio::test(start_paused = true)]` move it.
    ///
    /// The wall clock is the system's wall clock shifted by how far tokio's
    /// clock is from the real monotonic clock: outside paused tests the two
    /// agree and `wall()` is the real wall time (NTP adjustments included);
    /// in a paused test it advances exactly as tokio's virtual time does.
    /// A zero-sized type: constructing it costs nothing.
    ///
    /// ```
    /// use payguard_core::{Clock, TokioClock};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let clock = TokioClock::new();
    /// let start = clock.now();
    /// tokio::time::sleep(std::time::Duration::from_secs(30)).await; // instant when paused
    /// assert_eq!(clock.now() - start, std::time::Duration::from_secs(30));
    /// # }
    /// ```
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct TokioClock;

    impl TokioClock {
        /// The clock.
        pub const fn new() -> Self {
            Self
        }
    }

    #[allow(clippy::disallowed_methods)] // maps tokio's clock onto the OS clocks
    impl Clock for TokioClock {
        fn now(&self) -> Instant {
            tokio::time::Instant::now().into_std()
        }
        fn wall(&self) -> SystemTime {
            let tokio_now = tokio::time::Instant::now().into_std();
            let real_now = Instant::now();
            let wall_now = SystemTime::now();
            match tokio_now.checked_duration_since(real_now) {
                Some(ahead) => wall_now.checked_add(ahead),
                None => wall_now.checked_sub(real_now.saturating_duration_since(tokio_now)),
            }
            .unwrap_or(wall_now)
        }
    }
}

#[cfg(feature = "tokio")]
pub use tokio_clock::TokioClock;

#[cfg(feature = "test-util")]
mod manual {
    use super::Clock;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    /// A clock that only moves when told to. Clones share the same time.
    ///
    /// Its wall clock starts at 2023-11-14T22:13:20Z (Unix time
    /// 1 700 000 000) unless set, so runs are reproducible.
    ///
    /// ```
    /// use payguard_core::{Clock, ManualClock};
    /// use std::time::{Duration, UNIX_EPOCH};
    ///
    /// let clock = ManualClock::new();
    /// let start = clock.now();
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(clock.now() - start, Duration::from_secs(5));
    /// assert_eq!(clock.wall(), UNIX_EPOCH + Duration::from_secs(1_700_000_005));
    /// ```
    #[derive(Debug, Clone)]
    pub struct ManualClock {
        origin: Instant,
        state: Arc<Mutex<State>>,
    }

    #[derive(Debug)]
    struct State {
        elapsed: Duration,
        wall: SystemTime,
    }

    /// Unix time 1 700 000 000, the default starting wall time.
    const DEFAULT_WALL_SECS: u64 = 1_700_000_000;

    impl ManualClock {
        /// A clock at an arbitrary monotonic origin and the default wall time.
        #[allow(clippy::disallowed_methods)] // an origin is needed to build `Instant`s
        pub fn new() -> Self {
            Self {
                origin: Instant::now(),
                state: Arc::new(Mutex::new(State {
                    elapsed: Duration::ZERO,
                    wall: UNIX_EPOCH + Duration::from_secs(DEFAULT_WALL_SECS),
                })),
            }
        }

        /// A clock whose wall time starts at `wall`.
        pub fn with_wall(wall: SystemTime) -> Self {
            let clock = Self::new();
            clock.set_wall(wall);
            clock
        }

        /// Moves both clocks forward by `by`. Moving past what `Instant` can
        /// represent stops at the largest representable step.
        pub fn advance(&self, by: Duration) {
            let mut state = self.lock();
            let mut step = by;
            while self
                .origin
                .checked_add(state.elapsed.saturating_add(step))
                .is_none()
            {
                step /= 2;
                if step.is_zero() {
                    break;
                }
            }
            state.elapsed = state.elapsed.saturating_add(step);
            if let Some(wall) = state.wall.checked_add(step) {
                state.wall = wall;
            }
        }

        /// Sets the wall clock alone, as an NTP step or an operator would;
        /// the monotonic clock does not move.
        pub fn set_wall(&self, wall: SystemTime) {
            self.lock().wall = wall;
        }

        fn lock(&self) -> MutexGuard<'_, State> {
            // The state is two plain values, valid even if a holder panicked.
            self.state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }
    }

    impl Default for ManualClock {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            let elapsed = self.lock().elapsed;
            // `advance` keeps `origin + elapsed` representable.
            self.origin.checked_add(elapsed).unwrap_or(self.origin)
        }
        fn wall(&self) -> SystemTime {
            self.lock().wall
        }
    }
}

#[cfg(feature = "test-util")]
pub use manual::ManualClock;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn _object_safe(_: &dyn Clock, _: Arc<dyn Clock>) {}

    #[test]
    fn system_clock_is_monotonic() {
        let clock = SystemClock;
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }

    #[test]
    fn arc_and_ref_forward_to_the_clock() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let by_ref: &dyn Clock = &clock;
        assert!(by_ref.now() >= clock.now() - Duration::from_secs(1));
    }

    #[cfg(feature = "tokio")]
    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time_on_both_clocks() {
        let clock = TokioClock::new();
        let (t0, w0) = (clock.now(), clock.wall());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now() - t0, Duration::from_secs(3600));
        // The wall clock is derived from three readings, so allow for the
        // nanoseconds between them.
        let moved = clock.wall().duration_since(w0).unwrap();
        assert!(
            moved.abs_diff(Duration::from_secs(3600)) < Duration::from_millis(5),
            "{moved:?}"
        );
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn tokio_clock_wall_is_the_real_wall_clock_when_not_paused() {
        let wall = TokioClock::new().wall();
        let real = SystemClock.wall();
        let gap = real
            .duration_since(wall)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap();
        assert!(gap < Duration::from_millis(50), "{gap:?}");
    }

    #[cfg(feature = "test-util")]
    mod manual_clock {
        use super::super::*;
        use std::time::{Duration, UNIX_EPOCH};

        #[test]
        fn starts_at_a_fixed_wall_time_and_does_not_move_by_itself() {
            let clock = ManualClock::new();
            let t0 = clock.now();
            assert_eq!(clock.now(), t0);
            assert_eq!(
                clock.wall(),
                UNIX_EPOCH + Duration::from_secs(1_700_000_000)
            );
        }

        #[test]
        fn advance_moves_both_clocks_and_clones_share_time() {
            let clock = ManualClock::new();
            let other = clock.clone();
            let t0 = clock.now();
            let w0 = clock.wall();
            other.advance(Duration::from_millis(1500));
            assert_eq!(clock.now() - t0, Duration::from_millis(1500));
            assert_eq!(
                clock.wall().duration_since(w0).ok(),
                Some(Duration::from_millis(1500))
            );
        }

        #[test]
        fn set_wall_moves_only_the_wall_clock() {
            let clock = ManualClock::new();
            let t0 = clock.now();
            clock.set_wall(UNIX_EPOCH);
            assert_eq!(clock.wall(), UNIX_EPOCH);
            assert_eq!(clock.now(), t0);
        }

        #[test]
        fn advancing_by_duration_max_does_not_panic() {
            let clock = ManualClock::new();
            let t0 = clock.now();
            clock.advance(Duration::MAX);
            clock.advance(Duration::MAX);
            assert!(clock.now() > t0);
        }
    }
}
