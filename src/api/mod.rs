//! The KES HTTP API (§2): the route table, authentication and authorization of each request
//! (§4), the handlers (one file per area), and the mapping of errors to replies ([`error`]).
//!
//! Order of checks for a request, as in the Go server: route → method → identity and policy →
//! body → handler. Authorization happens before the body is read, so an unauthorized client cannot
//! make the server read a large body.

pub mod error;
pub mod json;
mod key;
mod policy;
pub mod sys;

use crate::auth::Identity;
use crate::auth::policy::{Denied, PolicySet};
use crate::cache::{Cache, Ring};
use crate::config::ApiConfig;
use crate::crypto::KeyVersion;
use crate::gojson;
use crate::logstream::Hub;
use crate::metrics::Metrics;
use crate::server::{
    self, ClientIdentity, ConnInfo, Handled, Inline, Mode, Request, RequestHead, Response, Route,
};
pub use error::{ApiError, error_body};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Largest request body of the routes that take one (1 MB, decimal, as in Go 63649d0).
pub const MAX_BODY: usize = 1_000_000;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone, without identity (`/version`).
    None,
    /// Any client with a certificate; no policy check (`/v1/identity/self/describe`).
    Identity,
    /// The admin, or an identity whose policy allows the path.
    Policy,
}

type HandlerFn = fn(&Ctx<'_>) -> Result<Response, ApiError>;

/// One entry of the route table.
pub struct RouteDef {
    pub method: &'static str,
    /// The path; when `prefix` is set, the rest of the URL path is the resource.
    pub path: &'static str,
    pub prefix: bool,
    pub max_body: usize,
    pub timeout: Option<Duration>,
    pub auth: Auth,
    /// Counted in the request metrics (key, policy and identity routes only, as in the Go server).
    pub counted: bool,
    /// Whether the handler may block (keystore calls), which decides where it runs.
    pub inline: Inline,
    /// Listed in `/v1/api` (the legacy bulk decrypt is served but not listed: the Go server no
    /// longer has it).
    pub listed: bool,
    /// A prefix route that does what another one does (the legacy bulk decrypt decrypts): its
    /// requests are also authorised as requests to that route for the same resource, so that a
    /// rule written for one holds for both (§4).
    pub authorized_as: Option<&'static str>,
    handler: HandlerFn,
}

impl RouteDef {
    /// A route with the defaults of most routes: no body, 15 s, policy, not counted, never
    /// blocks.
    const fn new(method: &'static str, path: &'static str, handler: HandlerFn) -> RouteDef {
        RouteDef {
            method,
            path,
            prefix: path.as_bytes()[path.len() - 1] == b'/',
            max_body: 0,
            timeout: Some(Duration::from_secs(15)),
            auth: Auth::Policy,
            counted: false,
            inline: Inline::Always,
            listed: true,
            authorized_as: None,
            handler,
        }
    }

    /// Authorised as route `path` too (see [`RouteDef::authorized_as`]).
    const fn authorized_as(mut self, path: &'static str) -> RouteDef {
        self.authorized_as = Some(path);
        self
    }

    /// Served, but not listed in `/v1/api`.
    const fn unlisted(mut self) -> RouteDef {
        self.listed = false;
        self
    }

    /// Takes a JSON body of at most [`MAX_BODY`] bytes.
    const fn with_body(mut self) -> RouteDef {
        self.max_body = MAX_BODY;
        self
    }

    const fn timeout_secs(mut self, secs: u64) -> RouteDef {
        self.timeout = Some(Duration::from_secs(secs));
        self
    }

    /// A stream: no timeout.
    const fn streaming(mut self) -> RouteDef {
        self.timeout = None;
        self
    }

    const fn auth(mut self, auth: Auth) -> RouteDef {
        self.auth = auth;
        self
    }

    /// Counted in `kes_http_request_*` (key, policy and identity routes, as in the Go server).
    const fn counted(mut self) -> RouteDef {
        self.counted = true;
        self
    }

    /// Runs on the event loop when its key is cached, on a worker otherwise.
    const fn reads_key(mut self) -> RouteDef {
        self.inline = Inline::Try;
        self
    }

    /// Calls the keystore every time: always on a worker.
    const fn blocks(mut self) -> RouteDef {
        self.inline = Inline::Never;
        self
    }
}

/// The route table of §2.2, plus the legacy bulk decrypt of §2.4 (served, not listed in
/// `/v1/api`). A prefix route's path without
/// its trailing slash matches too (see [`Api::find`]).
fn routes() -> Vec<RouteDef> {
    const fn get(path: &'static str, handler: HandlerFn) -> RouteDef {
        RouteDef::new("GET", path, handler)
    }
    const fn put(path: &'static str, handler: HandlerFn) -> RouteDef {
        RouteDef::new("PUT", path, handler)
    }
    vec![
        get("/version", sys::version)
            .timeout_secs(10)
            .auth(Auth::None),
        get("/v1/ready", sys::ready).blocks(),
        get("/v1/status", sys::status).blocks(),
        get("/v1/metrics", sys::metrics),
        get("/v1/api", sys::api).timeout_secs(10),
        put("/v1/key/create/", key::create).counted().blocks(),
        put("/v1/key/import/", key::import)
            .with_body()
            .counted()
            .blocks(),
        get("/v1/key/describe/", key::describe)
            .counted()
            .reads_key(),
        get("/v1/key/list/", key::list).counted().blocks(),
        RouteDef::new("DELETE", "/v1/key/delete/", key::delete)
            .counted()
            .blocks(),
        put("/v1/key/generate/", key::generate)
            .with_body()
            .counted()
            .reads_key(),
        put("/v1/key/encrypt/", key::encrypt)
            .with_body()
            .counted()
            .reads_key(),
        put("/v1/key/decrypt/", key::decrypt)
            .with_body()
            .counted()
            .reads_key(),
        put("/v1/key/hmac/", key::hmac)
            .with_body()
            .counted()
            .reads_key(),
        put("/v1/key/rotate/", key::rotate).counted().blocks(),
        put("/v1/key/retire/", key::retire)
            .with_body()
            .counted()
            .blocks(),
        put("/v1/key/restore/", key::restore)
            .with_body()
            .counted()
            .blocks(),
        put("/v1/key/destroy/", key::destroy)
            .with_body()
            .counted()
            .blocks(),
        put("/v1/key/bulk/decrypt/", key::bulk_decrypt)
            .with_body()
            .counted()
            .reads_key()
            .unlisted()
            .authorized_as("/v1/key/decrypt/"),
        get("/v1/policy/describe/", policy::describe_policy).counted(),
        get("/v1/policy/read/", policy::read_policy).counted(),
        get("/v1/policy/list/", policy::list_policies).counted(),
        get("/v1/identity/describe/", policy::describe_identity).counted(),
        get("/v1/identity/list/", policy::list_identities).counted(),
        get("/v1/identity/self/describe", policy::self_describe)
            .counted()
            .auth(Auth::Identity),
        get("/v1/log/error", sys::log_error).streaming(),
        get("/v1/log/audit", sys::log_audit).streaming(),
    ]
}

/// What a handler sees of a request.
pub struct Ctx<'a> {
    pub api: &'a Api,
    pub state: &'a State,
    /// The caller (empty when the route does not need one and none was presented).
    pub identity: &'a Identity,
    /// The URL path after the route's path (key name, pattern, …).
    pub resource: &'a str,
    pub head: &'a RequestHead,
    pub body: &'a [u8],
    pub conn: &'a ConnInfo,
    pub route: &'a RouteDef,
    /// On the event loop, key lookups must not wait for the keystore.
    pub mode: Mode,
}

impl Ctx<'_> {
    /// The key `name` with its versions (docs/key-versions.md): from the cache, or (on a
    /// worker) from the keystore. On the event loop a key that is not cached answers
    /// [`error::WOULD_BLOCK`], and the request moves to a worker.
    pub fn ring(&self, name: &str) -> Result<Arc<Ring>, ApiError> {
        match self.mode {
            Mode::Inline => self.api.cache.ring_cached(name).ok_or(error::WOULD_BLOCK),
            Mode::Worker => self
                .api
                .cache
                .ring(name)
                .map_err(|e| error::read_key(name, &e)),
        }
    }

    /// Version `n` of `ring` (the ring of `name`): loaded on first use, which on the event loop
    /// answers [`error::WOULD_BLOCK`]. A version the keystore does not have (destroyed
    /// meanwhile) is 404 `key version does not exist`.
    pub fn version(&self, name: &str, ring: &Ring, n: u32) -> Result<Arc<KeyVersion>, ApiError> {
        if let Some(v) = ring.loaded(n) {
            return Ok(v);
        }
        match self.mode {
            Mode::Inline => Err(error::WOULD_BLOCK),
            Mode::Worker => self.api.cache.version(name, ring, n).map_err(|e| match e {
                crate::cache::Error::Store(crate::keystore::Error::NotFound) => {
                    error::UNKNOWN_VERSION
                }
                e => error::read_key(name, &e),
            }),
        }
    }
}

/// What the API keeps per connection: the client's identity resolved against the policies, with
/// the generation of the configuration it was resolved in. The identity cannot change on a
/// connection, so the resolution is done once and redone only after a reload.
#[derive(Default)]
pub struct PolicyCache {
    resolved: Option<(u64, crate::auth::policy::Resolved)>,
}

/// The parts of the API that a config reload replaces.
pub struct State {
    pub policies: PolicySet,
    pub api_config: BTreeMap<String, ApiConfig>,
    /// Write audit events to stdout (`log.audit`).
    pub audit_stdout: bool,
    /// Audit records per second for the failed requests of clients without a policy
    /// (`log.audit_unknown_rate`; 0 = no limit).
    pub audit_unknown_rate: u32,
    /// How long a retired key version stays retired before it may be destroyed
    /// (`key_versions.destroy_after`).
    pub destroy_after: Duration,
    /// Set by [`Api`] (any value given is replaced): distinguishes configurations, so that a
    /// connection's cached policy resolution is redone after a reload.
    pub generation: u64,
}

/// Source of [`State::generation`] values.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The API: route table, reloadable state and shared services.
pub struct Api {
    routes: Vec<RouteDef>,
    state: RwLock<Arc<State>>,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
    pub server_stats: Arc<server::Stats>,
    /// Audit events for `/v1/log/audit` subscribers.
    pub audit: Arc<Hub>,
    /// Error log lines for `/v1/log/error` subscribers.
    pub errors: Arc<Hub>,
    /// Set at shutdown; ends log streams.
    pub stopping: Arc<AtomicBool>,
    pub started: Instant,
    /// `server.max_connections`, for the metrics.
    pub max_connections: usize,
    /// The listening address, once bound (for the accept-queue metric).
    pub listen: std::sync::OnceLock<std::net::SocketAddr>,
    /// Requests by route (index = route id), every route included.
    route_requests: Box<[AtomicU64]>,
    /// The budget of audit records for clients without a policy ([`State::audit_unknown_rate`]).
    unknown_audit: std::sync::Mutex<Bucket>,
}

/// A token bucket: `rate` tokens a second, holding at most one second's worth.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        let rate = f64::from(rate);
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The longest request path an audit record holds; a longer one is cut, and the record says
/// how long it was. No KES client sends paths near this (a route and an 80-byte name).
pub const AUDIT_PATH_MAX: usize = 512;

impl Api {
    pub fn new(
        state: State,
        cache: Arc<Cache>,
        metrics: Arc<Metrics>,
        server_stats: Arc<server::Stats>,
        errors: Arc<Hub>,
        max_connections: usize,
    ) -> Api {
        let routes = routes();
        let route_requests = routes.iter().map(|_| AtomicU64::new(0)).collect();
        Api {
            routes,
            state: RwLock::new(Arc::new(State {
                generation: GENERATION.fetch_add(1, Ordering::Relaxed),
                ..state
            })),
            cache,
            metrics,
            server_stats,
            audit: Hub::new(),
            errors,
            stopping: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
            max_connections,
            listen: std::sync::OnceLock::new(),
            route_requests,
            // Full at start: one second's worth (`take` caps the tokens at the rate).
            unknown_audit: std::sync::Mutex::new(Bucket {
                tokens: f64::MAX,
                at: Instant::now(),
            }),
        }
    }

    /// Whether the audit record of a failed request of a client without a policy (no
    /// certificate, or an identity that is neither the admin nor assigned to a policy) fits the
    /// budget of [`State::audit_unknown_rate`]. Records of every other request are always kept,
    /// so a normal MinIO workload loses none; a client without a policy cannot fill the disk
    /// (finding 3 of issue 15: 218 MB/s of 404 records for 16 KiB paths).
    fn audit_allowed(&self, state: &State, conn: &ConnInfo, status: u16) -> bool {
        if state.audit_unknown_rate == 0 || status < 400 {
            return true;
        }
        let unknown = match &conn.identity {
            ClientIdentity::Known(id) => {
                state.policies.resolve(id) == crate::auth::policy::Resolved::Unknown
            }
            _ => true,
        };
        if !unknown {
            return true;
        }
        let allowed = self
            .unknown_audit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(state.audit_unknown_rate);
        if !allowed {
            self.metrics.audit_dropped.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// Emits one audit event: to stdout when `log.audit` is on and to `/v1/log/audit`
    /// subscribers. One event per request-response pair, every route included (as before
    /// 2023-10-24; Go 63649d0 audits only create/import/delete). The shape is the Go server's
    /// (§8.1):
    ///
    /// `{"time":"<RFC 3339>","request":{"ip","method","path","identity"},"response":{"code","time"}}`
    ///
    /// with `response.time` in nanoseconds (what the Go client decodes) and `identity` omitted
    /// when the client presented none. Never holds key material, plaintext or ciphertext: only who
    /// called which path and what came back. Formatted only when someone reads it.
    fn audit(
        &self,
        state: &State,
        head: &RequestHead,
        conn: &ConnInfo,
        status: u16,
        elapsed: Duration,
    ) {
        let to_stream = self.audit.has_subscribers();
        if !state.audit_stdout && !to_stream {
            return;
        }
        if !self.audit_allowed(state, conn, status) {
            return;
        }
        let mut line = Vec::with_capacity(256);
        line.extend_from_slice(b"{\"time\":\"");
        line.extend_from_slice(json::go_time(Some(time::OffsetDateTime::now_utc())).as_bytes());
        line.extend_from_slice(b"\",\"request\":{\"ip\":\"");
        line.extend_from_slice(conn.peer.ip().to_string().as_bytes());
        line.extend_from_slice(b"\",\"method\":");
        gojson::write_string(&head.method, &mut line);
        line.extend_from_slice(b",\"path\":");
        if head.path.len() <= AUDIT_PATH_MAX {
            gojson::write_string(&head.path, &mut line);
        } else {
            let mut end = AUDIT_PATH_MAX;
            while !head.path.is_char_boundary(end) {
                end -= 1;
            }
            let cut = format!("{}…({} bytes)", &head.path[..end], head.path.len());
            gojson::write_string(&cut, &mut line);
        }
        if let ClientIdentity::Known(id) = &conn.identity {
            line.extend_from_slice(b",\"identity\":");
            gojson::write_string(id.as_str(), &mut line);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        line.extend_from_slice(
            format!("}},\"response\":{{\"code\":{status},\"time\":{nanos}}}}}\n").as_bytes(),
        );
        if state.audit_stdout {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&line);
            let _ = out.flush();
        }
        if to_stream {
            self.audit.publish(Arc::from(line));
        }
        self.metrics.audit_events.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request of route `id` (all routes, for `kes_http_requests_total`).
    fn count_route(&self, id: usize) {
        if let Some(c) = self.route_requests.get(id) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests per route path so far (route paths in table order).
    pub fn route_counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.routes
            .iter()
            .zip(self.route_requests.iter())
            .map(|(r, c)| (r.method, r.path, c.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs new policies and API settings (config reload).
    pub fn set_state(&self, state: State) {
        let state = State {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            ..state
        };
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
    }

    /// Whether any route skips authentication (then client certificates become optional).
    pub fn any_skip_auth(api_config: &BTreeMap<String, ApiConfig>) -> bool {
        api_config.values().any(|c| c.skip_auth)
    }

    /// The listed routes with their effective settings, for `/v1/api`.
    pub fn route_table(
        &self,
        state: &State,
    ) -> Vec<(&'static str, &'static str, usize, Option<Duration>)> {
        self.routes
            .iter()
            .filter(|r| r.listed)
            .map(|r| (r.method, r.path, r.max_body, self.settings(state, r).1))
            .collect()
    }

    /// (skip_auth, timeout) of a route after `api.<path>` settings.
    fn settings(&self, state: &State, r: &RouteDef) -> (bool, Option<Duration>) {
        let key = r.path.trim_end_matches('/');
        let cfg = state
            .api_config
            .get(key)
            .or_else(|| state.api_config.get(r.path));
        let skip = cfg.is_some_and(|c| c.skip_auth);
        let timeout = match cfg.and_then(|c| c.timeout) {
            Some(t) if !t.is_zero() => Some(t),
            _ => r.timeout,
        };
        (skip, timeout)
    }

    /// Finds the route of a path: exact routes first, then the longest prefix route. A prefix
    /// route's path without its trailing slash also matches (resource empty), so that
    /// `/v1/key/list` lists everything instead of redirecting.
    fn find<'p>(&self, path: &'p str) -> Option<(usize, &'p str)> {
        let mut best: Option<(usize, &'p str)> = None;
        for (i, r) in self.routes.iter().enumerate() {
            if r.prefix {
                if let Some(rest) = path.strip_prefix(r.path) {
                    if best.is_none_or(|(b, _)| self.routes[b].path.len() < r.path.len()) {
                        best = Some((i, rest));
                    }
                } else if path == &r.path[..r.path.len() - 1] {
                    return Some((i, ""));
                }
            } else if path == r.path {
                return Some((i, ""));
            }
        }
        best
    }

    fn authorize(
        &self,
        state: &State,
        r: &RouteDef,
        method: &str,
        path: &str,
        conn: &ConnInfo,
        cache: &mut PolicyCache,
    ) -> Result<(), ApiError> {
        let (skip, _) = self.settings(state, r);
        if r.auth == Auth::None {
            return Ok(());
        }
        let identity = match &conn.identity {
            ClientIdentity::Known(id) => Some(id),
            ClientIdentity::TooMany => return Err(error::TOO_MANY_CERTS),
            ClientIdentity::Invalid(why) => return Err(ApiError::owned(400, why.clone())),
            ClientIdentity::Missing => None,
        };
        if skip || r.auth == Auth::Identity {
            return match identity {
                Some(_) => Ok(()),
                None if skip => Ok(()),
                None => Err(error::CERT_REQUIRED),
            };
        }
        let Some(identity) = identity else {
            return Err(error::CERT_REQUIRED);
        };
        // Resolve the identity once per connection and configuration (a constant-time pass over
        // all assignments); per request only the path is checked.
        let resolved = match &cache.resolved {
            Some((generation, resolved)) if *generation == state.generation => resolved,
            _ => {
                &cache
                    .resolved
                    .insert((state.generation, state.policies.resolve(identity)))
                    .1
            }
        };
        // One decision for every spelling that reaches the handler (§4): a prefix route's path
        // without its trailing slash is checked as the path with it (`/v1/key/list` as
        // `/v1/key/list/`), and a route that does what another does is checked as both.
        let resource = if r.prefix {
            path.get(r.path.len()..).unwrap_or("")
        } else {
            ""
        };
        let canonical = if r.prefix && !path.starts_with(r.path) {
            r.path
        } else {
            path
        };
        let alias = r.authorized_as.map(|other| format!("{other}{resource}"));
        let verdict = match &alias {
            None => state.policies.check(resolved, canonical),
            Some(alias) => state.policies.check_all(resolved, &[canonical, alias]),
        };
        match verdict {
            Ok(()) => Ok(()),
            Err(denied) => {
                if log::log_enabled!(log::Level::Debug) {
                    // The record names the request, as those written by handlers do; the logger
                    // escapes the whole message (a path is client-chosen text).
                    let _request_log = crate::logstream::enter_request(
                        method,
                        path,
                        conn.peer.ip(),
                        Some(identity),
                    );
                    let why = match denied {
                        Denied::UnknownIdentity => "identity has no policy",
                        Denied::NotAllowed => "not allowed by policy",
                    };
                    log::debug!("denied {path} for {identity}: {why}");
                }
                Err(error::NOT_AUTHORIZED)
            }
        }
    }
}

/// A JSON error reply.
pub fn error_response(e: &ApiError) -> Response {
    Response::bytes(e.status, "application/json", error_body(&e.message))
}

fn not_found() -> Response {
    Response::bytes(
        404,
        "text/plain; charset=utf-8",
        b"404 page not found\n".to_vec(),
    )
    .with_header("X-Content-Type-Options", "nosniff")
}

impl server::Handler for Api {
    type ConnState = PolicyCache;

    fn prepare(
        &self,
        head: &RequestHead,
        conn: &ConnInfo,
        cache: &mut PolicyCache,
    ) -> Result<Route, Response> {
        let start = Instant::now();
        let Some((id, _)) = self.find(&head.path) else {
            self.audit(&self.state(), head, conn, 404, start.elapsed());
            return Err(not_found());
        };
        self.count_route(id);
        let r = &self.routes[id];
        let method_ok = head.method == r.method || (r.method == "PUT" && head.method == "POST");
        let state = self.state();
        if !method_ok {
            let e = error::method_not_allowed(&head.method, r.method);
            self.audit(&state, head, conn, e.status, start.elapsed());
            return Err(error_response(&e).with_header("Accept", r.method));
        }
        if let Err(e) = self.authorize(&state, r, &head.method, &head.path, conn, cache) {
            if r.counted {
                self.metrics.observe(e.status, start.elapsed());
            }
            self.audit(&state, head, conn, e.status, start.elapsed());
            return Err(error_response(&e));
        }
        Ok(Route {
            id,
            max_body: r.max_body,
            timeout: self.settings(&state, r).1,
            inline: r.inline,
        })
    }

    fn handle(&self, route: &Route, request: &Request, conn: &ConnInfo, mode: Mode) -> Handled {
        let start = Instant::now();
        let head = &request.head;
        let Some(r) = self.routes.get(route.id) else {
            return Handled::Done(error_response(&ApiError::new(500, "internal server error")));
        };
        let state = self.state();
        let empty = Identity::default();
        let identity = match &conn.identity {
            ClientIdentity::Known(id) => id,
            _ => &empty,
        };
        let resource = if r.prefix {
            head.path.get(r.path.len()..).unwrap_or("")
        } else {
            ""
        };
        let ctx = Ctx {
            api: self,
            state: &state,
            identity,
            resource,
            head,
            body: &request.body,
            conn,
            route: r,
            mode,
        };
        // Error log records written by the handler name the request they belong to.
        let request_log = crate::logstream::enter_request(
            &head.method,
            &head.path,
            conn.peer.ip(),
            Some(identity),
        );
        // Decremented on drop, so that a panicking handler does not leave the gauge raised.
        struct Active<'a>(Option<&'a AtomicU64>);
        impl Drop for Active<'_> {
            fn drop(&mut self) {
                if let Some(a) = self.0 {
                    a.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        let active = Active(r.counted.then_some(&self.metrics.active));
        if let Some(a) = active.0 {
            a.fetch_add(1, Ordering::Relaxed);
        }
        let response = match (r.handler)(&ctx) {
            Ok(response) => response,
            // Nothing was done yet: the request runs again on a worker, and is counted there.
            Err(e) if e.is_would_block() => return Handled::WouldBlock,
            Err(e) => error_response(&e),
        };
        drop(active);
        drop(request_log);
        if r.counted {
            self.metrics.observe(response.status, start.elapsed());
        }
        self.audit(&state, head, conn, response.status, start.elapsed());
        Handled::Done(response)
    }

    fn refused(&self, status: u16, head: Option<&RequestHead>, conn: &ConnInfo) {
        // Malformed framing (no head) is not a request anyone made; an oversized or broken body
        // of a routed request is, and is counted and audited like any other reply.
        let Some(head) = head else {
            log::debug!("refused a malformed request from {}: {status}", conn.peer);
            return;
        };
        if let Some((id, _)) = self.find(&head.path)
            && self.routes[id].counted
        {
            self.metrics.observe(status, Duration::ZERO);
        }
        self.audit(&self.state(), head, conn, status, Duration::ZERO);
    }

    fn error(&self, status: u16, message: &str) -> Response {
        Response::bytes(status, "application/json", error_body(message))
    }
}

/// Name rule (§2.1): 1–80 bytes of `[0-9A-Za-z_-]`, `-` not first or last, not exactly `_`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 80
        && name != "_"
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

/// Pattern rule (§2.1): a prefix of a valid name (the name alphabet, `-` not first, at most 80
/// bytes; may be empty), optionally followed by `*`. A pattern starting with `-` is refused, as in
/// the Go server (no name starts with it). Unlike the Go server, a prefix may end with `-` or be
/// `_`: `imp-` lists `imp-a` (Go refuses `imp-` and accepts `imp-*`), `_` lists `_a`.
pub fn valid_pattern(pattern: &str) -> bool {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    body.len() <= 80
        && !body.starts_with('-')
        && body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// The listing prefix of a pattern: a trailing `*` is stripped (the Go server keeps it for keys,
/// so that `my*` finds nothing; fixed here).
pub fn pattern_prefix(pattern: &str) -> &str {
    pattern.strip_suffix('*').unwrap_or(pattern)
}

/// The server version (for the start-up banner).
pub fn sys_version() -> &'static str {
    sys::VERSION
}

/// The commit the server was built from.
pub fn sys_commit() -> &'static str {
    sys::COMMIT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rule() {
        for ok in ["a", "my-key", "my_key", "_a", "a_", "A9", &"a".repeat(80)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "_",
            "-a",
            "a-",
            "a.b",
            "../x",
            "a/b",
            "a b",
            "ä",
            &"a".repeat(81),
            "a*",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn pattern_rule() {
        for ok in ["", "*", "my*", "my-key", "a_b*", "my-", "my-*", "_", "_*"] {
            assert!(valid_pattern(ok), "{ok}");
        }
        for bad in [
            "*a", "a*b*", "a/b", "..", "a.b", "-", "-x", "-*", "-x*", "**",
        ] {
            assert!(!valid_pattern(bad), "{bad}");
        }
        assert_eq!(pattern_prefix("*"), "");
        assert_eq!(pattern_prefix("my*"), "my");
        assert_eq!(pattern_prefix("my"), "my");
    }
}
