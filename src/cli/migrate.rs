//! `kes migrate`: copy keys from one keystore to another, e.g. when the root KMS changes from a
//! directory to Vault, or from a K/V v1 engine to v2.
//!
//! What is copied is the stored value (§6.1), byte for byte: keys are never decrypted,
//! re-encrypted or even parsed, so ciphertexts made before the migration decrypt with the
//! migrated keys. (A Vault keystore with `transit` wraps values when it stores them and unwraps
//! them when it reads them; the KES value inside is the same.)
//!
//! Safety rules, in order:
//! * **Nothing is lost.** The source is only read. A destination key is replaced only with
//!   `--force`, and only when its value differs from the source's.
//! * **Re-runnable.** Keys already copied (same value in the destination) count as done, so a
//!   migration that was interrupted completes when it is run again. A `--force` replacement is
//!   a delete followed by a create; if it is interrupted between the two, the source still has
//!   the key and the next run creates it.
//! * **Honest summary.** Every key ends in exactly one state (copied, present, replaced,
//!   conflict, failed); the exit code is 0 only when every selected key is in the destination
//!   with the source's value (or `--merge` said that conflicts are fine).
//!
//! **Key versions** (docs/key-versions.md §7): a rotated key's later versions and retirement
//! markers (its live ring, bound to version 1's key-id) are copied **before** version 1, each
//! only if absent; an identical one counts as present, a different one makes the key a conflict
//! (never replaced, not even with `--force`) and version 1 is then not copied, so a key appears
//! in the destination only with its whole ring. Stale rings of deleted keys are not copied.
//!
//! A config file for `--from`/`--to` is a KES server config (only its `keystore:` section is
//! used), or a file with nothing but a `keystore:` section.

use crate::cli::Error;
use crate::cli::output::{Output, Style, Table, sanitize};
use crate::config::{self, KeystoreConfig};
use crate::keystore::{self, Keystore};
use serde::Serialize;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq as _;

pub const ABOUT: &str = "\
Copy keys from one keystore to another: from the keystore of the --from config to that of the
--to config (filesystem or Vault/OpenBao, with any engine, K/V version, namespace, prefix or
transit setting).

The stored values are copied as they are: keys are not decrypted or re-encrypted, so data
encrypted before the migration can be decrypted with the migrated keys. The source is only
read. A key that exists in the destination is left alone: if its value is the same, it counts
as migrated; if it differs, it is a conflict, reported and not replaced unless you give
--force. So an interrupted migration can simply be run again.

Each config is a KES server config file (only its keystore section is used) or a file with
just a keystore section. PATTERN selects keys by name; '*' matches any characters (default:
all keys).

On a terminal a progress bar is shown; at the end, a summary. When the output is not a
terminal, the Go kes command's text: 'Starting key migration:', then 'Migrated N keys
successfully!' (N keys copied or replaced). With --json, the summary is one JSON object. The
exit code is 0 when every selected key is in the destination with the source's value, 1 if
keys failed or conflicted, 2 for bad arguments or configs, 3 if a keystore could not be
reached.

The Go command could also migrate keys to a MinIO KMS server (--server, --enclave, --api-key,
--insecure instead of --to). This kes cannot: those flags are accepted and refused with an
explanation.";

const EXAMPLES: &str = "\
Examples:
  kes migrate --from fs.yaml --to vault.yaml
  kes migrate --from vault-v1.yaml --to vault-v2.yaml 'minio-*'
  kes migrate --from old.yaml --to new.yaml --force my-key

A config with just a keystore section:
  keystore:
    vault:
      endpoint: https://vault:8200
      engine: kv
      version: v2
      approle: {id: ..., secret: ...}";

#[derive(clap::Args, Debug)]
#[command(long_about = ABOUT, after_help = EXAMPLES)]
pub struct MigrateArgs {
    /// Config file of the keystore to copy from.
    #[arg(long, value_name = "CONFIG")]
    pub from: Option<PathBuf>,
    /// Config file of the keystore to copy to.
    #[arg(long, value_name = "CONFIG")]
    pub to: Option<PathBuf>,
    /// Not supported: the MinIO KMS server to migrate to (Go command) [env: MINIO_KMS_SERVER]
    #[arg(
        short = 's',
        long,
        value_name = "HOST",
        help_heading = "MinIO KMS (not supported)"
    )]
    pub server: Option<String>,
    /// Not supported: the MinIO KMS enclave to migrate to (Go command) [env: MINIO_KMS_ENCLAVE]
    #[arg(
        short = 'e',
        long,
        value_name = "ENCLAVE",
        help_heading = "MinIO KMS (not supported)"
    )]
    pub enclave: Option<String>,
    /// Not supported: the MinIO KMS API key (Go command) [env: MINIO_KMS_API_KEY]
    #[arg(
        short = 'a',
        long = "api-key",
        value_name = "KEY",
        help_heading = "MinIO KMS (not supported)"
    )]
    pub api_key: Option<String>,
    /// Not supported: skip the MinIO KMS server's certificate verification (Go command)
    #[arg(short = 'k', long, help_heading = "MinIO KMS (not supported)")]
    pub insecure: bool,
    /// Replace destination keys whose value differs from the source's.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Accept conflicts: keep differing destination keys and exit with 0.
    #[arg(long, conflicts_with = "force")]
    pub merge: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// How many keys to copy at the same time.
    #[arg(short = 'j', long, value_name = "N", default_value_t = DEFAULT_JOBS, value_parser = parse_jobs)]
    pub jobs: usize,
    /// Names of the keys to copy; '*' matches any characters.
    #[arg(value_name = "PATTERN", default_value = "*")]
    pub pattern: String,
}

fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ 1..=256) => Ok(n),
        _ => Err("expected a number from 1 to 256".into()),
    }
}

/// What happened to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Created in the destination.
    Copied,
    /// The destination had it already, with the same value.
    Present,
    /// The destination had a different value; replaced (`--force`).
    Replaced,
    /// The destination has a different value; left alone.
    Conflict,
    /// Deleted from the source since it was listed; nothing to copy.
    Vanished,
}

/// The result of a migration.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub pattern: String,
    /// Keys selected by the pattern.
    pub total: usize,
    pub copied: usize,
    pub present: usize,
    pub replaced: usize,
    pub vanished: usize,
    pub conflicts: Vec<String>,
    pub failed: Vec<Failure>,
    /// Keys not attempted because a keystore became unreachable.
    pub not_attempted: usize,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub name: String,
    pub error: String,
}

/// `*` matches any run of characters (also none); everything else matches itself.
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            backtrack = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ni = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Copies one entry of a ring only if absent: `Ok(true)` when the destination now has exactly
/// the source's bytes, `Ok(false)` when it holds different ones (left alone).
fn copy_ring_entry(
    value: &[u8],
    create: impl FnOnce() -> Result<(), keystore::Error>,
    existing: impl FnOnce() -> Result<zeroize::Zeroizing<Vec<u8>>, keystore::Error>,
) -> Result<bool, keystore::Error> {
    match create() {
        Ok(()) => Ok(true),
        Err(keystore::Error::Exists) => {
            let there = existing()?;
            Ok(bool::from(there.as_slice().ct_eq(value)))
        }
        Err(e) => Err(e),
    }
}

/// Copies the live ring of `name` (versions ≥ 2 and markers; see the module docs). `Ok(false)`:
/// the destination holds a different entry. A version 1 that is not a readable key value cannot
/// have been rotated (rotation needs its key-id), so there is nothing to copy.
fn copy_ring(
    src: &dyn Keystore,
    dst: &dyn Keystore,
    name: &str,
    v1: &[u8],
) -> Result<bool, keystore::Error> {
    let Ok(ring) = crate::keyring::ring_id(v1) else {
        return Ok(true);
    };
    for e in src.list_versions(name, &ring)? {
        if e.value {
            let value = match src.get_version(name, &ring, e.n) {
                Ok(v) => v,
                // Destroyed since it was listed: its marker (below) still keeps the number.
                Err(keystore::Error::NotFound) => continue,
                Err(err) => return Err(err),
            };
            let same = copy_ring_entry(
                &value,
                || dst.create_version(name, &ring, e.n, &value),
                || dst.get_version(name, &ring, e.n),
            )?;
            if !same {
                return Ok(false);
            }
        }
        if e.retired {
            let marker = match src.get_marker(name, &ring, e.n) {
                Ok(m) => m,
                Err(keystore::Error::NotFound) => continue,
                Err(err) => return Err(err),
            };
            // A marker of other content (another time or identity) still marks the version
            // retired; it is not a conflict.
            copy_ring_entry(
                &marker,
                || dst.create_marker(name, &ring, e.n, &marker),
                || dst.get_marker(name, &ring, e.n),
            )?;
        }
    }
    Ok(true)
}

/// Copies one key (see the module docs for the rules).
fn copy_key(
    src: &dyn Keystore,
    dst: &dyn Keystore,
    name: &str,
    force: bool,
) -> Result<Outcome, keystore::Error> {
    let value = match src.get(name) {
        Ok(v) => v,
        Err(keystore::Error::NotFound) => return Ok(Outcome::Vanished),
        Err(e) => return Err(e),
    };
    if !copy_ring(src, dst, name, &value)? {
        return Ok(Outcome::Conflict);
    }
    match dst.create(name, &value) {
        Ok(()) => return Ok(Outcome::Copied),
        Err(keystore::Error::Exists) => {}
        Err(e) => return Err(e),
    }
    let existing = match dst.get(name) {
        Ok(v) => v,
        // Deleted in between: try once more to create it.
        Err(keystore::Error::NotFound) => {
            return dst.create(name, &value).map(|()| Outcome::Copied);
        }
        Err(e) => return Err(e),
    };
    if bool::from(existing.as_slice().ct_eq(value.as_slice())) {
        return Ok(Outcome::Present);
    }
    if !force {
        return Ok(Outcome::Conflict);
    }
    match dst.delete(name) {
        Ok(()) | Err(keystore::Error::NotFound) => {}
        Err(e) => return Err(e),
    }
    dst.create(name, &value).map(|()| Outcome::Replaced)
}

/// Copies keys by `jobs` workers in parallel: keystores are network services or fsync each
/// write, and a Vault K/V v1 create waits out a race window, so one key at a time would make a
/// large migration take hours.
pub const DEFAULT_JOBS: usize = 8;

/// Migrates the keys matching `pattern` with `jobs` workers. `progress` is called with the
/// number of keys done after each key (and once with 0 before the first); `problem` for each
/// key that failed or conflicts.
pub fn migrate(
    src: &dyn Keystore,
    dst: &dyn Keystore,
    pattern: &str,
    force: bool,
    jobs: usize,
    mut progress: impl FnMut(usize, usize, &str),
    mut problem: impl FnMut(&str, &str),
) -> Result<Report, Error> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let prefix = pattern.split('*').next().unwrap_or("");
    let page = src.list(prefix, usize::MAX).map_err(|e| match e {
        keystore::Error::Unreachable { .. } => {
            Error::Connection(format!("cannot list the source keystore: {e}"))
        }
        e => Error::Failed(format!("cannot list the source keystore: {e}")),
    })?;
    if !page.continue_at.is_empty() {
        return Err(Error::Failed(format!(
            "the source keystore listed only part of its keys (up to '{}'); nothing was copied",
            sanitize(&page.continue_at)
        )));
    }
    let names: Vec<String> = page
        .names
        .into_iter()
        .filter(|n| matches(pattern, n))
        .collect();
    let total = names.len();
    let mut report = Report {
        pattern: pattern.to_string(),
        total,
        ..Report::default()
    };
    progress(0, total, "");

    let next = AtomicUsize::new(0);
    // Set when a keystore is unreachable: every further key would wait for the same timeout,
    // so stop; a re-run continues where this one ended.
    let stop = AtomicBool::new(false);
    let mut done = 0;
    std::thread::scope(|scope| -> Result<(), Error> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut workers = 0;
        for n in 0..jobs.clamp(1, total.max(1)) {
            let tx = tx.clone();
            let (next, stop, names) = (&next, &stop, &names);
            let worker = move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(name) = names.get(i) else { break };
                    let result = copy_key(src, dst, name, force);
                    if matches!(result, Err(keystore::Error::Unreachable { .. })) {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            };
            match std::thread::Builder::new()
                .name(format!("kes-migrate-{n}"))
                .spawn_scoped(scope, worker)
            {
                Ok(_) => workers += 1,
                Err(e) if workers == 0 => {
                    return Err(Error::Failed(format!("cannot start a worker thread: {e}")));
                }
                // Fewer workers are fine.
                Err(_) => break,
            }
        }
        drop(tx);
        for (i, result) in rx {
            let name = &names[i];
            done += 1;
            match result {
                Ok(Outcome::Copied) => report.copied += 1,
                Ok(Outcome::Present) => report.present += 1,
                Ok(Outcome::Replaced) => report.replaced += 1,
                Ok(Outcome::Vanished) => report.vanished += 1,
                Ok(Outcome::Conflict) => {
                    problem(
                        name,
                        "exists in the destination with a different value (not replaced)",
                    );
                    report.conflicts.push(name.clone());
                }
                Err(e) => {
                    problem(name, &e.to_string());
                    report.failed.push(Failure {
                        name: name.clone(),
                        error: e.to_string(),
                    });
                }
            }
            progress(done, total, name);
        }
        Ok(())
    })?;
    report.not_attempted = total - done;
    report.conflicts.sort();
    report.failed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(report)
}

/// Reads the keystore section of a config file. A file without `admin`/`tls` sections (just a
/// keystore) is accepted: placeholders are appended, which keeps the line numbers of errors.
pub fn load_keystore_config(path: &Path) -> Result<KeystoreConfig, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("cannot read '{}': {e}", path.display())))?;
    let env = |name: &str| std::env::var(name);
    let first = match config::parse_with(&text, Some(path), env) {
        Ok(cfg) => return Ok(cfg.keystore),
        Err(e) => e,
    };
    let top: Vec<String> = match yaml_serde::from_str::<yaml_serde::Value>(&text) {
        Ok(yaml_serde::Value::Mapping(map)) => map
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let has = |k: &str| top.iter().any(|t| t == k);
    if top.is_empty() || (has("admin") || has("root")) && has("tls") {
        return Err(Error::Usage(first.to_string()));
    }
    let mut augmented = text.clone();
    if !augmented.ends_with('\n') {
        augmented.push('\n');
    }
    if !has("admin") && !has("root") {
        augmented.push_str("admin:\n  identity: disabled\n");
    }
    if !has("tls") {
        // Never read: migrate opens only the keystore.
        augmented.push_str("tls:\n  key: unused.key\n  cert: unused.cert\n");
    }
    config::parse_with(&augmented, Some(path), env)
        .map(|cfg| cfg.keystore)
        .map_err(|e| Error::Usage(e.to_string()))
}

/// True when two configs name the same keystore (migrating a keystore onto itself could lose
/// keys with --force, and is never what was meant).
fn same_keystore(a: &KeystoreConfig, b: &KeystoreConfig) -> bool {
    match (a, b) {
        (KeystoreConfig::Fs { path: a }, KeystoreConfig::Fs { path: b }) => {
            match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            }
        }
        (KeystoreConfig::Vault(a), KeystoreConfig::Vault(b)) => {
            let norm = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
            let trim = |s: &str| s.trim_matches('/').to_string();
            a.endpoints
                .iter()
                .any(|e| b.endpoints.iter().any(|f| norm(e) == norm(f)))
                && trim(&a.namespace) == trim(&b.namespace)
                && trim(&a.engine) == trim(&b.engine)
                && trim(&a.prefix) == trim(&b.prefix)
        }
        // In memory: a keystore of its own, never another's.
        (KeystoreConfig::Memory, KeystoreConfig::Memory) => false,
        // Different kinds are different keystores. Listed one by one, so that a new kind of
        // keystore cannot skip this guard unnoticed: the match stops compiling.
        (KeystoreConfig::Fs { .. } | KeystoreConfig::Vault(_) | KeystoreConfig::Memory, _) => false,
    }
}

fn open(
    path: &Path,
    role: &str,
) -> Result<(KeystoreConfig, std::sync::Arc<dyn Keystore>, String), Error> {
    let cfg = load_keystore_config(path)?;
    // Opening a filesystem keystore creates its directory: right for the destination, but a
    // mistyped source path would silently migrate nothing.
    if let (KeystoreConfig::Fs { path: dir }, "source") = (&cfg, role)
        && !dir.is_dir()
    {
        return Err(Error::Usage(format!(
            "the source keystore directory '{}' (in '{}') does not exist",
            dir.display(),
            path.display()
        )));
    }
    let (store, desc) = keystore::open(&cfg).map_err(|e| {
        Error::Connection(format!(
            "cannot open the {role} keystore of '{}': {e}",
            path.display()
        ))
    })?;
    Ok((cfg, store, desc))
}

/// The source and destination configs, or why the command line does not name them.
fn configs(args: &MigrateArgs) -> Result<(&Path, &Path), Error> {
    let Some(from) = args.from.as_deref() else {
        return Err(Error::Usage(
            "no source specified. Use '--from' flag".into(),
        ));
    };
    let kms = [
        ("-s / --server", args.server.is_some()),
        ("-e / --enclave", args.enclave.is_some()),
        ("-a / --api-key", args.api_key.is_some()),
        ("-k / --insecure", args.insecure),
    ];
    if let Some(to) = args.to.as_deref() {
        if let Some((flag, _)) = kms.iter().find(|(_, given)| *given) {
            return Err(Error::Usage(format!("cannot use '{flag}' and '--to' flag")));
        }
        return Ok((from, to));
    }
    let kms_server = args.server.is_some()
        || std::env::var_os("MINIO_KMS_SERVER").is_some_and(|v| !v.is_empty());
    if kms_server || kms.iter().any(|(_, given)| *given) {
        return Err(Error::Usage(
            "migrating keys to a MinIO KMS server (--server, --enclave, --api-key, \
             MINIO_KMS_SERVER) is not supported by this kes: migrate them to another keystore \
             with '--to CONFIG', or use MinIO's own tools for MinIO KMS"
                .into(),
        ));
    }
    Err(Error::Usage(
        "missing migration target. Use '--to CONFIG' (this kes cannot migrate keys to a MinIO KMS server with '--server')".into(),
    ))
}

pub fn run(args: MigrateArgs) -> Result<(), Error> {
    let out = Output::new(args.json);
    let (from, to) = configs(&args)?;
    let (src_cfg, src, src_desc) = open(from, "source")?;
    let (dst_cfg, dst, dst_desc) = open(to, "destination")?;
    if same_keystore(&src_cfg, &dst_cfg) {
        return Err(Error::Usage(format!(
            "'{}' and '{}' name the same keystore ({src_desc})",
            from.display(),
            to.display()
        )));
    }
    if out.plain() {
        out.print("Starting key migration:\n\n")?;
    }

    let bar = std::io::stderr().is_terminal() && !out.json;
    let mut problems = Vec::new();
    let mut report = migrate(
        src.as_ref(),
        dst.as_ref(),
        &args.pattern,
        args.force,
        args.jobs,
        |done, total, name| {
            if bar {
                draw_progress(done, total, name);
            }
        },
        |name, why| problems.push((name.to_string(), why.to_string())),
    )?;
    if bar {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
    report.from = src_desc;
    report.to = dst_desc;

    let ok = report.failed.is_empty() && (report.conflicts.is_empty() || args.merge);
    if out.json {
        out.print_json(&report)?;
    } else {
        for (name, why) in &problems {
            crate::cli::print_error(format!("key '{}': {why}", sanitize(name)));
        }
        if !out.terminal {
            let migrated = report.copied + report.replaced;
            if ok && migrated == 0 {
                out.print("Migration succeeded! No keys migrated.\n")?;
            } else if ok {
                out.print(&format!("Migrated {migrated:6} keys successfully!\n"))?;
            }
        } else {
            out.print(&summary(&out, &report))?;
        }
    }
    if ok {
        return Ok(());
    }
    let unreachable = report.not_attempted > 0;
    if !out.json && !report.conflicts.is_empty() && !args.force {
        crate::cli::print_error(
            "keys with a different value in the destination were not replaced: compare them, \
             then re-run with --force to replace them or --merge to keep them",
        );
    }
    Err(Error::Reported(if unreachable {
        crate::cli::EXIT_CONNECTION
    } else {
        crate::cli::EXIT_FAILURE
    }))
}

fn summary(out: &Output, r: &Report) -> String {
    let mut t = Table::new();
    let mut row = |label: &str, n: usize, style: Style| {
        let text = n.to_string();
        t.row([
            label.to_string(),
            if n > 0 { out.paint(style, &text) } else { text },
        ]);
    };
    row("copied", r.copied, Style::Green);
    row("already present", r.present, Style::Green);
    row("replaced (--force)", r.replaced, Style::Yellow);
    row("conflicts (not replaced)", r.conflicts.len(), Style::Yellow);
    row("failed", r.failed.len(), Style::Red);
    if r.vanished > 0 {
        row("deleted from the source meanwhile", r.vanished, Style::Dim);
    }
    if r.not_attempted > 0 {
        row("not attempted", r.not_attempted, Style::Red);
    }
    let body: String = t.render().lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "Migrated {} of {} keys matching '{}'\n  from {}\n  to   {}\n{body}",
        r.copied + r.present + r.replaced,
        r.total,
        sanitize(&r.pattern),
        sanitize(&r.from),
        sanitize(&r.to),
    )
}

/// `[==============>               ]  12/40  name` on standard error, redrawn in place.
fn draw_progress(done: usize, total: usize, name: &str) {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let mut bar = "=".repeat(filled);
    if filled < WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat(WIDTH - filled - 1));
    }
    let mut name = sanitize(name);
    if name.chars().count() > 40 {
        name = name.chars().take(39).collect::<String>() + "…";
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K[{bar}] {done}/{total}  {name}");
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::mem::MemKeystore;

    #[test]
    fn patterns() {
        for (p, n, m) in [
            ("*", "anything", true),
            ("*", "", true),
            ("minio-*", "minio-key", true),
            ("minio-*", "minio-", true),
            ("minio-*", "xminio-key", false),
            ("*-key", "my-key", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("exact", "exact", true),
            ("exact", "exact2", false),
            ("**", "x", true),
        ] {
            assert_eq!(matches(p, n), m, "{p} {n}");
        }
    }

    fn store(keys: &[(&str, &[u8])]) -> MemKeystore {
        let s = MemKeystore::new();
        for (k, v) in keys {
            s.create(k, v).unwrap();
        }
        s
    }

    fn run(src: &MemKeystore, dst: &MemKeystore, pattern: &str, force: bool) -> Report {
        migrate(src, dst, pattern, force, 4, |_, _, _| {}, |_, _| {}).unwrap()
    }

    #[test]
    fn copies_without_overwriting_and_reruns_cleanly() {
        let src = store(&[("a", b"A"), ("b", b"B"), ("c", b"C"), ("other", b"O")]);
        // The destination has one key already copied and one that differs.
        let dst = store(&[("a", b"A"), ("b", b"B-different")]);
        let r = run(&src, &dst, "?", false);
        assert_eq!(r.total, 0);

        let r = run(&src, &dst, "*", false);
        assert_eq!((r.total, r.copied, r.present, r.replaced), (4, 2, 1, 0));
        assert_eq!(r.conflicts, ["b"]);
        assert!(r.failed.is_empty());
        assert_eq!(&dst.get("b").unwrap()[..], b"B-different");
        assert_eq!(&dst.get("c").unwrap()[..], b"C");
        // The source is untouched.
        assert_eq!(src.list("", usize::MAX).unwrap().names.len(), 4);

        // Running it again changes nothing and reports everything as present.
        let r = run(&src, &dst, "*", false);
        assert_eq!((r.copied, r.present, r.conflicts.len()), (0, 3, 1));

        // --force replaces only the differing key.
        let r = run(&src, &dst, "*", true);
        assert_eq!((r.copied, r.present, r.replaced), (0, 3, 1));
        assert_eq!(&dst.get("b").unwrap()[..], b"B");

        // A pattern selects by name.
        let dst2 = MemKeystore::new();
        let r = run(&src, &dst2, "o*", false);
        assert_eq!((r.total, r.copied), (1, 1));
        assert_eq!(dst2.list("", 10).unwrap().names, ["other"]);
    }

    fn key_value(seed: u8) -> zeroize::Zeroizing<Vec<u8>> {
        crate::testing::stored_key(crate::crypto::Algorithm::Aes256, seed)
    }

    #[test]
    fn copies_every_version_and_marker_before_the_key() {
        use crate::keyring;
        let src = MemKeystore::new();
        src.create("rot", &key_value(1)).unwrap();
        src.create("plain", b"P").unwrap();
        for seed in 2..=4 {
            keyring::rotate(&src, "rot", || Ok(key_value(seed))).unwrap();
        }
        let ring = keyring::ring_id(&key_value(1)).unwrap();
        src.create_marker("rot", &ring, 2, b"{\"retired\"}")
            .unwrap();
        // A destroyed version: only its marker is left.
        src.create_marker("rot", &ring, 3, b"{}").unwrap();
        src.delete_version("rot", &ring, 3).unwrap();

        let dst = MemKeystore::new();
        let r = run(&src, &dst, "*", false);
        assert_eq!((r.total, r.copied, r.conflicts.len()), (2, 2, 0));
        assert_eq!(&dst.get("rot").unwrap()[..], &key_value(1)[..]);
        assert_eq!(
            dst.list_versions("rot", &ring),
            src.list_versions("rot", &ring)
        );
        for n in [2, 4] {
            assert_eq!(
                &dst.get_version("rot", &ring, n).unwrap()[..],
                &key_value(n as u8)[..]
            );
        }
        assert_eq!(
            &dst.get_marker("rot", &ring, 2).unwrap()[..],
            b"{\"retired\"}"
        );
        // Rerun: everything present.
        let r = run(&src, &dst, "*", false);
        assert_eq!((r.copied, r.present), (0, 2));

        // A destination with a different version 2 in the same ring: a conflict, nothing
        // replaced (not even with --force), and the key itself is not created there.
        let dst = MemKeystore::new();
        dst.create_version("rot", &ring, 2, &key_value(99)).unwrap();
        for force in [false, true] {
            let r = run(&src, &dst, "rot", force);
            assert_eq!(r.conflicts, ["rot"]);
            assert_eq!(
                &dst.get_version("rot", &ring, 2).unwrap()[..],
                &key_value(99)[..]
            );
            assert_eq!(dst.get("rot").map(|_| ()), Err(keystore::Error::NotFound));
        }
    }

    /// A destination that fails for one name and is unreachable for another.
    struct Flaky(MemKeystore);
    impl Keystore for Flaky {
        fn create(&self, name: &str, value: &[u8]) -> Result<(), keystore::Error> {
            match name {
                "bad" => Err(keystore::Error::Denied("permission denied".into())),
                "down" => Err(keystore::Error::unreachable(
                    keystore::UnreachableReason::Network,
                    "connection refused",
                )),
                _ => self.0.create(name, value),
            }
        }
        fn get(&self, name: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, keystore::Error> {
            self.0.get(name)
        }
        fn delete(&self, name: &str) -> Result<(), keystore::Error> {
            self.0.delete(name)
        }
        fn list(&self, prefix: &str, limit: usize) -> Result<keystore::Page, keystore::Error> {
            self.0.list(prefix, limit)
        }
        fn status(&self) -> Result<keystore::Status, keystore::Error> {
            self.0.status()
        }
    }

    #[test]
    fn failures_are_reported_and_unreachable_stops() {
        let src = store(&[
            ("a", b"A"),
            ("bad", b"X"),
            ("c", b"C"),
            ("down", b"D"),
            ("e", b"E"),
        ]);
        let dst = Flaky(MemKeystore::new());
        // One worker: the order is the listing's, so what "down" stops is known.
        let mut seen = Vec::new();
        let r = migrate(
            &src,
            &dst,
            "*",
            false,
            1,
            |i, n, _| seen.push((i, n)),
            |_, _| {},
        )
        .unwrap();
        assert_eq!(r.copied, 2);
        assert_eq!(
            r.failed.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["bad", "down"]
        );
        assert!(r.failed[0].error.contains("permission denied"));
        assert_eq!(r.not_attempted, 1);
        assert_eq!(seen.first(), Some(&(0, 5)));
        assert_eq!(seen.last(), Some(&(4, 5)));

        // Many workers: every key is accounted for exactly once.
        let many = MemKeystore::new();
        for i in 0..500 {
            many.create(&format!("k{i:03}"), format!("v{i}").as_bytes())
                .unwrap();
        }
        let dst = MemKeystore::new();
        let mut calls = 0;
        let r = migrate(&many, &dst, "*", false, 16, |_, _, _| calls += 1, |_, _| {}).unwrap();
        assert_eq!((r.total, r.copied, calls), (500, 500, 501));
        assert_eq!(dst.list("", usize::MAX).unwrap().names.len(), 500);
    }

    #[test]
    fn same_keystore_is_detected() {
        let dir = std::env::temp_dir().join(format!("kes-migrate-same-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = KeystoreConfig::Fs { path: dir.clone() };
        let b = KeystoreConfig::Fs {
            path: dir.join("..").join(dir.file_name().unwrap()),
        };
        assert!(same_keystore(&a, &b));
        let c = KeystoreConfig::Fs {
            path: dir.join("other"),
        };
        assert!(!same_keystore(&a, &c));
        std::fs::remove_dir_all(&dir).unwrap();

        let vault = |endpoint: &str, engine: &str, prefix: &str| {
            KeystoreConfig::Vault(Box::new(config::VaultConfig {
                endpoints: vec![endpoint.into()],
                engine: engine.into(),
                prefix: prefix.into(),
                ..Default::default()
            }))
        };
        assert!(same_keystore(
            &vault("https://v:8200", "kv", "kes"),
            &vault("https://V:8200/", "kv/", "/kes")
        ));
        assert!(!same_keystore(
            &vault("https://v:8200", "kv", "kes"),
            &vault("https://v:8200", "kv2", "kes")
        ));
        assert!(!same_keystore(&a, &vault("https://v:8200", "kv", "")));
    }

    #[test]
    fn keystore_only_configs() {
        let dir = std::env::temp_dir().join(format!("kes-migrate-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let only = dir.join("only.yaml");
        std::fs::write(&only, "keystore:\n  fs:\n    path: /tmp/keys").unwrap();
        assert!(matches!(
            load_keystore_config(&only).unwrap(),
            KeystoreConfig::Fs { path } if path == Path::new("/tmp/keys")
        ));
        let full = dir.join("full.yaml");
        std::fs::write(
            &full,
            "admin:\n  identity: disabled\ntls:\n  key: k\n  cert: c\nkeystore:\n  fs:\n    path: /tmp/k2\n",
        )
        .unwrap();
        assert!(matches!(
            load_keystore_config(&full).unwrap(),
            KeystoreConfig::Fs { .. }
        ));
        // Errors name the file and the line, also in a keystore-only file.
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "keystore:\n  fs:\n    pth: /tmp/keys\n").unwrap();
        let err = load_keystore_config(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.yaml") && err.contains("pth"), "{err}");
        let none = dir.join("none.yaml");
        std::fs::write(&none, "admin:\n  identity: x\n").unwrap();
        let err = load_keystore_config(&none).unwrap_err().to_string();
        assert!(err.contains("keystore"), "{err}");
        assert!(matches!(
            load_keystore_config(&dir.join("missing.yaml")),
            Err(Error::Usage(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
