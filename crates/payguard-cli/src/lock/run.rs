//! `payguard lock run`: run a command while holding a PostgreSQL lease.

use super::parse_duration;
use crate::Failure;
use clap::Args;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use payguard_lock::{
    Acquisition, LockError, LockGuard, LockOptions, Locker, PgLeaseLock, describe_holder,
};
use sqlx::postgres::PgPoolOptions;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The lock is held elsewhere, or `--timeout` passed (`EX_TEMPFAIL`).
const HELD: u8 = 75;
/// The database or its lock table could not be used (`EX_UNAVAILABLE`).
const UNAVAILABLE: u8 = 69;
/// The lease was lost while the command ran, and the command was stopped.
const LEASE_LOST: u8 = 124;
/// The command exists but could not be executed (as in shells).
const CANNOT_EXECUTE: u8 = 126;
/// The command was not found (as in shells).
const NOT_FOUND: u8 = 127;

pub(super) const EXIT_STATUS_HELP: &str = "\
Exit status:
  COMMAND's own  when COMMAND ran and the lease held (128+N if signal N ended it)
  75             the lock is held elsewhere (without --wait) or --timeout passed;
                 COMMAND did not run
  124            the lease was lost while COMMAND ran; COMMAND was terminated
  69             the database or the lock table could not be used; COMMAND did not run
  126, 127       COMMAND could not be executed, or was not found
  128+N          payguard got signal N while waiting for the lock
  2              usage error

Environment of COMMAND:
  PAYGUARD_LOCK_NAME      the lock name
  PAYGUARD_FENCING_TOKEN  this run's fencing token, larger than every earlier run's
  PAYGUARD_LOCK_OWNER     this run's owner id, as `payguard lock status` shows it

Example (cron on every host; the job runs on one at a time):
  0 * * * * payguard lock run --name escrow-release --ttl 2m --at-least 1m -- ./release-escrow.sh";

/// Arguments of `payguard lock run`.
#[derive(Debug, Args)]
pub(crate) struct Run {
    /// The database that holds `payguard_locks`; every host must use the same one.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The lock's name, the same on every host that runs this job.
    #[arg(long)]
    name: String,
    /// How long the lease lasts unless renewed: after a crash, how long
    /// before another host can take over.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    ttl: Duration,
    /// Wait while the lock is held elsewhere, instead of exiting 75.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up (exit 75) after this long [default: no limit].
    #[arg(long, requires = "wait", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Keep the lock at least this long after taking it, even if COMMAND
    /// ends sooner, so a host whose clock runs late does not run the same
    /// job again.
    #[arg(long, value_parser = parse_duration)]
    at_least: Option<Duration>,
    /// After the lease is lost (or when the command leaves processes
    /// behind): time between SIGTERM and SIGKILL, capped at the lease's
    /// safety margin (ttl/10, between 1 s and ttl/4) so the command is
    /// gone before another host can take the lease.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    grace: Duration,
    /// With --wait: the longest pause between attempts [default: until
    /// the holder's lease ends; its release wakes the waiter at once].
    #[arg(long, value_parser = parse_duration)]
    poll: Option<Duration>,
    /// Do not create `payguard_locks` if it is missing (behind a pooler
    /// in transaction mode, migrate once over a direct connection: the
    /// migration takes a session advisory lock).
    #[arg(long)]
    no_migrate: bool,
    /// With --wait: do not LISTEN for the holder's release (behind a
    /// pooler in transaction mode, where LISTEN does not work); waiters
    /// then sleep until the holder's lease ends, capped by --poll.
    #[arg(long)]
    no_release_notices: bool,
    /// The command to run and its arguments, after `--`.
    #[arg(
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<OsString>,
}

/// Runs `args.command` under the lock; the answer carries its exit status.
pub(super) async fn run(args: Run) -> Result<(), Failure> {
    // Installed first: from here on, SIGINT and SIGTERM are ours to handle.
    let mut signals = Signals::install()
        .map_err(|error| Failure::Usage(format!("lock run: cannot handle signals: {error}")))?;
    let mut options = LockOptions::builder(args.ttl);
    if let Some(poll) = args.poll {
        options = options.poll_every(poll);
    }
    if let Some(at_least) = args.at_least {
        options = options.at_least(at_least);
    }
    let options = options
        .build()
        .map_err(|error| Failure::Usage(format!("lock run: {error}")))?;

    let acquiring = acquire(&args, &options);
    tokio::pin!(acquiring);
    let guard = tokio::select! {
        guard = &mut acquiring => guard?,
        signal = signals.recv() => {
            // Dropping an acquisition mid-statement could leave a lease
            // that nobody holds: let it finish, then give back what it got.
            if let Ok(Ok(guard)) = tokio::time::timeout(Duration::from_secs(5), &mut acquiring).await {
                let _ = guard.release().await;
            }
            return Err(Failure::Exit(signal_exit_code(signal)));
        }
    };
    // The command must be gone before another host can take the lease:
    // the grace period ends within the lease's safety margin.
    let grace = args.grace.min(options.margin());
    supervise(guard, &args, grace, &mut signals).await
}

async fn acquire(args: &Run, options: &LockOptions) -> Result<LockGuard, Failure> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&args.database_url)
        .await
        .map_err(|error| unavailable(format!("cannot connect to the database: {error}")))?;
    // A handful of statements per run: unprepared, so that they work
    // through any pooler, PgBouncer in transaction mode included.
    let lease = PgLeaseLock::new(pool)
        .prepared_statements(false)
        .listen_for_releases(!args.no_release_notices);
    if !args.no_migrate {
        lease
            .migrate()
            .await
            .map_err(|error| unavailable(format!("cannot create the lock table: {error}")))?;
    }
    let locker = Locker::new(Arc::new(lease));
    let name = args.name.as_str();
    let answer = if args.wait {
        // "No limit" is a century: Instant arithmetic needs a finite deadline.
        let timeout = args
            .timeout
            .unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
        locker.lock(name, options, timeout).await
    } else {
        match locker.try_lock(name, options).await {
            Ok(Acquisition::Acquired(guard)) => Ok(guard),
            Ok(Acquisition::Busy(busy)) => {
                let holder = locker.holder(name, busy).await;
                eprintln!(
                    "payguard: lock {name:?} is held by {}",
                    describe_holder(&holder)
                );
                return Err(Failure::Exit(HELD));
            }
            Err(error) => Err(error),
        }
    };
    answer.map_err(|error| match error {
        LockError::Timeout { holder, .. } => {
            eprintln!("payguard: gave up waiting for lock {name:?}: held by {holder}");
            Failure::Exit(HELD)
        }
        error => {
            let hint = if args.no_migrate {
                " (without --no-migrate, payguard creates payguard_locks)"
            } else {
                ""
            };
            unavailable(format!(
                "cannot take lock {name:?}: {}{hint}",
                chain(&error)
            ))
        }
    })
}

/// Runs the command, stopping it if the lease is lost and forwarding
/// signals, then releases the lock.
async fn supervise(
    guard: LockGuard,
    args: &Run,
    grace: Duration,
    signals: &mut Signals,
) -> Result<(), Failure> {
    let Some((program, arguments)) = args.command.split_first() else {
        return Err(Failure::Usage("lock run: no command given".to_owned()));
    };
    let spawned = tokio::process::Command::new(program)
        .args(arguments)
        .env("PAYGUARD_LOCK_NAME", guard.name())
        .env("PAYGUARD_FENCING_TOKEN", guard.token().get().to_string())
        .env("PAYGUARD_LOCK_OWNER", guard.owner().as_str())
        .process_group(0)
        // If payguard itself panics, the command does not outlive it.
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            eprintln!(
                "payguard: cannot run {}: {error}",
                program.to_string_lossy()
            );
            release(guard).await;
            return Err(Failure::Exit(
                if error.kind() == std::io::ErrorKind::NotFound {
                    NOT_FOUND
                } else {
                    CANNOT_EXECUTE
                },
            ));
        }
    };
    // The command leads its own process group, numbered by its pid.
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);

    let mut lost = false;
    let mut kill_at: Option<Instant> = None;
    let waited = loop {
        tokio::select! {
            waited = child.wait() => break waited,
            () = guard.lost(), if !lost => {
                lost = true;
                eprintln!(
                    "payguard: lost lock {:?} (fencing token {}) while the command ran: \
                     renewal was refused or the lease ran out; sending SIGTERM to its process group",
                    guard.name(),
                    guard.token().get()
                );
                signal_group(group, Signal::SIGTERM);
                kill_at = Some(now() + grace);
            }
            () = sleep_until(kill_at), if kill_at.is_some() => {
                eprintln!("payguard: the command outlived --grace; sending SIGKILL");
                signal_group(group, Signal::SIGKILL);
                kill_at = None;
            }
            signal = signals.recv() => signal_group(group, signal),
        }
    };
    if lost {
        // Nothing the stale run started may outlive it.
        signal_group(group, Signal::SIGKILL);
        return Err(Failure::Exit(LEASE_LOST));
    }
    // Processes the command left behind in its group would keep working
    // after the lock is released: stop them first.
    stop_stragglers(group, grace).await;
    let code = match waited {
        Ok(status) => exit_code(status),
        Err(error) => {
            eprintln!("payguard: lost track of the command: {error}");
            1
        }
    };
    match guard.release().await {
        Ok(()) => {}
        Err(LockError::Lost { .. }) => {
            eprintln!(
                "payguard: lock {:?} had been taken over by the time the command ended",
                args.name
            );
            return Err(Failure::Exit(LEASE_LOST));
        }
        Err(error) => eprintln!(
            "payguard: could not release lock {:?} ({}); it expires within --ttl",
            args.name,
            chain(&error)
        ),
    }
    match code {
        0 => Ok(()),
        code => Err(Failure::Exit(code)),
    }
}

async fn release(guard: LockGuard) {
    if let Err(error) = guard.release().await {
        eprintln!(
            "payguard: could not release the lock ({}); it expires within --ttl",
            chain(&error)
        );
    }
}

/// SIGTERM, then SIGKILL after `grace`, to what is left of the group.
async fn stop_stragglers(group: Option<Pid>, grace: Duration) {
    let Some(group) = group else { return };
    let alive = || killpg(group, None).is_ok();
    if !alive() {
        return;
    }
    eprintln!(
        "payguard: the command left processes behind; stopping them before releasing the lock"
    );
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = now() + grace;
    while alive() && now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if alive() {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// Now, by tokio's clock (read through `payguard_core`, as the libraries do).
fn now() -> Instant {
    Instant::from_std(payguard_core::Clock::now(&payguard_core::TokioClock::new()))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        // ESRCH: the group is already gone, which is what we wanted.
        let _ = killpg(group, signal);
    }
}

/// The shell's convention: the status, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + (signal & 0x7f)).unwrap_or(1),
        (None, None) => 1,
    }
}

fn signal_exit_code(signal: Signal) -> u8 {
    u8::try_from(128 + signal as i32).unwrap_or(1)
}

fn unavailable(reason: String) -> Failure {
    eprintln!("payguard: {reason}");
    Failure::Exit(UNAVAILABLE)
}

/// An error with its sources, `outer: inner: innermost`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The signals payguard forwards to the command.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::SIGINT,
            _ = self.terminate.recv() => Signal::SIGTERM,
            _ = self.hangup.recv() => Signal::SIGHUP,
        }
    }
}
