//! `payguard`: the payguard command line.
//!
//! Exit codes are part of the interface: see each subcommand's help.

// A command-line tool reports on its standard streams.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod lock;
mod redact;
mod webhook;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Payments reliability tools: webhook verification and signing, log
/// redaction, job locks.
#[derive(Debug, Parser)]
#[command(name = "payguard", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify or sign webhook deliveries.
    #[command(subcommand)]
    Webhook(webhook::Command),
    /// Copy stdin to stdout with secrets and personal data redacted.
    Redact(redact::Redact),
    /// Run commands under fleet-wide PostgreSQL job locks, and inspect them.
    #[command(subcommand)]
    Lock(lock::Command),
}

/// A failure of a subcommand, with the exit status it maps to.
#[derive(Debug)]
enum Failure {
    /// The command ran and its answer is "no" (exit 1).
    Rejected(String),
    /// The command could not run as asked (exit 2, like a usage error).
    Usage(String),
    /// Exit with this status; anything to say was said already.
    Exit(u8),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Webhook(command) => webhook::run(command),
        Command::Redact(args) => redact::run(&args),
        Command::Lock(command) => lock::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rejected(reason)) => {
            eprintln!("payguard: {reason}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(reason)) => {
            eprintln!("payguard: {reason}");
            ExitCode::from(2)
        }
        Err(Failure::Exit(code)) => ExitCode::from(code),
    }
}
