//! `payguard lock status` and `payguard lock run`.

mod run;
mod status;

use crate::Failure;
use clap::Subcommand;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the locks in `payguard_locks`: holder, fencing token, expiry.
    ///
    /// Exit status: 0 when the locks were read (even if there are none),
    /// 1 when the database cannot be read, 2 for usage errors.
    Status(status::Status),
    /// Run COMMAND while holding a fleet-wide PostgreSQL lease: flock(1)
    /// for every host that shares the database.
    ///
    /// Takes the named lease (creating `payguard_locks` if missing, unless
    /// --no-migrate), runs COMMAND with PAYGUARD_LOCK_NAME,
    /// PAYGUARD_FENCING_TOKEN and PAYGUARD_LOCK_OWNER set, renews the lease
    /// every third of --ttl while it runs, and releases it when COMMAND
    /// exits (not before --at-least). If the lease is lost while COMMAND
    /// runs, COMMAND's process group gets SIGTERM, then SIGKILL after
    /// --grace. SIGINT, SIGTERM and SIGHUP sent to payguard are forwarded
    /// to COMMAND's process group. COMMAND runs in its own process group,
    /// so it cannot read from a terminal.
    ///
    /// Fence the command's own writes with the token: in its transaction,
    /// `SELECT payguard_lock_fence(:'lock', :token)` raises once another
    /// run took the lock over.
    #[command(after_long_help = run::EXIT_STATUS_HELP)]
    Run(run::Run),
}

pub(crate) fn run(command: Command) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::Usage(format!("lock: cannot start: {error}")))?;
    match command {
        Command::Status(args) => runtime.block_on(status::status(&args)),
        Command::Run(args) => runtime.block_on(run::run(args)),
    }
}

/// Parses `30s`, `1m30s`, `500ms`, `2h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text
            .parse()
            .map(Duration::from_secs)
            .map_err(|error| format!("{text:?}: {error}"));
    }
    humantime::parse_duration(text)
        .map_err(|error| format!("{text:?} is not a duration like 30s, 5m or 500ms ({error})"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
    }
}
