//! Secret keys (AES256, ChaCha20) and HMAC keys (§5.1), the per-message key derivation (§5.2) and
//! the current ciphertext layout (§5.3).
//!
//! This module owns every use of key material: it derives the per-message key, seals and opens.
//! It must never log, never put key bytes, derived keys or plaintext into an error or `Debug`
//! output, and never panic on a ciphertext a client sends (parsing lives in
//! [`ciphertext`], which is bounds-checked; this module only indexes fixed-size
//! arrays).

use super::{Error, ciphertext};
use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::SecureRandom;
use ring::{digest, hmac};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Bytes of randomness per encryption: a 16-byte derivation IV followed by a 12-byte AEAD nonce.
const IV_LEN: usize = 16;
const NONCE_LEN: usize = 12;

/// The type of a secret key (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Aes256,
    ChaCha20,
}

impl Algorithm {
    /// The canonical name on the wire: `AES256` or `ChaCha20`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Aes256 => "AES256",
            Algorithm::ChaCha20 => "ChaCha20",
        }
    }

    /// Parses a name or its alias (`AES256-GCM_SHA256`, `XCHACHA20-POLY1305`); exact match.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        // Exact and case-sensitive, as §5.1 lists them: accepting more spellings here would let a
        // client create keys whose stored form the Go server could not read back.
        match name {
            "AES256" | "AES256-GCM_SHA256" => Some(Algorithm::Aes256),
            "ChaCha20" | "XCHACHA20-POLY1305" => Some(Algorithm::ChaCha20),
            _ => None,
        }
    }

    /// The algorithm for new keys: AES256 when the CPU accelerates AES-GCM, else ChaCha20.
    pub fn default_for_this_cpu() -> Algorithm {
        // Mirrors the Go server's choice (§5.1) so that a mixed cluster picks the same key types.
        // s390x is left out: its feature detection is not stable in Rust std, and ChaCha20 is
        // always a correct (if slower there) choice.
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("aes") && std::is_x86_feature_detected!("pclmulqdq") {
                return Algorithm::Aes256;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("aes")
                && std::arch::is_aarch64_feature_detected!("pmull")
            {
                return Algorithm::Aes256;
            }
        }
        // Go treats every ppc64le CPU (POWER8 and later) as AES-GCM capable.
        if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
            return Algorithm::Aes256;
        }
        Algorithm::ChaCha20
    }
}

/// A 256-bit master key. Zeroized on drop; `Debug` prints `<redacted>`.
#[derive(Clone)]
pub struct SecretKey {
    algorithm: Algorithm,
    bytes: Zeroizing<[u8; 32]>,
}

impl SecretKey {
    pub fn new(algorithm: Algorithm, bytes: [u8; 32]) -> SecretKey {
        // `bytes` is a by-value copy; wipe our copy of it once it is inside the zeroizing box
        // (best effort: the caller's copy is the caller's business).
        let mut bytes = bytes;
        let key = SecretKey {
            algorithm,
            bytes: Zeroizing::new(bytes),
        };
        bytes.zeroize();
        key
    }

    /// A key from a byte slice that must be exactly 32 bytes long (a decoded stored value or an
    /// imported key). Copies straight into the zeroizing box, leaving no stray copy behind.
    pub fn from_slice(algorithm: Algorithm, bytes: &[u8]) -> Result<SecretKey, Error> {
        Ok(SecretKey {
            algorithm,
            bytes: copy_key(bytes)?,
        })
    }

    pub fn generate(algorithm: Algorithm) -> Result<SecretKey, Error> {
        // Fill in place so that the key never exists outside the zeroizing box.
        let mut key = SecretKey {
            algorithm,
            bytes: Zeroizing::new([0u8; 32]),
        };
        random(&mut key.bytes[..])?;
        Ok(key)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The key-id of the legacy ciphertext formats (§5.4): hex of the first 16 bytes of
    /// SHA-256(raw key). Safe to show: it is a one-way fingerprint, not key material.
    pub fn key_id(&self) -> String {
        let sum = digest::digest(&digest::SHA256, &self.bytes[..]);
        let mut id = String::with_capacity(32);
        for b in sum.as_ref().iter().take(16) {
            id.push(char::from(HEX[usize::from(b >> 4)]));
            id.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        id
    }

    /// Encrypts in the current layout (§5.3).
    pub fn encrypt(&self, plaintext: &[u8], associated_data: &[u8]) -> Result<Vec<u8>, Error> {
        self.encrypt_version(1, plaintext, associated_data)
    }

    /// Encrypts in the current layout (§5.3) as version `version` of its key: for versions ≥ 2
    /// the iv carries the version hint ([`version_hint`](super::version_hint)); version 1
    /// encrypts exactly as [`encrypt`](Self::encrypt).
    pub fn encrypt_version(
        &self,
        version: u32,
        plaintext: &[u8],
        associated_data: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let mut random28 = [0u8; IV_LEN + NONCE_LEN];
        random(&mut random28)?;
        let mut iv = [0u8; IV_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        iv.copy_from_slice(&random28[..IV_LEN]);
        nonce.copy_from_slice(&random28[IV_LEN..]);
        if version >= 2 {
            super::version_hint::set(&mut iv, version);
        }
        self.encrypt_with(&iv, &nonce, plaintext, associated_data)
    }

    /// A fresh 32-byte data key and its ciphertext under this key (what `generate` returns). The
    /// data key, iv and nonce come from one call to the system RNG: a system call per request
    /// saved on the hot path.
    pub fn generate_data_key(
        &self,
        associated_data: &[u8],
    ) -> Result<(Zeroizing<[u8; 32]>, Vec<u8>), Error> {
        self.generate_data_key_version(1, associated_data)
    }

    /// [`generate_data_key`](Self::generate_data_key) as version `version` of its key (the
    /// version hint for versions ≥ 2, as in [`encrypt_version`](Self::encrypt_version)).
    pub fn generate_data_key_version(
        &self,
        version: u32,
        associated_data: &[u8],
    ) -> Result<(Zeroizing<[u8; 32]>, Vec<u8>), Error> {
        let mut material = Zeroizing::new([0u8; 32 + IV_LEN + NONCE_LEN]);
        random(&mut material[..])?;
        let mut dek = Zeroizing::new([0u8; 32]);
        dek.copy_from_slice(&material[..32]);
        let mut iv = [0u8; IV_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        iv.copy_from_slice(&material[32..32 + IV_LEN]);
        nonce.copy_from_slice(&material[32 + IV_LEN..]);
        if version >= 2 {
            super::version_hint::set(&mut iv, version);
        }
        let ciphertext = self.encrypt_with(&iv, &nonce, &dek[..], associated_data)?;
        Ok((dek, ciphertext))
    }

    /// Encrypts with a caller-chosen iv and nonce. Only for [`encrypt`](Self::encrypt) and for
    /// reproducing test vectors: reusing an (iv, nonce) pair under one key breaks AES-GCM and
    /// ChaCha20-Poly1305, which is why this is not public.
    pub(super) fn encrypt_with(
        &self,
        iv: &[u8; IV_LEN],
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
        associated_data: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let aead = aead_key(self.algorithm, &self.bytes, iv)?;
        // Zeroizing while it still holds plaintext, i.e. until sealing succeeded.
        let mut out = Zeroizing::new(Vec::with_capacity(
            plaintext.len() + 16 + IV_LEN + NONCE_LEN,
        ));
        out.extend_from_slice(plaintext);
        aead.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(associated_data),
            &mut *out,
        )
        // ring refuses only plaintexts beyond 64 GiB (AES-GCM) / 256 GiB (ChaCha20), far above any
        // request body we accept. No error variant fits; we return one rather than panic.
        .map_err(|_| Error::NotAuthentic)?;
        out.extend_from_slice(iv);
        out.extend_from_slice(nonce);
        Ok(std::mem::take(&mut *out))
    }

    /// Encrypts with a chosen iv (and a fresh random nonce), for tests outside the crypto
    /// module that need a ciphertext with a particular iv.
    #[cfg(test)]
    pub(crate) fn encrypt_with_iv_for_tests(
        &self,
        iv: &[u8; IV_LEN],
        plaintext: &[u8],
        associated_data: &[u8],
    ) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce).unwrap();
        self.encrypt_with(iv, &nonce, plaintext, associated_data)
            .unwrap()
    }

    /// Decrypts any of the three formats (§5.3, §5.4). `legacy_algorithm_fallback` is true when the
    /// stored key named no algorithm: then a legacy ciphertext's own algorithm is honoured.
    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        associated_data: &[u8],
        legacy_algorithm_fallback: bool,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let parsed = ciphertext::parse(ciphertext)?;
        // Go 63649d0 always uses the key's type. Keys stored as `{"bytes":…}` read as AES256, yet
        // servers of that era picked ChaCha20 per encryption on CPUs without AES acceleration
        // and wrote the choice into the ciphertext; for those keys the ciphertext's name is the
        // truth (§5.4, last bullet). For every other key the stored type wins, exactly as in Go
        // 63649d0.
        let algorithm = match parsed.algorithm {
            Some(named) if legacy_algorithm_fallback => named,
            _ => self.algorithm,
        };
        let aead = aead_key(algorithm, &self.bytes, &parsed.iv)?;
        let mut buf = Zeroizing::new(parsed.sealed.into_owned());
        let plaintext_len = aead
            .open_in_place(
                Nonce::assume_unique_for_key(parsed.nonce),
                Aad::from(associated_data),
                &mut buf[..],
            )
            .map_err(|_| Error::NotAuthentic)?
            .len();
        buf.truncate(plaintext_len);
        Ok(buf)
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &SecretKey) -> bool {
        self.algorithm == other.algorithm && bool::from(self.bytes.ct_eq(&*other.bytes))
    }
}

impl Eq for SecretKey {}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("algorithm", &self.algorithm)
            .field("bytes", &Redacted)
            .finish()
    }
}

/// An HMAC-SHA256 key (§5.1).
#[derive(Clone)]
pub struct HmacKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl HmacKey {
    pub fn new(bytes: [u8; 32]) -> HmacKey {
        let mut bytes = bytes;
        let key = HmacKey {
            bytes: Zeroizing::new(bytes),
        };
        bytes.zeroize();
        key
    }

    /// A key from a byte slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<HmacKey, Error> {
        Ok(HmacKey {
            bytes: copy_key(bytes)?,
        })
    }

    pub fn generate() -> Result<HmacKey, Error> {
        let mut key = HmacKey {
            bytes: Zeroizing::new([0u8; 32]),
        };
        random(&mut key.bytes[..])?;
        Ok(key)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 32] {
        // A fresh ring key per call rather than a cached one: ring's key schedule cannot be wiped,
        // so it should live no longer than the call that needs it.
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.bytes[..]);
        copy32(hmac::sign(&key, message).as_ref())
    }
}

impl PartialEq for HmacKey {
    fn eq(&self, other: &HmacKey) -> bool {
        bool::from(self.bytes.ct_eq(&*other.bytes))
    }
}

impl Eq for HmacKey {}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HmacKey").field(&Redacted).finish()
    }
}

/// Fills `buf` from the system RNG.
pub fn random(buf: &mut [u8]) -> Result<(), Error> {
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::Rng)
}

/// Prints `<redacted>` in place of key material.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The AEAD for one message: the per-message key of §5.2 under the given algorithm.
fn aead_key(algorithm: Algorithm, key: &[u8; 32], iv: &[u8; IV_LEN]) -> Result<LessSafeKey, Error> {
    let derived = derive_key(algorithm, key, iv);
    let aead = match algorithm {
        Algorithm::Aes256 => &AES_256_GCM,
        Algorithm::ChaCha20 => &CHACHA20_POLY1305,
    };
    // `derived` is wiped when this function returns. ring's expanded key schedule inside the
    // LessSafeKey is beyond our reach; it lives only as long as one encrypt/decrypt call.
    // Both AEADs take 32-byte keys, so this cannot fail; map rather than unwrap all the same.
    let unbound = UnboundKey::new(aead, &derived[..]).map_err(|_| Error::NotAuthentic)?;
    Ok(LessSafeKey::new(unbound))
}

/// The per-message key of §5.2. AES256: HMAC-SHA256(key, iv). ChaCha20: HChaCha20(key, iv), with
/// the whole 16-byte iv as the HChaCha20 input.
pub(super) fn derive_key(
    algorithm: Algorithm,
    key: &[u8; 32],
    iv: &[u8; IV_LEN],
) -> Zeroizing<[u8; 32]> {
    match algorithm {
        Algorithm::Aes256 => {
            let mac = hmac::Key::new(hmac::HMAC_SHA256, key);
            Zeroizing::new(copy32(hmac::sign(&mac, iv).as_ref()))
        }
        Algorithm::ChaCha20 => {
            let mut out = chacha20::hchacha::<chacha20::R20>(key.into(), iv.into());
            let derived = Zeroizing::new(copy32(&out));
            out[..].zeroize();
            derived
        }
    }
}

/// Copies a 32-byte key into a zeroizing box. The error names the length only.
fn copy_key(bytes: &[u8]) -> Result<Zeroizing<[u8; 32]>, Error> {
    if bytes.len() != 32 {
        return Err(Error::InvalidKey(format!(
            "key is {} bytes, want 32",
            bytes.len()
        )));
    }
    Ok(Zeroizing::new(copy32(bytes)))
}

/// Copies the first 32 bytes of `src` (always exactly 32 here: SHA-256 sized outputs) without a
/// length assertion that could panic.
fn copy32(src: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, s) in out.iter_mut().zip(src) {
        *o = *s;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(algorithm: Algorithm) -> SecretKey {
        SecretKey::new(algorithm, [7u8; 32])
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::from_name("AES256"), Some(Algorithm::Aes256));
        assert_eq!(
            Algorithm::from_name("AES256-GCM_SHA256"),
            Some(Algorithm::Aes256)
        );
        assert_eq!(Algorithm::from_name("ChaCha20"), Some(Algorithm::ChaCha20));
        assert_eq!(
            Algorithm::from_name("XCHACHA20-POLY1305"),
            Some(Algorithm::ChaCha20)
        );
        for bad in [
            "",
            "aes256",
            "CHACHA20",
            "AES256 ",
            "AES-256-GCM-HMAC-SHA-256",
            "ChaCha20Poly1305",
        ] {
            assert_eq!(Algorithm::from_name(bad), None, "{bad:?}");
        }
        for a in [Algorithm::Aes256, Algorithm::ChaCha20] {
            assert_eq!(Algorithm::from_name(a.as_str()), Some(a));
        }
        // Only checks that detection runs without panicking on this machine.
        let _ = Algorithm::default_for_this_cpu();
    }

    #[test]
    fn round_trip_both_algorithms_all_small_lengths() {
        for algorithm in [Algorithm::Aes256, Algorithm::ChaCha20] {
            let k = key(algorithm);
            for len in [0usize, 1, 15, 16, 17, 32, 100, 4096] {
                let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let ct = k.encrypt(&pt, b"context").unwrap();
                assert_eq!(ct.len(), len + 44);
                let out = k.decrypt(&ct, b"context", false).unwrap();
                assert_eq!(&out[..], &pt[..]);
                // The fallback flag changes nothing for current ciphertexts.
                let out = k.decrypt(&ct, b"context", true).unwrap();
                assert_eq!(&out[..], &pt[..]);
            }
        }
    }

    #[test]
    fn every_encryption_is_fresh() {
        let k = key(Algorithm::Aes256);
        let a = k.encrypt(b"same", b"").unwrap();
        let b = k.encrypt(b"same", b"").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn dek_ciphertext_is_76_bytes() {
        let k = key(Algorithm::ChaCha20);
        assert_eq!(k.encrypt(&[0u8; 32], b"").unwrap().len(), 76);
    }

    #[test]
    fn wrong_context_wrong_key_wrong_algorithm_fail() {
        for algorithm in [Algorithm::Aes256, Algorithm::ChaCha20] {
            let k = key(algorithm);
            let ct = k.encrypt(b"secret", b"ctx-a").unwrap();
            assert_eq!(k.decrypt(&ct, b"ctx-b", false), Err(Error::NotAuthentic));
            assert_eq!(k.decrypt(&ct, b"", false), Err(Error::NotAuthentic));
            let other = SecretKey::new(algorithm, [8u8; 32]);
            assert_eq!(
                other.decrypt(&ct, b"ctx-a", false),
                Err(Error::NotAuthentic)
            );
            let other_alg = match algorithm {
                Algorithm::Aes256 => Algorithm::ChaCha20,
                Algorithm::ChaCha20 => Algorithm::Aes256,
            };
            let same_bytes = SecretKey::new(other_alg, [7u8; 32]);
            assert_eq!(
                same_bytes.decrypt(&ct, b"ctx-a", false),
                Err(Error::NotAuthentic)
            );
        }
    }

    #[test]
    fn empty_context_equals_absent_context() {
        let k = key(Algorithm::Aes256);
        let ct = k.encrypt(b"x", &[]).unwrap();
        assert_eq!(&k.decrypt(&ct, b"", false).unwrap()[..], b"x");
    }

    #[test]
    fn flipping_any_bit_of_any_byte_is_detected() {
        for algorithm in [Algorithm::Aes256, Algorithm::ChaCha20] {
            let k = key(algorithm);
            let ct = k
                .encrypt(b"a 32 byte data encryption key!!!", b"ctx")
                .unwrap();
            for i in 0..ct.len() {
                for bit in [0x01u8, 0x80] {
                    let mut bad = ct.clone();
                    bad[i] ^= bit;
                    assert_eq!(
                        k.decrypt(&bad, b"ctx", false),
                        Err(Error::NotAuthentic),
                        "{algorithm:?} byte {i}"
                    );
                }
            }
            // Truncation and extension are detected too.
            for cut in 0..ct.len() {
                assert_eq!(
                    k.decrypt(&ct[..cut], b"ctx", false),
                    Err(Error::NotAuthentic)
                );
            }
            let mut longer = ct.clone();
            longer.push(0);
            assert_eq!(k.decrypt(&longer, b"ctx", false), Err(Error::NotAuthentic));
        }
    }

    #[test]
    fn inputs_of_at_most_28_bytes_are_not_authentic() {
        let k = key(Algorithm::Aes256);
        for len in 0..=28 {
            for fill in [0u8, 0x95, b'{', 0xff] {
                let input = vec![fill; len];
                assert_eq!(k.decrypt(&input, b"", false), Err(Error::NotAuthentic));
                assert_eq!(k.decrypt(&input, b"", true), Err(Error::NotAuthentic));
            }
        }
    }

    #[test]
    fn generate_is_random_and_keeps_algorithm() {
        let a = SecretKey::generate(Algorithm::ChaCha20).unwrap();
        let b = SecretKey::generate(Algorithm::ChaCha20).unwrap();
        assert_eq!(a.algorithm(), Algorithm::ChaCha20);
        assert_ne!(a.bytes(), b.bytes());
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
        let h1 = HmacKey::generate().unwrap();
        let h2 = HmacKey::generate().unwrap();
        assert_ne!(h1.bytes(), h2.bytes());
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2 uses a 4-byte key ("Jefe"); HMAC pads keys shorter than the block
        // size with zeros, so the same key zero-padded to 32 bytes gives the same MAC.
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(b"Jefe");
        let mac = HmacKey::new(k).sign(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn key_id_is_hex_of_sha256_prefix() {
        // SHA-256 of 32 zero bytes = 66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925
        let k = SecretKey::new(Algorithm::Aes256, [0u8; 32]);
        assert_eq!(k.key_id(), "66687aadf862bd776c8fc18b8e9f8e20");
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let bytes = [0xabu8; 32];
        let k = SecretKey::new(Algorithm::Aes256, bytes);
        let h = HmacKey::new(bytes);
        for text in [
            format!("{k:?}"),
            format!("{k:#?}"),
            format!("{h:?}"),
            format!("{h:#?}"),
        ] {
            assert!(text.contains("<redacted>"), "{text}");
            assert!(!text.contains("171"), "{text}"); // 0xab in decimal
            assert!(!text.to_lowercase().contains("abab"), "{text}");
            assert!(!text.contains("q6ur"), "{text}"); // base64 of 0xabab…
        }
    }

    #[test]
    fn random_fills() {
        let mut buf = [0u8; 64];
        random(&mut buf).unwrap();
        assert_ne!(buf, [0u8; 64]);
        random(&mut []).unwrap();
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
