//! Checks of the K/V engine behind the keystore (README, "Using Vault"): at start-up, on reload
//! (SIGHUP), on first use when start-up could not check, and in every round of the health loop
//! while a check found an error.
//!
//! * **The mount and its version.** `GET /v1/sys/internal/ui/mounts/<engine>` (what Vault's own
//!   CLI asks to tell K/V v1 from v2) answers any token whose policy grants something below the
//!   mount, as the policies of the setup procedure do (`sys/mounts/<engine>/tune` needs a grant
//!   on `sys/`, which they do not have). It names the mount's type, path and version. A version
//!   other than `keystore.vault.version` is an error: with v2 configured on a v1 engine, kes
//!   would write new keys to `<engine>/data/...` and not find the existing ones; with v1
//!   configured on a v2 engine, Vault answers every key path with 403 or 404.
//! * **A read of a key path** ([`PROBE`], a name no key can have, as the API's name rule has no
//!   `.`): 404 "no handler for route" means that no engine is mounted there; 404 with the
//!   warning "Invalid path for a versioned K/V secrets engine" means a v1 path on a v2 engine.
//!   Both are errors, found even when the token may not read the mount's settings.
//! * **K/V v1 only: the policy's capabilities** (`POST /v1/sys/capabilities-self`, which Vault's
//!   `default` policy grants). A token that may `update` key paths can write over an existing
//!   key, so a create racing with another KES server's create of the same name can replace a key
//!   already in use (see "create on KV v1" in [`super`]). That is a warning with the policy to
//!   use. K/V v2 creates are atomic (`cas: 0`) whatever the policy.
//!
//! A definite error ([`EngineState::Wrong`]) stops start-up. Found later, it makes every key
//! operation fail at once with its text, and `/v1/status` and `/v1/ready` report it, until a
//! check passes again. When the mount's settings cannot be read, one warning says so, and the
//! errors of key requests that Vault answers with 403 carry a hint that a K/V version mismatch
//! is a likely cause.

use std::time::Instant;

use serde_json::Value;

use super::client::{Method, NodeChoice, Reply, Request};
use super::kv::Op;
use super::{Inner, encode_segment, join_path_raw};
use crate::keystore::{Error, UnreachableReason};

/// The key name that checks read and ask about. Not a valid key name for the API (it has a
/// `.`), so no key can have it.
pub(crate) const PROBE: &str = ".kes-engine-check";

/// What Vault writes into `warnings` when a K/V v1 path is used on a v2 engine.
const VERSIONED_PATH: &str = "Invalid path for a versioned K/V secrets engine";

/// What Vault answers (404, in `errors`) for a path where nothing is mounted.
const NO_HANDLER: &str = "no handler for route";

/// What the log says after the error of a wrong engine, once the server runs.
const WRONG_EFFECT: &str =
    "key operations fail until this is fixed (checked again every status.ping, and on SIGHUP)";

/// Why an engine check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// At start-up: an error stops it (the caller reports it).
    Startup,
    /// On SIGHUP.
    Asked,
    /// On first use, or again while a check found an error (health loop).
    Due,
}

/// The result of the checks, and what to log about it.
struct Outcome {
    state: EngineState,
    /// For the info log (verified or not).
    note: String,
    /// For the warning log.
    warning: Option<String>,
}

/// What the keystore knows about its K/V engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EngineState {
    /// Not checked yet (no login yet, or Vault could not be asked).
    Unchecked,
    /// The mount exists and has the configured version.
    Verified,
    /// Could not be verified (the token may not read the mount's settings); warned about.
    Unverified,
    /// Definitely wrong: key operations fail with this text until a check passes.
    Wrong(String),
}

/// What the answer about the mount says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mount {
    /// The engine matches the configuration: the mount's path and version, for the log.
    Matches {
        path: String,
        version: u8,
    },
    Wrong(String),
    /// Nothing can be concluded; why, for the warning.
    Unknown(String),
}

/// Judges a 200 answer of `GET /v1/sys/internal/ui/mounts/<engine>` against the configured
/// `engine` (as written in the configuration) and version.
fn judge_mount(engine: &str, v2: bool, body: &[u8]) -> Mount {
    let reply: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let data = &reply["data"];
    let kind = data["type"].as_str().unwrap_or_default();
    let path = data["path"]
        .as_str()
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    if !matches!(kind, "kv" | "generic") {
        return Mount::Unknown(format!(
            "the engine mounted at '{path}/' is of type '{kind}', not K/V"
        ));
    }
    let version = match &data["options"]["version"] {
        Value::Null => 1,
        Value::String(s) if s.is_empty() || s == "1" => 1,
        Value::String(s) if s == "2" => 2,
        other => {
            return Mount::Unknown(format!(
                "the K/V engine mounted at '{path}/' has an unknown version {other}"
            ));
        }
    };
    let configured = if v2 { 2 } else { 1 };
    if version != configured {
        let effect = if v2 {
            format!(
                "with v2, kes would write new keys to '{path}/data/...' and not find the keys stored at '{path}/...'"
            )
        } else {
            "Vault answers K/V v1 key paths on a v2 engine with 403 and 404".to_string()
        };
        return Mount::Wrong(format!(
            "vault: keystore.vault.version is v{configured}, but the K/V engine mounted at '{path}/' is version {version}: set version: v{version} ({effect})"
        ));
    }
    let engine = join_path_raw(&[engine]);
    if v2 && !path.is_empty() && engine != path {
        let rest = engine
            .strip_prefix(&format!("{path}/"))
            .unwrap_or(engine.as_str());
        return Mount::Wrong(format!(
            "vault: keystore.vault.engine is '{engine}', a path inside the K/V v2 engine mounted at '{path}/': with v2, engine must name the mount itself (engine: {path}, and the rest, '{rest}', in prefix)"
        ));
    }
    Mount::Matches { path, version }
}

impl Inner {
    /// The state of the engine checks.
    pub(super) fn engine_state(&self) -> EngineState {
        self.engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Fails when a check found the engine wrong; checks first when that has not been possible
    /// yet (started while Vault was down). With a `deadline`, the check ends by then.
    pub(super) fn engine_gate(&self, deadline: Option<Instant>) -> Result<(), Error> {
        match self.engine_state() {
            EngineState::Verified | EngineState::Unverified => Ok(()),
            EngineState::Wrong(why) => Err(Error::Failed(why)),
            EngineState::Unchecked => match self.check_engine(When::Due, deadline)? {
                EngineState::Wrong(why) => Err(Error::Failed(why)),
                _ => Ok(()),
            },
        }
    }

    /// Runs the checks of the module docs, records and logs the result, and returns it. An
    /// error means Vault could not be asked (the state stays as it was). A check `When::Asked`
    /// (reload) logs its outcome even when it did not change; one at start-up leaves an error to
    /// the caller, which stops start-up with it. The first check, and every one asked for, also
    /// checks the policy's capabilities.
    pub(super) fn check_engine(
        &self,
        when: When,
        deadline: Option<Instant>,
    ) -> Result<EngineState, Error> {
        let _one_at_a_time =
            super::auth::lock_until(&self.engine_check, deadline).ok_or_else(|| {
                Error::unreachable(
                    UnreachableReason::Timeout,
                    "vault: the check of the K/V engine did not finish in time",
                )
            })?;
        let before = self.engine_state();
        if when == When::Due && !matches!(before, EngineState::Unchecked | EngineState::Wrong(_)) {
            return Ok(before); // Checked by another thread meanwhile.
        }
        let outcome = self.run_engine_checks(deadline)?;
        let after = outcome.state;
        // A request may have recorded the same error meanwhile (and logged it).
        let current = std::mem::replace(
            &mut *self.engine.lock().unwrap_or_else(|e| e.into_inner()),
            after.clone(),
        );
        if current != after || when == When::Asked {
            match &after {
                EngineState::Wrong(_) if when == When::Startup => {}
                EngineState::Wrong(why) => log::error!("{why}; {WRONG_EFFECT}"),
                EngineState::Verified | EngineState::Unverified => {
                    if let Some(warning) = &outcome.warning {
                        log::warn!("{warning}");
                    }
                    if matches!(current, EngineState::Wrong(_)) {
                        log::info!("{}; key operations resume", outcome.note);
                    } else {
                        log::info!("{}", outcome.note);
                    }
                }
                EngineState::Unchecked => {}
            }
        }
        if (when != When::Due || before == EngineState::Unchecked)
            && !self.kv.is_v2()
            && !matches!(after, EngineState::Wrong(_))
        {
            self.check_capabilities(deadline);
        }
        Ok(after)
    }

    /// The mount check and the probe read.
    fn run_engine_checks(&self, deadline: Option<Instant>) -> Result<Outcome, Error> {
        let engine = self.kv.engine();
        let mount_url = format!(
            "/v1/sys/internal/ui/mounts/{}",
            engine
                .split('/')
                .map(|s| encode_segment(s).into_owned())
                .collect::<Vec<_>>()
                .join("/")
        );
        let reply =
            self.call(Request::new(Method::Get, &mount_url, NodeChoice::Any).deadline(deadline))?;
        let mount = match reply.status {
            200 => judge_mount(&engine, self.kv.is_v2(), &reply.body),
            status => Mount::Unknown(
                format!("GET {mount_url} answered {status} {}", reply.errors())
                    .trim_end()
                    .to_string(),
            ),
        };
        let wrong = |why| Outcome {
            state: EngineState::Wrong(why),
            note: String::new(),
            warning: None,
        };
        if let Mount::Wrong(why) = mount {
            return Ok(wrong(why));
        }

        let probe_url = self.kv.secret_url(PROBE);
        let reply =
            self.call(Request::new(Method::Get, &probe_url, NodeChoice::Any).deadline(deadline))?;
        if let Some(why) = self.mismatch_text(&reply, "GET", &probe_url) {
            return Ok(wrong(why));
        }
        let read_denied = (reply.status == 403).then(|| {
            format!(
                "reading '{}'{} is denied (403): the Vault policy needs the 'read' capability on '{}'",
                self.kv.policy_path(Op::Read, PROBE),
                self.in_namespace(),
                self.kv.policy_glob(Op::Read)
            )
        });
        let version = if self.kv.is_v2() { 2 } else { 1 };
        Ok(match mount {
            Mount::Matches { path, version } => Outcome {
                state: EngineState::Verified,
                note: format!(
                    "vault: the K/V engine mounted at '{path}/'{} is version {version}, as configured",
                    self.in_namespace()
                ),
                warning: read_denied.map(|why| format!("vault: {why}")),
            },
            Mount::Unknown(why) => Outcome {
                state: EngineState::Unverified,
                note: format!(
                    "vault: the K/V engine '{engine}'{} is not verified; used as K/V v{version}",
                    self.in_namespace()
                ),
                warning: Some(format!(
                    "vault: cannot check the K/V engine '{engine}'{} ({why}{}): make sure that keystore.vault.engine names the mount and that keystore.vault.version (v{version}) is its version; a mismatch makes Vault answer key requests with 403 or 404",
                    self.in_namespace(),
                    read_denied.map(|d| format!("; {d}")).unwrap_or_default(),
                )),
            },
            Mount::Wrong(_) => unreachable!("returned above"),
        })
    }

    /// K/V v1: warns when the token may `update` key paths (see the module docs).
    fn check_capabilities(&self, deadline: Option<Instant>) {
        let path = self.kv.policy_path(Op::Create, PROBE);
        let body = serde_json::json!({ "paths": [path] }).to_string();
        const URL: &str = "/v1/sys/capabilities-self";
        let reply = match self.call(
            Request::new(Method::Post, URL, NodeChoice::Any)
                .body(body.as_bytes())
                .deadline(deadline),
        ) {
            Ok(reply) if reply.status == 200 => reply,
            Ok(reply) => {
                log::info!(
                    "vault: cannot check the policy's capabilities on '{path}': POST {URL} answered {} {}",
                    reply.status,
                    reply.errors()
                );
                return;
            }
            Err(err) => {
                log::info!("vault: cannot check the policy's capabilities on '{path}': {err}");
                return;
            }
        };
        let caps = capabilities(&reply.body, &path);
        if caps.iter().any(|c| c == "update" || c == "root") {
            log::warn!(
                "vault: the Vault policy grants '{}' on '{path}'{} (capabilities: {}): with K/V v1, Vault then lets a create write over an existing key, so two KES servers creating the same key at the same moment can both succeed and one key can replace the other after a client started to use it. Grant create, read, delete and list only: path \"{}\" {{ capabilities = [\"create\", \"read\", \"delete\", \"list\"] }} (README, \"Using Vault\"), or use K/V v2",
                if caps.iter().any(|c| c == "root") {
                    "root"
                } else {
                    "update"
                },
                self.in_namespace(),
                caps.join(", "),
                self.kv.policy_glob(Op::Create)
            );
        }
    }

    /// An answer to a key request that shows the engine does not match the configuration (see
    /// the module docs): records it (logged once) and returns the error text.
    pub(super) fn mismatch_in(&self, reply: &Reply, method: &str, url: &str) -> Option<String> {
        let why = self.mismatch_text(reply, method, url)?;
        let mut state = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if *state != EngineState::Wrong(why.clone()) {
            log::error!("{why}; {WRONG_EFFECT}");
            *state = EngineState::Wrong(why.clone());
        }
        Some(why)
    }

    /// The text of [`Inner::mismatch_in`], without recording it.
    fn mismatch_text(&self, reply: &Reply, method: &str, url: &str) -> Option<String> {
        if reply.status != 404 {
            return None;
        }
        let path = super::client::strip_query(url);
        let engine = self.kv.engine();
        if reply.warnings().contains(VERSIONED_PATH) {
            Some(if self.kv.is_v2() {
                format!(
                    "vault: {method} {path}{} answered 404 '{VERSIONED_PATH}': keystore.vault.engine '{engine}' and prefix do not form a K/V v2 path (engine must name the mount itself)",
                    self.in_namespace()
                )
            } else {
                format!(
                    "vault: keystore.vault.version is v1, but the K/V engine at '{engine}'{} is version 2 ({method} {path} answered 404 '{VERSIONED_PATH}'): set version: v2",
                    self.in_namespace()
                )
            })
        } else if reply.errors().contains(NO_HANDLER) {
            Some(format!(
                "vault: no secrets engine is mounted at '{engine}'{} ({method} {path} answered 404 '{}'): check keystore.vault.engine{}",
                self.in_namespace(),
                reply.errors(),
                if self.namespace.is_some() {
                    " and keystore.vault.namespace"
                } else {
                    ""
                }
            ))
        } else {
            None
        }
    }

    /// The hint for a 403 that the policy explains unless the engine is not what it seems.
    pub(super) fn denied_hint(&self) -> &'static str {
        match self.engine_state() {
            EngineState::Verified => "",
            _ => {
                "; if the policy does grant it, check keystore.vault.engine and keystore.vault.version: a K/V v1/v2 mismatch also causes this"
            }
        }
    }
}

/// The capabilities of `path` in a `sys/capabilities-self` answer (`data.<path>`, or the
/// top-level `<path>` or `capabilities` of older servers).
fn capabilities(body: &[u8], path: &str) -> Vec<String> {
    let reply: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    [
        &reply["data"][path],
        &reply[path],
        &reply["data"]["capabilities"],
        &reply["capabilities"],
    ]
    .into_iter()
    .find_map(Value::as_array)
    .map(|caps| {
        caps.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, path: &str, version: Option<&str>) -> Vec<u8> {
        let options = match version {
            Some(v) => serde_json::json!({ "version": v }),
            None => Value::Null,
        };
        serde_json::json!({"data": {"type": kind, "path": path, "options": options}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn mounts_are_judged() {
        let ok = |engine, v2, body: &[u8]| {
            matches!(judge_mount(engine, v2, body), Mount::Matches { .. })
        };
        assert!(ok("kv", false, &mount("kv", "kv/", Some("1"))));
        assert!(ok("kv", false, &mount("kv", "kv/", None)));
        assert!(ok("secret", false, &mount("generic", "secret/", None)));
        assert!(ok("kv", true, &mount("kv", "kv/", Some("2"))));
        assert!(ok("/kv/", true, &mount("kv", "kv/", Some("2"))));
        // v1 may live anywhere below the mount.
        assert!(ok(
            "secrets/kes",
            false,
            &mount("kv", "secrets/", Some("1"))
        ));

        let wrong = |engine, v2, body: &[u8]| match judge_mount(engine, v2, body) {
            Mount::Wrong(why) => why,
            other => panic!("{other:?}"),
        };
        let why = wrong("kv", true, &mount("kv", "kv/", Some("1")));
        assert!(
            why.contains("version is v2, but the K/V engine mounted at 'kv/' is version 1"),
            "{why}"
        );
        assert!(why.contains("set version: v1"), "{why}");
        let why = wrong("kv", false, &mount("kv", "kv/", Some("2")));
        assert!(
            why.contains("version is v1, but the K/V engine mounted at 'kv/' is version 2"),
            "{why}"
        );
        let why = wrong("secrets/kes", true, &mount("kv", "secrets/", Some("2")));
        assert!(
            why.contains("engine: secrets, and the rest, 'kes', in prefix"),
            "{why}"
        );

        assert!(matches!(
            judge_mount("transit", false, &mount("transit", "transit/", None)),
            Mount::Unknown(_)
        ));
        assert!(matches!(
            judge_mount("kv", false, &mount("kv", "kv/", Some("3"))),
            Mount::Unknown(_)
        ));
        assert!(matches!(
            judge_mount("kv", false, b"<html>"),
            Mount::Unknown(_)
        ));
    }

    #[test]
    fn capabilities_are_read() {
        let body = br#"{"kv/x":["create","update"],"capabilities":["create","update"],"data":{"kv/x":["create","update"]}}"#;
        assert_eq!(capabilities(body, "kv/x"), vec!["create", "update"]);
        assert_eq!(
            capabilities(br#"{"capabilities":["root"]}"#, "kv/x"),
            vec!["root"]
        );
        assert!(capabilities(b"{}", "kv/x").is_empty());
    }
}
