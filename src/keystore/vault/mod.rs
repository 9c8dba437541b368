//! The HashiCorp Vault / OpenBao keystore (§6.3): keys as secrets of a K/V engine (v1 or v2),
//! optionally wrapped by the transit engine, with AppRole or Kubernetes login.
//!
//! * [`client`]: HTTP (ureq), endpoints, node choice, timeouts; [`tls`]: roots and client cert.
//! * [`auth`]: login, token renewal, re-login after a 403.
//! * [`kv`]: K/V paths and bodies; [`transit`]: wrapping.
//! * [`health`]: the background health check (probes through the client) that keeps the fail-fast
//!   flag of [`flag`] current.
//! * [`engine`]: the checks of the K/V engine (mount, version, the policy's `update`).
//!
//! What this module must never do: overwrite a key, log or put into an error a token, a secret
//! ID, a JWT or a stored value, or let a caller wait on Vault longer than the configured
//! timeouts allow.
//!
//! # Time limits
//! * **Reading a key** (what every generate, encrypt or decrypt of an uncached key waits for)
//!   has one deadline for the whole operation, `timeout.read` (default 1.5 s): the K/V read,
//!   the transit decrypt, a re-login after an expired token, and every node tried, together.
//!   A read that cannot finish in time fails with `Unreachable` (reason `Timeout`, "no answer
//!   within …"), which
//!   the client sees as 502 within the deadline. The deadline only ends attempts that are still
//!   waiting; a busy Vault that answers within it is never cut short, and one slow answer does
//!   not mark Vault unusable (only a failed health probe does, see below).
//! * **Status** (`/v1/status`, and the key cache's health probe) also answers within
//!   `timeout.read`: a Vault whose health check does not answer in time is reported unreachable.
//! * **Creates, deletes, listings, logins, token renewals and health probes** are bounded per
//!   HTTP call (`timeout.connect` for the connection, `timeout.response` for the exchange) and,
//!   for calls that need the active node, by the search for it (at most `timeout.response`).
//!   They are rare, and a create that gives up early would leave the client unsure whether the
//!   key exists; they favour finishing over failing fast.
//!
//! # Operations (§6.3)
//! * **create**: (transit: encrypt, first, so the check and the write follow each other
//!   closely), existence check (`GET`, on the active node) → `Exists`; otherwise write (`PUT`;
//!   v2 with `cas: 0`). When Vault refuses the write — v2 CAS mismatch (400 "check-and-set
//!   parameter did not match"), or 403 because the policy of the setup procedure grants `create`
//!   but not `update` — the key is read again on the active node: it exists → `Exists`; it holds
//!   exactly the value we wrote → success (our own earlier attempt, whose answer was lost and
//!   that the client sent again to another node).
//! * **create on KV v1** needs more: v1 has no compare-and-set, and Vault's create-versus-update
//!   decision is not atomic with the write, so two creates whose existence checks both run
//!   before either write lands are *both* accepted (even with a create-only policy), and the
//!   later write silently replaces the earlier. The tests showed this with two keystores racing.
//!   So on v1 creates of one name are serialized within the process, and after a successful
//!   write the create waits out a race window (≥ 250 ms, ≥ 3× its own check-to-write time) and
//!   reads the key back: another value means a concurrent create won → `Exists`. This is exact
//!   unless a concurrent create takes longer than the window from its check to its write's
//!   answer, which it logs as a warning. KV v2 (`cas: 0`) is atomic and needs none of this:
//!   prefer v2 when several KES servers share a Vault.
//! * **get**: `GET` (v2 pinned to `?version=1`). A value starting with `vault:v` is decrypted
//!   with transit; without transit settings that is an error.
//! * **delete**: existence check (→ `NotFound`), then `DELETE` (v2: the metadata, all versions).
//!   Fixed quirk: the Go server answers 200 for a missing key because Vault's delete is
//!   idempotent; here it is `NotFound`, like the fs keystore.
//! * **list**: `GET …?list=true` (v2: metadata path); 404 = no keys; then prefix filter, sort and
//!   paging via [`page_of`]. A 403 is `Denied`, naming the missing `list` capability and its policy path.
//! * **status**: `/v1/sys/health` on every node (no namespace header).
//!
//! # High availability (several endpoints)
//! Vault has one active node; standbys forward writes to it and (OpenBao with Raft) answer
//! reads from their own, possibly ~100 ms stale, copy. During an election a standby answers
//! writes with 307 towards the old leader, usually the node that just died.
//! * Health probes (the background loop, and on demand) learn each node's role; the active node
//!   is the first choice of every request.
//! * Requests that decide or change state — the existence check of a create, writes, deletes,
//!   logins, token calls — go to the active node. When it fails (connection error, 307, 503,
//!   …), the nodes are probed to find the new active node, waiting through an election for up
//!   to the response timeout. Only if none appears does the request go to any node: writes are
//!   then forwarded or refused, and a stale "does not exist" from a standby cannot lead to an
//!   overwrite because Vault's refusal of the write decides (see create).
//! * Reads (get, list, transit decrypt) start at the active node and move on to standbys, so
//!   they keep working while the leader is gone.
//! * A redirect is never followed (its target is the dead leader); it moves the request on.
//!   Nodes that fail are skipped until a probe finds them healthy again.
//! * On KV v2, `cas: 0` makes a create atomic whichever node serves it. On KV v1 see "create on
//!   KV v1" above.
//!
//! # Sealed or unreachable Vault
//! The health loop probes every `status.ping` (every second while Vault is unusable). While all
//! nodes are sealed or unreachable, create/get/delete/list fail at once with
//! `Unreachable` (reason `Sealed`: "vault is sealed", or the reason of the last failure:
//! "vault is unreachable: …"), and recover by
//! themselves once a probe (or any normal answer from Vault) shows a usable node.
//!
//! # Start-up, and what `status` reports
//! [`VaultKeystore::start`] probes Vault, logs in and checks the K/V engine. A configuration that
//! is provably wrong stops start-up whatever the [`Startup`] mode: a TLS failure (CA, host
//! name), a login that Vault refuses (4xx), a K/V version or mount that does not match (see
//! [`engine`]). A Vault that cannot be reached or is sealed stops start-up only with
//! [`Startup::FailFast`] (`kes server --fail-fast`, `kes migrate`, [`VaultKeystore::connect`]);
//! with [`Startup::Wait`] (`kes server`) the keystore starts without a token, key operations
//! fail at once, and the health loop logs in as soon as a probe finds Vault usable.
//!
//! `status` (`/v1/status`, `/v1/ready`) is healthy only when keys can be served: it fails with
//! `Unreachable` while Vault is sealed or unreachable (the health probe), and otherwise with the
//! error of [`auth::Auth::problem`] (no login yet, or the token was rejected and logging in again
//! failed: `Failed` when Vault refused the login) or of a wrong K/V engine (`Failed`).
//!
//! # Tokens
//! See [`auth`]: renewal at ⅔ of the TTL, re-login when renewal is impossible or the max TTL is
//! near, and one retry of a request whose token expired under it, with at most one login per
//! burst of 403s. Unlike the Go server, a new token is used at once with one endpoint; with
//! several (a cluster whose standbys may not know a brand-new token for ~100 ms), a planned
//! re-login keeps using the old, still valid token for a moment (≤ 2 s), while a token that is
//! already dead is replaced at once and the retried request goes to the active node.

/// Reads the files `cfg` names (`tls.key`, `tls.cert`, `tls.ca`, or the system CA bundle for an
/// `https` endpoint) the way connecting does, without contacting Vault: `kes server --check`.
pub fn check_files(cfg: &VaultConfig) -> Result<(), String> {
    let uses_https = cfg.endpoints.iter().any(|e| e.starts_with("https://"));
    tls::config(&cfg.tls, uses_https).map(|_| ())
}

/// How a reloaded `keystore.vault` section differs from the running one: only the login
/// credentials (`approle.id`/`secret`, or `kubernetes.role`/`jwt`, the method unchanged), or
/// anything else (the method, a mount, an endpoint, a timeout, …), which needs a restart.
pub fn reload_change(running: &VaultConfig, new: &VaultConfig) -> crate::keystore::Reload {
    use crate::keystore::Reload;
    // Everything but the credentials; `Debug` covers every setting (secrets show as
    // `<redacted>`, and are cleared here anyway).
    let settings = |cfg: &VaultConfig| {
        let mut cfg = cfg.clone();
        if let Some(a) = &mut cfg.approle {
            a.id.clear();
            a.secret.clear();
        }
        if let Some(k) = &mut cfg.kubernetes {
            k.role.clear();
            k.jwt.clear();
        }
        format!("{cfg:?}")
    };
    if settings(running) != settings(new) {
        return Reload::Restart;
    }
    let same = match (
        (&running.approle, &running.kubernetes),
        (&new.approle, &new.kubernetes),
    ) {
        ((Some(a), _), (Some(b), _)) => a.id == b.id && a.secret == b.secret,
        ((_, Some(a)), (_, Some(b))) => a.role == b.role && a.jwt == b.jwt,
        _ => true,
    };
    if same {
        Reload::Same
    } else {
        Reload::Credentials
    }
}

mod auth;
mod client;
mod engine;
mod flag;
mod health;
mod kv;
mod tls;
mod transit;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use self::auth::{Auth, Retry};
use self::client::{Client, LIST_BODY_LIMIT, Method, NodeChoice, Reply, Request, strip_query};
use self::engine::{EngineState, When};
use self::kv::{Kv, Op};
use self::transit::Transit;
use crate::config::VaultConfig;
use crate::keystore::{
    Error, Keystore, MAX_VALUE_SIZE, Page, Status, UnreachableReason, VERSIONS_DIR, VersionEntry,
    collect_versions, page_of,
};

/// Defaults of settings the configuration may leave empty.
const DEFAULT_PING: Duration = Duration::from_secs(10);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_millis(1500);

/// KV v1: how long a create waits after its write before it reads the key back to see whether a
/// concurrent create overwrote it (at least 3× the create's own check-to-write time). A
/// concurrent create can only land later than this if its own check-to-write time exceeds the
/// window, which it logs as a warning. See [`Inner::confirm_v1`].
const V1_RACE_WINDOW: Duration = Duration::from_millis(250);

/// What [`VaultKeystore::start`] does when Vault cannot be reached (or is sealed) at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// Fail: `kes server --fail-fast`, `kes migrate`, [`VaultKeystore::connect`].
    FailFast,
    /// Start without a token and log in once Vault answers (`kes server`): until then key
    /// operations fail at once and `status` says why.
    Wait,
}

/// A keystore in HashiCorp Vault or OpenBao. Background threads (health check, token renewal)
/// run until it is dropped.
pub struct VaultKeystore {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

struct Inner {
    client: Client,
    auth: Auth,
    kv: Kv,
    transit: Option<Transit>,
    /// `X-Vault-Namespace` of K/V and transit calls.
    namespace: Option<String>,
    creating: NameLocks,
    /// Deadline of a whole key read (`timeout.read`).
    read_timeout: Duration,
    /// What the checks of [`engine`] found.
    engine: Mutex<EngineState>,
    /// One check of the engine at a time.
    engine_check: Mutex<()>,
    /// A check of the engine (and a login, if needed) was asked for (SIGHUP): the health loop
    /// runs it in its next round.
    recheck: AtomicBool,
}

impl VaultKeystore {
    /// Checks the settings, logs in, checks the K/V engine and starts the background threads.
    /// A failed login is an error naming the Vault path and status ([`Startup::FailFast`]).
    pub fn connect(cfg: &VaultConfig) -> Result<VaultKeystore, Error> {
        VaultKeystore::start(cfg, Startup::FailFast)
    }

    /// Like [`VaultKeystore::connect`]; with [`Startup::Wait`], a Vault that cannot be reached
    /// (or is sealed) does not stop start-up (see the module docs).
    pub fn start(cfg: &VaultConfig, startup: Startup) -> Result<VaultKeystore, Error> {
        let connect_timeout = or_default(cfg.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        let response_timeout = or_default(cfg.response_timeout, DEFAULT_RESPONSE_TIMEOUT);
        let ping = or_default(cfg.ping, DEFAULT_PING);
        for (what, path) in [
            ("engine", cfg.engine.as_str()),
            ("prefix", cfg.prefix.as_str()),
        ] {
            if path.split('/').any(|s| s == "." || s == "..") {
                return Err(Error::Failed(format!(
                    "vault: keystore.vault.{what} must not contain '.' or '..'"
                )));
            }
        }
        let transit = match &cfg.transit {
            Some(t) if t.key.trim().is_empty() => {
                return Err(Error::Failed(
                    "vault: keystore.vault.transit.key is required".into(),
                ));
            }
            Some(t) => Some(Transit::new(&t.engine, &t.key)),
            None => None,
        };
        let client = Client::new(cfg, connect_timeout, response_timeout)
            .map_err(|e| Error::Failed(format!("vault: {e}")))?;
        // Learn the nodes' roles first, so the login goes straight to the active node.
        let _ = health::check_now(&client);
        let auth = Auth::new(cfg, &client)?;
        let inner = Arc::new(Inner {
            client,
            auth,
            kv: Kv::new(&cfg.engine, &cfg.prefix, cfg.kv_v2),
            transit,
            namespace: Some(cfg.namespace.trim().to_string()).filter(|ns| !ns.is_empty()),
            creating: NameLocks::default(),
            read_timeout: or_default(cfg.read_timeout, DEFAULT_READ_TIMEOUT),
            engine: Mutex::new(EngineState::Unchecked),
            engine_check: Mutex::new(()),
            recheck: AtomicBool::new(false),
        });
        match inner.auth.first_login(&inner.client) {
            Ok(()) => match inner.check_engine(When::Startup, None) {
                Ok(EngineState::Wrong(why)) => return Err(Error::Failed(why)),
                Ok(_) => {}
                // Vault went away between the login and the check: checked on first use.
                Err(err) => log::warn!("vault: cannot check the K/V engine now: {err}"),
            },
            // A TLS failure is a configuration problem, not an outage: it stops start-up.
            Err(Error::Unreachable { reason, .. })
                if startup == Startup::Wait && reason != UnreachableReason::Tls =>
            {
                log::warn!(
                    "vault: starting without a token: key operations fail, and /v1/ready answers 504, until Vault answers and a login succeeds (tried again as soon as a health probe finds Vault usable; 'kes server --fail-fast' exits instead)"
                );
            }
            Err(err) => return Err(err),
        }

        let mut keystore = VaultKeystore {
            inner: inner.clone(),
            threads: Vec::new(),
        };
        let health = inner.clone();
        keystore.threads.push(spawn("kes-vault-health", move || {
            health::run(&health.client, ping, |recovered| {
                health.after_probe(recovered)
            })
        })?);
        let renewal = inner;
        keystore.threads.push(spawn("kes-vault-token", move || {
            renewal
                .auth
                .run(&renewal.client, renewal.client.health.signal())
        })?);
        Ok(keystore)
    }
}

impl Drop for VaultKeystore {
    fn drop(&mut self) {
        self.inner.client.health.signal().stop();
        for thread in self.threads.drain(..) {
            // A thread in the middle of a Vault call finishes it first (bounded by the timeouts).
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(1 << 20)
        .spawn(f)
        .map_err(|e| Error::Failed(format!("vault: cannot start the {name} thread: {e}")))
}

fn or_default(value: Duration, default: Duration) -> Duration {
    if value.is_zero() { default } else { value }
}

impl Keystore for VaultKeystore {
    fn create(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.inner.create(name, value)
    }

    fn get(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.inner.get(name)
    }

    fn delete(&self, name: &str) -> Result<(), Error> {
        self.inner.delete(name)
    }

    fn list(&self, prefix: &str, limit: usize) -> Result<Page, Error> {
        self.inner.list(prefix, limit)
    }

    fn list_versions(&self, name: &str, ring: &str) -> Result<Vec<VersionEntry>, Error> {
        check_ring(name, ring)?;
        let entries = self.inner.list_ring(name, ring)?;
        Ok(collect_versions(entries.iter().map(String::as_str)))
    }

    fn create_version(&self, name: &str, ring: &str, n: u32, value: &[u8]) -> Result<(), Error> {
        check_ring(name, ring)?;
        if n < 2 {
            return Err(Error::Failed(format!("vault: invalid key version {n}")));
        }
        let path = Kv::version_path(name, ring, &n.to_string());
        self.inner.create_at(name, &path, value)
    }

    fn get_version(&self, name: &str, ring: &str, n: u32) -> Result<Zeroizing<Vec<u8>>, Error> {
        check_ring(name, ring)?;
        self.get_entry(name, &Kv::version_path(name, ring, &n.to_string()))
    }

    fn create_marker(&self, name: &str, ring: &str, n: u32, marker: &[u8]) -> Result<(), Error> {
        check_ring(name, ring)?;
        if n < 1 {
            return Err(Error::Failed(format!("vault: invalid key version {n}")));
        }
        let path = Kv::version_path(name, ring, &format!("{n}.retired"));
        self.inner.create_at(name, &path, marker)
    }

    fn get_marker(&self, name: &str, ring: &str, n: u32) -> Result<Zeroizing<Vec<u8>>, Error> {
        check_ring(name, ring)?;
        self.get_entry(name, &Kv::version_path(name, ring, &format!("{n}.retired")))
    }

    /// v2 deletes the secret's metadata, i.e. every K/V version of that one key version.
    fn delete_version(&self, name: &str, ring: &str, n: u32) -> Result<(), Error> {
        check_ring(name, ring)?;
        if n < 2 {
            return Err(Error::Failed(format!("vault: invalid key version {n}")));
        }
        self.inner
            .delete_at(name, &Kv::version_path(name, ring, &n.to_string()))
    }

    fn delete_marker(&self, name: &str, ring: &str, n: u32) -> Result<(), Error> {
        check_ring(name, ring)?;
        self.inner
            .delete_at(name, &Kv::version_path(name, ring, &format!("{n}.retired")))
    }

    fn list_rings(&self, name: &str) -> Result<Vec<String>, Error> {
        check_name(name)?;
        self.inner.list_rings(name)
    }

    /// K/V has no directories to remove: an empty ring is no ring. Refuses a ring with entries.
    fn delete_ring(&self, name: &str, ring: &str) -> Result<(), Error> {
        check_ring(name, ring)?;
        if self.inner.list_ring(name, ring)?.is_empty() {
            Ok(())
        } else {
            Err(Error::Failed(format!(
                "vault: the ring '{ring}' of '{name}' is not empty"
            )))
        }
    }

    /// Answers within `timeout.read` (see [`health::status_until`]); healthy only when keys
    /// can be served (see the module docs).
    fn status(&self) -> Result<Status, Error> {
        let deadline = Instant::now() + self.inner.read_timeout;
        let status = health::status_until(&self.inner.client, deadline)?;
        if let Some(err) = self.inner.auth.problem() {
            return Err(err);
        }
        self.inner.engine_gate(Some(deadline))?;
        Ok(status)
    }

    /// SIGHUP: the health loop checks the K/V engine again in its next round, and tries a login
    /// at once if there is no usable token.
    fn recheck(&self) {
        self.inner.recheck.store(true, Ordering::Release);
        self.inner.auth.login_now();
        self.inner.client.health.kick();
    }

    /// SIGHUP with new credentials: see [`Auth::rotate`].
    fn set_credentials(&self, cfg: &crate::config::KeystoreConfig) -> Result<(), Error> {
        let crate::config::KeystoreConfig::Vault(cfg) = cfg else {
            return Err(Error::Failed(
                "vault: the keystore is no longer Vault: restart to apply".into(),
            ));
        };
        let credentials = auth::Credentials::of(cfg)?;
        self.inner.auth.rotate(&self.inner.client, credentials)
    }
}

impl VaultKeystore {
    /// Reads a version's secret or marker at `path` like [`Keystore::get`] reads a key.
    fn get_entry(&self, name: &str, path: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.inner.client.health.check()?;
        let deadline = Instant::now() + self.inner.read_timeout;
        self.inner.engine_gate(Some(deadline))?;
        self.inner.get_at(name, path, deadline)
    }
}

/// Checks a key name and a ring id before they become parts of a path.
fn check_ring(name: &str, ring: &str) -> Result<(), Error> {
    check_name(name)?;
    if !crate::keystore::valid_ring(ring) {
        return Err(Error::Failed(format!("vault: invalid key ring '{ring}'")));
    }
    Ok(())
}

impl std::fmt::Debug for VaultKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultKeystore")
            .field(
                "endpoints",
                &(0..self.inner.client.node_count())
                    .map(|i| self.inner.client.node_url(i))
                    .collect::<Vec<_>>(),
            )
            .field("kv_v2", &self.inner.kv.is_v2())
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

/// Constant-time comparison of a stored value with ours.
fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Names being created in this process (KV v1 only), so that its own creates never race.
#[derive(Default)]
struct NameLocks {
    held: Mutex<HashSet<String>>,
    released: Condvar,
}

struct NameGuard<'a> {
    locks: &'a NameLocks,
    name: String,
}

impl NameLocks {
    fn lock(&self, name: &str) -> NameGuard<'_> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while held.contains(name) {
            held = self.released.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.insert(name.to_string());
        NameGuard {
            locks: self,
            name: name.to_string(),
        }
    }
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        self.locks
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.name);
        self.locks.released.notify_all();
    }
}

/// How Vault answered a create's write.
enum Written {
    Done,
    /// Refused: v2 CAS mismatch (`cas`) or 403.
    Refused {
        cas: bool,
    },
}

impl Inner {
    /// After a health probe found Vault usable (see [`health::run`]): keeps a usable token (see
    /// [`Auth::check`]), and checks the K/V engine when that is due.
    fn after_probe(&self, recovered: bool) {
        if recovered {
            self.auth.login_now();
        }
        self.auth.check(&self.client);
        if self.auth.problem().is_some() {
            return;
        }
        let asked = self.recheck.swap(false, Ordering::AcqRel);
        if asked
            || matches!(
                self.engine_state(),
                EngineState::Unchecked | EngineState::Wrong(_)
            )
        {
            let when = if asked { When::Asked } else { When::Due };
            if let Err(err) = self.check_engine(when, None) {
                log::debug!("vault: checking the K/V engine failed: {err}");
            }
        }
    }

    /// Fails at once while Vault is sealed or unreachable, or the K/V engine is known wrong.
    fn gate(&self, deadline: Option<Instant>) -> Result<(), Error> {
        self.client.health.check()?;
        self.engine_gate(deadline)
    }

    /// Sends a K/V or transit request with the current token and the keystore's namespace. A 403
    /// caused by an expired token leads to one login and one retry (see [`auth`]); without a
    /// usable token, it logs in first (when the backoff allows) or fails.
    fn call(&self, req: Request<'_>) -> Result<Reply, Error> {
        let req = req.namespace(self.namespace.as_deref());
        let token = self.auth.usable(&self.client, req.deadline)?;
        let reply = self.client.send(&req.clone().token(token.secret()))?;
        if reply.status != 403 {
            return Ok(reply);
        }
        match self
            .auth
            .after_denied(&self.client, &token, reply.node, req.deadline)?
        {
            Retry::No => Ok(reply),
            Retry::Yes => {
                let token = self.auth.token();
                let mut retry = req.token(token.secret());
                retry.route = NodeChoice::Active;
                self.client.send(&retry)
            }
        }
    }

    fn create(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        check_name(name)?;
        self.create_at(name, name, value)
    }

    /// Creates the secret at `path` (below the prefix: the key's name, or a later version's
    /// [`Kv::version_path`]) holding `value` in a field named `name`, only if it does not exist.
    fn create_at(&self, name: &str, path: &str, value: &[u8]) -> Result<(), Error> {
        if value.len() > MAX_VALUE_SIZE {
            return Err(Error::Failed(format!(
                "vault: the value of '{name}' is larger than {MAX_VALUE_SIZE} bytes"
            )));
        }
        let value_text = std::str::from_utf8(value).map_err(|_| {
            Error::Failed(format!(
                "vault: the value of '{name}' is not text and cannot be stored"
            ))
        })?;
        self.gate(None)?;
        // KV v1: one create of a name at a time in this process (see `V1_RACE_WINDOW`).
        let _creating = (!self.kv.is_v2()).then(|| self.creating.lock(path));

        // Transit first, so that nothing but local work lies between the check and the write.
        let stored = match &self.transit {
            Some(transit) => self.encrypt(transit, value)?,
            None => Zeroizing::new(value_text.to_string()),
        };
        let body = self.kv.create_body(name, &stored);
        let url = self.kv.secret_url(path);

        let checked = Instant::now();
        // Existence check on the active node: a standby's copy may be ~100 ms old.
        if self
            .read(name, path, &url, NodeChoice::Active, Op::Create, None)?
            .is_some()
        {
            return Err(Error::Exists);
        }
        let mut retried = false;
        loop {
            let token = self.auth.token();
            let cas = match self.write(&url, &body, token.secret())? {
                Written::Done if self.kv.is_v2() => return Ok(()),
                Written::Done => {
                    return self.confirm_v1(name, path, &url, &stored, checked.elapsed());
                }
                Written::Refused { cas } => cas,
            };
            // Vault refused the write: whatever is there now decides.
            match self.read(name, path, &url, NodeChoice::Active, Op::Create, None)? {
                Some(existing) if same(&existing, &stored) => {
                    log::info!(
                        "vault: PUT {url}: refused, but the secret holds our value (an earlier attempt landed)"
                    );
                    return Ok(());
                }
                Some(_) => return Err(Error::Exists),
                // v2: some version exists (e.g. a deleted one); the name is taken.
                None if cas => return Err(Error::Exists),
                // A 403 while the key does not exist: the token expired (the re-read logged in
                // again, so try once more) or the policy lacks `create`.
                None if !retried && self.auth.token().generation != token.generation => {
                    retried = true
                }
                None => return Err(self.denied(Op::Create, path)),
            }
        }
    }

    /// KV v1 has no compare-and-set: two creates whose existence checks both ran before either
    /// write landed both write, and the later write wins. So after writing, wait out the window
    /// in which a concurrent create (on another KES server) could still land, and read back:
    /// a different value means ours was overwritten → `Exists`, so exactly one create succeeds.
    fn confirm_v1(
        &self,
        name: &str,
        path: &str,
        url: &str,
        stored: &str,
        span: Duration,
    ) -> Result<(), Error> {
        if span > V1_RACE_WINDOW {
            log::warn!(
                "vault: creating '{name}' took {span:?} from the existence check to the written answer; \
                 with KV v1 a concurrent create of the same name on another KES server may not be detected \
                 (KV v2 has no such limit)"
            );
        }
        std::thread::sleep(V1_RACE_WINDOW.max(span * 3));
        match self.read(name, path, url, NodeChoice::Active, Op::Create, None)? {
            Some(existing) if !same(&existing, stored) => {
                log::warn!(
                    "vault: PUT {url}: a concurrent create of '{name}' overwrote ours; reporting that the key exists"
                );
                Err(Error::Exists)
            }
            // Ours (or deleted since, which is not our create failing).
            _ => Ok(()),
        }
    }

    /// The create's `PUT`, on the active node, without the re-login logic of [`Inner::call`]:
    /// a 403 here may just mean "exists" (policy without `update`), which the caller sorts out.
    fn write(&self, url: &str, body: &[u8], token: &str) -> Result<Written, Error> {
        let req = Request::new(Method::Put, url, NodeChoice::Active)
            .body(body)
            .namespace(self.namespace.as_deref())
            .token(token);
        let reply = self.client.send(&req)?;
        match reply.status {
            200..=299 => Ok(Written::Done),
            400 if self.kv.is_v2() && reply.errors().contains("check-and-set") => {
                Ok(Written::Refused { cas: true })
            }
            403 => Ok(Written::Refused { cas: false }),
            status => Err(self.unexpected("PUT", url, &reply, status)),
        }
    }

    /// Reads the stored string of `name` (`None`: no such key).
    fn read(
        &self,
        name: &str,
        path: &str,
        url: &str,
        route: NodeChoice,
        op: Op,
        deadline: Option<Instant>,
    ) -> Result<Option<Zeroizing<String>>, Error> {
        let reply = self.call(Request::new(Method::Get, url, route).deadline(deadline))?;
        match reply.status {
            200 => self
                .kv
                .parse_value(name, &reply.body)
                .map_err(|why| Error::Failed(format!("vault: GET {}: {why}", strip_query(url)))),
            404 if let Some(why) = self.mismatch_in(&reply, "GET", url) => Err(Error::Failed(why)),
            204 | 404 => Ok(None),
            403 => Err(self.denied(if op == Op::Create { Op::Read } else { op }, path)),
            status => Err(self.unexpected("GET", url, &reply, status)),
        }
    }

    fn get(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        check_name(name)?;
        self.client.health.check()?;
        let deadline = Instant::now() + self.read_timeout;
        self.engine_gate(Some(deadline))?;
        self.get_at(name, name, deadline)
    }

    /// Reads the value of the secret at `path` (field `name`) within `timeout.read`.
    fn get_at(
        &self,
        name: &str,
        path: &str,
        deadline: Instant,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.get_until(name, path, deadline)
            .map_err(|err| match err {
                Error::Unreachable { detail, .. } if Instant::now() >= deadline => {
                    Error::unreachable(
                        UnreachableReason::Timeout,
                        format!(
                            "no answer from Vault within keystore.vault.timeout.read ({:?}): {detail}",
                            self.read_timeout
                        ),
                    )
                }
                other => other,
            })
    }

    fn get_until(
        &self,
        name: &str,
        path: &str,
        deadline: Instant,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let url = self.kv.get_url(path);
        let stored = self
            .read(name, path, &url, NodeChoice::Any, Op::Read, Some(deadline))?
            .ok_or(Error::NotFound)?;
        let value = if transit::is_wrapped(&stored) {
            match &self.transit {
                Some(transit) => self.decrypt(transit, &stored, deadline)?,
                None => {
                    return Err(Error::Failed(format!(
                        "vault: the value at '{}' is wrapped by Vault transit, but keystore.vault.transit is not configured",
                        strip_query(&url)
                    )));
                }
            }
        } else {
            Zeroizing::new(stored.as_bytes().to_vec())
        };
        if value.len() > MAX_VALUE_SIZE {
            return Err(Error::Failed(format!(
                "vault: the value of '{name}' is larger than {MAX_VALUE_SIZE} bytes"
            )));
        }
        Ok(value)
    }

    fn delete(&self, name: &str) -> Result<(), Error> {
        check_name(name)?;
        self.delete_at(name, name)
    }

    /// Deletes the secret at `path` (field `name`; see [`Inner::create_at`]).
    fn delete_at(&self, name: &str, path: &str) -> Result<(), Error> {
        self.gate(None)?;
        // Vault's delete succeeds for a missing secret; look first, on the active node.
        let url = self.kv.secret_url(path);
        let reply = self.call(Request::new(Method::Get, &url, NodeChoice::Active))?;
        match reply.status {
            // A secret that is there, even one this keystore cannot parse, can be deleted.
            200 if !matches!(self.kv.parse_value(name, &reply.body), Ok(None)) => {}
            404 if let Some(why) = self.mismatch_in(&reply, "GET", &url) => {
                return Err(Error::Failed(why));
            }
            200 | 204 | 404 => return Err(Error::NotFound),
            403 => return Err(self.denied(Op::Read, path)),
            status => return Err(self.unexpected("GET", &url, &reply, status)),
        }
        let url = self.kv.delete_url(path);
        let reply = self.call(Request::new(Method::Delete, &url, NodeChoice::Active))?;
        match reply.status {
            200..=299 => Ok(()),
            404 => Err(Error::NotFound),
            403 => Err(self.denied(Op::Delete, path)),
            status => Err(self.unexpected("DELETE", &url, &reply, status)),
        }
    }

    fn list(&self, prefix: &str, limit: usize) -> Result<Page, Error> {
        let url = self.kv.list_url();
        let names = self.list_at(&url, NodeChoice::Any, Kv::parse_list, || {
            self.denied(Op::List, "")
        })?;
        Ok(page_of(names, prefix, limit))
    }

    /// One K/V listing (`url`, from `node`), parsed by `parse`: no such directory is empty, a
    /// 403 is `denied()`.
    fn list_at(
        &self,
        url: &str,
        node: NodeChoice,
        parse: fn(&Kv, &[u8]) -> Result<Vec<String>, String>,
        denied: impl FnOnce() -> Error,
    ) -> Result<Vec<String>, Error> {
        self.gate(None)?;
        let reply = self.call(Request::new(Method::Get, url, node).limit(LIST_BODY_LIMIT))?;
        match reply.status {
            200 => parse(&self.kv, &reply.body)
                .map_err(|why| Error::Failed(format!("vault: GET {}: {why}", strip_query(url)))),
            404 if let Some(why) = self.mismatch_in(&reply, "GET", url) => Err(Error::Failed(why)),
            204 | 404 => Ok(Vec::new()),
            403 => Err(denied()),
            status => Err(self.unexpected("GET", url, &reply, status)),
        }
    }

    /// The rings stored for `name` (sub-directories of `.kes-versions/<name>/`).
    fn list_rings(&self, name: &str) -> Result<Vec<String>, Error> {
        let url = self.kv.rings_list_url(name);
        let dirs = self.list_at(&url, NodeChoice::Active, Kv::parse_list_dirs, || {
            self.denied(Op::List, &format!("{VERSIONS_DIR}/{name}/"))
        })?;
        let mut rings: Vec<String> = dirs
            .into_iter()
            .filter(|r| crate::keystore::valid_ring(r))
            .collect();
        rings.sort_unstable();
        Ok(rings)
    }

    /// The entry names of one ring (docs/key-versions.md §1), from the active node (a rotation
    /// must see every version already created); no ring → none.
    fn list_ring(&self, name: &str, ring: &str) -> Result<Vec<String>, Error> {
        let url = self.kv.ring_list_url(name, ring);
        // A denial is not logged here: the cache serves version 1 and says so once (a policy
        // without `list`, as in the setup procedure, would otherwise log an error at every load
        // and every re-list of every key); rotate, retire and delete log their failure.
        self.list_at(&url, NodeChoice::Active, Kv::parse_list, || {
            Error::Denied(self.denied_message(Op::List, &Kv::version_path(name, ring, "")))
        })
    }

    fn encrypt(&self, transit: &Transit, value: &[u8]) -> Result<Zeroizing<String>, Error> {
        let body = Transit::encrypt_body(value);
        let url = transit.encrypt_url();
        let reply = self.call(Request::new(Method::Post, url, NodeChoice::Any).body(&body))?;
        match reply.status {
            200 => Transit::parse_encrypt(&reply.body)
                .map(Zeroizing::new)
                .map_err(|why| Error::Failed(format!("vault: POST {url}: {why}"))),
            403 => Err(self.denied_transit("encrypt", url)),
            status => Err(self.unexpected("POST", url, &reply, status)),
        }
    }

    fn decrypt(
        &self,
        transit: &Transit,
        ciphertext: &str,
        deadline: Instant,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let body = Transit::decrypt_body(ciphertext);
        let url = transit.decrypt_url();
        let reply = self.call(
            Request::new(Method::Post, url, NodeChoice::Any)
                .body(&body)
                .deadline(Some(deadline)),
        )?;
        match reply.status {
            200 => Transit::parse_decrypt(&reply.body)
                .map_err(|why| Error::Failed(format!("vault: POST {url}: {why}"))),
            403 => Err(self.denied_transit("decrypt", url)),
            status => Err(self.unexpected("POST", url, &reply, status)),
        }
    }

    /// A 403 that survived the token check: the policy lacks a capability. Says which, where.
    fn denied(&self, op: Op, name: &str) -> Error {
        let msg = self.denied_message(op, name);
        log::error!("{msg}");
        Error::Denied(msg)
    }

    /// The text of [`Inner::denied`], not logged: for failures every caller reports itself.
    fn denied_message(&self, op: Op, name: &str) -> String {
        let path = self.kv.policy_path(op, name);
        format!(
            "vault: permission denied {} '{path}'{}: the Vault policy needs the '{}' capability on '{path}'{}",
            op.verb(),
            self.in_namespace(),
            op.capability(),
            self.denied_hint()
        )
    }

    fn denied_transit(&self, what: &str, url: &str) -> Error {
        let path = url.trim_start_matches("/v1/");
        let msg = format!(
            "vault: permission denied using transit ({what}) '{path}'{}: the Vault policy needs the 'update' capability on '{path}'",
            self.in_namespace()
        );
        log::error!("{msg}");
        Error::Denied(msg)
    }

    fn unexpected(&self, method: &str, url: &str, reply: &Reply, status: u16) -> Error {
        let msg = format!(
            "vault: {method} {}{} answered {status} {}",
            strip_query(url),
            self.in_namespace(),
            reply.errors()
        );
        log::error!("{msg}");
        Error::Failed(msg.trim_end().to_string())
    }

    fn in_namespace(&self) -> String {
        self.namespace
            .as_deref()
            .map(|ns| format!(" in namespace '{ns}'"))
            .unwrap_or_default()
    }
}

/// Key names become one path segment: no separators, no `.`/`..`, no control characters.
/// (The API's name rule is stricter; this only protects the path.)
fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(Error::Failed(format!(
            "vault: '{}' is not a valid key name",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Joins path parts with single slashes (`kv/`, `/a//b/`, `name` → `kv/a/b/name`), each segment
/// percent-encoded.
pub(crate) fn join_path(parts: &[&str]) -> String {
    segments(parts)
        .map(|s| encode_segment(s).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Like [`join_path`] without encoding, for messages (a policy path as an operator writes it).
pub(crate) fn join_path_raw(parts: &[&str]) -> String {
    segments(parts).collect::<Vec<_>>().join("/")
}

fn segments<'a>(parts: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    parts
        .iter()
        .flat_map(|p| p.split('/'))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn encode_segment(segment: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if segment.bytes().all(plain) {
        return Cow::Borrowed(segment);
    }
    let mut out = String::with_capacity(segment.len() * 3);
    for b in segment.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_paths() {
        assert_eq!(join_path(&["kv", "", "name"]), "kv/name");
        assert_eq!(join_path(&["/kv/", "/a//b/", "name"]), "kv/a/b/name");
        assert_eq!(join_path(&["kv", "a b", "x?y#z%"]), "kv/a%20b/x%3Fy%23z%25");
        assert_eq!(join_path_raw(&["kv/", "metadata", "", ""]), "kv/metadata");
    }

    #[test]
    fn a_reload_may_change_the_credentials_alone() {
        use crate::config::{VaultAppRole, VaultKubernetes};
        use crate::keystore::Reload;
        let approle = VaultConfig {
            endpoints: vec!["https://vault:8200".into()],
            engine: "kv".into(),
            approle: Some(VaultAppRole {
                id: "role".into(),
                secret: "secret".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let with = |f: &dyn Fn(&mut VaultConfig)| {
            let mut cfg = approle.clone();
            f(&mut cfg);
            reload_change(&approle, &cfg)
        };
        assert_eq!(with(&|_| {}), Reload::Same);
        let secret = |c: &mut VaultConfig| c.approle.as_mut().unwrap().secret = "new".into();
        assert_eq!(with(&secret), Reload::Credentials);
        let id = |c: &mut VaultConfig| c.approle.as_mut().unwrap().id = "other".into();
        assert_eq!(with(&id), Reload::Credentials);
        // Anything else, alone or with new credentials, needs a restart.
        let mount = |c: &mut VaultConfig| c.approle.as_mut().unwrap().engine = "approle2".into();
        let retry =
            |c: &mut VaultConfig| c.approle.as_mut().unwrap().retry = Duration::from_secs(1);
        let endpoint = |c: &mut VaultConfig| c.endpoints.push("https://vault2:8200".into());
        let prefix = |c: &mut VaultConfig| c.prefix = "kes".into();
        let method = |c: &mut VaultConfig| {
            c.approle = None;
            c.kubernetes = Some(VaultKubernetes {
                role: "role".into(),
                jwt: "secret".into(),
                ..Default::default()
            });
        };
        for change in [
            &mount as &dyn Fn(&mut VaultConfig),
            &retry,
            &endpoint,
            &prefix,
            &method,
        ] {
            assert_eq!(with(change), Reload::Restart);
            assert_eq!(
                with(&|c| {
                    change(c);
                    if let Some(a) = c.approle.as_mut() {
                        a.secret = "new".into();
                    }
                }),
                Reload::Restart
            );
        }
        // Kubernetes: the role and the JWT (or the path of its file).
        let k8s = |role: &str, jwt: &str| VaultConfig {
            approle: None,
            kubernetes: Some(VaultKubernetes {
                role: role.into(),
                jwt: jwt.into(),
                ..Default::default()
            }),
            ..approle.clone()
        };
        let running = k8s("kes", "/var/run/secrets/token");
        assert_eq!(reload_change(&running, &running.clone()), Reload::Same);
        assert_eq!(
            reload_change(&running, &k8s("kes2", "/var/run/secrets/token")),
            Reload::Credentials
        );
        assert_eq!(
            reload_change(&running, &k8s("kes", "/other/token")),
            Reload::Credentials
        );
    }

    #[test]
    fn checks_names() {
        assert!(check_name("my-key_1.v2").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
