//! `payguard lock status`.

mod status;

use crate::Failure;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the locks in `payguard_locks`: holder, fencing token, expiry.
    ///
    /// Exit status: 0 when the locks were read (even if there are none),
    /// 1 when the database cannot be read, 2 for usage errors.
    Status(status::Status),
}

pub(crate) fn run(command: Command) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::Usage(format!("lock: cannot start: {error}")))?;
    match command {
        Command::Status(args) => runtime.block_on(status::status(&args)),
    }
}
