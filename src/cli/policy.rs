//! `kes policy info|show|ls` and `kes identity info`: what a server's policies allow and who
//! they apply to. Policies live in the server's config file; these commands only read them.
//! Without a terminal they print what the Go `kes` command prints ([`gotext`]); `policy show`
//! prints the policy's JSON then, as Go does.
//!
//! Replies are read leniently, because servers of different eras shape them differently: the
//! allow and deny rules are an object keyed by pattern (current servers) or an array (v0.22),
//! and a self-description carries the policy as an object (this server) or as a name with the
//! rules beside it (the Go SDK's form).

use crate::cli::client::{ClientOpts, path_segment};
use crate::cli::key::{ListKind, connect, list, str_of};
use crate::cli::{Error, gotext};
use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand, Debug)]
#[command(
    after_help = "Examples:\n  kes policy ls\n  kes policy show minio\n  kes policy info minio"
)]
pub enum PolicyCommand {
    /// Show when a policy was created and by whom.
    Info {
        /// The policy's name.
        name: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show the API paths a policy allows and denies (JSON when the output is not a terminal).
    Show {
        /// The policy's name.
        name: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List the policies whose names start with PREFIX (all without it).
    Ls {
        /// A name prefix; a trailing '*' is allowed.
        #[arg(value_name = "PREFIX")]
        prefix: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// `kes policy info --json`: the Go command's fields, in its order.
#[derive(serde::Serialize)]
struct PolicyInfo<'a> {
    name: &'a str,
    created_at: &'a str,
    created_by: &'a str,
}

pub fn run(cmd: PolicyCommand) -> Result<(), Error> {
    match cmd {
        PolicyCommand::Info { name, opts } => {
            let (client, out) = connect(&opts)?;
            let info = client.get_json(&format!("/v1/policy/describe/{}", path_segment(&name)))?;
            if out.json {
                return out.print_json(&PolicyInfo {
                    name: str_of(&info, "name"),
                    created_at: str_of(&info, "created_at"),
                    created_by: str_of(&info, "created_by"),
                });
            }
            out.print(&gotext::policy_info(&out, &info))
        }
        PolicyCommand::Show { name, opts } => {
            let (client, out) = connect(&opts)?;
            let policy = client
                .get_json(&format!("/v1/policy/read/{}", path_segment(&name)))
                .map_err(|e| e.context(format!("failed to show policy '{name}'")))?;
            if out.json || !out.terminal {
                return out.print_json(&gotext::policy_json(&policy));
            }
            out.print(&gotext::policy_show(&out, &policy))
        }
        PolicyCommand::Ls { prefix, opts } => list(ListKind::Policies, prefix.as_deref(), &opts),
    }
}

/// `kes identity info [IDENTITY]`: with `--json`, the server's reply.
pub fn identity_info(identity: Option<&str>, opts: &ClientOpts) -> Result<(), Error> {
    let (client, out) = connect(opts)?;
    let info = match identity {
        Some(id) => client.get_json(&format!("/v1/identity/describe/{}", path_segment(id)))?,
        None => client.get_json("/v1/identity/self/describe")?,
    };
    if out.json {
        return out.print_json(&info);
    }
    let id = identity
        .unwrap_or_else(|| str_of(&info, "identity"))
        .to_string();
    // A self-description carries the rules beside (or inside) the policy; only its name is shown.
    let info = match info.get("policy") {
        Some(policy @ Value::Object(_)) => {
            let mut info = info.clone();
            info["policy"] = Value::String(str_of(policy, "name").to_string());
            info
        }
        _ => info,
    };
    out.print(&gotext::identity_info(&out, &id, &info))
}

#[cfg(test)]
mod tests {
    use crate::cli::gotext::{patterns, policy_json};
    use serde_json::json;

    #[test]
    fn pattern_forms() {
        assert_eq!(
            patterns(Some(&json!({"/v1/b": {}, "/v1/a": {}}))),
            ["/v1/a", "/v1/b"]
        );
        assert_eq!(
            serde_json::to_string(&policy_json(&json!({"name": "p", "allow": ["/v1/x"],
                "deny": {"/v1/y": {}}, "created_at": "t", "created_by": "i"})))
            .unwrap(),
            r#"{"allow":{"/v1/x":{}},"deny":{"/v1/y":{}},"created_at":"t","created_by":"i"}"#
        );
        assert_eq!(patterns(Some(&json!(["/v1/x"]))), ["/v1/x"]);
        assert!(patterns(Some(&json!(null))).is_empty());
        assert!(patterns(None).is_empty());
    }
}
