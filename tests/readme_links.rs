//! Every relative link in the repository's Markdown files points at a file
//! or folder that exists, so a README never sends a reader to a test that
//! is not there.

use std::path::{Path, PathBuf};

fn markdown_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                markdown_files(&path, found);
            }
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
}

/// The targets of `[text](target)` links, without `#anchors`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_code_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = rest[..end].split('#').next().unwrap_or_default().trim();
            rest = &rest[end..];
            // `payguard_core::X` is an intra-doc link, resolved by rustdoc.
            let external = target.contains("://") || target.starts_with("mailto:");
            if !target.is_empty() && !external && !target.contains("::") {
                targets.push(target.to_owned());
            }
        }
    }
    targets
}

#[test]
fn every_relative_link_in_every_markdown_file_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    assert!(files.len() > 5, "found only {files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let dir = file.parent().unwrap_or(&root);
        for target in link_targets(&text) {
            checked += 1;
            if !dir.join(&target).exists() {
                broken.push(format!(
                    "{}: {target}",
                    file.strip_prefix(&root).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(checked > 10, "only {checked} links checked");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_reader_finds_links_and_skips_code_and_urls() {
    let text = "see [a](tests/a.rs) and [b](../b.md#part), [web](https://x.io), [`C`](c::C)\n```\n[no](in/code)\n```\n";
    assert_eq!(link_targets(text), ["tests/a.rs", "../b.md"]);
}

/// Every alert of the booking backend carries a `runbook_url` naming a
/// runbook that exists, and every runbook is some alert's.
#[test]
fn every_alert_has_a_runbook_and_every_runbook_an_alert() {
    let backend = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/booking-backend");
    let rules = std::fs::read_to_string(backend.join("deploy/prometheus/alerts.yml"))
        .unwrap_or_else(|e| panic!("alerts.yml: {e}"));
    let alerts = rules
        .lines()
        .filter(|line| line.trim_start().starts_with("- alert:"))
        .count();
    let linked: Vec<String> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("runbook_url:"))
        .map(|url| url.trim().trim_matches('"').to_owned())
        .collect();
    assert_eq!(linked.len(), alerts, "an alert without a runbook_url");
    for url in &linked {
        assert!(backend.join(url).is_file(), "{url} does not exist");
    }
    let runbooks =
        std::fs::read_dir(backend.join("docs/runbooks")).unwrap_or_else(|e| panic!("{e}"));
    for runbook in runbooks.flatten() {
        let name = runbook.file_name().to_string_lossy().into_owned();
        if name != "README.md" {
            assert!(
                linked.iter().any(|url| url.ends_with(&format!("/{name}"))),
                "no alert links {name}"
            );
        }
    }
}
