//! [`RedisLimiter`]: one limit per key shared by every instance.

use crate::gcra::{Decision, InsufficientCapacity};
use crate::{BoxFuture, MemoryLimiter, Quota, RateLimitError, RateLimiter, telemetry};
use payguard_core::ConfigError;
use redis::aio::ConnectionManager;
use std::sync::LazyLock;
use std::time::Duration;

/// GCRA in one atomic step, in integer microseconds on the Redis server's
/// clock (`TIME`; exact in a Lua double until the year 2255). A denial
/// writes nothing; an admission stores the new TAT with a time to live
/// that ends when the key is back at its full burst, so idle keys cost
/// nothing. Needs Redis 5 or later (scripts replicate their effects).
const SCRIPT: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - tolerance - interval
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, math.floor((now + tolerance + interval - new_tat) / interval), 0, new_tat - now}
";

static GCRA: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCRIPT));

/// What a [`RedisLimiter`] does when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Allow the request (availability first).
    Open,
    /// Refuse it with [`RateLimitError::Unavailable`] (protection first).
    Closed,
    /// Decide locally with this instance's share of the quota (the quota
    /// divided by `instances`), so the fleet together stays near the limit.
    Local {
        /// Instances sharing the limit.
        instances: u32,
    },
}

/// A GCRA limit per key in Redis: every instance that shares the Redis
/// and the key prefix shares one limit.
///
/// One `EVALSHA` round trip per decision. Keys expire by themselves. A
/// Redis that does not answer within the timeout (default 50 ms) is the
/// [`Fallback`]'s to decide, counted and logged, never "no limit"
/// silently.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use payguard_ratelimit::{Fallback, Quota, RedisLimiter};
///
/// let redis = redis::Client::open("redis://127.0.0.1:6379")?;
/// let limiter = RedisLimiter::builder(redis.get_connection_manager().await?, "50/s".parse::<Quota>()?)
///     .name("tenant")
///     .fallback(Fallback::Local { instances: 4 })
///     .build()?;
/// let decision = limiter.check("acme", 1).await?;
/// println!("allowed: {}, remaining: {}", decision.is_allowed(), decision.remaining());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLimiter {
    connection: ConnectionManager,
    quota: Quota,
    interval_us: u64,
    prefix: String,
    fallback: Fallback,
    local: Option<std::sync::Arc<MemoryLimiter<String>>>,
    timeout: Duration,
    name: String,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisLimiter")
            .field("quota", &self.quota)
            .field("prefix", &self.prefix)
            .field("fallback", &self.fallback)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisLimiter`].
#[derive(Clone)]
#[must_use = "a builder does nothing until built"]
pub struct RedisLimiterBuilder {
    connection: ConnectionManager,
    quota: Quota,
    name: String,
    prefix: Option<String>,
    fallback: Fallback,
    timeout: Duration,
}

impl std::fmt::Debug for RedisLimiterBuilder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisLimiterBuilder")
            .field("quota", &self.quota)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RedisLimiterBuilder {
    /// The name in keys, metrics and logs (default `default`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The key prefix (default `payguard:ratelimit:<name>:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// What decides when Redis does not answer (default
    /// [`Fallback::Closed`]).
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// How long a decision waits for Redis (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the quota's interval is under a microsecond
    /// (Redis decides in microseconds), the timeout is zero, or a local
    /// fallback names zero instances.
    pub fn build(self) -> Result<RedisLimiter, ConfigError> {
        let interval_us = self.quota.interval_ns() / 1000;
        if interval_us == 0 {
            return Err(ConfigError::new(
                "quota",
                "at most one request per microsecond for Redis",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "above zero"));
        }
        let local = match self.fallback {
            Fallback::Local { instances: 0 } => {
                return Err(ConfigError::new("fallback instances", "at least 1"));
            }
            Fallback::Local { instances } => Some(std::sync::Arc::new(
                MemoryLimiter::builder(self.quota.share(instances))
                    .name(format!("{}-local", self.name))
                    .build()?,
            )),
            Fallback::Open | Fallback::Closed => None,
        };
        let prefix = self
            .prefix
            .unwrap_or_else(|| format!("payguard:ratelimit:{}:", self.name));
        Ok(RedisLimiter {
            connection: self.connection,
            quota: self.quota,
            interval_us,
            prefix,
            fallback: self.fallback,
            local,
            timeout: self.timeout,
            name: self.name,
        })
    }
}

impl RedisLimiter {
    /// A limiter of `quota` per key on `connection`.
    pub fn builder(connection: ConnectionManager, quota: Quota) -> RedisLimiterBuilder {
        RedisLimiterBuilder {
            connection,
            quota,
            name: "default".to_owned(),
            prefix: None,
            fallback: Fallback::Closed,
            timeout: Duration::from_millis(50),
        }
    }

    /// Decides a request costing `cost` for `key`.
    ///
    /// # Errors
    ///
    /// [`RateLimitError::InsufficientCapacity`] when `cost` exceeds the
    /// burst; [`RateLimitError::Unavailable`] when Redis failed and the
    /// fallback is [`Fallback::Closed`].
    pub async fn check(&self, key: &str, cost: u32) -> Result<Decision, RateLimitError> {
        if cost > self.quota.burst() {
            return Err(InsufficientCapacity {
                cost,
                burst: self.quota.burst(),
            }
            .into());
        }
        match self.ask(key, cost).await {
            Ok(decision) => {
                telemetry::decided(&self.name, decision.is_allowed());
                Ok(decision)
            }
            Err(error) => self.fall_back(key, cost, &error),
        }
    }

    async fn ask(&self, key: &str, cost: u32) -> Result<Decision, String> {
        let tolerance_us = self.interval_us * u64::from(self.quota.burst() - 1);
        let mut connection = self.connection.clone();
        let mut invocation = GCRA.key(format!("{}{key}", self.prefix));
        invocation.arg(self.interval_us).arg(tolerance_us).arg(cost);
        let answer = tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<Vec<i64>>(&mut connection),
        )
        .await
        .map_err(|_| format!("no answer within {:?}", self.timeout))?
        .map_err(|error| error.to_string())?;
        let [allowed, remaining, retry_after, reset_after] = answer[..] else {
            return Err(format!("an unexpected answer: {answer:?}"));
        };
        let micros = |value: i64| Duration::from_micros(u64::try_from(value).unwrap_or(0));
        Ok(Decision::new(
            allowed == 1,
            self.quota.burst(),
            u32::try_from(remaining).unwrap_or(0),
            micros(retry_after),
            micros(reset_after),
        ))
    }

    fn fall_back(&self, key: &str, cost: u32, error: &str) -> Result<Decision, RateLimitError> {
        match (&self.fallback, &self.local) {
            (Fallback::Local { .. }, Some(local)) => {
                telemetry::fallback(&self.name, "local", &error);
                Ok(local.check_n(key, cost)?)
            }
            (Fallback::Open, _) => {
                telemetry::fallback(&self.name, "open", &error);
                let burst = self.quota.burst();
                Ok(Decision::new(
                    true,
                    burst,
                    burst - cost,
                    Duration::ZERO,
                    Duration::ZERO,
                ))
            }
            _ => {
                telemetry::fallback(&self.name, "closed", &error);
                Err(RateLimitError::Unavailable(error.to_owned()))
            }
        }
    }
}

impl RateLimiter for RedisLimiter {
    fn quota(&self) -> Quota {
        self.quota
    }

    fn check<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, RateLimitError>> {
        Box::pin(RedisLimiter::check(self, key, cost))
    }
}
