//! Each publishable crate's README names, under "Public dependencies", every
//! third-party crate whose items appear in its public API, so a semver
//! relevant dependency is a decision, not an accident.
//!
//! A stand-in for `cargo check-external-types` (which needs a nightly
//! toolchain): it reads the public lines of the sources (`pub fn`, `pub
//! struct`, public fields, `pub use`, trait impls) and the names each file
//! imports from a dependency, so it can miss an item spelled in an unusual
//! way, but it catches the usual ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 8] = [
    "payguard-core",
    "payguard-retry",
    "payguard-breaker",
    "payguard-webhook",
    "payguard-redact",
    "payguard-idempotency",
    "payguard-lock",
    "payguard",
];

/// Where this crate's dependencies' names are listed.
fn dependencies(manifest: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside
            && let Some(name) = line.split(['=', '.', ' ']).next()
            && !name.is_empty()
            && !name.starts_with('#')
            && !name.starts_with("payguard")
        {
            names.insert(name.replace('-', "_"));
        }
    }
    names
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// Statements (joined across lines up to `;` or `{`) of a source file.
fn statements(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in source.lines() {
        let line = line.trim();
        if line.starts_with("//") || line.starts_with("#[") || line.starts_with("#!") {
            continue;
        }
        current.push(' ');
        current.push_str(line);
        if line.ends_with(';') || line.ends_with('{') || line.ends_with('}') || line.ends_with(',')
        {
            out.push(std::mem::take(&mut current));
        }
    }
    out.push(current);
    out
}

fn is_public(statement: &str) -> bool {
    let s = statement.trim_start();
    (s.starts_with("pub ") && !s.starts_with("pub("))
        || (s.starts_with("impl") && s.contains(" for "))
}

/// `pub struct Handle(inner::Type);` exposes nothing of `inner`.
fn without_private_tuple_fields(statement: &str) -> String {
    let s = statement.trim_start();
    match (s.strip_prefix("pub struct "), s.find('('), s.rfind(')')) {
        (Some(_), Some(open), Some(close)) if open < close => {
            let fields = &s[open + 1..close];
            if fields
                .split(',')
                .all(|field| !field.trim_start().starts_with("pub "))
            {
                format!("{}(){}", &s[..open], &s[close + 1..])
            } else {
                s.to_owned()
            }
        }
        _ => s.to_owned(),
    }
}

/// The third-party crates named by the public lines of `src`.
fn public_dependencies(src: &Path, deps: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = BTreeMap::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let source = source.split("#[cfg(test)]").next().unwrap_or_default();
        let statements = statements(source);
        // Names this file imports from a dependency.
        let mut imported: BTreeMap<String, String> = BTreeMap::new();
        for statement in &statements {
            let s = statement.trim_start();
            let Some(path) = s
                .strip_prefix("use ")
                .or_else(|| s.strip_prefix("pub use "))
            else {
                continue;
            };
            let root = path.split("::").next().unwrap_or_default().trim();
            if deps.contains(root) {
                let tail = path.split_once("::").map_or("", |(_, tail)| tail);
                for name in words(tail).filter(|w| w.starts_with(char::is_uppercase)) {
                    imported.insert(name.to_owned(), root.to_owned());
                }
            }
        }
        for statement in statements.iter().filter(|s| is_public(s)) {
            let statement = &without_private_tuple_fields(statement);
            let mut previous = "";
            for word in words(statement) {
                let spelled = statement.contains(&format!("{word}::"));
                if deps.contains(word) && spelled && previous != "crate" {
                    found
                        .entry(word.to_owned())
                        .or_insert_with(|| statement.trim().to_owned());
                }
                if let Some(dep) = imported.get(word) {
                    found
                        .entry(dep.clone())
                        .or_insert_with(|| statement.trim().to_owned());
                }
                previous = word;
            }
        }
    }
    found
}

#[test]
fn every_public_dependency_is_named_in_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut missing = Vec::new();
    let mut seen = 0;
    for name in CRATES {
        let dir = root.join("crates").join(name);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let section = readme
            .split("ublic dependencies")
            .nth(1)
            .map(|rest| rest.split("\n## ").next().unwrap_or_default())
            .unwrap_or_default();
        for (dependency, statement) in
            public_dependencies(&dir.join("src"), &dependencies(&manifest))
        {
            seen += 1;
            let spelled = [dependency.clone(), dependency.replace('_', "-")];
            if !spelled.iter().any(|s| section.contains(&format!("`{s}`"))) {
                missing.push(format!("{name}: `{dependency}` in `{statement}`"));
            }
        }
    }
    assert!(
        seen >= 10,
        "found only {seen} public dependencies: the reader is broken"
    );
    assert!(
        missing.is_empty(),
        "public dependencies missing from the READMEs:\n{}",
        missing.join("\n")
    );
}
