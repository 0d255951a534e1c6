//! Retry budgets: retries as a bounded fraction of calls, so an outage of a
//! gateway cannot multiply its own load.

use payguard_core::{Clock, ConfigError, SystemClock};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// One token, in the fixed-point unit balances are kept in.
const TOKEN: u64 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A retry budget in the style of Finagle's: every call deposits `ratio` of
/// a token, every retry withdraws one, and a floor of `min_per_second`
/// tokens trickles in with time so that low-traffic callers can still retry.
/// The balance never exceeds `max_balance`, so a long quiet spell cannot bank
/// a retry storm.
///
/// Under a sustained total outage, retries are therefore at most
/// `ratio · calls + min_per_second · seconds + max_balance`: with the
/// defaults, 20 % extra load instead of the 200 % that three attempts per
/// call would add.
///
/// Deposits and withdrawals are single atomic operations (lock-free); share
/// one budget per gateway through an `Arc`, or use [`RetryBudgets`] to keep
/// one per key.
///
/// # Default
///
/// `ratio` 0.2, `min_per_second` 10, `max_balance` 100 tokens, starting with
/// one second's floor (10 tokens). These are Finagle's and tower's defaults
/// (20 % + 10/s) with the time-to-live replaced by a cap.
///
/// ```
/// use payguard_retry::RetryBudget;
///
/// let budget = RetryBudget::builder().ratio(0.5).min_per_second(0.0).initial_balance(0.0).build()?;
/// budget.deposit();
/// budget.deposit();
/// assert!(budget.try_withdraw());   // two calls earned one retry
/// assert!(!budget.try_withdraw());
/// # Ok::<(), payguard_retry::ConfigError>(())
/// ```
pub struct RetryBudget {
    deposit: u64,
    floor_per_second: u64,
    max_balance: u64,
    balance: AtomicU64,
    /// Nanoseconds since `origin` up to which the floor has been credited.
    credited_until: AtomicU64,
    origin: Instant,
    clock: Arc<dyn Clock>,
}

impl RetryBudget {
    /// A builder with the defaults above.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder::default()
    }

    /// Records a call (its first attempt). Lock-free.
    pub fn deposit(&self) {
        if self.deposit == 0 {
            return;
        }
        let cap = self.max_balance;
        let amount = self.deposit;
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |balance| {
                (balance < cap).then(|| balance.saturating_add(amount).min(cap))
            });
    }

    /// Takes one token for a retry; `false` when the budget is spent.
    /// Lock-free.
    pub fn try_withdraw(&self) -> bool {
        // The floor is credited lazily: the clock is read only when the
        // balance alone cannot pay.
        self.withdraw_token() || {
            self.credit_floor();
            self.withdraw_token()
        }
    }

    fn withdraw_token(&self) -> bool {
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |balance| {
                balance.checked_sub(TOKEN)
            })
            .is_ok()
    }

    /// The tokens available now (fractional).
    pub fn balance(&self) -> f64 {
        self.credit_floor();
        self.balance.load(Ordering::Acquire) as f64 / TOKEN as f64
    }

    /// Adds the floor earned since the last credit. Only the time that
    /// produced whole units is consumed, so slow rates lose nothing to
    /// rounding.
    fn credit_floor(&self) {
        if self.floor_per_second == 0 {
            return;
        }
        let now = u64::try_from(
            self.clock
                .now()
                .saturating_duration_since(self.origin)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX);
        let since = self.credited_until.load(Ordering::Acquire);
        if now <= since {
            return;
        }
        let earned = u128::from(now - since) * u128::from(self.floor_per_second) / NANOS_PER_SEC;
        if earned == 0 {
            return;
        }
        let used = earned * NANOS_PER_SEC / u128::from(self.floor_per_second);
        let until = since.saturating_add(u64::try_from(used).unwrap_or(u64::MAX));
        // One thread wins each interval, so the floor is credited once.
        if self
            .credited_until
            .compare_exchange(since, until, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let amount = u64::try_from(earned).unwrap_or(u64::MAX);
            let cap = self.max_balance;
            let _ = self
                .balance
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |balance| {
                    Some(balance.saturating_add(amount).min(cap))
                });
        }
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &(self.deposit as f64 / TOKEN as f64))
            .field(
                "min_per_second",
                &(self.floor_per_second as f64 / TOKEN as f64),
            )
            .field("max_balance", &(self.max_balance as f64 / TOKEN as f64))
            .field(
                "balance",
                &(self.balance.load(Ordering::Relaxed) as f64 / TOKEN as f64),
            )
            .finish()
    }
}

/// Builds a [`RetryBudget`]; see its `# Default` section.
#[derive(Debug, Clone)]
pub struct RetryBudgetBuilder {
    ratio: f64,
    min_per_second: f64,
    max_balance: f64,
    initial_balance: Option<f64>,
    clock: Option<Arc<dyn Clock>>,
}

impl Default for RetryBudgetBuilder {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10.0,
            max_balance: 100.0,
            initial_balance: None,
            clock: None,
        }
    }
}

impl RetryBudgetBuilder {
    /// Tokens each call deposits: the fraction of calls that may be retried.
    pub const fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Tokens credited per second regardless of traffic.
    pub const fn min_per_second(mut self, per_second: f64) -> Self {
        self.min_per_second = per_second;
        self
    }

    /// The most tokens the budget holds.
    pub const fn max_balance(mut self, tokens: f64) -> Self {
        self.max_balance = tokens;
        self
    }

    /// Tokens available at the start (default: `min_per_second`, capped at
    /// `max_balance`).
    pub const fn initial_balance(mut self, tokens: f64) -> Self {
        self.initial_balance = Some(tokens);
        self
    }

    /// The clock the floor is credited by (default: [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the settings and builds the budget.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting that is negative, not finite, or
    /// too large to count (over 10^9 tokens).
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        self.settings().map(|settings| settings.budget())
    }

    fn settings(self) -> Result<BudgetSettings, ConfigError> {
        Ok(BudgetSettings {
            deposit: to_fixed(self.ratio, "ratio")?,
            floor_per_second: to_fixed(self.min_per_second, "min_per_second")?,
            max_balance: to_fixed(self.max_balance, "max_balance")?,
            initial: to_fixed(
                self.initial_balance.unwrap_or(self.min_per_second),
                "initial_balance",
            )?,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        })
    }
}

/// A checked budget configuration, in fixed-point tokens.
#[derive(Debug, Clone)]
struct BudgetSettings {
    deposit: u64,
    floor_per_second: u64,
    max_balance: u64,
    initial: u64,
    clock: Arc<dyn Clock>,
}

impl BudgetSettings {
    fn budget(&self) -> RetryBudget {
        RetryBudget {
            deposit: self.deposit,
            floor_per_second: self.floor_per_second,
            max_balance: self.max_balance,
            balance: AtomicU64::new(self.initial.min(self.max_balance)),
            credited_until: AtomicU64::new(0),
            origin: self.clock.now(),
            clock: Arc::clone(&self.clock),
        }
    }
}

fn to_fixed(value: f64, setting: &'static str) -> Result<u64, ConfigError> {
    const LIMIT: f64 = 1e9;
    if value.is_finite() && (0.0..=LIMIT).contains(&value) {
        // In range by the check above, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok((value * TOKEN as f64).round() as u64)
    } else {
        Err(ConfigError::new(
            setting,
            format!("a finite number from 0 to 1e9 (it is {value})"),
        ))
    }
}

/// One [`RetryBudget`] per key (per gateway, per merchant), created on first
/// use from one template. Keys are meant to be few and long-lived; hold on to
/// the returned `Arc` rather than looking it up on every call.
///
/// ```
/// use payguard_retry::{RetryBudget, RetryBudgets};
/// use std::sync::Arc;
///
/// let budgets = RetryBudgets::new(RetryBudget::builder().ratio(0.1))?;
/// let paystack = budgets.get("paystack");
/// assert!(Arc::ptr_eq(&paystack, &budgets.get("paystack")));
/// assert!(!Arc::ptr_eq(&paystack, &budgets.get("flutterwave")));
/// # Ok::<(), payguard_retry::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct RetryBudgets {
    template: BudgetSettings,
    budgets: RwLock<HashMap<Box<str>, Arc<RetryBudget>>>,
}

impl RetryBudgets {
    /// Budgets built from `template`, checked once here.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the template's settings are invalid.
    pub fn new(template: RetryBudgetBuilder) -> Result<Self, ConfigError> {
        Ok(Self {
            template: template.settings()?,
            budgets: RwLock::new(HashMap::new()),
        })
    }

    /// The budget for `key`, created on first use.
    pub fn get(&self, key: &str) -> Arc<RetryBudget> {
        if let Some(budget) = self
            .budgets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key)
        {
            return Arc::clone(budget);
        }
        let mut budgets = self
            .budgets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(budget) = budgets.get(key) {
            return Arc::clone(budget);
        }
        let budget = Arc::new(self.template.budget());
        budgets.insert(key.into(), Arc::clone(&budget));
        budget
    }

    /// The keys with a budget.
    pub fn keys(&self) -> Vec<String> {
        self.budgets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .map(|key| key.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payguard_core::ManualClock;
    use std::time::Duration;

    fn budget(ratio: f64, floor: f64, max: f64, initial: f64, clock: &ManualClock) -> RetryBudget {
        RetryBudget::builder()
            .ratio(ratio)
            .min_per_second(floor)
            .max_balance(max)
            .initial_balance(initial)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap()
    }

    #[test]
    fn ratio_earns_retries() {
        let clock = ManualClock::new();
        let b = budget(0.2, 0.0, 100.0, 0.0, &clock);
        let mut retries = 0;
        for _ in 0..1000 {
            b.deposit();
            while b.try_withdraw() {
                retries += 1;
            }
        }
        assert_eq!(retries, 200);
    }

    #[test]
    fn floor_trickles_in_without_rounding_loss() {
        let clock = ManualClock::new();
        let b = budget(0.0, 10.0, 100.0, 0.0, &clock);
        assert!(!b.try_withdraw());
        // 1 ms at a time for one second: exactly 10 tokens.
        let mut granted = 0;
        for _ in 0..1000 {
            clock.advance(Duration::from_millis(1));
            if b.try_withdraw() {
                granted += 1;
            }
        }
        assert_eq!(granted, 10);
    }

    #[test]
    fn balance_is_capped() {
        let clock = ManualClock::new();
        let b = budget(1.0, 10.0, 5.0, 50.0, &clock);
        assert_eq!(b.balance(), 5.0);
        for _ in 0..100 {
            b.deposit();
        }
        clock.advance(Duration::from_secs(3600));
        assert_eq!(b.balance(), 5.0);
    }

    #[test]
    fn invalid_settings_are_errors() {
        for (builder, setting) in [
            (RetryBudget::builder().ratio(-0.1), "ratio"),
            (RetryBudget::builder().ratio(f64::NAN), "ratio"),
            (
                RetryBudget::builder().min_per_second(f64::INFINITY),
                "min_per_second",
            ),
            (RetryBudget::builder().max_balance(1e12), "max_balance"),
        ] {
            assert_eq!(builder.clone().build().unwrap_err().setting(), setting);
            assert_eq!(RetryBudgets::new(builder).unwrap_err().setting(), setting);
        }
    }
}
