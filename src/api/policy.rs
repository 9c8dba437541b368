//! Policy and identity handlers (§2.3). Policies come from the config file only; these routes
//! describe them.

use super::error::{self, ApiError};
use super::json::{self, go_time};
use super::{Ctx, pattern_prefix, valid_name, valid_pattern};
use crate::auth::policy::Policy;
use crate::server::http::Response;
use serde::Serialize;
use serde_json::{Map, Value};

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

/// Identities are 64 hex characters, but configs may hold other strings (`disabled`); the check
/// only keeps path-like input out.
fn valid_identity(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

pub fn describe_identity(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let id = ctx.resource;
    if !valid_identity(id) {
        return Err(error::invalid_identity(id));
    }
    let set = &ctx.state.policies;
    let created_at = go_time(Some(set.created_at));
    if id == set.admin {
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

#[derive(Serialize)]
struct SelfDescribe<'a> {
    identity: &'a str,
    created_at: String,
    created_by: &'a str,
    policy: ReadPolicy<'a>,
}

/// Describes the caller. The Go server looks up the (empty) resource instead of the caller, so
/// non-admins get 404 there; here every identity with a policy gets its description.
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
        created_at,
        created_by: &set.admin,
        policy: read_policy_reply(ctx, policy),
    })
}
