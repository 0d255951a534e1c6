//! `payguard redact [--json]`.

use crate::Failure;
use clap::Args;
use payguard_redact::Redactor;
use std::io::{BufRead, BufWriter, Write};

#[derive(Debug, Args)]
pub(crate) struct Redact {
    /// Treat each line as a JSON document: redact by key and by value and
    /// write it back as one compact JSON line (a line that is not JSON is
    /// redacted as text).
    #[arg(long)]
    json: bool,
}

/// The most lines of one private-key block kept together.
const MAX_BLOCK_LINES: usize = 200;

/// Copies stdin to stdout line by line, redacted. A PEM private key spans
/// lines, so its lines are redacted together. Exit status: 0, or 2 when
/// stdin cannot be read or stdout written.
pub(crate) fn run(args: &Redact) -> Result<(), Failure> {
    let redactor = Redactor::new();
    let stdin = std::io::stdin().lock();
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    let io = |error: std::io::Error| Failure::Usage(format!("redact: {error}"));
    let mut block: Vec<String> = Vec::new();
    for line in stdin.split(b'\n') {
        let line = line.map_err(io)?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        // Bytes that are not UTF-8 are replaced, never passed through unseen.
        let text = String::from_utf8_lossy(line).into_owned();
        if !args.json && (!block.is_empty() || opens_private_key(&text)) {
            let closes = text.contains("-----END");
            block.push(text);
            if closes || block.len() >= MAX_BLOCK_LINES {
                let joined = block.join("\n");
                block.clear();
                writeln!(stdout, "{}", redactor.redact(&joined)).map_err(io)?;
            }
            continue;
        }
        let output = if args.json {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(mut document) => {
                    redactor.redact_json(&mut document);
                    serde_json::to_string(&document).map_err(|e| Failure::Usage(e.to_string()))?
                }
                Err(_) => redactor.redact(&text).into_owned(),
            }
        } else {
            redactor.redact(&text).into_owned()
        };
        stdout.write_all(output.as_bytes()).map_err(io)?;
        stdout.write_all(b"\n").map_err(io)?;
    }
    if !block.is_empty() {
        // An unterminated key: the redactor removes everything after BEGIN.
        writeln!(stdout, "{}", redactor.redact(&block.join("\n"))).map_err(io)?;
    }
    stdout.flush().map_err(io)
}

fn opens_private_key(line: &str) -> bool {
    line.contains("-----BEGIN") && line.contains("PRIVATE KEY-----") && !line.contains("-----END")
}
