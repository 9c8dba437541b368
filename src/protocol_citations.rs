//! Every `§N` / `§N.M` in the repository cites a numbered heading of `docs/protocol.md` (the
//! convention is described at the top of that document); these tests fail, listing `file:line`,
//! when a cited section does not exist.
//!
//! Scanned: every file git tracks (outside a git checkout, such as the source tarball, every file
//! under the repository root), except `vendor/`, `target/`, files that are not UTF-8 text and
//! this file (whose tests hold made-up citations).
//!
//! A `§` cites another specification, and is not checked, when the same line names that
//! specification before it (`RFC 9113 §6.5`, `draft-irtf-cfrg-xchacha-03 §2.2`; a later mention
//! of `protocol.md` on the line switches back), or when the file is in a directory that
//! implements another specification throughout and says so at its top (the HTTP/2 code and its
//! test tools: RFC 9113 and RFC 7541).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The document that bare citations point into.
const PROTOCOL: &str = "docs/protocol.md";
/// Not scanned: the examples of the tests below.
const THIS_FILE: &str = "src/protocol_citations.rs";
/// Directories whose bare `§` cite the RFC they implement.
const OTHER_SPEC_DIRS: &[&str] = &["src/server/h2/", "tests/h2/"];
/// Never scanned: dependencies, build output, fuzzing state.
const SKIPPED_DIRS: &[&str] = &[
    ".git/",
    "vendor/",
    "target/",
    "fuzz/target/",
    "fuzz/corpus/",
    "fuzz/artifacts/",
];

/// One `§` citation of this repository's protocol document.
#[derive(Debug)]
struct Citation {
    file: String,
    line: usize,
    section: String,
}

/// One numbered heading of the protocol document.
#[derive(Debug)]
struct Heading {
    line: usize,
    /// Number of `#`.
    level: usize,
    number: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's files (relative, `/`-separated) that are scanned.
fn files(root: &Path) -> Vec<String> {
    let tracked = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|out| out.status.success() && !out.stdout.is_empty())
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split('\0')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
    let mut files = tracked.unwrap_or_else(|| {
        let mut all = Vec::new();
        walk(root, "", &mut all);
        all
    });
    files.retain(|f| f != THIS_FILE && !SKIPPED_DIRS.iter().any(|d| f.starts_with(d)));
    files.sort();
    files
}

/// Every file under `root/dir`, skipping [`SKIPPED_DIRS`] (for trees that are not git checkouts).
fn walk(root: &Path, dir: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let rel = format!("{dir}{name}");
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                let sub = format!("{rel}/");
                // Any `target/` (nested cargo projects build there too) and the skipped ones.
                if name != "target" && !SKIPPED_DIRS.contains(&sub.as_str()) {
                    walk(root, &sub, out);
                }
            }
            Ok(t) if t.is_file() => out.push(rel),
            _ => {}
        }
    }
}

/// The numbered headings of a Markdown text (`## 5. Cryptography`, `### 5.2 Per-message key
/// derivation`), outside fenced code blocks.
fn headings(text: &str) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let level = line.bytes().take_while(|b| *b == b'#').count();
        if level == 0 || level > 6 {
            continue;
        }
        let Some(rest) = line[level..].strip_prefix(' ') else {
            continue;
        };
        let number = section_number(rest.trim_start());
        let after = &rest.trim_start()[number.len()..];
        let after = after.strip_prefix('.').unwrap_or(after);
        if !number.is_empty() && (after.is_empty() || after.starts_with(' ')) {
            out.push(Heading {
                line: i + 1,
                level,
                number,
            });
        }
    }
    out
}

/// The section number at the start of `s`: digits, then any number of `.digits` (a final `.`
/// without digits is not part of it, as in "see §3.").
fn section_number(s: &str) -> String {
    let b = s.as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut end = digits(0);
    if end == 0 {
        return String::new();
    }
    while end < b.len() && b[end] == b'.' {
        let n = digits(end + 1);
        if n == 0 {
            break;
        }
        end += 1 + n;
    }
    s[..end].to_owned()
}

/// Whether the last specification the text names is another one than the protocol document:
/// `RFC <number>` or a `draft…` name, rather than `protocol.md`.
fn names_other_spec(before: &str) -> bool {
    let b = before.as_bytes();
    let mut other = false;
    for i in 0..b.len() {
        let rest = &b[i..];
        if let Some(after) = rest.strip_prefix(b"RFC") {
            let after = after.strip_prefix(b" ").unwrap_or(after);
            if after.first().is_some_and(u8::is_ascii_digit) {
                other = true;
            }
        } else if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b"draft") {
            other = true;
        } else if rest.starts_with(b"protocol.md") {
            other = false;
        }
    }
    other
}

/// The protocol citations of one file's text.
fn citations(file: &str, text: &str) -> Vec<Citation> {
    if OTHER_SPEC_DIRS.iter().any(|d| file.starts_with(d)) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices('§') {
            let section = section_number(&line[at + '§'.len_utf8()..]);
            if section.is_empty() || names_other_spec(&line[..at]) {
                continue;
            }
            out.push(Citation {
                file: file.to_owned(),
                line: i + 1,
                section,
            });
        }
    }
    out
}

/// Every protocol citation of the repository.
fn all_citations(root: &Path) -> Vec<Citation> {
    let mut out = Vec::new();
    for file in files(root) {
        let Ok(bytes) = std::fs::read(root.join(&file)) else {
            continue;
        };
        if let Ok(text) = std::str::from_utf8(&bytes) {
            out.extend(citations(&file, text));
        }
    }
    out
}

fn protocol_sections(root: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root.join(PROTOCOL))
        .unwrap_or_else(|e| panic!("cannot read {PROTOCOL}: {e}"));
    headings(&text).into_iter().map(|h| h.number).collect()
}

#[test]
fn every_citation_names_a_section_of_the_protocol_document() {
    let root = root();
    let sections = protocol_sections(&root);
    let cited = all_citations(&root);
    // A scan that finds (almost) nothing is broken, not clean.
    assert!(
        cited.len() >= 100,
        "only {} citations found: is the scan of the repository broken?",
        cited.len()
    );
    let missing: Vec<String> = cited
        .iter()
        .filter(|c| !sections.contains(&c.section))
        .map(|c| format!("  {}:{}: §{}", c.file, c.line, c.section))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} citations name no numbered heading of {PROTOCOL} (add the section, or point \
         the citation at the right one; another specification is cited with its name on the \
         same line, e.g. 'RFC 9113 §6.5'):\n{}",
        missing.len(),
        cited.len(),
        missing.join("\n")
    );
}

#[test]
fn protocol_sections_are_numbered_consistently() {
    let root = root();
    let text = std::fs::read_to_string(root.join(PROTOCOL)).unwrap();
    let headings = headings(&text);
    assert!(headings.len() >= 10, "{PROTOCOL} has no numbered headings");
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for h in &headings {
        let depth = h.number.split('.').count();
        if h.level != depth + 1 {
            problems.push(format!(
                "  {PROTOCOL}:{}: §{} is a level-{} heading; a number of {depth} part(s) belongs \
                 to level {}",
                h.line,
                h.number,
                h.level,
                depth + 1
            ));
        }
        if let Some((parent, _)) = h.number.rsplit_once('.')
            && !seen.contains(parent)
        {
            problems.push(format!(
                "  {PROTOCOL}:{}: §{} comes before (or without) its parent §{parent}",
                h.line, h.number
            ));
        }
        if !seen.insert(h.number.clone()) {
            problems.push(format!(
                "  {PROTOCOL}:{}: §{} is numbered twice",
                h.line, h.number
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_reads_citations_as_meant() {
    let text = "see §5.4, last bullet; §3.\nRFC 9113 §6.5.2 and RFC 7541 §4.4\n\
                draft-irtf-cfrg-xchacha-03 §2.2; the draft's vector §2.2.1\n\
                RFC 9112 §2.2, then docs/protocol.md §2.1\n§ alone, §x, a§12b";
    let found: Vec<(usize, String)> = citations("x.rs", text)
        .into_iter()
        .map(|c| (c.line, c.section))
        .collect();
    let want = [(1, "5.4"), (1, "3"), (4, "2.1"), (5, "12")];
    assert_eq!(
        found,
        want.map(|(l, s)| (l, s.to_owned())).to_vec(),
        "{text}"
    );
    assert!(citations("src/server/h2/frame.rs", "§6.5.2").is_empty());
    let h =
        headings("# Title\n## 5. Cryptography\n### 5.2 Key\n```\n## 9. in a fence\n```\n## 10 x");
    let numbers: Vec<&str> = h.iter().map(|h| h.number.as_str()).collect();
    assert_eq!(numbers, ["5", "5.2", "10"]);
}
