//! The HTTP side of the Vault keystore: one ureq agent, the list of Vault nodes, and the choice of
//! the node each request goes to.
//!
//! Every request has the configured connect timeout and a response budget (see [`Client::new`]);
//! none can hang a caller longer. A request may also carry a deadline for the whole operation
//! (reads: `timeout.read`): every attempt, on every node, then gets only the time left, and no
//! new attempt starts after it. Redirects are never followed: a 307 from a standby during an
//! election points at the old leader, which is usually the node that just died, so a 307 moves
//! the request on to the next node instead (see the module docs of [`super`] for the HA design).
//!
//! This module never logs or formats a token, a request body or a response body other than
//! Vault's own `errors` list.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use zeroize::Zeroizing;

use super::flag::{HealthFlag, Unusable};
use super::tls;
use crate::config::VaultConfig;
use crate::keystore::{Error, UnreachableReason};

/// Largest response body read for ordinary calls (a stored value is ≤ 1 MiB; wrapped in transit
/// and JSON it stays well below this).
pub(crate) const BODY_LIMIT: u64 = 4 << 20;

/// Largest response body read for a list (same cap as the Go server).
pub(crate) const LIST_BODY_LIMIT: u64 = 32 << 20;

/// How long a request waits between rounds of looking for the active node during an election.
const DISCOVERY_PAUSE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// Which node may serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeChoice {
    /// The active node: reads whose answer decides a write (the existence check before a
    /// create), writes, logins. Falls back to any node only when no active node shows up within
    /// the response timeout.
    Active,
    /// Any node that answers; the active node first. A standby may answer a read with data that
    /// is ~100 ms old.
    Any,
}

/// One HTTP call to Vault.
#[derive(Clone)]
pub(crate) struct Request<'a> {
    pub method: Method,
    /// Path and query, starting with `/v1/`.
    pub path: &'a str,
    pub body: Option<&'a [u8]>,
    /// `X-Vault-Namespace`, when set.
    pub namespace: Option<&'a str>,
    /// `X-Vault-Token`, when set.
    pub token: Option<&'a str>,
    pub route: NodeChoice,
    /// The most response bytes read.
    pub limit: u64,
    /// When the whole operation this request belongs to must be done (`None`: only the
    /// per-call timeouts apply).
    pub deadline: Option<Instant>,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, path: &'a str, route: NodeChoice) -> Self {
        Request {
            method,
            path,
            body: None,
            namespace: None,
            token: None,
            route,
            limit: BODY_LIMIT,
            deadline: None,
        }
    }

    pub fn deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = Some(body);
        self
    }

    pub fn namespace(mut self, namespace: Option<&'a str>) -> Self {
        self.namespace = namespace.filter(|ns| !ns.is_empty());
        self
    }

    pub fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }
}

/// Vault's answer. The body may hold secrets (tokens, stored values): it is zeroized on drop.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
    /// Index of the node that answered.
    pub node: usize,
}

impl Reply {
    /// Vault's `errors` list, joined, shortened and flattened to one line, for logs and errors.
    pub fn errors(&self) -> String {
        vault_errors(&self.body)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Vault's `warnings` list, joined and shortened like [`Reply::errors`]. Vault explains some
    /// answers only there (a K/V v1 path on a v2 engine: 404 with an empty `errors`).
    pub fn warnings(&self) -> String {
        #[derive(Deserialize)]
        struct Warnings {
            #[serde(default)]
            warnings: Option<Vec<String>>,
        }
        match serde_json::from_slice::<Warnings>(&self.body) {
            Ok(Warnings {
                warnings: Some(w), ..
            }) if !w.is_empty() => {
                let text = w.join("; ");
                if text.chars().count() > 300 {
                    text.chars().take(300).collect::<String>() + "…"
                } else {
                    text
                }
            }
            _ => String::new(),
        }
    }
}

/// Vault's `{"errors":[...]}` as one short line. Vault puts no request data into these texts
/// beyond paths, so they are safe to log.
pub(crate) fn vault_errors(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    let text = match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors.join("; "),
        _ => return String::new(),
    };
    // Go's multierror format ("1 error occurred:\n\t* permission denied\n\n") → "permission denied".
    let mut flat: String = text
        .split(['\n', '\t'])
        .map(|part| part.trim().trim_start_matches("* "))
        .filter(|part| {
            !part.is_empty()
                && !part.ends_with("error occurred:")
                && !part.ends_with("errors occurred:")
        })
        .collect::<Vec<_>>()
        .join("; ");
    if flat.chars().count() > 300 {
        flat = flat.chars().take(300).collect::<String>() + "…";
    }
    flat
}

/// What the client knows about one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum NodeState {
    /// Answering, role unknown (or not checked yet).
    Unknown = 0,
    Active = 1,
    Standby = 2,
    Sealed = 3,
    /// Not reachable (connection refused, timeout, TLS failure).
    Down = 4,
}

impl NodeState {
    fn from_u8(v: u8) -> NodeState {
        match v {
            1 => NodeState::Active,
            2 => NodeState::Standby,
            3 => NodeState::Sealed,
            4 => NodeState::Down,
            _ => NodeState::Unknown,
        }
    }

    /// Whether requests should be sent there.
    fn usable(self) -> bool {
        !matches!(self, NodeState::Sealed | NodeState::Down)
    }
}

struct Node {
    /// Base URL without a trailing slash, e.g. `https://vault-1:8200`.
    url: String,
    state: AtomicU8,
}

/// The result of one `/v1/sys/health` probe.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub node: usize,
    pub result: Result<NodeState, NoAnswer>,
    pub latency: Duration,
}

/// Why a node gave no usable answer: the reason callers decide on, and the text for messages
/// (which never holds a header value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoAnswer {
    pub reason: UnreachableReason,
    pub why: String,
}

impl NoAnswer {
    fn new(reason: UnreachableReason, why: impl Into<String>) -> NoAnswer {
        NoAnswer {
            reason,
            why: why.into(),
        }
    }

    /// A transport error in words an operator can act on, with its reason.
    fn of(err: &ureq::Error, budget: Budget) -> NoAnswer {
        match (err, budget.total) {
            (ureq::Error::Timeout(_), Some(total)) => NoAnswer::new(
                UnreachableReason::Timeout,
                format!("no answer within {}", short(total)),
            ),
            _ => NoAnswer::new(reason_of(err), describe(err)),
        }
    }
}

/// The HTTP client of the keystore: agent, nodes, node choice, the shared health flag.
pub(crate) struct Client {
    agent: ureq::Agent,
    nodes: Vec<Node>,
    /// The node believed to be active; the first choice for every request.
    preferred: AtomicUsize,
    /// Serializes the search for the active node, so a burst of requests causes one search.
    discovery: Mutex<()>,
    /// How long a request for the active node waits for one to appear (an election).
    discovery_budget: Duration,
    connect_timeout: Duration,
    pub(crate) health: HealthFlag,
}

impl Client {
    /// Validates the endpoints and builds the agent.
    ///
    /// Timeouts of every call: `connect_timeout` for DNS, TCP and the TLS handshake;
    /// `response_timeout` for sending the request and receiving the response headers and body;
    /// `connect_timeout + response_timeout` for the whole exchange.
    pub fn new(
        cfg: &VaultConfig,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Client, String> {
        if cfg.endpoints.is_empty() {
            return Err("keystore.vault.endpoint is empty".into());
        }
        let mut nodes = Vec::with_capacity(cfg.endpoints.len());
        for endpoint in &cfg.endpoints {
            let url = endpoint.trim().trim_end_matches('/').to_string();
            let uri: ureq::http::Uri = url
                .parse()
                .map_err(|e| format!("keystore.vault.endpoint '{endpoint}' is not a URL: {e}"))?;
            match uri.scheme_str() {
                Some("http" | "https") => {}
                _ => {
                    return Err(format!(
                        "keystore.vault.endpoint '{endpoint}' must start with http:// or https://"
                    ));
                }
            }
            if uri.host().is_none_or(str::is_empty) {
                return Err(format!("keystore.vault.endpoint '{endpoint}' has no host"));
            }
            if uri.query().is_some() {
                return Err(format!(
                    "keystore.vault.endpoint '{endpoint}' must not have a query"
                ));
            }
            if nodes.iter().any(|n: &Node| n.url == url) {
                return Err(format!("keystore.vault.endpoint lists '{endpoint}' twice"));
            }
            nodes.push(Node {
                url,
                state: AtomicU8::new(NodeState::Unknown as u8),
            });
        }
        let uses_https = nodes.iter().any(|n| n.url.starts_with("https://"));
        let tls = tls::config(&cfg.tls, uses_https)?;

        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .https_only(false)
            .user_agent(concat!("kes/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .timeout_resolve(Some(connect_timeout))
            .timeout_connect(Some(connect_timeout))
            .timeout_send_request(Some(response_timeout))
            .timeout_send_body(Some(response_timeout))
            .timeout_recv_response(Some(response_timeout))
            .timeout_recv_body(Some(response_timeout))
            .timeout_per_call(Some(connect_timeout + response_timeout))
            .max_idle_connections(64)
            .max_idle_connections_per_host(32)
            .build();
        Ok(Client {
            agent: config.new_agent(),
            nodes,
            preferred: AtomicUsize::new(0),
            discovery: Mutex::new(()),
            discovery_budget: response_timeout,
            connect_timeout,
            health: HealthFlag::new(),
        })
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node_url(&self, node: usize) -> &str {
        self.nodes.get(node).map_or("", |n| n.url.as_str())
    }

    pub fn state(&self, node: usize) -> NodeState {
        self.nodes.get(node).map_or(NodeState::Down, |n| {
            NodeState::from_u8(n.state.load(Ordering::Acquire))
        })
    }

    /// Whether `node` is (as far as we know) the node that performs writes. With one endpoint
    /// (a single server or a load balancer) that endpoint is.
    pub fn is_active(&self, node: usize) -> bool {
        self.nodes.len() == 1 || self.state(node) == NodeState::Active
    }

    fn set_state(&self, node: usize, state: NodeState) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        let old = NodeState::from_u8(n.state.swap(state as u8, Ordering::AcqRel));
        if old.usable() && !state.usable() {
            // Let the health loop confirm at once, so callers fail fast instead of timing out.
            self.health.kick();
        }
    }

    /// Sends `req` to a node chosen by its route, moving on to other nodes on connection errors,
    /// redirects (elections), sealed nodes and gateway errors. Any HTTP answer other than those
    /// is returned as it is, whatever its status.
    pub fn send(&self, req: &Request<'_>) -> Result<Reply, Error> {
        // A request with a deadline (a read) cannot wait for health probes of the nodes to find
        // the active one: it goes to the node believed active first, then to any other.
        if self.nodes.len() > 1 && req.route == NodeChoice::Active && req.deadline.is_none() {
            self.send_active(req)
        } else {
            self.send_any(req)
        }
    }

    fn send_any(&self, req: &Request<'_>) -> Result<Reply, Error> {
        self.try_any(req)
            .map_err(|failures| failures.into_unusable().into())
    }

    /// Like [`Client::send_any`], with the failures of every attempt when none worked.
    fn try_any(&self, req: &Request<'_>) -> Result<Reply, Failures> {
        let n = self.nodes.len();
        let start = self.preferred.load(Ordering::Acquire) % n;
        let mut order: Vec<usize> = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.state(i).usable())
            .collect();
        if order.is_empty() {
            // Every node looks dead: try them all anyway, the picture may be out of date.
            order = (0..n).map(|k| (start + k) % n).collect();
        }
        let mut failures = Failures::default();
        let candidates = order.len();
        for (k, i) in order.into_iter().enumerate() {
            let Some(budget) = Budget::of(req, self.connect_timeout, candidates - k - 1) else {
                failures.add(Failure::out_of_time());
                break;
            };
            match self.attempt(i, req, budget) {
                Ok(reply) => return Ok(reply),
                Err(failure) => failures.add(failure),
            }
        }
        Err(failures)
    }

    fn send_active(&self, req: &Request<'_>) -> Result<Reply, Error> {
        let mut deadline = Instant::now() + self.discovery_budget;
        if let Some(d) = req.deadline {
            deadline = deadline.min(d);
        }
        let mut failures = Failures::default();
        for _ in 0..2 * self.nodes.len() {
            let Some(i) = self.active_node(deadline) else {
                break;
            };
            // Leave time for trying another node afterwards.
            let Some(budget) = Budget::of(req, self.connect_timeout, 1) else {
                failures.add(Failure::out_of_time());
                break;
            };
            match self.attempt(i, req, budget) {
                Ok(reply) => return Ok(reply),
                Err(failure) => failures.add(failure),
            }
        }
        // No active node within the budget. Any node that answers will do: a standby forwards
        // writes (or refuses them), and a create's refusal by Vault is what decides "exists".
        log::warn!(
            "vault: no active node found for {} {}; trying any node",
            req.method.as_str(),
            strip_query(req.path)
        );
        match self.try_any(req) {
            Ok(reply) => Ok(reply),
            // What trying any node found counts as one more failure after those of the search.
            Err(more) if failures.count > 0 => {
                let mut all = failures;
                all.add(Failure::from(more.into_unusable()));
                Err(all.into_unusable().into())
            }
            Err(more) => Err(more.into_unusable().into()),
        }
    }

    /// The active node, searching for it (health probes of all nodes) while `deadline` allows.
    fn active_node(&self, deadline: Instant) -> Option<usize> {
        loop {
            let p = self.preferred.load(Ordering::Acquire);
            if self.state(p) == NodeState::Active {
                return Some(p);
            }
            {
                let _guard = self.discovery.lock().unwrap_or_else(|e| e.into_inner());
                let p = self.preferred.load(Ordering::Acquire);
                if self.state(p) == NodeState::Active {
                    return Some(p);
                }
                self.probe_all(None);
                let p = self.preferred.load(Ordering::Acquire);
                if self.state(p) == NodeState::Active {
                    return Some(p);
                }
            }
            let now = Instant::now();
            if now + DISCOVERY_PAUSE >= deadline {
                return None;
            }
            std::thread::sleep(DISCOVERY_PAUSE);
        }
    }

    /// One try of `req` against node `i`, within `budget`.
    fn attempt(&self, i: usize, req: &Request<'_>, budget: Budget) -> Result<Reply, Failure> {
        let url = self.node_url(i);
        let (method, path) = (req.method.as_str(), strip_query(req.path));
        let reply = match self.send_to(i, req, budget) {
            Ok(reply) => reply,
            Err(NoAnswer { reason, why }) => {
                // Warn once when a node goes down, not for every request that finds it down.
                if self.state(i).usable() {
                    log::warn!("vault: {method} {path} on {url}: {why}");
                } else {
                    log::debug!("vault: {method} {path} on {url}: {why}");
                }
                self.set_state(i, NodeState::Down);
                return Err(Failure {
                    reason,
                    why: format!("{url}: {why}"),
                    out_of_time: false,
                });
            }
        };
        match reply.status {
            503 if reply.errors().to_ascii_lowercase().contains("sealed") => {
                if self.state(i).usable() {
                    log::warn!("vault: {method} {path} on {url}: 503 (sealed)");
                }
                self.set_state(i, NodeState::Sealed);
                Err(Failure::from(Unusable::Sealed))
            }
            // Answers that say "not this node, not now": an election (307 towards the old
            // leader, never followed), a sealed or overloaded node, a gateway, or a standby right
            // after a KV v2 mount was enabled (400 "Waiting for the primary to upgrade from
            // non-versioned to versioned data", for a few hundred ms).
            307 | 308 | 429 | 502 | 503 | 504 => Err(self.not_now(i, method, path, &reply)),
            400 if reply.errors().contains("Waiting for the primary") => {
                Err(self.not_now(i, method, path, &reply))
            }
            _ => {
                if !self.state(i).usable() {
                    self.set_state(i, NodeState::Unknown);
                }
                self.health.set_ok();
                Ok(reply)
            }
        }
    }

    /// A node that cannot serve the request right now; its role is re-checked by the next probe.
    fn not_now(&self, i: usize, method: &str, path: &str, reply: &Reply) -> Failure {
        let (url, errors) = (self.node_url(i), reply.errors());
        log::debug!(
            "vault: {method} {path} on {url}: {} {errors}; trying another node",
            reply.status
        );
        if self.state(i) == NodeState::Active {
            self.set_state(i, NodeState::Unknown);
        }
        Failure {
            reason: UnreachableReason::NotServing,
            why: format!("{url} answered {} {errors}", reply.status)
                .trim_end()
                .to_string(),
            out_of_time: false,
        }
    }

    /// The HTTP exchange itself. The error text names the failure (timeout, refused, TLS), never
    /// a header value.
    fn send_to(&self, i: usize, req: &Request<'_>, budget: Budget) -> Result<Reply, NoAnswer> {
        let url = format!("{}{}", self.node_url(i), req.path);
        let mut builder = ureq::http::Request::builder()
            .method(req.method.as_str())
            .uri(url.as_str());
        if let Some(token) = req.token {
            builder = builder.header("X-Vault-Token", token);
        }
        if let Some(namespace) = req.namespace {
            builder = builder.header("X-Vault-Namespace", namespace);
        }
        let invalid = |e: ureq::http::Error| {
            NoAnswer::new(UnreachableReason::Network, format!("invalid request: {e}"))
        };
        let result = match req.body {
            Some(body) => {
                let request = builder
                    .header("Content-Type", "application/json")
                    .body(body)
                    .map_err(invalid)?;
                self.run(request, budget)
            }
            None => {
                let request = builder.body(()).map_err(invalid)?;
                self.run(request, budget)
            }
        };
        let mut response = result.map_err(|e| NoAnswer::of(&e, budget))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(req.limit)
            .read_to_vec()
            .map_err(|e| {
                let NoAnswer { reason, why } = NoAnswer::of(&e, budget);
                NoAnswer::new(reason, format!("reading the response: {why}"))
            })?;
        Ok(Reply {
            status,
            body: Zeroizing::new(body),
            node: i,
        })
    }

    /// Runs one exchange, limited to `budget` when the request has a deadline.
    fn run<S: ureq::AsSendBody>(
        &self,
        request: ureq::http::Request<S>,
        budget: Budget,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        match budget.total {
            None => self.agent.run(request),
            Some(total) => {
                let request = self
                    .agent
                    .configure_request(request)
                    .timeout_global(Some(total))
                    .timeout_connect(Some(budget.connect))
                    .build();
                self.agent.run(request)
            }
        }
    }

    /// Probes `/v1/sys/health` on every node at once, records the results and moves the
    /// preferred node to the active one (or, without an active node, to a usable one). With a
    /// `deadline`, a node that has not answered by then counts as down.
    pub fn probe_all(&self, deadline: Option<Instant>) -> Vec<Probe> {
        let probes: Vec<Probe> = if self.nodes.len() == 1 {
            vec![self.probe(0, deadline)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..self.nodes.len())
                    .map(|i| scope.spawn(move || self.probe(i, deadline)))
                    .collect();
                handles
                    .into_iter()
                    .enumerate()
                    .map(|(i, h)| {
                        h.join().unwrap_or(Probe {
                            node: i,
                            result: Err(NoAnswer::new(
                                UnreachableReason::NotServing,
                                "health probe panicked",
                            )),
                            latency: Duration::ZERO,
                        })
                    })
                    .collect()
            })
        };
        for probe in &probes {
            let state = match &probe.result {
                Ok(state) => *state,
                Err(_) => NodeState::Down,
            };
            self.set_state(probe.node, state);
        }
        let preferred = self.preferred.load(Ordering::Acquire);
        if let Some(active) = probes
            .iter()
            .find(|p| matches!(p.result, Ok(NodeState::Active)))
        {
            self.preferred.store(active.node, Ordering::Release);
        } else if !self.state(preferred).usable()
            && let Some(up) = probes
                .iter()
                .find(|p| p.result.as_ref().is_ok_and(|s| s.usable()))
        {
            self.preferred.store(up.node, Ordering::Release);
        }
        probes
    }

    /// One `/v1/sys/health` call. The `*code` parameters make every state answer 200 or 299 with
    /// a JSON body, which is what tells the states apart. Sent without a namespace or a token.
    fn probe(&self, i: usize, deadline: Option<Instant>) -> Probe {
        const PATH: &str = "/v1/sys/health?uninitcode=299&sealedcode=299&standbycode=299\
                            &drsecondarycode=299&performancestandbycode=299";
        #[derive(Deserialize)]
        struct Health {
            #[serde(default)]
            initialized: bool,
            #[serde(default)]
            sealed: bool,
            #[serde(default)]
            standby: bool,
        }
        let start = Instant::now();
        let req = Request::new(Method::Get, PATH, NodeChoice::Any)
            .limit(64 << 10)
            .deadline(deadline);
        let url = self.node_url(i);
        let result = match Budget::of(&req, self.connect_timeout, 0)
            .ok_or_else(|| NoAnswer::new(UnreachableReason::Timeout, "no time left"))
            .and_then(|budget| self.send_to(i, &req, budget))
        {
            Err(NoAnswer { reason, why }) => Err(NoAnswer::new(reason, format!("{url}: {why}"))),
            Ok(reply) => match serde_json::from_slice::<Health>(&reply.body) {
                Ok(h) if !h.initialized => Err(NoAnswer::new(
                    UnreachableReason::NotServing,
                    format!("{url} is not initialized"),
                )),
                Ok(h) if h.sealed => Ok(NodeState::Sealed),
                Ok(h) if h.standby => Ok(NodeState::Standby),
                Ok(_) => Ok(NodeState::Active),
                Err(_) => Err(NoAnswer::new(
                    UnreachableReason::NotServing,
                    format!(
                        "{url}: unexpected answer {} to GET /v1/sys/health {}",
                        reply.status,
                        reply.errors()
                    ),
                )),
            },
        };
        Probe {
            node: i,
            result,
            latency: start.elapsed(),
        }
    }
}

/// Why one attempt did not produce a usable answer.
struct Failure {
    /// `Sealed`: the node is sealed.
    reason: UnreachableReason,
    why: String,
    /// The operation's deadline passed before this attempt could start.
    out_of_time: bool,
}

/// A whole request's failure as one failure of a larger one.
impl From<Unusable> for Failure {
    fn from(unusable: Unusable) -> Failure {
        let why = unusable.to_string();
        let reason = match unusable {
            Unusable::Sealed => UnreachableReason::Sealed,
            Unusable::Unreachable { reason, .. } => reason,
        };
        Failure {
            reason,
            why,
            out_of_time: false,
        }
    }
}

impl Failure {
    fn out_of_time() -> Failure {
        Failure {
            reason: UnreachableReason::Timeout,
            why: "the time for this operation is up".into(),
            out_of_time: true,
        }
    }
}

/// The time one attempt may take.
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// The whole exchange, when the request has a deadline (`None`: the agent's own timeouts).
    total: Option<Duration>,
    connect: Duration,
}

impl Budget {
    fn unlimited(connect: Duration) -> Budget {
        Budget {
            total: None,
            connect,
        }
    }

    /// The budget of an attempt of `req` with `others` more nodes to try after it; `None` when
    /// the deadline has passed. The attempt may use all the time left, but while other nodes
    /// remain, connecting may take at most half of it: a node that does not even accept
    /// connections must leave time for the next.
    fn of(req: &Request<'_>, connect: Duration, others: usize) -> Option<Budget> {
        let Some(deadline) = req.deadline else {
            return Some(Budget::unlimited(connect));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            return None;
        }
        let connect_share = if others > 0 { left / 2 } else { left };
        Some(Budget {
            total: Some(left),
            connect: connect.min(connect_share),
        })
    }
}

/// A duration for messages: `1.5s`, `250ms`.
fn short(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The failures of all attempts of one request, turned into one error.
#[derive(Default)]
struct Failures {
    count: usize,
    sealed: usize,
    /// The last failure other than a sealed node (empty: none).
    last: String,
    last_reason: Option<UnreachableReason>,
}

impl Failures {
    fn add(&mut self, f: Failure) {
        if f.out_of_time {
            // Not an attempt; only says why there were no more. Keep the last real failure.
            if self.last.is_empty() && self.sealed == 0 {
                self.last = f.why;
                self.last_reason = Some(f.reason);
            }
            return;
        }
        self.count += 1;
        if f.reason == UnreachableReason::Sealed {
            self.sealed += 1;
        } else {
            self.last = f.why;
            self.last_reason = Some(f.reason);
        }
    }

    fn into_unusable(self) -> Unusable {
        let reason = self.last_reason.unwrap_or(UnreachableReason::Network);
        if self.count > 0 && self.sealed == self.count {
            Unusable::Sealed
        } else if self.last.is_empty() {
            Unusable::Unreachable {
                reason,
                why: "vault is unreachable".into(),
            }
        } else if self.last.starts_with("vault is unreachable") {
            // The failure of a whole request inside a larger one says it already.
            Unusable::Unreachable {
                reason,
                why: self.last,
            }
        } else {
            Unusable::Unreachable {
                reason,
                why: format!("vault is unreachable: {}", self.last),
            }
        }
    }
}

/// A ureq error in words an operator can act on.
fn describe(err: &ureq::Error) -> String {
    crate::transport::describe(err, describe_tls)
}

/// Why a ureq error left the node unreachable.
fn reason_of(err: &ureq::Error) -> UnreachableReason {
    if crate::transport::tls_error(err).is_some() {
        UnreachableReason::Tls
    } else if matches!(err, ureq::Error::Timeout(_))
        || matches!(err, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
    {
        UnreachableReason::Timeout
    } else {
        UnreachableReason::Network
    }
}

/// How the text of every TLS failure starts. A TLS failure ([`UnreachableReason::Tls`]) is a
/// configuration problem (a CA, a host name, a protocol version), not an outage: it stops
/// start-up even where an unreachable Vault would not (see [`super::Startup`]).
const TLS_ERROR: &str = "TLS error:";

/// A TLS failure, with what to do about the common one: a Vault certificate we do not trust.
fn describe_tls(err: &rustls::Error) -> String {
    use rustls::CertificateError;
    match err {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "{TLS_ERROR} Vault's certificate is not trusted ({err}): set keystore.vault.tls.ca to the CA certificate that issued it"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "{TLS_ERROR} Vault's certificate is not valid for this endpoint's host name ({err}): use a host name or IP address the certificate names"
        ),
        other => format!("{TLS_ERROR} {other}"),
    }
}

/// A request path without its query, for log lines.
pub(crate) fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_error_texts() {
        let body = br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#;
        assert_eq!(vault_errors(body), "permission denied");
        assert_eq!(vault_errors(br#"{"errors":["a","b"]}"#), "a; b");
        assert_eq!(vault_errors(br#"{"errors":[]}"#), "");
        assert_eq!(vault_errors(b"<html>"), "");
        let long = format!(r#"{{"errors":["{}"]}}"#, "x".repeat(1000));
        assert_eq!(vault_errors(long.as_bytes()).chars().count(), 301);
    }

    #[test]
    fn failures_become_one_error() {
        let mut all = Failures::default();
        all.add(Failure::from(Unusable::Sealed));
        all.add(Failure::from(Unusable::Sealed));
        assert_eq!(all.into_unusable(), Unusable::Sealed);
        assert_eq!(
            Error::from(Unusable::Sealed),
            Error::unreachable(UnreachableReason::Sealed, "vault is sealed")
        );
        assert_eq!(
            Error::from(Unusable::Sealed).to_string(),
            "key store is not reachable: vault is sealed"
        );
        let mut some = Failures::default();
        some.add(Failure::from(Unusable::Sealed));
        some.add(Failure {
            reason: UnreachableReason::Tls,
            why: "http://b: TLS error: bad".into(),
            out_of_time: false,
        });
        some.add(Failure::out_of_time());
        assert_eq!(
            Error::from(some.into_unusable()),
            Error::unreachable(
                UnreachableReason::Tls,
                "vault is unreachable: http://b: TLS error: bad"
            )
        );
        // A whole request's failure, as one failure of a larger one, keeps its reason.
        let mut outer = Failures::default();
        outer.add(Failure {
            reason: UnreachableReason::NotServing,
            why: "http://a answered 503".into(),
            out_of_time: false,
        });
        outer.add(Failure::from(Unusable::Unreachable {
            reason: UnreachableReason::Timeout,
            why: "vault is unreachable: http://b: timed out".into(),
        }));
        assert_eq!(
            Error::from(outer.into_unusable()),
            Error::unreachable(
                UnreachableReason::Timeout,
                "vault is unreachable: http://b: timed out"
            )
        );
        let mut late = Failures::default();
        late.add(Failure::out_of_time());
        assert_eq!(
            Error::from(late.into_unusable()),
            Error::unreachable(
                UnreachableReason::Timeout,
                "vault is unreachable: the time for this operation is up"
            )
        );
    }

    #[test]
    fn transport_errors_have_reasons() {
        let refused = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(reason_of(&refused), UnreachableReason::Network);
        let tls = ureq::Error::Io(std::io::Error::other(rustls::Error::HandshakeNotComplete));
        assert_eq!(reason_of(&tls), UnreachableReason::Tls);
        assert!(describe(&tls).starts_with(TLS_ERROR));
        assert_eq!(
            reason_of(&ureq::Error::Rustls(rustls::Error::HandshakeNotComplete)),
            UnreachableReason::Tls
        );
        assert_eq!(
            reason_of(&ureq::Error::HostNotFound),
            UnreachableReason::Network
        );
        let budget = Budget {
            total: Some(Duration::from_millis(1500)),
            connect: Duration::from_secs(1),
        };
        let timeout = ureq::Error::Timeout(ureq::Timeout::Global);
        assert_eq!(
            NoAnswer::of(&timeout, budget),
            NoAnswer::new(UnreachableReason::Timeout, "no answer within 1.5s")
        );
        assert_eq!(
            NoAnswer::of(&timeout, Budget::unlimited(Duration::from_secs(1))).reason,
            UnreachableReason::Timeout
        );
    }

    #[test]
    fn attempts_share_the_deadline() {
        let connect = Duration::from_secs(5);
        let req = Request::new(Method::Get, "/v1/kv/k", NodeChoice::Any);
        let b = Budget::of(&req, connect, 2).unwrap();
        assert_eq!(
            (b.total, b.connect),
            (None, connect),
            "no deadline: per-call timeouts"
        );

        let req = req.deadline(Some(Instant::now() + Duration::from_millis(1500)));
        let last = Budget::of(&req, connect, 0).unwrap();
        let total = last.total.unwrap();
        assert!(total <= Duration::from_millis(1500) && total > Duration::from_millis(1000));
        assert_eq!(
            last.connect, total,
            "the last node may use all the time left to connect"
        );
        let first = Budget::of(&req, connect, 2).unwrap();
        assert!(first.connect <= Duration::from_millis(750), "{first:?}");
        assert!(first.total.unwrap() > first.connect);
        let short = Budget::of(&req, Duration::from_millis(100), 2).unwrap();
        assert_eq!(short.connect, Duration::from_millis(100));

        let late = req.deadline(Some(Instant::now()));
        assert!(
            Budget::of(&late, connect, 0).is_none(),
            "no attempt after the deadline"
        );
        assert_eq!(super::short(Duration::from_millis(1500)), "1.5s");
        assert_eq!(super::short(Duration::from_secs(2)), "2s");
        assert_eq!(super::short(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn endpoints_are_checked() {
        let cfg = |endpoints: &[&str]| VaultConfig {
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        };
        let new = |c: &VaultConfig| {
            Client::new(c, Duration::from_secs(1), Duration::from_secs(1)).map(|_| ())
        };
        assert!(new(&cfg(&["http://127.0.0.1:8200/"])).is_ok());
        assert!(new(&cfg(&["http://a:8200", "http://b:8200"])).is_ok());
        assert!(new(&cfg(&[])).is_err());
        assert!(
            new(&cfg(&["127.0.0.1:8200"]))
                .unwrap_err()
                .contains("http://")
        );
        assert!(new(&cfg(&["ftp://a"])).is_err());
        assert!(
            new(&cfg(&["http://a:8200", "http://a:8200/"]))
                .unwrap_err()
                .contains("twice")
        );
    }
}
