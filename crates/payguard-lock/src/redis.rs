//! [`RedisLock`] (`SET NX PX` on one server) and [`Redlock`] (a majority of
//! several independent servers).

use crate::owner::Owner;
use crate::strategy::{
    AcquireAnswer, BoxFuture, Grant, LeaseTerms, LockError, LockInfo, LockStrategy, host_name,
    millis,
};
use payguard_core::ConfigError;
use payguard_core::FencingToken;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `KEYS`: lock, token counter, metadata. `ARGV`: owner, lease ms, at-most
/// ms (0 = none), host, pid. Answers `{1, token, lease ms}` or `{0,
/// holder, ms left, latest token, host, pid}`.
const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('INCR', KEYS[2])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local hold = 0
  if tonumber(ARGV[3]) > 0 then hold = now + tonumber(ARGV[3]) end
  redis.call('HSET', KEYS[3], 'token', token, 'acquired', now, 'hold_until', hold, 'host', ARGV[4], 'pid', ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  return {1, token, tonumber(ARGV[2])}
end
local meta = redis.call('HMGET', KEYS[3], 'host', 'pid')
return {0, redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'),
        meta[1] or '', meta[2] or ''}
";

/// `KEYS`: lock, metadata. `ARGV`: owner, lease ms. Answers the new ms
/// left, or -1 if the lock is not the owner's.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[2])
local hold = tonumber(redis.call('HGET', KEYS[2], 'hold_until') or '0')
if hold > 0 then ms = math.min(ms, hold - now) end
if ms <= 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], ms)
redis.call('PEXPIRE', KEYS[2], ms)
return ms
";

/// `KEYS`: lock, metadata. `ARGV`: owner, at-least ms. Answers 1, or 0 if
/// the lock is not the owner's. With time left of `at_least`, the lock
/// stays taken by a released marker until then.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local acquired = tonumber(redis.call('HGET', KEYS[2], 'acquired') or '0')
local keep = acquired + tonumber(ARGV[2]) - now
if keep > 0 then
  redis.call('SET', KEYS[1], 'released', 'PX', keep)
  redis.call('PEXPIRE', KEYS[2], keep)
else
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 1
";

fn unavailable(error: redis::RedisError) -> LockError {
    LockError::unavailable(error)
}

fn integer(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::Int(n)) => *n,
        Some(Value::BulkString(bytes)) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::BulkString(bytes)) => {
            Some(String::from_utf8_lossy(bytes).into_owned()).filter(|s| !s.is_empty())
        }
        Some(Value::SimpleString(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
        _ => None,
    }
}

fn since_epoch_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A lock on one Redis server: `SET key owner NX PX ttl` (inside a script
/// that also issues the token from a per-name `INCR` counter), renewal and
/// release by scripts that check the owner first, so no client can extend
/// or delete a lock it no longer holds.
///
/// Limits: Redis judges expiry by its own clock, and a failover to a
/// replica that had not received the `SET` gives the lock to a second
/// holder; the tokens are increasing but Redis cannot check them inside
/// your database transaction. Use it where Redis is already the source of
/// truth, and fence writes with the token yourself.
#[derive(Clone)]
pub struct RedisLock {
    connection: ConnectionManager,
    prefix: String,
    host: String,
    acquire: Script,
    renew: Script,
    release: Script,
}

impl std::fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLock")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLock {
    /// Connects to `url` (`redis://127.0.0.1:6379`); keys start with
    /// `payguard:lock:`. The connection comes back by itself after the
    /// server restarts; no command waits longer than 2 s for an answer (a
    /// paused server), nor a connection attempt longer than 1 s.
    ///
    /// # Errors
    ///
    /// [`LockError::Unavailable`].
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        Ok(Self::new(connection))
    }

    /// A lock over an existing connection.
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            prefix: "payguard:lock:".to_owned(),
            host: host_name().unwrap_or_default(),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        }
    }

    /// Uses `prefix` for keys instead of `payguard:lock:`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// Lock, token-counter and metadata keys, in one hash slot.
    fn keys(&self, name: &str) -> [String; 3] {
        let base = format!("{}{{{name}}}", self.prefix);
        [
            base.clone(),
            format!("{base}:token"),
            format!("{base}:meta"),
        ]
    }
}

impl LockStrategy for RedisLock {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn try_acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a Owner,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<AcquireAnswer, LockError>> {
        Box::pin(async move {
            let [lock, token, meta] = self.keys(name);
            let lease = terms
                .at_most
                .map_or(terms.ttl, |at_most| terms.ttl.min(at_most));
            let mut connection = self.connection.clone();
            let answer: Vec<Value> = self
                .acquire
                .key(lock)
                .key(token)
                .key(meta)
                .arg(owner.as_str())
                .arg(millis(lease).max(1))
                .arg(terms.at_most.map_or(0, millis))
                .arg(&self.host)
                .arg(std::process::id())
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if integer(answer.first()) == 1 {
                return Ok(AcquireAnswer::Acquired(Grant {
                    name: name.to_owned(),
                    owner: owner.clone(),
                    token: FencingToken::new(u64::try_from(integer(answer.get(1))).unwrap_or(0)),
                    remaining: since_epoch_ms(integer(answer.get(2))),
                }));
            }
            let left = since_epoch_ms(integer(answer.get(2)));
            let holder = text(answer.get(1)).filter(|holder| holder != "released");
            Ok(AcquireAnswer::Busy(LockInfo {
                name: name.to_owned(),
                owner: holder,
                token: u64::try_from(integer(answer.get(3)))
                    .ok()
                    .filter(|token| *token > 0)
                    .map(FencingToken::new),
                expires_at: Some(wall_now() + left),
                expires_in: Some(left),
                host: text(answer.get(4)),
                pid: text(answer.get(5)).and_then(|pid| pid.parse().ok()),
            }))
        })
    }

    fn renew<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<Duration, LockError>> {
        Box::pin(async move {
            let [lock, _, meta] = self.keys(&grant.name);
            let mut connection = self.connection.clone();
            let ms: i64 = self
                .renew
                .key(lock)
                .key(meta)
                .arg(grant.owner.as_str())
                .arg(millis(terms.ttl).max(1))
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if ms < 0 {
                return Err(LockError::lost(&grant.name));
            }
            Ok(since_epoch_ms(ms))
        })
    }

    fn release<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let [lock, _, meta] = self.keys(&grant.name);
            let mut connection = self.connection.clone();
            let released: i64 = self
                .release
                .key(lock)
                .key(meta)
                .arg(grant.owner.as_str())
                .arg(millis(terms.at_least))
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if released == 1 {
                Ok(())
            } else {
                Err(LockError::lost(&grant.name))
            }
        })
    }

    fn locks<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, LockError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let names: Vec<String> = match name {
                Some(name) => vec![name.to_owned()],
                None => {
                    let pattern = format!("{}{{*}}", self.prefix);
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(pattern)
                        .query_async(&mut connection)
                        .await
                        .map_err(unavailable)?;
                    keys.iter()
                        .filter_map(|key| key.strip_prefix(&self.prefix))
                        .filter_map(|rest| rest.strip_prefix('{')?.strip_suffix('}'))
                        .map(str::to_owned)
                        .collect()
                }
            };
            let mut infos = Vec::new();
            for name in names {
                let [lock, token, meta] = self.keys(&name);
                let (holder, left, latest, host, pid): (
                    Option<String>,
                    i64,
                    Option<i64>,
                    Option<String>,
                    Option<String>,
                ) = redis::pipe()
                    .get(&lock)
                    .pttl(&lock)
                    .get(&token)
                    .hget(&meta, "host")
                    .hget(&meta, "pid")
                    .query_async(&mut connection)
                    .await
                    .map_err(unavailable)?;
                if holder.is_none() && latest.is_none() {
                    continue;
                }
                let left = since_epoch_ms(left.max(0));
                infos.push(LockInfo {
                    name,
                    owner: holder.filter(|holder| holder != "released"),
                    token: latest
                        .and_then(|token| u64::try_from(token).ok())
                        .filter(|token| *token > 0)
                        .map(FencingToken::new),
                    expires_at: Some(wall_now() + left),
                    expires_in: Some(left),
                    host: host.filter(|host| !host.is_empty()),
                    pid: pid.and_then(|pid| pid.parse().ok()),
                });
            }
            Ok(infos)
        })
    }
}

/// The wall clock, for displaying Redis expiry times only.
#[allow(clippy::disallowed_methods)] // display only; Redis judges expiry
fn wall_now() -> SystemTime {
    SystemTime::now().max(UNIX_EPOCH)
}

/// Redlock over several independent Redis servers: a lock counts only when
/// a majority granted it within its validity (lease − elapsed − drift).
///
/// Its limits are Redis's, plus the ones Kleppmann described: a process
/// pause or a clock jump on a server can give two holders the lock, and
/// its tokens (the largest of the majority's counters) are not a safe
/// fencing token. It survives the loss of a minority of servers, which a
/// single [`RedisLock`] does not.
#[derive(Debug, Clone)]
pub struct Redlock {
    servers: Vec<RedisLock>,
    server_timeout: Option<Duration>,
}

/// Builds a [`Redlock`].
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct RedlockBuilder {
    servers: Vec<RedisLock>,
    server_timeout: Option<Duration>,
}

impl RedlockBuilder {
    /// How long one server may take to answer before it counts as not
    /// having granted (or renewed, or released): small next to the lease,
    /// so a paused or unreachable server does not hold up the majority.
    ///
    /// # Default
    ///
    /// A tenth of the lease, between 10 ms and 1 s.
    pub fn server_timeout(mut self, timeout: Duration) -> Self {
        self.server_timeout = Some(timeout);
        self
    }

    /// Checks the settings and builds the lock.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for no servers or a zero server timeout.
    pub fn build(self) -> Result<Redlock, ConfigError> {
        if self.servers.is_empty() {
            return Err(ConfigError::new("servers", "at least one"));
        }
        if self.server_timeout.is_some_and(|timeout| timeout.is_zero()) {
            return Err(ConfigError::new("server_timeout", "longer than zero"));
        }
        Ok(Redlock {
            servers: self.servers,
            server_timeout: self.server_timeout,
        })
    }
}

impl Redlock {
    /// Connects to every server (an odd number, usually 3 or 5), with the
    /// default per-server timeout.
    ///
    /// # Errors
    ///
    /// [`LockError::Unavailable`] if a server cannot be reached, or
    /// [`LockError::Unsupported`] for no servers.
    pub async fn connect(urls: &[&str]) -> Result<Self, LockError> {
        let mut servers = Vec::with_capacity(urls.len());
        for url in urls {
            servers.push(RedisLock::connect(url).await?);
        }
        Self::builder(servers)
            .build()
            .map_err(|error| LockError::Unsupported(error.to_string()))
    }

    /// Redlock over locks already connected (each to its own server, or,
    /// for tests, to separate prefixes of one).
    pub fn builder(servers: Vec<RedisLock>) -> RedlockBuilder {
        RedlockBuilder {
            servers,
            server_timeout: None,
        }
    }

    fn quorum(&self) -> usize {
        self.servers.len() / 2 + 1
    }

    fn timeout_for(&self, terms: &LeaseTerms) -> Duration {
        self.server_timeout.unwrap_or_else(|| {
            (terms.ttl / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
        })
    }

    /// `operation` on every server at once, each given up after the
    /// per-server timeout.
    async fn on_every_server<'a, T, F>(
        &'a self,
        terms: &LeaseTerms,
        operation: F,
    ) -> Vec<Result<T, LockError>>
    where
        F: Fn(&'a RedisLock) -> BoxFuture<'a, Result<T, LockError>>,
    {
        let timeout = self.timeout_for(terms);
        futures_util::future::join_all(self.servers.iter().map(|server| {
            let call = operation(server);
            async move {
                tokio::time::timeout(timeout, call)
                    .await
                    .unwrap_or_else(|_| Err(LockError::unavailable(ServerTimeout(timeout))))
            }
        }))
        .await
    }
}

/// A Redlock server did not answer within the per-server timeout.
#[derive(Debug, thiserror::Error)]
#[error("a Redlock server did not answer within {0:?}")]
struct ServerTimeout(Duration);

impl LockStrategy for Redlock {
    fn kind(&self) -> &'static str {
        "redlock"
    }

    fn try_acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a Owner,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<AcquireAnswer, LockError>> {
        Box::pin(async move {
            let started = crate::time::now();
            let attempts = self
                .on_every_server(terms, |server| server.try_acquire(name, owner, terms))
                .await;
            let mut granted = 0;
            let mut token = 0;
            let mut busy = None;
            for attempt in &attempts {
                match attempt {
                    Ok(AcquireAnswer::Acquired(grant)) => {
                        granted += 1;
                        token = token.max(grant.token.get());
                    }
                    Ok(AcquireAnswer::Busy(info)) => busy = busy.or(Some(info.clone())),
                    Err(_) => {}
                }
            }
            let lease = terms
                .at_most
                .map_or(terms.ttl, |at_most| terms.ttl.min(at_most));
            let drift = lease / 100 + Duration::from_millis(2);
            let validity = lease.saturating_sub(crate::time::elapsed(started) + drift);
            let grant = Grant {
                name: name.to_owned(),
                owner: owner.clone(),
                token: FencingToken::new(token),
                remaining: validity,
            };
            if granted >= self.quorum() && !validity.is_zero() {
                return Ok(AcquireAnswer::Acquired(grant));
            }
            // No majority: give back what was granted.
            let undo = LeaseTerms {
                at_least: Duration::ZERO,
                ..*terms
            };
            self.on_every_server(terms, |server| server.release(&grant, &undo))
                .await;
            match (busy, attempts.into_iter().find_map(Result::err)) {
                (Some(info), _) => Ok(AcquireAnswer::Busy(info)),
                (None, Some(error)) => Err(error),
                (None, None) => Ok(AcquireAnswer::Busy(LockInfo {
                    name: name.to_owned(),
                    ..LockInfo::default()
                })),
            }
        })
    }

    fn renew<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<Duration, LockError>> {
        Box::pin(async move {
            let started = crate::time::now();
            let renewals = self
                .on_every_server(terms, |server| server.renew(grant, terms))
                .await;
            let mut left: Vec<Duration> = renewals
                .iter()
                .filter_map(|renewal| renewal.as_ref().ok().copied())
                .collect();
            if left.len() < self.quorum() {
                return Err(LockError::lost(&grant.name));
            }
            left.sort();
            // The majority's smallest remaining time, minus the time spent asking.
            let majority = left
                .get(left.len() - self.quorum())
                .copied()
                .unwrap_or_default();
            Ok(majority.saturating_sub(crate::time::elapsed(started)))
        })
    }

    fn release<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let released = self
                .on_every_server(terms, |server| server.release(grant, terms))
                .await;
            if released.iter().filter(|result| result.is_ok()).count() >= self.quorum() {
                Ok(())
            } else {
                Err(LockError::lost(&grant.name))
            }
        })
    }

    fn locks<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, LockError>> {
        Box::pin(async move {
            match self.servers.first() {
                Some(server) => server.locks(name).await,
                None => Ok(Vec::new()),
            }
        })
    }
}
