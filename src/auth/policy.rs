//! Policies (§4): which API paths an identity may call.
//!
//! A request is allowed when the identity is the admin, or when its policy has no matching deny
//! pattern and at least one matching allow pattern. Patterns match the decoded URL path, never the
//! method or query. A trailing `*` matches any rest of the path (a prefix match, as in the Go
//! server); a `*` anywhere else matches any run of characters within one path segment, so that
//! `/v1/key/*/internal-key` denies what it says (the Go server silently treats it as a literal).

use super::Identity;
use crate::config::PolicyConfig;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    /// Matches nothing (the empty pattern).
    Never,
    Exact,
    /// Trailing `*` only: the path starts with the text before it.
    Prefix(usize),
    /// Inner `*` (segment wildcards), with or without a trailing `*`.
    Glob,
}

impl Pattern {
    pub fn new(text: &str) -> Pattern {
        let stars = text.bytes().filter(|b| *b == b'*').count();
        let kind = if text.is_empty() {
            PatternKind::Never
        } else if stars == 0 {
            PatternKind::Exact
        } else if stars == 1 && text.ends_with('*') {
            PatternKind::Prefix(text.len() - 1)
        } else {
            PatternKind::Glob
        };
        Pattern {
            text: text.to_owned(),
            kind,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, path: &str) -> bool {
        match self.kind {
            PatternKind::Never => false,
            PatternKind::Exact => self.text == path,
            PatternKind::Prefix(n) => path.as_bytes().starts_with(&self.text.as_bytes()[..n]),
            PatternKind::Glob => glob(self.text.as_bytes(), path.as_bytes()),
        }
    }
}

/// Matches `path` against a pattern whose inner `*` match within one segment and whose trailing
/// `*` matches any rest. Dynamic programming over (pattern, path) positions: O(len²) time at worst,
/// no backtracking blow-up on hostile paths.
fn glob(pattern: &[u8], path: &[u8]) -> bool {
    let (body, rest_any) = match pattern.strip_suffix(b"*") {
        Some(body) => (body, true),
        None => (pattern, false),
    };
    // reach[j]: the pattern prefix processed so far can consume exactly path[..j].
    let mut reach = vec![false; path.len() + 1];
    reach[0] = true;
    for &p in body {
        let mut next = vec![false; path.len() + 1];
        if p == b'*' {
            for j in 0..=path.len() {
                if reach[j] {
                    next[j] = true;
                    let mut k = j;
                    while k < path.len() && path[k] != b'/' {
                        k += 1;
                        next[k] = true;
                    }
                }
            }
        } else {
            for j in 0..path.len() {
                if reach[j] && path[j] == p {
                    next[j + 1] = true;
                }
            }
        }
        reach = next;
    }
    if rest_any {
        reach.iter().any(|r| *r)
    } else {
        reach[path.len()]
    }
}

/// A named policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub allow: Vec<Pattern>,
    pub deny: Vec<Pattern>,
}

impl Policy {
    pub fn new(name: &str, cfg: &PolicyConfig) -> Policy {
        Policy {
            name: name.to_owned(),
            allow: cfg.allow.iter().map(|p| Pattern::new(p)).collect(),
            deny: cfg.deny.iter().map(|p| Pattern::new(p)).collect(),
        }
    }

    /// Deny first; then any allow; else denied. An empty policy denies everything.
    pub fn allows(&self, path: &str) -> bool {
        self.allows_as(&[path])
    }

    /// [`Policy::allows`] for a request that is all of `paths` (one operation reached by several
    /// routes): denied when a deny rule matches any of them, else allowed when an allow rule
    /// matches any of them.
    pub fn allows_as(&self, paths: &[&str]) -> bool {
        if self
            .deny
            .iter()
            .any(|p| paths.iter().any(|path| p.matches(path)))
        {
            return false;
        }
        self.allow
            .iter()
            .any(|p| paths.iter().any(|path| p.matches(path)))
    }
}

/// An identity as a policy set sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Admin,
    /// Assigned to the named policy.
    Policy(String),
    /// Neither admin nor assigned.
    Unknown,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The identity has no policy.
    UnknownIdentity,
    /// The identity's policy does not allow the path.
    NotAllowed,
}

/// The admin and the policies of a configuration, with identity assignments.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub admin: String,
    pub policies: BTreeMap<String, Policy>,
    /// (identity, policy name), in identity order.
    assignments: Vec<(String, String)>,
    /// When this set was loaded (reported as policies' `created_at`).
    pub created_at: OffsetDateTime,
}

impl PolicySet {
    /// Builds the set. The config loader has already checked that no identity is assigned twice and
    /// that the admin is in no policy.
    pub fn new(admin: &str, policies: &BTreeMap<String, PolicyConfig>) -> PolicySet {
        let mut assignments = Vec::new();
        for (name, cfg) in policies {
            for id in &cfg.identities {
                assignments.push((id.clone(), name.clone()));
            }
        }
        assignments.sort();
        PolicySet {
            admin: admin.to_owned(),
            policies: policies
                .iter()
                .map(|(n, c)| (n.clone(), Policy::new(n, c)))
                .collect(),
            assignments,
            created_at: OffsetDateTime::now_utc(),
        }
    }

    pub fn is_admin(&self, identity: &Identity) -> bool {
        !identity.is_empty() && identity.matches(&self.admin)
    }

    /// The name of the identity's policy. Compares against every assignment in constant time per
    /// comparison, without an early exit, so timing does not reveal which identities are known.
    pub fn policy_of(&self, identity: &Identity) -> Option<&Policy> {
        if identity.is_empty() {
            return None;
        }
        let mut found: Option<&str> = None;
        for (id, policy) in &self.assignments {
            if identity.matches(id) && found.is_none() {
                found = Some(policy);
            }
        }
        found.and_then(|p| self.policies.get(p))
    }

    /// Checks whether `identity` may call `path`.
    pub fn verify(&self, identity: &Identity, path: &str) -> Result<(), Denied> {
        self.check(&self.resolve(identity), path)
    }

    /// Who `identity` is to this policy set: the part of [`verify`](Self::verify) that does not
    /// depend on the path (and costs a constant-time pass over every assignment), so that a
    /// connection can do it once instead of once per request.
    pub fn resolve(&self, identity: &Identity) -> Resolved {
        if self.is_admin(identity) {
            return Resolved::Admin;
        }
        match self.policy_of(identity) {
            Some(policy) => Resolved::Policy(policy.name.clone()),
            None => Resolved::Unknown,
        }
    }

    /// Checks a resolved identity against `path`.
    pub fn check(&self, resolved: &Resolved, path: &str) -> Result<(), Denied> {
        self.check_all(resolved, &[path])
    }

    /// [`PolicySet::check`] for a request that is all of `paths` ([`Policy::allows_as`]).
    pub fn check_all(&self, resolved: &Resolved, paths: &[&str]) -> Result<(), Denied> {
        match resolved {
            Resolved::Admin => Ok(()),
            Resolved::Unknown => Err(Denied::UnknownIdentity),
            Resolved::Policy(name) => match self.policies.get(name) {
                Some(policy) if policy.allows_as(paths) => Ok(()),
                Some(_) => Err(Denied::NotAllowed),
                None => Err(Denied::UnknownIdentity),
            },
        }
    }

    /// Every identity with a policy, plus the admin, sorted.
    pub fn identities(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.assignments.iter().map(|(id, _)| id.clone()).collect();
        ids.push(self.admin.clone());
        ids.sort();
        ids.dedup();
        ids
    }

    /// The policy assigned to a configured identity string (exact match).
    pub fn assignment(&self, identity: &str) -> Option<&str> {
        self.assignments
            .iter()
            .find(|(id, _)| id == identity)
            .map(|(_, p)| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_empty() {
        assert!(Pattern::new("/v1/key/create/my-key").matches("/v1/key/create/my-key"));
        assert!(!Pattern::new("/v1/key/create/my-key").matches("/v1/key/create/my-key2"));
        assert!(Pattern::new("/v1/key/create/*").matches("/v1/key/create/a"));
        assert!(Pattern::new("/v1/key/create/*").matches("/v1/key/create/"));
        assert!(Pattern::new("/v1/key/*").matches("/v1/key/create/a"));
        assert!(Pattern::new("*").matches("/anything/at/all"));
        assert!(!Pattern::new("").matches(""));
        assert!(!Pattern::new("").matches("/v1/key/create/a"));
    }

    #[test]
    fn inner_star_matches_one_segment() {
        let p = Pattern::new("/v1/key/*/internal-key");
        assert!(p.matches("/v1/key/generate/internal-key"));
        assert!(p.matches("/v1/key/decrypt/internal-key"));
        assert!(!p.matches("/v1/key/generate/other"));
        assert!(!p.matches("/v1/key/a/b/internal-key"));
        let p = Pattern::new("/v1/*/list/*");
        assert!(p.matches("/v1/key/list/abc"));
        assert!(p.matches("/v1/policy/list/"));
        assert!(!p.matches("/v1/key/create/abc"));
        let p = Pattern::new("/v1/key/*/tenant-*-key");
        assert!(p.matches("/v1/key/generate/tenant-a-key"));
        assert!(!p.matches("/v1/key/generate/tenant-a/b-key"));
    }

    #[test]
    fn hostile_glob_is_fast() {
        let p = Pattern::new(&"/*a".repeat(50));
        let path = "/".to_string() + &"a".repeat(5000);
        let start = std::time::Instant::now();
        assert!(!p.matches(&path));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn deny_wins_over_allow() {
        let cfg = PolicyConfig {
            allow: vec!["/v1/key/create/my*".into()],
            deny: vec!["/v1/key/create/my-key*".into()],
            identities: vec![],
        };
        let p = Policy::new("p", &cfg);
        assert!(!p.allows("/v1/key/create/my-key"));
        assert!(!p.allows("/v1/key/create/my-key1"));
        assert!(p.allows("/v1/key/create/my-minio-key"));
        assert!(!Policy::new("empty", &PolicyConfig::default()).allows("/v1/key/create/x"));
    }
}
