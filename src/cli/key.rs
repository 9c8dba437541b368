//! `kes key …` and `kes ls`: manage the keys of a server and use them (§2.3).
//!
//! Binary values (ciphertexts, contexts, data keys) are base64 on the command line and in the
//! output, as in the Go `kes` command. When standard output is not a terminal, each command
//! prints what the Go command prints ([`gotext`]): `key ls` a `Key` header and the names,
//! `key info` four labelled lines, `dek`/`encrypt`/`decrypt` their JSON; commands without a reply
//! (create, import, rm) print nothing and report through their exit code. `--json` prints the
//! Go command's JSON shapes (a list is an array of names).
//!
//! Plaintexts and data keys pass through this module on their way to standard output: they are
//! held in zeroizing buffers and never appear in an error message.

use crate::cli::client::{Client, ClientOpts, path_segment};
use crate::cli::output::{Output, Style, sanitize};
use crate::cli::{Error, gotext, print_error};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use serde_json::Value;
use std::io::Read as _;
use ureq::http::Method;
use zeroize::Zeroizing;

const CREATE_ABOUT: &str = "\
Create new keys on the server.

Each key is 32 random bytes (AES256, or ChaCha20 on CPUs without AES acceleration) generated
by the server and stored in its keystore; it never leaves the server. A key that exists
already is never replaced: that name fails with 'key already exists' and the other names are
still created.";

const IMPORT_ABOUT: &str = "\
Import a key: store the given 32 bytes as a new key.

The key is base64. Give it as an argument, or (better: it stays out of your shell history and
the process list) on standard input, without argument or as '-'. An existing key is never
replaced.";

const ENCRYPT_ABOUT: &str = "\
Encrypt a short message with a key and print the ciphertext (base64).

The message is taken as text; '-' reads it from standard input. An optional context (base64)
is bound to the ciphertext: decrypting needs the same context.";

const DECRYPT_ABOUT: &str = "\
Decrypt a ciphertext (base64) with a key and print the plaintext (base64).

Give the context (base64) the ciphertext was made with, if any.";

const DEK_ABOUT: &str = "\
Generate a data encryption key (DEK) and print it twice: in plain (base64) to encrypt data
with, and encrypted with the key (the ciphertext to store next to the data).

'kes key decrypt KEY CIPHERTEXT [CONTEXT]' turns the ciphertext back into the plaintext. This
is what MinIO does for every object; use it to check that a key works end to end.";

const ROTATE_ABOUT: &str = "\
Rotate a key: add a new version, made by the server, that generate and encrypt use from now on.

Data encrypted with earlier versions still decrypts: every version stays until it is retired and
destroyed on purpose (kes key retire, kes key destroy). Other servers sharing the keystore use
the new version within 60 seconds. Prints the new version's number.";

const RETIRE_ABOUT: &str = "\
Retire a key version: decrypts that need it are refused (409 'key version is retired') from now
on. Reversible with 'kes key restore'.

Retire a version only after rotating and re-encrypting the data that used it (MinIO's KMS key
rotation re-wraps object keys with the current version). The current version cannot be retired,
nor one whose successor is younger than 10 minutes.";

const RESTORE_ABOUT: &str = "\
Restore a retired key version: decrypts that need it work again.";

const DESTROY_ABOUT: &str = "\
Destroy a retired key version: its key material is deleted for good, and what it encrypted can
never be decrypted again.

Only a version retired for at least key_versions.destroy_after (7 days by default) can be
destroyed; version 1 goes only with the whole key (kes key rm).";

const KEY_EXAMPLES: &str = "\
Examples:
  kes key create my-key
  kes key info my-key
  kes key rotate my-key
  kes key retire my-key --version 1
  kes key dek my-key
  kes key decrypt my-key <ciphertext>
  kes key ls 'my-*'
  kes key rm my-key";

/// The algorithms `kes key import` accepts (names and aliases of §5.1).
const ALGORITHMS: [&str; 4] = [
    "AES256",
    "ChaCha20",
    "AES256-GCM_SHA256",
    "XCHACHA20-POLY1305",
];

#[derive(Subcommand, Debug)]
#[command(after_help = KEY_EXAMPLES)]
pub enum KeyCommand {
    /// Create new keys.
    #[command(long_about = CREATE_ABOUT, after_help = KEY_EXAMPLES)]
    Create {
        /// Names of the keys to create.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },

    /// Import a key from its 32 bytes (base64).
    #[command(long_about = IMPORT_ABOUT)]
    Import {
        /// Name of the new key.
        name: String,
        /// The key: 32 bytes, base64. '-' or omitted: read from standard input.
        #[arg(value_name = "BASE64_KEY")]
        key: Option<String>,
        /// The key's algorithm.
        #[arg(long, value_name = "ALGORITHM", default_value = "AES256",
              value_parser = clap::builder::PossibleValuesParser::new(ALGORITHMS))]
        algorithm: String,
        #[command(flatten)]
        opts: ClientOpts,
    },

    /// Show a key's algorithm, creation time and creator.
    Info {
        /// The key's name.
        name: String,
        #[command(flatten)]
        opts: ClientOpts,
    },

    /// List keys whose names start with PREFIX (all keys without it).
    Ls {
        /// A name prefix; a trailing '*' is allowed ('my-*').
        #[arg(value_name = "PREFIX")]
        prefix: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },

    /// Delete keys. What they encrypted can no longer be decrypted.
    Rm {
        /// Names of the keys to delete.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },

    /// Encrypt a message with a key.
    #[command(long_about = ENCRYPT_ABOUT)]
    Encrypt {
        /// The key's name.
        name: String,
        /// The message (text), or '-' to read it from standard input.
        message: String,
        /// Context to bind to the ciphertext (base64).
        #[arg(value_name = "BASE64_CONTEXT")]
        context: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },

    /// Decrypt a ciphertext with a key.
    #[command(long_about = DECRYPT_ABOUT)]
    Decrypt {
        /// The key's name.
        name: String,
        /// The ciphertext (base64).
        #[arg(value_name = "BASE64_CIPHERTEXT")]
        ciphertext: String,
        /// The context the ciphertext was made with (base64).
        #[arg(value_name = "BASE64_CONTEXT")]
        context: Option<String>,
        /// The key version that made the ciphertext (what encrypt or dek printed); without it,
        /// the server finds the version itself.
        #[arg(long, value_name = "N")]
        version: Option<u32>,
        #[command(flatten)]
        opts: ClientOpts,
    },

    /// Add a new version to a key (rotation).
    #[command(long_about = ROTATE_ABOUT)]
    Rotate {
        /// The key's name.
        name: String,
        #[command(flatten)]
        opts: ClientOpts,
    },

    /// Retire a key version (step 1 of 2; reversible).
    #[command(long_about = RETIRE_ABOUT)]
    Retire {
        /// The key's name.
        name: String,
        /// The version to retire.
        #[arg(long, value_name = "N")]
        version: u32,
        #[command(flatten)]
        opts: ClientOpts,
    },

    /// Restore a retired key version.
    #[command(long_about = RESTORE_ABOUT)]
    Restore {
        /// The key's name.
        name: String,
        /// The retired version to restore.
        #[arg(long, value_name = "N")]
        version: u32,
        #[command(flatten)]
        opts: ClientOpts,
    },

    /// Destroy a retired key version (step 2 of 2; final).
    #[command(long_about = DESTROY_ABOUT)]
    Destroy {
        /// The key's name.
        name: String,
        /// The retired version to destroy.
        #[arg(long, value_name = "N")]
        version: u32,
        #[command(flatten)]
        opts: ClientOpts,
    },

    /// Generate a data encryption key (plaintext and ciphertext).
    #[command(long_about = DEK_ABOUT)]
    Dek {
        /// The key's name.
        name: String,
        /// Context to bind to the ciphertext (base64).
        #[arg(value_name = "BASE64_CONTEXT")]
        context: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// `kes ls`: keys, or identities (-i) or policies (-p).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  kes ls\n  kes ls 'minio-*'\n  kes ls -p\n  kes ls -i")]
pub struct LsArgs {
    /// List identities instead of keys.
    #[arg(
        short = 'i',
        long = "identity",
        visible_alias = "identities",
        conflicts_with = "policies"
    )]
    pub identities: bool,
    /// List policies instead of keys.
    #[arg(short = 'p', long = "policy", visible_alias = "policies")]
    pub policies: bool,
    /// A name prefix; a trailing '*' is allowed.
    #[arg(value_name = "PREFIX")]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(cmd: KeyCommand) -> Result<(), Error> {
    match cmd {
        KeyCommand::Create { names, opts } => {
            let (client, out) = connect(&opts)?;
            for_each_name(&names, |name| {
                client
                    .call(
                        Method::PUT,
                        &format!("/v1/key/create/{}", path_segment(name)),
                        None,
                    )
                    .map_err(|e| e.context(format!("failed to create key {}", go_quote(name))))?;
                if out.terminal && !out.json {
                    out.print(&format!(
                        "{} key '{name}'\n",
                        out.paint(Style::Green, "Created")
                    ))?;
                }
                Ok(())
            })
        }
        KeyCommand::Import {
            name,
            key,
            algorithm,
            opts,
        } => {
            let key = read_import_key(key.as_deref())?;
            let (client, out) = connect(&opts)?;
            let body = Zeroizing::new(format!(
                "{{\"key\":\"{}\",\"cipher\":\"{algorithm}\"}}",
                Zeroizing::new(STANDARD.encode(&key[..])).as_str()
            ));
            client
                .call(
                    Method::PUT,
                    &format!("/v1/key/import/{}", path_segment(&name)),
                    Some(body.as_bytes()),
                )
                .map_err(|e| e.context(format!("failed to import {}", go_quote(&name))))?;
            if out.terminal && !out.json {
                out.print(&format!(
                    "{} key '{name}'\n",
                    out.paint(Style::Green, "Imported")
                ))?;
            }
            Ok(())
        }
        KeyCommand::Info { name, opts } => {
            let (client, out) = connect(&opts)?;
            let info = client
                .get_json(&format!("/v1/key/describe/{}", path_segment(&name)))
                .map_err(|e| e.context("failed to describe keys"))?;
            if out.json {
                return out.print_json(&KeyInfo::of(&info));
            }
            out.print(&gotext::key_info(&out, &info))
        }
        KeyCommand::Ls { prefix, opts } => list(ListKind::Keys, prefix.as_deref(), &opts),
        KeyCommand::Rm { names, opts } => {
            let (client, out) = connect(&opts)?;
            for_each_name(&names, |name| {
                client
                    .call(
                        Method::DELETE,
                        &format!("/v1/key/delete/{}", path_segment(name)),
                        None,
                    )
                    .map_err(|e| e.context(format!("failed to remove key {}", go_quote(name))))?;
                if out.terminal && !out.json {
                    out.print(&format!(
                        "{} key '{name}'\n",
                        out.paint(Style::Yellow, "Deleted")
                    ))?;
                }
                Ok(())
            })
        }
        KeyCommand::Encrypt {
            name,
            message,
            context,
            opts,
        } => {
            let context = decode_arg("context", context.as_deref())?;
            let message = if message == "-" {
                let mut data = Zeroizing::new(Vec::new());
                std::io::stdin()
                    .take(1 << 20)
                    .read_to_end(&mut data)
                    .map_err(|e| {
                        Error::Failed(format!("cannot read the message from standard input: {e}"))
                    })?;
                data
            } else {
                Zeroizing::new(message.into_bytes())
            };
            let (client, out) = connect(&opts)?;
            let body = crypto_body("plaintext", &message, &context);
            let reply = client
                .call(
                    Method::PUT,
                    &format!("/v1/key/encrypt/{}", path_segment(&name)),
                    Some(body.as_bytes()),
                )
                .map_err(|e| e.context("failed to encrypt message"))?;
            print_fields(&out, &reply, &[("ciphertext", "Ciphertext")])
        }
        KeyCommand::Decrypt {
            name,
            ciphertext,
            context,
            version,
            opts,
        } => {
            let ciphertext = decode_arg("ciphertext", Some(&ciphertext))?;
            let context = decode_arg("context", context.as_deref())?;
            let (client, out) = connect(&opts)?;
            let mut body = crypto_body("ciphertext", &ciphertext, &context);
            if let Some(n) = version {
                body.pop();
                body.push_str(&format!(",\"version\":\"{n}\"}}"));
            }
            let reply = client
                .call(
                    Method::PUT,
                    &format!("/v1/key/decrypt/{}", path_segment(&name)),
                    Some(body.as_bytes()),
                )
                .map_err(|e| e.context("failed to decrypt ciphertext"))?;
            print_fields(&out, &reply, &[("plaintext", "Plaintext")])
        }
        KeyCommand::Rotate { name, opts } => {
            let (client, out) = connect(&opts)?;
            let reply = client
                .call(
                    Method::PUT,
                    &format!("/v1/key/rotate/{}", path_segment(&name)),
                    None,
                )
                .map_err(|e| e.context(format!("failed to rotate key {}", go_quote(&name))))?;
            let version = serde_json::from_slice::<Value>(&reply)
                .ok()
                .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_owned))
                .ok_or_else(|| Error::Failed("the server's reply has no 'version'".into()))?;
            if out.terminal && !out.json {
                return out.print(&format!(
                    "{} key '{name}' to version {}\n",
                    out.paint(Style::Green, "Rotated"),
                    sanitize(&version)
                ));
            }
            out.print_json(&serde_json::json!({ "version": version }))
        }
        KeyCommand::Retire {
            name,
            version,
            opts,
        } => version_step(&name, version, &opts, "retire", "Retired", Style::Yellow),
        KeyCommand::Restore {
            name,
            version,
            opts,
        } => version_step(&name, version, &opts, "restore", "Restored", Style::Green),
        KeyCommand::Destroy {
            name,
            version,
            opts,
        } => version_step(&name, version, &opts, "destroy", "Destroyed", Style::Red),
        KeyCommand::Dek {
            name,
            context,
            opts,
        } => {
            let context = decode_arg("context", context.as_deref())?;
            let (client, out) = connect(&opts)?;
            let body = Zeroizing::new(format!(
                "{{\"context\":\"{}\"}}",
                STANDARD.encode(&context[..])
            ));
            let reply = client
                .call(
                    Method::PUT,
                    &format!("/v1/key/generate/{}", path_segment(&name)),
                    Some(body.as_bytes()),
                )
                .map_err(|e| e.context("failed to derive key"))?;
            print_fields(
                &out,
                &reply,
                &[("plaintext", "Plaintext"), ("ciphertext", "Ciphertext")],
            )
        }
    }
}

pub fn run_ls(args: LsArgs) -> Result<(), Error> {
    let kind = if args.identities {
        ListKind::Identities
    } else if args.policies {
        ListKind::Policies
    } else {
        ListKind::Keys
    };
    list_with(kind, args.prefix.as_deref(), &args.opts, None)
}

/// `kes key retire|restore|destroy NAME --version N`: prints nothing when piped (as the other
/// commands without a reply), a line on a terminal.
fn version_step(
    name: &str,
    version: u32,
    opts: &ClientOpts,
    step: &str,
    done: &str,
    style: Style,
) -> Result<(), Error> {
    let (client, out) = connect(opts)?;
    let body = format!("{{\"version\":\"{version}\"}}");
    client
        .call(
            Method::PUT,
            &format!("/v1/key/{step}/{}", path_segment(name)),
            Some(body.as_bytes()),
        )
        .map_err(|e| {
            e.context(format!(
                "failed to {step} version {version} of key {}",
                go_quote(name)
            ))
        })?;
    if out.terminal && !out.json {
        out.print(&format!(
            "{} version {version} of key '{name}'\n",
            out.paint(style, done)
        ))?;
    }
    Ok(())
}

/// Builds the client and the output mode of a command.
pub fn connect(opts: &ClientOpts) -> Result<(Client, Output), Error> {
    let client = Client::new(opts)?;
    Ok((client, opts.output()))
}

/// A name quoted as the Go command quotes it in messages (`"my-key"`).
pub fn go_quote(name: &str) -> String {
    format!("{name:?}")
}

/// `kes key info --json`: the Go command's fields, in its order, and the algorithm.
#[derive(serde::Serialize)]
struct KeyInfo<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    algorithm: &'a str,
    created_at: &'a str,
    created_by: &'a str,
    /// Rotated keys only: the current version and every version, newest first.
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    versions: Option<&'a Value>,
}

impl<'a> KeyInfo<'a> {
    fn of(v: &'a Value) -> KeyInfo<'a> {
        KeyInfo {
            name: str_of(v, "name"),
            algorithm: str_of(v, "algorithm"),
            created_at: str_of(v, "created_at"),
            created_by: str_of(v, "created_by"),
            version: str_of(v, "version"),
            versions: v.get("versions").filter(|v| v.is_array()),
        }
    }
}

/// Runs `f` for every name; a refusal of one name is printed and the others are still tried,
/// but a lost connection stops the command.
fn for_each_name(
    names: &[String],
    mut f: impl FnMut(&str) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut code = None;
    for name in names {
        match f(name) {
            Ok(()) => {}
            Err(e @ Error::Server { .. }) if names.len() > 1 => {
                print_error(&e);
                code.get_or_insert(e.exit_code());
            }
            Err(e) => {
                if code.is_some() {
                    print_error(&e);
                    return Err(Error::Reported(e.exit_code()));
                }
                return Err(e);
            }
        }
    }
    match code {
        Some(code) => Err(Error::Reported(code)),
        None => Ok(()),
    }
}

/// What `kes ls` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Keys,
    Policies,
    Identities,
}

/// The listing pattern for a prefix: `*` for everything, else the prefix without a trailing
/// `*` (the Go server keeps a trailing `*` in key prefixes and then finds nothing).
pub fn list_pattern(prefix: Option<&str>) -> String {
    match prefix.map(|p| p.trim_end_matches('*')) {
        None | Some("") => "*".to_string(),
        Some(p) => path_segment(p),
    }
}

/// Lists keys, policies or identities: a header (`Key`, `Policy`, `Identity`) and one name per
/// line (nothing when there are none); with `--json`, an array of names. `context` is what an
/// error says was being done (`kes ls` says nothing, as in Go).
pub fn list_with(
    kind: ListKind,
    prefix: Option<&str>,
    opts: &ClientOpts,
    context: Option<&str>,
) -> Result<(), Error> {
    let (client, out) = connect(opts)?;
    let (path, field, header) = match kind {
        ListKind::Keys => ("/v1/key/list/", "names", "Key"),
        ListKind::Policies => ("/v1/policy/list/", "names", "Policy"),
        ListKind::Identities => ("/v1/identity/list/", "identities", "Identity"),
    };
    let reply = client
        .get_json(&format!("{path}{}", list_pattern(prefix)))
        .map_err(|e| match context {
            Some(what) => e.context(what),
            None => e,
        })?;
    let names: Vec<String> = match reply.get(field) {
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if out.json {
        out.print_json(&names)?;
    } else {
        out.print(&gotext::list(&out, header, &names))?;
    }
    let more = str_of(&reply, "continue_at");
    if !more.is_empty() {
        print_error(format!(
            "the listing stops before '{}': the server returns at most 1024 names at a time; \
             give a longer prefix to see the rest",
            sanitize(more)
        ));
    }
    Ok(())
}

/// `kes key ls`, `kes policy ls`, `kes identity ls`.
pub fn list(kind: ListKind, prefix: Option<&str>, opts: &ClientOpts) -> Result<(), Error> {
    let context = match kind {
        ListKind::Keys => "failed to list keys",
        ListKind::Policies => "failed to list policies",
        ListKind::Identities => "failed to list identities",
    };
    list_with(kind, prefix, opts, Some(context))
}

/// A string field of a JSON object, or "".
pub fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// Decodes an optional base64 argument; a malformed one is a usage error that does not echo it.
fn decode_arg(what: &str, arg: Option<&str>) -> Result<Zeroizing<Vec<u8>>, Error> {
    match arg {
        None => Ok(Zeroizing::new(Vec::new())),
        Some(text) => STANDARD
            .decode(text.trim())
            .map(Zeroizing::new)
            .map_err(|_| Error::Usage(format!("the {what} is not valid base64"))),
    }
}

/// `{"<field>":"<base64>","context":"<base64>"}` in a zeroizing buffer.
fn crypto_body(field: &str, data: &[u8], context: &[u8]) -> Zeroizing<String> {
    let mut body = Zeroizing::new(String::with_capacity(data.len() * 4 / 3 + 64));
    body.push_str("{\"");
    body.push_str(field);
    body.push_str("\":\"");
    STANDARD.encode_string(data, &mut body);
    body.push('"');
    if !context.is_empty() {
        body.push_str(",\"context\":\"");
        STANDARD.encode_string(context, &mut body);
        body.push('"');
    }
    body.push('}');
    body
}

/// Reads the key of `kes key import`: 32 bytes, base64, from the argument or standard input.
fn read_import_key(arg: Option<&str>) -> Result<Zeroizing<Vec<u8>>, Error> {
    let text = match arg {
        Some(text) if text != "-" => Zeroizing::new(text.to_string()),
        _ => {
            let mut text = Zeroizing::new(String::new());
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut text)
                .map_err(|e| {
                    Error::Failed(format!("cannot read the key from standard input: {e}"))
                })?;
            text
        }
    };
    let key = STANDARD
        .decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|_| Error::Usage("the key is not valid base64".into()))?;
    if key.len() != 32 {
        return Err(Error::Usage(format!(
            "the key must be 32 bytes (base64-encoded), not {}",
            key.len()
        )));
    }
    Ok(key)
}

/// The base64 fields of a crypto reply; plaintexts are secrets, so they are zeroized on drop.
#[derive(serde::Deserialize)]
struct CryptoReply {
    plaintext: Option<String>,
    ciphertext: Option<String>,
    /// The key version that made the ciphertext (rotated keys only).
    version: Option<String>,
}

impl Drop for CryptoReply {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.plaintext.zeroize();
        self.ciphertext.zeroize();
    }
}

/// Prints base64 fields of a crypto reply. Without a terminal (and with `--json`): the JSON the
/// Go command prints, with exactly these fields in this order. On a terminal: one labelled line
/// per field, or only the value when there is one field, so that `$(kes key encrypt …)` works
/// on a terminal too.
fn print_fields(out: &Output, reply: &[u8], fields: &[(&str, &str)]) -> Result<(), Error> {
    let value: CryptoReply = serde_json::from_slice(reply)
        .map_err(|e| Error::Failed(format!("the server's reply is not valid JSON: {e}")))?;
    let mut text = Zeroizing::new(String::with_capacity(reply.len() + 32));
    let mut values = Vec::with_capacity(fields.len());
    for (field, label) in fields {
        let v = match *field {
            "plaintext" => value.plaintext.as_deref(),
            "ciphertext" => value.ciphertext.as_deref(),
            _ => None,
        }
        .ok_or_else(|| Error::Failed(format!("the server's reply has no '{field}'")))?;
        values.push((*field, *label, v));
    }
    // A rotated key's reply names its version: shown after the fields asked for (the reply of a
    // key never rotated, and so the output, is the Go server's).
    if let Some(v) = value
        .version
        .as_deref()
        .filter(|_| fields.iter().any(|f| f.0 == "ciphertext"))
    {
        values.push(("version", "Version", v));
    }
    if !out.terminal || out.json {
        text.push('{');
        for (i, (field, _, v)) in values.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push('"');
            text.push_str(field);
            text.push_str("\":");
            // Base64 from the server; encoded as a JSON string all the same.
            text.push_str(&Zeroizing::new(
                serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into()),
            ));
        }
        text.push_str("}\n");
        return out.print(&text);
    }
    let labelled = values.len() > 1;
    for (_, label, v) in values {
        if labelled {
            text.push_str(&out.paint(Style::Bold, &format!("{label:<11}")));
            text.push(' ');
        }
        // Server text: no control characters reach the terminal.
        text.extend(v.chars().filter(|c| !c.is_control()));
        text.push('\n');
    }
    out.print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(list_pattern(None), "*");
        assert_eq!(list_pattern(Some("")), "*");
        assert_eq!(list_pattern(Some("*")), "*");
        assert_eq!(list_pattern(Some("my-")), "my-");
        assert_eq!(list_pattern(Some("my-*")), "my-");
        assert_eq!(list_pattern(Some("a/b")), "a%2Fb");
    }

    #[test]
    fn bodies() {
        assert_eq!(
            crypto_body("plaintext", b"hi", b"").as_str(),
            "{\"plaintext\":\"aGk=\"}"
        );
        let body = crypto_body("ciphertext", b"\x00\x01", b"{}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ciphertext"], "AAE=");
        assert_eq!(v["context"], "e30=");
    }

    #[test]
    fn import_key_checks() {
        let good = STANDARD.encode([7u8; 32]);
        assert_eq!(read_import_key(Some(&good)).unwrap().len(), 32);
        let short = STANDARD.encode([7u8; 16]);
        assert!(
            matches!(read_import_key(Some(&short)), Err(Error::Usage(m)) if m.contains("not 16"))
        );
        let err = read_import_key(Some("not base64 secret!")).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(matches!(
            decode_arg("context", Some("@@")),
            Err(Error::Usage(_))
        ));
        assert!(decode_arg("context", None).unwrap().is_empty());
    }
}
