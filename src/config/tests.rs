//! Tests of the whole loader: both layouts, defaults, substitution, and the error messages.
//!
//! The environment is passed to [`parse_with`] as a function, so tests never change the process
//! environment (which would race between tests running in parallel).

use super::*;
use std::env::VarError;

const ADMIN: &str = "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22";
const MINIO: &str = "f0b5a8d4b3c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6";

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Result<String, VarError> + use<> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or(VarError::NotPresent)
    }
}

fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, Error> {
    parse_with(text, None, env_of(vars))
}

fn ok(text: &str) -> Config {
    parse_env(text, &[]).unwrap_or_else(|e| panic!("unexpected error: {e}\n--- config ---\n{text}"))
}

fn fail(text: &str) -> Error {
    match parse_env(text, &[]) {
        Ok(c) => panic!("expected an error, got {c:?}\n--- config ---\n{text}"),
        Err(e) => e,
    }
}

/// The 1-based number of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("'{needle}' not in config"))
        + 1
}

/// Asserts that `text` fails with a message containing `message`, on the line containing `at`.
fn assert_fails_at(text: &str, at: &str, message: &str) {
    let e = fail(text);
    assert!(
        e.message().contains(message),
        "message {:?} does not contain {message:?}",
        e.message()
    );
    assert_eq!(e.line(), Some(line_of(text, at)), "wrong line for {e}");
    assert_eq!(
        e.to_string(),
        format!("config: line {}: {}", line_of(text, at), e.message())
    );
}

/// The unknown-field warnings of a valid `text`.
fn warnings(text: &str) -> Vec<Warning> {
    match parse_with_warnings(text, None, env_of(&[])) {
        Ok((_, w)) => w,
        Err(e) => panic!("unexpected error: {e}\n--- config ---\n{text}"),
    }
}

/// Asserts that `text` loads with exactly one warning, containing `message`, on the line
/// containing `at`.
#[track_caller]
fn assert_warns_at(text: &str, at: &str, message: &str) {
    let w = warnings(text);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].message().contains(message),
        "warning {:?} does not contain {message:?}",
        w[0].message()
    );
    assert_eq!(w[0].line(), line_of(text, at), "wrong line for {}", w[0]);
    assert_eq!(
        w[0].to_string(),
        format!("config: line {}: {}", line_of(text, at), w[0].message())
    );
}

/// Asserts that `text` fails with exactly `message`, not tied to a line.
fn assert_fails(text: &str, message: &str) {
    let e = fail(text);
    assert_eq!(e.message(), message);
    assert_eq!(e.line(), None);
    assert_eq!(e.to_string(), format!("config: {message}"));
}

const HEAD: &str =
    "admin:\n  identity: admin-id\ntls:\n  key: ./server.key\n  cert: ./server.cert\n";
const FS: &str = "keystore:\n  fs:\n    path: ./keys\n";

/// A minimal valid file (fs keystore) followed by `extra`.
fn with_fs(extra: &str) -> String {
    format!("{HEAD}{FS}{extra}")
}

/// A minimal valid file whose Vault section is `vault` (indented under `keystore.vault`).
fn with_vault(vault: &str) -> String {
    let body: String = vault.lines().map(|l| format!("    {l}\n")).collect();
    format!("{HEAD}keystore:\n  vault:\n{body}")
}

const APPROLE: &str =
    "endpoint: https://vault:8200\napprole:\n  id: role-id\n  secret: secret-id\n";

fn vault_of(config: &Config) -> &VaultConfig {
    match &config.keystore {
        KeystoreConfig::Vault(v) => v,
        other => panic!("not a Vault keystore: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Whole files
// ---------------------------------------------------------------------------------------------

#[test]
fn full_current_config() {
    let text = r#"
version: v1
address: 127.0.0.1:7373
admin:
  identity: 3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22
tls:
  key: /etc/kes/server.key
  cert: /etc/kes/server.cert
  password: s3cret
  auth: on
  ca: /etc/kes/ca.pem
policy:
  minio:
    allow:
    - /v1/key/create/*
    - /v1/key/generate/*
    deny:
    - /v1/key/generate/internal-*
    identities:
    - f0b5a8d4b3c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6
  auditor:
    allow: [/v1/log/audit]
    identities: [auditor-1, auditor-2]
  empty:
cache:
  expiry:
    any: 10m
    unused: 1m
    offline: 1h
api:
  /v1/ready:
    skip_auth: true
    timeout: 15s
  /v1/status:
    timeout: 0s
log:
  error: WARN
  audit: on
keys:
- name: minio-default-key
- name: other_key
keystore:
  vault:
    endpoint:
    - https://vault-1:8200
    - https://vault-2:8200/
    engine: secrets
    version: v2
    namespace: tenant1
    prefix: my-minio
    transit:
      key: kes-wrap
    approle:
      namespace: /
      engine: approle-kes
      id: role-id
      secret: secret-id
      retry: 3s
    tls:
      key: ./vault.key
      cert: ./vault.cert
      ca: ./vault-ca.pem
    status:
      ping: 30s
    timeout:
      connect: 2s
      response: 20s
      read: 800ms
server:
  max_connections: 64
  max_connections_per_address: 16
  workers: 8
  http2: off
  handshake_timeout: 3s
  header_timeout: 4s
  body_timeout: 6s
  idle_timeout: 1m
  shutdown_timeout: 2s
"#;
    let c = ok(text);
    assert_eq!(c.address, Some("127.0.0.1:7373".parse().unwrap()));
    assert_eq!(c.admin, ADMIN);
    assert_eq!(c.tls.key, PathBuf::from("/etc/kes/server.key"));
    assert_eq!(c.tls.cert, PathBuf::from("/etc/kes/server.cert"));
    assert_eq!(c.tls.password.as_deref(), Some("s3cret"));
    assert!(c.tls.verify_client_certs);
    assert_eq!(c.tls.ca, Some(PathBuf::from("/etc/kes/ca.pem")));

    assert_eq!(
        c.policies.keys().collect::<Vec<_>>(),
        ["auditor", "empty", "minio"]
    );
    assert_eq!(
        c.policies["minio"],
        PolicyConfig {
            allow: vec!["/v1/key/create/*".into(), "/v1/key/generate/*".into()],
            deny: vec!["/v1/key/generate/internal-*".into()],
            identities: vec![MINIO.into()],
        }
    );
    assert_eq!(c.policies["auditor"].identities, ["auditor-1", "auditor-2"]);
    assert_eq!(c.policies["auditor"].allow, ["/v1/log/audit"]);
    assert_eq!(c.policies["empty"], PolicyConfig::default());

    assert_eq!(
        c.cache,
        CacheConfig {
            any: Some(Duration::from_secs(600)),
            unused: Some(Duration::from_secs(60)),
            offline: Some(Duration::from_secs(3600)),
        }
    );
    assert_eq!(c.api.len(), 2);
    assert_eq!(
        c.api["/v1/ready"],
        ApiConfig {
            skip_auth: true,
            timeout: Some(Duration::from_secs(15))
        }
    );
    assert_eq!(
        c.api["/v1/status"],
        ApiConfig {
            skip_auth: false,
            timeout: None
        }
    );
    assert_eq!(
        c.log,
        LogConfig {
            error: Some(log::LevelFilter::Warn),
            audit: true,
            format: LogFormat::Text,
            audit_unknown_rate: 100,
        }
    );
    assert_eq!(c.keys, ["minio-default-key", "other_key"]);

    let v = vault_of(&c);
    assert_eq!(
        v.endpoints,
        ["https://vault-1:8200", "https://vault-2:8200"]
    );
    assert_eq!(v.engine, "secrets");
    assert!(v.kv_v2);
    assert_eq!(v.namespace, "tenant1");
    assert_eq!(v.prefix, "my-minio");
    let transit = v.transit.as_ref().unwrap();
    assert_eq!(
        (transit.engine.as_str(), transit.key.as_str()),
        ("transit", "kes-wrap")
    );
    let approle = v.approle.as_ref().unwrap();
    assert_eq!(approle.namespace, "/");
    assert_eq!(approle.engine, "approle-kes");
    assert_eq!(approle.id, "role-id");
    assert_eq!(approle.secret, "secret-id");
    assert_eq!(approle.retry, Duration::from_secs(3));
    assert!(v.kubernetes.is_none());
    assert_eq!(v.tls.key, Some(PathBuf::from("./vault.key")));
    assert_eq!(v.tls.cert, Some(PathBuf::from("./vault.cert")));
    assert_eq!(v.tls.ca, Some(PathBuf::from("./vault-ca.pem")));
    assert_eq!(v.ping, Duration::from_secs(30));
    assert_eq!(v.connect_timeout, Duration::from_secs(2));
    assert_eq!(v.response_timeout, Duration::from_secs(20));
    assert_eq!(v.read_timeout, Duration::from_millis(800));

    assert_eq!(
        c.limits,
        Limits {
            max_connections: 64,
            max_connections_per_address: 16,
            workers: 8,
            http2: false,
            handshake_timeout: Duration::from_secs(3),
            header_timeout: Duration::from_secs(4),
            body_timeout: Duration::from_secs(6),
            idle_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(2),
        }
    );

    // Secrets stay out of Debug output.
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains("secret-id"),
        "{debug}"
    );
}

/// The older layout of the seed procedure: `root`, `policy.<name>.paths`, a Vault keystore with
/// AppRole, K/V v1, a prefix, a CA and a status ping, with `${VAR}` references.
#[test]
fn older_seed_procedure_config() {
    let text = r#"
address: 0.0.0.0:7373
root: ${KES_ROOT_IDENTITY}   # the admin
tls:
  key: ./kes-server.key
  cert: ./kes-server.cert
policy:
  minio:
    paths:
    - /v1/key/create/*
    - /v1/key/generate/*
    - /v1/key/decrypt/*
    identities:
    - ${MINIO_IDENTITY}
cache:
  expiry:
    any: 5m0s
    unused: 20s
log:
  error: on
  audit: off
keystore:
  vault:
    endpoint: https://127.0.0.1:8200
    engine: kv
    version: v1
    prefix: my-minio
    approle:
      id: "${VAULT_ROLE_ID}"
      secret: '${VAULT_SECRET_ID}'
      retry: 15s
    tls:
      ca: ./vault-ca.pem
    status:
      ping: 10s
"#;
    let c = parse_env(
        text,
        &[
            ("KES_ROOT_IDENTITY", ADMIN),
            ("MINIO_IDENTITY", MINIO),
            ("VAULT_ROLE_ID", "8f3c-role"),
            ("VAULT_SECRET_ID", "a \"secret\" # with: yaml chars"),
        ],
    )
    .unwrap();
    assert_eq!(c.admin, ADMIN);
    assert_eq!(c.address, Some("0.0.0.0:7373".parse().unwrap()));
    assert_eq!(c.tls.key, PathBuf::from("./kes-server.key"));
    assert!(!c.tls.verify_client_certs);
    let minio = &c.policies["minio"];
    assert_eq!(
        minio.allow,
        [
            "/v1/key/create/*",
            "/v1/key/generate/*",
            "/v1/key/decrypt/*"
        ]
    );
    assert!(minio.deny.is_empty());
    assert_eq!(minio.identities, [MINIO]);
    assert_eq!(c.cache.any, Some(Duration::from_secs(300)));
    assert_eq!(c.cache.unused, Some(Duration::from_secs(20)));
    assert_eq!(c.cache.offline, None);
    assert_eq!(
        c.log,
        LogConfig {
            error: Some(log::LevelFilter::Info),
            audit: false,
            format: LogFormat::Text,
            audit_unknown_rate: 100,
        }
    );
    let v = vault_of(&c);
    assert_eq!(v.endpoints, ["https://127.0.0.1:8200"]);
    assert_eq!(
        (v.engine.as_str(), v.kv_v2, v.prefix.as_str()),
        ("kv", false, "my-minio")
    );
    let approle = v.approle.as_ref().unwrap();
    assert_eq!(approle.id, "8f3c-role");
    assert_eq!(approle.secret, "a \"secret\" # with: yaml chars");
    assert_eq!(approle.retry, Duration::from_secs(15));
    assert_eq!(approle.engine, "approle");
    assert_eq!(v.tls.ca, Some(PathBuf::from("./vault-ca.pem")));
    assert_eq!(v.ping, Duration::from_secs(10));
}

/// v0.13: the keystore sits under `keys:`.
#[test]
fn oldest_schema_keys_holds_the_keystore() {
    let text = "root: disabled\ntls:\n  key: k\n  cert: c\nkeys:\n  fs:\n    path: /var/kes/keys\n";
    let c = ok(text);
    assert_eq!(c.admin, "disabled");
    assert!(c.keys.is_empty());
    assert!(
        matches!(&c.keystore, KeystoreConfig::Fs { path } if path == Path::new("/var/kes/keys"))
    );

    let vault = "root: r\ntls:\n  key: k\n  cert: c\nkeys:\n  vault:\n    endpoint: http://v:8200\n    approle:\n      id: i\n      secret: s\n";
    assert_eq!(vault_of(&ok(vault)).endpoints, ["http://v:8200"]);

    assert_fails(
        &format!("{HEAD}{FS}keys:\n  fs:\n    path: ./other\n"),
        "'keys' holds a keystore (the oldest schema) and 'keystore' is set too: keep only 'keystore'",
    );
    let unsupported = "root: r\ntls:\n  key: k\n  cert: c\nkeys:\n  gemalto:\n    keysecure:\n      endpoint: x\n";
    assert_fails_at(
        unsupported,
        "keysecure",
        "keystore 'gemalto.keysecure' is not supported by this server (supported: fs, vault)",
    );
}

#[test]
fn the_example_file_parses() {
    let text = include_str!("../../kes.yaml.example");
    let (c, warnings) = parse_with_warnings(
        text,
        None,
        env_of(&[
            ("KES_ADMIN_IDENTITY", ADMIN),
            ("MINIO_IDENTITY", MINIO),
            ("VAULT_APPROLE_ID", "role-id"),
            ("VAULT_APPROLE_SECRET", "secret-id"),
        ]),
    )
    .unwrap_or_else(|e| panic!("kes.yaml.example: {e}"));
    // `kes server --check` passes it: no field is unknown.
    assert_eq!(warnings, []);
    assert_eq!(c.admin, ADMIN);
    assert_eq!(c.policies["minio"].identities, [MINIO]);
    assert_eq!(c.keys, ["minio-default-key"]);
    let v = vault_of(&c);
    assert_eq!(v.prefix, "my-minio");
    assert_eq!(v.approle.as_ref().unwrap().secret, "secret-id");
    assert_eq!(v.tls.ca, Some(PathBuf::from("./vault-ca.pem")));
    // The example states the defaults: it must agree with them.
    assert_eq!(c.cache, CacheConfig::default());
    assert_eq!(c.log, LogConfig::default());
    assert_eq!(c.limits, Limits::default());
    assert_eq!(v.ping, Duration::from_secs(10));
    assert_eq!(
        (v.connect_timeout, v.response_timeout, v.read_timeout),
        (
            Duration::from_secs(5),
            Duration::from_secs(10),
            Duration::from_millis(1500)
        )
    );

    // Every variable it references is required.
    let e = parse_env(text, &[("KES_ADMIN_IDENTITY", ADMIN)]).unwrap_err();
    assert!(
        e.message()
            .contains("environment variable 'MINIO_IDENTITY' is not set"),
        "{e}"
    );
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("kes-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(&good, with_fs("")).unwrap();
    assert_eq!(load(&good).unwrap().admin, "admin-id");

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, with_fs("adress: 1\n")).unwrap();
    let (_, w) = load_with_warnings(&bad).unwrap();
    assert_eq!(
        w[0].to_string(),
        format!(
            "{}: line 9: unknown field 'adress': did you mean 'address'?",
            bad.display()
        )
    );
    std::fs::write(&bad, with_fs("cache:\n  expiry:\n    any: 5\n")).unwrap();
    let e = load(&bad).unwrap_err();
    assert_eq!(e.file(), Some(bad.as_path()));
    assert!(
        e.to_string().starts_with(&format!(
            "{}: line 11: cache.expiry.any: invalid duration '5'",
            bad.display()
        )),
        "{e}"
    );

    let missing = dir.join("missing.yaml");
    let e = load(&missing).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot read the config file: ",
            missing.display()
        )),
        "{e}"
    );
    assert!(std::error::Error::source(&e).is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------------------

#[test]
fn defaults_of_a_minimal_file() {
    let c = ok(&with_fs(""));
    assert_eq!(c.address, None);
    assert_eq!(c.admin, "admin-id");
    assert_eq!(c.tls.password, None);
    assert!(!c.tls.verify_client_certs);
    assert_eq!(c.tls.ca, None);
    assert!(c.policies.is_empty());
    assert_eq!(
        c.cache,
        CacheConfig {
            any: Some(Duration::from_secs(300)),
            unused: Some(Duration::from_secs(30)),
            offline: None
        }
    );
    assert!(c.api.is_empty());
    assert_eq!(
        c.log,
        LogConfig {
            error: Some(log::LevelFilter::Info),
            audit: false,
            format: LogFormat::Text,
            audit_unknown_rate: 100,
        }
    );
    assert!(c.keys.is_empty());
    assert!(matches!(&c.keystore, KeystoreConfig::Fs { path } if path == Path::new("./keys")));
    assert_eq!(
        c.limits,
        Limits {
            max_connections: 4096,
            max_connections_per_address: 1024,
            workers: 64,
            http2: true,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            shutdown_timeout: Duration::from_secs(5),
        }
    );

    // Empty sections are the same as absent ones.
    let c = ok(&with_fs(
        "version:\naddress: ''\npolicy:\ncache:\napi:\nlog:\nkeys:\nserver:\n",
    ));
    assert_eq!(c.address, None);
    assert_eq!(c.cache, CacheConfig::default());
    assert_eq!(c.log, LogConfig::default());
    assert_eq!(c.limits, Limits::default());
    let c = ok(&with_fs(
        "cache:\n  expiry:\nlog:\n  error:\n  audit: ''\nserver:\n  max_connections: 8\n",
    ));
    assert_eq!(c.cache, CacheConfig::default());
    assert_eq!(c.log, LogConfig::default());
    assert_eq!(
        c.limits,
        Limits {
            max_connections: 8,
            ..Limits::default()
        }
    );
}

#[test]
fn vault_defaults() {
    let v = ok(&with_vault(APPROLE)).keystore;
    let KeystoreConfig::Vault(v) = v else {
        panic!()
    };
    assert_eq!(v.endpoints, ["https://vault:8200"]);
    assert_eq!(v.engine, "kv");
    assert!(!v.kv_v2);
    assert_eq!(v.namespace, "");
    assert_eq!(v.prefix, "");
    assert!(v.transit.is_none());
    let a = v.approle.as_ref().unwrap();
    assert_eq!(
        (a.engine.as_str(), a.namespace.as_str(), a.retry),
        ("approle", "", Duration::from_secs(5))
    );
    assert!(v.kubernetes.is_none());
    assert_eq!(
        (v.tls.key.as_ref(), v.tls.cert.as_ref(), v.tls.ca.as_ref()),
        (None, None, None)
    );
    assert_eq!(v.ping, Duration::from_secs(10));
    assert_eq!(v.connect_timeout, Duration::from_secs(5));
    assert_eq!(v.response_timeout, Duration::from_secs(10));
    assert_eq!(v.read_timeout, Duration::from_millis(1500));

    let c = ok(&with_vault(&format!(
        "{APPROLE}transit:\n  key: wrap\nstatus:\n  ping: 0s\n"
    )));
    let v = vault_of(&c);
    assert_eq!(
        v.transit.as_ref().map(|t| t.engine.as_str()),
        Some("transit")
    );
    assert_eq!(v.ping, Duration::from_secs(10), "0 means the default");

    let c = ok(&with_vault(
        "endpoint: http://v\nversion: v2\nkubernetes:\n  role: kes\n  jwt: eyJhbGciOi.eyJzdWIi.c2ln\n",
    ));
    let v = vault_of(&c);
    assert!(v.kv_v2);
    let k = v.kubernetes.as_ref().unwrap();
    assert_eq!(
        (k.engine.as_str(), k.role.as_str(), k.retry),
        ("kubernetes", "kes", Duration::from_secs(5))
    );
    assert_eq!(k.jwt, "eyJhbGciOi.eyJzdWIi.c2ln");
    assert!(!format!("{c:?}").contains("eyJhbGciOi"));
}

#[test]
fn empty_login_sections_count_as_absent() {
    // The Go sample config lists both login methods, one of them with empty values.
    let text = format!(
        "{APPROLE}kubernetes:\n  namespace: \"\"\n  engine: \"\"\n  role: \"\"\n  jwt: \"\"\n  retry: 15s\n"
    );
    let c = ok(&with_vault(&text));
    assert!(vault_of(&c).approle.is_some());
    assert!(vault_of(&c).kubernetes.is_none());
}

#[test]
fn cache_expiry_settings() {
    let expiry = |body: &str| ok(&with_fs(&format!("cache:\n  expiry:\n{body}"))).cache;
    // A configured `any` is kept even when `unused` is not set (the Go server overwrites it).
    assert_eq!(
        expiry("    any: 1m\n"),
        CacheConfig {
            any: Some(Duration::from_secs(60)),
            unused: Some(Duration::from_secs(30)),
            offline: None
        }
    );
    // 0 disables an expiry.
    assert_eq!(
        expiry("    any: 0\n    unused: 0s\n    offline: 0s\n"),
        CacheConfig {
            any: None,
            unused: None,
            offline: None
        }
    );
    assert_eq!(
        expiry("    unused: 1m30s\n    offline: 2h\n"),
        CacheConfig {
            any: Some(Duration::from_secs(300)),
            unused: Some(Duration::from_secs(90)),
            offline: Some(Duration::from_secs(7200)),
        }
    );
}

#[test]
fn log_levels() {
    use log::LevelFilter::{Debug, Error as Err, Info, Warn};
    let cases: &[(&str, Option<log::LevelFilter>, bool)] = &[
        ("on", Some(Info), true),
        ("ON", Some(Info), true),
        ("off", None, false),
        ("Off", None, false),
        ("\"\"", Some(Info), false), // empty: error log INFO; audit keeps its default (off)
        ("DEBUG", Some(Debug), true),
        ("debug", Some(Debug), true),
        ("info", Some(Info), true),
        ("WARN", Some(Warn), false),
        ("ERROR", Some(Err), false),
        ("error", Some(Err), false),
        ("INFO+2", Some(Warn), false),
        ("WARN-4", Some(Info), true),
        ("warn-5", Some(Info), true),
        ("ERROR+1", None, false),
        ("DEBUG-4", Some(Debug), true),
        ("-4", Some(Debug), true),
        ("-8", Some(Debug), true),
        ("0", Some(Info), true),
        ("1", Some(Warn), false),
        ("4", Some(Warn), false),
        ("8", Some(Err), false),
        ("9", None, false),
        ("ERROR+2147483647", None, false),
        ("DEBUG-2147483648", Some(Debug), true),
        ("true", Some(Info), true),
        ("false", None, false),
    ];
    for (text, error, audit) in cases {
        let c = ok(&with_fs(&format!(
            "log:\n  error: {text}\n  audit: {text}\n"
        )));
        assert_eq!(
            c.log,
            LogConfig {
                error: *error,
                audit: *audit,
                format: LogFormat::Text,
                audit_unknown_rate: 100,
            },
            "{text}"
        );
    }
    for bad in ["verbose", "INFO+", "INFO+x", "TRACE", "on+1", "1.5"] {
        let text = with_fs(&format!("log:\n  error: {bad}\n"));
        assert_fails_at(
            &text,
            "error:",
            &format!("log.error: invalid log level '{bad}': expected on, off, DEBUG"),
        );
        let text = with_fs(&format!("log:\n  audit: {bad}\n"));
        assert_fails_at(
            &text,
            "audit:",
            &format!("log.audit: invalid log level '{bad}'"),
        );
    }
}

#[test]
fn log_format() {
    assert_eq!(ok(&with_fs("")).log.format, LogFormat::Text);
    for (text, format) in [
        ("text", LogFormat::Text),
        ("TEXT", LogFormat::Text),
        ("json", LogFormat::Json),
        ("Json", LogFormat::Json),
        ("''", LogFormat::Text),
    ] {
        let c = ok(&with_fs(&format!("log:\n  format: {text}\n")));
        assert_eq!(c.log.format, format, "{text}");
    }
    assert_eq!(ok(&with_fs("")).log.audit_unknown_rate, 100);
    let c = ok(&with_fs("log:\n  audit_unknown_rate: 0\n"));
    assert_eq!(c.log.audit_unknown_rate, 0);
    assert_eq!(
        ok(&with_fs("log:\n  audit_unknown_rate: 5000\n"))
            .log
            .audit_unknown_rate,
        5000
    );
    assert_fails(
        &with_fs("log:\n  format: logfmt\n"),
        "invalid log.format 'logfmt': use 'text' (the Go server's format, the default) or 'json'",
    );
}

#[test]
fn tls_auth_values() {
    let auth = |v: &str| {
        let text = format!("admin:\n  identity: a\ntls:\n  key: k\n  cert: c\n  auth: {v}\n{FS}");
        parse_env(&text, &[]).map(|c| c.tls.verify_client_certs)
    };
    for (v, want) in [
        ("on", true),
        ("ON", true),
        ("true", true),
        ("off", false),
        ("''", false),
        ("false", false),
    ] {
        assert_eq!(auth(v).unwrap(), want, "{v}");
    }
    let e = auth("verify").unwrap_err();
    assert_eq!(
        e.to_string(),
        "config: line 6: tls.auth: invalid value 'verify': expected 'on' or 'off'"
    );
}

#[test]
fn addresses() {
    let addr = |v: &str| parse_env(&with_fs(&format!("address: {v}\n")), &[]).map(|c| c.address);
    assert_eq!(
        addr("0.0.0.0:7373").unwrap(),
        Some("0.0.0.0:7373".parse().unwrap())
    );
    assert_eq!(
        addr("'[::1]:7000'").unwrap(),
        Some("[::1]:7000".parse().unwrap())
    );
    assert_eq!(
        addr("':7373'").unwrap(),
        Some("0.0.0.0:7373".parse().unwrap())
    );
    assert_eq!(
        addr("localhost:7373").unwrap().map(|a| a.port()),
        Some(7373)
    );
    for bad in ["7373", "0.0.0.0", "0.0.0.0:http", "host:99999", "':x'"] {
        let e = addr(bad).unwrap_err();
        assert!(
            e.message().starts_with("address: invalid address"),
            "{bad}: {e}"
        );
        assert_eq!(e.line(), Some(9));
    }
}

// ---------------------------------------------------------------------------------------------
// ${VAR} substitution
// ---------------------------------------------------------------------------------------------

#[test]
fn substitution_of_values_and_list_items() {
    let text = "admin:\n  identity: ${T1_ADMIN}\ntls:\n  key: \"${T1_KEY}\"  # quoted\n  cert: ' ${T1_CERT} '\n\
                policy:\n  p:\n    identities:\n    - ${T1_ID}\n    - \"${T1_ID2}\"\n\
                keys:\n  - name: ${T1_NAME}\n\
                keystore:\n  fs:\n    path: ${T1_PATH} # comment\n\
                server:\n  max_connections: ${T1_MAX}\napi:\n  /v1/ready:\n    skip_auth: ${T1_SKIP}\n";
    let c = parse_env(
        text,
        &[
            ("T1_ADMIN", "admin-x"),
            ("T1_KEY", "/k with space.key"),
            ("T1_CERT", "c#not-a-comment.cert"),
            ("T1_ID", "id-1"),
            ("T1_ID2", "id-2"),
            ("T1_NAME", "my-key"),
            ("T1_PATH", "/data/keys: all"),
            ("T1_MAX", "12"),
            ("T1_SKIP", "true"),
        ],
    )
    .unwrap();
    assert_eq!(c.admin, "admin-x");
    assert_eq!(c.tls.key, PathBuf::from("/k with space.key"));
    assert_eq!(c.tls.cert, PathBuf::from("c#not-a-comment.cert"));
    assert_eq!(c.policies["p"].identities, ["id-1", "id-2"]);
    assert_eq!(c.keys, ["my-key"]);
    assert!(
        matches!(&c.keystore, KeystoreConfig::Fs { path } if path == Path::new("/data/keys: all"))
    );
    assert_eq!(c.limits.max_connections, 12);
    assert!(c.api["/v1/ready"].skip_auth);
}

#[test]
fn substitution_from_the_process_environment() {
    // Uses a variable the test process has anyway instead of changing the environment.
    let Ok(value) = std::env::var("PATH") else {
        return;
    };
    let c = parse(&format!("{HEAD}keystore:\n  fs:\n    path: ${{PATH}}\n")).unwrap();
    assert!(matches!(&c.keystore, KeystoreConfig::Fs { path } if *path == Path::new(&value)));
    let e = parse(&format!(
        "{HEAD}{FS}address: ${{KES_TEST_SURELY_UNSET_8d1c2b}}\n"
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "config: line 9: environment variable 'KES_TEST_SURELY_UNSET_8d1c2b' is not set"
    );
}

#[test]
fn unset_variable_names_variable_and_line() {
    let text = with_fs("keys:\n  - name: a\n  - name: ${T2_UNSET_KEY}\n");
    let e = parse_env(&text, &[]).unwrap_err();
    assert_eq!(e.line(), Some(line_of(&text, "T2_UNSET_KEY")));
    assert_eq!(
        e.to_string(),
        "config: line 11: environment variable 'T2_UNSET_KEY' is not set"
    );
}

#[test]
fn partial_references_are_left_alone() {
    let text = format!("{HEAD}keystore:\n  fs:\n    path: ./keys-${{T3_X}}\nkeys: [{{name: k}}]\n");
    let c = parse_env(&text, &[("T3_X", "no")]).unwrap();
    assert!(
        matches!(&c.keystore, KeystoreConfig::Fs { path } if path == Path::new("./keys-${T3_X}"))
    );
    // Inside a flow collection only a whole quoted item is replaced (as by the Go server):
    // a partial one stays, and is then a bad identity.
    let text = with_fs("policy:\n  p:\n    identities: [\"${T3_ID}\", 'id-${T3_ID}']\n");
    let e = parse_env(&text, &[("T3_ID", "abc")]).unwrap_err();
    assert!(
        e.message()
            .contains("identity 'id-${T3_ID}' is empty, too long or contains invalid characters"),
        "{e}"
    );
}

#[test]
fn quoted_references_in_flow_collections_are_replaced() {
    let text = with_fs(
        "policy:\n  p:\n    identities: [\"${T6_A}\", '${T6_B}']\n  q: {identities: [ \"${T6_C}\" ]}\n",
    );
    let c = parse_env(&text, &[("T6_A", "a1"), ("T6_B", "b1"), ("T6_C", "c1")]).unwrap();
    assert_eq!(c.policies["p"].identities, ["a1", "b1"]);
    assert_eq!(c.policies["q"].identities, ["c1"]);
    let e = parse_env(&text, &[("T6_A", "a1"), ("T6_B", "b1")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "config: line 12: environment variable 'T6_C' is not set"
    );
    // Unquoted, the `{` of `${` opens a flow mapping: refused (so does the Go server), with
    // the hint.
    let text = with_fs("policy:\n  p:\n    identities: [ ${T6_A}, b ]\n");
    let e = parse_env(&text, &[("T6_A", "a")]).unwrap_err();
    assert!(e.message().ends_with(env::NOT_REPLACED_HINT), "{e}");
}

#[test]
fn unreplaced_references_get_a_hint() {
    let text = with_fs("keys: [{name: ${T5_KEY}}]\n");
    let e = parse_env(&text, &[("T5_KEY", "k")]).unwrap_err();
    assert_eq!(e.line(), Some(9));
    assert!(e.message().ends_with(env::NOT_REPLACED_HINT), "{e}");
}

#[test]
fn substituted_values_never_appear_in_errors() {
    let secret = "hunter2-very-secret";
    for (text, var) in [
        (
            with_fs("server:\n  max_connections: ${T4_SECRET}\n"),
            "T4_SECRET",
        ),
        (
            with_fs("cache:\n  expiry:\n    any: ${T4_SECRET}\n"),
            "T4_SECRET",
        ),
        (with_fs("log:\n  audit: \"${T4_SECRET}\"\n"), "T4_SECRET"),
        (
            with_fs("api:\n  /v1/ready:\n    skip_auth: ${T4_SECRET}\n"),
            "T4_SECRET",
        ),
        (
            with_fs("policy:\n  p:\n    identities:\n    - ${T4_SECRET}\n    - ${T4_SECRET2}\n"),
            "T4_SECRET2",
        ),
    ] {
        let vars = [("T4_SECRET", secret), ("T4_SECRET2", "hunter2 very secret")];
        let e = parse_env(&text, &vars).expect_err(&text);
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(var), "{shown}");
        assert_eq!(e.line(), Some(line_of(&text, var)));
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_fields_are_warnings_with_line_and_suggestion() {
    let text = with_fs("adress: 0.0.0.0:7373\n");
    // Ignored: the default address stays.
    assert_eq!(ok(&text).address, None);
    let w = warnings(&text);
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].to_string(),
        "config: line 9: unknown field 'adress': did you mean 'address'?"
    );
    assert_warns_at(
        &with_fs("tls2: x\n"),
        "tls2",
        "unknown field 'tls2': did you mean 'tls'?",
    );
    let text = "admin:\n  identity: a\ntls:\n  key: k\n  cert: c\n  kye: k\nkeystore:\n  fs:\n    path: p\n";
    assert_warns_at(
        text,
        "kye",
        "unknown field 'kye' in 'tls': did you mean 'key'?",
    );
    assert_warns_at(
        &with_fs("policy:\n  p:\n    alow: []\n"),
        "alow",
        "unknown field 'alow' in 'policy.p': did you mean 'allow'?",
    );
    assert_warns_at(
        &with_fs("cache:\n  expiry:\n    unusd: 1s\n"),
        "unusd",
        "unknown field 'unusd' in 'cache.expiry': did you mean 'unused'?",
    );
    assert_warns_at(
        &with_fs("api:\n  /v1/ready:\n    skip: true\n"),
        "skip",
        "unknown field 'skip' in 'api./v1/ready' (known fields: skip_auth, timeout)",
    );
    assert_warns_at(
        &with_fs("server:\n  threads: 4\n"),
        "threads",
        "unknown field 'threads' in 'server' (known fields: max_connections,",
    );
    assert_warns_at(
        &with_fs("keys:\n- name: a\n  size: 32\n"),
        "size",
        "unknown field 'size' in 'keys[]' (known fields: name)",
    );
    assert_warns_at(
        &with_vault(&format!("{APPROLE}  role: x\n")),
        "role: x",
        "unknown field 'role' in 'keystore.vault.approle'",
    );
    // The field is ignored, so the required 'endpoint' is missing: the error names both.
    let e = fail(&with_vault(
        "endpoints: [https://vault:8200]\napprole:\n  id: role-id\n  secret: secret-id\n",
    ));
    assert!(
        e.message().starts_with("keystore.vault: 'endpoint' is required")
            && e.message().contains(
                "ignored: line 8: unknown field 'endpoints' in 'keystore.vault': did you mean 'endpoint'?"
            ),
        "{e}"
    );
    // Several, in file order.
    let w = warnings(&with_fs("a1: 1\nlog:\n  eror: off\n  audit: on\nb2: 2\n"));
    let lines: Vec<usize> = w.iter().map(Warning::line).collect();
    assert_eq!(lines, [9, 11, 13]);
    // Older-schema and extension fields are known.
    assert!(warnings(&with_fs("server:\n  workers: 4\n")).is_empty());
}

#[test]
fn keys_defined_twice_are_errors_naming_both_lines() {
    let text = format!("{}admin:\n  identity: x\n", with_fs(""));
    let e = fail(&text);
    assert_eq!(
        e.to_string(),
        "config: line 9: 'admin' is defined twice (first at line 1)"
    );
    let text = "admin:\n  identity: a\ntls:\n  key: k\n  cert: c\n  cert: d\nkeystore:\n  fs:\n    path: p\n";
    assert_eq!(
        fail(text).to_string(),
        "config: line 6: 'cert' is defined twice in 'tls' (first at line 5)"
    );
    // Also fields this server does not know, as with the Go server's YAML decoder.
    let e = fail(&with_fs("bogus: 1\nbogus: 2\n"));
    assert_eq!(
        e.to_string(),
        "config: line 10: 'bogus' is defined twice (first at line 9)"
    );
}

#[test]
fn yaml_syntax_errors_have_a_line() {
    let text = with_fs("policy:\n  p:\n    allow: [a\n");
    let e = fail(&text);
    assert_eq!(e.line(), Some(12), "{e}");
    assert_eq!(
        e.message(),
        "did not find expected ',' or ']', while parsing a flow sequence at line 11"
    );
    let e = fail("version: v1: x\n");
    assert_eq!(
        e.to_string(),
        "config: line 1: mapping values are not allowed in this context"
    );
}

#[test]
fn admin_identity_errors() {
    let tail = "tls:\n  key: k\n  cert: c\nkeystore:\n  fs:\n    path: p\n";
    let no_admin = "no admin identity: set 'admin.identity' (an identity, or 'disabled' to turn admin access off)";
    assert_fails(tail, no_admin);
    assert_fails(&format!("admin:\n{tail}"), no_admin);
    assert_fails(&format!("admin:\n  identity: ''\n{tail}"), no_admin);
    assert_fails(&format!("admin:\n  identity: '  '\n{tail}"), no_admin);
    assert_fails(&format!("root: ''\n{tail}"), no_admin);
    assert_fails(
        &format!("root: a\nadmin:\n  identity: a\n{tail}"),
        "both 'root' (older schema) and 'admin' are set: keep only 'admin.identity'",
    );
    assert_fails(
        &with_fs("policy:\n  p:\n    identities: [x, admin-id]\n"),
        "cannot assign policy 'p' to 'admin-id': it is the admin identity (admin.identity), which needs no policy",
    );
    // The unknown field is ignored, so there is no admin; the error says why.
    let e = fail(&format!("admin:\n  name: x\n{tail}"));
    assert_eq!(
        e.message(),
        format!(
            "{no_admin} (the file has fields this server does not know, which were ignored: \
             line 2: unknown field 'name' in 'admin' (known fields: identity))"
        )
    );
}

#[test]
fn policy_errors() {
    let text = with_fs(
        "policy:\n  a:\n    identities: [id-1]\n  b:\n    allow: []\n    identities:\n    - id-2\n    - id-1\n",
    );
    let e = fail(&text);
    assert_eq!(
        e.message(),
        "cannot assign policy 'b' to 'id-1': identity already has a policy"
    );
    assert_eq!(e.line(), Some(line_of(&text, "- id-1")));

    for bad in [
        "-p",
        "p-",
        "_",
        "a b",
        "p.q",
        "'x/y'",
        "''",
        &"p".repeat(81),
    ] {
        let text = with_fs(&format!("policy:\n  {bad}:\n    allow: []\n"));
        let shown = bad.trim_matches('\'');
        assert_fails_at(
            &text,
            &format!("{bad}:"),
            &format!("policy name '{shown}' is empty, too long or contains invalid characters"),
        );
    }
    ok(&with_fs(&format!(
        "policy:\n  {}:\n  _a-b_:\n  A9:\n",
        "p".repeat(80)
    )));

    assert_fails_at(
        &with_fs("policy:\n  p:\n    identities:\n    - ok-id\n    - ''\n"),
        "- ''",
        "identity '' is empty, too long or contains invalid characters",
    );
    assert_fails_at(
        &with_fs("policy:\n  p:\n    identities:\n    - 'bad id'\n"),
        "bad id",
        "identity 'bad id' is empty, too long or contains invalid characters",
    );
    assert_fails_at(
        &with_fs("policy:\n  p:\n    paths: [/v1/status]\n    allow: [/v1/status]\n"),
        "paths:",
        "policy.p: 'paths' (older schema) and 'allow' are both set: move the paths under 'allow'",
    );
    let e = fail(&with_fs("policy:\n  p:\n  q:\n  p:\n"));
    assert_eq!(
        (e.line(), e.message()),
        (
            Some(12),
            "'p' is defined twice in 'policy' (first at line 10)"
        )
    );
    let text = with_fs("policy:\n  p:\n    allow: [a]\n    allow: [b]\n");
    assert_eq!(
        fail(&text).message(),
        "'allow' is defined twice in 'policy.p' (first at line 11)"
    );
    assert_fails_at(
        &with_fs("policy:\n  p:\n    identities: id\n"),
        "identities: id",
        "expected a list of identities",
    );
    // The same identity twice in one policy is harmless.
    assert_eq!(
        ok(&with_fs("policy:\n  p:\n    identities: [a, a]\n")).policies["p"].identities,
        ["a"]
    );
}

#[test]
fn key_list_errors() {
    let text = with_fs("keys:\n- name: a\n- name: b\n- name: a # again\n");
    assert_fails_at(&text, "again", "key 'a' is listed twice in 'keys'");
    for bad in ["-k", "k-", "_", "k/k", "k.k", "''"] {
        let text = with_fs(&format!("keys:\n- name: {bad}\n"));
        let shown = bad.trim_matches('\'');
        assert_fails_at(
            &text,
            &format!("name: {bad}"),
            &format!("key name '{shown}' is empty, too long or contains invalid characters"),
        );
    }
    assert_fails_at(
        &with_fs("keys:\n- size: 1\n"),
        "size",
        "keys[0]: missing 'name' of the key (the file has fields this server does not know, \
         which were ignored: line 10: unknown field 'size' in 'keys[]' (known fields: name))",
    );
    assert_fails_at(
        &with_fs("keys:\n- {}\n"),
        "{}",
        "keys[0]: missing 'name' of the key",
    );
    assert_fails_at(
        &with_fs("keys:\n- my-key\n"),
        "my-key",
        "expected a key entry such as {name: my-key}",
    );
}

#[test]
fn required_sections() {
    let tail = "admin:\n  identity: a\n";
    assert_fails(
        &format!("{tail}{FS}"),
        "no 'tls' section: 'tls.key' and 'tls.cert' (the server's private key and certificate) are required",
    );
    assert_fails_at(
        &format!("{tail}tls:\n  cert: c\n{FS}"),
        "cert: c",
        "tls: 'key' is required: the path of the server's private key (PEM)",
    );
    assert_fails_at(
        &format!("{tail}tls:\n  key: k\n  cert: ''\n{FS}"),
        "key: k",
        "tls: 'cert' is required: the path of the server's certificate (PEM)",
    );
    assert_fails(
        HEAD,
        "no keystore: set exactly one of 'keystore.fs' or 'keystore.vault'",
    );
    assert_fails_at(
        &format!("{HEAD}keystore: {{}}\n"),
        "keystore:",
        "keystore: no keystore: set exactly one of fs or vault",
    );
    assert_fails_at(
        &format!("{HEAD}keystore:\n  fs:\n    path:\n"),
        "path:",
        "keystore.fs: 'path' is required",
    );
    assert_fails_at(
        &format!("{HEAD}keystore:\n  fs: {{}}\n"),
        "fs:",
        "keystore.fs: 'path' is required",
    );
}

#[test]
fn keystore_errors() {
    for (store, shown) in [
        (
            "aws:\n    secretsmanager:\n      region: us-east-1\n",
            "aws.secretsmanager",
        ),
        ("gcp:\n    secretmanager: {}\n", "gcp.secretmanager"),
        (
            "azure:\n    keyvault:\n      endpoint: x\n",
            "azure.keyvault",
        ),
        ("gemalto:\n    keysecure: {}\n", "gemalto.keysecure"),
        ("fortanix:\n    sdkms: {}\n", "fortanix.sdkms"),
        ("entrust:\n    keycontrol: {}\n", "entrust.keycontrol"),
        ("kes:\n", "kes"),
        ("generic:\n    endpoint: x\n", "generic.endpoint"),
    ] {
        let text = format!("{HEAD}keystore:\n  {store}");
        let e = fail(&text);
        assert_eq!(
            e.message(),
            format!("keystore '{shown}' is not supported by this server (supported: fs, vault)"),
            "{text}"
        );
        assert!(e.line().is_some());
    }
    assert_fails_at(
        &format!("{HEAD}keystore:\n  hashicorp:\n    endpoint: x\n"),
        "hashicorp",
        "unknown keystore 'hashicorp' (supported: fs, vault)",
    );
    assert_fails_at(
        &format!("{HEAD}keystore:\n  fs:\n    path: p\n  vault:\n    endpoint: x\n"),
        "vault:",
        "more than one keystore: 'fs' and 'vault'; configure exactly one",
    );
    let text = format!("{HEAD}keystore:\n  fs:\n    path: p\n  fs:\n    path: q\n");
    let e = fail(&text);
    assert_eq!(
        (e.line(), e.message()),
        (
            Some(9),
            "'fs' is defined twice in 'keystore' (first at line 7)"
        )
    );
}

#[test]
fn vault_errors() {
    let at = |body: &str, line: &str, message: &str| {
        let text = with_vault(body);
        assert_fails_at(&text, line, message);
    };
    at(
        "approle:\n  id: i\n  secret: s\n",
        "approle:",
        "keystore.vault: 'endpoint' is required: the Vault URL",
    );
    at(
        "endpoint: []\napprole:\n  id: i\n  secret: s\n",
        "endpoint",
        "keystore.vault: 'endpoint' is required",
    );
    at(
        "endpoint: vault:8200\n",
        "endpoint",
        "keystore.vault.endpoint: invalid Vault endpoint 'vault:8200': expected an http:// or https:// URL",
    );
    at(
        "endpoint:\n- https://a:8200\n- ftp://b\n",
        "ftp://",
        "keystore.vault.endpoint[1]: invalid Vault endpoint 'ftp://b'",
    );
    at(
        "endpoint: 'https://'\n",
        "endpoint",
        "invalid Vault endpoint 'https://'",
    );
    at(
        &format!("{APPROLE}version: v3\n"),
        "v3",
        "keystore.vault.version: invalid K/V version 'v3': expected v1 or v2",
    );
    at(
        &format!("{APPROLE}version: 2\n"),
        "version",
        "invalid K/V version '2'",
    );
    at(
        "endpoint: http://v\n",
        "endpoint",
        "keystore.vault: no login method: configure 'approle' (id, secret) or 'kubernetes' (role, jwt)",
    );
    at(
        "endpoint: http://v\napprole:\n  id: ''\n",
        "endpoint",
        "no login method",
    );
    at(
        &format!("{APPROLE}kubernetes:\n  role: r\n  jwt: j\n"),
        "endpoint",
        "keystore.vault: both 'approle' and 'kubernetes' are configured: use exactly one way to log in",
    );
    at(
        "endpoint: http://v\napprole:\n  id: i\n",
        "id: i",
        "keystore.vault.approle: 'secret' is required: the AppRole secret ID",
    );
    at(
        "endpoint: http://v\napprole:\n  secret: s\n",
        "secret: s",
        "keystore.vault.approle: 'id' is required: the AppRole role ID",
    );
    at(
        "endpoint: http://v\nkubernetes:\n  jwt: j\n",
        "jwt: j",
        "keystore.vault.kubernetes: 'role' is required",
    );
    at(
        "endpoint: http://v\nkubernetes:\n  role: r\n",
        "role: r",
        "keystore.vault.kubernetes: 'jwt' is required",
    );
    at(
        "endpoint: http://v\nkubernetes:\n  role: r\n  jwt: /nonexistent/kes-test/token\n",
        "role: r",
        "keystore.vault.kubernetes: cannot read the JWT file '/nonexistent/kes-test/token': ",
    );
    at(
        &format!("{APPROLE}transit:\n  engine: t\n"),
        "engine: t",
        "keystore.vault.transit: 'key' is required",
    );
    at(
        &format!("{APPROLE}tls:\n  key: k\n"),
        "key: k",
        "keystore.vault.tls: 'key' and 'cert' (the client certificate for Vault) go together: set both or neither",
    );
    at(
        &format!("{APPROLE}tls:\n  cert: c\n"),
        "cert: c",
        "go together",
    );
    at(
        &format!("{APPROLE}timeout:\n  connect: 0s\n"),
        "connect",
        "keystore.vault.timeout.connect: invalid duration '0s': must be greater than 0",
    );
    at(
        &format!("{APPROLE}status:\n  ping: 10\n"),
        "ping",
        "keystore.vault.status.ping: invalid duration '10': a number needs a unit, e.g. '10s'",
    );
    let e = fail(&with_vault(&format!("{APPROLE}approle:\n  id: x\n")));
    assert!(
        e.message()
            .starts_with("'approle' is defined twice in 'keystore.vault' (first at line "),
        "{e}"
    );
}

#[test]
fn kubernetes_jwt_file_must_be_readable() {
    let file = std::env::temp_dir().join(format!("kes-config-jwt-{}", std::process::id()));
    std::fs::write(&file, "eyJ.eyJ.sig").unwrap();
    let c = ok(&with_vault(&format!(
        "endpoint: http://v\nkubernetes:\n  role: r\n  jwt: {}\n",
        file.display()
    )));
    assert_eq!(
        vault_of(&c).kubernetes.as_ref().unwrap().jwt,
        file.display().to_string()
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn duration_errors() {
    let cases = [
        (
            "cache:\n  expiry:\n    any: 5\n",
            "cache.expiry.any: invalid duration '5': a number needs a unit, e.g. '5s' (Go duration syntax: 300ms, 30s, 5m0s, 1h30m)",
        ),
        (
            "cache:\n  expiry:\n    unused: 1.5\n",
            "cache.expiry.unused: invalid duration '1.5': a number needs a unit, e.g. '1.5s'",
        ),
        (
            "cache:\n  expiry:\n    offline: -1s\n",
            "cache.expiry.offline: invalid duration '-1s': must not be negative",
        ),
        (
            "cache:\n  expiry:\n    any: 5 minutes\n",
            "invalid duration '5 minutes'",
        ),
        (
            "cache:\n  expiry:\n    any: 1d\n",
            "invalid duration '1d': unknown unit 'd'",
        ),
        (
            "cache:\n  expiry:\n    any: [1s]\n",
            "cache.expiry.any: invalid type: sequence, expected a duration such as 30s or 5m0s",
        ),
        (
            "api:\n  /v1/ready:\n    timeout: -5s\n",
            "api./v1/ready.timeout: invalid duration '-5s': must not be negative",
        ),
        (
            "server:\n  idle_timeout: 0s\n",
            "server.idle_timeout: invalid duration '0s': must be greater than 0",
        ),
        (
            "server:\n  header_timeout: 0\n",
            "server.header_timeout: invalid duration '0': must be greater than 0",
        ),
        (
            "server:\n  body_timeout: 30\n",
            "server.body_timeout: invalid duration '30': a number needs a unit",
        ),
    ];
    for (extra, message) in cases {
        let text = with_fs(extra);
        let last = extra.lines().last().unwrap();
        assert_fails_at(&text, last, message);
    }
    let e = fail(&with_vault(&format!("{APPROLE}  retry: 5\n")));
    assert!(
        e.message()
            .contains("keystore.vault.approle.retry: invalid duration '5'"),
        "{e}"
    );
}

#[test]
fn server_and_api_errors() {
    for bad in ["0", "-1", "many", "1.5", "''"] {
        let text = with_fs(&format!("server:\n  max_connections: {bad}\n"));
        let shown = bad.trim_matches('\'');
        assert_fails_at(
            &text,
            "max_connections",
            &format!(
                "server.max_connections: invalid value '{shown}': expected a whole number of at least 1"
            ),
        );
    }
    assert_fails_at(
        &with_fs("api:\n  v1/ready:\n    skip_auth: true\n"),
        "v1/ready",
        "invalid API path 'v1/ready' in 'api': it must start with '/', e.g. /v1/ready",
    );
    assert_fails_at(
        &with_fs("api:\n  /v1/ready:\n  /v1/ready :\n"),
        "/v1/ready :",
        "'/v1/ready' is defined twice in 'api' (first at line 10)",
    );
    assert_fails_at(
        &with_fs("api:\n  /v1/ready:\n    skip_auth: maybe\n"),
        "maybe",
        "api./v1/ready.skip_auth: invalid value 'maybe': expected true or false",
    );
    let c = ok(&with_fs(
        "api:\n  /v1/ready:\n  /v1/status:\n    skip_auth: on\n",
    ));
    assert_eq!(c.api["/v1/ready"], ApiConfig::default());
    assert!(c.api["/v1/status"].skip_auth);
}

#[test]
fn version_field() {
    ok(&with_fs("version: v1\n"));
    assert_fails_at(
        &with_fs("version: v2\n"),
        "version",
        "version: unsupported config version 'v2': only 'v1' is supported",
    );
    assert_fails_at(
        &with_fs("version: 1\n"),
        "version",
        "unsupported config version '1'",
    );
}

#[test]
fn tls_fields_and_proxy() {
    let c = ok(
        "admin:\n  identity: a\ntls:\n  key: k\n  cert: c\n  password: ''\n  ca: ''\n  proxy:\n    identities: [p]\n    header:\n      cert: X-Tls-Client-Cert\nkeystore:\n  fs:\n    path: p\n",
    );
    assert_eq!(c.tls.password, None);
    assert_eq!(c.tls.ca, None);
    // The password is a secret: taken as written, and never in Debug output.
    let c = ok(
        "admin:\n  identity: a\ntls:\n  key: k\n  cert: c\n  password: ' pw '\nkeystore:\n  fs:\n    path: p\n",
    );
    assert_eq!(c.tls.password.as_deref(), Some(" pw "));
    assert!(!format!("{:?}", c.tls).contains("pw"));
    assert_warns_at(
        "admin:\n  identity: a\ntls:\n  key: k\n  cert: c\n  proxy:\n    identity: [x]\nkeystore:\n  fs:\n    path: p\n",
        "identity: [x]",
        "unknown field 'identity' in 'tls.proxy' (known fields: identities, header)",
    );
}

#[test]
fn name_rule() {
    use super::schema::is_valid_name;
    for good in [
        "a",
        "A-b_c",
        "_a",
        "a_",
        "0",
        "my-key-1",
        "__",
        &"x".repeat(80),
    ] {
        assert!(is_valid_name(good), "{good}");
    }
    for bad in [
        "",
        "_",
        "-a",
        "a-",
        "-",
        "a b",
        "a/b",
        "a.b",
        "ä",
        "a*",
        &"x".repeat(81),
    ] {
        assert!(!is_valid_name(bad), "{bad}");
    }
}

#[test]
fn error_accessors_and_display() {
    let e = fail(&with_fs("address: x\n"));
    assert_eq!(e.file(), None);
    assert_eq!(e.line(), Some(9));
    assert!(
        e.message().starts_with("address: invalid address 'x'"),
        "{e}"
    );
    let e = e.in_file(Some(Path::new("/etc/kes/config.yml")));
    assert!(
        e.to_string()
            .starts_with("/etc/kes/config.yml: line 9: address: invalid address 'x'"),
        "{e}"
    );
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let c = ok(&format!("\u{feff}{}", with_fs("")));
    assert_eq!(c.admin, "admin-id");
}

/// Damaged files give errors, never panics: every truncation, every deleted line and every
/// deleted or doubled character of the example.
#[test]
fn damaged_files_never_panic() {
    let text = include_str!("../../kes.yaml.example");
    let vars = [
        ("KES_ADMIN_IDENTITY", ADMIN),
        ("MINIO_IDENTITY", MINIO),
        ("VAULT_APPROLE_ID", "role-id"),
        ("VAULT_APPROLE_SECRET", "secret-id"),
    ];
    let lookup = env_of(&vars);
    let lines: Vec<&str> = text.lines().collect();
    for i in 0..lines.len() {
        let _ = parse_with(&lines[..i].join("\n"), None, &lookup);
        let without: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, l)| *l)
            .collect();
        let _ = parse_with(&without.join("\n"), None, &lookup);
    }
    // Only the part with content (comments make most of the file), without the address, whose
    // mutations would be host names to resolve.
    let body: String = lines
        .iter()
        .filter(|l| !l.trim_start().starts_with('#') && !l.starts_with("address:"))
        .map(|l| format!("{l}\n"))
        .collect();
    for (i, c) in body.char_indices() {
        let mut cut = body.clone();
        cut.remove(i);
        let _ = parse_with(&cut, None, &lookup);
        let mut doubled = body.clone();
        doubled.insert(i, c);
        let _ = parse_with(&doubled, None, &lookup);
    }
}

/// Found by the config fuzz target (fuzz/regressions/config/env-value-*): a `${NAME}` line that
/// continues the plain scalar of the line above was replaced, and the decoder's error quoted the
/// folded scalar with the value in it: whole (values from other lines were only scrubbed from 16
/// bytes on), or cut at a ` #` in the value, which no scrubbing can recognise.
#[test]
fn value_folded_into_a_scalar_of_another_line_is_not_shown() {
    let folded = include_str!("../../fuzz/regressions/config/env-value-in-folded-scalar");
    let cut = include_str!("../../fuzz/regressions/config/env-value-cut-by-comment");
    let list_item = "admin: x\n  - ${A}\ntls:\n  key: k\n  cert: c\n";
    // The first two are no YAML document (the error says why, quoting nothing); the third is a
    // mapping whose `admin` is the folded scalar `x - "…"`.
    for (text, var) in [(folded, None), (cut, None), (list_item, Some("A"))] {
        for secret in [
            "S3CRET-plain",
            "hunter2!",
            "S3CRET \"quoted\" 'single' # not a comment: x",
        ] {
            let e = parse_env(text, &[("A", secret), ("B", secret), ("C", secret)])
                .expect_err("not a config");
            let message = e.to_string();
            assert!(
                !message.contains("S3CRET") && !message.contains("hunter"),
                "{e}"
            );
            if let Some(var) = var {
                assert!(
                    message.contains(&format!("line 2: ${{{var}}} is not replaced")),
                    "{e}"
                );
            }
        }
    }
    // Values in their places are still replaced, whatever they contain.
    let c = parse_env(
        &with_fs("policy:\n  p:\n    allow:\n    - ${A}\n    - /v1/x\n"),
        &[("A", "a \"b\" # c: d\n- e")],
    )
    .unwrap();
    assert_eq!(c.policies["p"].allow, ["a \"b\" # c: d\n- e", "/v1/x"]);
}

/// Found by the config fuzz target (fuzz/regressions/config/env-value-with-both-quotes): the
/// decoder quotes a string with Rust's `Debug` (`\"` but a bare `'`), the scrubbing compared the
/// raw value and `escape_debug` (`\"` and `\'`) only, so a value with both quotes was shown.
#[test]
fn value_with_both_kinds_of_quote_is_not_shown() {
    let text = include_str!("../../fuzz/regressions/config/env-value-with-both-quotes");
    for secret in [
        "S3CRET \"quoted\" 'single' # not a comment: x",
        "a`b'c\"d\\e\tf\u{7f}g",
    ] {
        let e = parse_env(text, &[("B", secret)]).expect_err("a string is no config");
        let message = e.to_string();
        assert!(
            !message.contains("S3CRET") && !message.contains("c\\\"d"),
            "{e}"
        );
        assert!(message.contains("${B}") || message.contains("'B'"), "{e}");
    }
}

#[test]
fn key_versions_destroy_after() {
    assert_eq!(
        ok(&with_fs("")).key_versions.destroy_after,
        Duration::from_secs(7 * 24 * 3600),
        "default 7 days"
    );
    assert_eq!(
        ok(&with_fs("key_versions:\n  destroy_after: 48h\n"))
            .key_versions
            .destroy_after,
        Duration::from_secs(48 * 3600)
    );
    assert_eq!(
        ok(&with_fs("key_versions:\n")).key_versions,
        crate::config::KeyVersionsConfig::default()
    );
    assert_fails(
        &with_fs("key_versions:\n  destroy_after: 1h\n"),
        "key_versions.destroy_after is 1h0m0s: it must be at least 24h (a retired version must \
         outlive every node's cache of the key by far)",
    );
    assert!(
        warnings(&with_fs("key_versions:\n  destroy_afterr: 48h\n"))
            .iter()
            .any(|w| w.to_string().contains("destroy_afterr")),
        "unknown fields are warned as elsewhere"
    );
}
