//! Helpers for the unit tests of several modules: a seeded generator, a temporary directory,
//! and the `openssl` command-line tool to compare with.

/// xorshift64: a fixed-seed generator so that a failure reproduces exactly.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `len` bytes, from `alphabet` (any byte when it is empty).
    pub fn bytes(&mut self, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len)
            .map(|_| {
                if alphabet.is_empty() {
                    self.next() as u8
                } else {
                    alphabet[self.below(alphabet.len())]
                }
            })
            .collect()
    }
}

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("kes-test-{}-{}-{}", std::process::id(), n, name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `openssl args…` in `dir`; panics with its stderr when it fails. Returns stdout.
pub(crate) fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("these tests need the openssl command-line tool");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs openssl with a command line split at whitespace (for arguments without spaces).
pub(crate) fn ossl(dir: &Path, command_line: &str) -> Vec<u8> {
    let args: Vec<&str> = command_line.split_whitespace().collect();
    openssl(dir, &args)
}

/// The DER of a PEM certificate file in `dir`.
pub(crate) fn cert_der(dir: &Path, pem: &str) -> Vec<u8> {
    openssl(dir, &["x509", "-in", pem, "-outform", "DER"])
}

/// The DER SubjectPublicKeyInfo of a certificate, as openssl extracts it.
pub(crate) fn openssl_spki(dir: &Path, pem: &str) -> Vec<u8> {
    let pubkey = dir.join(format!("{pem}.pub"));
    let pubkey = pubkey.to_str().expect("utf-8 temp path");
    openssl(
        dir,
        &["x509", "-in", pem, "-noout", "-pubkey", "-out", pubkey],
    );
    openssl(dir, &["pkey", "-pubin", "-in", pubkey, "-outform", "DER"])
}

/// The identity of a certificate, computed by openssl alone (SPKI → SHA-256).
pub(crate) fn openssl_identity(dir: &Path, pem: &str) -> String {
    let spki = openssl_spki(dir, pem);
    let der = dir.join(format!("{pem}.spki"));
    std::fs::write(&der, spki).expect("write spki");
    let der = der.to_str().expect("utf-8 temp path");
    let out = openssl(dir, &["dgst", "-sha256", "-r", der]);
    let text = String::from_utf8(out).expect("hex output");
    text.split_whitespace()
        .next()
        .expect("digest")
        .to_ascii_lowercase()
}

/// The stored value (§6.1) of a key whose secret and HMAC keys are 32 bytes of `seed`.
pub fn stored_key(algorithm: crate::crypto::Algorithm, seed: u8) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(
        crate::crypto::KeyVersion {
            key: crate::crypto::SecretKey::new(algorithm, [seed; 32]),
            hmac_key: Some(crate::crypto::HmacKey::new([seed; 32])),
            created_at: None,
            created_by: String::new(),
            algorithm_explicit: true,
        }
        .encode(),
    )
}
