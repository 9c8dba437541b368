//! Policy and identity handlers (§2.3). Policies come from the config file only (a reload
//! replaces them); these routes describe them. `created_at` of policies and identities is when
//! the running configuration was loaded, `created_by` the admin identity, as in the Go server.

use super::error::{self, ApiError};
use super::json::{self, go_time};
use super::{Ctx, pattern_prefix, valid_name, valid_pattern};
use crate::auth::policy::Policy;
use crate::server::Response;
use serde::Serialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

fn ok_json<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    Ok(Response::bytes(200, "application/json", json::reply(value)))
}

fn policy_name<'a>(ctx: &Ctx<'a>) -> Result<&'a str, ApiError> {
    if valid_name(ctx.resource) {
        Ok(ctx.resource)
    } else {
        Err(error::invalid_policy_name(ctx.resource))
    }
}

fn lookup<'a>(ctx: &'a Ctx<'_>, name: &str) -> Result<&'a Policy, ApiError> {
    ctx.state
        .policies
        .policies
        .get(name)
        .ok_or(error::POLICY_NOT_FOUND)
}

#[derive(Serialize)]
struct DescribePolicy<'a> {
    name: &'a str,
    created_at: String,
    created_by: &'a str,
}

pub fn describe_policy(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = policy_name(ctx)?;
    lookup(ctx, name)?;
    let set = &ctx.state.policies;
    ok_json(&DescribePolicy {
        name,
        created_at: go_time(Some(set.created_at)),
        created_by: &set.admin,
    })
}

/// `{"<pattern>":{},…}`: the object form the Go server uses for allow/deny.
fn pattern_object(patterns: &[crate::auth::policy::Pattern]) -> Map<String, Value> {
    patterns
        .iter()
        .map(|p| (p.as_str().to_owned(), Value::Object(Map::new())))
        .collect()
}

#[derive(Serialize)]
struct ReadPolicy<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Map::is_empty")]
    allow: Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    deny: Map<String, Value>,
    created_at: String,
    created_by: &'a str,
}

fn read_policy_reply<'a>(ctx: &'a Ctx<'_>, policy: &'a Policy) -> ReadPolicy<'a> {
    let set = &ctx.state.policies;
    ReadPolicy {
        name: &policy.name,
        allow: pattern_object(&policy.allow),
        deny: pattern_object(&policy.deny),
        created_at: go_time(Some(set.created_at)),
        created_by: &set.admin,
    }
}

pub fn read_policy(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = policy_name(ctx)?;
    let policy = lookup(ctx, name)?;
    ok_json(&read_policy_reply(ctx, policy))
}

#[derive(Serialize)]
struct PolicyList {
    names: Vec<String>,
    continue_at: String,
}

pub fn list_policies(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    if !valid_pattern(ctx.resource) {
        return Err(error::invalid_pattern(ctx.resource));
    }
    let prefix = pattern_prefix(ctx.resource);
    let names = ctx
        .state
        .policies
        .policies
        .keys()
        .filter(|n| n.starts_with(prefix))
        .cloned()
        .collect();
    ok_json(&PolicyList {
        names,
        continue_at: String::new(),
    })
}

#[derive(Serialize)]
struct DescribeAdmin {
    admin: bool,
    created_at: String,
}

#[derive(Serialize)]
struct DescribeIdentity<'a> {
    policy: &'a str,
    created_at: String,
    created_by: &'a str,
}

pub fn describe_identity(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    // The name rule, as the Go server applies it (and as the config requires of identities).
    let id = ctx.resource;
    if !valid_name(id) {
        return Err(error::invalid_identity(id));
    }
    let set = &ctx.state.policies;
    let created_at = go_time(Some(set.created_at));
    if bool::from(id.as_bytes().ct_eq(set.admin.as_bytes())) {
        return ok_json(&DescribeAdmin {
            admin: true,
            created_at,
        });
    }
    let policy = set.assignment(id).ok_or(error::IDENTITY_NOT_FOUND)?;
    ok_json(&DescribeIdentity {
        policy,
        created_at,
        created_by: &set.admin,
    })
}

#[derive(Serialize)]
struct IdentityList {
    identities: Vec<String>,
    continue_at: String,
}

pub fn list_identities(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    if !valid_pattern(ctx.resource) {
        return Err(error::invalid_pattern(ctx.resource));
    }
    let prefix = pattern_prefix(ctx.resource);
    let identities = ctx
        .state
        .policies
        .identities()
        .into_iter()
        .filter(|id| id.starts_with(prefix))
        .collect();
    ok_json(&IdentityList {
        identities,
        continue_at: String::new(),
    })
}

#[derive(Serialize)]
struct SelfAdmin<'a> {
    identity: &'a str,
    admin: bool,
    created_at: String,
}

/// Self-describe of a non-admin, in the shape the Go SDK decodes: `policy` is the policy's name,
/// and its rules are `allow`/`deny` beside it (objects as in a policy read, omitted when empty).
#[derive(Serialize)]
struct SelfDescribe<'a> {
    identity: &'a str,
    policy: &'a str,
    created_at: String,
    created_by: &'a str,
    #[serde(skip_serializing_if = "Map::is_empty")]
    allow: Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    deny: Map<String, Value>,
}

/// Describes the caller. Two fixes over the Go server: it looks up the caller (the Go server
/// looks up the always-empty resource, so non-admins get 404), and the reply has the shape the
/// Go SDK decodes (the Go server's intended reply nests the policy as an object under `policy`,
/// which the SDK, expecting a string there, cannot read).
pub fn self_describe(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let set = &ctx.state.policies;
    let created_at = go_time(Some(set.created_at));
    if ctx.identity.is_empty() {
        return Err(error::CERT_REQUIRED);
    }
    if set.is_admin(ctx.identity) {
        return ok_json(&SelfAdmin {
            identity: ctx.identity.as_str(),
            admin: true,
            created_at,
        });
    }
    let policy = set
        .policy_of(ctx.identity)
        .ok_or(error::IDENTITY_NOT_FOUND)?;
    ok_json(&SelfDescribe {
        identity: ctx.identity.as_str(),
        policy: &policy.name,
        created_at,
        created_by: &set.admin,
        allow: pattern_object(&policy.allow),
        deny: pattern_object(&policy.deny),
    })
}
