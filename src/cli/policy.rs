//! `kes policy info|show|ls` and `kes identity info`: what a server's policies allow and who
//! they apply to. Policies live in the server's config file; these commands only read them.
//!
//! Replies are read leniently, because servers of different eras shape them differently: the
//! allow and deny rules are an object keyed by pattern (current servers) or an array (v0.22),
//! and a self-description carries the policy as an object (this server) or as a name with the
//! rules beside it (the Go SDK's form).

use crate::cli::Error;
use crate::cli::client::{ClientOpts, path_segment};
use crate::cli::key::{ListKind, connect, list, str_of};
use crate::cli::output::{Output, Style, Table, human_time, sanitize};
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
    /// Show the API paths a policy allows and denies.
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

pub fn run(cmd: PolicyCommand) -> Result<(), Error> {
    match cmd {
        PolicyCommand::Info { name, opts } => {
            let (client, out) = connect(&opts)?;
            let info = client
                .get_json(&format!("/v1/policy/describe/{}", path_segment(&name)))
                .map_err(|e| e.context(format!("cannot describe policy '{name}'")))?;
            if out.json {
                return out.json(&info);
            }
            let mut t = Table::new();
            t.row([
                out.paint(Style::Bold, "Name"),
                sanitize(str_of(&info, "name")),
            ]);
            created_rows(&mut t, &info);
            out.print(&t.render())
        }
        PolicyCommand::Show { name, opts } => {
            let (client, out) = connect(&opts)?;
            let policy = client
                .get_json(&format!("/v1/policy/read/{}", path_segment(&name)))
                .map_err(|e| e.context(format!("cannot read policy '{name}'")))?;
            if out.json {
                return out.json(&policy);
            }
            let mut t = Table::new();
            t.row([
                out.paint(Style::Bold, "Name"),
                sanitize(str_of(&policy, "name")),
            ]);
            rule_rows(&mut t, &out, &policy);
            created_rows(&mut t, &policy);
            out.print(&t.render())
        }
        PolicyCommand::Ls { prefix, opts } => list(ListKind::Policies, prefix.as_deref(), &opts),
    }
}

/// `kes identity info [IDENTITY]`.
pub fn identity_info(identity: Option<&str>, opts: &ClientOpts) -> Result<(), Error> {
    let (client, out) = connect(opts)?;
    let info = match identity {
        Some(id) => client
            .get_json(&format!("/v1/identity/describe/{}", path_segment(id)))
            .map_err(|e| e.context(format!("cannot describe identity '{id}'")))?,
        None => client
            .get_json("/v1/identity/self/describe")
            .map_err(|e| e.context("cannot describe your identity"))?,
    };
    if out.json {
        return out.json(&info);
    }
    let mut t = Table::new();
    let id = identity.unwrap_or_else(|| str_of(&info, "identity"));
    t.row([out.paint(Style::Bold, "Identity"), sanitize(id)]);
    if info.get("admin").and_then(Value::as_bool) == Some(true) {
        t.row(["Role".to_string(), out.paint(Style::Yellow, "admin")]);
        t.row([
            "Created".to_string(),
            human_time(str_of(&info, "created_at"), time::OffsetDateTime::now_utc()),
        ]);
        return out.print(&t.render());
    }
    match info.get("policy") {
        // This server's self-description: the policy object.
        Some(policy @ Value::Object(_)) => {
            t.row(["Policy".to_string(), sanitize(str_of(policy, "name"))]);
            rule_rows(&mut t, &out, policy);
        }
        // describe, and the Go SDK's self-description: a name, rules beside it.
        Some(Value::String(name)) => {
            t.row(["Policy".to_string(), sanitize(name)]);
            rule_rows(&mut t, &out, &info);
        }
        _ => {}
    }
    created_rows(&mut t, &info);
    out.print(&t.render())
}

fn created_rows(t: &mut Table, v: &Value) {
    let now = time::OffsetDateTime::now_utc();
    if v.get("created_at").is_some() {
        t.row([
            "Created".to_string(),
            human_time(str_of(v, "created_at"), now),
        ]);
    }
    let by = str_of(v, "created_by");
    if !by.is_empty() {
        t.row(["Created by".to_string(), sanitize(by)]);
    }
}

/// One row per allow and deny pattern.
fn rule_rows(t: &mut Table, out: &Output, policy: &Value) {
    for (field, label, style) in [
        ("allow", "Allow", Style::Green),
        ("deny", "Deny", Style::Red),
    ] {
        let patterns = patterns(policy.get(field));
        for (i, p) in patterns.iter().enumerate() {
            let label = if i == 0 { label } else { "" };
            t.row([label.to_string(), out.paint(style, &sanitize(p))]);
        }
    }
}

/// The patterns of an allow/deny value: object keys (current) or array items (v0.22).
fn patterns(v: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = match v {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pattern_forms() {
        assert_eq!(
            patterns(Some(&json!({"/v1/b": {}, "/v1/a": {}}))),
            ["/v1/a", "/v1/b"]
        );
        assert_eq!(patterns(Some(&json!(["/v1/x"]))), ["/v1/x"]);
        assert!(patterns(Some(&json!(null))).is_empty());
        assert!(patterns(None).is_empty());
    }
}
