//! The modules of the crate form no cycle: a test that reads every `.rs` file under `src/`, collects
//! which module refers to which, and fails naming a cycle if there is one (docs/architecture.md,
//! "Module layers", lists the layers this keeps apart).
//!
//! The nodes are the top-level modules of `src/` (`api`, `certs`, `keystore`, …), and, one level
//! down, the submodules of `api`, `auth`, `server` and `keystore::vault` (`api::key`,
//! `keystore::vault::client`, …); everything below a node (`server::h2::*`, `cli::*`) belongs to
//! it. A directory's `mod.rs` is a node of its own (`api`, `keystore::vault`).
//!
//! An edge is a path in code (not in comments or strings) that starts with `crate::`, `super::`,
//! `self::` or the name of a child module (`use` declarations, `crate::{a, b::c}` groups, and
//! paths in expressions alike) and names an item of another node. Not counted:
//! * Test code: items under `#[cfg(test)]` (the `mod tests` blocks; in them `super::*` is the
//!   module itself, and fixtures may reach across layers, as the end-to-end tests do) and the
//!   files of test-only modules (`testing`, `protocol_citations`, `config::tests`).
//! * A child's reference to its own parent (`super::State` in `api::key`): the items a
//!   directory's `mod.rs` defines for its children are a layer below the children, even though
//!   the same file also wires the children together; the parent's references to its children
//!   are counted. A cycle through a sibling (`client → health → client`) is found either way.
//! * `main.rs`: another crate (the binary), which sees the library only as `kes::`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Directory modules whose direct submodules are nodes of their own.
const SPLIT: &[&[&str]] = &[&["api"], &["auth"], &["server"], &["keystore", "vault"]];

/// The node a module path belongs to (`["keystore", "vault", "client", "x"]` →
/// `keystore::vault::client`).
fn node_of(path: &[String]) -> String {
    let mut len = 1.min(path.len());
    for split in SPLIT {
        if path.len() > split.len() && path.iter().zip(split.iter()).all(|(a, b)| a == b) {
            len = len.max(split.len() + 1);
        } else if path.len() == split.len() && path.iter().zip(split.iter()).all(|(a, b)| a == b) {
            len = len.max(split.len());
        }
    }
    path[..len].join("::")
}

/// `src/keystore/vault/client.rs` → `["keystore", "vault", "client"]`; `src/api/mod.rs` →
/// `["api"]`; `None` for the crate roots.
fn module_path(rel: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop()?;
    let stem = file.strip_suffix(".rs")?;
    if parts.is_empty() && (stem == "lib" || stem == "main") {
        return None;
    }
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    Some(parts)
}

/// The code of a Rust file with comments, string and character literals blanked out.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(b.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < b.len() {
                if src[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if src[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + 2 + hashes + usize::from(rest.starts_with("br"));
            i = src[body..]
                .find(&close)
                .map_or(b.len(), |n| body + n + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A character literal ('a', '\n', '\u{1F600}'), or a lifetime ('a).
            if let Some(len) = char_literal_len(rest) {
                i += len;
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The number of `#` of a raw string starting here (`r"`, `r#"`, `br##"`), if one does.
fn raw_string_start(s: &str) -> Option<usize> {
    let s = s.strip_prefix('b').unwrap_or(s).strip_prefix('r')?;
    let hashes = s.bytes().take_while(|&c| c == b'#').count();
    (s.as_bytes().get(hashes) == Some(&b'"')).then_some(hashes)
}

fn char_literal_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    let (_, c) = chars.next()?;
    if c == '\\' {
        // An escape: up to the closing quote.
        return s[2..].find('\'').map(|n| n + 3);
    }
    let (at, close) = chars.next()?;
    (close == '\'').then_some(at + 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Path, // `::`
    Punct(char),
}

fn tokens(code: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' || c == '$' {
            let mut ident = String::from(c);
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || n == '_' {
                    ident.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Ident(ident));
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.push(Tok::Path);
        } else if !c.is_whitespace() {
            out.push(Tok::Punct(c));
        }
    }
    out
}

/// What one file says.
#[derive(Default)]
struct FileRefs {
    /// Absolute module paths it refers to (outside test code).
    refs: Vec<Vec<String>>,
    /// Its child modules declared under `#[cfg(test)]` (`mod tests;`), as absolute paths.
    test_modules: Vec<Vec<String>>,
}

/// The index after the item starting at `i`: after its `;`, or after the `}` that closes its
/// first block.
fn skip_item(toks: &[Tok], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(t) = toks.get(i) {
        i += 1;
        match t {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']') => depth = depth.saturating_sub(1),
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i;
                }
            }
            Tok::Punct(';') if depth == 0 => return i,
            _ => {}
        }
    }
    i
}

/// The index after the bracketed group that opens at `i`.
fn skip_group(toks: &[Tok], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(t) = toks.get(i) {
        i += 1;
        match t {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    i
}

/// The index after the attribute whose `#` is at `i`, and whether it makes its item test-only:
/// `#[cfg(test)]`, or a `cfg` that requires `test` (`all(test, unix)`; not `any(test, …)`).
fn attribute(toks: &[Tok], i: usize) -> (usize, bool) {
    if toks.get(i + 1) == Some(&Tok::Punct('!')) {
        return (skip_group(toks, i + 2), false);
    }
    let end = skip_group(toks, i + 1);
    let body = &toks[i..end];
    let word = |w: &str| body.iter().any(|t| *t == Tok::Ident(w.into()));
    let is_cfg = matches!(body.get(2), Some(Tok::Ident(c)) if c == "cfg");
    (end, is_cfg && word("test") && !word("not") && !word("any"))
}

/// The paths of a `crate::…`/`super::…`/`self::…` path starting at `i` (a `{…}` group gives
/// several), resolved against the module `module`, and the index after it.
fn paths_at(toks: &[Tok], i: usize, module: &[String]) -> (Vec<Vec<String>>, usize) {
    let mut base = match toks.get(i) {
        Some(Tok::Ident(s)) if s == "self" => module.to_vec(),
        Some(Tok::Ident(s)) if s == "super" => module[..module.len().saturating_sub(1)].to_vec(),
        _ => Vec::new(), // `crate`, `$crate`
    };
    let mut i = i + 2; // past the first word and its `::`
    while toks.get(i) == Some(&Tok::Ident("super".into())) && toks.get(i + 1) == Some(&Tok::Path) {
        base.pop();
        i += 2;
    }
    rest_of_path(toks, i, base)
}

/// The segments after `prefix::`, expanding `{a, b::{c, d}}` groups.
fn rest_of_path(toks: &[Tok], mut i: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix;
    loop {
        match toks.get(i) {
            Some(Tok::Ident(s)) => {
                if s != "self" {
                    path.push(s.clone());
                }
                i += 1;
                if toks.get(i) == Some(&Tok::Path) {
                    i += 1;
                    continue;
                }
                return (vec![path], i);
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                let mut all = Vec::new();
                loop {
                    match toks.get(i) {
                        None => return (all, i),
                        Some(Tok::Punct('}')) => return (all, i + 1),
                        Some(Tok::Punct(',')) => i += 1,
                        Some(_) => {
                            let (paths, next) = rest_of_path(toks, i, path.clone());
                            all.extend(paths);
                            // Skip `as name` and anything else up to the next `,` or `}`.
                            i = next;
                            while let Some(t) = toks.get(i) {
                                if matches!(t, Tok::Punct(',' | '}')) {
                                    break;
                                }
                                i += 1;
                            }
                        }
                    }
                }
            }
            // `*`, or the end of the path.
            _ => return (vec![path], i),
        }
    }
}

fn scan(src: &str, module: &[String]) -> FileRefs {
    let toks = tokens(&code_only(src));
    let mut out = FileRefs::default();
    // Child modules in files of their own (`mod accept;`), which code names without `self::`
    // (`accept::run`).
    let children: BTreeSet<&str> = toks
        .windows(3)
        .filter_map(|w| match w {
            [Tok::Ident(m), Tok::Ident(name), Tok::Punct(';')] if m == "mod" => Some(name.as_str()),
            _ => None,
        })
        .collect();
    // Inline modules (`mod legacy { … }`): their names and the brace depth they close at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(t) = toks.get(i) {
        let current = || -> Vec<String> {
            let inner = inline.iter().map(|(name, _)| name.clone());
            module.iter().cloned().chain(inner).collect()
        };
        match t {
            Tok::Punct('#') => {
                let (mut end, mut test) = attribute(&toks, i);
                // Further attributes of the same item.
                while toks.get(end) == Some(&Tok::Punct('#')) {
                    let (next, also) = attribute(&toks, end);
                    test |= also;
                    end = next;
                }
                if !test {
                    i = end;
                    continue;
                }
                // `#[cfg(test)] [pub] mod name;` declares a test-only file.
                let item = &toks[end..skip_item(&toks, end)];
                let words: Vec<&Tok> = item
                    .iter()
                    .skip_while(|t| !matches!(t, Tok::Ident(s) if s == "mod"))
                    .collect();
                if let [_, Tok::Ident(name), Tok::Punct(';')] = words.as_slice() {
                    let mut child = current();
                    child.push(name.clone());
                    out.test_modules.push(child);
                }
                i = skip_item(&toks, end);
            }
            Tok::Ident(m) if m == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Punct('{'))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth));
                    depth += 1;
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(s)
                if (s == "crate" || s == "$crate" || s == "super" || s == "self")
                    && toks.get(i + 1) == Some(&Tok::Path)
                    && !matches!(i.checked_sub(1).and_then(|p| toks.get(p)), Some(Tok::Path)) =>
            {
                let (paths, next) = paths_at(&toks, i, &current());
                out.refs.extend(paths);
                i = next;
            }
            Tok::Ident(name)
                if children.contains(name.as_str())
                    && inline.is_empty()
                    && toks.get(i + 1) == Some(&Tok::Path)
                    && !matches!(i.checked_sub(1).and_then(|p| toks.get(p)), Some(Tok::Path)) =>
            {
                let mut child = module.to_vec();
                child.push(name.clone());
                let (paths, next) = rest_of_path(&toks, i + 2, child);
                out.refs.extend(paths);
                i = next;
            }
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src/")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The edges `from → to` between the nodes of the crate (see the module docs).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut scanned = Vec::new();
    let mut test_only: Vec<Vec<String>> = Vec::new();
    let mut modules: BTreeSet<Vec<String>> = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src/");
        let text = std::fs::read_to_string(file).expect("read a source file");
        let module = module_path(rel);
        let refs = scan(&text, module.as_deref().unwrap_or(&[]));
        test_only.extend(refs.test_modules.iter().cloned());
        if rel == Path::new("main.rs") {
            continue;
        }
        if let Some(module) = module {
            modules.insert(module.clone());
            scanned.push((module, refs));
        }
    }
    let is_test_only = |m: &[String]| test_only.iter().any(|t| m.starts_with(t));
    let nodes: BTreeSet<String> = modules
        .iter()
        .filter(|m| !is_test_only(m))
        .map(|m| node_of(m))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> =
        nodes.iter().map(|n| (n.clone(), BTreeSet::new())).collect();
    for (module, refs) in scanned {
        if is_test_only(&module) {
            continue;
        }
        let from = node_of(&module);
        for target in refs.refs {
            // The longest prefix of the path that is a module we know; items of the crate
            // root (`crate::VERSION`) name no node.
            let Some(len) = (1..=target.len())
                .rev()
                .find(|&n| modules.contains(&target[..n]))
            else {
                continue;
            };
            let to = node_of(&target[..len]);
            let parent_of_from = module.len() > 1 && from.starts_with(&format!("{to}::"));
            if to != from && !parent_of_from && nodes.contains(&to) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// A cycle of the graph, if there is one, as `a → b → … → a`.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search; `stack` is the current path, `done` the nodes fully explored.
    fn visit<'a>(
        node: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// The groups of nodes that reach one another (strongly connected components of more than one
/// node): every cycle lies within one.
fn cyclic_groups(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for next in edges.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|n| (n, reach(n))).collect();
    let mut groups: Vec<BTreeSet<String>> = Vec::new();
    for (node, from_node) in &reachable {
        if groups.iter().any(|g| g.contains(*node)) || !from_node.contains(*node) {
            continue;
        }
        let group: BTreeSet<String> = from_node
            .iter()
            .filter(|other| reachable.get(other).is_some_and(|r| r.contains(*node)))
            .cloned()
            .collect();
        groups.push(group);
    }
    groups
}

/// The graph had 44 nodes and 127 edges, and no cycle, when this test was written
/// (`cargo test --lib module_graph -- --nocapture` prints them); the test fails naming a cycle,
/// and every group of modules that reach one another.
#[test]
fn the_modules_form_no_cycle() {
    let edges = graph();
    let count: usize = edges.values().map(BTreeSet::len).sum();
    for (from, to) in &edges {
        println!(
            "{from} -> {}",
            to.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    println!("{} nodes, {count} edges", edges.len());
    if let Some(cycle) = find_cycle(&edges) {
        let groups: Vec<String> = cyclic_groups(&edges)
            .iter()
            .map(|g| g.iter().cloned().collect::<Vec<_>>().join(", "))
            .collect();
        panic!(
            "module cycle: {}\nmodules that reach one another: {}",
            cycle.join(" → "),
            groups.join("; ")
        );
    }
}

#[test]
fn the_scanner_reads_paths_as_the_compiler_does() {
    let module: Vec<String> = ["keystore", "vault", "client"].map(String::from).to_vec();
    let src = r##"
        //! Docs name [`crate::api`] and `super::health`: not code.
        use super::flag::{HealthFlag, SEALED};
        use crate::{certs, config::{self, VaultConfig}, keystore::Error as E};
        mod helper;
        fn f<'a>(x: &'a str) -> char {
            let _ = "crate::logstream::x";
            let _ = r#"super::engine"#;
            let _ = helper::g(crate::transport::describe, super::super::Keystore);
            /* crate::cache::x /* nested */ crate::cache::y */
            '"'
        }
        mod legacy {
            use super::Budget; // the file's own module
        }
        #[cfg(test)]
        mod tests {
            use crate::testing::XorShift;
        }
        #[cfg(all(test, unix))]
        use crate::sys;
        #[cfg(not(test))]
        use crate::metrics;
    "##;
    let refs = scan(src, &module);
    let got: Vec<String> = refs.refs.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        got,
        [
            "keystore::vault::flag::HealthFlag",
            "keystore::vault::flag::SEALED",
            "certs",
            "config",
            "config::VaultConfig",
            "keystore::Error",
            "keystore::vault::client::helper::g",
            "transport::describe",
            "keystore::Keystore",
            "keystore::vault::client::Budget",
            "metrics",
        ]
    );
    assert_eq!(node_of(&module), "keystore::vault::client");
    assert_eq!(node_of(&["cli".into(), "key".into()]), "cli");
    assert_eq!(
        node_of(&["keystore".into(), "vault".into()]),
        "keystore::vault"
    );
}

#[test]
fn a_cycle_is_found_and_named() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a", "d"][..]),
        ("d", &[][..]),
    ]
    .iter()
    .map(|(from, to)| (from.to_string(), to.iter().map(|t| t.to_string()).collect()))
    .collect();
    assert_eq!(find_cycle(&edges).unwrap(), ["a", "b", "c", "a"]);
    let groups = cyclic_groups(&edges);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].iter().collect::<Vec<_>>(), ["a", "b", "c"]);
}
