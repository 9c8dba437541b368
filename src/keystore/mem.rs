//! An in-memory keystore for `kes server --dev`: keys are lost when the process exits.

use super::{Error, Keystore, Page, Status, VersionEntry, collect_versions, valid_ring};
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;
use zeroize::Zeroizing;

/// The entries of one ring (`"2"`, `"2.retired"`, …), by (key name, ring id).
type Rings = BTreeMap<(String, String), BTreeMap<String, Zeroizing<Vec<u8>>>>;

#[derive(Default)]
pub struct MemKeystore {
    keys: RwLock<BTreeMap<String, Zeroizing<Vec<u8>>>>,
    rings: RwLock<Rings>,
}

impl MemKeystore {
    pub fn new() -> MemKeystore {
        MemKeystore::default()
    }

    fn create_entry(
        &self,
        name: &str,
        ring: &str,
        entry: String,
        value: &[u8],
    ) -> Result<(), Error> {
        if !valid_ring(ring) {
            return Err(Error::Failed(format!("invalid key ring '{ring}'")));
        }
        let mut rings = self.rings.write().unwrap_or_else(|e| e.into_inner());
        let entries = rings.entry((name.to_owned(), ring.to_owned())).or_default();
        if entries.contains_key(&entry) {
            return Err(Error::Exists);
        }
        entries.insert(entry, Zeroizing::new(value.to_vec()));
        Ok(())
    }

    fn delete_entry(&self, name: &str, ring: &str, entry: &str) -> Result<(), Error> {
        let mut rings = self.rings.write().unwrap_or_else(|e| e.into_inner());
        rings
            .get_mut(&(name.to_owned(), ring.to_owned()))
            .and_then(|entries| entries.remove(entry))
            .map(|_| ())
            .ok_or(Error::NotFound)
    }

    fn get_entry(&self, name: &str, ring: &str, entry: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let rings = self.rings.read().unwrap_or_else(|e| e.into_inner());
        rings
            .get(&(name.to_owned(), ring.to_owned()))
            .and_then(|entries| entries.get(entry))
            .cloned()
            .ok_or(Error::NotFound)
    }
}

impl Keystore for MemKeystore {
    fn create(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if keys.contains_key(name) {
            return Err(Error::Exists);
        }
        keys.insert(name.to_owned(), Zeroizing::new(value.to_vec()));
        Ok(())
    }

    fn list_versions(&self, name: &str, ring: &str) -> Result<Vec<VersionEntry>, Error> {
        let rings = self.rings.read().unwrap_or_else(|e| e.into_inner());
        Ok(rings
            .get(&(name.to_owned(), ring.to_owned()))
            .map(|entries| collect_versions(entries.keys().map(String::as_str)))
            .unwrap_or_default())
    }

    fn create_version(&self, name: &str, ring: &str, n: u32, value: &[u8]) -> Result<(), Error> {
        if n < 2 {
            return Err(Error::Failed(format!("invalid key version {n}")));
        }
        self.create_entry(name, ring, n.to_string(), value)
    }

    fn get_version(&self, name: &str, ring: &str, n: u32) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.get_entry(name, ring, &n.to_string())
    }

    fn create_marker(&self, name: &str, ring: &str, n: u32, marker: &[u8]) -> Result<(), Error> {
        if n < 1 {
            return Err(Error::Failed(format!("invalid key version {n}")));
        }
        self.create_entry(name, ring, format!("{n}.retired"), marker)
    }

    fn get_marker(&self, name: &str, ring: &str, n: u32) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.get_entry(name, ring, &format!("{n}.retired"))
    }

    fn delete_version(&self, name: &str, ring: &str, n: u32) -> Result<(), Error> {
        if n < 2 {
            return Err(Error::Failed(format!("invalid key version {n}")));
        }
        self.delete_entry(name, ring, &n.to_string())
    }

    fn delete_marker(&self, name: &str, ring: &str, n: u32) -> Result<(), Error> {
        self.delete_entry(name, ring, &format!("{n}.retired"))
    }

    fn list_rings(&self, name: &str) -> Result<Vec<String>, Error> {
        let rings = self.rings.read().unwrap_or_else(|e| e.into_inner());
        Ok(rings
            .iter()
            .filter(|((n, _), entries)| n == name && !entries.is_empty())
            .map(|((_, ring), _)| ring.clone())
            .collect())
    }

    fn delete_ring(&self, name: &str, ring: &str) -> Result<(), Error> {
        let mut rings = self.rings.write().unwrap_or_else(|e| e.into_inner());
        let id = (name.to_owned(), ring.to_owned());
        match rings.get(&id) {
            Some(entries) if !entries.is_empty() => Err(Error::Failed(format!(
                "the ring '{ring}' of '{name}' is not empty"
            ))),
            _ => {
                rings.remove(&id);
                Ok(())
            }
        }
    }

    fn get(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.get(name).cloned().ok_or(Error::NotFound)
    }

    fn delete(&self, name: &str) -> Result<(), Error> {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.remove(name).map(|_| ()).ok_or(Error::NotFound)
    }

    fn list(&self, prefix: &str, limit: usize) -> Result<Page, Error> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let limit = limit.max(1);
        let mut names = Vec::new();
        let mut continue_at = String::new();
        for name in keys.range(prefix.to_owned()..).map(|(k, _)| k) {
            if !name.starts_with(prefix) {
                break;
            }
            if names.len() == limit {
                continue_at = name.clone();
                break;
            }
            names.push(name.clone());
        }
        Ok(Page { names, continue_at })
    }

    fn status(&self) -> Result<Status, Error> {
        Ok(Status {
            latency: Duration::ZERO,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_get_delete_list() {
        let ks = MemKeystore::new();
        ks.create("a", b"1").unwrap();
        ks.create("ab", b"2").unwrap();
        ks.create("b", b"3").unwrap();
        assert_eq!(ks.create("a", b"x"), Err(Error::Exists));
        assert_eq!(&ks.get("a").unwrap()[..], b"1");
        let page = ks.list("a", 1).unwrap();
        assert_eq!(page.names, vec!["a".to_string()]);
        assert_eq!(page.continue_at, "ab");
        assert_eq!(ks.list("", 10).unwrap().names.len(), 3);
        ks.delete("a").unwrap();
        assert_eq!(ks.get("a"), Err(Error::NotFound));
        assert_eq!(ks.delete("a"), Err(Error::NotFound));
    }

    #[test]
    fn versions() {
        const RING: &str = "630dcd2966c4336691125448bbb25b4f";
        let ks = MemKeystore::new();
        ks.create("k", b"1").unwrap();
        assert_eq!(ks.list_versions("k", RING).unwrap(), vec![]);
        ks.create_version("k", RING, 2, b"2").unwrap();
        assert_eq!(ks.create_version("k", RING, 2, b"x"), Err(Error::Exists));
        assert!(ks.create_version("k", RING, 1, b"x").is_err());
        assert!(ks.create_version("k", "nope", 3, b"x").is_err());
        ks.create_marker("k", RING, 1, b"m").unwrap();
        assert_eq!(ks.create_marker("k", RING, 1, b"x"), Err(Error::Exists));
        assert_eq!(&ks.get_version("k", RING, 2).unwrap()[..], b"2");
        assert_eq!(&ks.get_marker("k", RING, 1).unwrap()[..], b"m");
        assert_eq!(ks.get_version("k", RING, 3), Err(Error::NotFound));
        let e = |n, value, retired| VersionEntry { n, value, retired };
        assert_eq!(
            ks.list_versions("k", RING).unwrap(),
            vec![e(1, true, true), e(2, true, false)]
        );
        // The rings are not keys.
        assert_eq!(ks.list("", 10).unwrap().names, vec!["k".to_string()]);
        // Destroy keeps the marker; restore removes it; an emptied ring can go.
        assert_eq!(ks.list_rings("k").unwrap(), vec![RING.to_string()]);
        ks.delete_version("k", RING, 2).unwrap();
        assert_eq!(ks.delete_version("k", RING, 2), Err(Error::NotFound));
        assert!(ks.delete_ring("k", RING).is_err());
        ks.delete_marker("k", RING, 1).unwrap();
        ks.delete_ring("k", RING).unwrap();
        assert!(ks.list_rings("k").unwrap().is_empty());
    }
}
