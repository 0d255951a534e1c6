//! What a closed breaker counts: a streak, the last N calls, or the last T
//! seconds. Every operation is a handful of atomic instructions.

use crate::config::ModelKind;
use crate::sync::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// Counts over the window, as last recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

#[derive(Debug)]
pub(crate) enum Window {
    Consecutive(AtomicU32),
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(kind: ModelKind) -> Self {
        match kind {
            ModelKind::Consecutive { .. } => Window::Consecutive(AtomicU32::new(0)),
            ModelKind::CountWindow { size, .. } => Window::Count(CountWindow::new(size)),
            ModelKind::TimeWindow {
                window, buckets, ..
            } => Window::Time(TimeWindow::new(window.as_millis(), buckets)),
        }
    }

    /// Records one call; returns the counts when they could have crossed a
    /// threshold (a failure or a slow call was recorded).
    #[inline]
    pub(crate) fn record(
        &self,
        failure: bool,
        slow: bool,
        now_ms: impl FnOnce() -> u64,
    ) -> Option<Counts> {
        match self {
            Window::Consecutive(streak) => {
                if failure || slow {
                    let run = u64::from(streak.fetch_add(1, Ordering::AcqRel)) + 1;
                    Some(Counts {
                        calls: run,
                        failures: run,
                        slow: 0,
                    })
                } else {
                    // Avoid writing a shared line when nothing changes.
                    if streak.load(Ordering::Relaxed) != 0 {
                        streak.store(0, Ordering::Release);
                    }
                    None
                }
            }
            Window::Count(window) => window.record(failure, slow),
            Window::Time(window) => window.record(now_ms(), failure, slow),
        }
    }

    /// The counts now.
    pub(crate) fn counts(&self, now_ms: u64) -> Counts {
        match self {
            Window::Consecutive(streak) => {
                let run = u64::from(streak.load(Ordering::Acquire));
                Counts {
                    calls: run,
                    failures: run,
                    slow: 0,
                }
            }
            Window::Count(window) => window.counts(),
            Window::Time(window) => window.counts(now_ms),
        }
    }

    /// Forgets everything (on a trip, so a breaker closes with a clean window).
    pub(crate) fn reset(&self) {
        match self {
            Window::Consecutive(streak) => streak.store(0, Ordering::Release),
            Window::Count(window) => window.reset(),
            Window::Time(window) => window.reset(),
        }
    }
}

const RECORDED: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

/// The last `size` calls in a ring of one byte each, with running totals
/// kept in step by the writer of each slot.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    next: AtomicU64,
    calls: AtomicI64,
    failures: AtomicI64,
    slow: AtomicI64,
}

impl CountWindow {
    fn new(size: u32) -> Self {
        Self {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            next: AtomicU64::new(0),
            calls: AtomicI64::new(0),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
        }
    }

    #[inline]
    fn record(&self, failure: bool, slow: bool) -> Option<Counts> {
        let len = self.slots.len() as u64;
        let index = self.next.fetch_add(1, Ordering::Relaxed) % len;
        let new = RECORDED | if failure { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        let slot = self.slots.get(usize::try_from(index).unwrap_or(0))?;
        // A ring full of successes stays so: skip the write (and the cache
        // line it would steal from other threads) when nothing changes.
        if slot.load(Ordering::Acquire) == new {
            return (failure || slow).then(|| self.counts());
        }
        let old = slot.swap(new, Ordering::AcqRel);
        if old & RECORDED == 0 {
            self.calls.fetch_add(1, Ordering::AcqRel);
        }
        let delta = |bit: u8| i64::from(new & bit != 0) - i64::from(old & bit != 0);
        let failed = delta(FAILED);
        if failed != 0 {
            self.failures.fetch_add(failed, Ordering::AcqRel);
        }
        let slowed = delta(SLOW);
        if slowed != 0 {
            self.slow.fetch_add(slowed, Ordering::AcqRel);
        }
        (failure || slow).then(|| self.counts())
    }

    fn counts(&self) -> Counts {
        // A reset racing a writer can leave a total briefly off by the
        // calls in flight; clamp it to what the ring can hold.
        let len = self.slots.len() as i64;
        let read = |total: &AtomicI64| total.load(Ordering::Acquire).clamp(0, len) as u64;
        Counts {
            calls: read(&self.calls),
            failures: read(&self.failures),
            slow: read(&self.slow),
        }
    }

    fn reset(&self) {
        for slot in self.slots.iter() {
            slot.store(0, Ordering::Release);
        }
        self.calls.store(0, Ordering::Release);
        self.failures.store(0, Ordering::Release);
        self.slow.store(0, Ordering::Release);
    }
}

/// Bucket words: epoch (20 bits) | first count (22 bits) | second count (22 bits).
const EPOCH_BITS: u32 = 20;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
const COUNT_BITS: u32 = 22;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

const fn pack(epoch: u64, first: u64, second: u64) -> u64 {
    (epoch & EPOCH_MASK)
        | ((first & COUNT_MASK) << EPOCH_BITS)
        | ((second & COUNT_MASK) << (EPOCH_BITS + COUNT_BITS))
}

const fn unpack(word: u64) -> (u64, u64, u64) {
    (
        word & EPOCH_MASK,
        (word >> EPOCH_BITS) & COUNT_MASK,
        (word >> (EPOCH_BITS + COUNT_BITS)) & COUNT_MASK,
    )
}

/// The last `window` of time in `buckets` slices. Each bucket is two words
/// (calls and failures; slow calls), each updated by one compare-and-swap
/// that also restarts the bucket when its slice of time has passed. Counts
/// saturate at 4 194 303 per bucket.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_ms: u64,
    calls_failures: Box<[AtomicU64]>,
    slow: Box<[AtomicU64]>,
}

impl TimeWindow {
    fn new(window_ms: u128, buckets: u32) -> Self {
        let bucket_ms = u64::try_from(window_ms / u128::from(buckets))
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            bucket_ms,
            calls_failures: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            slow: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, epoch: u64) -> usize {
        usize::try_from(epoch % self.calls_failures.len() as u64).unwrap_or(0)
    }

    fn bump(word: &AtomicU64, epoch: u64, first: u64, second: u64) {
        let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
            let (stored, a, b) = unpack(current);
            Some(if stored == epoch & EPOCH_MASK {
                pack(
                    epoch,
                    (a + first).min(COUNT_MASK),
                    (b + second).min(COUNT_MASK),
                )
            } else {
                pack(epoch, first, second)
            })
        });
    }

    fn record(&self, now_ms: u64, failure: bool, slow: bool) -> Option<Counts> {
        let epoch = now_ms / self.bucket_ms;
        let slot = self.slot(epoch);
        if let Some(word) = self.calls_failures.get(slot) {
            Self::bump(word, epoch, 1, u64::from(failure));
        }
        if slow && let Some(word) = self.slow.get(slot) {
            Self::bump(word, epoch, 1, 0);
        }
        (failure || slow).then(|| self.counts(now_ms))
    }

    fn counts(&self, now_ms: u64) -> Counts {
        let epoch = now_ms / self.bucket_ms;
        let len = self.calls_failures.len() as u64;
        let live = |stored: u64| (epoch.wrapping_sub(stored) & EPOCH_MASK) < len;
        let mut counts = Counts::default();
        for (calls_failures, slow) in self.calls_failures.iter().zip(self.slow.iter()) {
            let (stored, calls, failures) = unpack(calls_failures.load(Ordering::Acquire));
            if live(stored) {
                counts.calls += calls;
                counts.failures += failures;
            }
            let (stored, slow, _) = unpack(slow.load(Ordering::Acquire));
            if live(stored) {
                counts.slow += slow;
            }
        }
        counts
    }

    fn reset(&self) {
        // An epoch no live bucket can have: one past the oldest wrap.
        for word in self.calls_failures.iter().chain(self.slow.iter()) {
            word.store(pack(EPOCH_MASK, 0, 0), Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn count_window_slides() {
        let window = Window::new(ModelKind::CountWindow {
            size: 4,
            failure_rate: 0.5,
        });
        for _ in 0..4 {
            assert_eq!(window.record(false, false, || 0), None);
        }
        let counts = window.record(true, false, || 0).unwrap();
        assert_eq!(
            counts,
            Counts {
                calls: 4,
                failures: 1,
                slow: 0
            }
        );
        window.record(true, true, || 0);
        window.record(false, false, || 0);
        window.record(false, false, || 0);
        // The ring now holds: fail, fail+slow, ok, ok.
        assert_eq!(
            window.counts(0),
            Counts {
                calls: 4,
                failures: 2,
                slow: 1
            }
        );
        // Overwriting the failures brings the totals down.
        window.record(false, false, || 0);
        window.record(false, false, || 0);
        assert_eq!(
            window.counts(0),
            Counts {
                calls: 4,
                failures: 0,
                slow: 0
            }
        );
        window.reset();
        assert_eq!(window.counts(0), Counts::default());
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        let window = Window::new(ModelKind::TimeWindow {
            window: Duration::from_secs(10),
            buckets: 10,
            failure_rate: 0.5,
        });
        window.record(true, false, || 0);
        window.record(false, true, || 500);
        window.record(false, false, || 1_500);
        assert_eq!(
            window.counts(1_500),
            Counts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        // At 10.2 s the first second (bucket 0) has slid out.
        assert_eq!(
            window.counts(10_200),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        // A write to the same slot 10 s later restarts the bucket.
        window.record(true, false, || 10_300);
        assert_eq!(
            window.counts(10_300),
            Counts {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
        assert_eq!(window.counts(60_000), Counts::default());
        window.reset();
        assert_eq!(window.counts(10_300), Counts::default());
    }

    #[test]
    fn streak_resets_on_success() {
        let window = Window::new(ModelKind::Consecutive { threshold: 3 });
        assert_eq!(window.record(true, false, || 0).unwrap().failures, 1);
        assert_eq!(window.record(true, false, || 0).unwrap().failures, 2);
        assert_eq!(window.record(false, false, || 0), None);
        assert_eq!(window.record(true, false, || 0).unwrap().failures, 1);
    }
}
