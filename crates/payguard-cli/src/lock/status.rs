//! `payguard lock status`.

use crate::Failure;
use clap::Args;
use payguard_lock::{FencingToken, LockInfo, LockStrategy, PgLeaseLock};
use sqlx::postgres::PgPoolOptions;
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

/// Arguments of `payguard lock status`.
#[derive(Debug, Args)]
pub(crate) struct Status {
    /// The database holding `payguard_locks`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Show only this lock.
    #[arg(long)]
    name: Option<String>,
    /// One JSON object per lock instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn status(args: &Status) -> Result<(), Failure> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&args.database_url)
        .await
        .map_err(|error| {
            Failure::Rejected(format!(
                "lock status: cannot connect to the database: {error}"
            ))
        })?;
    let locks = PgLeaseLock::new(pool)
        .prepared_statements(false)
        .locks(args.name.as_deref())
        .await
        .map_err(|error| Failure::Rejected(format!("lock status: {error} ({})", source(&error))))?;
    let mut stdout = std::io::stdout().lock();
    let io = |error: std::io::Error| Failure::Usage(format!("lock status: {error}"));
    if args.json {
        for info in &locks {
            writeln!(stdout, "{}", json(info)).map_err(io)?;
        }
        return Ok(());
    }
    if locks.is_empty() {
        match &args.name {
            Some(name) => writeln!(stdout, "no lock named {name:?} has been taken"),
            None => writeln!(stdout, "no locks have been taken"),
        }
        .map_err(io)?;
        return Ok(());
    }
    let header = ["NAME", "STATE", "TOKEN", "EXPIRES", "HOLDER", "HOST (PID)"];
    let [name, state, token, expires, holder, host] = header;
    writeln!(
        stdout,
        "{name:<24} {state:<6} {token:>8} {expires:<14} {holder:<50} {host}"
    )
    .map_err(io)?;
    for info in &locks {
        let state = if info.owner.is_some() { "held" } else { "free" };
        let expires = match info.expires_in {
            Some(left) if !left.is_zero() => format!("in {:.1}s", left.as_secs_f64()),
            _ => "-".to_owned(),
        };
        let host = match (&info.host, info.pid) {
            (Some(host), Some(pid)) => format!("{host} ({pid})"),
            (Some(host), None) => host.clone(),
            (None, Some(pid)) => format!("({pid})"),
            (None, None) => "-".to_owned(),
        };
        writeln!(
            stdout,
            "{:<24} {:<6} {:>8} {:<14} {:<50} {}",
            info.name,
            state,
            info.token.map_or(0, FencingToken::get),
            expires,
            info.owner.as_deref().unwrap_or("-"),
            host
        )
        .map_err(io)?;
    }
    Ok(())
}

fn source(error: &dyn std::error::Error) -> String {
    error.source().map_or_else(String::new, ToString::to_string)
}

fn json(info: &LockInfo) -> serde_json::Value {
    serde_json::json!({
        "name": info.name,
        "held": info.owner.is_some(),
        "owner": info.owner,
        "token": info.token.map_or(0, FencingToken::get),
        "expires_at_unix_ms": info.expires_at.and_then(|at| at.duration_since(UNIX_EPOCH).ok()).map(|since| since.as_millis() as u64),
        "expires_in_ms": info.expires_in.map(|left| left.as_millis() as u64),
        "host": info.host,
        "pid": info.pid,
    })
}
