//! An in-memory keystore for `kes server --dev`: keys are lost when the process exits.

use super::{Error, Keystore, Page, Status};
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;
use zeroize::Zeroizing;

#[derive(Default)]
pub struct MemKeystore {
    keys: RwLock<BTreeMap<String, Zeroizing<Vec<u8>>>>,
}

impl MemKeystore {
    pub fn new() -> MemKeystore {
        MemKeystore::default()
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
}
