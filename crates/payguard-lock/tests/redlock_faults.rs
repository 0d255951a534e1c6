//! Redlock over five `redis-server` processes started for the test on free
//! ports: mutual exclusion while one server is killed and another paused
//! (SIGSTOP), recovery when they come back, and the documented limits: a
//! holder paused past its validity, or servers whose clocks jump, leave two
//! holders, and only a fenced write keeps the stale one out.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use payguard_lock::{
    AcquireAnswer, LockError, LockOptions, LockStrategy, Locker, Owner, ProcessId, RedisLock,
    Redlock,
};
use payguard_test_support::TestDb;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A `redis-server` of the test's own, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    killed: bool,
}

impl Server {
    fn start_on(port: u16) -> Self {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install -y redis-server)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self {
                    child,
                    port,
                    killed: false,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not listen on {port}");
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn kill(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
        self.killed = true;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.killed {
            return;
        }
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn redlock(servers: &[Server]) -> Redlock {
    let mut locks = Vec::new();
    for server in servers {
        locks.push(RedisLock::connect(&server.url()).await.unwrap());
    }
    Redlock::builder(locks)
        .server_timeout(Duration::from_millis(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_by_200_rounds_keep_exclusion_through_killed_and_paused_servers() {
    let mut servers: Vec<Server> = (0..5).map(|_| Server::start()).collect();
    let locker = Locker::new(Arc::new(redlock(&servers).await));
    let inside = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let rounds = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (locker, inside, counter, rounds) = (
                locker.clone(),
                Arc::clone(&inside),
                Arc::clone(&counter),
                Arc::clone(&rounds),
            );
            tokio::spawn(async move {
                let options = LockOptions::builder(Duration::from_secs(2))
                    .poll_every(Duration::from_millis(5))
                    .build()
                    .unwrap();
                for _ in 0..200 {
                    // While servers die or pause, a majority may not answer
                    // within the per-server timeout on a loaded machine:
                    // that is `Unavailable`, and the caller tries again.
                    let guard = loop {
                        match locker.lock("race", &options, Duration::from_secs(60)).await {
                            Err(LockError::Unavailable(_)) => tokio::task::yield_now().await,
                            other => break other.unwrap(),
                        }
                    };
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    // A read, a pause, a write: lost updates show overlaps.
                    let seen = counter.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    counter.store(seen + 1, Ordering::SeqCst);
                    inside.store(false, Ordering::SeqCst);
                    // With servers killed or paused, a release may miss its
                    // majority within the 10 ms per-server timeout on a
                    // loaded machine; the lease then simply runs out, which
                    // costs time, never exclusion.
                    let _ = guard.release().await;
                    rounds.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    let wait_for = |target: u64| {
        let rounds = Arc::clone(&rounds);
        async move {
            while rounds.load(Ordering::SeqCst) < target {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(300).await;
    let killed_port = servers[0].port;
    servers[0].kill();
    wait_for(500).await;
    servers[1].signal("STOP");
    wait_for(700).await;
    servers[1].signal("CONT");
    servers[0] = Server::start_on(killed_port);
    wait_for(900).await;
    // With two of five servers gone for good, a majority is still there.
    servers[2].kill();
    servers[3].signal("STOP");
    for task in tasks {
        task.await.unwrap();
    }
    servers[3].signal("CONT");
    assert_eq!(counter.load(Ordering::SeqCst), 1600, "no round was lost");
}

/// A resource that keeps the largest token it has seen and refuses smaller
/// ones: the fence.
async fn fenced_write(db: &TestDb, token: u64) -> bool {
    sqlx::query("UPDATE resource SET last_token = $1 WHERE last_token < $1")
        .bind(i64::try_from(token).unwrap())
        .execute(db.pool())
        .await
        .unwrap()
        .rows_affected()
        == 1
}

async fn resource() -> TestDb {
    let db = TestDb::new().await;
    sqlx::raw_sql(
        "CREATE TABLE resource (last_token bigint NOT NULL); INSERT INTO resource VALUES (0)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    db
}

fn owner() -> Owner {
    Owner::new(ProcessId::current())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_validity_shares_the_lock_and_only_the_fence_stops_it() {
    let servers: Vec<Server> = (0..5).map(|_| Server::start()).collect();
    let redlock = redlock(&servers).await;
    let db = resource().await;
    let terms = LockOptions::builder(Duration::from_millis(500))
        .build()
        .unwrap()
        .terms();

    let AcquireAnswer::Acquired(stale) = redlock
        .try_acquire("payout", &owner(), &terms)
        .await
        .unwrap()
    else {
        panic!("first acquisition busy");
    };
    // Paused (a GC, a stopped VM) past its validity; it still believes it
    // holds the lock when it wakes.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let AcquireAnswer::Acquired(heir) = redlock
        .try_acquire("payout", &owner(), &terms)
        .await
        .unwrap()
    else {
        panic!("the lease did not end");
    };
    assert!(heir.token > stale.token);
    assert!(fenced_write(&db, heir.token.get()).await);
    assert!(
        !fenced_write(&db, stale.token.get()).await,
        "the stale holder's write is refused by the fence"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_whose_clocks_jump_give_the_lock_to_two_holders_and_only_the_fence_stops_the_stale_one()
 {
    let servers: Vec<Server> = (0..5).map(|_| Server::start()).collect();
    let redlock = redlock(&servers).await;
    let db = resource().await;
    let terms = LockOptions::builder(Duration::from_secs(30))
        .build()
        .unwrap()
        .terms();
    let AcquireAnswer::Acquired(first) = redlock
        .try_acquire("payout", &owner(), &terms)
        .await
        .unwrap()
    else {
        panic!("first acquisition busy");
    };
    // The clocks of three servers jump ahead: the key expires there at
    // once, though the holder's validity has 30 s left.
    for server in &servers[..3] {
        let client = redis::Client::open(server.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("payguard:lock:{payout}")
            .query_async(&mut connection)
            .await
            .unwrap();
        for key in keys {
            let _: () = redis::cmd("PEXPIRE")
                .arg(key)
                .arg(1)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let AcquireAnswer::Acquired(second) = redlock
        .try_acquire("payout", &owner(), &terms)
        .await
        .unwrap()
    else {
        panic!("the majority's keys did not expire");
    };
    // Two holders at once: the first was granted 30 s and trusts them.
    assert!(first.remaining > Duration::from_secs(20));
    assert!(second.token > first.token);
    assert!(fenced_write(&db, second.token.get()).await);
    assert!(
        !fenced_write(&db, first.token.get()).await,
        "the stale holder's write is refused by the fence"
    );
}
