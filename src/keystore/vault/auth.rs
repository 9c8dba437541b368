//! Logging in to Vault (AppRole or Kubernetes) and keeping the token alive.
//!
//! # Token lifecycle
//! * The background thread renews the token (`renew-self`, increment = the TTL granted at login)
//!   when two thirds of its TTL have passed. A TTL of 0 means the token never expires.
//! * It logs in again instead when the token is not renewable, when renewal fails, or when a
//!   renewal grants less than the login TTL (the token's max TTL is near: logging in while the
//!   old token is still valid avoids a gap).
//! * A failed login is retried with backoff: after `retry` (default 5 s), then after twice as
//!   long each time, up to [`MAX_LOGIN_BACKOFF`] (or `retry`, if longer). The same backoff limits
//!   the logins that requests and the health loop trigger (below), so a Vault that refuses logins
//!   is not hammered. A failed login is logged once; the same failure again only at debug level,
//!   and the first success after failures at info level. When Vault comes back after being
//!   unreachable, the next login is tried at once.
//! * There may be no usable token at all: before the first login succeeded (kes started while
//!   Vault was down, see [`super::Startup`]), or after Vault rejected the token and logging in
//!   again failed. [`Auth::problem`] then says why, which `/v1/status` and `/v1/ready` report, and
//!   a request first tries a login (when the backoff allows) instead of sending a dead token.
//! * The health loop asks Vault every `status.ping` whether the token is still valid
//!   (`lookup-self`, see [`Auth::check`]), so a revoked token is noticed, and replaced, even when
//!   no request comes.
//! * A request that Vault answers with 403 "permission denied" asks [`Auth::after_denied`]
//!   whether to retry. Logins are serialized and tagged with a generation, so a burst of 403s
//!   for one expired token causes one login; every other request of the burst just retries with
//!   the new token. `lookup-self` tells an expired token (→ log in, retry once) from a policy
//!   that really denies the request (→ no retry, the 403 stands).
//! * New credentials from a reloaded config (SIGHUP, a rotated AppRole secret ID) are tried at
//!   once by [`Auth::rotate`] and replace the running credentials and token only when that
//!   login succeeds; a refused login changes nothing.
//!
//! # When a new token is used
//! The Go server installs every new or renewed token only after min(10 % of the old TTL, 30 s),
//! for replication lag. Here:
//! * A renewed token is the same token: nothing to wait for.
//! * With one endpoint (a single server or a load balancer in front of a cluster), a new token is
//!   used at once.
//! * With several endpoints (a Raft cluster), the login is served by the active node, and a
//!   standby that answers reads locally may not know the new token for ~100 ms. When the old
//!   token is still valid (a planned re-login), the new one is installed after
//!   min(¼ of the old token's remaining TTL, 2 s), so requests keep using a token every node
//!   knows. When the old token is already dead there is nothing to protect, so the new one is
//!   installed at once; and a request retried after a login always goes to the active node.
//!
//! Never logs a token, a secret ID or a JWT; error texts name the Vault path and status only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::client::{Client, Method, NodeChoice, Request};
use super::flag::{Signal, Wake};
use super::join_path;
use crate::config::VaultConfig;
use crate::keystore::{Error, UnreachableReason};

/// Longest wait before a new token replaces a still-valid old one on a multi-node setup.
const MAX_INSTALL_DELAY: Duration = Duration::from_secs(2);

/// Default wait between failed logins.
const DEFAULT_RETRY: Duration = Duration::from_secs(5);

/// The longest wait between failed logins (unless `retry` is longer).
pub(crate) const MAX_LOGIN_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) enum Credentials {
    AppRole {
        id: String,
        secret: Zeroizing<String>,
    },
    /// `jwt` is the token itself, or a file path (contains `/`) read at every login.
    Kubernetes {
        role: String,
        jwt: Zeroizing<String>,
    },
}

impl Credentials {
    /// The login credentials of `cfg` (`approle.id`/`secret` or `kubernetes.role`/`jwt`).
    pub fn of(cfg: &VaultConfig) -> Result<Credentials, Error> {
        match (&cfg.approle, &cfg.kubernetes) {
            (Some(a), None) => {
                if a.id.is_empty() || a.secret.is_empty() {
                    return Err(Error::Failed(
                        "vault: approle.id and approle.secret are required".into(),
                    ));
                }
                Ok(Credentials::AppRole {
                    id: a.id.clone(),
                    secret: Zeroizing::new(a.secret.clone()),
                })
            }
            (None, Some(k)) => {
                if k.jwt.is_empty() {
                    return Err(Error::Failed("vault: kubernetes.jwt is required".into()));
                }
                Ok(Credentials::Kubernetes {
                    role: k.role.clone(),
                    jwt: Zeroizing::new(k.jwt.clone()),
                })
            }
            _ => Err(Error::Failed(
                "vault: exactly one authentication method (approle or kubernetes) must be configured".into(),
            )),
        }
    }

    /// What the log lines call the method.
    fn kind(&self) -> &'static str {
        match self {
            Credentials::AppRole { .. } => "AppRole",
            Credentials::Kubernetes { .. } => "Kubernetes",
        }
    }
}

/// A Vault token and what Vault said about its lifetime.
pub(crate) struct Token {
    secret: Zeroizing<String>,
    /// Changes with every login (not with a renewal).
    pub generation: u64,
    /// TTL granted by the last login or renewal; zero = never expires.
    pub ttl: Duration,
    /// TTL granted at login. A renewal that grants less means the max TTL is near.
    pub login_ttl: Duration,
    pub renewable: bool,
    /// When `ttl` started to run (taken just before the request that granted it).
    pub since: Instant,
}

impl Token {
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Time left before the token expires (`None` = never).
    fn remaining(&self) -> Option<Duration> {
        if self.ttl.is_zero() {
            None
        } else {
            Some(self.ttl.saturating_sub(self.since.elapsed()))
        }
    }
}

/// Whether a request that got 403 should be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Yes, with the current token, to the active node.
    Yes,
    /// No: the 403 is Vault's real answer.
    No,
}

#[derive(Default)]
struct LoginState {
    /// Failed logins in a row (cleared by a successful login).
    failures: u32,
    /// No login before this (backoff after a failure).
    next_attempt: Option<Instant>,
    /// The text of the failure last logged at error level, so a repeat is not logged again.
    logged: Option<String>,
}

pub(crate) struct Auth {
    /// Replaced by [`Auth::rotate`] (SIGHUP with new credentials), only after a login with the
    /// new ones succeeded.
    credentials: RwLock<Arc<Credentials>>,
    /// What the log lines call the method ("AppRole", "Kubernetes").
    kind: &'static str,
    /// `X-Vault-Namespace` of the login and of the token calls (`None` = root).
    namespace: Option<String>,
    login_path: String,
    retry: Duration,
    multi_node: bool,
    current: RwLock<Arc<Token>>,
    login: Mutex<LoginState>,
    /// Why the last login failed (`None` after a successful one). Apart from [`Auth::login`]'s
    /// lock so that [`Auth::problem`] never waits for a login in progress.
    last_error: Mutex<Option<Error>>,
    /// Generation of a token Vault rejected (expired or revoked); 0: none.
    rejected: AtomicU64,
    /// Whether the health loop may ask Vault about the token (`lookup-self`); turned off when
    /// the token may not look itself up.
    self_check: AtomicBool,
}

impl Auth {
    /// Reads the auth settings; no login yet (see [`Auth::first_login`]).
    pub fn new(cfg: &VaultConfig, client: &Client) -> Result<Auth, Error> {
        let credentials = Credentials::of(cfg)?;
        let kind = credentials.kind();
        let (mount, ns, retry) = match (&cfg.approle, &cfg.kubernetes) {
            (Some(a), _) => (default(&a.engine, "approle"), a.namespace.as_str(), a.retry),
            (_, Some(k)) => (
                default(&k.engine, "kubernetes"),
                k.namespace.as_str(),
                k.retry,
            ),
            // `Credentials::of` accepted exactly one method.
            (None, None) => unreachable!("no authentication method"),
        };
        // Auth namespace: empty = the keystore's namespace, "/" = the root namespace.
        let namespace = match ns.trim() {
            "" => Some(cfg.namespace.clone()).filter(|n| !n.is_empty()),
            "/" => None,
            other => Some(other.to_string()),
        };
        let login_path = format!("/v1/{}", join_path(&["auth", mount, "login"]));
        Ok(Auth {
            credentials: RwLock::new(Arc::new(credentials)),
            kind,
            namespace,
            login_path,
            retry: if retry.is_zero() {
                DEFAULT_RETRY
            } else {
                retry
            },
            multi_node: client.node_count() > 1,
            current: RwLock::new(Arc::new(Token {
                secret: Zeroizing::new(String::new()),
                generation: 0,
                ttl: Duration::ZERO,
                login_ttl: Duration::ZERO,
                renewable: false,
                since: Instant::now(),
            })),
            login: Mutex::new(LoginState::default()),
            last_error: Mutex::new(None),
            rejected: AtomicU64::new(0),
            self_check: AtomicBool::new(true),
        })
    }

    /// The first login (generation 1). A failure is recorded like any other (the backoff, and
    /// [`Auth::problem`]) and returned.
    pub fn first_login(&self, client: &Client) -> Result<(), Error> {
        let mut state = self.login.lock().unwrap_or_else(|e| e.into_inner());
        let token = self.try_login(client, &mut state, 1, None)?;
        self.install(token);
        Ok(())
    }

    /// Why no request can be authenticated now, if so: no login has succeeded yet, or Vault
    /// rejected the token and logging in again failed. The error has the kind of the login's
    /// failure (`Unreachable` when Vault could not be asked, `Failed` when it refused).
    pub fn problem(&self) -> Option<Error> {
        let token = self.token();
        if self.is_usable(&token) {
            return None;
        }
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Some(match (token.generation, last) {
            (0, Some(err)) => explain(&err, "no login has succeeded yet"),
            (0, None) => Error::unreachable(
                UnreachableReason::NoToken,
                format!("vault: no {} login yet", self.kind),
            ),
            (_, Some(err)) => explain(
                &err,
                "the token was rejected (expired or revoked), and logging in again failed",
            ),
            (_, None) => Error::Failed(
                "vault: the token was rejected (expired or revoked); logging in again".into(),
            ),
        })
    }

    /// Whether `token` may be sent: it came from a login and Vault has not rejected it.
    fn is_usable(&self, token: &Token) -> bool {
        token.generation != 0 && self.rejected.load(Ordering::Acquire) != token.generation
    }

    /// The token to send, logging in first when there is none that Vault accepts (and the
    /// backoff allows). With a `deadline`, waiting for another thread's login and logging in end
    /// by then.
    pub fn usable(&self, client: &Client, deadline: Option<Instant>) -> Result<Arc<Token>, Error> {
        let token = self.token();
        if self.is_usable(&token) {
            return Ok(token);
        }
        let mut state = lock_until(&self.login, deadline).ok_or_else(|| {
            Error::unreachable(
                UnreachableReason::Timeout,
                format!(
                    "vault: no usable token, and the {} login in progress did not finish in time",
                    self.kind
                ),
            )
        })?;
        let current = self.token();
        if current.generation != token.generation && self.is_usable(&current) {
            return Ok(current);
        }
        match self.try_login(client, &mut state, current.generation + 1, deadline) {
            Ok(new) => {
                self.install(new);
                Ok(self.token())
            }
            Err(_) => Err(self.problem().unwrap_or_else(|| {
                Error::unreachable(UnreachableReason::NoToken, "vault: no usable token")
            })),
        }
    }

    /// One login if the backoff allows it, with its bookkeeping: a failure is remembered (for
    /// [`Auth::problem`] and the backoff) and logged once; a success clears both. When the
    /// backoff does not allow a login yet, the last failure is returned.
    fn try_login(
        &self,
        client: &Client,
        state: &mut LoginState,
        generation: u64,
        deadline: Option<Instant>,
    ) -> Result<Token, Error> {
        if let Some(next) = state.next_attempt
            && Instant::now() < next
            && let Some(err) = self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        {
            return Err(err);
        }
        match self.login_until(client, generation, deadline) {
            Ok(token) => {
                if state.failures > 0 {
                    log::info!(
                        "vault: {} login succeeded after {} failed attempt{}",
                        self.kind,
                        state.failures,
                        if state.failures == 1 { "" } else { "s" }
                    );
                }
                *state = LoginState::default();
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(token)
            }
            Err(err) => {
                state.failures += 1;
                let wait = backoff(self.retry, state.failures);
                state.next_attempt = Some(Instant::now() + wait);
                let text = err.to_string();
                if state.logged.as_deref() != Some(text.as_str()) {
                    log::error!(
                        "{}; next try in {wait:?} at the earliest (backing off up to {:?})",
                        error_text(&err),
                        MAX_LOGIN_BACKOFF.max(self.retry)
                    );
                    state.logged = Some(text);
                } else {
                    log::debug!(
                        "{} (failed {} times in a row)",
                        error_text(&err),
                        state.failures
                    );
                }
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Lets the next login happen at once (Vault came back after being unreachable, or an
    /// operator asked for a check).
    pub fn login_now(&self) {
        if let Ok(mut state) = self.login.try_lock() {
            state.next_attempt = None;
        }
    }

    /// New credentials (SIGHUP, e.g. a rotated AppRole secret ID): logs in with them at once,
    /// whatever the backoff says. Only when that login succeeds do they replace the running
    /// credentials (for every later login) and its token the running token; the backoff and the
    /// last failure are then cleared. When it fails, nothing changes: the running credentials
    /// and token stay in force, and the error (naming the Vault path and status, never a secret)
    /// is returned for the caller to report.
    ///
    /// As for a planned re-login, with several endpoints the new token replaces a still valid
    /// old one after [`Auth::install_delay`] (≤ 2 s), so standbys know it before it is used.
    pub fn rotate(&self, client: &Client, new: Credentials) -> Result<(), Error> {
        if new.kind() != self.kind {
            return Err(Error::Failed(format!(
                "vault: the login method changed from {} to {}: restart to apply",
                self.kind,
                new.kind()
            )));
        }
        let mut state = self.login.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.token();
        let token = self.login_with(client, &new, old.generation + 1, None)?;
        *self.credentials.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        *state = LoginState::default();
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let delay = if self.is_usable(&old) {
            self.install_delay(&old)
        } else {
            Duration::ZERO
        };
        if delay.is_zero() {
            self.install(token);
            return Ok(());
        }
        drop(state);
        std::thread::sleep(delay);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // Unless a login (with the new credentials, installed above) replaced `old` meanwhile.
        if current.generation == old.generation {
            *current = Arc::new(token);
        }
        Ok(())
    }

    /// Called by the health loop after a probe found Vault usable. Without a usable token it
    /// logs in (when the backoff allows); otherwise it asks Vault whether the token is still
    /// valid, and logs in when it is not. So a revoked token is noticed without a request, and
    /// `/v1/ready` tells the truth.
    pub fn check(&self, client: &Client) {
        let token = self.token();
        let mut verify_new = false;
        if self.is_usable(&token) {
            if !self.self_check.load(Ordering::Relaxed) {
                return;
            }
            match self.is_valid(client, &token, None) {
                Ok(true) | Err(_) => return,
                Ok(false) => {
                    self.reject(&token);
                    verify_new = true;
                }
            }
        }
        let mut state = self.login.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.token();
        if current.generation != token.generation && self.is_usable(&current) {
            return; // Somebody logged in meanwhile.
        }
        let Ok(new) = self.try_login(client, &mut state, current.generation + 1, None) else {
            return;
        };
        self.install(new);
        drop(state);
        // A token that Vault calls invalid right after the login that made it: this token may
        // not look itself up (no `default` policy), so asking would only cause a login a round.
        if verify_new && let Ok(false) = self.is_valid(client, &self.token(), None) {
            self.self_check.store(false, Ordering::Relaxed);
            log::warn!(
                "vault: GET /v1/auth/token/lookup-self is denied even to a new token: kes cannot notice a revoked token before a request fails (grant the token Vault's 'default' policy, or auth/token/lookup-self read)"
            );
        }
    }

    /// Records that Vault rejected `token` (expired or revoked).
    fn reject(&self, token: &Token) {
        if self.rejected.swap(token.generation, Ordering::AcqRel) != token.generation {
            log::info!("vault: the token was rejected (expired or revoked); logging in again");
        }
    }

    /// The token to send now.
    pub fn token(&self) -> Arc<Token> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn install(&self, token: Token) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(token);
    }

    /// One login that ends by `deadline` (if any).
    fn login_until(
        &self,
        client: &Client,
        generation: u64,
        deadline: Option<Instant>,
    ) -> Result<Token, Error> {
        let credentials = self
            .credentials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.login_with(client, &credentials, generation, deadline)
    }

    /// One login with `credentials` that ends by `deadline` (if any).
    fn login_with(
        &self,
        client: &Client,
        credentials: &Credentials,
        generation: u64,
        deadline: Option<Instant>,
    ) -> Result<Token, Error> {
        #[derive(Serialize)]
        struct AppRoleLogin<'a> {
            role_id: &'a str,
            secret_id: &'a str,
        }
        #[derive(Serialize)]
        struct KubernetesLogin<'a> {
            role: &'a str,
            jwt: &'a str,
        }
        let body = match credentials {
            Credentials::AppRole { id, secret } => to_json(&AppRoleLogin {
                role_id: id,
                secret_id: secret,
            }),
            Credentials::Kubernetes { role, jwt } => {
                let jwt = if jwt.contains('/') {
                    let text = std::fs::read_to_string(jwt.as_str()).map(Zeroizing::new).map_err(|e| {
                        Error::Failed(format!("vault: cannot read the Kubernetes service account token file '{}': {e}", jwt.as_str()))
                    })?;
                    Zeroizing::new(text.trim().to_string())
                } else {
                    jwt.clone()
                };
                to_json(&KubernetesLogin { role, jwt: &jwt })
            }
        }?;
        let since = Instant::now();
        let req = Request::new(Method::Put, &self.login_path, NodeChoice::Active)
            .body(&body)
            .namespace(self.namespace.as_deref())
            .deadline(deadline);
        let reply = client.send(&req).map_err(|err| match err {
            Error::Unreachable { reason, detail } => Error::unreachable(
                reason,
                format!(
                    "vault: {} login (PUT {}) failed: {detail}",
                    self.kind, self.login_path
                ),
            ),
            other => other,
        })?;
        if !reply.is_success() {
            return Err(Error::Failed(format!(
                "vault: {} login failed: PUT {}{} answered {} {}",
                self.kind,
                self.login_path,
                self.namespace
                    .as_deref()
                    .map(|ns| format!(" (namespace '{ns}')"))
                    .unwrap_or_default(),
                reply.status,
                reply.errors()
            )));
        }
        let auth = parse_auth(&reply.body).ok_or_else(|| {
            Error::Failed(format!(
                "vault: {} login: PUT {} returned no token",
                self.kind, self.login_path
            ))
        })?;
        let ttl = Duration::from_secs(auth.lease_duration);
        log::info!(
            "vault: {} login (PUT {}) succeeded; token TTL {}s, renewable: {}",
            self.kind,
            self.login_path,
            auth.lease_duration,
            auth.renewable
        );
        Ok(Token {
            secret: auth.client_token,
            generation,
            ttl,
            login_ttl: ttl,
            renewable: auth.renewable,
            since,
        })
    }

    /// `PUT /v1/auth/token/renew-self`: the new TTL and renewability.
    fn renew(&self, client: &Client, token: &Token) -> Result<(Duration, bool), Error> {
        let body = format!("{{\"increment\":{}}}", token.login_ttl.as_secs());
        const PATH: &str = "/v1/auth/token/renew-self";
        let req = Request::new(Method::Put, PATH, NodeChoice::Active)
            .body(body.as_bytes())
            .namespace(self.namespace.as_deref())
            .token(token.secret());
        let reply = client.send(&req)?;
        if !reply.is_success() {
            return Err(Error::Failed(format!(
                "vault: PUT {PATH} answered {} {}",
                reply.status,
                reply.errors()
            )));
        }
        let auth = parse_auth(&reply.body).ok_or_else(|| {
            Error::Failed(format!("vault: PUT {PATH} returned no lease information"))
        })?;
        Ok((Duration::from_secs(auth.lease_duration), auth.renewable))
    }

    /// `GET /v1/auth/token/lookup-self` on the active node: whether Vault still accepts `token`.
    fn is_valid(
        &self,
        client: &Client,
        token: &Token,
        deadline: Option<Instant>,
    ) -> Result<bool, Error> {
        const PATH: &str = "/v1/auth/token/lookup-self";
        let req = Request::new(Method::Get, PATH, NodeChoice::Active)
            .namespace(self.namespace.as_deref())
            .token(token.secret())
            .deadline(deadline);
        let reply = client.send(&req)?;
        match reply.status {
            200..=299 => Ok(true),
            401 | 403 => Ok(false),
            status => Err(Error::Failed(format!(
                "vault: GET {PATH} answered {status} {}",
                reply.errors()
            ))),
        }
    }

    /// Called after Vault answered 403 to a request sent with `used` by node `node`. An error
    /// means the token is no longer valid and no new one could be had (login failed, or failed
    /// recently and the backoff does not allow another yet). With a `deadline` (a read), waiting
    /// for another thread's login, checking the token and logging in all end by then.
    pub fn after_denied(
        &self,
        client: &Client,
        used: &Token,
        node: usize,
        deadline: Option<Instant>,
    ) -> Result<Retry, Error> {
        let mut state = lock_until(&self.login, deadline).ok_or_else(|| {
            Error::unreachable(
                UnreachableReason::Timeout,
                format!(
                    "vault: the token was rejected, and the {} login in progress did not finish in time",
                    self.kind
                ),
            )
        })?;
        let current = self.token();
        if current.generation != used.generation {
            return Ok(Retry::Yes); // Somebody logged in since the request was sent.
        }
        if self.is_usable(&current) {
            match self.is_valid(client, &current, deadline) {
                // The token is fine: the policy denies the request. A standby that has not seen
                // the token yet is the one exception worth one more try (on the active node).
                Ok(true) => {
                    return Ok(if client.is_active(node) {
                        Retry::No
                    } else {
                        Retry::Yes
                    });
                }
                Ok(false) => self.reject(&current),
                Err(err) => {
                    log::warn!("vault: cannot check the token after a 403: {err}");
                    return Ok(Retry::No);
                }
            }
        }
        match self.try_login(client, &mut state, current.generation + 1, deadline) {
            Ok(token) => {
                self.install(token);
                Ok(Retry::Yes)
            }
            Err(err) => Err(explain(
                &err,
                "the token was rejected (expired or revoked), and logging in again failed",
            )),
        }
    }

    /// The renewal thread: runs until `signal` stops it.
    pub fn run(&self, client: &Client, signal: &Signal) {
        loop {
            let token = self.token();
            if token.ttl.is_zero() {
                // Never expires: nothing to do but to look again soon (a 403 may bring a login
                // and a token that does expire).
                if signal.wait(Duration::from_secs(1), false) == Wake::Stop {
                    return;
                }
                continue;
            }
            let due = (token.since + token.ttl * 2 / 3).saturating_duration_since(Instant::now());
            if signal.wait(due, false) == Wake::Stop {
                return;
            }
            let token = self.token();
            if token.since.elapsed() < token.ttl * 2 / 3 {
                continue; // Replaced or renewed meanwhile.
            }
            let mut relogin = !token.renewable;
            if token.renewable {
                // The renewed lease runs from when we asked, not from when the answer arrived.
                let since = Instant::now();
                match self.renew(client, &token) {
                    Ok((ttl, renewable)) => {
                        if ttl < token.login_ttl {
                            log::info!(
                                "vault: token renewed for {}s only (max TTL near); logging in again",
                                ttl.as_secs()
                            );
                            relogin = true;
                        }
                        self.update_lease(&token, ttl, renewable, since);
                    }
                    Err(err) => {
                        log::warn!("vault: token renewal failed: {err}; logging in again");
                        relogin = true;
                    }
                }
            }
            if relogin && !self.relogin(client, signal, &token) {
                return;
            }
        }
    }

    /// Records a renewal (same token, same generation) unless the token was replaced meanwhile.
    fn update_lease(&self, renewed: &Token, ttl: Duration, renewable: bool, since: Instant) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.generation == renewed.generation {
            *current = Arc::new(Token {
                secret: renewed.secret.clone(),
                generation: renewed.generation,
                ttl,
                login_ttl: renewed.login_ttl,
                renewable,
                since,
            });
        }
    }

    /// Logs in until it works (with the backoff of [`Auth::try_login`]), unless another login
    /// replaces `old` first. Returns false when stopped.
    fn relogin(&self, client: &Client, signal: &Signal, old: &Token) -> bool {
        loop {
            // While Vault is known to be sealed or down, a login cannot work: wait for the health
            // loop (which polls every second then) instead of failing a login every `retry`.
            if !client.health.is_ok() {
                if signal.wait(self.retry.min(Duration::from_secs(1)), false) == Wake::Stop {
                    return false;
                }
                continue;
            }
            let (token, wait) = {
                let mut state = self.login.lock().unwrap_or_else(|e| e.into_inner());
                if self.token().generation != old.generation {
                    return true;
                }
                match self.try_login(client, &mut state, old.generation + 1, None) {
                    Ok(token) => (Some(token), Duration::ZERO),
                    Err(_) => (
                        None,
                        state
                            .next_attempt
                            .map_or(self.retry, |t| t.saturating_duration_since(Instant::now())),
                    ),
                }
            };
            if let Some(token) = token {
                let delay = self.install_delay(old);
                if !delay.is_zero() && signal.wait(delay, false) == Wake::Stop {
                    return false;
                }
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                if current.generation == old.generation {
                    *current = Arc::new(token);
                }
                return true;
            }
            if signal.wait(wait.max(Duration::from_millis(100)), false) == Wake::Stop {
                return false;
            }
        }
    }

    /// How long a new token waits before it replaces `old` (see the module docs).
    fn install_delay(&self, old: &Token) -> Duration {
        if !self.multi_node {
            return Duration::ZERO;
        }
        match old.remaining() {
            Some(left) => (left / 4).min(MAX_INSTALL_DELAY),
            None => MAX_INSTALL_DELAY,
        }
    }
}

/// Locks `mutex`, waiting at most until `deadline` (if any); `None` when the time is up.
pub(crate) fn lock_until<T>(
    mutex: &Mutex<T>,
    deadline: Option<Instant>,
) -> Option<std::sync::MutexGuard<'_, T>> {
    let Some(deadline) = deadline else {
        return Some(mutex.lock().unwrap_or_else(|e| e.into_inner()));
    };
    loop {
        match mutex.try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => return Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return None;
                }
                // Logins are rare and short; polling keeps the wait bounded without a
                // second lock type.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// The wait after the `failures`-th failed login in a row: `retry`, doubling, up to
/// [`MAX_LOGIN_BACKOFF`] (or `retry` if that is longer).
fn backoff(retry: Duration, failures: u32) -> Duration {
    let cap = MAX_LOGIN_BACKOFF.max(retry);
    let doublings = failures.saturating_sub(1).min(20);
    retry.saturating_mul(1u32 << doublings).min(cap)
}

/// The text of a keystore error without the kind prefix of its `Display`.
fn error_text(err: &Error) -> String {
    err.detail().map_or_else(|| err.to_string(), str::to_string)
}

/// A login error with what it means for the request that needed the login; same kind of error
/// (and reason).
fn explain(err: &Error, context: &str) -> Error {
    let why = err
        .detail()
        .map_or("unexpected answer", |why| why.trim_start_matches("vault: "));
    let text = format!("vault: {context}: {why}");
    match err {
        Error::Unreachable { reason, .. } => Error::unreachable(*reason, text),
        Error::Denied(_) => Error::Denied(text),
        _ => Error::Failed(text),
    }
}

fn default<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    if value.trim().is_empty() {
        fallback
    } else {
        value
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut out = Zeroizing::new(Vec::with_capacity(256));
    serde_json::to_writer(&mut *out, value)
        .map_err(|e| Error::Failed(format!("vault: encoding a login request: {e}")))?;
    Ok(out)
}

struct AuthInfo {
    client_token: Zeroizing<String>,
    lease_duration: u64,
    renewable: bool,
}

/// The `auth` object of a login or renewal answer.
fn parse_auth(body: &[u8]) -> Option<AuthInfo> {
    #[derive(Deserialize)]
    struct Reply {
        auth: Option<Auth>,
    }
    #[derive(Deserialize)]
    struct Auth {
        #[serde(default)]
        client_token: String,
        #[serde(default)]
        lease_duration: u64,
        #[serde(default)]
        renewable: bool,
    }
    let auth = serde_json::from_slice::<Reply>(body).ok()?.auth?;
    let token = Zeroizing::new(auth.client_token);
    if token.is_empty() {
        return None;
    }
    Some(AuthInfo {
        client_token: token,
        lease_duration: auth.lease_duration,
        renewable: auth.renewable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_errors_keep_their_kind() {
        let down = Error::unreachable(
            UnreachableReason::Tls,
            "vault: AppRole login (PUT /v1/auth/approle/login) failed: vault is unreachable: x",
        );
        assert_eq!(
            explain(&down, "no login has succeeded yet"),
            Error::unreachable(
                UnreachableReason::Tls,
                "vault: no login has succeeded yet: AppRole login (PUT /v1/auth/approle/login) failed: vault is unreachable: x"
            )
        );
        let refused = Error::Failed("vault: AppRole login failed: 400".into());
        assert_eq!(
            explain(&refused, "context"),
            Error::Failed("vault: context: AppRole login failed: 400".into())
        );
        assert_eq!(error_text(&refused), "vault: AppRole login failed: 400");
        assert_eq!(error_text(&Error::NotFound), "key does not exist");
    }

    #[test]
    fn failed_logins_back_off() {
        let s = Duration::from_secs;
        let waits: Vec<_> = (1..=7).map(|n| backoff(s(5), n)).collect();
        assert_eq!(waits, [s(5), s(10), s(20), s(30), s(30), s(30), s(30)]);
        assert_eq!(backoff(s(1), 1), s(1));
        assert_eq!(backoff(s(1), 3), s(4));
        assert_eq!(backoff(s(1), 100), MAX_LOGIN_BACKOFF);
        // A `retry` longer than the cap is kept as it is.
        assert_eq!(backoff(s(60), 1), s(60));
        assert_eq!(backoff(s(60), 5), s(60));
    }
}
