//! A process that takes the payguard lock, for the multi-process tests.
//!
//! `lock-worker rounds URL NAME ROUNDS`: ROUNDS critical sections, each
//! logged (token, DB-clock start and end) in `cs_log` and incrementing a
//! shared counter by read-then-write.
//!
//! `lock-worker hold URL NAME TTL_MS`: takes the lock, prints
//! `acquired TOKEN`, then every 50 ms tries a fenced write to `resource`
//! and prints `write ok` or `write rejected`; prints `lost` when the
//! guard's cancellation fires. Runs until killed.

use payguard_lock::{LockOptions, Locker, PgLeaseLock};
use sqlx::postgres::PgPoolOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, url, name, number] = args.as_slice() else {
        return Err("usage: lock-worker rounds|hold URL NAME N".into());
    };
    let number: u64 = number.parse()?;
    let pool = PgPoolOptions::new().max_connections(3).connect(url).await?;
    let locker = Locker::new(Arc::new(PgLeaseLock::new(pool.clone())));
    match mode.as_str() {
        "rounds" => rounds(&locker, &pool, name, number).await,
        "hold" => hold(&locker, &pool, name, Duration::from_millis(number)).await,
        other => Err(format!("unknown mode {other}").into()),
    }
}

async fn rounds(
    locker: &Locker,
    pool: &sqlx::PgPool,
    name: &str,
    rounds: u64,
) -> Result<(), Error> {
    let options = LockOptions::builder(Duration::from_secs(5))
        .poll_every(Duration::from_millis(2))
        .build()
        .unwrap();
    let pid = i32::try_from(std::process::id())?;
    for _ in 0..rounds {
        let guard = locker
            .lock(name, &options, Duration::from_secs(120))
            .await?;
        let id: i64 = sqlx::query_scalar("INSERT INTO cs_log (pid, token, started) VALUES ($1, $2, clock_timestamp()) RETURNING id")
            .bind(pid)
            .bind(guard.token().as_i64())
            .fetch_one(pool)
            .await?;
        let value: i64 = sqlx::query_scalar("SELECT value FROM counter")
            .fetch_one(pool)
            .await?;
        tokio::task::yield_now().await;
        sqlx::query("UPDATE counter SET value = $1")
            .bind(value + 1)
            .execute(pool)
            .await?;
        sqlx::query("UPDATE cs_log SET ended = clock_timestamp() WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await?;
        guard.release().await?;
    }
    Ok(())
}

async fn hold(
    locker: &Locker,
    pool: &sqlx::PgPool,
    name: &str,
    ttl: Duration,
) -> Result<(), Error> {
    let options = LockOptions::builder(ttl)
        .poll_every(Duration::from_millis(20))
        .build()
        .unwrap();
    let guard = locker.lock(name, &options, Duration::from_secs(60)).await?;
    say(&format!("acquired {}", guard.token()));
    let mut told = false;
    loop {
        if guard.cancellation().is_cancelled() && !told {
            say("lost");
            told = true;
        }
        let fence = guard.fence();
        let mut tx = pool.begin().await?;
        let written = match fence.check(&mut tx).await {
            Ok(()) => {
                sqlx::query("UPDATE resource SET value = value + 1, last_token = $1")
                    .bind(fence.token().as_i64())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                true
            }
            Err(_) => {
                tx.rollback().await?;
                false
            }
        };
        say(if written {
            "write ok"
        } else {
            "write rejected"
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
