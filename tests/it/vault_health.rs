//! Whether kes tells the truth about Vault, end to end: the real `kes` binary over TLS in front
//! of real OpenBao servers (`support::openbao`), with short `status.ping` and `approle.retry`
//! (1 s) so that every state change shows within seconds.
//!
//! * Readiness: `/v1/ready`, `/v1/status` (`keystore_unavailable`, `keystore_unreachable`,
//!   `keystore_error`) and the log while Vault is sealed, and while the token is revoked and
//!   the AppRole secret ID destroyed (logins fail); recovery from both.
//! * Start-up with Vault unreachable (a proxy that refuses connections): kes starts, is not
//!   ready, creates the config's `keys:` and serves once Vault answers; `--fail-fast` exits.
//! * The K/V engine: a version mismatch either way, or no engine at the path, stops start-up
//!   with what to change; found later (Vault down at start-up, or a mount upgraded to v2 and a
//!   SIGHUP), kes stays up, not ready, and writes nothing. An engine the token cannot check gets
//!   one warning, and 403 errors a version hint.
//! * Racing creates of one name through two kes nodes on K/V v1 and v2: exactly one 200 per
//!   name, and both nodes use the same key; a v1 policy that grants `update` is warned about.

use crate::support::client::Client;
use crate::support::openbao::{self, Bao};
use crate::support::pki::{self, Ca, Cert};
use crate::support::proxy::{Mode, Proxy};
use crate::support::{Kes, TempDir};
use serde_json::{Value, json};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const ADMIN_API_KEY: &str = "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc";

/// How long any state change may take to show (they take 1-3 s; shared machines stall).
const SHOWS_WITHIN: Duration = Duration::from_secs(30);

/// A kes server with its own TLS files and an admin (API key).
struct Node {
    dir: TempDir,
    ca: Ca,
    admin: Cert,
    kes: Kes,
}

impl Node {
    /// Starts kes with `keystore` (a `keystore:` block) and `extra` config lines.
    fn start(tag: &str, keystore: &str, extra: &str) -> Node {
        Node::try_start(tag, keystore, extra, &[])
            .unwrap_or_else(|out| panic!("kes did not start:\n{out}"))
    }

    /// Like [`Node::start`] with more command-line arguments; `Err` is what kes printed.
    fn try_start(tag: &str, keystore: &str, extra: &str, args: &[&str]) -> Result<Node, String> {
        let dir = TempDir::new(tag);
        let ca = Ca::new("kes vault-health CA");
        ca.server().write(dir.path(), "server");
        let admin = pki::api_key_client(ADMIN_API_KEY);
        let config = format!(
            "admin:\n  identity: {}\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\n{extra}{keystore}",
            admin.identity,
            d = dir.path().display()
        );
        let path = dir.join("kes.yaml");
        std::fs::write(&path, config).unwrap();
        let mut all = vec![
            "server",
            "--config",
            path.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ];
        all.extend_from_slice(args);
        let kes = Kes::start_with(&all, &[])?;
        Ok(Node {
            dir,
            ca,
            admin,
            kes,
        })
    }

    /// Rewrites the config file, replacing `from` with `to` (which must be there).
    fn edit_config(&self, from: &str, to: &str) {
        let path = self.dir.join("kes.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} not in the config");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }

    fn admin(&self) -> Client {
        Client::new(self.kes.addr, &self.ca.cert.der, Some(&self.admin))
    }

    fn ready(&self) -> u16 {
        self.admin().get("/v1/ready").status
    }

    fn status(&self) -> Value {
        self.admin().get("/v1/status").json()
    }

    /// Lines of the output that contain every one of `parts`.
    /// The log lines that contain every one of `parts`, with the log format's `\"` read as `"`.
    fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.kes
            .output()
            .lines()
            .map(|l| l.replace("\\\"", "\""))
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .collect()
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The keystore block for `endpoint` (AppRole, `retry: 1s`, `status.ping: 1s`).
fn keystore(endpoint: &str, mount: &str, version: u8, role: &(String, String)) -> String {
    openbao::keystore_yaml(&[endpoint.to_string()], None, mount, version, role)
}

/// The health fields of `/v1/status`: (unavailable, unreachable, error).
fn health(status: &Value) -> (bool, bool, String) {
    (
        status["keystore_unavailable"] == true,
        status["keystore_unreachable"] == true,
        status["keystore_error"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[track_caller]
fn assert_healthy(node: &Node) {
    let s = node.status();
    assert_eq!(node.ready(), 200);
    assert_eq!(health(&s), (false, false, String::new()), "{s}");
    assert!(s["keystore_latency"].as_u64().unwrap() > 0, "{s}");
}

// ---------------------------------------------------------------------------------------------
// Readiness

#[test]
fn ready_and_status_follow_a_sealed_vault_and_a_dead_login() {
    let bao = Bao::dev();
    let role = bao.seed_setup(None, "kv", 1, true);
    let node = Node::start("ready", &keystore(&bao.addr, "kv", 1, &role), "");
    let admin = node.admin();
    assert_healthy(&node);
    assert_eq!(admin.put("/v1/key/create/cached", "").status, 200);
    assert_eq!(admin.post("/v1/key/generate/cached", "").status, 200);

    // Sealed: 504, unreachable, and why.
    bao.seal();
    let t = Instant::now();
    assert!(wait_until(SHOWS_WITHIN, || node.ready() == 504));
    let sealed_after = t.elapsed();
    admin
        .get("/v1/ready")
        .assert_error(504, "key store is not reachable");
    let s = node.status();
    assert_eq!(health(&s), (true, true, "vault is sealed".into()), "{s}");
    assert!(s.get("keystore_latency").is_none(), "{s}");
    bao.unseal();
    let t = Instant::now();
    assert!(wait_until(SHOWS_WITHIN, || node.ready() == 200));
    let unsealed_after = t.elapsed();
    assert_healthy(&node);

    // The AppRole secret ID destroyed and the token revoked: no request comes, yet the health
    // loop finds the token dead and the login failing. Not ready (502: Vault answers but keys
    // cannot be served), with the reason.
    bao.ok(
        None,
        "POST",
        "/v1/auth/approle/role/kes-kv/secret-id/destroy",
        Some(&json!({ "secret_id": role.1 })),
    );
    bao.revoke_logins(None, "approle");
    let t = Instant::now();
    assert!(
        wait_until(SHOWS_WITHIN, || node.ready() == 502),
        "{}",
        node.kes.output()
    );
    let dead_after = t.elapsed();
    admin
        .get("/v1/ready")
        .assert_error(502, "key store is unavailable");
    let s = node.status();
    let (unavailable, unreachable, why) = health(&s);
    assert!(unavailable && !unreachable, "{s}");
    for part in [
        "the token was rejected",
        "logging in again failed",
        "/v1/auth/approle/login answered 400",
    ] {
        assert!(why.contains(part), "{part:?} not in {why:?}");
    }
    // Requests for uncached keys fail; a cached key still works.
    admin
        .put("/v1/key/create/while-dead", "")
        .assert_error(502, "failed to create key");
    assert_eq!(admin.post("/v1/key/generate/cached", "").status, 200);
    // Logins keep failing (1 s, 2 s, 4 s apart): logged once, as one state change.
    std::thread::sleep(Duration::from_secs(4));
    let failures = node.lines_with(&["AppRole login failed", "next try in"]);
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(
        node.lines_with(&["the token was rejected (expired or revoked); logging in again"])
            .len(),
        1
    );

    // The same secret ID again (as restoring Vault from a backup would): the next login works.
    bao.ok(
        None,
        "POST",
        "/v1/auth/approle/role/kes-kv/custom-secret-id",
        Some(&json!({ "secret_id": role.1 })),
    );
    let t = Instant::now();
    assert!(wait_until(SHOWS_WITHIN, || node.ready() == 200));
    let back_after = t.elapsed();
    assert_healthy(&node);
    assert!(
        node.kes
            .wait_for_output("login succeeded after", Duration::from_secs(5))
    );
    assert_eq!(admin.put("/v1/key/create/after", "").status, 200);
    println!(
        "sealed: ready 504 after {sealed_after:?}, 200 again {unsealed_after:?} after the unseal; \
         token revoked and secret ID destroyed: ready 502 after {dead_after:?} ({why}); \
         secret ID restored: ready again after {back_after:?}; failed logins logged: {}",
        failures.len()
    );
}

// ---------------------------------------------------------------------------------------------
// AppRole secret ID rotation without a restart

#[test]
fn approle_secret_id_rotated_with_sighup() {
    let started = Instant::now();
    let bao = Bao::dev();
    let role = bao.seed_setup(None, "kv", 2, true);
    let node = Node::start("rotate", &keystore(&bao.addr, "kv", 2, &role), "");
    let pid = node.kes.child.id();
    let admin = node.admin();
    assert_healthy(&node);
    assert_eq!(admin.put("/v1/key/create/before", "").status, 200);
    let logins = |node: &Node| {
        node.lines_with(&["AppRole login (PUT /v1/auth/approle/login) succeeded"])
            .len()
    };
    assert_eq!(logins(&node), 1);

    // A wrong secret ID in the file: the login with it fails, which the log says; the running
    // credentials and token stay in force.
    let wrong = "00000000-1111-2222-3333-444444444444";
    node.edit_config(&format!("secret: {}", role.1), &format!("secret: {wrong}"));
    node.kes.signal("HUP");
    assert!(
        node.kes
            .wait_for_output("logging in with them failed", SHOWS_WITHIN),
        "{}",
        node.kes.output()
    );
    let failed = node.lines_with(&["logging in with them failed"]);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    for part in [
        "level=ERROR",
        "the keystore login credentials changed in",
        "the running credentials and token stay in force",
        "PUT /v1/auth/approle/login answered 400",
    ] {
        assert!(failed[0].contains(part), "{part:?} not in {}", failed[0]);
    }
    assert!(
        node.kes
            .wait_for_output("level=INFO msg=\"reloaded", SHOWS_WITHIN)
    );
    assert_healthy(&node);
    assert_eq!(admin.put("/v1/key/create/after-wrong", "").status, 200);
    // Still the old secret ID's credentials: with every token revoked, kes logs in again with
    // them (a wrong secret taken over would fail here).
    bao.revoke_logins(None, "approle");
    assert!(
        wait_until(SHOWS_WITHIN, || logins(&node) == 2),
        "{}",
        node.kes.output()
    );
    assert_healthy(&node);
    assert_eq!(admin.put("/v1/key/create/old-login", "").status, 200);

    // The rotation: a new secret ID, the old one destroyed and kes's token revoked, so kes can
    // no longer log in and is not ready (502)...
    let new_secret = bao.ok(
        None,
        "POST",
        "/v1/auth/approle/role/kes-kv/secret-id",
        Some(&json!({})),
    )["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    bao.ok(
        None,
        "POST",
        "/v1/auth/approle/role/kes-kv/secret-id/destroy",
        Some(&json!({ "secret_id": role.1 })),
    );
    bao.revoke_logins(None, "approle");
    assert!(
        wait_until(SHOWS_WITHIN, || node.ready() == 502),
        "{}",
        node.kes.output()
    );
    // ...until the file has the new secret ID and a SIGHUP: ready again, same process.
    node.edit_config(
        &format!("secret: {wrong}"),
        &format!("secret: {new_secret}"),
    );
    let t = Instant::now();
    node.kes.signal("HUP");
    assert!(
        wait_until(SHOWS_WITHIN, || node.ready() == 200),
        "{}",
        node.kes.output()
    );
    let ready_after = t.elapsed();
    assert_healthy(&node);
    assert_eq!(node.kes.child.id(), pid);
    assert!(
        node.kes.output().matches("Version ").count() == 1,
        "restarted"
    );
    assert_eq!(logins(&node), 3);
    let reloaded = node.lines_with(&["keystore login credentials (logged in with them)"]);
    assert_eq!(reloaded.len(), 1, "{}", node.kes.output());
    assert!(reloaded[0].contains("other keystore settings and listen address unchanged"));
    // Keys are served from Vault: a new key is written, every key listed, the one made before
    // the rotation used.
    assert_eq!(admin.put("/v1/key/create/after-rotation", "").status, 200);
    let names = admin.get("/v1/key/list/*").text();
    for name in ["before", "after-wrong", "old-login", "after-rotation"] {
        assert!(names.contains(name), "{name} not in {names}");
    }
    assert_eq!(admin.post("/v1/key/generate/before", "").status, 200);
    // And the new credentials are the ones used from now on: every token revoked once more,
    // kes logs in again with the new secret ID.
    bao.revoke_logins(None, "approle");
    assert!(
        wait_until(SHOWS_WITHIN, || logins(&node) == 4),
        "{}",
        node.kes.output()
    );
    assert_eq!(admin.put("/v1/key/create/new-login", "").status, 200);
    assert_healthy(&node);
    // No secret ID is ever logged.
    let out = node.kes.output();
    for secret in [role.1.as_str(), wrong, new_secret.as_str()] {
        assert!(!out.contains(secret), "a secret ID is in the output");
    }
    println!(
        "AppRole secret ID rotated with SIGHUP: ready again {ready_after:?} after the signal, same PID {pid}; \
         test took {:?}; the failed reload said: {}",
        started.elapsed(),
        failed[0]
    );
}

// ---------------------------------------------------------------------------------------------
// Start-up with Vault down

#[test]
fn start_with_vault_down_then_up() {
    let bao = Bao::dev();
    let role = bao.seed_setup(None, "kv", 2, true);
    let v1_role = bao.seed_setup(None, "kv1", 1, true);
    let proxy = Proxy::start(format!("127.0.0.1:{}", bao.port).parse().unwrap());
    proxy.set(Mode::Refuse);
    let endpoint = proxy.url("http");

    // --fail-fast: exits, naming the endpoint.
    let out = match Node::try_start(
        "down-fast",
        &keystore(&endpoint, "kv", 2, &role),
        "",
        &["--fail-fast"],
    ) {
        Ok(node) => panic!(
            "kes --fail-fast started without Vault:\n{}",
            node.kes.output()
        ),
        Err(out) => out,
    };
    let error = out.lines().find(|l| l.starts_with("kes: ")).unwrap_or(&out);
    assert!(error.contains("cannot connect to Vault"), "{out}");
    assert!(error.contains(&endpoint), "{out}");

    // Without it: kes starts, not ready, says why, and keeps trying.
    let t = Instant::now();
    let node = Node::start(
        "down",
        &keystore(&endpoint, "kv", 2, &role),
        "keys:\n  - name: from-config\n",
    );
    let started_in = t.elapsed();
    let admin = node.admin();
    admin
        .get("/v1/ready")
        .assert_error(504, "key store is not reachable");
    let s = node.status();
    let (unavailable, unreachable, down_why) = health(&s);
    assert!(unavailable && unreachable, "{s}");
    assert!(
        down_why.contains("vault is unreachable") && down_why.contains(&endpoint),
        "{down_why}"
    );
    admin
        .put("/v1/key/create/k", "")
        .assert_error(502, "failed to create key");
    // A second one, whose configuration turns out wrong once Vault answers: K/V v2 configured
    // on the v1 engine at kv1.
    let wrong = Node::start(
        "down-v2-on-v1",
        &keystore(&endpoint, "kv1", 2, &v1_role),
        "",
    );
    std::thread::sleep(Duration::from_secs(3));
    for n in [&node, &wrong] {
        assert_eq!(n.lines_with(&["starting without a token"]).len(), 1);
        // One outage, one record (the probes every second are not logged again).
        assert_eq!(
            n.lines_with(&["key operations fail at once until it recovers"])
                .len(),
            1,
            "{}",
            n.kes.output()
        );
    }

    proxy.set(Mode::Pass);
    let t = Instant::now();
    assert!(
        wait_until(SHOWS_WITHIN, || node.ready() == 200),
        "{}",
        node.kes.output()
    );
    let ready_after = t.elapsed();
    assert_healthy(&node);
    // The config's key was created once Vault answered, and the keys work.
    assert!(wait_until(SHOWS_WITHIN, || bao
        .read(None, "kv/data/from-config")
        .0
        == 200));
    assert_eq!(admin.post("/v1/key/generate/from-config", "").status, 200);
    assert_eq!(admin.put("/v1/key/create/k", "").status, 200);

    // The other: logged in, but the engine is wrong: not ready, why, and nothing written.
    assert!(wait_until(SHOWS_WITHIN, || wrong.ready() == 502));
    let s = wrong.status();
    let (unavailable, unreachable, why) = health(&s);
    assert!(unavailable && !unreachable, "{s}");
    assert!(
        why.contains(
            "keystore.vault.version is v2, but the K/V engine mounted at 'kv1/' is version 1"
        ),
        "{why}"
    );
    wrong
        .admin()
        .put("/v1/key/create/k", "")
        .assert_error(502, "failed to create key");
    assert_eq!(
        bao.read(None, "kv1/data/k").0,
        404,
        "written to the wrong place"
    );
    assert_eq!(
        bao.call(None, "LIST", "/v1/kv1", None).0,
        404,
        "kv1 is empty"
    );
    println!(
        "Vault refused at start-up: kes started in {started_in:?} (504: {down_why}); \
         ready {ready_after:?} after Vault answered; the v2-on-v1 node: 502 ({why})"
    );
}

// ---------------------------------------------------------------------------------------------
// The K/V engine

#[test]
fn kv_version_mismatch_either_way_stops_startup() {
    let bao = Bao::dev();
    let v1 = bao.seed_setup(None, "kv1", 1, true);
    let v2 = bao.seed_setup(None, "kv2", 2, true);
    // A policy for an engine name that is not mounted.
    bao.write_policy(
        None,
        "typo",
        "path \"kvtypo/*\" { capabilities = [\"create\", \"read\", \"delete\", \"list\"] }",
    );
    let typo = bao.approle(
        None,
        "typo",
        json!({"token_policies": ["typo"], "period": "5m"}),
    );
    for (tag, mount, version, role, wanted) in [
        (
            "v2-on-v1",
            "kv1",
            2,
            &v1,
            "keystore.vault.version is v2, but the K/V engine mounted at 'kv1/' is version 1: set version: v1",
        ),
        (
            "v1-on-v2",
            "kv2",
            1,
            &v2,
            "keystore.vault.version is v1, but the K/V engine mounted at 'kv2/' is version 2: set version: v2",
        ),
        (
            "no-engine",
            "kvtypo",
            1,
            &typo,
            "no secrets engine is mounted at 'kvtypo'",
        ),
    ] {
        let out = match Node::try_start(tag, &keystore(&bao.addr, mount, version, role), "", &[]) {
            Ok(node) => panic!("{tag}: kes started:\n{}", node.kes.output()),
            Err(out) => out,
        };
        let error = out
            .lines()
            .find(|l| l.starts_with("kes: "))
            .unwrap_or_else(|| panic!("{tag}: no error line:\n{out}"));
        assert!(error.contains(wanted), "{tag}: {error}");
        println!("{tag}: {error}");
    }
    assert_eq!(
        bao.call(None, "LIST", "/v1/kv1", None).0,
        404,
        "kv1 is empty"
    );

    // An engine the token cannot check (not mounted, and the policy is for another path): kes
    // starts with one warning, and the 403s of key requests carry the hint.
    let node = Node::start("unverified", &keystore(&bao.addr, "kvtypo", 1, &v1), "");
    let warnings = node.lines_with(&["cannot check the K/V engine 'kvtypo'"]);
    assert_eq!(warnings.len(), 1, "{}", node.kes.output());
    node.admin()
        .put("/v1/key/create/k", "")
        .assert_error(502, "failed to create key");
    assert!(
        node.kes
            .wait_for_output("a K/V v1/v2 mismatch also causes this", SHOWS_WITHIN),
        "{}",
        node.kes.output()
    );
    println!("{}", warnings[0]);
}

#[test]
fn a_mount_upgraded_to_v2_is_found_on_reload() {
    let bao = Bao::dev();
    let role = bao.seed_setup(None, "kv", 1, true);
    let node = Node::start("reload", &keystore(&bao.addr, "kv", 1, &role), "");
    assert!(
        !node
            .lines_with(&["the K/V engine mounted at 'kv/' is version 1, as configured"])
            .is_empty()
    );
    assert_eq!(node.admin().put("/v1/key/create/k", "").status, 200);
    assert_healthy(&node);

    // `bao kv enable-versioning kv`: the mount is K/V v2 from now on.
    bao.ok(
        None,
        "POST",
        "/v1/sys/mounts/kv/tune",
        Some(&json!({"options": {"version": "2"}})),
    );
    node.kes.signal("HUP");
    let t = Instant::now();
    assert!(
        wait_until(SHOWS_WITHIN, || node.ready() == 502),
        "{}",
        node.kes.output()
    );
    let (_, _, why) = health(&node.status());
    assert!(
        why.contains(
            "keystore.vault.version is v1, but the K/V engine mounted at 'kv/' is version 2"
        ),
        "{why}"
    );
    assert!(
        !node
            .lines_with(&[&why, "key operations fail until this is fixed"])
            .is_empty()
    );
    println!(
        "mount upgraded to v2, SIGHUP: ready 502 after {:?}: {why}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Racing creates

/// One create of a race: (name, node, status, error message).
type Outcome = (String, usize, u16, String);

/// 20 names, each created by 8 requests at once, 4 through each node. Returns the time taken.
fn race(nodes: &[Node; 2], tag: &str) -> Duration {
    const NAMES: usize = 20;
    const RACERS: usize = 8;
    // Four names at a time, each with its own 8 racers that start together.
    const AT_ONCE: usize = 4;
    let names: Vec<String> = (0..NAMES).map(|i| format!("{tag}-{i:02}")).collect();
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let clients = [nodes[0].admin(), nodes[1].admin()];
    let start = Instant::now();
    for group in names.chunks(AT_ONCE) {
        let barrier = Arc::new(Barrier::new(group.len() * RACERS));
        let threads: Vec<_> = group
            .iter()
            .flat_map(|name| (0..RACERS).map(move |r| (name.clone(), r)))
            .map(|(name, r)| {
                let (client, barrier, outcomes) =
                    (clients[r % 2].clone(), barrier.clone(), outcomes.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let reply = client.put(&format!("/v1/key/create/{name}"), "");
                    let message = match reply.status {
                        200 => String::new(),
                        _ => reply.message(),
                    };
                    outcomes
                        .lock()
                        .unwrap()
                        .push((name, r % 2, reply.status, message));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    let took = start.elapsed();
    let outcomes = outcomes.lock().unwrap();
    for name in &names {
        let mine: Vec<_> = outcomes.iter().filter(|o| &o.0 == name).collect();
        assert_eq!(mine.len(), RACERS);
        let wins: Vec<_> = mine.iter().filter(|o| o.2 == 200).collect();
        assert_eq!(wins.len(), 1, "{name}: {mine:?}");
        for o in &mine {
            assert!(
                o.2 == 200 || (o.2, o.3.as_str()) == (400, "key already exists"),
                "{o:?}"
            );
        }
        // Both nodes use the same key: what one encrypts, the other decrypts (and back).
        for (from, to) in [(0, 1), (1, 0)] {
            let g = clients[from].post(&format!("/v1/key/generate/{name}"), "");
            assert_eq!(g.status, 200, "{name}: {}", g.text());
            let g = g.json();
            let d = clients[to].post(
                &format!("/v1/key/decrypt/{name}"),
                &json!({ "ciphertext": g["ciphertext"] }).to_string(),
            );
            assert_eq!(
                d.status,
                200,
                "{name}: node {to} cannot decrypt: {}",
                d.text()
            );
            assert_eq!(d.json()["plaintext"], g["plaintext"], "{name}");
        }
    }
    took
}

#[test]
fn racing_creates_through_two_nodes() {
    let bao = Bao::dev();
    let update_warning = "grants 'update' on";
    for (mount, version, policy) in [
        ("kv1", 1u8, None),
        ("kv2", 2, None),
        // A K/V v1 policy with `update`: still one winner per name, and a warning.
        (
            "kvu",
            1,
            Some(
                "path \"kvu/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }",
            ),
        ),
    ] {
        let role = match policy {
            None => bao.seed_setup(None, mount, version, true),
            Some(hcl) => {
                bao.enable_kv(None, mount, version);
                bao.write_policy(None, mount, hcl);
                bao.approle(
                    None,
                    mount,
                    json!({"token_policies": [mount], "period": "5m"}),
                )
            }
        };
        let yaml = keystore(&bao.addr, mount, version, &role);
        let nodes = [
            Node::start(&format!("race-{mount}-a"), &yaml, ""),
            Node::start(&format!("race-{mount}-b"), &yaml, ""),
        ];
        for node in &nodes {
            let warned = node.lines_with(&[update_warning]);
            if policy.is_some() {
                assert_eq!(warned.len(), 1, "{}", node.kes.output());
                assert!(
                    warned[0].contains("path \"kvu/*\" { capabilities = [\"create\", \"read\", \"delete\", \"list\"] }"),
                    "{}",
                    warned[0]
                );
            } else {
                assert!(warned.is_empty(), "{warned:?}");
            }
        }
        let took = race(&nodes, mount);
        println!(
            "K/V v{version} at {mount}{}: 20 names x 8 concurrent creates through 2 nodes in {took:?}: one 200 per name, both nodes decrypt each other's data keys",
            if policy.is_some() {
                " (policy with update, warned)"
            } else {
                " (setup procedure's policy)"
            }
        );
    }
}
