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
mod sys;

use crate::auth::Identity;
use crate::auth::policy::{Denied, PolicySet};
use crate::cache::Cache;
use crate::config::ApiConfig;
use crate::logstream::Hub;
use crate::metrics::Metrics;
use crate::server::http::{Head, Response};
use crate::server::{self, ClientIdentity, ConnInfo, Route};
pub use error::{ApiError, error_body};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Largest request body of the routes that take one (1 MB, decimal, as at HEAD).
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
    handler: HandlerFn,
}

const fn route(
    method: &'static str,
    path: &'static str,
    max_body: usize,
    timeout_secs: u64,
    auth: Auth,
    counted: bool,
    handler: HandlerFn,
) -> RouteDef {
    let prefix = path.as_bytes()[path.len() - 1] == b'/';
    let timeout = if timeout_secs == 0 {
        None
    } else {
        Some(Duration::from_secs(timeout_secs))
    };
    RouteDef {
        method,
        path,
        prefix,
        max_body,
        timeout,
        auth,
        counted,
        handler,
    }
}

/// The route table of §2.2, plus the legacy bulk decrypt of §2.4 and list paths without slash.
fn routes() -> Vec<RouteDef> {
    use Auth::*;
    vec![
        route("GET", "/version", 0, 10, None, false, sys::version),
        route("GET", "/v1/ready", 0, 15, Policy, false, sys::ready),
        route("GET", "/v1/status", 0, 15, Policy, false, sys::status),
        route("GET", "/v1/metrics", 0, 15, Policy, false, sys::metrics),
        route("GET", "/v1/api", 0, 10, Policy, false, sys::api),
        route("PUT", "/v1/key/create/", 0, 15, Policy, true, key::create),
        route(
            "PUT",
            "/v1/key/import/",
            MAX_BODY,
            15,
            Policy,
            true,
            key::import,
        ),
        route(
            "GET",
            "/v1/key/describe/",
            0,
            15,
            Policy,
            true,
            key::describe,
        ),
        route("GET", "/v1/key/list/", 0, 15, Policy, true, key::list),
        route(
            "DELETE",
            "/v1/key/delete/",
            0,
            15,
            Policy,
            true,
            key::delete,
        ),
        route(
            "PUT",
            "/v1/key/generate/",
            MAX_BODY,
            15,
            Policy,
            true,
            key::generate,
        ),
        route(
            "PUT",
            "/v1/key/encrypt/",
            MAX_BODY,
            15,
            Policy,
            true,
            key::encrypt,
        ),
        route(
            "PUT",
            "/v1/key/decrypt/",
            MAX_BODY,
            15,
            Policy,
            true,
            key::decrypt,
        ),
        route(
            "PUT",
            "/v1/key/hmac/",
            MAX_BODY,
            15,
            Policy,
            true,
            key::hmac,
        ),
        route(
            "PUT",
            "/v1/key/bulk/decrypt/",
            MAX_BODY,
            15,
            Policy,
            true,
            key::bulk_decrypt,
        ),
        route(
            "GET",
            "/v1/policy/describe/",
            0,
            15,
            Policy,
            true,
            policy::describe_policy,
        ),
        route(
            "GET",
            "/v1/policy/read/",
            0,
            15,
            Policy,
            true,
            policy::read_policy,
        ),
        route(
            "GET",
            "/v1/policy/list/",
            0,
            15,
            Policy,
            true,
            policy::list_policies,
        ),
        route(
            "GET",
            "/v1/identity/describe/",
            0,
            15,
            Policy,
            true,
            policy::describe_identity,
        ),
        route(
            "GET",
            "/v1/identity/list/",
            0,
            15,
            Policy,
            true,
            policy::list_identities,
        ),
        route(
            "GET",
            "/v1/identity/self/describe",
            0,
            15,
            Identity,
            true,
            policy::self_describe,
        ),
        route("GET", "/v1/log/error", 0, 0, Policy, false, sys::log_error),
        route("GET", "/v1/log/audit", 0, 0, Policy, false, sys::log_audit),
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
    pub head: &'a Head,
    pub body: &'a [u8],
    pub conn: &'a ConnInfo,
    pub route: &'a RouteDef,
}

/// The parts of the API that a config reload replaces.
pub struct State {
    pub policies: PolicySet,
    pub api_config: BTreeMap<String, ApiConfig>,
    /// Write audit events to stdout (`log.audit`).
    pub audit_stdout: bool,
}

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
}

impl Api {
    pub fn new(
        state: State,
        cache: Arc<Cache>,
        metrics: Arc<Metrics>,
        server_stats: Arc<server::Stats>,
        errors: Arc<Hub>,
    ) -> Api {
        Api {
            routes: routes(),
            state: RwLock::new(Arc::new(state)),
            cache,
            metrics,
            server_stats,
            audit: Hub::new(),
            errors,
            stopping: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
        }
    }

    /// Emits one audit event (§8.1, one per request as before 2023-10-24): to stdout when
    /// `log.audit` is on and to stream subscribers. Never holds key material, plaintext or
    /// ciphertext: only who called which path and what came back.
    fn audit(&self, state: &State, head: &Head, conn: &ConnInfo, status: u16, elapsed: Duration) {
        let to_stream = self.audit.has_subscribers();
        if !state.audit_stdout && !to_stream {
            return;
        }
        let mut line = Vec::with_capacity(256);
        line.extend_from_slice(b"{\"time\":\"");
        line.extend_from_slice(json::go_time(Some(time::OffsetDateTime::now_utc())).as_bytes());
        line.extend_from_slice(b"\",\"request\":{\"ip\":\"");
        line.extend_from_slice(conn.peer.ip().to_string().as_bytes());
        line.extend_from_slice(b"\",\"method\":");
        error::go_json_string(&head.method, &mut line);
        line.extend_from_slice(b",\"path\":");
        error::go_json_string(&head.path, &mut line);
        if let ClientIdentity::Known(id) = &conn.identity {
            line.extend_from_slice(b",\"identity\":\"");
            line.extend_from_slice(id.as_str().as_bytes());
            line.push(b'"');
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
            self.metrics.audit_events.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs new policies and API settings (config reload).
    pub fn set_state(&self, state: State) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
    }

    /// Whether any route skips authentication (then client certificates become optional).
    pub fn any_skip_auth(api_config: &BTreeMap<String, ApiConfig>) -> bool {
        api_config.values().any(|c| c.skip_auth)
    }

    /// The routes with their effective settings, for `/v1/api`.
    pub fn route_table(
        &self,
        state: &State,
    ) -> Vec<(&'static str, &'static str, usize, Option<Duration>)> {
        self.routes
            .iter()
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
        path: &str,
        conn: &ConnInfo,
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
        match state.policies.verify(identity, path) {
            Ok(()) => Ok(()),
            Err(Denied::UnknownIdentity) => {
                log::debug!("denied {path} for {identity}: identity has no policy");
                Err(error::NOT_AUTHORIZED)
            }
            Err(Denied::NotAllowed) => {
                log::debug!("denied {path} for {identity}: not allowed by policy");
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
    fn prepare(&self, head: &Head, conn: &ConnInfo) -> Result<Route, Response> {
        let Some((id, _)) = self.find(&head.path) else {
            return Err(not_found());
        };
        let r = &self.routes[id];
        let method_ok = head.method == r.method || (r.method == "PUT" && head.method == "POST");
        if !method_ok {
            let e = error::method_not_allowed(&head.method, r.method);
            return Err(error_response(&e).with_header("Accept", r.method));
        }
        let state = self.state();
        let start = Instant::now();
        if let Err(e) = self.authorize(&state, r, &head.path, conn) {
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
        })
    }

    fn handle(&self, route: &Route, head: &Head, body: &[u8], conn: &ConnInfo) -> Response {
        let start = Instant::now();
        let r = &self.routes[route.id];
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
            body,
            conn,
            route: r,
        };
        if r.counted {
            self.metrics.active.fetch_add(1, Ordering::Relaxed);
        }
        let response = match (r.handler)(&ctx) {
            Ok(response) => response,
            Err(e) => error_response(&e),
        };
        if r.counted {
            self.metrics.active.fetch_sub(1, Ordering::Relaxed);
            self.metrics.observe(response.status, start.elapsed());
        }
        self.audit(&state, head, conn, response.status, start.elapsed());
        response
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

/// Pattern rule (§2.1): the name alphabet plus `*` as the last character only; may be empty.
pub fn valid_pattern(pattern: &str) -> bool {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    body.len() <= 80
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
        for ok in ["", "*", "my*", "my-key", "a_b*"] {
            assert!(valid_pattern(ok), "{ok}");
        }
        for bad in ["*a", "a*b*", "a/b", "..", "a.b"] {
            assert!(!valid_pattern(bad), "{bad}");
        }
        assert_eq!(pattern_prefix("*"), "");
        assert_eq!(pattern_prefix("my*"), "my");
        assert_eq!(pattern_prefix("my"), "my");
    }
}
