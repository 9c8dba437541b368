//! The K/V secrets engine (§6.3): request paths and bodies for v1 and v2, and reading answers.
//!
//! A key is one secret at `<engine>/<prefix>/<name>` (v2: `<engine>/data/<prefix>/<name>`) with
//! a single field named after the key, holding the stored value (or its transit ciphertext) as a
//! string. Nothing here logs; values only pass through zeroizing buffers.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use super::{join_path, join_path_raw};

/// Paths and bodies of one K/V mount, prefix and version.
pub(crate) struct Kv {
    engine: String,
    prefix: String,
    v2: bool,
}

impl Kv {
    pub fn new(engine: &str, prefix: &str, v2: bool) -> Kv {
        let engine = if engine.trim_matches('/').trim().is_empty() {
            "kv"
        } else {
            engine
        };
        Kv {
            engine: engine.to_string(),
            prefix: prefix.to_string(),
            v2,
        }
    }

    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// The engine's path as an operator writes it (`kv`, `secrets/kes`).
    pub fn engine(&self) -> String {
        join_path_raw(&[&self.engine])
    }

    /// The secret's path for reads and writes (`/v1/...`), without a query.
    pub fn secret_url(&self, name: &str) -> String {
        if self.v2 {
            format!(
                "/v1/{}",
                join_path(&[&self.engine, "data", &self.prefix, name])
            )
        } else {
            format!("/v1/{}", join_path(&[&self.engine, &self.prefix, name]))
        }
    }

    /// Reading a key: v2 pins version 1, the version a create writes (`cas: 0`).
    pub fn get_url(&self, name: &str) -> String {
        if self.v2 {
            format!("{}?version=1", self.secret_url(name))
        } else {
            self.secret_url(name)
        }
    }

    /// Deleting a key: v2 deletes the metadata, i.e. every version.
    pub fn delete_url(&self, name: &str) -> String {
        if self.v2 {
            format!(
                "/v1/{}",
                join_path(&[&self.engine, "metadata", &self.prefix, name])
            )
        } else {
            self.secret_url(name)
        }
    }

    /// The path, relative to the prefix, of a later key version's secret or marker
    /// (docs/key-versions.md §1): `.kes-versions/<name>/<ring>/<entry>`, `entry` being `<n>` or
    /// `<n>.retired`. It goes wherever a name goes in [`secret_url`](Self::secret_url),
    /// [`get_url`](Self::get_url), [`delete_url`](Self::delete_url) and
    /// [`policy_path`](Self::policy_path) (they split on `/` and encode each segment); the
    /// secret's field stays named after the key ([`create_body`](Self::create_body) and
    /// [`parse_value`](Self::parse_value) with the key's name).
    pub fn version_path(name: &str, ring: &str, entry: &str) -> String {
        format!("{}/{name}/{ring}/{entry}", crate::keystore::VERSIONS_DIR)
    }

    /// Listing one ring's entries: v1 `/v1/<engine>/<prefix>/.kes-versions/<name>/<ring>/?list=true`,
    /// v2 through `metadata/`.
    pub fn ring_list_url(&self, name: &str, ring: &str) -> String {
        let dir = format!("{}/{name}/{ring}", crate::keystore::VERSIONS_DIR);
        let path = if self.v2 {
            join_path(&[&self.engine, "metadata", &self.prefix, &dir])
        } else {
            join_path(&[&self.engine, &self.prefix, &dir])
        };
        format!("/v1/{path}/?list=true")
    }

    pub fn list_url(&self) -> String {
        format!("/v1/{}/?list=true", self.list_dir_encoded())
    }

    fn list_dir_encoded(&self) -> String {
        if self.v2 {
            join_path(&[&self.engine, "metadata", &self.prefix])
        } else {
            join_path(&[&self.engine, &self.prefix])
        }
    }

    /// The path a Vault policy must grant for an operation, as an operator writes it; for
    /// `List`, `name` is the directory listed below the prefix (`""` for the keys, a ring's
    /// `.kes-versions/<name>/<ring>/`).
    pub fn policy_path(&self, op: Op, name: &str) -> String {
        let (middle, name) = match (op, self.v2) {
            (Op::List | Op::Delete, true) => ("metadata", name),
            (_, true) => ("data", name),
            (_, false) => ("", name),
        };
        let path = join_path_raw(&[&self.engine, middle, &self.prefix, name]);
        if op == Op::List {
            format!("{path}/")
        } else {
            path
        }
    }

    /// The policy path with a glob that covers every key for an operation: `kv/*`,
    /// `kv/data/prefix/*`.
    pub fn policy_glob(&self, op: Op) -> String {
        let path = self.policy_path(op, "");
        format!("{}/*", path.trim_end_matches('/'))
    }

    /// The body that creates the key: v1 `{"<name>":"<value>"}`, v2 with `cas: 0` so that Vault
    /// refuses it when any version exists.
    pub fn create_body(&self, name: &str, value: &str) -> Zeroizing<Vec<u8>> {
        #[derive(Serialize)]
        struct Options {
            cas: u32,
        }
        #[derive(Serialize)]
        struct V2<'a> {
            options: Options,
            data: BTreeMap<&'a str, &'a str>,
        }
        let data = BTreeMap::from([(name, value)]);
        let mut out = Zeroizing::new(Vec::with_capacity(value.len() + name.len() + 64));
        // Serializing maps of strings into a Vec cannot fail.
        let _ = if self.v2 {
            serde_json::to_writer(
                &mut *out,
                &V2 {
                    options: Options { cas: 0 },
                    data,
                },
            )
        } else {
            serde_json::to_writer(&mut *out, &data)
        };
        out
    }

    /// Reads the key's field from a 200 answer to a read. `Ok(None)`: there is no live secret
    /// (no data, or the v2 version is deleted).
    pub fn parse_value(
        &self,
        name: &str,
        body: &[u8],
    ) -> Result<Option<Zeroizing<String>>, String> {
        let mut reply: Value =
            serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_string())?;
        let mut data = reply
            .get_mut("data")
            .map(Value::take)
            .unwrap_or(Value::Null);
        if self.v2 {
            data = data.get_mut("data").map(Value::take).unwrap_or(Value::Null);
        }
        let mut fields = match data {
            Value::Null => return Ok(None),
            Value::Object(fields) => fields,
            _ => return Err("the secret's data is not an object".into()),
        };
        if fields.is_empty() && self.v2 {
            return Ok(None);
        }
        match fields.remove(name) {
            Some(Value::String(value)) => Ok(Some(Zeroizing::new(value))),
            Some(_) => Err(format!("the secret's field '{name}' is not a string")),
            None => Err(format!("the secret has no field '{name}'")),
        }
    }

    /// Listing the rings of a key: the sub-directories of `.kes-versions/<name>/`.
    pub fn rings_list_url(&self, name: &str) -> String {
        let dir = format!("{}/{name}", crate::keystore::VERSIONS_DIR);
        let path = if self.v2 {
            join_path(&[&self.engine, "metadata", &self.prefix, &dir])
        } else {
            join_path(&[&self.engine, &self.prefix, &dir])
        };
        format!("/v1/{path}/?list=true")
    }

    /// The sub-directories of a list answer (`name/`), without their `/`.
    pub fn parse_list_dirs(&self, body: &[u8]) -> Result<Vec<String>, String> {
        Ok(list_entries(body)?
            .filter_map(|k| k.strip_suffix('/').map(str::to_string))
            .collect())
    }

    /// The names of a list answer (`data.keys`), without sub-directories (`name/`).
    pub fn parse_list(&self, body: &[u8]) -> Result<Vec<String>, String> {
        Ok(list_entries(body)?.filter(|k| !k.ends_with('/')).collect())
    }
}

/// A keystore operation, for naming the policy capability it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Read,
    Delete,
    List,
}

impl Op {
    pub fn capability(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Read => "read",
            Op::Delete => "delete",
            Op::List => "list",
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Op::Create => "creating",
            Op::Read => "reading",
            Op::Delete => "deleting",
            Op::List => "listing",
        }
    }
}

/// The entries of a list answer (`data.keys`, names and `dir/` alike); none when it has none.
fn list_entries(body: &[u8]) -> Result<impl Iterator<Item = String>, String> {
    let reply: Value =
        serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_string())?;
    let keys = match reply.get("data").and_then(|d| d.get("keys")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(keys)) => keys.clone(),
        Some(_) => return Err("data.keys is not a list".into()),
    };
    Ok(keys
        .into_iter()
        .filter_map(|k| k.as_str().map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_paths() {
        let kv = Kv::new("kv", "", false);
        assert_eq!(kv.secret_url("k"), "/v1/kv/k");
        assert_eq!(kv.get_url("k"), "/v1/kv/k");
        assert_eq!(kv.delete_url("k"), "/v1/kv/k");
        assert_eq!(kv.list_url(), "/v1/kv/?list=true");
        let kv = Kv::new("/secrets//kes/", "/tenant//a/", false);
        assert_eq!(kv.secret_url("k"), "/v1/secrets/kes/tenant/a/k");
        assert_eq!(kv.list_url(), "/v1/secrets/kes/tenant/a/?list=true");
        assert_eq!(kv.policy_path(Op::List, ""), "secrets/kes/tenant/a/");
        assert_eq!(kv.policy_path(Op::Create, "k"), "secrets/kes/tenant/a/k");
        assert_eq!(kv.policy_glob(Op::Create), "secrets/kes/tenant/a/*");
        assert_eq!(kv.engine(), "secrets/kes");
    }

    #[test]
    fn v2_paths() {
        let kv = Kv::new("kv", "p", true);
        assert_eq!(kv.secret_url("k"), "/v1/kv/data/p/k");
        assert_eq!(kv.get_url("k"), "/v1/kv/data/p/k?version=1");
        assert_eq!(kv.delete_url("k"), "/v1/kv/metadata/p/k");
        assert_eq!(kv.list_url(), "/v1/kv/metadata/p/?list=true");
        assert_eq!(kv.policy_path(Op::List, ""), "kv/metadata/p/");
        assert_eq!(kv.policy_path(Op::Delete, "k"), "kv/metadata/p/k");
        assert_eq!(kv.policy_path(Op::Read, "k"), "kv/data/p/k");
        assert_eq!(kv.policy_glob(Op::Read), "kv/data/p/*");
        assert_eq!(Kv::new("kv", "", false).policy_glob(Op::Create), "kv/*");
        assert_eq!(Kv::new("", "", true).secret_url("k"), "/v1/kv/data/k");
    }

    #[test]
    fn version_paths() {
        const RING: &str = "630dcd2966c4336691125448bbb25b4f";
        let p = Kv::version_path("my-key", RING, "2");
        assert_eq!(p, format!(".kes-versions/my-key/{RING}/2"));
        let v1 = Kv::new("kv", "tenant", false);
        assert_eq!(
            v1.secret_url(&p),
            format!("/v1/kv/tenant/.kes-versions/my-key/{RING}/2")
        );
        assert_eq!(v1.get_url(&p), v1.secret_url(&p));
        assert_eq!(
            v1.ring_list_url("my-key", RING),
            format!("/v1/kv/tenant/.kes-versions/my-key/{RING}/?list=true")
        );
        assert_eq!(
            v1.policy_path(Op::Create, &p),
            format!("kv/tenant/.kes-versions/my-key/{RING}/2")
        );
        // A denied listing of a ring names the ring's directory, not the keys' one.
        let ring_dir = Kv::version_path("my-key", RING, "");
        assert_eq!(
            v1.policy_path(Op::List, &ring_dir),
            format!("kv/tenant/.kes-versions/my-key/{RING}/")
        );
        assert_eq!(
            Kv::new("kv", "p", true).policy_path(Op::List, &ring_dir),
            format!("kv/metadata/p/.kes-versions/my-key/{RING}/")
        );
        // An operator's glob for keys covers the versions (Vault's `*` crosses `/`).
        assert!(
            v1.policy_path(Op::Create, &p)
                .starts_with(v1.policy_glob(Op::Create).trim_end_matches('*'))
        );
        let v2 = Kv::new("kv", "", true);
        let m = Kv::version_path("k", RING, "3.retired");
        assert_eq!(
            v2.secret_url(&m),
            format!("/v1/kv/data/.kes-versions/k/{RING}/3.retired")
        );
        assert_eq!(
            v2.get_url(&m),
            format!("/v1/kv/data/.kes-versions/k/{RING}/3.retired?version=1")
        );
        assert_eq!(
            v2.delete_url(&m),
            format!("/v1/kv/metadata/.kes-versions/k/{RING}/3.retired")
        );
        assert_eq!(
            v2.ring_list_url("k", RING),
            format!("/v1/kv/metadata/.kes-versions/k/{RING}/?list=true")
        );
        assert!(
            v2.policy_path(Op::Read, &m)
                .starts_with(v2.policy_glob(Op::Read).trim_end_matches('*'))
        );
        // The body is the key's own form: one field named after the key, cas 0 on v2.
        assert_eq!(
            &v2.create_body("k", "dmFs")[..],
            br#"{"options":{"cas":0},"data":{"k":"dmFs"}}"#
        );
        assert_eq!(
            v2.rings_list_url("k"),
            "/v1/kv/metadata/.kes-versions/k/?list=true"
        );
        assert_eq!(
            v1.rings_list_url("k"),
            "/v1/kv/tenant/.kes-versions/k/?list=true"
        );
        assert_eq!(
            v1.parse_list_dirs(br#"{"data":{"keys":["a/","b","c/"]}}"#)
                .unwrap(),
            vec!["a", "c"]
        );
        // A ring listing: versions and markers; sub-directories are left out.
        let got = v1
            .parse_list(br#"{"data":{"keys":["2","3","3.retired","junk/"]}}"#)
            .unwrap();
        assert_eq!(
            crate::keystore::collect_versions(got.iter().map(String::as_str)),
            vec![
                crate::keystore::VersionEntry {
                    n: 2,
                    value: true,
                    retired: false
                },
                crate::keystore::VersionEntry {
                    n: 3,
                    value: true,
                    retired: true
                },
            ]
        );
    }

    #[test]
    fn bodies() {
        let v1 = Kv::new("kv", "", false);
        assert_eq!(
            &v1.create_body("my-key", "dmFs")[..],
            br#"{"my-key":"dmFs"}"#
        );
        let v2 = Kv::new("kv", "", true);
        assert_eq!(
            &v2.create_body("k", "a\"b")[..],
            br#"{"options":{"cas":0},"data":{"k":"a\"b"}}"#
        );
    }

    #[test]
    fn parse_values() {
        let v1 = Kv::new("kv", "", false);
        let got = v1
            .parse_value("k", br#"{"data":{"k":"dmFs"}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(got.as_str(), "dmFs");
        assert_eq!(v1.parse_value("k", br#"{"data":null}"#).unwrap(), None);
        assert!(v1.parse_value("k", br#"{"data":{"other":"x"}}"#).is_err());
        assert!(v1.parse_value("k", br#"{"data":{"k":1}}"#).is_err());
        assert!(v1.parse_value("k", b"<html>").is_err());

        let v2 = Kv::new("kv", "", true);
        let got = v2
            .parse_value("k", br#"{"data":{"data":{"k":"dmFs"},"metadata":{}}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(got.as_str(), "dmFs");
        assert_eq!(
            v2.parse_value(
                "k",
                br#"{"data":{"data":null,"metadata":{"deletion_time":"x"}}}"#
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn parse_lists() {
        let kv = Kv::new("kv", "", false);
        assert_eq!(
            kv.parse_list(br#"{"data":{"keys":["b","a","dir/"]}}"#)
                .unwrap(),
            vec!["b", "a"]
        );
        assert_eq!(
            kv.parse_list(br#"{"data":null}"#).unwrap(),
            Vec::<String>::new()
        );
        assert!(kv.parse_list(br#"{"data":{"keys":"x"}}"#).is_err());
    }
}
